//! The reference plugin end to end, as root: three nodes (test namespaces on
//! one underlay bridge), `overlayd` in each with an encrypted mesh, two pods
//! per node attached by the real `overlay` CNI executable, and a pod-to-pod
//! ping matrix across nodes. Then one agent is restarted: it keeps its
//! identity, blocks and allocations (an ADD repeated for a live pod gets the
//! same address, a new pod a new one), and the matrix still passes.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use overlay_examples::agent::status::Status;
use overlay_testsupport::{TestNetns, privileged_test};

const RANGE: &str = "198.19.0.0/16";

/// An agent process, killed when dropped.
struct Agent {
    child: Option<Child>,
}

impl Agent {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: a graceful leave.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Node {
    ns: TestNetns,
    ip: String,
    dir: PathBuf,
    agent: Agent,
}

fn start_agent(ns: &TestNetns, n: usize, ip: &str, dir: &Path, seeds: &str) -> Agent {
    let log = std::fs::File::create(dir.join(format!("overlayd-{n}.log"))).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_overlayd")])
        .args([
            "--node-name",
            &format!("node-{n}"),
            "--node-ip",
            ip,
            "--peers",
            seeds,
        ])
        .args(["--range", RANGE, "--password", "cluster secret"])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(dir.join("overlayd.sock"))
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .args(["--bridge", "ovtbr0", "--vxlan", "ovtvx0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Agent { child: Some(child) }
}

fn status(node: &Node) -> Option<Status> {
    let out = node
        .ns
        .exec([env!("CARGO_BIN_EXE_overlayctl"), "status", "--json"])
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn wait_ready(nodes: &[Node], peers: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states: Vec<Option<(String, usize)>> = nodes
            .iter()
            .map(|n| status(n).map(|s| (s.ipam.state, s.datapath.peers_programmed)))
            .collect();
        if states
            .iter()
            .all(|s| matches!(s, Some((state, p)) if state == "ready" && *p == peers))
        {
            return;
        }
        if Instant::now() > deadline {
            for n in nodes {
                let n_ = &n.ip[n.ip.len() - 1..];
                let log = std::fs::read_to_string(n.dir.join(format!("overlayd-{n_}.log")))
                    .unwrap_or_default();
                eprintln!("--- {} ---\n{log}", n.ip);
            }
            panic!("agents not ready: {states:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Run the CNI plugin in `node`'s namespace; its result's first address.
fn cni(
    node: &Node,
    command: &str,
    container: &str,
    pod: &TestNetns,
) -> Result<Option<IpAddr>, String> {
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"overlay","type":"overlay","bridge":"ovtbr0","socket":"{}"}}"#,
        node.dir.join("overlayd.sock").display()
    );
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            node.ns.name(),
            env!("CARGO_BIN_EXE_overlay"),
        ])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    if command != "ADD" {
        return Ok(None);
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = result["ips"][0]["address"].as_str().unwrap();
    Ok(Some(address.split('/').next().unwrap().parse().unwrap()))
}

/// The namespace's packet filter rules, both as nftables and as
/// iptables (legacy) show them.
fn nft_and_iptables(ns: &TestNetns) -> String {
    let mut out = String::new();
    for argv in [
        &["nft", "list", "ruleset"][..],
        &["iptables-legacy-save"][..],
        &["iptables-save"][..],
    ] {
        if let Ok(o) = ns.exec(argv) {
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    out
}

/// Whether `to` answers a ping from `from` within `limit`: for a pod that
/// appears while the cluster's views converge (ring anti-entropy runs every
/// few seconds).
fn ping_within(from: &TestNetns, to: IpAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ping(from, to) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

fn ping(from: &TestNetns, to: IpAddr) -> bool {
    from.exec(["ping", "-c", "2", "-i", "0.2", "-W", "2", &to.to_string()])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn three_nodes_attach_pods_that_reach_each_other_and_survive_an_agent_restart() {
    privileged_test!();
    let dir = tempfile::tempdir().unwrap();
    let switch = TestNetns::with_kind("sw").unwrap();
    switch
        .ip(["link", "add", "ovtsw0", "type", "bridge"])
        .unwrap();
    switch.ip(["link", "set", "ovtsw0", "up"]).unwrap();
    let ips: Vec<String> = (1..=3).map(|n| format!("198.18.0.{n}")).collect();
    let seeds = ips.join(",");
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let ns = TestNetns::with_kind("nd").unwrap();
        let (up, down) = (format!("ovtu{i}"), format!("ovtd{i}"));
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
            .unwrap();
        switch
            .ip(["link", "set", &down, "master", "ovtsw0", "up"])
            .unwrap();
        ns.ip(["addr", "add", &format!("{ip}/24"), "dev", &up])
            .unwrap();
        ns.ip(["link", "set", &up, "up"]).unwrap();
        ns.ip(["link", "set", "lo", "up"]).unwrap();
        let node_dir = dir.path().join(format!("node{}", i + 1));
        std::fs::create_dir_all(&node_dir).unwrap();
        let agent = start_agent(&ns, i + 1, ip, &node_dir, &seeds);
        nodes.push(Node {
            ns,
            ip: ip.clone(),
            dir: node_dir,
            agent,
        });
    }
    wait_ready(&nodes, 2);

    // Two pods per node, through the real plugin.
    let mut pods = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for p in 0..2 {
            let pod = TestNetns::with_kind("pd").unwrap();
            let ip = cni(node, "ADD", &format!("c{i}{p}"), &pod)
                .unwrap()
                .unwrap();
            pods.push((i, format!("c{i}{p}"), pod, ip));
        }
    }
    let addresses: BTreeSet<IpAddr> = pods.iter().map(|p| p.3).collect();
    assert_eq!(addresses.len(), pods.len(), "every pod has its own address");
    let pairs: Vec<(&TestNetns, IpAddr)> = pods.iter().map(|p| (&p.2, p.3)).collect();
    let mut failed = Vec::new();
    for (i, (ns, from)) in pairs.iter().enumerate() {
        for (j, (_, to)) in pairs.iter().enumerate() {
            if i != j && !ping(ns, *to) {
                failed.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(failed.is_empty(), "pings failed: {failed:?}");

    // The same status through the agent's API: three peers, encrypted.
    let s = status(&nodes[0]).unwrap();
    assert_eq!(s.peers.len(), 2);
    assert_eq!(
        s.encryption,
        overlay_examples::agent::status::Encryption::Encrypted
    );
    // Node 1 founded the ring: it holds the range's network address too.
    assert_eq!(s.ipam.used, 2 + 2, "network and bridge addresses, two pods");

    // Restart node 2's agent: same identity, same blocks, same addresses.
    let before = status(&nodes[1]).unwrap();
    nodes[1].agent.stop();
    nodes[1].agent = start_agent(&nodes[1].ns, 2, &ips[1], &nodes[1].dir, &seeds);
    wait_ready(&nodes, 2);
    let after = status(&nodes[1]).unwrap();
    assert_eq!(after.node.id, before.node.id);
    assert_eq!(after.node.incarnation, before.node.incarnation + 1);
    assert_eq!(after.node.blocks, before.node.blocks);
    let again = cni(&nodes[1], "CHECK", &pods[2].1, &pods[2].2);
    assert!(again.is_err(), "CHECK without prevResult is refused");
    let fresh = TestNetns::with_kind("pd").unwrap();
    let new_ip = cni(&nodes[1], "ADD", "c-new", &fresh).unwrap().unwrap();
    assert!(
        !addresses.contains(&new_ip),
        "a restarted agent never hands out a live address"
    );
    let pairs: Vec<(&TestNetns, IpAddr)> = pods.iter().map(|p| (&p.2, p.3)).collect();
    for (ns, to) in [(&fresh, pairs[0].1), (pairs[5].0, new_ip)] {
        assert!(
            ping_within(ns, to, Duration::from_secs(10)),
            "after the restart: -> {to}"
        );
    }

    // The deploy/ conflist through overlay-cni's runtime side, as kubelet's
    // runtime runs it: overlay, then Debian's portmap and bandwidth with
    // their capabilities, in node 1's namespace.
    let chained = TestNetns::with_kind("pd").unwrap();
    let conflist = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/10-overlay.conflist"
    ))
    .unwrap()
    .replace(
        "/run/overlay/overlayd.sock",
        &nodes[0].dir.join("overlayd.sock").display().to_string(),
    )
    .replace("\"overlay0\"", "\"ovtbr0\"");
    let list = overlay_cni::runtime::ConfList::from_bytes(conflist.into_bytes()).unwrap();
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_overlay"))
        .parent()
        .unwrap()
        .to_path_buf();
    let runtime =
        overlay_cni::runtime::Runtime::new(vec![plugin_dir, PathBuf::from("/usr/lib/cni")])
            .with_cache_dir(dir.path().join("cni-cache"));
    let rt = overlay_cni::runtime::RuntimeConf::new("c-chained", "eth0")
        .with_netns(chained.path())
        .with_capability(
            "portMappings",
            serde_json::json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]),
        )
        .with_capability(
            "bandwidth",
            serde_json::json!({"ingressRate": 10_000_000, "ingressBurst": 100_000}),
        );
    let result = nodes[0]
        .ns
        .run_in(|| runtime.add_network_list(&list, &rt))
        .unwrap()
        .unwrap();
    let chained_ip = result.ips[0].address.addr();
    assert!(!addresses.contains(&chained_ip));
    if !ping_within(&pods[0].2, chained_ip, Duration::from_secs(10)) {
        let sh = |ns: &TestNetns, argv: &[&str]| {
            String::from_utf8_lossy(&ns.exec(argv).map(|o| o.stdout).unwrap_or_default())
                .into_owned()
        };
        let again = ping(&pods[0].2, chained_ip);
        panic!(
            "chained pod {chained_ip} unreachable from its node's pod {} (again: {again})\nresult {result:?}\nnode1 neigh:\n{}\nnode1 routes:\n{}\nnode2 routes:\n{}\npod:\n{}{}\nnode1 links:\n{}\nqdisc:\n{}",
            pods[0].3,
            sh(&nodes[0].ns, &["ip", "neigh"]),
            sh(&nodes[0].ns, &["ip", "route"]),
            sh(&nodes[1].ns, &["ip", "route"]),
            sh(&chained, &["ip", "addr"]),
            sh(&chained, &["ip", "route"]),
            sh(&nodes[0].ns, &["ip", "-br", "link"]),
            sh(&nodes[0].ns, &["tc", "qdisc"]),
        );
    }
    let host_veth = result
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none() && i.name != "ovtbr0")
        .map(|i| i.name.clone())
        .unwrap();
    let qdisc = nodes[0]
        .ns
        .exec(["tc", "qdisc", "show", "dev", &host_veth])
        .unwrap();
    let qdisc = String::from_utf8_lossy(&qdisc.stdout).into_owned();
    assert!(
        qdisc.contains("tbf"),
        "bandwidth shaped the host veth {host_veth}: {qdisc}"
    );
    let rules = nft_and_iptables(&nodes[0].ns);
    assert!(rules.contains("18080"), "portmap mapped the port: {rules}");
    nodes[0]
        .ns
        .run_in(|| runtime.del_network_list(&list, &rt))
        .unwrap()
        .unwrap();
    let rules = nft_and_iptables(&nodes[0].ns);
    assert!(!rules.contains("18080"), "DEL removed the mapping: {rules}");

    // Teardown through the plugin: DEL is idempotent.
    for (i, container, pod, _) in &pods {
        cni(&nodes[*i], "DEL", container, pod).unwrap();
        cni(&nodes[*i], "DEL", container, pod).unwrap();
    }
    cni(&nodes[1], "DEL", "c-new", &fresh).unwrap();
}
