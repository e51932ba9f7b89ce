//! Privileged tests of `Handle::batch`: changes sent in one exchange take
//! effect in order, as the single operations do, and a refused change is
//! reported as itself while the kernel carries on with the rest.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{has_flag, ip_json, ip_link, netns};
use ipnet::IpNet;
use overlay_netlink::{Address, ErrorKind, Route, VethConfig};
use overlay_testsupport::{TestNetns, privileged_test};

#[tokio::test]
async fn a_batch_brings_a_link_up_and_adds_its_address_and_a_route_through_it() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    // A veth pair, both ends down: the batch brings one up, then adds an
    // address and a default route whose gateway needs both.
    h.link()
        .add_veth(&VethConfig::new("ovbat0", "ovbat1"))
        .await
        .unwrap();
    h.link().set_up("ovbat1").await.unwrap();
    let link = h.link().get("ovbat0").await.unwrap();
    assert!(!link.up);
    let v4: IpNet = "192.0.2.7/24".parse().unwrap();
    let default = Route::new("0.0.0.0/0".parse().unwrap())
        .gateway("192.0.2.1".parse().unwrap())
        .dev(link.index);
    let batch = h
        .batch()
        .set_up(link.index)
        .add_address(Address::new(link.index, v4))
        .add_route(&default);
    assert_eq!(batch.len(), 3);
    batch.send().await.unwrap();

    assert!(has_flag(&ip_link(&t, "ovbat0").unwrap()["flags"], "UP"));
    let addrs = ip_json(&t, &["addr", "show", "dev", "ovbat0"]);
    let info = addrs[0]["addr_info"].as_array().unwrap();
    assert!(
        info.iter()
            .any(|a| a["local"] == "192.0.2.7" && a["prefixlen"] == 24),
        "{info:?}"
    );
    let routes = ip_json(&t, &["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "192.0.2.1", "{routes}");
    assert_eq!(routes[0]["dev"], "ovbat0", "{routes}");

    // The same address again is refused as itself; the route after it is
    // still added.
    let host_route = Route::new("198.51.100.0/24".parse().unwrap()).dev(link.index);
    let each = h
        .batch()
        .add_address(Address::new(link.index, v4))
        .add_route(&host_route)
        .send_each()
        .await
        .unwrap();
    let err = each[0].as_ref().unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::AlreadyExists), "{err}");
    assert!(
        err.to_string().starts_with("add address 192.0.2.7/24"),
        "{err}"
    );
    assert!(each[1].is_ok(), "{:?}", each[1]);
    let routes = ip_json(&t, &["route", "show", "198.51.100.0/24"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");

    // `send` reports the first failure.
    let err = h.batch().add_route(&host_route).send().await.unwrap_err();
    assert!(err.is_already_exists(), "{err}");
}
