//! Privileged tests of the test-support crate itself.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use overlay_testsupport::{TestNetns, list_test_netns, privileged_test, veth_between};

fn netns_listed(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn namespace_is_gone_after_panicking_test_body() {
    privileged_test!();
    let mut seen: Option<(String, PathBuf)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = TestNetns::new().unwrap();
        ns.ip(["link", "add", "ovt-br0", "type", "bridge"]).unwrap();
        seen = Some((ns.name().to_string(), ns.path().to_path_buf()));
        assert!(netns_listed(ns.name()));
        panic!("test body fails on purpose");
    }));
    assert!(result.is_err(), "the body panicked");
    let (name, path) = seen.expect("the body ran far enough to record the name");
    assert!(!path.exists(), "{} still exists", path.display());
    assert!(!netns_listed(&name), "{name} still listed by ip netns");
}

#[test]
fn twenty_parallel_guards_get_distinct_names_and_all_vanish() {
    privileged_test!();
    let barrier = std::sync::Barrier::new(20);
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let ns = TestNetns::new().unwrap();
                    assert!(ns.path().exists());
                    let name = ns.name().to_string();
                    // Hold every guard until all 20 exist at once.
                    barrier.wait();
                    name
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 20, "names: {names:?}");
    let left = list_test_netns();
    for n in &names {
        assert!(!left.contains(n), "{n} left behind");
    }
}

#[test]
fn run_in_executes_inside_the_namespace() {
    privileged_test!();
    let ns = TestNetns::new().unwrap();
    let ours = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    let theirs = std::fs::metadata(ns.path()).unwrap().ino();
    let inside = ns
        .run_in(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino())
        .unwrap();
    assert_eq!(inside, theirs);
    assert_ne!(inside, ours);
    // The calling thread did not move.
    assert_eq!(
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
        ours
    );
}

#[test]
fn run_in_propagates_a_panic() {
    privileged_test!();
    let ns = TestNetns::new().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run_in(|| panic!("inside")).unwrap();
    }));
    assert!(r.is_err());
}

#[test]
fn veth_between_carries_ipv4_and_ipv6_traffic() {
    privileged_test!();
    let a = TestNetns::with_kind("a").unwrap();
    let b = TestNetns::with_kind("b").unwrap();
    let v4 = veth_between(
        &a,
        "198.51.100.1/24".parse().unwrap(),
        &b,
        "198.51.100.2/24".parse().unwrap(),
    )
    .unwrap();
    let out = a.exec(["ping", "-c1", "-W2", "198.51.100.2"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v6 = veth_between(
        &a,
        "2001:db8::1/64".parse().unwrap(),
        &b,
        "2001:db8::2/64".parse().unwrap(),
    )
    .unwrap();
    assert_ne!(v4.a_name, v6.a_name);
    let out = a.exec(["ping", "-6", "-c1", "-W2", "2001:db8::2"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn deleting_one_end_namespace_removes_the_pair() {
    privileged_test!();
    let a = TestNetns::new().unwrap();
    let link = {
        let b = TestNetns::new().unwrap();
        veth_between(
            &a,
            "203.0.113.1/30".parse().unwrap(),
            &b,
            "203.0.113.2/30".parse().unwrap(),
        )
        .unwrap()
    };
    // b is gone; the kernel tears its namespace down asynchronously, and the
    // veth end in a goes with it. Wait for that, with a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while a.ip(["link", "show", link.a_name.as_str()]).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "veth end survived its peer's namespace"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn link_names_lists_links_without_peer_suffix_and_filters_by_kind() {
    privileged_test!();
    let a = TestNetns::new().unwrap();
    let b = TestNetns::new().unwrap();
    let link = veth_between(
        &a,
        "198.51.100.1/30".parse().unwrap(),
        &b,
        "198.51.100.2/30".parse().unwrap(),
    )
    .unwrap();
    a.ip(["link", "add", "ovt-br0", "type", "bridge"]).unwrap();
    let mut all = a.link_names(None).unwrap();
    all.sort();
    let mut expected = vec!["lo".to_string(), "ovt-br0".to_string(), link.a_name.clone()];
    expected.sort();
    assert_eq!(all, expected);
    assert_eq!(a.link_names(Some("veth")).unwrap(), vec![link.a_name]);
    assert_eq!(a.link_names(Some("bridge")).unwrap(), vec!["ovt-br0"]);
}

#[test]
fn named_guard_uses_the_given_name_and_kills_processes_inside_on_drop() {
    privileged_test!();
    let name = overlay_testsupport::unique_name("nm").replacen("ovt-", "ovt-named-", 1);
    let ns = TestNetns::named(name.clone()).unwrap();
    assert_eq!(ns.name(), name);
    assert!(netns_listed(&name));
    // A process left inside: dropping the guard must kill it, not wait on it.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", name.as_str(), "sleep", "600"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", name.as_str()])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never showed up in {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(ns);
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "sleep was killed, not finished: {status}"
    );
    assert!(!netns_listed(&name), "{name} still listed by ip netns");
}

#[test]
fn kept_guard_leaves_the_namespace_in_place() {
    privileged_test!();
    let ns = TestNetns::new().unwrap();
    let path = ns.path().to_path_buf();
    let name = ns.keep();
    assert!(netns_listed(&name), "{name} was deleted although kept");
    assert!(path.exists());
    // Clean up by hand, as a user of `--keep` would.
    overlay_testsupport::run("ip", ["netns", "del", name.as_str()]).unwrap();
    assert!(!netns_listed(&name));
}
