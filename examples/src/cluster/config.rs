//! How to build a [`Cluster`](super::Cluster).

use std::path::PathBuf;

use ipnet::IpNet;

use super::{NETWORK, NetnsRegistry};

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Nodes to create at start.
    pub nodes: usize,
    /// The cluster pod range the agents divide (`--range`).
    pub range: IpNet,
    /// The underlay subnet: node `i` (from 0) gets host address `i + 1`.
    /// Its family is the underlay's (IPv4 or IPv6).
    pub underlay: IpNet,
    /// The block prefix length (`--block-prefix`); `None`: the agent's
    /// default.
    pub block_prefix: Option<u8>,
    /// The cluster password; `None` runs the mesh unencrypted.
    pub password: Option<String>,
    /// Where `overlayd`, `overlay` (the plugin) and `overlayctl` are.
    pub bin_dir: PathBuf,
    /// More plugin directories after `bin_dir` (chained plugins such as
    /// Debian's `portmap`, in `/usr/lib/cni`).
    pub cni_path: Vec<PathBuf>,
    /// The CNI configuration list. `{socket}` and `{bridge}` are replaced
    /// by each node's agent socket and bridge. Default: the `overlay`
    /// plugin alone.
    pub conflist: String,
    /// State, sockets, logs and the CNI cache, one directory per node.
    pub work_dir: PathBuf,
    /// Namespace names: `<prefix>-<role>`; `None`: unique `ovt-` names.
    pub netns_prefix: Option<String>,
    /// The pods' bridge on every node.
    pub bridge: String,
    /// The VXLAN device on every node.
    pub vxlan: String,
    /// The agent's log filter (`--log`).
    pub log: String,
    /// More `overlayd` flags, after the harness's own (for instance
    /// `["--quarantine", "20"]`).
    pub agent_args: Vec<String>,
    /// Namespaces created, for cleanup from another thread.
    pub registry: NetnsRegistry,
}

impl ClusterConfig {
    /// Three nodes on `198.18.0.0/24`, pods from `198.19.0.0/16`, an
    /// encrypted mesh, the binaries in `bin_dir`, state in `work_dir`.
    pub fn new(bin_dir: impl Into<PathBuf>, work_dir: impl Into<PathBuf>) -> Self {
        ClusterConfig {
            nodes: 3,
            range: "198.19.0.0/16".parse().unwrap_or_default(),
            underlay: "198.18.0.0/24".parse().unwrap_or_default(),
            block_prefix: None,
            password: Some("overlay cluster secret".into()),
            bin_dir: bin_dir.into(),
            cni_path: Vec::new(),
            conflist: Self::plain_conflist(),
            work_dir: work_dir.into(),
            netns_prefix: None,
            bridge: "ovtbr0".into(),
            vxlan: "ovtvx0".into(),
            log: "info".into(),
            agent_args: Vec::new(),
            registry: NetnsRegistry::default(),
        }
    }

    /// A configuration list of the `overlay` plugin alone.
    pub fn plain_conflist() -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{NETWORK}","plugins":[{{"type":"overlay","socket":"{{socket}}","bridge":"{{bridge}}","hairpinMode":true}}]}}"#
        )
    }

    /// `deploy/10-overlay.conflist` (the plugin chained with `portmap` and
    /// `bandwidth`) with this cluster's placeholders.
    pub fn deploy_conflist(text: &str) -> String {
        text.replace("/run/overlay/overlayd.sock", "{socket}")
            .replace("\"overlay0\"", "\"{bridge}\"")
    }

    pub(super) fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}
