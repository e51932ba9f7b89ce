//! What the agents report: each node's status, and waiting until the
//! cluster is ready and its routes have converged.

use super::*;

impl Cluster {
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

    /// Wait until every node's agent is ready (IPAM state `ready`) and has
    /// programmed every other node as a peer, calling `on_ready` once for
    /// each node as it gets there, with its status and the time since the
    /// start. Unlike [`Cluster::wait_ready`], an agent that is not running
    /// is an error at once (the error shows its log tail), as it is on
    /// timeout (the log tails of the nodes not ready).
    pub fn wait_each_ready(
        &mut self,
        timeout: Duration,
        mut on_ready: impl FnMut(&Status, Duration),
    ) -> Result<Duration> {
        let nodes = self.nodes.len();
        let start = Instant::now();
        let mut ready = vec![false; nodes];
        while ready.contains(&false) {
            let running = self.running();
            for (i, ready) in ready.iter_mut().enumerate() {
                if *ready {
                    continue;
                }
                if !running.contains(&i) {
                    bail!(
                        "overlayd on {} exited:\n{}",
                        self.nodes[i].name,
                        self.log_tail(i, 20)
                    );
                }
                let Ok(s) = self.status(i) else { continue };
                if s.ipam.state == "ready" && s.datapath.peers_programmed + 1 == nodes {
                    *ready = true;
                    on_ready(&s, start.elapsed());
                }
            }
            if start.elapsed() > timeout {
                let mut msg = format!("agents not ready after {timeout:?}:");
                for i in (0..nodes).filter(|i| !ready[*i]) {
                    msg.push_str(&format!(
                        "\n--- {}:\n{}",
                        self.nodes[i].name,
                        self.log_tail(i, 15)
                    ));
                }
                bail!(msg);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(start.elapsed())
    }

    /// Every node's status, in node order.
    pub fn statuses(&self) -> Result<Vec<Status>> {
        (0..self.nodes.len()).map(|i| self.status(i)).collect()
    }

    /// Wait until every node agrees with every other on the blocks each
    /// owns, and routes all of the other nodes' blocks (as many routes as
    /// they own blocks). Returns how long it took; on timeout the error
    /// shows what each node owns, routes and sees.
    pub fn wait_routes(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let all = self.statuses()?;
            if routes_converged(&all) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let mut msg = format!("routes not converged after {timeout:?}:");
                for s in &all {
                    msg.push_str(&format!(
                        "\n{}: owns {:?}, {} routes; sees {:?}",
                        s.node.name,
                        s.node.blocks,
                        s.datapath.routes,
                        s.peers
                            .iter()
                            .map(|p| (&p.name, &p.blocks))
                            .collect::<Vec<_>>()
                    ));
                }
                bail!(msg);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether every node sees every other node own what that node says it
/// owns, and routes as many remote blocks as the others own in all.
fn routes_converged(all: &[Status]) -> bool {
    let sorted = |v: &[String]| {
        let mut v: Vec<String> = v.to_vec();
        v.sort();
        v
    };
    all.iter().all(|s| {
        let others = || all.iter().filter(|o| o.node.id != s.node.id);
        let remote: usize = others().map(|o| o.node.blocks.len()).sum();
        let views_agree = others().all(|o| {
            s.peers
                .iter()
                .any(|p| p.id == o.node.id && sorted(&p.blocks) == sorted(&o.node.blocks))
        });
        views_agree && s.datapath.routes == remote
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::PeerStatus;

    fn node(id: &str, blocks: &[&str], routes: usize, sees: &[(&str, &[&str])]) -> Status {
        let peer = |id: &str, blocks: &[&str]| PeerStatus {
            id: id.into(),
            blocks: blocks.iter().map(|b| (*b).to_owned()).collect(),
            ..PeerStatus::default()
        };
        let mut s = Status {
            node: peer(id, blocks),
            ..Status::default()
        };
        s.peers = sees.iter().map(|(id, b)| peer(id, b)).collect();
        s.datapath.routes = routes;
        s
    }

    #[test]
    fn routes_converge_when_views_agree_and_every_remote_block_is_routed() {
        let a = ["10.0.0.0/26", "10.0.1.0/26"];
        let b = ["10.0.0.64/26"];
        // b's view of a lists the blocks in another order: still agreed.
        let a_rev = ["10.0.1.0/26", "10.0.0.0/26"];
        let good = [
            node("a", &a, 1, &[("b", &b)]),
            node("b", &b, 2, &[("a", &a_rev)]),
        ];
        assert!(routes_converged(&good));
        // b routes only one of a's two blocks.
        let short = [
            node("a", &a, 1, &[("b", &b)]),
            node("b", &b, 1, &[("a", &a)]),
        ];
        assert!(!routes_converged(&short));
        // b has not heard of a's second block yet.
        let stale = [
            node("a", &a, 1, &[("b", &b)]),
            node("b", &b, 2, &[("a", &a[..1])]),
        ];
        assert!(!routes_converged(&stale));
        // A lone node has nothing to route.
        assert!(routes_converged(&[node("a", &a, 0, &[])]));
    }
}
