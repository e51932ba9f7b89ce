//! Compatibility with the reference `host-local` plugin (Debian's
//! `containernetworking-plugins`, `/usr/lib/cni/host-local`), run as a
//! process on the same data directory. `host-local` touches only its data
//! directory (never a network namespace), so this needs no privileges.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use overlay_ipam::host_local::Config;
use serde_json::Value;

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ovipam-compat-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn net_config(data_dir: &Path, ipam: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"compat","type":"bridge","ipam":{{"type":"host-local","dataDir":"{}",{ipam}}}}}"#,
        data_dir.display()
    )
}

/// Run the reference plugin; `Ok(result)` or `Err(error JSON)`.
fn reference(command: &str, config: &str, cid: &str, ifname: &str) -> Result<Value, Value> {
    assert!(
        Path::new(HOST_LOCAL).exists(),
        "{HOST_LOCAL} is missing: install Debian's containernetworking-plugins"
    );
    let mut child = Command::new(HOST_LOCAL)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", "/nonexistent/netns")
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let json = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap()
    };
    if out.status.success() {
        Ok(json)
    } else {
        Err(json)
    }
}

fn reference_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_owned())
        .collect()
}

fn ours(config: &str) -> Config {
    Config::from_network_config(config.as_bytes(), "").unwrap()
}

fn our_ips(config: &str, cid: &str, ifname: &str) -> Vec<String> {
    ours(config)
        .allocate(cid, ifname)
        .unwrap()
        .ips
        .iter()
        .map(|ip| ip.address.to_string())
        .collect()
}

/// Every file of the network directory: name -> (content, mode).
fn files(data_dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    std::fs::read_dir(data_dir.join("compat"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            (
                e.file_name().into_string().unwrap(),
                (std::fs::read(e.path()).unwrap(), mode),
            )
        })
        .collect()
}

const DUAL_STACK: &str = r#""ranges":[[{"subnet":"198.51.100.0/29"}],[{"subnet":"2001:db8::/125"}]],"routes":[{"dst":"0.0.0.0/0"}]"#;

#[test]
fn both_implementations_see_each_others_reservations_in_one_data_dir() {
    let dir = TempDir::new();
    let conf = net_config(&dir.0, DUAL_STACK);
    assert_eq!(
        our_ips(&conf, "a", "eth0"),
        ["198.51.100.2/29", "2001:db8::2/125"]
    );
    let b = reference("ADD", &conf, "b", "eth0").unwrap();
    assert_eq!(reference_ips(&b), ["198.51.100.3/29", "2001:db8::3/125"]);
    assert_eq!(
        our_ips(&conf, "c", "eth0"),
        ["198.51.100.4/29", "2001:db8::4/125"]
    );
    // Each refuses a second ADD of an attachment the other allocated.
    let dup = reference("ADD", &conf, "a", "eth0").unwrap_err();
    assert!(
        dup["msg"]
            .as_str()
            .unwrap()
            .contains("duplicate allocation"),
        "{dup}"
    );
    assert!(ours(&conf).allocate("b", "eth0").is_err());
    // CHECK across implementations.
    reference("CHECK", &conf, "c", "eth0").unwrap();
    assert!(ours(&conf).check("b", "eth0").unwrap());
    assert!(reference("CHECK", &conf, "zz", "eth0").is_err());
}

#[test]
fn a_del_by_either_releases_what_the_other_allocated() {
    let dir = TempDir::new();
    let conf = net_config(&dir.0, DUAL_STACK);
    our_ips(&conf, "a", "eth0");
    reference("ADD", &conf, "b", "eth0").unwrap();
    reference("DEL", &conf, "a", "eth0").unwrap();
    assert_eq!(ours(&conf).release("b", "eth0").unwrap().len(), 2);
    let left: Vec<String> = files(&dir.0).into_keys().collect();
    assert_eq!(
        left,
        ["last_reserved_ip.0", "last_reserved_ip.1", "lock"],
        "no reservation may remain"
    );
    // Round-robin state is shared: both continue after the last address.
    assert_eq!(
        reference_ips(&reference("ADD", &conf, "d", "eth0").unwrap()),
        ["198.51.100.4/29", "2001:db8::4/125"]
    );
    assert_eq!(
        our_ips(&conf, "e", "eth0"),
        ["198.51.100.5/29", "2001:db8::5/125"]
    );
}

#[test]
fn the_same_operations_leave_identical_files() {
    let (theirs, mine) = (TempDir::new(), TempDir::new());
    let (conf_t, conf_m) = (
        net_config(&theirs.0, DUAL_STACK),
        net_config(&mine.0, DUAL_STACK),
    );
    for (cid, ifname) in [("a", "eth0"), ("b", "eth0"), ("a", "net1"), ("c", "eth0")] {
        let t = reference_ips(&reference("ADD", &conf_t, cid, ifname).unwrap());
        assert_eq!(our_ips(&conf_m, cid, ifname), t);
    }
    reference("DEL", &conf_t, "b", "eth0").unwrap();
    ours(&conf_m).release("b", "eth0").unwrap();
    let t = reference_ips(&reference("ADD", &conf_t, "d", "eth0").unwrap());
    assert_eq!(our_ips(&conf_m, "d", "eth0"), t);
    assert_eq!(files(&mine.0), files(&theirs.0));
}

#[test]
fn both_fill_a_range_together_and_agree_it_is_exhausted() {
    let dir = TempDir::new();
    // .1 is the gateway: .2 to .6 are allocatable.
    let conf = net_config(&dir.0, r#""subnet":"198.51.100.0/29""#);
    let mut seen = Vec::new();
    for i in 0..5 {
        let cid = format!("c{i}");
        let ip = if i % 2 == 0 {
            our_ips(&conf, &cid, "eth0").remove(0)
        } else {
            reference_ips(&reference("ADD", &conf, &cid, "eth0").unwrap()).remove(0)
        };
        assert!(!seen.contains(&ip), "{ip} allocated twice");
        seen.push(ip);
    }
    let full = reference("ADD", &conf, "x", "eth0").unwrap_err();
    let ours_full = ours(&conf).allocate("x", "eth0").unwrap_err();
    assert_eq!(full["msg"].as_str().unwrap(), ours_full.to_string());
}

#[test]
fn legacy_single_range_and_requested_ip_match_the_reference() {
    let (theirs, mine) = (TempDir::new(), TempDir::new());
    let ipam = r#""subnet":"203.0.113.0/24","rangeStart":"203.0.113.10","rangeEnd":"203.0.113.20","gateway":"203.0.113.10""#;
    let args = r#","args":{"cni":{"ips":["203.0.113.15"]}}"#;
    let with_args = |dir: &Path| {
        let c = net_config(dir, ipam);
        format!("{}{args}}}", &c[..c.len() - 1])
    };
    let t = reference("ADD", &with_args(&theirs.0), "a", "eth0").unwrap();
    assert_eq!(reference_ips(&t), ["203.0.113.15/24"]);
    assert_eq!(our_ips(&with_args(&mine.0), "a", "eth0"), reference_ips(&t));
    let t = reference("ADD", &net_config(&theirs.0, ipam), "b", "eth0").unwrap();
    assert_eq!(
        our_ips(&net_config(&mine.0, ipam), "b", "eth0"),
        reference_ips(&t)
    );
    assert_eq!(reference_ips(&t), ["203.0.113.16/24"]);
    assert_eq!(files(&mine.0), files(&theirs.0));
}
