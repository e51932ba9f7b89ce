//! Helpers shared by the privileged integration tests: JSON views of what
//! `ip` and `bridge` report inside a test namespace.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use overlay_netlink::Netns;
use overlay_testsupport::TestNetns;
use serde_json::Value;

/// A VNI the test knows fits 24 bits.
pub fn vni(value: u32) -> overlay_netlink::Vni {
    overlay_netlink::Vni::new(value).unwrap()
}

/// Open our `Netns` on a test namespace.
pub fn netns(ns: &TestNetns) -> Netns {
    Netns::open_path(ns.path()).unwrap()
}

/// `ip -n NS -j ARGS...`, parsed.
pub fn ip_json(ns: &TestNetns, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = ns.ip(full).unwrap();
    if out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return Value::Array(Vec::new());
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `bridge -n NS ARGS...`, which must succeed.
pub fn bridge(ns: &TestNetns, args: &[&str]) -> std::process::Output {
    let mut full = vec!["-n", ns.name()];
    full.extend_from_slice(args);
    overlay_testsupport::run("bridge", full).unwrap()
}

/// `bridge -n NS -j ARGS...`, parsed.
pub fn bridge_json(ns: &TestNetns, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = bridge(ns, &full);
    if out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return Value::Array(Vec::new());
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `ip -d -j link show DEV` object of one link, or `None` if it is absent.
pub fn ip_link(ns: &TestNetns, dev: &str) -> Option<Value> {
    let all = ip_json(ns, &["-d", "link", "show"]);
    all.as_array()?.iter().find(|l| l["ifname"] == dev).cloned()
}

/// Names of all links in the namespace, per `ip link`.
pub fn link_names(ns: &TestNetns) -> Vec<String> {
    ns.link_names(None).unwrap()
}

/// Whether `flags` (a JSON array of strings) contains `flag`.
pub fn has_flag(v: &Value, flag: &str) -> bool {
    v.as_array().is_some_and(|a| a.iter().any(|f| f == flag))
}
