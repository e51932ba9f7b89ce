//! The reference plugin end to end through a node's life, as root (one
//! cluster per test, in test namespaces; see `overlayd_cluster.rs` for the
//! basic matrix):
//!
//! - an agent restarted five times, gracefully and by crashing, while its
//!   pods keep their addresses and new pods keep coming, and no address is
//!   ever handed out twice;
//! - thirty parallel CNI `ADD`s on one node, thirty distinct reachable
//!   addresses, thirty `DEL`s releasing them all;
//! - a fresh node joining a running cluster;
//! - a `DEL` while the node's agent is down: it succeeds, the release waits
//!   in the journal beside the agent's socket, and the restarted agent
//!   applies it before it serves, while the node's other pod keeps its
//!   address.
//!
//! Every test ends by checking that nothing is left behind: namespaces,
//! agents, sockets.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod e2e;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use e2e::REACH;
use overlay_ipam::agent::{PendingReleases, ReleaseJournal};
use overlay_testsupport::privileged_test;

/// Record every address in `new`, failing if one was handed out before.
fn record(seen: &mut BTreeSet<IpAddr>, new: impl IntoIterator<Item = IpAddr>, when: &str) {
    for ip in new {
        assert!(seen.insert(ip), "{when}: {ip} was handed out twice");
    }
}

#[test]
fn an_agent_restarted_five_times_keeps_its_pods_addresses_and_never_reuses_one() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start();

    // Node 2 (index 1) is restarted; pods on nodes 1 and 3 watch it.
    let mut seen = BTreeSet::new();
    let watchers = [
        cluster.attach(0, "watch-1").unwrap(),
        cluster.attach(2, "watch-3").unwrap(),
    ];
    cluster.attach(1, "r-0").unwrap();
    cluster.attach(1, "r-1").unwrap();
    record(&mut seen, cluster.distinct_addresses().unwrap(), "start");

    let before = cluster.status(1).unwrap();
    let mut incarnation = before.node.incarnation;
    for round in 0..5 {
        // Rounds 0, 2, 4 crash (SIGKILL), 1 and 3 stop gracefully.
        let crash = round % 2 == 0;
        let held = cluster.attachments(1).unwrap();
        if crash {
            cluster.kill_agent(1).unwrap();
        } else {
            cluster.stop_agent(1).unwrap();
        }
        cluster.start_agent(1).unwrap();
        let ready = cluster.wait_ready(e2e::READY).unwrap();
        let round_start = Instant::now();
        let context = format!(
            "restart {} ({})",
            round + 1,
            if crash { "SIGKILL" } else { "SIGTERM" }
        );

        // Same identity and blocks, one incarnation later, the same
        // attachments with the same addresses.
        let s = cluster.status(1).unwrap();
        assert_eq!(s.node.id, before.node.id, "{context}");
        assert!(
            s.node.incarnation > incarnation,
            "{context}: incarnation bumped"
        );
        incarnation = s.node.incarnation;
        assert_eq!(s.node.blocks, before.node.blocks, "{context}: blocks kept");
        let mut now_held = cluster.attachments(1).unwrap();
        let mut was_held = held;
        now_held.sort();
        was_held.sort();
        assert_eq!(now_held, was_held, "{context}: attachments kept");

        // Every pod of the node passes CHECK (the agent holds its address,
        // the interface has it) and answers the other nodes' pods.
        let mine: Vec<usize> = (0..cluster.pods().len())
            .filter(|p| cluster.pods()[*p].node == 1)
            .collect();
        for p in &mine {
            cluster
                .check(*p)
                .unwrap_or_else(|e| panic!("{context}: {e:#}"));
            let ip = cluster.pods()[*p].ip;
            assert!(
                e2e::all_reach(&cluster, &watchers, ip, REACH),
                "{context}: {} unreachable from the other nodes\n{}",
                cluster.pod_label(*p),
                cluster.describe_node(1)
            );
        }

        // A new pod on the restarted node and one on another node: fresh
        // addresses, reachable across nodes.
        let fresh = cluster.attach(1, &format!("r-{}", round + 2)).unwrap();
        let other = cluster.attach(2, &format!("o-{round}")).unwrap();
        record(
            &mut seen,
            [cluster.pods()[fresh].ip, cluster.pods()[other].ip],
            &context,
        );
        for (from, to) in [(watchers[0], fresh), (other, fresh), (fresh, watchers[0])] {
            let ip = cluster.pods()[to].ip;
            assert!(
                cluster.ping_within(from, ip, REACH),
                "{context}: {} -> {}",
                cluster.pod_label(from),
                cluster.pod_label(to)
            );
        }
        eprintln!(
            "restart {}: ready after {ready:?}, checks and pings {:?}",
            round + 1,
            round_start.elapsed()
        );
    }
    assert_eq!(cluster.nodes()[1].starts, 6);
    assert_eq!(seen.len(), cluster.pods().len());
    e2e::assert_matrix(&cluster, "after five restarts");
    cluster.finish();
}

#[test]
fn thirty_parallel_adds_get_distinct_reachable_addresses_and_thirty_dels_release_them() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start();
    let watcher = cluster.attach(2, "watch").unwrap();
    let used_before = cluster.status(0).unwrap().ipam.used;

    let started = Instant::now();
    let attached = cluster.attach_parallel(0, "par", 30).unwrap();
    let took = started.elapsed();
    assert!(
        attached.failed.is_empty(),
        "ADDs failed: {:?}",
        attached.failed
    );
    assert_eq!(attached.pods.len(), 30);
    let addresses: BTreeSet<IpAddr> = attached
        .pods
        .iter()
        .map(|p| cluster.pods()[*p].ip)
        .collect();
    assert_eq!(addresses.len(), 30, "30 distinct addresses");
    cluster.distinct_addresses().unwrap();
    let s = cluster.status(0).unwrap();
    assert_eq!(s.ipam.used, used_before + 30);
    assert_eq!(cluster.attachments(0).unwrap().len(), 30);
    eprintln!("30 parallel ADDs took {took:?}");

    // Each answers a pod on another node and a pod on its own node.
    let neighbour = attached.pods[0];
    let unreachable: Vec<String> = std::thread::scope(|scope| {
        let cluster = &cluster;
        let handles: Vec<_> = attached
            .pods
            .iter()
            .map(|p| {
                scope.spawn(move || {
                    let ip = cluster.pods()[*p].ip;
                    let ok = cluster.ping_within(watcher, ip, REACH)
                        && (*p == neighbour || cluster.ping_within(neighbour, ip, REACH));
                    (!ok).then(|| cluster.pod_label(*p))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(unreachable.is_empty(), "unreachable: {unreachable:?}");

    // Thirty DELs, newest first (indexes stay valid): all released.
    for p in attached.pods.iter().rev() {
        cluster.detach(*p).unwrap();
    }
    let s = cluster.status(0).unwrap();
    assert_eq!(s.ipam.used, used_before, "the 30 addresses are released");
    assert!(cluster.attachments(0).unwrap().is_empty());
    assert_eq!(cluster.pods().len(), 1);
    cluster.finish();
}

#[test]
fn a_fresh_node_joins_a_running_cluster_and_its_pods_reach_the_others() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start_with(|config| config.nodes = 2);
    cluster.attach(0, "a-1").unwrap();
    cluster.attach(1, "a-2").unwrap();
    e2e::assert_matrix(&cluster, "two nodes");

    // Node 3 is not among the seeds: it joins through them.
    let joined = cluster.add_node().unwrap();
    assert!(
        !cluster
            .seeds()
            .contains(&cluster.nodes()[joined].ip.to_string())
    );
    let took = cluster.wait_ready(e2e::READY).unwrap();
    eprintln!("the fresh node was ready after {took:?}");
    let s = cluster.status(joined).unwrap();
    assert_eq!(s.peers.len(), 2);
    assert!(!s.node.blocks.is_empty(), "it was given space");
    for i in 0..2 {
        let names: Vec<String> = cluster
            .status(i)
            .unwrap()
            .peers
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(
            names.contains(&"node-3".to_owned()),
            "node {} sees node-3: {names:?}",
            i + 1
        );
    }
    let p1 = cluster.attach(joined, "a-3").unwrap();
    let p2 = cluster.attach(joined, "a-4").unwrap();
    for p in [p1, p2] {
        let ip = cluster.pods()[p].ip;
        assert!(
            e2e::all_reach(&cluster, &[0, 1], ip, REACH),
            "{} unreachable from the other nodes",
            cluster.pod_label(p)
        );
    }
    cluster.distinct_addresses().unwrap();
    e2e::assert_matrix(&cluster, "after the join");
    cluster.finish();
}

#[test]
fn a_del_while_the_agent_is_down_succeeds_and_the_returning_agent_releases_it() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start_with(|config| config.nodes = 2);
    let node = 1;
    let watcher = cluster.attach(0, "watch").unwrap();
    let gone = cluster.attach(node, "gone").unwrap();
    let kept = cluster.attach(node, "kept").unwrap();
    let (gone_ip, kept_ip) = (cluster.pods()[gone].ip, cluster.pods()[kept].ip);
    let journal = ReleaseJournal::beside(&cluster.nodes()[node].socket());

    // The agent crashes; the runtime deletes a pod meanwhile.
    cluster.kill_agent(node).unwrap();
    cluster.del(gone).expect("DEL succeeds with the agent down");
    let pending = journal.pending().unwrap();
    assert_eq!(pending.attachments.len(), 1, "{pending:?}");
    assert_eq!(
        pending.attachments[0].container_id,
        cluster.pods()[gone].container_id
    );

    // Back: the release is applied before the socket serves.
    cluster.start_agent(node).unwrap();
    cluster.wait_ready(e2e::READY).unwrap();
    assert_eq!(journal.pending().unwrap(), PendingReleases::default());
    let held: Vec<(String, Vec<IpAddr>)> = cluster.attachments(node).unwrap();
    assert!(
        !held.iter().any(|(_, ips)| ips.contains(&gone_ip)),
        "{gone_ip} released: {held:?}"
    );
    assert!(
        held.iter()
            .any(|(id, ips)| *id == cluster.pods()[kept].container_id && ips.contains(&kept_ip)),
        "the other pod keeps {kept_ip}: {held:?}"
    );
    assert!(
        cluster.ping_within(watcher, kept_ip, REACH),
        "the kept pod answers the other node's"
    );
    cluster.finish();
}
