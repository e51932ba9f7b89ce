//! Shared pieces of the end-to-end cluster tests (`cluster_*.rs`,
//! `overlayd_cluster.rs`): a ready cluster in a fresh directory
//! ([`TestCluster`]), waiting for a condition, reachability checks, and the
//! teardown with the leak check every test ends with.

#![allow(dead_code)]
// each test binary uses a different subset
// Test fixtures: a failed unwrap is a failing test, with the panic message.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use overlay_examples::cluster::{Cluster, ClusterConfig, NetnsRegistry};
use tempfile::TempDir;

/// How long a cluster may take to become ready (after a start, a restart
/// or a join).
pub(crate) const READY: Duration = Duration::from_secs(60);

/// How long a pod may take to answer after a change.
pub(crate) const REACH: Duration = Duration::from_secs(10);

/// The directory of the binaries the tests run (`overlayd`, `overlay`,
/// `overlayctl`).
pub(crate) fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_overlayd"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A cluster configuration with its state in `dir`.
pub(crate) fn config(dir: &Path) -> ClusterConfig {
    ClusterConfig::new(bin_dir(), dir)
}

/// A ready cluster for one test, with its state in a temporary directory
/// that outlives it (the cluster's `Drop`, on a failed test, stops the
/// agents and deletes the namespaces first). It derefs to the [`Cluster`].
pub(crate) struct TestCluster {
    // Dropped in this order.
    cluster: Cluster,
    dir: TempDir,
}

impl TestCluster {
    /// The default cluster (three nodes), started and [`READY`].
    pub(crate) fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// The default configuration as `tweak` changes it, started and
    /// [`READY`].
    pub(crate) fn start_with(tweak: impl FnOnce(&mut ClusterConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        tweak(&mut config);
        let mut cluster = Cluster::start(config).unwrap();
        cluster.wait_ready(READY).unwrap();
        TestCluster { cluster, dir }
    }

    /// The directory the cluster's state is in.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Tear the cluster down: every DEL must succeed, and nothing may be
    /// left behind ([`Leftovers::assert_none`]).
    pub(crate) fn finish(self) {
        self.finish_except(&[], |failed| {
            assert!(failed.is_empty(), "DELs failed: {failed:?}")
        });
    }

    /// Tear the cluster down, let `check` judge the DELs that failed, and
    /// require that nothing is left behind but the sockets of the agents in
    /// `crashed` ([`Leftovers::assert_none_except_sockets_of`]).
    pub(crate) fn finish_except(self, crashed: &[usize], check: impl FnOnce(&[String])) {
        let TestCluster { cluster, dir } = self;
        let leftovers = Leftovers::of(&cluster);
        check(&cluster.teardown());
        leftovers.assert_none_except_sockets_of(crashed);
        // The node directories (and any socket left in them) go only now.
        drop(dir);
    }
}

impl Deref for TestCluster {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// Poll `f` every 100 ms until it returns `Some`, or `None` after `limit`.
pub(crate) fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a finished cluster must not leave behind, captured before
/// teardown: its namespaces (the registry), its node directories (sockets)
/// and its work directory (in every agent's command line).
#[derive(Debug)]
pub(crate) struct Leftovers {
    registry: NetnsRegistry,
    node_dirs: Vec<PathBuf>,
    work_dir: PathBuf,
}

impl Leftovers {
    /// Capture what `cluster` created so far.
    pub(crate) fn of(cluster: &Cluster) -> Self {
        Leftovers {
            registry: cluster.config().registry.clone(),
            node_dirs: cluster.nodes().iter().map(|n| n.dir.clone()).collect(),
            work_dir: cluster.config().work_dir.clone(),
        }
    }

    /// Panic unless every namespace is deleted, no `overlayd` of this
    /// cluster runs and every agent socket is removed.
    pub(crate) fn assert_none(&self) {
        self.assert_none_except_sockets_of(&[]);
    }

    /// [`Leftovers::assert_none`], except for the sockets of the nodes in
    /// `crashed` (an agent killed for good cannot remove them).
    pub(crate) fn assert_none_except_sockets_of(&self, crashed: &[usize]) {
        let names = self.registry.names();
        assert!(!names.is_empty(), "the registry recorded the namespaces");
        let live = overlay_testsupport::list_test_netns();
        let left: Vec<&String> = names.iter().filter(|n| live.contains(n)).collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        let agents = agents_of(&self.work_dir);
        assert!(agents.is_empty(), "overlayd still running: {agents:?}");
        for (i, dir) in self.node_dirs.iter().enumerate() {
            if crashed.contains(&i) {
                continue;
            }
            for socket in ["overlayd.sock", "admin.sock"] {
                let path = dir.join(socket);
                assert!(!path.exists(), "{} left behind", path.display());
            }
        }
    }
}

/// Process ids of `overlayd` processes whose command line mentions `dir`.
pub(crate) fn agents_of(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // The agent itself, not the `ip netns exec` that started it.
            text.split_whitespace()
                .next()
                .is_some_and(|argv0| argv0.ends_with("/overlayd"))
                && text.contains(&needle)
        })
        .collect()
}

/// The full ping matrix must pass; on failure the message shows it and
/// every node's kernel state.
pub(crate) fn assert_matrix(cluster: &Cluster, context: &str) {
    let matrix = cluster.ping_matrix();
    if matrix.failures().is_empty() {
        return;
    }
    let nodes: String = (0..cluster.nodes().len())
        .map(|i| {
            format!(
                "--- {}\n{}",
                cluster.nodes()[i].name,
                cluster.describe_node(i)
            )
        })
        .collect();
    panic!("{context}: pings failed:\n{matrix}\n{nodes}");
}

/// Whether every pod in `from` reaches `to`, each within `limit`.
pub(crate) fn all_reach(cluster: &Cluster, from: &[usize], to: IpAddr, limit: Duration) -> bool {
    from.iter().all(|p| cluster.ping_within(*p, to, limit))
}
