//! A cluster of nodes on this machine, in network namespaces: what
//! `overlay-demo` shows, and what the end-to-end tests and benchmarks drive.
//!
//! Every node is a namespace with one veth into a shared underlay switch (a
//! bridge in a namespace of its own) and runs the real `overlayd`; pods are
//! namespaces attached by the real `overlay` CNI executable, run through
//! `overlay-cni`'s runtime side as a container runtime runs it (the
//! configuration list, the result cache, `CNI_*` variables). Nothing here
//! knows how the agent or the plugin work inside: it only starts processes
//! and reads the agent's status API through `overlayctl status --json`.
//!
//! Everything is torn down when the [`Cluster`] is dropped: pods are deleted
//! through the plugin (`DEL`), agents stopped, namespaces deleted (which
//! removes every link in them). [`Cluster::keep`] leaves it running instead.
//!
//! Namespaces are named by [`ClusterConfig::netns_prefix`]
//! (`<prefix>-<role>`, as `overlay-demo`'s `ovd-<pid>`), or get unique
//! `ovt-` test names when it is `None`. Names created so far are also
//! recorded in a [`NetnsRegistry`], which a signal handler can use to clean
//! up while the cluster is busy on another thread.

mod config;
mod nodes;
mod ping;
mod pods;
mod registry;
mod wait;

pub use config::ClusterConfig;
pub use nodes::Node;
pub use ping::{PingMatrix, PingResult, ping, ping_echoes, ping_within};
pub use registry::{NetnsRegistry, kill_children_in, netns_inodes};

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use overlay_cni::runtime::{ConfList, Runtime, RuntimeConf};
use overlay_testsupport::TestNetns;

use crate::agent::status::Status;

/// The network name of the cluster's CNI configuration list.
pub const NETWORK: &str = "overlay";

/// One pod: its namespace and the address the plugin gave it.
#[derive(Debug)]
pub struct Pod {
    /// The index of its node in [`Cluster::nodes`].
    pub node: usize,
    /// The container id the runtime used.
    pub container_id: String,
    /// Its first address.
    pub ip: IpAddr,
    /// The final result of the chain's `ADD`.
    pub result: overlay_cni::result::CniResult,
    ns: TestNetns,
}

impl Pod {
    /// The pod's namespace.
    pub fn netns(&self) -> &TestNetns {
        &self.ns
    }
}

/// What [`Cluster::attach_parallel`] did.
#[derive(Debug, Clone, Default)]
pub struct Attached {
    /// The attached pods' indexes in [`Cluster::pods`].
    pub pods: Vec<usize>,
    /// The `ADD`s that failed: container id and error.
    pub failed: Vec<(String, String)>,
}

/// A running cluster. Dropping it tears everything down.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    conflists: Vec<ConfList>,
    runtime: Runtime,
    seeds: String,
    kept: bool,
    // Dropped in this order: pods, nodes, the underlay switch.
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    switch: Option<TestNetns>,
}

impl Cluster {
    /// Create the underlay and `config.nodes` nodes, and start an agent on
    /// each (it does not wait for them: see [`Cluster::wait_ready`]).
    pub fn start(config: ClusterConfig) -> Result<Cluster> {
        std::fs::create_dir_all(&config.work_dir)
            .with_context(|| format!("create {}", config.work_dir.display()))?;
        let switch = Self::netns(&config, "sw")?;
        switch
            .ip(["link", "add", "ovtsw0", "type", "bridge"])
            .context("underlay bridge")?;
        switch.ip(["link", "set", "ovtsw0", "up"])?;
        let seeds = (0..config.nodes.max(1))
            .map(|i| Self::node_ip(&config, i).map(|ip| ip.to_string()))
            .collect::<Result<Vec<_>>>()?
            .join(",");
        let mut plugin_path = vec![config.bin_dir.clone()];
        plugin_path.extend(config.cni_path.iter().cloned());
        let runtime = Runtime::new(plugin_path)
            .with_cache_dir(config.work_dir.join("cni-cache"))
            .with_timeout(Duration::from_secs(30));
        let mut cluster = Cluster {
            config,
            conflists: Vec::new(),
            runtime,
            seeds,
            kept: false,
            pods: Vec::new(),
            nodes: Vec::new(),
            switch: Some(switch),
        };
        for _ in 0..cluster.config.nodes {
            cluster.add_node()?;
        }
        Ok(cluster)
    }

    fn netns(config: &ClusterConfig, role: &str) -> Result<TestNetns> {
        let ns = match &config.netns_prefix {
            Some(prefix) => TestNetns::named(format!("{prefix}-{role}")),
            None => TestNetns::with_kind(role),
        }
        .with_context(|| format!("create the {role} namespace"))?;
        config.registry.add(ns.name());
        Ok(ns)
    }

    fn node_ip(config: &ClusterConfig, i: usize) -> Result<IpAddr> {
        let offset = u128::try_from(i + 1).unwrap_or(u128::MAX);
        let ip = match config.underlay.network() {
            IpAddr::V4(a) => u32::try_from(offset)
                .ok()
                .and_then(|o| u32::from(a).checked_add(o))
                .map(|a| IpAddr::V4(a.into())),
            IpAddr::V6(a) => u128::from(a)
                .checked_add(offset)
                .map(|a| IpAddr::V6(a.into())),
        };
        match ip {
            Some(ip) if config.underlay.contains(&ip) => Ok(ip),
            _ => bail!("no host address {} in {}", i + 1, config.underlay),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The nodes, in order of creation.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The pods, in order of attachment.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The seed list every agent gets (`--peers`): the first nodes'
    /// underlay addresses.
    pub fn seeds(&self) -> &str {
        &self.seeds
    }

    /// Leave everything running: agents, pods, namespaces. Returns the
    /// namespace names (delete them with `ip netns del`).
    pub fn keep(mut self) -> Vec<String> {
        self.kept = true;
        let mut names: Vec<String> = self.switch.iter().map(|s| s.name().to_owned()).collect();
        names.extend(self.nodes.iter().map(|n| n.ns.name().to_owned()));
        names.extend(self.pods.iter().map(|p| p.ns.name().to_owned()));
        names
    }

    /// Tear down in order: `DEL` every pod through the plugin, stop the
    /// agents, delete the namespaces. Returns the `DEL`s that failed.
    pub fn teardown(mut self) -> Vec<String> {
        self.teardown_in_place()
    }

    fn teardown_in_place(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        for p in (0..self.pods.len()).rev() {
            if let Err(e) = self.del(p) {
                failed.push(format!("{e:#}"));
            }
        }
        self.pods.clear();
        for node in &mut self.nodes {
            node.stop_agent(libc::SIGTERM);
        }
        self.nodes.clear();
        failed
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.kept {
            // Leak the guards: nothing is deleted.
            for pod in self.pods.drain(..) {
                let _ = pod.ns.keep();
            }
            for mut node in self.nodes.drain(..) {
                if let Some(child) = node.agent.take() {
                    std::mem::forget(child);
                }
                let _ = node.ns.keep();
            }
            if let Some(switch) = self.switch.take() {
                let _ = switch.keep();
            }
            return;
        }
        let _ = self.teardown_in_place();
    }
}

/// Access to the underlay, for a capture of what the nodes send each other
/// (`overlay-demo` decodes a VXLAN packet it captured there).
impl Cluster {
    /// The underlay switch's namespace (the bridge every node's underlay
    /// veth is plugged into); `None` once torn down.
    pub fn switch_netns(&self) -> Option<&TestNetns> {
        self.switch.as_ref()
    }

    /// The switch-side end of node `i`'s underlay veth, in
    /// [`Cluster::switch_netns`]: a capture on it sees every frame node `i`
    /// sends or receives on the underlay, as the wire would. `None` if
    /// there is no node `i`.
    pub fn underlay_port(&self, i: usize) -> Option<String> {
        (i < self.nodes.len()).then(|| format!("ovtd{i}"))
    }
}
