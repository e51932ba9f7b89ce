//! The building blocks against the real kernel and `nft`, each inside its
//! own test namespace.

// Test helpers: a failed unwrap is a failing test.
#![allow(clippy::unwrap_used)]

use overlay_cni::Version;
use overlay_cni::result::{CniResult, IpConfig, Route};
use overlay_netlink::Netns;
use overlay_plugin::iface::Plan;
use overlay_plugin::masq::{Masquerade, NftCommand};
use overlay_testsupport::{TestNetns, privileged_test};

fn ruleset(t: &TestNetns) -> String {
    let out = t.exec(["nft", "list", "ruleset"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn masquerade_adds_idempotently_and_del_removes_it_inside_a_namespace() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let runner = NftCommand::default()
        .program("ip")
        .args(["netns", "exec", t.name(), "nft"]);
    let masq = Masquerade::new(runner);
    let ips = [
        "198.51.100.7/24".parse().unwrap(),
        "2001:db8:15::7/64".parse().unwrap(),
    ];
    masq.add(0xfeed, &ips).unwrap();
    masq.add(0xfeed, &ips).unwrap(); // a repeated ADD replaces, never doubles
    masq.add(0xbeef, &ips[..1]).unwrap();
    let rules = ruleset(&t);
    assert!(rules.contains("chain masq-000000000000feed"), "{rules}");
    assert!(
        rules.contains("type nat hook postrouting priority srcnat; policy accept;"),
        "{rules}"
    );
    assert!(
        rules.contains(
            "ip saddr 198.51.100.7 ip daddr != 198.51.100.0/24 ip daddr != 224.0.0.0/4 masquerade"
        ),
        "{rules}"
    );
    assert!(
        rules.contains(
            "ip6 saddr 2001:db8:15::7 ip6 daddr != 2001:db8:15::/64 ip6 daddr != ff00::/8 masquerade"
        ),
        "{rules}"
    );
    assert_eq!(rules.matches(" masquerade").count(), 3, "{rules}");

    masq.del(0xfeed).unwrap();
    masq.del(0xfeed).unwrap(); // absent is success
    let rules = ruleset(&t);
    assert!(!rules.contains("masq-000000000000feed"), "{rules}");
    assert_eq!(rules.matches(" masquerade").count(), 1, "{rules}");
    masq.del(0xbeef).unwrap();
    assert!(!ruleset(&t).contains("masquerade"));
}

#[test]
fn a_refused_transaction_changes_nothing() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let masq = Masquerade::new(NftCommand::default().program("ip").args([
        "netns",
        "exec",
        t.name(),
        "nft",
    ]));
    masq.add(1, &["198.51.100.7/24".parse().unwrap()]).unwrap();
    let before = ruleset(&t);
    // 300 is no address: nft refuses the whole transaction.
    let bad = NftCommand::default()
        .program("ip")
        .args(["netns", "exec", t.name(), "nft"]);
    let script = Masquerade::<NftCommand>::add_script(1, &["198.51.100.9/24".parse().unwrap()])
        .replace("198.51.100.9", "198.51.100.300");
    let err = overlay_plugin::masq::NftRunner::run(&bad, &script).unwrap_err();
    assert!(err.to_string().starts_with("nft -f - failed"), "{err}");
    assert_eq!(ruleset(&t), before);
}

#[tokio::test(flavor = "current_thread")]
async fn plan_configures_a_dual_stack_interface_as_configure_iface_does() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ns = Netns::open_path(t.path()).unwrap();
    let h = ns.handle().unwrap();
    // A veth pair with both ends here (this kernel may lack `dummy`).
    let veth = overlay_netlink::VethConfig::new("ovt-if0", "ovt-if1").up();
    let link = h.link().add_veth(&veth).await.unwrap();
    h.link().set_up("ovt-if1").await.unwrap();
    ns.sysctl_set("net/ipv6/conf/ovt-if0/disable_ipv6", "1")
        .unwrap();

    let mut ipam = CniResult::new(Version::V1_0_0);
    ipam.ips
        .push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
    ipam.ips
        .push(IpConfig::new("2001:db8:15::7/64".parse().unwrap()));
    ipam.routes
        .push(Route::new("203.0.113.0/24".parse().unwrap()));
    let plan = Plan::with_ifname(&ipam, link.index, 0, true, Some("ovt-if0"));
    plan.apply(&h, Some(&ns)).await.unwrap();

    assert_eq!(
        ns.sysctl_get("net/ipv6/conf/ovt-if0/disable_ipv6").unwrap(),
        "0"
    );
    let addrs = String::from_utf8(
        t.ip(["-o", "addr", "show", "dev", "ovt-if0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(addrs.contains("inet 198.51.100.7/24"), "{addrs}");
    assert!(addrs.contains("inet6 2001:db8:15::7/64"), "{addrs}");
    let v4 = String::from_utf8(t.ip(["-4", "route", "show"]).unwrap().stdout).unwrap();
    assert!(v4.contains("default via 198.51.100.1 dev ovt-if0"), "{v4}");
    assert!(
        v4.contains("203.0.113.0/24 via 198.51.100.1 dev ovt-if0"),
        "{v4}"
    );
    let v6 = String::from_utf8(t.ip(["-6", "route", "show"]).unwrap().stdout).unwrap();
    assert!(
        v6.contains("default via 2001:db8:15::1 dev ovt-if0"),
        "{v6}"
    );

    // CHECK's half: the addresses are there; a missing one is reported.
    let mut prev = CniResult::new(Version::V1_0_0);
    let mut iface = overlay_cni::result::Interface::new("ovt-if0");
    iface.sandbox = Some(t.path().display().to_string());
    prev.interfaces.push(iface);
    prev.ips = plan.ips.clone();
    overlay_plugin::iface::check_addresses(&h, "ovt-if0", &prev)
        .await
        .unwrap();
    prev.ips
        .push(IpConfig::new("198.51.100.8/24".parse().unwrap()).with_interface(0));
    let err = overlay_plugin::iface::check_addresses(&h, "ovt-if0", &prev)
        .await
        .unwrap_err();
    assert_eq!(err.msg, "address 198.51.100.8/24 missing on ovt-if0");
}

#[tokio::test(flavor = "current_thread")]
async fn host_addresses_get_their_gateway_on_link() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ns = Netns::open_path(t.path()).unwrap();
    let h = ns.handle().unwrap();
    let veth = overlay_netlink::VethConfig::new("ovt-if0", "ovt-if1").up();
    let link = h.link().add_veth(&veth).await.unwrap();
    h.link().set_up("ovt-if1").await.unwrap();
    let mut ipam = CniResult::new(Version::V1_0_0);
    ipam.ips.push(
        IpConfig::new("198.51.100.7/32".parse().unwrap())
            .with_gateway("198.51.100.1".parse().unwrap()),
    );
    ipam.ips.push(
        IpConfig::new("2001:db8:15::7/128".parse().unwrap())
            .with_gateway("2001:db8:15::1".parse().unwrap()),
    );
    let plan = Plan::with_ifname(&ipam, link.index, 0, true, Some("ovt-if0"));
    // As the reference plugins: the kernel refuses a gateway off the subnet.
    assert!(plan.apply(&h, Some(&ns)).await.is_err());
    h.address()
        .delete(overlay_netlink::Address::new(
            link.index,
            "198.51.100.7/32".parse().unwrap(),
        ))
        .await
        .unwrap();
    h.address()
        .delete(overlay_netlink::Address::new(
            link.index,
            "2001:db8:15::7/128".parse().unwrap(),
        ))
        .await
        .unwrap();
    let plan = plan.gateways_on_link();
    plan.apply(&h, Some(&ns)).await.unwrap();
    let v4 = String::from_utf8(t.ip(["-4", "route", "show"]).unwrap().stdout).unwrap();
    assert!(
        v4.contains("default via 198.51.100.1 dev ovt-if0") && v4.contains("onlink"),
        "{v4}"
    );
    let v6 = String::from_utf8(t.ip(["-6", "route", "show"]).unwrap().stdout).unwrap();
    assert!(
        v6.contains("default via 2001:db8:15::1 dev ovt-if0"),
        "{v6}"
    );
}

/// The bridge's MAC as the kernel reports it.
async fn mac_of_link(h: &overlay_netlink::Handle, name: &str) -> overlay_netlink::MacAddr {
    h.link().get(name).await.unwrap().mac.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn the_bridge_keeps_its_mac_while_a_lower_port_comes_and_goes() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ns = Netns::open_path(t.path()).unwrap();
    let h = ns.handle().unwrap();
    let (bridge, created) = overlay_plugin::bridge::ensure(&h, "ovt-br0", Some(1400))
        .await
        .unwrap();
    assert!(created);
    let stable = overlay_plugin::bridge::mac_of("ovt-br0");
    assert_eq!(mac_of_link(&h, "ovt-br0").await, stable);
    assert_eq!(h.link().get("ovt-br0").await.unwrap().mtu, Some(1400));
    // The control: a bridge created without a MAC takes its port's.
    let plain = h.link().add_bridge("ovt-br1").await.unwrap();

    // A port whose MAC is lower than the bridge's, as a pod's host end.
    let lower = overlay_netlink::MacAddr::new([0x02, 0, 0, 0, 0, 1]);
    assert!(lower.octets() < stable.octets());
    for (master, name) in [(bridge.index, "ovt-p0"), (plain.index, "ovt-p2")] {
        let peer = name.replace('p', "q");
        let veth = overlay_netlink::VethConfig::new(name, peer)
            .mac(lower)
            .master(master)
            .up();
        h.link().add_veth(&veth).await.unwrap();
    }
    assert_eq!(mac_of_link(&h, "ovt-br0").await, stable);
    assert_eq!(mac_of_link(&h, "ovt-br1").await, lower);
    // The MTU set after the creation holds against the port's 1500.
    assert_eq!(h.link().get("ovt-br0").await.unwrap().mtu, Some(1400));

    h.link().delete("ovt-p0").await.unwrap();
    assert_eq!(mac_of_link(&h, "ovt-br0").await, stable);
    // Again: the existing bridge, unchanged.
    let (again, created) = overlay_plugin::bridge::ensure(&h, "ovt-br0", Some(1400))
        .await
        .unwrap();
    assert_eq!(
        (again.index, again.mac, created),
        (bridge.index, Some(stable), false)
    );
}
