//! Privileged end-to-end test of the overlay: two nodes joined by a veth
//! underlay, each with a bridge, a pod behind it and a VXLAN device; peers
//! are programmed with the overlay helper and pods ping each other across
//! the overlay. Plus reconcile checked against `ip` and `bridge`.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::{bridge, bridge_json, has_flag, ip_json, link_names, netns, vni};
use ipnet::IpNet;
use overlay_netlink::overlay::{Change, Overlay, RemotePeer};
use overlay_netlink::{Handle, MacAddr, Netns, Route, VethConfig, VxlanConfig};
use overlay_testsupport::{TestNetns, privileged_test, veth_between};

struct Node {
    ns: TestNetns,
    pod: TestNetns,
    handle: Handle,
    vxlan: u32,
    peer: RemotePeer,
}

/// Build node `n` (1 or 2): bridge cni0 10.244.n.1/24, a pod at 10.244.n.2
/// behind it, VXLAN flannel.1 with local = underlay address, 10.244.n.0/32.
async fn node(n: u8, ns: TestNetns, underlay_dev: &str, underlay_ip: IpAddr) -> Node {
    let pod = TestNetns::with_kind("pod").unwrap();
    let netns_ = netns(&ns);
    netns_.sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    let h = netns_.handle().unwrap();
    let link = h.link();

    let br = link.ensure_bridge("cni0").await.unwrap();
    h.address()
        .add((
            br.index,
            format!("10.244.{n}.1/24").parse::<IpNet>().unwrap(),
        ))
        .await
        .unwrap();
    link.set_up(br.index).await.unwrap();

    let pod_ns = netns(&pod);
    let veth = link
        .add_veth(
            &VethConfig::new("vethpod", "eth0")
                .peer_netns(&pod_ns)
                .mtu(1450),
        )
        .await
        .unwrap();
    link.set_master(veth.index, br.index).await.unwrap();
    link.set_hairpin(veth.index, true).await.unwrap();
    link.set_up(veth.index).await.unwrap();
    {
        let ph = pod_ns.handle().unwrap();
        let eth0 = ph.link().get("eth0").await.unwrap();
        ph.address()
            .add((
                eth0.index,
                format!("10.244.{n}.2/24").parse::<IpNet>().unwrap(),
            ))
            .await
            .unwrap();
        ph.link().set_up(eth0.index).await.unwrap();
        ph.route()
            .replace(
                &Route::new("0.0.0.0/0".parse().unwrap()).gateway(IpAddr::from([10, 244, n, 1])),
            )
            .await
            .unwrap();
    }

    let under = link.get(underlay_dev).await.unwrap();
    let mac = MacAddr::new([2, 0, 0, 0, n, 0]);
    let (vx, _) = link
        .ensure_vxlan(
            &VxlanConfig::new("flannel.1", vni(1))
                .local(underlay_ip)
                .underlay(under.index)
                .port(8472)
                .mtu(1450)
                .mac(mac),
        )
        .await
        .unwrap();
    h.address()
        .add((
            vx.index,
            format!("10.244.{n}.0/32").parse::<IpNet>().unwrap(),
        ))
        .await
        .unwrap();
    link.set_up(vx.index).await.unwrap();
    let peer = RemotePeer::new(underlay_ip, mac, IpAddr::from([10, 244, n, 0]))
        .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap());
    Node {
        ns,
        pod,
        handle: h,
        vxlan: vx.index,
        peer,
    }
}

/// An up VXLAN device `flannel.1` with local address `local`, made through
/// `h`, and the overlay on it.
async fn flannel_overlay(h: &Handle, local: &str) -> Overlay {
    let (vx, _) = h
        .link()
        .ensure_vxlan(
            &VxlanConfig::new("flannel.1", vni(1))
                .local(local.parse().unwrap())
                .port(8472),
        )
        .await
        .unwrap();
    h.link().set_up(vx.index).await.unwrap();
    Overlay::new(h, vx.index)
}

/// [`flannel_overlay`] in `t`.
async fn vxlan_overlay(t: &TestNetns, local: &str) -> Overlay {
    flannel_overlay(&netns(t).handle().unwrap(), local).await
}

fn ping(from: &TestNetns, to: &str) -> bool {
    from.exec(["ping", "-c", "2", "-W", "2", to])
        .unwrap()
        .status
        .success()
}

/// What `ip`/`bridge` show on the VXLAN device: (neighbours, fdb with dst, routes via it).
fn overlay_state(t: &TestNetns) -> (usize, usize, usize) {
    let neigh = ip_json(
        t,
        &["neigh", "show", "dev", "flannel.1", "nud", "permanent"],
    );
    let fdb = bridge_json(t, &["fdb", "show", "dev", "flannel.1"]);
    let fdb = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("dst").is_some())
        .count();
    let routes = ip_json(t, &["route", "show", "dev", "flannel.1"]);
    let routes = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("gateway").is_some())
        .count();
    (neigh.as_array().unwrap().len(), fdb, routes)
}

#[tokio::test]
async fn pods_on_two_nodes_ping_across_the_vxlan_overlay_and_teardown_leaves_nothing() {
    privileged_test!();
    let a_ns = TestNetns::with_kind("nda").unwrap();
    let b_ns = TestNetns::with_kind("ndb").unwrap();
    let under = veth_between(
        &a_ns,
        "192.0.2.1/24".parse().unwrap(),
        &b_ns,
        "192.0.2.2/24".parse().unwrap(),
    )
    .unwrap();
    let a = node(1, a_ns, &under.a_name, "192.0.2.1".parse().unwrap()).await;
    let b = node(2, b_ns, &under.b_name, "192.0.2.2".parse().unwrap()).await;

    // Before programming peers, the pods cannot reach each other.
    assert!(!ping(&a.pod, "10.244.2.2"));

    // Node A programs B one peer at a time; node B reconciles to {A}.
    let oa = Overlay::new(&a.handle, a.vxlan);
    let ob = Overlay::new(&b.handle, b.vxlan);
    oa.add_peer(&b.peer).await.unwrap();
    let report = ob.reconcile(std::slice::from_ref(&a.peer)).await.unwrap();
    assert_eq!(report.added, vec![a.peer.underlay]);
    assert_eq!(report.changes.len(), 3);
    assert_eq!(overlay_state(&a.ns), (1, 1, 1));
    assert_eq!(overlay_state(&b.ns), (1, 1, 1));
    let fdb = bridge_json(&a.ns, &["fdb", "show", "dev", "flannel.1"]);
    let row = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.get("dst").is_some())
        .unwrap()
        .clone();
    assert_eq!(
        (row["mac"].as_str(), row["dst"].as_str()),
        (Some("02:00:00:00:02:00"), Some("192.0.2.2"))
    );
    assert!(has_flag(&row["flags"], "self"));
    let route = ip_json(&a.ns, &["route", "show", "10.244.2.0/24"]);
    assert_eq!(route[0]["gateway"], "10.244.2.0");
    assert!(has_flag(&route[0]["flags"], "onlink"));

    // Traffic crosses the overlay, both ways.
    assert!(
        ping(&a.pod, "10.244.2.2"),
        "pod A cannot reach pod B across the overlay"
    );
    assert!(
        ping(&b.pod, "10.244.1.2"),
        "pod B cannot reach pod A across the overlay"
    );
    // And it really is encapsulated: the VXLAN device counted packets.
    let stats = ip_json(&a.ns, &["-s", "link", "show", "flannel.1"]);
    assert!(stats[0]["stats64"]["tx"]["packets"].as_u64().unwrap() >= 2);

    // Reconciling again changes nothing.
    let again = ob.reconcile(std::slice::from_ref(&a.peer)).await.unwrap();
    assert!(again.is_noop());
    assert_eq!(again.unchanged, vec![a.peer.underlay]);
    assert!(
        oa.reconcile(std::slice::from_ref(&b.peer))
            .await
            .unwrap()
            .is_noop()
    );

    // Teardown: remove the peers (twice: best-effort is idempotent).
    oa.remove_peer(&b.peer).await.unwrap();
    oa.remove_peer(&b.peer).await.unwrap();
    let gone = ob.reconcile(&[]).await.unwrap();
    assert_eq!(gone.removed_peers, 1);
    assert_eq!(overlay_state(&a.ns), (0, 0, 0));
    assert_eq!(overlay_state(&b.ns), (0, 0, 0));
    assert!(!ping(&a.pod, "10.244.2.2"));

    for node in [&a, &b] {
        let link = node.handle.link();
        link.delete("flannel.1").await.unwrap();
        link.delete("vethpod").await.unwrap();
        link.delete("cni0").await.unwrap();
    }
    assert_eq!(link_names(&a.ns), ["lo".to_string(), under.a_name.clone()]);
    assert_eq!(link_names(&b.ns), ["lo".to_string(), under.b_name.clone()]);
    assert_eq!(link_names(&a.pod), ["lo"]);
    assert_eq!(link_names(&b.pod), ["lo"]);
}

#[tokio::test]
async fn reconcile_updates_moved_peers_removes_stale_ones_and_matches_ip() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ov = vxlan_overlay(&t, "192.0.2.1").await;
    let peer = |n: u8, underlay: u8| {
        RemotePeer::new(
            IpAddr::from([192, 0, 2, underlay]),
            MacAddr::new([2, 0, 0, 0, n, 0]),
            IpAddr::from([10, 244, n, 0]),
        )
        .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
    };
    let first = [peer(2, 2), peer(3, 3), peer(4, 4)];
    let r = ov.reconcile(&first).await.unwrap();
    assert_eq!(
        (r.added.len(), r.updated.len(), r.unchanged.len()),
        (3, 0, 0)
    );
    assert_eq!(overlay_state(&t), (3, 3, 3));

    // Peer 3 moves to another underlay address, peer 4 leaves, peer 5 joins.
    let second = [peer(2, 2), peer(3, 33), peer(5, 5)];
    let r = ov.reconcile(&second).await.unwrap();
    assert_eq!(r.unchanged, vec![peer(2, 2).underlay]);
    assert_eq!(r.updated, vec![peer(3, 33).underlay]);
    assert_eq!(r.added, vec![peer(5, 5).underlay]);
    assert_eq!(r.removed_peers, 1);
    assert_eq!(overlay_state(&t), (3, 3, 3));
    let fdb = bridge_json(&t, &["fdb", "show", "dev", "flannel.1"]);
    let dsts: Vec<&str> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["dst"].as_str())
        .collect();
    assert!(
        dsts.contains(&"192.0.2.33")
            && !dsts.contains(&"192.0.2.3")
            && !dsts.contains(&"192.0.2.4")
    );
    let routes = ip_json(&t, &["route", "show", "dev", "flannel.1"]);
    let dsts: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["dst"].as_str())
        .collect();
    assert!(dsts.contains(&"10.244.5.0/24") && !dsts.contains(&"10.244.4.0/24"));
    assert!(ov.reconcile(&second).await.unwrap().is_noop());

    // A neighbour entry changed behind our back is repaired.
    t.ip([
        "neigh",
        "replace",
        "10.244.2.0",
        "lladdr",
        "02:00:00:00:09:09",
        "dev",
        "flannel.1",
        "nud",
        "permanent",
    ])
    .unwrap();
    let r = ov.reconcile(&second).await.unwrap();
    assert_eq!(r.updated, vec![peer(2, 2).underlay]);
    assert_eq!(r.changes.len(), 1);
    let neigh = ip_json(&t, &["neigh", "show", "10.244.2.0", "dev", "flannel.1"]);
    assert_eq!(neigh[0]["lladdr"], "02:00:00:00:02:00");

    assert_eq!(ov.reconcile(&[]).await.unwrap().removed_peers, 3);
    assert_eq!(overlay_state(&t), (0, 0, 0));
    let _ = Netns::current().unwrap();
}

/// `ip -6 neigh show dev flannel.1 nud permanent` in `t`, as JSON.
fn permanent_v6_neighbours(t: &TestNetns) -> serde_json::Value {
    ip_json(
        t,
        &[
            "-6",
            "neigh",
            "show",
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ],
    )
}

#[tokio::test]
async fn ipv6_peers_are_programmed_and_removed_like_ipv4_ones() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ov = vxlan_overlay(&t, "2001:db8::1").await;
    let peers: Vec<RemotePeer> = (2..5u16)
        .map(|n| {
            RemotePeer::new(
                format!("2001:db8::{n}").parse().unwrap(),
                MacAddr::new([2, 0, 0, 0, n as u8, 6]),
                format!("2001:db8:{n}::").parse().unwrap(),
            )
            .pod_cidr(format!("2001:db8:{n}::/64").parse().unwrap())
        })
        .collect();
    let r = ov.reconcile(&peers).await.unwrap();
    assert_eq!(r.added.len(), 3);
    let neigh = permanent_v6_neighbours(&t);
    assert_eq!(neigh.as_array().unwrap().len(), 3);
    let fdb = bridge_json(&t, &["fdb", "show", "dev", "flannel.1"]);
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["dst"] == "2001:db8::3" && e["mac"] == "02:00:00:00:03:06")
    );
    let route = ip_json(&t, &["-6", "route", "show", "2001:db8:4::/64"]);
    assert_eq!(route[0]["gateway"], "2001:db8:4::");
    assert!(has_flag(&route[0]["flags"], "onlink"));
    assert!(ov.reconcile(&peers).await.unwrap().is_noop());
    for p in &peers {
        ov.remove_peer(p).await.unwrap();
    }
    let neigh = permanent_v6_neighbours(&t);
    assert_eq!(neigh, serde_json::Value::Array(vec![]));
    assert!(ov.reconcile(&[]).await.unwrap().is_noop());
}

/// Peer `n` (VTEP MAC 02:00:00:00:n:00, VTEP 10.244.n.0, pods 10.244.n.0/24)
/// at underlay address 192.0.2.`underlay`.
fn v4_peer(n: u8, underlay: u8) -> RemotePeer {
    RemotePeer::new(
        IpAddr::from([192, 0, 2, underlay]),
        MacAddr::new([2, 0, 0, 0, n, 0]),
        IpAddr::from([10, 244, n, 0]),
    )
    .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
}

/// An overlay as [`vxlan_overlay`] makes it, in a namespace whose new
/// devices get no IPv6 link-local address. Otherwise the kernel announces
/// that address a second or so after the device comes up (when duplicate
/// address detection ends), an address change on the device that rightly
/// makes the overlay dump again, and the dump counts these tests check
/// would depend on timing.
async fn quiet_overlay(t: &TestNetns) -> Overlay {
    netns(t)
        .sysctl_set("net.ipv6.conf.default.addr_gen_mode", "1")
        .unwrap();
    vxlan_overlay(t, "192.0.2.1").await
}

/// Install `peers` with a first reconcile (which subscribes to the kernel's
/// notifications beside it), then make a second, which fills the mirror
/// with the first dumps read after the subscription and changes nothing.
/// Returns the dump count after both.
async fn programmed(ov: &Overlay, peers: &[RemotePeer]) -> u64 {
    let first = ov.reconcile(peers).await.unwrap();
    assert_eq!(first.added.len(), peers.len());
    assert!(ov.reconcile(peers).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), 2);
    ov.full_dumps()
}

/// The destinations of the routes with a gateway on flannel.1, per `ip`.
fn gateway_routes(t: &TestNetns) -> Vec<String> {
    let routes = ip_json(t, &["route", "show", "dev", "flannel.1"]);
    let mut dsts: Vec<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("gateway").is_some())
        .filter_map(|r| r["dst"].as_str().map(str::to_string))
        .collect();
    dsts.sort();
    dsts
}

#[tokio::test]
async fn a_noop_reconcile_on_a_programmed_device_reads_no_dump() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ov = quiet_overlay(&t).await;
    let peers = [v4_peer(2, 2), v4_peer(3, 3), v4_peer(4, 4)];
    let dumps = programmed(&ov, &peers).await;
    for _ in 0..3 {
        let report = ov.reconcile(&peers).await.unwrap();
        assert!(report.is_noop(), "{report:?}");
        assert_eq!(report.unchanged.len(), 3);
    }
    assert_eq!(ov.full_dumps(), dumps, "a no-op reconcile read dumps");
    // The mirror also follows the overlay's own changes: a peer leaves and
    // one joins, and the next reconcile finds nothing to do, still from the
    // notifications alone.
    let next = [v4_peer(2, 2), v4_peer(3, 3), v4_peer(5, 5)];
    let report = ov.reconcile(&next).await.unwrap();
    assert_eq!(
        (report.added.len(), report.removed_peers),
        (1, 1),
        "{report:?}"
    );
    assert!(ov.reconcile(&next).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps);
    assert_eq!(overlay_state(&t), (3, 3, 3));
}

#[tokio::test]
async fn drift_made_behind_the_overlays_back_is_repaired_from_notifications() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ov = quiet_overlay(&t).await;
    let peers = [v4_peer(2, 2), v4_peer(3, 3), v4_peer(4, 4)];
    let dumps = programmed(&ov, &peers).await;

    // Someone deletes a neighbour entry, an FDB entry and a route of three
    // peers, and adds a stray route on the device.
    t.ip(["neigh", "del", "10.244.2.0", "dev", "flannel.1"])
        .unwrap();
    bridge(
        &t,
        &[
            "fdb",
            "del",
            "02:00:00:00:03:00",
            "dev",
            "flannel.1",
            "dst",
            "192.0.2.3",
            "self",
        ],
    );
    t.ip(["route", "del", "10.244.4.0/24", "dev", "flannel.1"])
        .unwrap();
    t.ip([
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "10.99.0.1",
        "dev",
        "flannel.1",
        "onlink",
    ])
    .unwrap();
    assert_eq!(overlay_state(&t), (2, 2, 3));

    let report = ov.reconcile(&peers).await.unwrap();
    assert_eq!(
        report.updated,
        vec![peers[0].underlay, peers[1].underlay, peers[2].underlay]
    );
    assert_eq!(
        report.changes,
        vec![
            Change::DeleteRoute {
                destination: "10.99.0.0/24".parse().unwrap()
            },
            Change::ReplaceNeighbour {
                ip: peers[0].vtep_ip,
                mac: peers[0].vtep_mac
            },
            Change::ReplaceFdb {
                mac: peers[1].vtep_mac,
                dst: peers[1].underlay
            },
            Change::ReplaceRoute {
                destination: peers[2].pod_cidrs[0],
                gateway: peers[2].vtep_ip
            },
        ]
    );
    // Found from the notifications: no dump was read.
    assert_eq!(ov.full_dumps(), dumps);
    assert_eq!(overlay_state(&t), (3, 3, 3));
    assert_eq!(
        gateway_routes(&t),
        ["10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"]
    );
    assert!(ov.reconcile(&peers).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps);

    // An FDB destination replaced by someone else: the kernel notifies
    // `replace` and `append` alike, so the mirror cannot tell whether the
    // old destination is still there, and the next reconcile reads the
    // state again (one dump) and repairs it.
    bridge(
        &t,
        &[
            "fdb",
            "replace",
            "02:00:00:00:02:00",
            "dev",
            "flannel.1",
            "dst",
            "192.0.2.99",
            "self",
            "permanent",
        ],
    );
    let report = ov.reconcile(&peers).await.unwrap();
    assert_eq!(report.updated, vec![peers[0].underlay]);
    assert_eq!(
        report.changes,
        vec![
            Change::DeleteFdb {
                mac: peers[0].vtep_mac,
                dst: "192.0.2.99".parse().unwrap()
            },
            Change::ReplaceFdb {
                mac: peers[0].vtep_mac,
                dst: peers[0].underlay
            },
        ]
    );
    assert_eq!(ov.full_dumps(), dumps + 1);
    let fdb = bridge_json(&t, &["fdb", "show", "dev", "flannel.1"]);
    let dsts: Vec<&str> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == "02:00:00:00:02:00")
        .filter_map(|e| e["dst"].as_str())
        .collect();
    assert_eq!(dsts, ["192.0.2.2"]);
    assert!(ov.reconcile(&peers).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps + 1);
}

#[tokio::test]
async fn routes_flushed_by_link_down_and_up_are_reinstalled_by_the_next_reconcile() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ov = quiet_overlay(&t).await;
    let peers = [v4_peer(2, 2), v4_peer(3, 3)];
    let dumps = programmed(&ov, &peers).await;

    // The kernel flushes the IPv4 routes of a device going down without
    // announcing their removal; the link notifications make the overlay
    // read the state again.
    t.ip(["link", "set", "flannel.1", "down"]).unwrap();
    t.ip(["link", "set", "flannel.1", "up"]).unwrap();
    assert!(gateway_routes(&t).is_empty());

    let report = ov.reconcile(&peers).await.unwrap();
    for peer in &peers {
        assert!(
            report.changes.contains(&Change::ReplaceRoute {
                destination: peer.pod_cidrs[0],
                gateway: peer.vtep_ip,
            }),
            "{report:?}"
        );
    }
    assert!(report.added.is_empty() && report.unchanged.is_empty());
    assert_eq!(ov.full_dumps(), dumps + 1);
    assert_eq!(gateway_routes(&t), ["10.244.2.0/24", "10.244.3.0/24"]);
    assert_eq!(overlay_state(&t), (2, 2, 2));
    assert!(ov.reconcile(&peers).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_forces_a_dump_and_concurrent_clones_converge() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ov = quiet_overlay(&t).await;
    let peers = [v4_peer(2, 2), v4_peer(3, 3)];
    let dumps = programmed(&ov, &peers).await;

    ov.resync();
    assert!(ov.reconcile(&peers).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps + 1);
    assert!(ov.reconcile(&peers).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps + 1);

    // Two clones reconcile the same new set at once, on two threads: their
    // reconciles run one after the other on the shared mirror, so one makes
    // the changes and the other finds nothing left to do.
    let next: Vec<RemotePeer> = (2..8).map(|n| v4_peer(n, n)).collect();
    let (a, b) = (ov.clone(), ov.clone());
    let (na, nb) = (next.clone(), next.clone());
    let ta = tokio::spawn(async move { a.reconcile(&na).await.unwrap() });
    let tb = tokio::spawn(async move { b.reconcile(&nb).await.unwrap() });
    let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
    let (busy, idle) = if ra.is_noop() { (rb, ra) } else { (ra, rb) };
    assert!(idle.is_noop(), "{idle:?}");
    assert_eq!(idle.unchanged.len(), next.len());
    assert_eq!(busy.added.len(), 4, "{busy:?}");
    assert_eq!(busy.changes.len(), 12);
    assert_eq!(overlay_state(&t), (6, 6, 6));
    assert!(ov.reconcile(&next).await.unwrap().is_noop());
    assert_eq!(ov.full_dumps(), dumps + 1);
}

#[test]
fn a_handle_without_a_namespace_subscribes_before_its_first_dump() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    netns(&t)
        .sysctl_set("net.ipv6.conf.default.addr_gen_mode", "1")
        .unwrap();
    // Handle::new works in the calling thread's namespace: run on a thread
    // inside the test namespace, with a runtime of its own.
    let (dumps, state) = t
        .run_in(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let h = Handle::new().unwrap();
                assert!(h.netns().is_none());
                let ov = flannel_overlay(&h, "192.0.2.1").await;
                let peers = [v4_peer(2, 2), v4_peer(3, 3)];
                // The first reconcile subscribes at once, so its dumps fill
                // the mirror and the following reconciles read none.
                assert_eq!(ov.reconcile(&peers).await.unwrap().added.len(), 2);
                assert_eq!(ov.full_dumps(), 1);
                assert!(ov.reconcile(&peers).await.unwrap().is_noop());
                h.neighbour()
                    .delete(ov.vxlan_index(), peers[1].vtep_ip)
                    .await
                    .unwrap();
                let report = ov.reconcile(&peers).await.unwrap();
                assert_eq!(report.updated, vec![peers[1].underlay]);
                assert!(ov.reconcile(&peers).await.unwrap().is_noop());
                ov.full_dumps()
            })
        })
        .map(|dumps| (dumps, overlay_state(&t)))
        .unwrap();
    assert_eq!(dumps, 1);
    assert_eq!(state, (2, 2, 2));
}
