//! Nodes: their namespaces and agents, commands run in them, and the
//! underlay links between them.

use super::*;

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
    pub(super) agent: Option<Child>,
    // Last: deleted after the agent is gone.
    pub(super) ns: TestNetns,
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

    pub(super) fn stop_agent(&mut self, signal: libc::c_int) {
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

impl Cluster {
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
