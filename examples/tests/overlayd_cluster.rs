//! The reference plugin end to end, as root: three nodes (test namespaces on
//! one underlay bridge), `overlayd` in each with an encrypted mesh, two pods
//! per node attached by the real `overlay` CNI executable, and a pod-to-pod
//! ping matrix across nodes. Then one agent is restarted: it keeps its
//! identity, blocks and allocations (an ADD repeated for a live pod gets the
//! same address, a new pod a new one), and the matrix still passes. Then
//! a node's bridge and another's VXLAN device are deleted from under the
//! agents, which rebuild them and re-attach the pods.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod e2e;

use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_examples::agent::status::Encryption;
use overlay_examples::cluster::ping;
use overlay_testsupport::{TestNetns, privileged_test};

/// The namespace's packet filter rules, both as nftables and as
/// iptables (legacy) show them.
fn nft_and_iptables(ns: &TestNetns) -> String {
    let mut out = String::new();
    for argv in [
        &["nft", "list", "ruleset"][..],
        &["iptables-legacy-save"][..],
        &["iptables-save"][..],
    ] {
        if let Ok(o) = ns.exec(argv) {
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    out
}

#[test]
fn three_nodes_attach_pods_that_reach_each_other_and_survive_an_agent_restart() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start();

    // Two pods per node, through the real plugin.
    for i in 0..3 {
        for p in 0..2 {
            cluster.attach(i, &format!("c{i}{p}")).unwrap();
        }
    }
    let addresses = cluster.distinct_addresses().unwrap();
    let matrix = cluster.ping_matrix();
    assert!(matrix.failures().is_empty(), "pings failed:\n{matrix}");
    assert_eq!(matrix.passed(), 30);

    // The same status through the agent's API: three peers, encrypted.
    let s = cluster.status(0).unwrap();
    assert_eq!(s.peers.len(), 2);
    assert_eq!(s.encryption, Encryption::Encrypted);
    // Node 1 founded the ring: it holds the range's network address too.
    assert_eq!(s.ipam.used, 2 + 2, "network and bridge addresses, two pods");

    // Restart node 2's agent: same identity, same blocks, same addresses.
    let before = cluster.status(1).unwrap();
    cluster.stop_agent(1).unwrap();
    cluster.start_agent(1).unwrap();
    cluster.wait_ready(e2e::READY).unwrap();
    let after = cluster.status(1).unwrap();
    assert_eq!(after.node.id, before.node.id);
    assert_eq!(after.node.incarnation, before.node.incarnation + 1);
    assert_eq!(after.node.blocks, before.node.blocks);
    cluster.check(2).unwrap();
    let fresh = cluster.attach(1, "c-new").unwrap();
    let new_ip = cluster.pods()[fresh].ip;
    assert!(
        !addresses.contains(&new_ip),
        "a restarted agent never hands out a live address"
    );
    for (from, to) in [(fresh, cluster.pods()[0].ip), (5, new_ip)] {
        assert!(
            cluster.ping_within(from, to, e2e::REACH),
            "after the restart: {} -> {to}",
            cluster.pod_label(from)
        );
    }

    // Someone deletes node 3's bridge and node 2's VXLAN device: the agents
    // rebuild them, take the pods' veths back, and traffic flows again.
    cluster.exec(2, &["ip", "link", "del", "ovtbr0"]).unwrap();
    cluster.exec(1, &["ip", "link", "del", "ovtvx0"]).unwrap();
    for (from, to) in [(0, 4), (4, 0), (5, 2), (2, 5)] {
        let ip = cluster.pods()[to].ip;
        assert!(
            cluster.ping_within(from, ip, Duration::from_secs(15)),
            "after the devices were deleted: {} -> {}\n{}",
            cluster.pod_label(from),
            cluster.pod_label(to),
            cluster.describe_node(2)
        );
    }

    // The deploy/ conflist through overlay-cni's runtime side, as kubelet's
    // runtime runs it: overlay, then Debian's portmap and bandwidth with
    // their capabilities, in node 1's namespace.
    let chained = TestNetns::with_kind("pd").unwrap();
    let conflist = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/10-overlay.conflist"
    ))
    .unwrap()
    .replace(
        "/run/overlay/overlayd.sock",
        &cluster.nodes()[0].socket().display().to_string(),
    )
    .replace("\"overlay0\"", "\"ovtbr0\"");
    let list = overlay_cni::runtime::ConfList::from_bytes(conflist.into_bytes()).unwrap();
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_overlay"))
        .parent()
        .unwrap()
        .to_path_buf();
    let runtime =
        overlay_cni::runtime::Runtime::new(vec![plugin_dir, PathBuf::from("/usr/lib/cni")])
            .with_cache_dir(cluster.dir().join("cni-cache"));
    let rt = overlay_cni::runtime::RuntimeConf::new("c-chained", "eth0")
        .with_netns(chained.path())
        .with_capability(
            "portMappings",
            serde_json::json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]),
        )
        .with_capability(
            "bandwidth",
            serde_json::json!({"ingressRate": 10_000_000, "ingressBurst": 100_000}),
        );
    let result = cluster.nodes()[0]
        .netns()
        .run_in(|| runtime.add_network_list(&list, &rt))
        .unwrap()
        .unwrap();
    let chained_ip = result.ips[0].address.addr();
    assert!(!addresses.contains(&chained_ip));
    if !cluster.ping_within(0, chained_ip, e2e::REACH) {
        let sh = |ns: &TestNetns, argv: &[&str]| {
            String::from_utf8_lossy(&ns.exec(argv).map(|o| o.stdout).unwrap_or_default())
                .into_owned()
        };
        let again = ping(cluster.pods()[0].netns(), chained_ip);
        panic!(
            "chained pod {chained_ip} unreachable from its node's pod {} (again: {again})\nresult {result:?}\nnode1 neigh:\n{}\nnode1 routes:\n{}\nnode2 routes:\n{}\npod:\n{}{}\nnode1 links:\n{}\nqdisc:\n{}",
            cluster.pods()[0].ip,
            sh(cluster.nodes()[0].netns(), &["ip", "neigh"]),
            sh(cluster.nodes()[0].netns(), &["ip", "route"]),
            sh(cluster.nodes()[1].netns(), &["ip", "route"]),
            sh(&chained, &["ip", "addr"]),
            sh(&chained, &["ip", "route"]),
            sh(cluster.nodes()[0].netns(), &["ip", "-br", "link"]),
            sh(cluster.nodes()[0].netns(), &["tc", "qdisc"]),
        );
    }
    let host_veth = result
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none() && i.name != "ovtbr0")
        .map(|i| i.name.clone())
        .unwrap();
    let qdisc = cluster.nodes()[0]
        .netns()
        .exec(["tc", "qdisc", "show", "dev", &host_veth])
        .unwrap();
    let qdisc = String::from_utf8_lossy(&qdisc.stdout).into_owned();
    assert!(
        qdisc.contains("tbf"),
        "bandwidth shaped the host veth {host_veth}: {qdisc}"
    );
    let rules = nft_and_iptables(cluster.nodes()[0].netns());
    assert!(rules.contains("18080"), "portmap mapped the port: {rules}");
    cluster.nodes()[0]
        .netns()
        .run_in(|| runtime.del_network_list(&list, &rt))
        .unwrap()
        .unwrap();
    let rules = nft_and_iptables(cluster.nodes()[0].netns());
    assert!(!rules.contains("18080"), "DEL removed the mapping: {rules}");

    // Teardown through the plugin: DEL is idempotent.
    for p in 0..cluster.pods().len() {
        cluster.del(p).unwrap();
        cluster.del(p).unwrap();
    }
    cluster.finish();
}
