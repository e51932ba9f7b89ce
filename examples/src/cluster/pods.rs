//! Pods: attaching them through the CNI runtime, deleting and checking
//! them, and pinging between them.

use super::*;

impl Cluster {
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
        self.on_pod(p, "DEL", Runtime::del_network_list)
    }

    /// CNI `CHECK` of pod `p` (against the cached result).
    pub fn check(&self, p: usize) -> Result<()> {
        self.on_pod(p, "CHECK", Runtime::check_network_list)
    }

    /// Run a runtime command on pod `p`'s attachment, in its node's
    /// namespace.
    fn on_pod<E>(
        &self,
        p: usize,
        command: &str,
        op: impl Fn(&Runtime, &ConfList, &RuntimeConf) -> std::result::Result<(), E> + Send + Sync,
    ) -> Result<()>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let pod = self.pods.get(p).ok_or_else(|| anyhow!("no pod {p}"))?;
        let node = &self.nodes[pod.node];
        let rt = self.runtime_conf(&pod.container_id, &pod.ns);
        node.ns
            .run_in(|| op(&self.runtime, &self.conflists[pod.node], &rt))?
            .with_context(|| format!("CNI {command} of {}", pod.container_id))
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
