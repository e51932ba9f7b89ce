//! IPAM delegation from a plugin built on our runner to Debian's real
//! `host-local` (containernetworking-plugins 1.1.1). host-local only writes
//! files in its data directory, so no namespace is needed.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use overlay_cni::delegate::{delegate_add_guarded, delegate_check, delegate_del, delegate_gc};
use overlay_cni::plugin::dispatch;
use overlay_cni::{CniError, CniResult, ErrorCode, Plugin, Request};
use serde_json::{Value, json};

const PLUGIN_DIR: &str = "/usr/lib/cni";

/// Delegates to the `ipam` section; fails after allocating when the config
/// has `"failAfterIpam"` (the allocation must then be released).
struct IpamOnly;

fn ipam_type(req: &Request) -> Result<&str, CniError> {
    req.config
        .ipam
        .as_ref()
        .map(|i| i.plugin_type.as_str())
        .ok_or_else(|| CniError::new(ErrorCode::InvalidNetworkConfig, "no ipam section"))
}

impl Plugin for IpamOnly {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let allocation = delegate_add_guarded(ipam_type(req)?, &req.config_bytes, &req.env)?;
        if req.config.extra.contains_key("failAfterIpam") {
            // Dropping `allocation` runs host-local DEL.
            return Err(CniError::plugin(100, "interface setup failed"));
        }
        Ok(allocation.commit())
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        Ok(delegate_del(ipam_type(req)?, &req.config_bytes, &req.env)?)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        Ok(delegate_check(
            ipam_type(req)?,
            &req.config_bytes,
            &req.env,
        )?)
    }
    fn gc(
        &self,
        req: &Request,
        _valid: &[overlay_cni::config::GcAttachment],
    ) -> Result<(), CniError> {
        Ok(delegate_gc(ipam_type(req)?, &req.config_bytes, &req.env)?)
    }
}

fn env(command: &str, container_id: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", "/run/netns/unused-by-host-local"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", PLUGIN_DIR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn config(version: &str, data_dir: &Path, extra: Value) -> Vec<u8> {
    let mut conf = json!({
        "cniVersion": version,
        "name": "deleg",
        "type": "ipam-only",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "198.51.100.0/28"}], [{"subnet": "2001:db8:7::/120"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir,
        }
    });
    if let (Value::Object(conf), Value::Object(extra)) = (&mut conf, extra) {
        conf.extend(extra);
    }
    serde_json::to_vec(&conf).unwrap()
}

fn allocations(data_dir: &Path) -> BTreeSet<IpAddr> {
    std::fs::read_dir(data_dir.join("deleg"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn host_local_allocates_through_delegation_at_every_version_and_del_releases() {
    assert!(
        Path::new(PLUGIN_DIR).join("host-local").is_file(),
        "install containernetworking-plugins"
    );
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let dir = tempfile::tempdir().unwrap();
        let conf = config(version, dir.path(), json!({}));
        let out = dispatch(&IpamOnly, &env("ADD", "deleg1"), &conf);
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["cniVersion"], version);
        let ips = printed["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2, "{printed}");
        // ips[].version exactly where the version has it.
        assert_eq!(
            ips[0].get("version").is_some(),
            version != "1.0.0",
            "{printed}"
        );
        let result = CniResult::from_slice(&out.stdout).unwrap();
        let expected: BTreeSet<IpAddr> = result.ips.iter().map(|ip| ip.address.addr()).collect();
        assert_eq!(allocations(dir.path()), expected);

        if version != "0.3.1" {
            let mut with_prev: Value = serde_json::from_slice(&conf).unwrap();
            with_prev["prevResult"] = printed.clone();
            let check = dispatch(
                &IpamOnly,
                &env("CHECK", "deleg1"),
                &serde_json::to_vec(&with_prev).unwrap(),
            );
            assert_eq!(
                check.exit_code,
                0,
                "{}",
                String::from_utf8_lossy(&check.stdout)
            );
        }

        for _ in 0..2 {
            let del = dispatch(&IpamOnly, &env("DEL", "deleg1"), &conf);
            assert_eq!(del.exit_code, 0, "{}", String::from_utf8_lossy(&del.stdout));
        }
        assert!(allocations(dir.path()).is_empty());
    }
}

#[test]
fn a_failure_after_ipam_add_releases_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config("1.0.0", dir.path(), json!({"failAfterIpam": true}));
    let out = dispatch(&IpamOnly, &env("ADD", "deleg2"), &conf);
    assert_eq!(out.exit_code, 1);
    let err = out.cni_error().unwrap();
    assert_eq!(
        (err.code, err.msg.as_str()),
        (ErrorCode::Other(100), "interface setup failed")
    );
    assert!(
        allocations(dir.path()).is_empty(),
        "the guard ran host-local DEL"
    );
}

#[test]
fn host_local_errors_pass_through_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    // A /30 has one address left after the gateway: the second ADD fails.
    let conf = serde_json::to_vec(&json!({
        "cniVersion": "1.0.0", "name": "deleg", "type": "ipam-only",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.51.100.0/30"}]],
                 "dataDir": dir.path()}
    }))
    .unwrap();
    let first = dispatch(&IpamOnly, &env("ADD", "full1"), &conf);
    assert_eq!(
        first.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    let second = dispatch(&IpamOnly, &env("ADD", "full2"), &conf);
    let err = second.cni_error().expect("the pool is exhausted");
    assert!(err.msg.contains("no IP addresses available"), "{err}");

    // host-local 1.1.1 predates GC: its runner treats GC as an unknown
    // command after checking the (empty) container ID, so it answers code 3.
    // Our runner passes the delegate's error through unchanged.
    let gc_conf = serde_json::to_vec(&json!({
        "cniVersion": "1.1.0", "name": "deleg", "type": "ipam-only",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.51.100.0/30"}]],
                 "dataDir": dir.path()},
        "cni.dev/valid-attachments": []
    }))
    .unwrap();
    let gc_env: HashMap<String, String> = [("CNI_COMMAND", "GC"), ("CNI_PATH", PLUGIN_DIR)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let gc = dispatch(&IpamOnly, &gc_env, &gc_conf);
    let gc_err = gc.cni_error().unwrap();
    assert_eq!(gc_err.code, ErrorCode::UnknownContainer, "{gc_err}");
    assert_eq!(gc_err.msg, "missing containerID");
    assert_eq!(gc_err.cni_version, Some(overlay_cni::Version::V1_1_0));
    dispatch(&IpamOnly, &env("DEL", "full1"), &conf);
    assert!(allocations(dir.path()).is_empty());
}
