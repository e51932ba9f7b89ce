//! The reference plugin end to end when things go wrong, as root (one
//! cluster per test, in test namespaces):
//!
//! - a node dies for good (its agent killed, its underlay link down), is
//!   declared dead with `overlayctl rmpeer` on a survivor, which adopts its
//!   blocks, keeps them in quarantine (`--quarantine`, 20 s here) and then
//!   allocates new pods from them, reachable from the other survivor;
//! - a node with the wrong cluster password is refused: it never becomes a
//!   peer, the others count the rejected frames, and it gets no addresses.
//!
//! Every test ends by checking that nothing is left behind.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod e2e;

use std::time::{Duration, Instant};

use e2e::REACH;
use ipnet::IpNet;
use overlay_ipam::agent::ReleaseJournal;
use overlay_testsupport::privileged_test;

/// The agents' `--quarantine`.
const QUARANTINE: Duration = Duration::from_secs(20);

#[test]
fn a_dead_node_declared_with_rmpeer_has_its_blocks_adopted_and_reused_after_quarantine() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start_with(|config| {
        // 128 addresses in /28 blocks: node 1 (genesis) keeps about half,
        // the others get a /27 each, so the heir's own space runs out after
        // a few dozen pods and the adopted blocks must be used.
        config.range = "198.19.0.0/25".parse().unwrap();
        config.block_prefix = Some(28);
        config.agent_args = vec!["--quarantine".into(), QUARANTINE.as_secs().to_string()];
    });
    let (survivor, heir, dead) = (0, 1, 2);
    let watcher = cluster.attach(survivor, "watch").unwrap();
    let victim = cluster.attach(dead, "victim").unwrap();
    let victim_ip = cluster.pods()[victim].ip;
    let dead_blocks: Vec<IpNet> = cluster
        .status(dead)
        .unwrap()
        .node
        .blocks
        .iter()
        .map(|b| b.parse().unwrap())
        .collect();
    assert!(!dead_blocks.is_empty(), "node 3 owns space");

    // Node 3 dies: a crash, and it is off the underlay for good.
    cluster.kill_agent(dead).unwrap();
    cluster.disconnect(dead).unwrap();
    let started = Instant::now();
    let down = e2e::wait_for(Duration::from_secs(30), || {
        let s = cluster.status(heir).ok()?;
        s.peers
            .iter()
            .any(|p| p.name == "node-3" && p.state == "down")
            .then_some(())
    });
    assert!(down.is_some(), "node 2 saw node 3 go down");
    eprintln!("node 3 was seen down after {:?}", started.elapsed());
    // A live peer cannot be declared dead; a dead one can, once.
    let refused = cluster.overlayctl(heir, &["rmpeer", "node-2"]);
    assert!(refused.is_err(), "a node cannot reclaim itself");
    let out = cluster.overlayctl(heir, &["rmpeer", "node-3"]).unwrap();
    assert!(out.contains("tombstoned"), "{out}");
    let reclaimed_at = Instant::now();

    // The heir owns the dead node's blocks, quarantined; the other
    // survivor learns it.
    let s = cluster.status(heir).unwrap();
    for block in &dead_blocks {
        let owned = s.ipam.blocks.iter().find(|b| b.cidr == block.to_string());
        assert!(
            owned.is_some_and(|b| b.quarantined),
            "node 2 adopted {block} in quarantine: {:?}",
            s.ipam.blocks
        );
    }
    let learned = e2e::wait_for(Duration::from_secs(15), || {
        let s = cluster.status(survivor).ok()?;
        let node2 = s.peers.iter().find(|p| p.name == "node-2")?;
        dead_blocks
            .iter()
            .all(|b| node2.blocks.contains(&b.to_string()))
            .then_some(())
    });
    assert!(
        learned.is_some(),
        "node 1 sees node 2 own the adopted blocks"
    );

    // Fill the heir's own space while the quarantine lasts: nothing comes
    // from the adopted blocks.
    let in_dead = |ip: std::net::IpAddr| dead_blocks.iter().any(|b| b.contains(&ip));
    let own_free: u64 = s
        .ipam
        .blocks
        .iter()
        .filter(|b| !b.quarantined)
        .map(|b| b.free)
        .sum();
    let first = cluster
        .attach_parallel(heir, "fill", usize::try_from(own_free).unwrap())
        .unwrap();
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert!(
        reclaimed_at.elapsed() < QUARANTINE,
        "filled within the quarantine"
    );
    for p in &first.pods {
        let ip = cluster.pods()[*p].ip;
        assert!(!in_dead(ip), "{ip} came from a quarantined block");
    }
    assert!(
        !cluster
            .pods()
            .iter()
            .any(|p| p.node == heir && p.ip == victim_ip),
        "the dead node's pod address is not handed out during quarantine"
    );

    // After the quarantine, new pods get addresses from the adopted blocks
    // (the heir's own space is used up; donations from node 1 come later
    // in allocation order than the adopted blocks).
    let mut from_dead = None;
    let deadline = Instant::now() + Duration::from_secs(45);
    while from_dead.is_none() && Instant::now() < deadline {
        let id = format!("after-{}", cluster.pods().len());
        match cluster.attach(heir, &id) {
            Ok(p) if in_dead(cluster.pods()[p].ip) => from_dead = Some(p),
            Ok(_) => {}
            // No space yet: still in quarantine.
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    let Some(p) = from_dead else {
        panic!(
            "no pod got an address from {dead_blocks:?} within 45 s:\n{}",
            cluster
                .overlayctl(heir, &["status", "ipam"])
                .unwrap_or_default()
        );
    };
    eprintln!(
        "a pod got {} from the adopted blocks {:?} after the rmpeer",
        cluster.pods()[p].ip,
        reclaimed_at.elapsed()
    );
    assert!(
        reclaimed_at.elapsed() >= QUARANTINE - Duration::from_secs(5),
        "not before the quarantine"
    );
    let s = cluster.status(heir).unwrap();
    assert!(s.ipam.anomalies.is_empty(), "{:?}", s.ipam.anomalies);
    cluster.distinct_addresses().unwrap();
    // Routed: node 1's pod reaches it through node 2.
    let ip = cluster.pods()[p].ip;
    assert!(
        cluster.ping_within(watcher, ip, REACH),
        "{} unreachable from node 1\n{}",
        cluster.pod_label(p),
        cluster.describe_node(survivor)
    );

    // Teardown DELs every pod through the plugin, the dead node's too: its
    // agent is gone, so the plugin journals the release beside the agent's
    // socket (applied should that agent ever start again) and the DEL
    // succeeds. A crashed agent leaves its sockets (the next start
    // replaces them).
    let journal = ReleaseJournal::beside(&cluster.nodes()[dead].socket());
    cluster.finish_except(&[dead], |failed| {
        assert!(failed.is_empty(), "no DEL fails: {failed:?}");
        let pending = journal.pending().unwrap();
        assert_eq!(pending.attachments.len(), 1, "{pending:?}");
        assert!(
            pending.attachments[0].container_id.contains("victim"),
            "{pending:?}"
        );
    });
}

#[test]
fn a_node_with_the_wrong_password_is_refused_and_gets_no_addresses() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start();
    let pod = cluster.attach(0, "member").unwrap();
    let rejected_before: u64 = (0..3)
        .map(|i| {
            cluster
                .status(i)
                .unwrap()
                .gossip
                .rejected
                .values()
                .sum::<u64>()
        })
        .sum();

    let intruder = cluster
        .add_node_with_password(Some("not the cluster secret".into()))
        .unwrap();
    // The seeds it joins through count its frames as rejected.
    let rejected = e2e::wait_for(Duration::from_secs(30), || {
        let total: u64 = (0..3)
            .map(|i| {
                cluster
                    .status(i)
                    .ok()
                    .map_or(0, |s| s.gossip.rejected.values().sum::<u64>())
            })
            .sum();
        (total > rejected_before).then_some(total)
    });
    assert!(rejected.is_some(), "the members count rejected frames");
    // Give it time to get in if it could (several gossip rounds).
    std::thread::sleep(Duration::from_secs(5));
    for i in 0..3 {
        let s = cluster.status(i).unwrap();
        let names: Vec<&str> = s.peers.iter().map(|p| p.name.as_str()).collect();
        assert!(
            !names.contains(&"node-4"),
            "node {} let node-4 in: {names:?}",
            i + 1
        );
        assert_eq!(s.peers.len(), 2);
        assert_eq!(s.datapath.peers_programmed, 2);
    }
    let s = cluster.status(intruder).unwrap();
    assert!(s.peers.is_empty(), "node-4 has no peers: {:?}", s.peers);
    assert_eq!(s.datapath.peers_programmed, 0);
    assert!(s.node.blocks.is_empty());
    assert_ne!(s.ipam.state, "ready");
    // Its pods get no address.
    let refused = cluster.attach(intruder, "outsider");
    assert!(
        refused.is_err(),
        "node-4 handed out {:?}",
        refused.map(|p| cluster.pods()[p].ip)
    );
    // The members are undisturbed.
    let other = cluster.attach(2, "member-2").unwrap();
    let ip = cluster.pods()[other].ip;
    assert!(cluster.ping_within(pod, ip, REACH));
    cluster.finish();
}
