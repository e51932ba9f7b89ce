//! Privileged tests of addresses, routes, neighbours and FDB entries, each
//! checked against `ip -j addr`, `ip -j route`, `ip -j neigh` and
//! `bridge -j fdb`.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::{bridge_json, has_flag, ip_json, netns, vni};
use ipnet::IpNet;
use overlay_netlink::{
    Address, Error, FdbEntry, Handle, InvalidInput, IpFamily, MacAddr, Neighbour, NeighbourState,
    Route, Scope, VxlanConfig,
};
use overlay_testsupport::{TestNetns, privileged_test};
use serde_json::Value;

async fn up_bridge(h: &Handle, name: &str) -> u32 {
    let br = h.link().add_bridge(name).await.unwrap();
    h.link().set_up(br.index).await.unwrap();
    br.index
}

/// The `bridge -j fdb` rows of one MAC.
fn rows_of(fdb: &Value, mac: MacAddr) -> Vec<&Value> {
    fdb.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == mac.to_string())
        .collect()
}

fn addr_info(t: &TestNetns, dev: &str) -> Vec<Value> {
    ip_json(t, &["addr", "show", "dev", dev])[0]["addr_info"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn addresses_v4_and_v6_add_replace_list_delete_match_ip_addr() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let idx = up_bridge(&h, "ovbr0").await;
    let v4: IpNet = "192.0.2.1/24".parse().unwrap();
    let v6: IpNet = "2001:db8::1/64".parse().unwrap();
    h.address().add((idx, v4)).await.unwrap();
    h.address()
        .add(Address::new(idx, v6).nodad())
        .await
        .unwrap();
    let err = h.address().add((idx, v4)).await.unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    h.address().replace((idx, v4)).await.unwrap();

    let info = addr_info(&t, "ovbr0");
    let has = |fam: &str, local: &str, len: u64| {
        info.iter()
            .any(|a| a["family"] == fam && a["local"] == local && a["prefixlen"] == len)
    };
    assert!(has("inet", "192.0.2.1", 24));
    assert!(has("inet6", "2001:db8::1", 64));
    let v6_info = info.iter().find(|a| a["local"] == "2001:db8::1").unwrap();
    assert!(
        v6_info.get("tentative").is_none(),
        "nodad address must not be tentative"
    );

    let ours = h.address().list(None, Some(idx)).await.unwrap();
    assert!(ours.iter().any(|a| a.addr == v4));
    assert!(ours.iter().any(|a| a.addr == v6 && a.nodad));
    assert_eq!(ours.len(), info.len(), "ours {ours:?} ip {info:?}");
    let only_v4 = h.address().list(Some(IpFamily::V4), None).await.unwrap();
    assert!(only_v4.iter().all(|a| a.addr.addr().is_ipv4()));
    assert!(only_v4.iter().any(|a| a.addr == v4));

    h.address().delete((idx, v4)).await.unwrap();
    h.address().delete((idx, v6)).await.unwrap();
    let info = addr_info(&t, "ovbr0");
    assert!(
        info.iter()
            .all(|a| a["local"] != "192.0.2.1" && a["local"] != "2001:db8::1")
    );
    assert!(
        h.address()
            .delete((idx, v4))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn routes_replace_list_delete_match_ip_route() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let idx = up_bridge(&h, "ovbr0").await;
    h.address()
        .add((idx, "192.0.2.1/24".parse().unwrap()))
        .await
        .unwrap();
    h.address()
        .add(Address::new(idx, "2001:db8::1/64".parse().unwrap()).nodad())
        .await
        .unwrap();

    let via = Route::new("198.51.100.0/24".parse().unwrap())
        .gateway("192.0.2.254".parse().unwrap())
        .metric(50)
        .mtu(1400);
    let onlink = Route::new("203.0.113.0/24".parse().unwrap())
        .gateway("198.18.0.1".parse().unwrap())
        .dev(idx)
        .onlink();
    let link_scope = Route::new("198.18.0.0/15".parse().unwrap())
        .dev(idx)
        .table(100);
    let v6 = Route::new("2001:db8:1::/48".parse().unwrap())
        .gateway("2001:db8::fe".parse().unwrap())
        .dev(idx);
    for r in [&via, &onlink, &link_scope, &v6] {
        h.route().replace(r).await.unwrap();
        h.route().replace(r).await.unwrap(); // idempotent
    }
    let main = ip_json(&t, &["route", "show"]);
    let find = |routes: &Value, dst: &str| -> Value {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dst"] == dst)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let j = find(&main, "198.51.100.0/24");
    assert_eq!(
        (j["gateway"].as_str(), j["metric"].as_u64()),
        (Some("192.0.2.254"), Some(50))
    );
    assert_eq!(j["dev"], "ovbr0");
    assert_eq!(j["metrics"][0]["mtu"], 1400, "{j}");
    let j = find(&main, "203.0.113.0/24");
    assert_eq!(j["gateway"], "198.18.0.1");
    assert!(has_flag(&j["flags"], "onlink"));
    let t100 = ip_json(&t, &["route", "show", "table", "100"]);
    let j = find(&t100, "198.18.0.0/15");
    assert_eq!(
        (j["scope"].as_str(), j["dev"].as_str()),
        (Some("link"), Some("ovbr0"))
    );
    let j = find(&ip_json(&t, &["-6", "route", "show"]), "2001:db8:1::/48");
    assert_eq!(j["gateway"], "2001:db8::fe");

    let ours = h.route().list(IpFamily::V4).await.unwrap();
    let get = |dst: &str| {
        ours.iter()
            .find(|r| r.destination == dst.parse::<IpNet>().unwrap())
            .unwrap()
            .clone()
    };
    let r = get("198.51.100.0/24");
    assert_eq!(
        (r.gateway, r.metric, r.dev, r.mtu),
        (via.gateway, Some(50), Some(idx), Some(1400))
    );
    assert!(get("203.0.113.0/24").onlink);
    assert_eq!(get("203.0.113.0/24").mtu, None);
    let r = get("198.18.0.0/15");
    assert_eq!((r.table, r.scope), (100, Some(Scope::Link)));
    let ours6 = h.route().list(IpFamily::V6).await.unwrap();
    assert!(
        ours6
            .iter()
            .any(|r| r.destination == v6.destination && r.gateway == v6.gateway)
    );

    for r in [&via, &onlink, &link_scope, &v6] {
        h.route().delete(r).await.unwrap();
    }
    assert!(find(&ip_json(&t, &["route", "show"]), "198.51.100.0/24").is_null());
    assert!(find(&ip_json(&t, &["route", "show"]), "203.0.113.0/24").is_null());
    assert_eq!(
        ip_json(&t, &["route", "show", "table", "100"]),
        Value::Array(vec![])
    );
    assert!(h.route().delete(&via).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn wrong_family_route_and_unreachable_gateway_leave_no_route() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let idx = up_bridge(&h, "ovbr0").await;
    let before = ip_json(&t, &["route", "show"]);
    let bad = Route::new("198.51.100.0/24".parse().unwrap())
        .gateway("2001:db8::1".parse().unwrap())
        .dev(idx);
    let err = h.route().replace(&bad).await.unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidInput {
            source: InvalidInput::FamilyMismatch {
                what: "gateway",
                ..
            },
            ..
        }
    ));
    // A gateway that is not reachable: the kernel refuses, with its message.
    let unreachable =
        Route::new("198.51.100.0/24".parse().unwrap()).gateway("203.0.113.9".parse().unwrap());
    let err = h.route().replace(&unreachable).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kernel {
                operation: "replace route",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(ip_json(&t, &["route", "show"]), before);
}

#[tokio::test]
async fn neighbours_replace_list_delete_match_ip_neigh() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let idx = up_bridge(&h, "ovbr0").await;
    let mac: MacAddr = "02:00:00:00:00:07".parse().unwrap();
    let mac2: MacAddr = "02:00:00:00:00:08".parse().unwrap();
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    h.neighbour()
        .replace(&Neighbour::permanent(idx, v4, mac))
        .await
        .unwrap();
    h.neighbour()
        .replace(&Neighbour::permanent(idx, v6, mac))
        .await
        .unwrap();
    h.neighbour()
        .replace(&Neighbour::permanent(idx, v4, mac2))
        .await
        .unwrap(); // update
    let j = ip_json(&t, &["neigh", "show", "dev", "ovbr0"]);
    let entry = |ip: &str| {
        j.as_array()
            .unwrap()
            .iter()
            .find(|n| n["dst"] == ip)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry("192.0.2.7")["lladdr"], mac2.to_string());
    assert!(has_flag(&entry("192.0.2.7")["state"], "PERMANENT"));
    assert_eq!(entry("2001:db8::7")["lladdr"], mac.to_string());

    let ours = h.neighbour().list(None, Some(idx)).await.unwrap();
    assert!(
        ours.iter()
            .any(|n| n.ip == v4 && n.mac == Some(mac2) && n.state == NeighbourState::Permanent)
    );
    assert!(ours.iter().any(|n| n.ip == v6 && n.mac == Some(mac)));
    // The kernel adds entries of its own (IPv6 multicast); compare the
    // permanent ones.
    let permanent = ip_json(&t, &["neigh", "show", "dev", "ovbr0", "nud", "permanent"]);
    let ours_permanent = ours
        .iter()
        .filter(|n| n.state == NeighbourState::Permanent)
        .count();
    assert_eq!(ours_permanent, permanent.as_array().unwrap().len());
    assert_eq!(ours_permanent, 2);
    assert!(
        h.neighbour()
            .list(Some(IpFamily::V6), None)
            .await
            .unwrap()
            .iter()
            .all(|n| n.ip.is_ipv6())
    );

    h.neighbour().delete(idx, v4).await.unwrap();
    h.neighbour().delete(idx, v6).await.unwrap();
    assert_eq!(
        ip_json(&t, &["neigh", "show", "dev", "ovbr0"]),
        Value::Array(vec![])
    );
    assert!(
        h.neighbour()
            .delete(idx, v4)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn fdb_replace_append_list_delete_match_bridge_fdb() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let vx = h
        .link()
        .add_vxlan(&VxlanConfig::new("ovvx0", vni(10)).local("198.51.100.1".parse().unwrap()))
        .await
        .unwrap();
    // Appending a second remote works for the all-zero MAC (the flood list);
    // the kernel allows several destinations only for zero or multicast MACs.
    let zero = MacAddr::ZERO;
    let a: IpAddr = "198.51.100.2".parse().unwrap();
    let b: IpAddr = "198.51.100.3".parse().unwrap();
    h.fdb()
        .append(&FdbEntry::new(vx.index, zero).dst(a))
        .await
        .unwrap();
    h.fdb()
        .append(&FdbEntry::new(vx.index, zero).dst(b).vni(vni(20)).port(8472))
        .await
        .unwrap();
    let j = bridge_json(&t, &["fdb", "show", "dev", "ovvx0"]);
    let rows = rows_of(&j, zero);
    assert_eq!(rows.len(), 2, "{j}");
    let ra = rows.iter().find(|e| e["dst"] == "198.51.100.2").unwrap();
    assert!(has_flag(&ra["flags"], "self"));
    assert_eq!(ra["state"], "permanent");
    let rb = rows.iter().find(|e| e["dst"] == "198.51.100.3").unwrap();
    assert_eq!(
        (rb["vni"].as_u64(), rb["port"].as_u64()),
        (Some(20), Some(8472))
    );

    let ours = h.fdb().list(Some(vx.index)).await.unwrap();
    let mine: Vec<&FdbEntry> = ours.iter().filter(|e| e.mac == zero).collect();
    assert_eq!(mine.len(), 2);
    assert!(
        mine.iter()
            .any(|e| e.dst == Some(a) && e.on_self && e.permanent)
    );
    assert!(
        mine.iter()
            .any(|e| e.dst == Some(b) && e.vni == Some(vni(20)) && e.port == Some(8472))
    );

    // A unicast MAC has one destination; replace moves it.
    let mac: MacAddr = "02:00:00:00:01:01".parse().unwrap();
    let c: IpAddr = "198.51.100.4".parse().unwrap();
    let d: IpAddr = "198.51.100.5".parse().unwrap();
    h.fdb()
        .replace(&FdbEntry::new(vx.index, mac).dst(c))
        .await
        .unwrap();
    h.fdb()
        .replace(&FdbEntry::new(vx.index, mac).dst(d))
        .await
        .unwrap();
    let j = bridge_json(&t, &["fdb", "show", "dev", "ovvx0"]);
    let rows = rows_of(&j, mac);
    assert_eq!(rows.len(), 1, "{j}");
    assert_eq!(rows[0]["dst"], "198.51.100.5");
    assert_eq!(
        ours.len() + 1,
        h.fdb().list(Some(vx.index)).await.unwrap().len()
    );

    // `master` entries on a bridge port.
    let br = h.link().add_bridge("ovbr0").await.unwrap();
    let veth = h
        .link()
        .add_veth(&overlay_netlink::VethConfig::new("ovv0", "ovv1"))
        .await
        .unwrap();
    h.link().set_master(veth.index, br.index).await.unwrap();
    let pmac: MacAddr = "02:00:00:00:02:02".parse().unwrap();
    let port_entry = FdbEntry::new(veth.index, pmac)
        .on_self(false)
        .on_master(true)
        .permanent(false);
    h.fdb().replace(&port_entry).await.unwrap();
    let j = bridge_json(&t, &["fdb", "show", "dev", "ovv0"]);
    let row = j
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == pmac.to_string())
        .unwrap()
        .clone();
    assert_eq!(
        (row["master"].as_str(), row["state"].as_str()),
        (Some("ovbr0"), Some("static"))
    );
    let listed = h.fdb().list(Some(veth.index)).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.mac == pmac && e.master_index == Some(br.index) && !e.permanent)
    );

    h.fdb()
        .delete(&FdbEntry::new(vx.index, zero).dst(b).vni(vni(20)).port(8472))
        .await
        .unwrap();
    h.fdb()
        .delete(&FdbEntry::new(vx.index, zero).dst(a))
        .await
        .unwrap();
    h.fdb().delete(&FdbEntry::new(vx.index, mac)).await.unwrap();
    h.fdb().delete(&port_entry).await.unwrap();
    let j = bridge_json(&t, &["fdb", "show", "dev", "ovvx0"]);
    assert!(
        j.as_array()
            .unwrap()
            .iter()
            .all(|e| e["mac"] != mac.to_string() && e["mac"] != zero.to_string()),
        "{j}"
    );
    let j = bridge_json(&t, &["fdb", "show", "dev", "ovv0"]);
    assert!(
        j.as_array()
            .unwrap()
            .iter()
            .all(|e| e["mac"] != pmac.to_string()),
        "{j}"
    );
}

#[tokio::test]
async fn large_dumps_are_read_completely() {
    privileged_test!();
    // 3000 neighbour entries make a dump of many datagrams; every entry
    // must arrive, as `ip neigh` counts them.
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let idx = up_bridge(&h, "ovbr0").await;
    let mut batch = String::new();
    for i in 0..3000u32 {
        let ip = IpAddr::from([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        batch.push_str(&format!(
            "neigh replace {ip} lladdr 02:00:00:{:02x}:{:02x}:{:02x} dev ovbr0 nud permanent\n",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        ));
    }
    let file = std::env::temp_dir().join(format!("{}-neigh.batch", t.name()));
    std::fs::write(&file, batch).unwrap();
    t.ip(["-batch", file.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&file);
    // Count the permanent entries this test made (the kernel may hold
    // transient entries of its own next to them).
    let ours = h
        .neighbour()
        .list(Some(IpFamily::V4), Some(idx))
        .await
        .unwrap();
    let permanent: Vec<IpAddr> = ours
        .into_iter()
        .filter(|n| n.state == NeighbourState::Permanent)
        .map(|n| n.ip)
        .collect();
    let ours: std::collections::HashSet<IpAddr> = permanent.iter().copied().collect();
    assert_eq!(permanent.len(), ours.len(), "the dump repeated an entry");
    let j = ip_json(
        &t,
        &["-4", "neigh", "show", "dev", "ovbr0", "nud", "permanent"],
    );
    let theirs: std::collections::HashSet<IpAddr> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["dst"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(theirs.len(), 3000);
    assert_eq!(ours, theirs);
}

#[tokio::test]
async fn route_get_returns_the_kernels_choice_with_its_mtu() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let idx = up_bridge(&h, "ovbr0").await;
    h.address()
        .add((idx, "192.0.2.1/24".parse().unwrap()))
        .await
        .unwrap();
    h.route()
        .replace(
            &Route::new("198.51.100.0/24".parse().unwrap())
                .gateway("192.0.2.254".parse().unwrap())
                .mtu(1400),
        )
        .await
        .unwrap();
    let r = h
        .route()
        .get("198.51.100.7".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(r.dev, Some(idx));
    assert_eq!(r.gateway, Some("192.0.2.254".parse().unwrap()));
    assert_eq!(r.mtu, Some(1400));
    let r = h.route().get("192.0.2.9".parse().unwrap()).await.unwrap();
    assert_eq!((r.dev, r.gateway, r.mtu), (Some(idx), None, None));
    assert_eq!(r.source, Some("192.0.2.1".parse().unwrap()));
    // The namespace has no default route: the kernel says unreachable.
    let err = h
        .route()
        .get("203.0.113.1".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENETUNREACH), "{err}");
}
