//! Fixtures for the CNI conformance suite: the Go tools built from libcni, a
//! "host" network namespace with its own plugin, IPAM, cache and config
//! directories, plugin execution inside it, and leak checks.
//!
//! Safety rule: no plugin ever runs in the root network namespace. Every
//! plugin process (and the libcni driver, which runs plugins) is started with
//! `ip netns exec <host>`, where `<host>` is a [`TestNetns`] acting as the
//! node; pods are further [`TestNetns`]. Directories live in a private
//! temporary directory removed on drop.

#![allow(dead_code)]
// Test fixtures: a failed unwrap is a failing test, with the panic message.
#![allow(clippy::unwrap_used)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::{fs, io::Write};

use overlay_testsupport::TestNetns;
use serde_json::{Value, json};

/// Debian's reference plugins (containernetworking-plugins).
pub(crate) const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

/// PATH given to plugins: the reference plugins run `iptables`, `tc` and `ip`.
const PLUGIN_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The Go programs built by `scripts/build-libcni-tools.sh`.
#[derive(Debug)]
pub(crate) struct Tools {
    /// `examples/tests/libcni-driver`: runs one operation through libcni.
    pub(crate) driver: PathBuf,
    /// libcni's `noop` test plugin.
    pub(crate) noop: PathBuf,
}

/// Build the Go tools once per test process (the script is idempotent and
/// serialises concurrent callers, so several test binaries may call it).
pub(crate) fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libcni-tools");
        let status = Command::new("bash")
            .arg(root.join("scripts/build-libcni-tools.sh"))
            .arg(&out)
            .status()
            .expect("cannot run scripts/build-libcni-tools.sh");
        assert!(
            status.success(),
            "scripts/build-libcni-tools.sh failed ({status}); it needs golang-go and golang-github-appc-cni-dev"
        );
        Tools {
            driver: out.join("libcni-driver"),
            noop: out.join("noop"),
        }
    })
}

/// Path of our example plugin binary: the one cargo built for these tests,
/// or `OVERLAY_BRIDGE_BIN` (the suite `scripts/suites/30-dist-plugin.sh` runs
/// the conformance tests against the shipped build that way).
pub(crate) fn overlay_bridge() -> PathBuf {
    std::env::var_os("OVERLAY_BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_overlay-bridge")))
}

/// A temporary directory removed (recursively) on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ovt-cni-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What a plugin process did.
#[derive(Debug)]
pub(crate) struct PluginOutput {
    pub(crate) success: bool,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl PluginOutput {
    fn from_output(out: Output) -> PluginOutput {
        PluginOutput {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stdout parsed as JSON; panics with the whole output otherwise.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Assert success and return the parsed stdout (`{}` when empty).
    pub(crate) fn ok(&self) -> Value {
        assert!(self.success, "plugin failed: {self:#?}");
        if self.stdout.trim().is_empty() {
            return json!({});
        }
        self.json()
    }

    /// Assert a failure with a CNI error JSON of `code` on stdout, and return it.
    pub(crate) fn cni_error(&self, code: u64) -> Value {
        assert!(
            !self.success,
            "expected failure with code {code}: {self:#?}"
        );
        let err = self.json();
        assert_eq!(err["code"].as_u64(), Some(code), "wrong code: {self:#?}");
        assert!(
            err["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error JSON without msg: {self:#?}"
        );
        assert!(
            err["cniVersion"].is_string(),
            "error JSON without cniVersion: {self:#?}"
        );
        err
    }
}

/// The CNI environment of one plugin call. `None` leaves a variable unset.
#[derive(Debug, Clone)]
pub(crate) struct CniEnv {
    pub(crate) command: Option<String>,
    pub(crate) container_id: Option<String>,
    pub(crate) netns: Option<String>,
    pub(crate) ifname: Option<String>,
    pub(crate) args: Option<String>,
    pub(crate) path: Option<String>,
}

impl CniEnv {
    pub(crate) fn new(
        command: &str,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        path: &str,
    ) -> Self {
        CniEnv {
            command: Some(command.into()),
            container_id: Some(container_id.into()),
            netns: Some(netns.display().to_string()),
            ifname: Some(ifname.into()),
            args: None,
            path: Some(path.into()),
        }
    }

    pub(crate) fn command(mut self, command: &str) -> Self {
        self.command = Some(command.into());
        self
    }

    fn apply(&self, cmd: &mut Command) {
        let vars = [
            ("CNI_COMMAND", &self.command),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.path),
        ];
        for (k, v) in vars {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
    }
}

/// Links, addresses and firewall rules of a namespace at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) links: BTreeSet<String>,
    pub(crate) addrs: BTreeSet<String>,
    pub(crate) rules: Vec<String>,
}

/// A network namespace acting as the node, with the directories a CNI
/// runtime uses. Dropping it deletes the namespace and the directories.
#[derive(Debug)]
pub(crate) struct Host {
    // Declared first: the namespace goes before the directories.
    pub(crate) ns: TestNetns,
    pub(crate) dir: TempDir,
    pub(crate) baseline: Snapshot,
    /// PATH given to plugins and to the libcni driver.
    pub(crate) path_env: String,
}

impl Host {
    /// A fresh host namespace; `bin/` holds our plugin and libcni's noop.
    pub(crate) fn new() -> Host {
        let ns = TestNetns::with_kind("hst").unwrap();
        let dir = TempDir::new();
        for sub in ["bin", "ipam", "cache", "conf", "debug"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(overlay_bridge(), dir.path().join("bin/overlay-bridge"))
            .unwrap();
        let mut host = Host {
            ns,
            dir,
            baseline: Snapshot {
                links: BTreeSet::new(),
                addrs: BTreeSet::new(),
                rules: Vec::new(),
            },
            path_env: PLUGIN_PATH_ENV.to_owned(),
        };
        host.baseline = host.snapshot();
        host
    }

    /// Make libcni's noop plugin available on [`Host::cni_path`].
    pub(crate) fn with_noop(self) -> Host {
        std::os::unix::fs::symlink(&tools().noop, self.dir.path().join("bin/noop")).unwrap();
        self
    }

    /// Give plugins a PATH on which the IPv6 `nat` table is unavailable (as
    /// on kernels without IPv6 NAT); everything else is the real tools.
    /// Debian's portmap 1.1.1 CHECK fails whenever IPv6 NAT exists, even for
    /// IPv4-only pods (containernetworking/plugins#819, fixed after 1.1.1);
    /// without it, portmap adds, checks and deletes IPv4 rules only.
    pub(crate) fn without_ipv6_nat(mut self) -> Host {
        let dir = self.dir.path().join("path");
        fs::create_dir_all(&dir).unwrap();
        let wrapper = dir.join("ip6tables");
        fs::write(
            &wrapper,
            "#!/bin/sh\n\
             for a in \"$@\"; do\n\
             \x20 [ \"$a\" = nat ] && { echo \"ip6tables: table nat does not exist\" >&2; exit 3; }\n\
             done\n\
             exec /usr/sbin/ip6tables \"$@\"\n",
        )
        .unwrap();
        fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        self.path_env = format!("{}:{PLUGIN_PATH_ENV}", dir.display());
        self
    }

    /// CNI_PATH: our `bin/` first, then Debian's plugins.
    pub(crate) fn cni_path(&self) -> String {
        format!("{}:{DEBIAN_PLUGINS}", self.dir.path().join("bin").display())
    }

    pub(crate) fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub(crate) fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    pub(crate) fn debug_dir(&self) -> PathBuf {
        self.dir.path().join("debug")
    }

    /// A host-local IPAM section storing its state under this host's directory.
    pub(crate) fn host_local(&self, subnet: &str) -> Value {
        json!({
            "type": "host-local",
            "dataDir": self.ipam_dir(),
            "ranges": [[{"subnet": subnet}]],
        })
    }

    /// Run `program` inside the host namespace with a clean environment,
    /// `env`'s CNI variables and `stdin`.
    pub(crate) fn exec_plugin(&self, program: &Path, env: &CniEnv, stdin: &[u8]) -> PluginOutput {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name()])
            .arg(program)
            .env_clear()
            .env("PATH", &self.path_env);
        env.apply(&mut cmd);
        run_with_stdin(cmd, stdin)
    }

    /// Run the libcni driver inside the host namespace.
    pub(crate) fn driver(
        &self,
        conflist: &Path,
        command: &str,
        rt: &RuntimeArgs<'_>,
    ) -> PluginOutput {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name()])
            .arg(&tools().driver)
            .arg("-conflist")
            .arg(conflist)
            .arg("-path")
            .arg(self.cni_path())
            .arg("-cachedir")
            .arg(self.cache_dir())
            .arg("-cid")
            .arg(rt.container_id)
            .arg("-netns")
            .arg(rt.netns)
            .arg("-ifname")
            .arg(rt.ifname)
            .arg("-capargs")
            .arg(rt.cap_args.to_string())
            .arg(command)
            .env_clear()
            .env("PATH", &self.path_env);
        run_with_stdin(cmd, b"")
    }

    /// Write a conflist into the conf directory and return its path.
    pub(crate) fn write_conflist(&self, file: &str, conflist: &Value) -> PathBuf {
        let path = self.conf_dir().join(file);
        fs::write(&path, serde_json::to_vec_pretty(conflist).unwrap()).unwrap();
        path
    }

    /// Run a command inside the host namespace and return its stdout.
    pub(crate) fn sh(&self, argv: &[&str]) -> String {
        let out = self.ns.exec(argv).unwrap();
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.ns.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Links, addresses and firewall rules of the host namespace.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let links = self
            .sh(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect();
        let addrs = self
            .sh(&["ip", "-o", "addr", "show"])
            .lines()
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
            .collect();
        let mut rules = Vec::new();
        for argv in [
            &["iptables-save"][..],
            &["ip6tables-save"],
            &["nft", "list", "ruleset"],
        ] {
            rules.extend(
                self.sh(argv)
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        Snapshot {
            links,
            addrs,
            rules,
        }
    }

    /// Assert that nothing of an attachment is left: no link or address
    /// beyond the baseline (except the shared bridges in `bridges`, which the
    /// reference `bridge` plugin keeps too), no firewall rule mentioning any
    /// of `markers` (container ID, pod addresses), and no IPAM reservation.
    pub(crate) fn assert_clean(&self, bridges: &[&str], markers: &[String]) {
        let now = self.snapshot();
        let extra_links: Vec<_> = now
            .links
            .difference(&self.baseline.links)
            .filter(|l| !bridges.contains(&l.as_str()))
            .collect();
        assert!(extra_links.is_empty(), "links left behind: {extra_links:?}");
        let extra_addrs: Vec<_> = now
            .addrs
            .difference(&self.baseline.addrs)
            .filter(|a| {
                !bridges
                    .iter()
                    .any(|b| a.split_whitespace().nth(1) == Some(*b))
            })
            .collect();
        assert!(
            extra_addrs.is_empty(),
            "addresses left behind: {extra_addrs:?}"
        );
        let leaked_rules: Vec<_> = now
            .rules
            .iter()
            .filter(|r| markers.iter().any(|m| r.contains(m.as_str())))
            .collect();
        assert!(
            leaked_rules.is_empty(),
            "firewall rules left behind: {leaked_rules:#?}"
        );
        let reserved = ipam_reservations(&self.ipam_dir());
        assert!(
            reserved.is_empty(),
            "IPAM reservations left behind: {reserved:?}"
        );
    }
}

impl Host {
    /// Assert that a failed call changed nothing: the host namespace's
    /// links, addresses and firewall rules are the baseline's, and the
    /// IPAM data directory holds no file at all (not even a network's
    /// directory or its `lock`).
    pub(crate) fn assert_untouched(&self) {
        assert_eq!(self.snapshot(), self.baseline, "host namespace changed");
        let files: Vec<_> = fs::read_dir(self.ipam_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(files.is_empty(), "IPAM files written: {files:?}");
    }
}

/// The addresses (without prefix) configured on the interfaces of
/// `namespaces`, link-local IPv6 addresses excepted.
pub(crate) fn live_addresses(namespaces: &[&TestNetns]) -> Vec<String> {
    let mut found = Vec::new();
    for ns in namespaces {
        let out = ns.ip(["-o", "addr", "show"]).unwrap();
        assert!(out.status.success(), "{out:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace().skip(2);
            if let (Some("inet" | "inet6"), Some(cidr)) = (words.next(), words.next()) {
                let addr = cidr.split('/').next().unwrap_or(cidr);
                if !addr.starts_with("fe80:") && addr != "127.0.0.1" && addr != "::1" {
                    found.push(addr.to_owned());
                }
            }
        }
    }
    found
}

/// The property every ADD must keep: `result` gives out no address that
/// was configured on a live interface of `namespaces` before the ADD
/// (`live_before`), and after it no address is configured twice.
pub(crate) fn assert_no_duplicate_address(
    result: &Value,
    live_before: &[String],
    namespaces: &[&TestNetns],
) {
    for ip in result_ips(result) {
        assert!(
            !live_before.contains(&ip),
            "ADD returned {ip}, which a live interface already has: {live_before:?}"
        );
    }
    let mut now = live_addresses(namespaces);
    let total = now.len();
    now.sort();
    now.dedup();
    assert_eq!(now.len(), total, "an address is configured twice: {now:?}");
}

/// Arguments of one libcni call.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeArgs<'a> {
    pub(crate) container_id: &'a str,
    pub(crate) netns: &'a Path,
    pub(crate) ifname: &'a str,
    pub(crate) cap_args: Value,
}

/// Files named after an IP address under a host-local data directory.
pub(crate) fn ipam_reservations(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(nets) = fs::read_dir(dir) else {
        return found;
    };
    for net in nets.flatten() {
        let Ok(files) = fs::read_dir(net.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().parse::<IpAddr>().is_ok() {
                found.push(f.path());
            }
        }
    }
    found
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> PluginOutput {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // A plugin may exit before reading stdin (e.g. on a missing variable).
    let _ = input.write_all(stdin);
    drop(input);
    PluginOutput::from_output(child.wait_with_output().unwrap())
}

/// Addresses (without prefix) of the `ips` of a CNI result.
pub(crate) fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the links of a namespace.
pub(crate) fn links_of(ns: &TestNetns) -> BTreeSet<String> {
    ns.link_names(None).unwrap().into_iter().collect()
}

/// Decode standard base64 (Go's encoding of `[]byte` in JSON).
pub(crate) fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {c:?} in {text:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
