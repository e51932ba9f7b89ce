//! ADD and DEL latency of the `overlay` CNI plugin, which gets its address
//! from the node agent `overlayd` over a unix socket, against Debian's
//! reference `bridge` + `host-local` plugins (the same reference config as
//! the `cni_latency` bench), measured in the same run.
//!
//! One `overlayd` runs inside the node test namespace as a single-node
//! cluster (its own seed, no password, a veth end as the underlay device); once
//! `overlayctl status --json` reports the IPAM ring `ready`, the `overlay`
//! plugin's ADD and DEL are timed with the shared fair harness (`common`:
//! every command on a quiet kernel, criterion groups plus a paired run).
//! The agent is stopped (SIGTERM, then SIGKILL) and its state removed when
//! the bench ends, also on panic.
//!
//! Targets: our ADD and DEL medians at most 0.3x of the reference's. Needs
//! root; without `CAP_NET_ADMIN` it prints why and exits. For figures
//! comparable across runs, run the built bench under a real-time policy
//! (which the agent inherits too):
//! `chrt -f 10 target/release/deps/cni_overlay_latency-<hash> --bench`.
//!
//! The plugin is built as it ships, by `scripts/build-plugin.sh` (the
//! `dist` profile, statically linked); `overlayd` and `overlayctl` with
//! the `dist` profile, into the same target directory. `OVERLAY_BIN`,
//! `OVERLAYD_BIN` and `OVERLAYCTL_BIN` measure prebuilt binaries instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Harness, Subject};
use criterion::{Criterion, criterion_group, criterion_main};
use overlay_testsupport::{TestNetns, has_net_admin, unique_name};

/// The node's underlay address, on a veth end inside the node namespace.
const NODE_IP: &str = "203.0.113.1";

/// The cluster range the agent's IPAM ring divides.
const RANGE: &str = "198.19.0.0/16";

/// How long the agent may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `overlayd` and `overlayctl` built with the `dist` profile into this
/// bench's target directory (unless given by the environment).
fn agent_binaries() -> (PathBuf, PathBuf) {
    let build = || {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", "dist"])
            .args(["-p", "overlay-examples", "--bin", "overlayd", "--bin"])
            .arg("overlayctl")
            .env("CARGO_TARGET_DIR", common::target_dir())
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building overlayd failed");
    };
    let dist = common::target_dir().join("dist");
    let mut built = false;
    let mut bin = |var: &str, name: &str| {
        common::binary_from_env(var, || {
            if !built {
                build();
                built = true;
            }
            dist.join(name)
        })
    };
    (
        bin("OVERLAYD_BIN", "overlayd"),
        bin("OVERLAYCTL_BIN", "overlayctl"),
    )
}

/// An `overlayd` running in the node namespace, stopped when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Start `overlayd` in `node` as a single-node cluster; its files in `dir`.
    fn start(overlayd: &Path, node: &TestNetns, dir: &Path, bridge: &str, vxlan: &str) -> Agent {
        let log = dir.join("overlayd.log");
        // `ip netns exec` executes the agent in place: the child is overlayd.
        let child = Command::new("ip")
            .args(["netns", "exec", node.name()])
            .arg(overlayd)
            .args(["--node-name", "bench", "--node-ip", NODE_IP])
            .args(["--peers", NODE_IP, "--range", RANGE])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(dir.join("overlayd.sock"))
            .arg("--admin-socket")
            .arg(dir.join("admin.sock"))
            .args(["--bridge", bridge, "--vxlan", vxlan])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"))
            .spawn()
            .expect("start overlayd");
        Agent { child, log }
    }

    /// Whether the agent has ended.
    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until `overlayctl status --json` in `node` reports the IPAM
    /// ring ready; panics with the agent's log after [`READY_TIMEOUT`].
    fn wait_ready(&mut self, overlayctl: &Path, node: &TestNetns) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let status = node
                .exec([overlayctl.as_os_str(), "status".as_ref(), "--json".as_ref()])
                .ok()
                .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok());
            let state = status.as_ref().and_then(|s| s["ipam"]["state"].as_str());
            if state == Some("ready") {
                return;
            }
            if self.exited() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("overlayd not ready (ipam state {state:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: a graceful leave; SIGKILL when it does not end in time.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with plain integers, on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench_overlay(c: &mut Criterion) {
    if !has_net_admin() {
        eprintln!("cni_overlay_latency: skipped, needs root (CAP_NET_ADMIN)");
        return;
    }
    let ours = common::binary_from_env("OVERLAY_BIN", || {
        common::build_plugins(&["overlay"]).remove(0)
    });
    let (overlayd, overlayctl) = agent_binaries();
    let node = TestNetns::with_kind("hst").expect("node netns");
    let dir = TempDir(std::env::temp_dir().join(unique_name("cnio")));
    std::fs::create_dir_all(&dir.0).expect("bench dir");
    // The underlay: one end of a veth pair inside the node (the kernel
    // here may lack the dummy driver).
    let (underlay, peer) = (unique_name("und"), unique_name("unp"));
    node.ip(["link", "set", "lo", "up"]).expect("lo up");
    node.ip([
        "link", "add", &underlay, "type", "veth", "peer", "name", &peer,
    ])
    .expect("underlay device");
    node.ip(["link", "set", &peer, "up"])
        .expect("underlay peer up");
    node.ip(["addr", "add", &format!("{NODE_IP}/24"), "dev", &underlay])
        .expect("underlay address");
    node.ip(["link", "set", &underlay, "up"])
        .expect("underlay up");
    let bridge = unique_name("ob");
    let mut agent = Agent::start(&overlayd, &node, &dir.0, &bridge, &unique_name("ovx"));
    agent.wait_ready(&overlayctl, &node);
    common::become_subreaper();
    let config = format!(
        r#"{{"cniVersion":"1.0.0","name":"overlay","type":"overlay","bridge":"{bridge}","socket":"{}"}}"#,
        dir.0.join("overlayd.sock").display()
    );
    let subjects = vec![
        Subject {
            label: "overlay+overlayd",
            program: ours,
            config,
        },
        common::reference(&unique_name("br"), &dir.0.join("ipam")),
    ];
    // Reaping after each DEL waits for every child but the agent.
    let keep = vec![agent.child.id()];
    let harness = Harness::start(&node, subjects, common::DEBIAN_PLUGINS.to_owned(), keep);
    harness.bench(c, "cni_overlay", "cni_overlay_latency");
    harness.finish();
    drop(agent);
}

criterion_group!(benches, bench_overlay);
criterion_main!(benches);
