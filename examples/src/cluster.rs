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

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use overlay_cni::runtime::{ConfList, Runtime, RuntimeConf};
use overlay_testsupport::TestNetns;

use crate::agent::status::Status;

/// The network name of the cluster's CNI configuration list.
pub const NETWORK: &str = "overlay";

/// Namespace names a cluster has created, shared with whoever must be able
/// to delete them from another thread (a signal handler).
#[derive(Debug, Clone, Default)]
pub struct NetnsRegistry(Arc<Mutex<Vec<String>>>);

impl NetnsRegistry {
    fn add(&self, name: &str) {
        if let Ok(mut names) = self.0.lock() {
            names.push(name.to_owned());
        }
    }

    /// The names recorded so far, in order of creation.
    pub fn names(&self) -> Vec<String> {
        self.0.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Kill every process in the recorded namespaces and delete them, the
    /// newest first. Errors are ignored: a namespace may be gone already.
    pub fn delete_all(&self) {
        let names = match self.0.lock() {
            Ok(mut names) => std::mem::take(&mut *names),
            Err(_) => return,
        };
        for name in names.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>()
                        && pid > 0
                        && u32::try_from(pid).ok() != Some(std::process::id())
                    {
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

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

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

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

/// One ping of a [`PingMatrix`].
#[derive(Debug, Clone)]
pub struct PingResult {
    /// Source pod index.
    pub from: usize,
    /// Destination pod index.
    pub to: usize,
    /// Whether every echo was answered.
    pub ok: bool,
}

/// Every pod pinging every other pod.
#[derive(Debug, Clone)]
pub struct PingMatrix {
    /// The pods' labels (`node-1/pod-1 198.19.0.5`), by pod index.
    pub labels: Vec<String>,
    /// One entry per ordered pair.
    pub results: Vec<PingResult>,
}

impl PingMatrix {
    /// The pairs that failed, as `from -> to` labels.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{} -> {}", self.labels[r.from], self.labels[r.to]))
            .collect()
    }

    /// Pairs that answered.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.ok).count()
    }
}

impl fmt::Display for PingMatrix {
    /// A table: one row per source pod, a column per destination, `ok`,
    /// `--` (itself) or `FAIL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.labels.len();
        let width = self.labels.iter().map(String::len).max().unwrap_or(0);
        write!(f, "{:width$} ", "from \\ to")?;
        for j in 0..n {
            write!(f, " {:>4}", format!("#{}", j + 1))?;
        }
        writeln!(f)?;
        for i in 0..n {
            write!(f, "{:width$} ", self.labels[i])?;
            for j in 0..n {
                let cell = match self.results.iter().find(|r| r.from == i && r.to == j) {
                    _ if i == j => "--",
                    Some(r) if r.ok => "ok",
                    Some(_) => "FAIL",
                    None => "",
                };
                write!(f, " {cell:>4}")?;
            }
            writeln!(f, "  #{}", i + 1)?;
        }
        write!(
            f,
            "{} of {} pairs answered",
            self.passed(),
            self.results.len()
        )
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

    /// Node `i`'s agent status (its status API, through `overlayctl`).
    pub fn status(&self, i: usize) -> Result<Status> {
        let json = self.overlayctl(i, &["status", "--json"])?;
        serde_json::from_str(&json).context("status JSON")
    }

    /// The tail of node `i`'s agent log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Some(node) = self.nodes.get(i) else {
            return String::new();
        };
        let text = std::fs::read_to_string(node.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Indexes of the nodes whose agent runs.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].agent_running())
            .collect()
    }

    /// Wait until every running agent is ready (IPAM state `ready`) and has
    /// programmed every other running node as a peer. On timeout the error
    /// shows each node's state and log tail.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let running = self.running();
            let want = running.len().saturating_sub(1);
            let states: Vec<(usize, Option<(String, usize)>)> = running
                .iter()
                .map(|i| {
                    let s = self
                        .status(*i)
                        .ok()
                        .map(|s| (s.ipam.state, s.datapath.peers_programmed));
                    (*i, s)
                })
                .collect();
            if states
                .iter()
                .all(|(_, s)| matches!(s, Some((state, p)) if state == "ready" && *p == want))
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let mut msg = format!("agents not ready after {timeout:?}:");
                for (i, s) in &states {
                    msg.push_str(&format!(
                        "\n--- {}: {s:?}\n{}",
                        self.nodes[*i].name,
                        self.log_tail(*i, 15)
                    ));
                }
                bail!(msg);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn runtime_conf(&self, container_id: &str, pod: &TestNetns) -> RuntimeConf {
        RuntimeConf::new(container_id, "eth0").with_netns(pod.path())
    }

    /// Attach a new pod to node `i` through the CNI runtime (`ADD` of the
    /// cluster's configuration list). Returns its index in
    /// [`Cluster::pods`].
    pub fn attach(&mut self, i: usize, container_id: &str) -> Result<usize> {
        let ns = Self::netns(&self.config, &format!("n{}p{}", i + 1, self.pods.len() + 1))?;
        let pod = self.attach_in(i, container_id, ns)?;
        self.pods.push(pod);
        Ok(self.pods.len() - 1)
    }

    /// Attach `count` pods to node `i` at the same time, one thread each,
    /// as a runtime starting many pods does (container ids
    /// `<prefix>-<k>`).
    pub fn attach_parallel(&mut self, i: usize, prefix: &str, count: usize) -> Result<Attached> {
        let mut namespaces = Vec::new();
        for k in 0..count {
            let ns = Self::netns(&self.config, &format!("n{}x{k}", i + 1))?;
            namespaces.push((format!("{prefix}-{k}"), ns));
        }
        let this = &*self;
        let outcomes: Vec<(String, Result<Pod>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = namespaces
                .into_iter()
                .map(|(id, ns)| scope.spawn(move || (id.clone(), this.attach_in(i, &id, ns))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (String::new(), Err(anyhow!("attach panicked"))))
                })
                .collect()
        });
        let mut added = Vec::new();
        let mut failed = Vec::new();
        for (id, outcome) in outcomes {
            match outcome {
                Ok(pod) => {
                    self.pods.push(pod);
                    added.push(self.pods.len() - 1);
                }
                Err(e) => failed.push((id, format!("{e:#}"))),
            }
        }
        Ok(Attached {
            pods: added,
            failed,
        })
    }

    fn attach_in(&self, i: usize, container_id: &str, ns: TestNetns) -> Result<Pod> {
        let node = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        let rt = self.runtime_conf(container_id, &ns);
        let list = &self.conflists[i];
        let result = node
            .ns
            .run_in(|| self.runtime.add_network_list(list, &rt))?
            .with_context(|| format!("CNI ADD of {container_id} on {}", node.name))?;
        let ip = result
            .ips
            .first()
            .map(|ip| ip.address.addr())
            .ok_or_else(|| anyhow!("ADD of {container_id} gave no address"))?;
        Ok(Pod {
            node: i,
            container_id: container_id.to_owned(),
            ip,
            result,
            ns,
        })
    }

    /// Detach pod `p` (CNI `DEL`) and delete its namespace.
    pub fn detach(&mut self, p: usize) -> Result<()> {
        if p >= self.pods.len() {
            bail!("no pod {p}");
        }
        self.del(p)?;
        self.pods.remove(p);
        Ok(())
    }

    /// CNI `DEL` of pod `p`, leaving its namespace (`DEL` is idempotent:
    /// running it twice is success).
    pub fn del(&self, p: usize) -> Result<()> {
        let pod = self.pods.get(p).ok_or_else(|| anyhow!("no pod {p}"))?;
        let node = &self.nodes[pod.node];
        let rt = self.runtime_conf(&pod.container_id, &pod.ns);
        node.ns
            .run_in(|| {
                self.runtime
                    .del_network_list(&self.conflists[pod.node], &rt)
            })?
            .with_context(|| format!("CNI DEL of {}", pod.container_id))
    }

    /// CNI `CHECK` of pod `p` (against the cached result).
    pub fn check(&self, p: usize) -> Result<()> {
        let pod = self.pods.get(p).ok_or_else(|| anyhow!("no pod {p}"))?;
        let node = &self.nodes[pod.node];
        let rt = self.runtime_conf(&pod.container_id, &pod.ns);
        node.ns
            .run_in(|| {
                self.runtime
                    .check_network_list(&self.conflists[pod.node], &rt)
            })?
            .with_context(|| format!("CNI CHECK of {}", pod.container_id))
    }

    /// A label for pod `p`: `node-1/c1 198.19.0.5`.
    pub fn pod_label(&self, p: usize) -> String {
        match self.pods.get(p) {
            Some(pod) => format!(
                "{}/{} {}",
                self.nodes[pod.node].name, pod.container_id, pod.ip
            ),
            None => format!("pod {p}"),
        }
    }

    /// Whether `to` answers pings from pod `from` (two echoes, two seconds
    /// each at most).
    pub fn ping(&self, from: usize, to: IpAddr) -> bool {
        self.pods.get(from).is_some_and(|pod| ping(&pod.ns, to))
    }

    /// Whether `to` answers a ping from pod `from` within `limit`, trying
    /// again until then.
    pub fn ping_within(&self, from: usize, to: IpAddr, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.ping(from, to) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every pod pings every other pod; sources run in parallel.
    pub fn ping_matrix(&self) -> PingMatrix {
        self.ping_matrix_with(2)
    }

    /// [`ping_matrix`](Self::ping_matrix) with `echoes` echo requests per
    /// pair ([`ping_echoes`]).
    pub fn ping_matrix_with(&self, echoes: u32) -> PingMatrix {
        let n = self.pods.len();
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    scope.spawn(move || {
                        (0..n)
                            .filter(|j| *j != i)
                            .map(|j| PingResult {
                                from: i,
                                to: j,
                                ok: ping_echoes(&self.pods[i].ns, self.pods[j].ip, echoes),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        PingMatrix {
            labels: (0..n).map(|p| self.pod_label(p)).collect(),
            results,
        }
    }

    /// Every address held by a pod, checking that no two pods share one.
    pub fn distinct_addresses(&self) -> Result<BTreeSet<IpAddr>> {
        let mut seen = BTreeSet::new();
        for p in 0..self.pods.len() {
            if !seen.insert(self.pods[p].ip) {
                bail!("address {} handed out twice", self.pods[p].ip);
            }
        }
        Ok(seen)
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

    /// Every attachment node `i`'s agent holds on the cluster's network
    /// (its `List` answer on the plugin socket): container id and addresses.
    pub fn attachments(&self, i: usize) -> Result<Vec<(String, Vec<IpAddr>)>> {
        use overlay_ipam::agent::{AgentIpam, AgentRequest, AgentResponse, Network};
        let node = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        let agent = AgentIpam::new(node.socket());
        match agent
            .call(&AgentRequest::List(Network::new(NETWORK)))
            .map_err(|e| anyhow!("List on {}: {e}", node.name))?
        {
            AgentResponse::Attachments { attachments } => Ok(attachments
                .into_iter()
                .map(|a| (a.container_id, a.ips))
                .collect()),
            other => bail!("List on {}: {other:?}", node.name),
        }
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

/// Two echoes from `from` to `to`, two seconds each at most.
pub fn ping(from: &TestNetns, to: IpAddr) -> bool {
    ping_echoes(from, to, 2)
}

/// `echoes` echo requests from `from` to `to`, 0.2 s apart, waiting two
/// seconds at most for each answer; whether any was answered.
pub fn ping_echoes(from: &TestNetns, to: IpAddr, echoes: u32) -> bool {
    let count = echoes.max(1).to_string();
    from.exec([
        "ping",
        "-c",
        &count,
        "-i",
        "0.2",
        "-W",
        "2",
        &to.to_string(),
    ])
    .map(|o| o.status.success())
    .unwrap_or(false)
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

impl NetnsRegistry {
    /// [`NetnsRegistry::delete_all`], then the same for every namespace
    /// named `<prefix>-*` that is not recorded: one a step still under way
    /// created after the names were taken (a signal handler cleaning up
    /// while the cluster is busy on another thread).
    pub fn delete_all_with_prefix(&self, prefix: &str) {
        self.delete_all();
        let stray = NetnsRegistry::default();
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('-'))
                {
                    stray.add(&name);
                }
            }
        }
        stray.delete_all();
    }
}

/// Whether `to` answers a ping ([`ping`]) from the namespace `from`
/// within `limit`, trying again until then: [`Cluster::ping_within`] for
/// a namespace that is not one of the cluster's pods.
pub fn ping_within(from: &TestNetns, to: IpAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ping(from, to) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
