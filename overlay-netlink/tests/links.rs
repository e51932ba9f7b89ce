//! Privileged tests of namespaces, links, VXLAN, link events, sysctls and
//! input validation, each checked against `ip -d -j link`.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{has_flag, ip_link, link_names, netns, vni};
use overlay_netlink::{
    Ensured, Error, ErrorKind, InvalidInput, LinkEvent, LinkKind, MacAddr, Netns, VethConfig,
    VxlanConfig,
};
use overlay_testsupport::{TestNetns, privileged_test, unique_name};

/// Deletes a namespace created through our own `Netns::create`, also on panic.
struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[tokio::test]
async fn netns_create_is_visible_to_ip_and_delete_removes_it() {
    privileged_test!();
    let name = unique_name("nc");
    let _guard = NsGuard(name.clone());
    let ns = Netns::create(&name).unwrap();
    assert_eq!(ns.name(), Some(name.as_str()));
    let listed = overlay_testsupport::run("ip", ["netns", "list"]).unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&name));
    // A second create of the same name fails and leaves the first intact.
    assert!(Netns::create(&name).is_err());
    // `ip` sees the namespace's links (only lo).
    let out = overlay_testsupport::run("ip", ["-n", &name, "-j", "link"]).unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(links.as_array().unwrap().len(), 1);
    // Our handle works in it and sees the same.
    let handle = ns.handle().unwrap();
    let ours = handle.link().list().await.unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].name, "lo");
    drop(handle);
    let reopened = Netns::open(&name).unwrap();
    drop(reopened);
    ns.delete().unwrap();
    let listed = overlay_testsupport::run("ip", ["netns", "list"]).unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&name));
    assert!(Netns::open(&name).unwrap_err().is_not_found());
    assert!(Netns::remove(&name).unwrap_err().is_not_found());
}

#[tokio::test]
async fn bridge_lifecycle_matches_ip_link() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let br = h.link().add_bridge("ovbr0").await.unwrap();
    assert_eq!(br.kind, Some(LinkKind::Bridge));
    let j = ip_link(&t, "ovbr0").unwrap();
    assert_eq!(j["ifindex"], br.index);
    assert_eq!(j["linkinfo"]["info_kind"], "bridge");
    // Creating it again is AlreadyExists; ensure_bridge returns it.
    let again = h.link().add_bridge("ovbr0").await.unwrap_err();
    assert_eq!(again.kind(), Some(ErrorKind::AlreadyExists));
    assert!(again.to_string().contains("create bridge ovbr0"), "{again}");
    assert_eq!(
        h.link().ensure_bridge("ovbr0").await.unwrap().index,
        br.index
    );

    h.link().set_mtu(br.index, 1400).await.unwrap();
    let mac: MacAddr = "02:11:22:33:44:55".parse().unwrap();
    h.link().set_mac("ovbr0", mac).await.unwrap();
    h.link().set_up(br.index).await.unwrap();
    let j = ip_link(&t, "ovbr0").unwrap();
    assert_eq!(j["mtu"], 1400);
    assert_eq!(j["address"], mac.to_string());
    assert!(has_flag(&j["flags"], "UP"));
    let got = h.link().get("ovbr0").await.unwrap();
    assert!(got.up);
    assert_eq!((got.mtu, got.mac), (Some(1400), Some(mac)));
    assert_eq!(h.link().get(br.index).await.unwrap().name, "ovbr0");

    h.link().set_down("ovbr0").await.unwrap();
    assert!(!has_flag(&ip_link(&t, "ovbr0").unwrap()["flags"], "UP"));
    h.link().rename("ovbr0", "ovbr1").await.unwrap();
    assert!(ip_link(&t, "ovbr0").is_none());
    assert_eq!(ip_link(&t, "ovbr1").unwrap()["ifindex"], br.index);

    let listed: Vec<String> = h
        .link()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let mut ip_names = link_names(&t);
    let mut ours = listed.clone();
    ip_names.sort();
    ours.sort();
    assert_eq!(ours, ip_names);

    h.link().delete("ovbr1").await.unwrap();
    assert!(ip_link(&t, "ovbr1").is_none());
    let missing = h.link().get("ovbr1").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(h.link().find("ovbr1").await.unwrap().is_none());
    assert!(h.link().delete("ovbr1").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn veth_queues_sets_the_queue_counts_of_both_ends_and_the_default_leaves_the_kernels() {
    privileged_test!();
    let host = TestNetns::new().unwrap();
    let pod = TestNetns::new().unwrap();
    let h = netns(&host).handle().unwrap();
    let cfg = VethConfig::new("ovveth1", "eth1")
        .peer_netns(&netns(&pod))
        .queues(1);
    h.link().add_veth(&cfg).await.unwrap();
    for (ns, dev) in [(&host, "ovveth1"), (&pod, "eth1")] {
        let j = ip_link(ns, dev).unwrap();
        assert_eq!(
            (j["num_tx_queues"].as_u64(), j["num_rx_queues"].as_u64()),
            (Some(1), Some(1)),
            "{dev}"
        );
    }
    // Without queues(), the kernel's own choice (one per possible CPU).
    h.link()
        .add_veth(&VethConfig::new("ovveth2", "ovveth3"))
        .await
        .unwrap();
    // The kernel's veth default: one queue per possible CPU ("0-1,4-5").
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let cpus: u64 = possible
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
            None => 1,
        })
        .sum();
    let j = ip_link(&host, "ovveth2").unwrap();
    assert_eq!(j["num_tx_queues"].as_u64(), Some(cpus.min(4096)), "{j}");
    assert_eq!(j["num_tx_queues"], j["num_rx_queues"]);
}

#[tokio::test]
async fn veth_peer_is_created_straight_in_the_other_namespace_and_enslaved_with_hairpin() {
    privileged_test!();
    let host = TestNetns::new().unwrap();
    let pod = TestNetns::new().unwrap();
    let h = netns(&host).handle().unwrap();
    let pod_ns = netns(&pod);
    let peer_mac: MacAddr = "02:00:00:00:aa:01".parse().unwrap();
    let cfg = VethConfig::new("ovveth0", "eth0")
        .peer_netns(&pod_ns)
        .mtu(1450)
        .peer_mac(peer_mac);
    let veth = h.link().add_veth(&cfg).await.unwrap();
    assert_eq!(veth.kind, Some(LinkKind::Veth));
    assert_eq!(ip_link(&host, "ovveth0").unwrap()["mtu"], 1450);
    assert!(ip_link(&host, "eth0").is_none());
    let pod_eth0 = ip_link(&pod, "eth0").unwrap();
    assert_eq!(pod_eth0["mtu"], 1450);
    assert_eq!(pod_eth0["address"], peer_mac.to_string());
    let ph = pod_ns.handle().unwrap();
    let eth0 = ph.link().get("eth0").await.unwrap();
    assert_eq!(eth0.mac, Some(peer_mac));

    // Master, hairpin, nomaster.
    let br = h.link().add_bridge("ovbr0").await.unwrap();
    h.link().set_master(veth.index, br.index).await.unwrap();
    h.link().set_hairpin(veth.index, true).await.unwrap();
    let j = ip_link(&host, "ovveth0").unwrap();
    assert_eq!(j["master"], "ovbr0");
    assert_eq!(j["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(
        h.link().get(veth.index).await.unwrap().master,
        Some(br.index)
    );
    h.link().set_nomaster("ovveth0").await.unwrap();
    assert!(ip_link(&host, "ovveth0").unwrap().get("master").is_none());

    // Creating the same pair again fails and changes nothing.
    let err = h.link().add_veth(&cfg).await.unwrap_err();
    assert!(err.is_already_exists(), "{err}");

    // Move the pod end back to the host namespace, then delete the pair.
    ph.link()
        .move_to_netns("eth0", &netns(&host))
        .await
        .unwrap();
    assert!(ip_link(&pod, "eth0").is_none());
    assert!(ip_link(&host, "eth0").is_some());
    h.link().delete(veth.index).await.unwrap();
    assert!(ip_link(&host, "ovveth0").is_none());
    assert!(ip_link(&host, "eth0").is_none());
}

#[tokio::test]
async fn vxlan_parameters_match_ip_d_link() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let under = h.link().add_bridge("ovunder").await.unwrap();
    let mac: MacAddr = "02:00:00:00:00:42".parse().unwrap();
    let cfg = VxlanConfig::new("ovvx0", vni(4242))
        .local("198.51.100.1".parse().unwrap())
        .underlay(under.index)
        .port(8472)
        .gbp(true)
        .mtu(1400)
        .mac(mac);
    let vx = h.link().add_vxlan(&cfg).await.unwrap();
    let j = ip_link(&t, "ovvx0").unwrap();
    let d = &j["linkinfo"]["info_data"];
    assert_eq!(j["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(d["id"], 4242);
    assert_eq!(d["local"], "198.51.100.1");
    assert_eq!(d["link"], "ovunder");
    assert_eq!(d["port"], 8472);
    assert_eq!(d["learning"], false);
    assert_eq!(d["gbp"], true);
    assert_eq!(j["mtu"], 1400);
    assert_eq!(j["address"], mac.to_string());
    let info = vx.vxlan.clone().unwrap();
    assert_eq!(info.vni.get(), 4242);
    assert_eq!(info.underlay, Some(under.index));
    assert!(cfg.is_compatible(&vx));

    // IPv6 local and learning on.
    let v6 = h
        .link()
        .add_vxlan(
            &VxlanConfig::new("ovvx6", vni(7))
                .local("2001:db8::1".parse().unwrap())
                .learning(true),
        )
        .await
        .unwrap();
    let j6 = ip_link(&t, "ovvx6").unwrap();
    assert_eq!(j6["linkinfo"]["info_data"]["local6"], "2001:db8::1");
    assert_eq!(j6["linkinfo"]["info_data"]["learning"], true);
    assert_eq!(j6["linkinfo"]["info_data"]["port"], 4789);
    assert_eq!(
        v6.vxlan.unwrap().local,
        Some("2001:db8::1".parse().unwrap())
    );
}

#[tokio::test]
async fn ensure_vxlan_keeps_compatible_updates_mtu_and_recreates_incompatible() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let cfg = VxlanConfig::new("ovvx0", vni(1))
        .local("198.51.100.1".parse().unwrap())
        .port(8472);
    let (first, o) = h.link().ensure_vxlan(&cfg).await.unwrap();
    assert_eq!(o, Ensured::Created);
    let (same, o) = h.link().ensure_vxlan(&cfg).await.unwrap();
    assert_eq!((o, same.index), (Ensured::Unchanged, first.index));
    let (upd, o) = h.link().ensure_vxlan(&cfg.clone().mtu(1300)).await.unwrap();
    assert_eq!(
        (o, upd.index, upd.mtu),
        (Ensured::Updated, first.index, Some(1300))
    );
    assert_eq!(ip_link(&t, "ovvx0").unwrap()["mtu"], 1300);
    // Another VNI is incompatible: a new device replaces the old one.
    let (re, o) = h
        .link()
        .ensure_vxlan(&VxlanConfig::new("ovvx0", vni(2)).port(8472))
        .await
        .unwrap();
    assert_eq!(o, Ensured::Recreated);
    assert_ne!(re.index, first.index);
    assert_eq!(
        ip_link(&t, "ovvx0").unwrap()["linkinfo"]["info_data"]["id"],
        2
    );
    // A bridge with the name is replaced too.
    h.link().add_bridge("ovvx1").await.unwrap();
    let (_, o) = h
        .link()
        .ensure_vxlan(&VxlanConfig::new("ovvx1", vni(3)))
        .await
        .unwrap();
    assert_eq!(o, Ensured::Recreated);
    assert_eq!(
        ip_link(&t, "ovvx1").unwrap()["linkinfo"]["info_kind"],
        "vxlan"
    );
}

#[tokio::test]
async fn dummy_is_created_or_refused_as_not_supported_without_leftovers() {
    privileged_test!();
    // This machine's kernel has no dummy driver (see COMMON.md); where it has
    // one, the link must be a real dummy. Either way the outcome is checked.
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    match h.link().add_dummy("ovdum0").await {
        Ok(link) => {
            assert_eq!(link.kind, Some(LinkKind::Dummy));
            assert_eq!(
                ip_link(&t, "ovdum0").unwrap()["linkinfo"]["info_kind"],
                "dummy"
            );
        }
        Err(e) => {
            assert_eq!(e.kind(), Some(ErrorKind::NotSupported), "{e}");
            assert!(e.to_string().starts_with("create dummy ovdum0"), "{e}");
            assert_eq!(link_names(&t), ["lo"]);
        }
    }
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_creates_nothing() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let long = h.link().add_bridge("ovt-sixteen-byte").await.unwrap_err();
    assert!(matches!(
        long,
        Error::InvalidInput {
            source: InvalidInput::NameTooLong { len: 16, .. },
            ..
        }
    ));
    let slash = h.link().add_bridge("ov/br").await.unwrap_err();
    assert!(matches!(
        slash,
        Error::InvalidInput {
            source: InvalidInput::NameCharacter { ch: '/', .. },
            ..
        }
    ));
    // A VNI over 24 bits cannot be built: `Vni::new` refuses it.
    assert!(overlay_netlink::Vni::new(0x0100_0000).is_err());
    let fam = h
        .link()
        .add_vxlan(
            &VxlanConfig::new("ovvx0", vni(1))
                .local("198.51.100.1".parse().unwrap())
                .remote("2001:db8::2".parse().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        fam,
        Error::InvalidInput {
            source: InvalidInput::FamilyMismatch { .. },
            ..
        }
    ));
    let veth = h
        .link()
        .add_veth(&VethConfig::new("ovv0", "peer name"))
        .await
        .unwrap_err();
    assert!(matches!(veth, Error::InvalidInput { .. }));
    assert_eq!(link_names(&t), ["lo"]);

    // A namespace that does not exist: typed error, and no file is created.
    let missing = unique_name("mi");
    let err = Netns::open(&missing).unwrap_err();
    assert!(matches!(err, Error::NamespaceNotFound { .. }), "{err}");
    assert!(!std::path::Path::new("/run/netns").join(&missing).exists());

    // The kernel refusing a veth peer in a namespace fd that is gone is
    // impossible to express (the fd keeps it alive), so check the
    // kernel-side failure path with a peer name that exists in the target.
    let pod = TestNetns::new().unwrap();
    pod.ip(["link", "add", "eth0", "type", "bridge"]).unwrap();
    let err = h
        .link()
        .add_veth(&VethConfig::new("ovv0", "eth0").peer_netns(&netns(&pod)))
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(link_names(&t), ["lo"]);
}

#[tokio::test]
async fn link_events_report_created_changed_and_deleted() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let mut events = h.link_events().await.unwrap();
    let br = h.link().add_bridge("ovbr0").await.unwrap();
    h.link().set_mtu(br.index, 1400).await.unwrap();
    h.link().delete(br.index).await.unwrap();
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(LinkEvent::Deleted(_))) {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("link event within 5 s")
            .unwrap();
        seen.push(e);
    }
    assert!(matches!(&seen[0], LinkEvent::Created(l) if l.name == "ovbr0" && l.index == br.index));
    assert!(
        seen.iter()
            .any(|e| matches!(e, LinkEvent::Changed(l) if l.mtu == Some(1400)))
    );
    assert!(matches!(seen.last(), Some(LinkEvent::Deleted(l)) if l.index == br.index));

    // The channel form delivers the same kind of events.
    let mut rx = h.link_events().await.unwrap().into_receiver(16);
    h.link().add_bridge("ovbr1").await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(e, LinkEvent::Created(l) if l.name == "ovbr1"));
}

#[tokio::test]
async fn sysctls_are_read_and_written_inside_the_namespace_only() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ns = netns(&t);
    ns.sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(ns.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let out = t.exec(["cat", "/proc/sys/net/ipv4/ip_forward"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    ns.sysctl_set("net/ipv4/ip_forward", "0").unwrap();
    assert_eq!(ns.sysctl_get("net/ipv4/ip_forward").unwrap(), "0");
    let missing = ns
        .sysctl_get("net.ipv4.conf.ovt-nope.forwarding")
        .unwrap_err();
    assert!(
        matches!(
            missing,
            Error::Sysctl {
                operation: "read",
                ..
            }
        ),
        "{missing}"
    );
    // `run` executes inside the namespace: it sees the namespace's links.
    let names = ns
        .run(|| {
            std::fs::read_dir("/proc/self/net/dev").map(|_| ()).ok();
            std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default()
        })
        .unwrap();
    assert!(names.contains("lo:"));
    t.ip(["link", "add", "ovbr9", "type", "bridge"]).unwrap();
    let names = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default())
        .unwrap();
    assert!(names.contains("ovbr9:"));
}

/// The inode of the calling thread's network namespace.
fn own_netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[tokio::test]
async fn handle_on_current_thread_works_in_the_namespace_and_leaves_the_thread_home() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let home = own_netns_inode();
    let h = netns(&t).handle_on_current_thread().unwrap();
    assert_eq!(
        own_netns_inode(),
        home,
        "the thread is back in its namespace"
    );
    h.link().add_bridge("ovbr7").await.unwrap();
    // The bridge is in the test namespace, as `ip` there reports, and the
    // handle sees that namespace's links only.
    assert!(ip_link(&t, "ovbr7").is_some());
    let names: Vec<String> = h
        .link()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"lo".to_string()) && names.contains(&"ovbr7".to_string()));
    assert_eq!(own_netns_inode(), home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_on_current_thread_inside_a_task_works_and_leaves_the_worker_in_its_namespace() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ns = netns(&t);
    let (home, after, names) = tokio::spawn(async move {
        // A worker thread of the runtime: it must never change namespace.
        let home = own_netns_inode();
        let h = ns.handle_on_current_thread().unwrap();
        let after = own_netns_inode();
        h.link().add_bridge("ovbr6").await.unwrap();
        let names: Vec<String> = h
            .link()
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        (home, after, names)
    })
    .await
    .unwrap();
    assert_eq!(home, after);
    assert!(names.contains(&"ovbr6".to_string()), "{names:?}");
    assert!(ip_link(&t, "ovbr6").is_some());
}

#[tokio::test]
async fn handle_on_current_thread_of_a_non_namespace_fails_and_changes_nothing() {
    privileged_test!();
    let home = own_netns_inode();
    let not_a_namespace = overlay_netlink::Netns::open_path("/proc/self/status").unwrap();
    let err = not_a_namespace.handle_on_current_thread().unwrap_err();
    assert!(
        matches!(
            err,
            overlay_netlink::Error::Namespace {
                operation: "enter",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("/proc/self/status"), "{err}");
    assert_eq!(own_netns_inode(), home);
}

#[tokio::test]
async fn handles_are_shared_across_tasks_and_dropping_them_releases_the_namespace() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let h = netns(&t).handle().unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.link().add_bridge(&format!("ovbr{i}")).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(h.link().list().await.unwrap().len(), 9);
    drop(h);
}

#[tokio::test]
async fn a_batch_reports_each_failure_in_place_even_without_per_request_acks() {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
    use overlay_netlink::transport::{Request, SocketTransport, Transport};

    privileged_test!();
    let t = TestNetns::new().unwrap();
    let rt = tokio::runtime::Handle::current();
    // A raw transport opened inside the namespace.
    let transport = netns(&t)
        .run(move || {
            let _entered = rt.enter();
            SocketTransport::new()
        })
        .unwrap()
        .unwrap();
    let bridge = |name: &str| {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        Request::new(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
    };
    // Changes in the middle of a window go without an ACK of their own; the
    // failing one must still get its error, and the others success.
    let mut requests = vec![bridge("ovbra"), bridge("ovbra"), bridge("ovbrb")];
    requests.push(Request::new(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    ));
    requests.push(bridge("ovbrb"));
    let replies = transport.exchange(requests).await.unwrap();
    assert_eq!(replies.len(), 5);
    assert!(replies[0].is_ok());
    assert_eq!(replies[1].as_ref().unwrap_err().errno, libc::EEXIST);
    assert!(replies[2].is_ok());
    assert_eq!(replies[3].as_ref().unwrap().len(), 3); // lo, ovbra, ovbrb
    assert_eq!(replies[4].as_ref().unwrap_err().errno, libc::EEXIST);
    let mut names = link_names(&t);
    names.sort();
    assert_eq!(names, ["lo", "ovbra", "ovbrb"]);

    // Hundreds of changes in one exchange: every one is answered.
    let many: Vec<Request> = (0..300).map(|i| bridge(&format!("ovm{i}"))).collect();
    let replies = transport.exchange(many).await.unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    assert_eq!(link_names(&t).len(), 303);
}

#[tokio::test]
async fn veth_created_with_master_and_up_is_attached_and_up() {
    privileged_test!();
    let host = TestNetns::new().unwrap();
    let pod = TestNetns::new().unwrap();
    let h = netns(&host).handle().unwrap();
    let br = h.link().add_bridge("ovbr0").await.unwrap();
    let cfg = VethConfig::new("ovveth0", "eth0")
        .peer_netns(&netns(&pod))
        .master(br.index)
        .up();
    let veth = h.link().add_veth(&cfg).await.unwrap();
    assert_eq!(veth.master, Some(br.index));
    let host_end = ip_link(&host, "ovveth0").unwrap();
    assert_eq!(host_end["master"], "ovbr0");
    assert!(has_flag(&host_end["flags"], "UP"));
    // The peer end is created down (the kernel cannot bring it up before
    // the pair is joined).
    let pod_end = ip_link(&pod, "eth0").unwrap();
    assert!(!has_flag(&pod_end["flags"], "UP"));
    // A master that does not exist fails the creation and leaves nothing.
    let bad = VethConfig::new("ovveth1", "eth1")
        .peer_netns(&netns(&pod))
        .master(999_999);
    assert!(h.link().add_veth(&bad).await.is_err());
    assert!(ip_link(&host, "ovveth1").is_none());
    assert!(ip_link(&pod, "eth1").is_none());
}

#[tokio::test]
async fn a_created_link_is_returned_as_a_look_up_reports_it() {
    // Creation takes the link from the kernel's echo where the kernel
    // sends one (6.3 and later), and looks it up otherwise: either way the
    // caller gets what a look-up right after the creation reports.
    privileged_test!();
    let host = TestNetns::new().unwrap();
    let pod = TestNetns::new().unwrap();
    let h = netns(&host).handle().unwrap();
    // Carrier (`lower_up`) follows asynchronously; all else is settled.
    let settled = |l: &overlay_netlink::Link| {
        let mut l = l.clone();
        l.lower_up = false;
        l
    };
    let br = h.link().add_bridge("ovbr0").await.unwrap();
    assert_eq!(
        settled(&br),
        settled(&h.link().get(br.index).await.unwrap())
    );
    let veth = VethConfig::new("ovveth0", "eth0")
        .peer_netns(&netns(&pod))
        .peer_mac("02:00:00:00:00:07".parse().unwrap())
        .master(br.index)
        .mtu(1400)
        .queues(1)
        .up();
    let veth = h.link().add_veth(&veth).await.unwrap();
    assert_eq!(veth.master, Some(br.index));
    assert_eq!(
        settled(&veth),
        settled(&h.link().get(veth.index).await.unwrap())
    );
    let vxlan = VxlanConfig::new("ovvx0", vni(42))
        .local("198.51.100.1".parse().unwrap())
        .underlay(br.index)
        .mtu(1350);
    let vxlan = h.link().add_vxlan(&vxlan).await.unwrap();
    assert_eq!(
        settled(&vxlan),
        settled(&h.link().get(vxlan.index).await.unwrap())
    );
}

/// The kernel's own link-local address of a device (addrgenmode eui64, the
/// default) is what `MacAddr::ipv6_link_local` computes, also for a MAC
/// whose U/L bit is clear, so `RemotePeer::on_underlay` names the address
/// the peer's VXLAN device really has.
#[test]
fn kernel_link_local_addresses_are_the_macs_modified_eui64() {
    privileged_test!();
    let ns = TestNetns::with_kind("ll").unwrap();
    // One MAC with the U/L bit set (as ours are), one without.
    let (a, b) = ("02:42:ac:11:00:02", "00:1b:21:3a:4f:5e");
    let (na, nb) = (unique_name("va"), unique_name("vb"));
    ns.ip([
        "link", "add", &na, "address", a, "type", "veth", "peer", "name", &nb, "address", b,
    ])
    .unwrap();
    for n in [&na, &nb] {
        ns.ip(["link", "set", n, "up"]).unwrap();
    }
    for (name, mac) in [(&na, a), (&nb, b)] {
        let mac: MacAddr = mac.parse().unwrap();
        // The kernel adds the address once the link's carrier is up.
        let mut kernel = None;
        for _ in 0..100 {
            let out = ns
                .ip(["-6", "-j", "addr", "show", "dev", name, "scope", "link"])
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            kernel = json[0]["addr_info"][0]["local"].as_str().map(str::to_owned);
            if kernel.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let kernel: std::net::Ipv6Addr = kernel.expect("no link-local address").parse().unwrap();
        assert_eq!(mac.ipv6_link_local(), kernel, "{name} ({mac})");
    }
}
