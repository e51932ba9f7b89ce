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
mod ping;
mod pods;
mod registry;
mod wait;

pub use config::ClusterConfig;
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

/// One node: its namespace, underlay address and agent.
#[derive(Debug)]
pub struct Node {
    /// The node's name (`node-<n>`, from 1).
    pub name: String,
    /// The node's underlay address.
    pub ip: IpAddr,
    /// The node's directory: state, sockets, logs.
    pub dir: PathBuf,
    /// Times the agent was started.
    pub starts: u32,
    agent: Option<Child>,
    // Last: deleted after the agent is gone.
    ns: TestNetns,
}

impl Node {
    /// The node's namespace.
    pub fn netns(&self) -> &TestNetns {
        &self.ns
    }

    /// The agent's plugin socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("overlayd.sock")
    }

    /// The agent's admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The agent's log file (every start appends to it).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("overlayd.log")
    }

    /// Whether the agent process is running.
    pub fn agent_running(&mut self) -> bool {
        match &mut self.agent {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn stop_agent(&mut self, signal: libc::c_int) {
        if let Some(mut child) = self.agent.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, signal);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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

    /// Create one more node on the underlay and start its agent with the
    /// cluster's seeds: a fresh node joining. Returns its index.
    pub fn add_node(&mut self) -> Result<usize> {
        let i = self.nodes.len();
        let ip = Self::node_ip(&self.config, i)?;
        let ns = Self::netns(&self.config, &format!("n{}", i + 1))?;
        let (up, down) = (format!("ovtu{i}"), format!("ovtd{i}"));
        let switch = self
            .switch
            .as_ref()
            .ok_or_else(|| anyhow!("the underlay is gone"))?;
        switch
            .ip([
                "link",
                "add",
                &down,
                "type",
                "veth",
                "peer",
                "name",
                &up,
                "netns",
                ns.name(),
            ])
            .context("underlay veth")?;
        switch.ip(["link", "set", &down, "master", "ovtsw0", "up"])?;
        let prefix = self.config.underlay.prefix_len();
        let mut addr = vec![
            "addr".to_owned(),
            "add".into(),
            format!("{ip}/{prefix}"),
            "dev".into(),
            up.clone(),
        ];
        if ip.is_ipv6() {
            // Usable at once: no duplicate address detection wait.
            addr.push("nodad".into());
        }
        ns.ip(&addr).context("underlay address")?;
        ns.ip(["link", "set", &up, "up"])?;
        let dir = self.config.work_dir.join(format!("node-{}", i + 1));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let text = self
            .config
            .conflist
            .replace("{socket}", &dir.join("overlayd.sock").display().to_string())
            .replace("{bridge}", &self.config.bridge);
        let conflist = ConfList::from_bytes(text.into_bytes()).context("the CNI conflist")?;
        self.conflists.push(conflist);
        self.nodes.push(Node {
            name: format!("node-{}", i + 1),
            ip,
            dir,
            starts: 0,
            agent: None,
            ns,
        });
        self.start_agent(i)?;
        Ok(i)
    }

    fn node_mut(&mut self, i: usize) -> Result<&mut Node> {
        self.nodes.get_mut(i).ok_or_else(|| anyhow!("no node {i}"))
    }

    /// Start node `i`'s agent (again). Its store in the node's directory
    /// keeps its identity, blocks and allocations across starts.
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        let config = self.config.clone();
        let seeds = self.seeds.clone();
        let node = self.node_mut(i)?;
        if node.agent_running() {
            bail!("{}'s agent is running", node.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .with_context(|| format!("open {}", node.log_path().display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", node.ns.name()])
            .arg(config.bin("overlayd"))
            .args(["--node-name", &node.name])
            .args(["--node-ip", &node.ip.to_string()])
            .args(["--peers", &seeds])
            .args(["--range", &config.range.to_string()])
            .arg("--state-dir")
            .arg(node.dir.join("state"))
            .arg("--socket")
            .arg(node.socket())
            .arg("--admin-socket")
            .arg(node.admin_socket())
            .args(["--bridge", &config.bridge, "--vxlan", &config.vxlan])
            .args(["--log", &config.log])
            .env_remove("OVERLAY_PASSWORD")
            .env_remove("OVERLAY_PASSWORD_FILE");
        if let Some(prefix) = config.block_prefix {
            cmd.args(["--block-prefix", &prefix.to_string()]);
        }
        cmd.args(&config.agent_args);
        if let Some(password) = &config.password {
            // Through the environment, not argv (`ps` shows argv).
            cmd.env("OVERLAY_PASSWORD", password);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start overlayd")?;
        node.agent = Some(child);
        node.starts += 1;
        Ok(())
    }

    /// Stop node `i`'s agent gracefully (SIGTERM: it leaves the mesh).
    pub fn stop_agent(&mut self, i: usize) -> Result<()> {
        self.node_mut(i)?.stop_agent(libc::SIGTERM);
        Ok(())
    }

    /// Kill node `i`'s agent (SIGKILL: a crash; peers find out by failure
    /// detection).
    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        self.node_mut(i)?.stop_agent(libc::SIGKILL);
        Ok(())
    }

    /// Run a program in node `i`'s namespace and return its standard
    /// output; fails unless it exits with status 0.
    pub fn exec(&self, i: usize, argv: &[&str]) -> Result<String> {
        let node = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        let out = node.ns.exec(argv)?;
        if !out.status.success() {
            bail!(
                "{} on {}: {}{}",
                argv.join(" "),
                node.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `overlayctl <args>` in node `i`'s namespace, with the node's admin
    /// socket; its standard output.
    pub fn overlayctl(&self, i: usize, args: &[&str]) -> Result<String> {
        let node = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        let ctl = self.config.bin("overlayctl");
        let admin = node.admin_socket();
        let mut argv = vec![
            ctl.to_str().unwrap_or("overlayctl"),
            "--admin-socket",
            admin.to_str().unwrap_or_default(),
        ];
        argv.extend_from_slice(args);
        self.exec(i, &argv)
    }

    /// Kernel state of node `i` for a failure message: links, addresses,
    /// routes, neighbours, FDB.
    pub fn describe_node(&self, i: usize) -> String {
        let mut out = String::new();
        for argv in [
            &["ip", "-br", "link"][..],
            &["ip", "-br", "addr"][..],
            &["ip", "route"][..],
            &["ip", "-6", "route"][..],
            &["ip", "neigh"][..],
            &["bridge", "fdb", "show", "dev", &self.config.vxlan][..],
        ] {
            out.push_str(&format!("$ {}\n", argv.join(" ")));
            match self.exec(i, argv) {
                Ok(text) => out.push_str(&text),
                Err(e) => out.push_str(&format!("{e:#}\n")),
            }
        }
        out
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

    /// Create one more node whose agent uses `password` instead of the
    /// cluster's (`None`: unencrypted), as [`Cluster::add_node`] does
    /// otherwise: a node that must not be let in. Later
    /// [`Cluster::start_agent`] calls on it use the cluster's password.
    pub fn add_node_with_password(&mut self, password: Option<String>) -> Result<usize> {
        let cluster_password = std::mem::replace(&mut self.config.password, password);
        let added = self.add_node();
        self.config.password = cluster_password;
        added
    }

    /// Take node `i` off the underlay: both ends of its link to the switch
    /// go down, so nothing reaches it or leaves it (a node that is really
    /// gone, for peers' failure detection).
    pub fn disconnect(&mut self, i: usize) -> Result<()> {
        let node = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        node.ns.ip(["link", "set", &format!("ovtu{i}"), "down"])?;
        if let Some(switch) = &self.switch {
            switch.ip(["link", "set", &format!("ovtd{i}"), "down"])?;
        }
        Ok(())
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
