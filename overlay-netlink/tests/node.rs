//! Privileged test of `overlay_netlink::node`: two nodes joined by a veth
//! underlay with a smaller MTU, each with a NodeDatapath (VXLAN device and
//! bridge with its block's gateway) and a pod; pods ping across the
//! overlay, and after the VXLAN device and the bridge (or the bridge alone)
//! are deleted from under a node, its next reconcile rebuilds them, attaches
//! the pod's veth again, and traffic flows again.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::{netns, vni};
use ipnet::IpNet;
use overlay_netlink::node::{NodeConfig, NodeDatapath, underlay_mtu};
use overlay_netlink::overlay::RemotePeer;
use overlay_netlink::{MacAddr, Route, VethConfig};
use overlay_testsupport::{TestNetns, privileged_test, veth_between};

struct Node {
    ns: TestNetns,
    pod: TestNetns,
    dp: NodeDatapath,
    peer: RemotePeer,
}

fn block(n: u8) -> IpNet {
    format!("203.0.113.{}/26", (n - 1) * 64).parse().unwrap()
}

fn pod_ip(n: u8) -> IpAddr {
    IpAddr::from([203, 0, 113, (n - 1) * 64 + 2])
}

async fn node(n: u8, ns: TestNetns, underlay: IpAddr) -> Node {
    let h = netns(&ns).handle().unwrap();
    let mac = MacAddr::new([2, 0, 0, 0, n, 1]);
    let config = NodeConfig::new("ovtbr0", "ovtvx0", vni(7), underlay, mac)
        .port(4790)
        .hairpin(true);
    let mut dp = NodeDatapath::new(h.clone(), config);
    dp.ensure().await.unwrap();
    dp.set_gateways(&[NodeDatapath::gateway_of(&block(n))])
        .await
        .unwrap();
    // A pod on the bridge, as a CNI plugin would attach it.
    let pod = TestNetns::with_kind("pod").unwrap();
    let pod_ns = netns(&pod);
    let (_, bridge) = dp.indexes().unwrap();
    let veth = h
        .link()
        .add_veth(
            &VethConfig::new("vethpod", "eth0")
                .peer_netns(&pod_ns)
                .mtu(dp.mtu().unwrap()),
        )
        .await
        .unwrap();
    h.link().set_master(veth.index, bridge).await.unwrap();
    h.link().set_up(veth.index).await.unwrap();
    let ph = pod_ns.handle().unwrap();
    let eth0 = ph.link().get("eth0").await.unwrap();
    let addr = IpNet::new(pod_ip(n), 26).unwrap();
    ph.address().add((eth0.index, addr)).await.unwrap();
    ph.link().set_up(eth0.index).await.unwrap();
    let gw = NodeDatapath::gateway_of(&block(n)).addr();
    ph.route()
        .replace(&Route::new("0.0.0.0/0".parse().unwrap()).gateway(gw))
        .await
        .unwrap();
    let peer = RemotePeer::new(underlay, mac, underlay).pod_cidr(block(n));
    Node { ns, pod, dp, peer }
}

fn ping(from: &TestNetns, to: IpAddr) -> bool {
    from.exec(["ping", "-c", "1", "-W", "2", &to.to_string()])
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn two_nodes_converge_derive_the_mtu_and_heal_after_their_devices_are_deleted() {
    privileged_test!();
    let (a_ns, b_ns) = (TestNetns::new().unwrap(), TestNetns::new().unwrap());
    let link = veth_between(
        &a_ns,
        "198.18.0.1/24".parse().unwrap(),
        &b_ns,
        "198.18.0.2/24".parse().unwrap(),
    )
    .unwrap();
    // A 1400-byte underlay on a, and a route on b that lowers its MTU to 1380.
    a_ns.ip(["link", "set", &link.a_name, "mtu", "1400"])
        .unwrap();
    b_ns.ip(["link", "set", &link.b_name, "mtu", "1400"])
        .unwrap();
    b_ns.ip([
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "198.18.0.1",
        "dev",
        &link.b_name,
        "mtu",
        "1380",
    ])
    .unwrap();
    let hb = netns(&b_ns).handle().unwrap();
    assert_eq!(
        underlay_mtu(&hb, "198.18.0.2".parse().unwrap())
            .await
            .unwrap(),
        1380
    );

    let mut a = node(1, a_ns, "198.18.0.1".parse().unwrap()).await;
    let mut b = node(2, b_ns, "198.18.0.2".parse().unwrap()).await;
    // VXLAN over IPv4 takes 50 bytes.
    assert_eq!((a.dp.mtu(), b.dp.mtu()), (Some(1350), Some(1330)));
    let (pa, pb) = (a.peer.clone(), b.peer.clone());
    a.dp.reconcile(std::slice::from_ref(&pb)).await.unwrap();
    b.dp.reconcile(std::slice::from_ref(&pa)).await.unwrap();
    assert!(ping(&a.pod, pod_ip(2)), "pod a -> pod b across the overlay");
    assert!(ping(&b.pod, pod_ip(1)), "pod b -> pod a across the overlay");

    // The last reconcile saw the pod's veth on the bridge.
    let ha = netns(&a.ns).handle().unwrap();
    let veth = ha.link().get("vethpod").await.unwrap();
    assert_eq!(a.dp.bridge_ports(), [veth.index]);

    // Someone deletes a's devices; the pod's veth loses its master.
    a.ns.ip(["link", "del", "ovtvx0"]).unwrap();
    a.ns.ip(["link", "del", "ovtbr0"]).unwrap();
    assert!(!a.dp.devices_present().await.unwrap());
    let report = a.dp.reconcile(std::slice::from_ref(&pb)).await.unwrap();
    assert!(!report.changes.is_empty());
    assert_eq!(a.dp.recreated(), 1);
    assert!(a.dp.devices_present().await.unwrap());
    // The pod's veth is on the new bridge again, with hairpin mode.
    let (_, bridge) = a.dp.indexes().unwrap();
    let veth = ha.link().get("vethpod").await.unwrap();
    assert_eq!(veth.master, Some(bridge), "the pod re-attached");
    let hairpin =
        a.ns.exec(["cat", "/sys/class/net/vethpod/brport/hairpin_mode"])
            .unwrap();
    assert_eq!(String::from_utf8_lossy(&hairpin.stdout).trim(), "1");
    let gw = a.ns.ip(["-j", "addr", "show", "dev", "ovtbr0"]).unwrap();
    assert!(
        String::from_utf8_lossy(&gw.stdout).contains("203.0.113.1"),
        "gateway restored"
    );
    assert!(
        ping(&a.pod, pod_ip(2)),
        "traffic flows again after the rebuild"
    );

    // Only b's bridge is deleted (its VXLAN device stays): the next
    // reconcile notices, rebuilds it and takes the pod back.
    b.ns.ip(["link", "del", "ovtbr0"]).unwrap();
    b.dp.reconcile(std::slice::from_ref(&pa)).await.unwrap();
    assert_eq!(b.dp.recreated(), 1);
    assert!(
        ping(&b.pod, pod_ip(1)),
        "b's pod is back after a bridge rebuild"
    );
    assert!(ping(&a.pod, pod_ip(2)), "and reachable from a");
    // Nothing left to do after that.
    let report = b.dp.reconcile(std::slice::from_ref(&pa)).await.unwrap();
    assert!(report.is_noop(), "{report:?}");
    assert_eq!(b.dp.recreated(), 1);

    // Giving up the block removes its gateway.
    a.dp.set_gateways(&[]).await.unwrap();
    let gw = a.ns.ip(["-j", "addr", "show", "dev", "ovtbr0"]).unwrap();
    assert!(!String::from_utf8_lossy(&gw.stdout).contains("203.0.113.1"));
}

#[tokio::test]
async fn an_underlay_address_that_is_not_local_is_a_typed_error() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let err = underlay_mtu(&h, "192.0.2.99".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no device in this network namespace has the address 192.0.2.99"),
        "{err}"
    );
    let mut dp = NodeDatapath::new(
        h,
        NodeConfig::new(
            "ovtbr0",
            "ovtvx0",
            vni(7),
            "192.0.2.99".parse().unwrap(),
            MacAddr::new([2, 0, 0, 0, 0, 9]),
        ),
    );
    assert!(dp.ensure().await.is_err());
    assert!(
        t.link_names(None).unwrap().iter().all(|n| n == "lo"),
        "nothing created"
    );
}

#[tokio::test]
async fn the_bridge_keeps_its_mac_when_ports_with_lower_ones_come_and_go() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    t.ip([
        "link", "add", "ovtu0", "type", "veth", "peer", "name", "ovtu1",
    ])
    .unwrap();
    t.ip(["addr", "add", "192.0.2.1/24", "dev", "ovtu0"])
        .unwrap();
    t.ip(["link", "set", "ovtu0", "up"]).unwrap();
    let h = netns(&t).handle().unwrap();
    let config = NodeConfig::new(
        "ovtbr0",
        "ovtvx0",
        vni(7),
        "192.0.2.1".parse().unwrap(),
        MacAddr::new([2, 0, 0, 0, 0, 9]),
    );
    let mut dp = NodeDatapath::new(h.clone(), config);
    dp.ensure().await.unwrap();
    let (_, bridge) = dp.indexes().unwrap();
    let before = h.link().get(bridge).await.unwrap().mac.unwrap();
    assert_eq!(
        before,
        NodeConfig::bridge_mac_of(MacAddr::new([2, 0, 0, 0, 0, 9]))
    );
    // A pod's host veth with a MAC below any random one joins, then leaves.
    let veth = h
        .link()
        .add_veth(&VethConfig::new("vethpod", "vethpeer"))
        .await
        .unwrap();
    h.link()
        .set_mac(veth.index, MacAddr::new([0, 0, 0, 0, 0, 1]))
        .await
        .unwrap();
    h.link().set_master(veth.index, bridge).await.unwrap();
    h.link().set_up(veth.index).await.unwrap();
    assert_eq!(h.link().get(bridge).await.unwrap().mac.unwrap(), before);
    h.link().delete(veth.index).await.unwrap();
    assert_eq!(h.link().get(bridge).await.unwrap().mac.unwrap(), before);
    // Adopting the existing bridge keeps it, and a rebuilt one gets it.
    dp.ensure().await.unwrap();
    assert_eq!(h.link().get(bridge).await.unwrap().mac.unwrap(), before);
    t.ip(["link", "del", "ovtbr0"]).unwrap();
    dp.ensure().await.unwrap();
    let (_, rebuilt) = dp.indexes().unwrap();
    assert_ne!(rebuilt, bridge);
    assert_eq!(h.link().get(rebuilt).await.unwrap().mac.unwrap(), before);
}
