//! The reference plugin end to end over IPv6, as root: three nodes on an
//! IPv6 underlay (`2001:db8:18::/64`), pods from an IPv6 range
//! (`2001:db8:19::/112`, the agent's default /122 blocks: 1024 blocks of 64
//! addresses), and the full pod-to-pod ping matrix across nodes.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod e2e;

use overlay_testsupport::privileged_test;

#[test]
fn ipv6_underlay_and_range_give_pods_ipv6_addresses_that_reach_each_other() {
    privileged_test!();
    let mut cluster = e2e::TestCluster::start_with(|config| {
        config.underlay = "2001:db8:18::/64".parse().unwrap();
        config.range = "2001:db8:19::/112".parse().unwrap();
    });

    for i in 0..3 {
        for p in 0..2 {
            cluster.attach(i, &format!("v6-{i}{p}")).unwrap();
        }
    }
    let addresses = cluster.distinct_addresses().unwrap();
    let range: ipnet::IpNet = "2001:db8:19::/112".parse().unwrap();
    for ip in &addresses {
        assert!(ip.is_ipv6() && range.contains(ip), "{ip} is from the range");
    }
    // Each node owns whole default blocks (/122, 64 addresses) of the
    // range, and its pods' addresses are in them.
    for i in 0..3 {
        let s = cluster.status(i).unwrap();
        assert!(!s.ipam.blocks.is_empty());
        let owned: Vec<ipnet::IpNet> = s
            .ipam
            .blocks
            .iter()
            .map(|b| b.cidr.parse().unwrap())
            .collect();
        for net in &owned {
            assert!(range.contains(net), "{net} in the range");
            assert!(
                (112..=122).contains(&net.prefix_len()),
                "whole /122 blocks: {net}"
            );
        }
        for pod in cluster.pods().iter().filter(|p| p.node == i) {
            assert!(
                owned.iter().any(|net| net.contains(&pod.ip)),
                "{} is from its node's blocks {owned:?}",
                pod.ip
            );
        }
    }
    let s = cluster.status(1).unwrap();
    assert_eq!(s.datapath.peers_programmed, 2);
    e2e::assert_matrix(&cluster, "IPv6");
    cluster.finish();
}
