//! `overlay-bridge`'s in-process `host-local` IPAM against Debian's
//! reference `host-local` (spawned by the reference `bridge` plugin, or by
//! our plugin with `"ipam": {"delegate": true}`) on one data directory:
//! neither hands out an address the other holds, a DEL by either releases
//! what the other allocated, and their locks exclude each other under
//! parallel ADDs. Every plugin runs inside a test host namespace; every case
//! checks that nothing is left behind.

// Helpers of the tests below: a failed unwrap is a failing test.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::Path;

use overlay_testsupport::{TestNetns, privileged_test, unique_name};
use serde_json::{Value, json};
use support::{CniEnv, DEBIAN_PLUGINS, Host, result_ips};

/// Our plugin's (or, with `plugin: "bridge"`, the reference plugin's)
/// config: one network `ovtnet` on `bridge`, host-local IPAM in the host's
/// data directory, optionally forced to delegate.
fn conf(host: &Host, plugin: &str, bridge: &str, delegate: bool) -> Value {
    let mut ipam = host.host_local("198.18.20.0/24");
    if delegate {
        ipam["delegate"] = json!(true);
    }
    json!({
        "cniVersion": "1.0.0",
        "name": "ovtnet",
        "type": plugin,
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipam": ipam,
    })
}

fn program(conf: &Value) -> std::path::PathBuf {
    match conf["type"].as_str().unwrap() {
        "bridge" => Path::new(DEBIAN_PLUGINS).join("bridge"),
        _ => support::overlay_bridge(),
    }
}

fn exec(host: &Host, command: &str, cid: &str, pod: &TestNetns, conf: &Value) -> Value {
    let env = CniEnv::new(command, cid, pod.path(), "eth0", &host.cni_path());
    let out = host.exec_plugin(&program(conf), &env, &serde_json::to_vec(conf).unwrap());
    out.ok()
}

/// The owner recorded in the reservation file of `ip`.
fn owner_of(host: &Host, ip: &str) -> String {
    fs::read_to_string(host.ipam_dir().join("ovtnet").join(ip)).unwrap()
}

fn reserved(host: &Host, ip: &str) -> bool {
    host.ipam_dir().join("ovtnet").join(ip).exists()
}

#[test]
fn in_process_and_reference_host_local_share_one_data_dir() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    let ours = conf(&host, "overlay-bridge", &bridge, false);
    let reference = conf(&host, "bridge", &bridge, false);
    let pods: Vec<TestNetns> = (0..3)
        .map(|_| TestNetns::with_kind("pod").unwrap())
        .collect();

    let a = result_ips(&exec(&host, "ADD", "cid-a", &pods[0], &ours));
    let b = result_ips(&exec(&host, "ADD", "cid-b", &pods[1], &reference));
    let c = result_ips(&exec(&host, "ADD", "cid-c", &pods[2], &ours));
    // host-local's round-robin order continues across both implementations.
    assert_eq!(a, ["198.18.20.2"]);
    assert_eq!(b, ["198.18.20.3"]);
    assert_eq!(c, ["198.18.20.4"]);
    assert_eq!(owner_of(&host, "198.18.20.2"), "cid-a\r\neth0");
    assert_eq!(owner_of(&host, "198.18.20.3"), "cid-b\r\neth0");
    assert_eq!(
        fs::read_to_string(host.ipam_dir().join("ovtnet/last_reserved_ip.0")).unwrap(),
        "198.18.20.4"
    );

    // CHECK: our plugin finds its reservation, Debian's host-local finds
    // ours too, and our plugin fails CHECK (code 103) once the reservation
    // is gone.
    let mut with_prev = ours.clone();
    with_prev["prevResult"] =
        json!({"cniVersion": "1.0.0", "ips": [{"address": "198.18.20.2/24"}]});
    assert_eq!(
        exec(&host, "CHECK", "cid-a", &pods[0], &with_prev),
        json!({})
    );
    let hl = Path::new(DEBIAN_PLUGINS).join("host-local");
    let hl_check = CniEnv::new("CHECK", "cid-a", pods[0].path(), "eth0", &host.cni_path());
    host.exec_plugin(&hl, &hl_check, &serde_json::to_vec(&ours).unwrap())
        .ok();
    let saved = owner_of(&host, "198.18.20.2");
    fs::remove_file(host.ipam_dir().join("ovtnet/198.18.20.2")).unwrap();
    let env = CniEnv::new("CHECK", "cid-a", pods[0].path(), "eth0", &host.cni_path());
    let err = host
        .exec_plugin(
            &program(&ours),
            &env,
            &serde_json::to_vec(&with_prev).unwrap(),
        )
        .cni_error(103);
    assert!(err["msg"].as_str().unwrap().contains("cid-a"), "{err}");
    fs::write(host.ipam_dir().join("ovtnet/198.18.20.2"), saved).unwrap();

    for (cid, pod, conf) in [
        ("cid-a", &pods[0], &ours),
        ("cid-b", &pods[1], &reference),
        ("cid-c", &pods[2], &ours),
    ] {
        exec(&host, "DEL", cid, pod, conf);
    }
    host.assert_clean(&[&bridge], &[]);
}

#[test]
fn a_del_by_either_implementation_releases_what_the_other_allocated() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    let in_process = conf(&host, "overlay-bridge", &bridge, false);
    let delegated = conf(&host, "overlay-bridge", &bridge, true);
    let pod = TestNetns::with_kind("pod").unwrap();

    // Debian's host-local allocates (delegation forced); ours releases.
    let ip = result_ips(&exec(&host, "ADD", "cid-x", &pod, &delegated)).remove(0);
    assert!(reserved(&host, &ip));
    exec(&host, "DEL", "cid-x", &pod, &in_process);
    assert!(!reserved(&host, &ip), "in-process DEL released {ip}");

    // Ours allocates; Debian's host-local releases.
    let ip = result_ips(&exec(&host, "ADD", "cid-y", &pod, &in_process)).remove(0);
    assert!(reserved(&host, &ip));
    exec(&host, "DEL", "cid-y", &pod, &delegated);
    assert!(!reserved(&host, &ip), "delegated DEL released {ip}");
    host.assert_clean(&[&bridge], &[]);
}

#[test]
fn parallel_adds_mixing_both_implementations_get_distinct_addresses() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    let confs = [
        conf(&host, "overlay-bridge", &bridge, false),
        conf(&host, "overlay-bridge", &bridge, true),
        conf(&host, "bridge", &bridge, false),
    ];
    // The bridge exists before the parallel part, as on a running node.
    let first = TestNetns::with_kind("pod").unwrap();
    exec(&host, "ADD", "cid-first", &first, &confs[0]);
    let pods: Vec<TestNetns> = (0..12)
        .map(|_| TestNetns::with_kind("pod").unwrap())
        .collect();
    let ips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (host, conf) = (&host, &confs[i % confs.len()]);
                s.spawn(move || result_ips(&exec(host, "ADD", &format!("cid-{i}"), pod, conf)))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), pods.len(), "duplicate addresses in {ips:?}");
    for (i, pod) in pods.iter().enumerate() {
        exec(
            &host,
            "DEL",
            &format!("cid-{i}"),
            pod,
            &confs[i % confs.len()],
        );
    }
    exec(&host, "DEL", "cid-first", &first, &confs[0]);
    host.assert_clean(&[&bridge], &[]);
}

#[test]
fn gc_keeps_valid_attachments_and_status_reports_ready() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    let pod = TestNetns::with_kind("pod").unwrap();
    let ours = conf(&host, "overlay-bridge", &bridge, false);
    let mut v1_1 = ours.clone();
    v1_1["cniVersion"] = json!("1.1.0");
    let kept = result_ips(&exec(&host, "ADD", "cid-keep", &pod, &v1_1)).remove(0);
    // A stale reservation of a container that no longer exists, written by
    // Debian's host-local.
    let hl = Path::new(DEBIAN_PLUGINS).join("host-local");
    let stale_env = CniEnv::new("ADD", "cid-gone", pod.path(), "eth0", &host.cni_path());
    let stale = result_ips(
        &host
            .exec_plugin(&hl, &stale_env, &serde_json::to_vec(&ours).unwrap())
            .ok(),
    )
    .remove(0);

    let valid = json!([{"containerID": "cid-keep", "ifname": "eth0"}]);
    let mut gc = v1_1.clone();
    gc["cni.dev/valid-attachments"] = valid.clone();
    gc["cni.dev/attachments"] = valid;
    let mut env = CniEnv::new("GC", "x", pod.path(), "eth0", &host.cni_path());
    env.container_id = None;
    env.netns = None;
    env.ifname = None;
    let program = support::overlay_bridge();
    host.exec_plugin(&program, &env, &serde_json::to_vec(&gc).unwrap())
        .ok();
    assert!(reserved(&host, &kept), "valid attachment kept");
    assert!(!reserved(&host, &stale), "stale reservation collected");

    let status = env.clone().command("STATUS");
    host.exec_plugin(&program, &status, &serde_json::to_vec(&v1_1).unwrap())
        .ok();

    // A data directory that cannot be created: not ready, code 50.
    let blocker = host.dir.path().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let mut broken = v1_1.clone();
    broken["ipam"]["dataDir"] = json!(blocker.join("ipam"));
    let err = host
        .exec_plugin(&program, &status, &serde_json::to_vec(&broken).unwrap())
        .cni_error(50);
    assert!(err["msg"].as_str().unwrap().contains("not-a-dir"), "{err}");

    exec(&host, "DEL", "cid-keep", &pod, &v1_1);
    host.assert_clean(&[&bridge], &[]);
}

/// DEL returns once the kernel has announced the veth pair deleted, while a
/// helper process waits out the kernel's deferred teardown: the names are
/// free at once, so re-adding the same attachment right away succeeds.
#[test]
fn the_same_attachment_can_be_added_again_right_after_del() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    let ours = conf(&host, "overlay-bridge", &bridge, false);
    let pod = TestNetns::with_kind("pod").unwrap();
    for _ in 0..5 {
        exec(&host, "ADD", "cid-again", &pod, &ours);
        exec(&host, "DEL", "cid-again", &pod, &ours);
        let links = support::links_of(&pod);
        assert!(!links.contains("eth0"), "eth0 still in the pod: {links:?}");
    }
    host.assert_clean(&[&bridge], &[]);
}

/// Our plugin's 1.1.0 config for network `ovtnet` with one in-process
/// host-local range set `range` (a JSON range object).
fn conf_1_1(host: &Host, bridge: &str, range: Value) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "ovtnet",
        "type": "overlay-bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": host.ipam_dir(), "ranges": [[range]]},
    })
}

fn gc_or_status_env(host: &Host, command: &str) -> CniEnv {
    let mut env = CniEnv::new(command, "x", Path::new("/"), "eth0", &host.cni_path());
    env.container_id = None;
    env.netns = None;
    env.ifname = None;
    env
}

/// Issue 9, item 1: an attachment the runtime does not list (it never
/// cached it, say) but that is still wired is released whole by GC: its
/// veth pair, with the pod's address, goes before its reservation. On a
/// range of two addresses, the third ADD then gets the collected
/// attachment's address, which no live interface holds any more.
#[test]
fn gc_releases_a_live_stale_attachment_whole_so_no_add_reuses_a_live_address() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    // 192.0.2.1 is the gateway: .2 and .3 are the only addresses.
    let conf = conf_1_1(
        &host,
        &bridge,
        json!({"subnet": "192.0.2.0/29", "rangeStart": "192.0.2.2", "rangeEnd": "192.0.2.3"}),
    );
    let pods: Vec<TestNetns> = (0..3)
        .map(|_| TestNetns::with_kind("pod").unwrap())
        .collect();
    let all: Vec<&TestNetns> = pods.iter().collect();
    let add = |cid: &str, pod: &TestNetns| {
        let live = support::live_addresses(&all);
        let result = exec(&host, "ADD", cid, pod, &conf);
        support::assert_no_duplicate_address(&result, &live, &all);
        result_ips(&result)
    };
    assert_eq!(add("cid-kept", &pods[0]), ["192.0.2.2"]);
    assert_eq!(add("cid-stale", &pods[1]), ["192.0.2.3"]);
    let links_with_both = host.snapshot().links;

    let mut gc = conf.clone();
    let valid = json!([{"containerID": "cid-kept", "ifname": "eth0"}]);
    gc["cni.dev/valid-attachments"] = valid.clone();
    gc["cni.dev/attachments"] = valid;
    let env = gc_or_status_env(&host, "GC");
    host.exec_plugin(
        &support::overlay_bridge(),
        &env,
        &serde_json::to_vec(&gc).unwrap(),
    )
    .ok();
    assert!(reserved(&host, "192.0.2.2"), "the valid attachment is kept");
    assert!(!reserved(&host, "192.0.2.3"), "the stale one is released");
    assert!(
        !support::links_of(&pods[1]).contains("eth0"),
        "the stale attachment's pod interface is gone"
    );
    assert_eq!(
        host.snapshot().links.len(),
        links_with_both.len() - 1,
        "its host veth is gone, the kept one's stays"
    );
    assert!(support::links_of(&pods[0]).contains("eth0"));

    assert_eq!(add("cid-new", &pods[2]), ["192.0.2.3"]);
    for (cid, pod) in [("cid-kept", &pods[0]), ("cid-new", &pods[2])] {
        exec(&host, "DEL", cid, pod, &conf);
    }
    // DEL of the collected attachment still succeeds.
    exec(&host, "DEL", "cid-stale", &pods[1], &conf);
    host.assert_clean(&[&bridge], &[]);
}

/// Issue 9, item 2: STATUS says when an ADD cannot succeed because the
/// network has no free address left, and says ready again once one is free.
#[test]
fn status_is_code_50_while_the_range_has_no_free_address() {
    privileged_test!();
    let host = Host::new();
    let bridge = unique_name("br");
    // 198.51.100.0/30: .1 is the gateway, .2 the only address to give.
    let conf = conf_1_1(&host, &bridge, json!({"subnet": "198.51.100.0/30"}));
    let program = support::overlay_bridge();
    let stdin = serde_json::to_vec(&conf).unwrap();
    let status = gc_or_status_env(&host, "STATUS");
    host.exec_plugin(&program, &status, &stdin).ok();

    let pods = [
        TestNetns::with_kind("pod").unwrap(),
        TestNetns::with_kind("pod").unwrap(),
    ];
    exec(&host, "ADD", "cid-only", &pods[0], &conf);
    let err = host.exec_plugin(&program, &status, &stdin).cni_error(50);
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains("no free address"), "{err}");
    assert!(msg.contains("198.51.100.2"), "names the range: {err}");
    // STATUS was right: an ADD now fails (and leaves nothing).
    let env = CniEnv::new("ADD", "cid-more", pods[1].path(), "eth0", &host.cni_path());
    host.exec_plugin(&program, &env, &stdin).cni_error(103);
    assert_eq!(support::links_of(&pods[1]).len(), 1, "only lo");

    exec(&host, "DEL", "cid-only", &pods[0], &conf);
    host.exec_plugin(&program, &status, &stdin).ok();
    host.assert_clean(&[&bridge], &[]);
}
