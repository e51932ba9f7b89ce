//! How fast the reference plugin's cluster converges (issue 13, item 7c):
//! from starting `overlayd` on 3 nodes to every pod reaching every other
//! pod, and from a node's agent restart to its pods being reachable again.
//!
//! Cold start, `COLD` times: a fresh 3-node [`Cluster`] (namespaces, the
//! underlay switch, an agent per node with an encrypted mesh, empty state);
//! the clock starts before [`Cluster::start`] (which sets up each node's
//! namespace and veth, some milliseconds, and starts its agent) and
//! measures
//!
//! * `setup`: `Cluster::start` returned (every agent spawned);
//! * `ready`: every agent ready (IPAM ring ready, every other node
//!   programmed as a peer: [`Cluster::wait_ready`]);
//! * `attached`: two pods per node attached through the real `overlay`
//!   plugin (six `ADD`s, one after the other);
//! * `reachable`: every pod answers a ping from a pod on each other node
//!   (each pod pings the pod in the same slot on every other node, one echo
//!   with a 300 ms limit, all sources at once, repeated until all pass);
//!   the full matrix ([`Cluster::ping_matrix`]) is then checked untimed.
//!
//! Restart, `RESTARTS` times for each way down, on one 3×2 cluster, the
//! node rotating: SIGTERM (a graceful stop: it leaves the mesh, and the
//! others withdraw its routes at once) and SIGKILL (a crash), each
//! started again at once, and SIGKILL started again only once every other
//! node has withdrawn it (failure detection; that time is printed too). The
//! clock starts at the new start and measures
//!
//! * `ready`: every agent ready again ([`Cluster::wait_ready`] passes);
//! * `reachable`: each of its pods answers a ping from a pod on each other
//!   node (as above);
//! * `add`: an `ADD` of a new pod on it succeeds (tried every 100 ms,
//!   interleaved with the reachability probe, so each figure has the
//!   other's probe period as its resolution); the pod is deleted after.
//!
//! It prints every sample, then the median and the maximum of each figure.
//! The agents' intervals bound what to expect: a genesis seed listens 2 s
//! for an existing ring before founding one, ring anti-entropy runs every
//! 3 s, the datapath is reconciled every 5 s (and at once on news).
//!
//! Environment: `OVERLAY_CONV_COLD` (default 5), `OVERLAY_CONV_RESTARTS`
//! (default 5 per way down), `OVERLAY_BIN_DIR` (binaries built before).
//! `--test` runs one of each. Needs root. Run with
//! `cargo bench -p overlay-benches --bench cluster_convergence`; the
//! binaries are built in the release profile first.

// Benchmark set-up may unwrap: a failure is a broken benchmark, not data.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use overlay_benches::cluster::{env_u32, max, median, release_bins};
use overlay_examples::cluster::{Cluster, ClusterConfig};
use overlay_testsupport::TestNetns;

/// Nodes of the cluster.
const NODES: usize = 3;
/// Pods per node.
const PODS_PER_NODE: usize = 2;
/// How long any one convergence may take before the bench fails.
const LIMIT: Duration = Duration::from_secs(120);

/// One echo from `from` to `to`, answered within 300 ms.
fn ping_fast(from: &TestNetns, to: IpAddr) -> bool {
    from.exec(["ping", "-c", "1", "-W", "0.3", &to.to_string()])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Pairs `(from, to)` of pod indexes: for each pod in `targets`, the pod in
/// the same slot on every other node pings it (and it pings them).
fn cross_node_pairs(cluster: &Cluster, targets: &[usize]) -> Vec<(usize, usize)> {
    let pods = cluster.pods();
    let slot = |p: usize| pods[..p].iter().filter(|q| q.node == pods[p].node).count();
    let mut pairs = Vec::new();
    for &t in targets {
        for (s, pod) in pods.iter().enumerate() {
            if pod.node != pods[t].node && slot(s) == slot(t) && s < NODES * PODS_PER_NODE {
                pairs.push((s, t));
                pairs.push((t, s));
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Whether every pair answers one ping now (all pairs at once).
fn pairs_answer(cluster: &Cluster, pairs: &[(usize, usize)]) -> bool {
    std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(from, to)| {
                scope.spawn(move || {
                    let pods = cluster.pods();
                    ping_fast(pods[from].netns(), pods[to].ip)
                })
            })
            .collect();
        handles.into_iter().all(|h| h.join().unwrap_or(false))
    })
}

/// Poll `pairs` until all answer; the time from `since`.
fn wait_pairs(cluster: &Cluster, pairs: &[(usize, usize)], since: Instant) -> Duration {
    loop {
        if pairs_answer(cluster, pairs) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < LIMIT,
            "pods not reachable after {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Print `name: median, max` of `samples` (seconds).
fn summary(name: &str, samples: &[f64]) {
    let list: Vec<String> = samples.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "  {name:<28} median {:>6.2} s  max {:>6.2} s   [{}]",
        median(samples),
        max(samples),
        list.join(" ")
    );
}

fn config(bin_dir: &Path, work: &Path) -> ClusterConfig {
    let mut config = ClusterConfig::new(bin_dir, work);
    config.nodes = NODES;
    config
}

fn attach_all(cluster: &mut Cluster) {
    for i in 0..NODES {
        for p in 0..PODS_PER_NODE {
            cluster.attach(i, &format!("c{i}{p}")).unwrap();
        }
    }
}

/// A log line without its ANSI colour codes.
fn plain(line: &str) -> String {
    let mut plain = String::new();
    let mut escape = false;
    for c in line.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
}

/// Seconds since the Unix epoch of a (plain) log line's RFC 3339 UTC
/// timestamp (`2026-11-30T23:45:28.784548Z`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, sec) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// Where a node's start went, from its agent log: seconds from `since`
/// (the Unix time of the cluster's start) to the first `serving` (the
/// cluster key derived from the password, sockets bound), `IPAM ring
/// ready`, `node bridge address` (the node holds a block) and `datapath
/// reconciled` with every other node.
fn log_breakdown(log: &Path, since: f64) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(plain).collect();
    let all_peers = format!("peers={}", NODES - 1);
    let first = |needle: &str, and: Option<&str>| {
        lines
            .iter()
            .find(|l| l.contains(needle) && and.is_none_or(|a| l.contains(a)))
            .and_then(|l| log_time(l))
            .map_or_else(|| "-".to_owned(), |t| format!("{:.2}", t - since))
    };
    format!(
        "serving {}, ring ready {}, own block {}, all peers programmed {}",
        first("serving", None),
        first("IPAM ring ready", None),
        first("node bridge address", None),
        first("datapath reconciled", Some(&all_peers))
    )
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Cold starts: setup, ready, attached, reachable (seconds from the start).
fn cold_start(bin_dir: &Path, work: &Path) -> [f64; 4] {
    let since = unix_now();
    let t0 = Instant::now();
    let mut cluster = Cluster::start(config(bin_dir, work)).unwrap();
    let setup = t0.elapsed();
    cluster.wait_ready(LIMIT).unwrap();
    let ready = t0.elapsed();
    attach_all(&mut cluster);
    let attached = t0.elapsed();
    let all: Vec<usize> = (0..cluster.pods().len()).collect();
    let pairs = cross_node_pairs(&cluster, &all);
    let reachable = wait_pairs(&cluster, &pairs, t0);
    let matrix = cluster.ping_matrix();
    assert!(matrix.failures().is_empty(), "full matrix:\n{matrix}");
    for node in cluster.nodes() {
        println!(
            "    {}: {}",
            node.name,
            log_breakdown(&node.log_path(), since)
        );
    }
    let failed = cluster.teardown();
    assert!(failed.is_empty(), "teardown: {failed:?}");
    [setup, ready, attached, reachable].map(secs)
}

/// How an agent goes down before its restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM, started again at once.
    Term,
    /// SIGKILL, started again at once (before the others notice).
    Kill,
    /// SIGKILL, started again once every other node has withdrawn its
    /// routes (failure detection).
    KillDetected,
}

impl Stop {
    const ALL: [Stop; 3] = [Stop::Term, Stop::Kill, Stop::KillDetected];

    fn label(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM, restarted at once",
            Stop::Kill => "SIGKILL, restarted at once",
            Stop::KillDetected => "SIGKILL, restarted once the others withdrew it",
        }
    }
}

/// After node `i`'s agent was killed: the time until every other node
/// has unprogrammed it (`peers_programmed` one less).
fn wait_withdrawn(cluster: &Cluster, i: usize, since: Instant) -> Duration {
    loop {
        let withdrawn = (0..NODES).filter(|j| *j != i).all(|j| {
            cluster
                .status(j)
                .is_ok_and(|s| s.datapath.peers_programmed == NODES - 2)
        });
        if withdrawn {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < LIMIT,
            "node {i} still programmed after {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One restart of node `i`'s agent: the time the others took to withdraw
/// it (only for [`Stop::KillDetected`]), then ready, reachable, add
/// (seconds from the new start).
fn restart(cluster: &mut Cluster, i: usize, stop: Stop, n: usize) -> [f64; 4] {
    let mut withdrawn = Duration::ZERO;
    match stop {
        Stop::Term => cluster.stop_agent(i).unwrap(),
        Stop::Kill => cluster.kill_agent(i).unwrap(),
        Stop::KillDetected => {
            let t = Instant::now();
            cluster.kill_agent(i).unwrap();
            withdrawn = wait_withdrawn(cluster, i, t);
        }
    }
    let t0 = Instant::now();
    cluster.start_agent(i).unwrap();
    let targets: Vec<usize> = (0..NODES * PODS_PER_NODE)
        .filter(|p| cluster.pods()[*p].node == i)
        .collect();
    let pairs = cross_node_pairs(cluster, &targets);
    let (mut ready, mut reachable, mut add) = (None, None, None);
    while ready.is_none() || reachable.is_none() || add.is_none() {
        assert!(t0.elapsed() < LIMIT, "node {i} not back after {LIMIT:?}");
        if ready.is_none() && cluster.wait_ready(Duration::ZERO).is_ok() {
            ready = Some(t0.elapsed());
        }
        if reachable.is_none() && pairs_answer(cluster, &pairs) {
            reachable = Some(t0.elapsed());
        }
        if add.is_none()
            && let Ok(p) = cluster.attach(i, &format!("r{n}"))
        {
            add = Some(t0.elapsed());
            cluster.detach(p).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Steady state before the next restart.
    let all: Vec<usize> = (0..NODES * PODS_PER_NODE).collect();
    wait_pairs(cluster, &cross_node_pairs(cluster, &all), Instant::now());
    [Some(withdrawn), ready, reachable, add].map(|d| secs(d.unwrap_or_default()))
}

fn main() {
    if !overlay_testsupport::require_privileged() {
        return;
    }
    let test_mode = std::env::args().any(|a| a == "--test");
    let (colds, restarts) = if test_mode {
        (1, 1)
    } else {
        (
            env_u32("OVERLAY_CONV_COLD", 5),
            env_u32("OVERLAY_CONV_RESTARTS", 5),
        )
    };
    let bin_dir = release_bins().unwrap();
    let work = tempfile::tempdir().unwrap();

    println!(
        "cluster_convergence: {NODES} nodes x {PODS_PER_NODE} pods, {colds} cold starts, {restarts} restarts per way down"
    );
    let mut cold: [Vec<f64>; 4] = Default::default();
    for r in 0..colds {
        let dir = work.path().join(format!("cold-{r}"));
        let s = cold_start(&bin_dir, &dir);
        println!(
            "cold {}: setup {:.2} s, ready {:.2} s, attached {:.2} s, reachable {:.2} s",
            r + 1,
            s[0],
            s[1],
            s[2],
            s[3]
        );
        for (k, v) in s.into_iter().enumerate() {
            cold[k].push(v);
        }
    }

    let mut cluster = Cluster::start(config(&bin_dir, &work.path().join("restarts"))).unwrap();
    cluster.wait_ready(LIMIT).unwrap();
    attach_all(&mut cluster);
    let all: Vec<usize> = (0..cluster.pods().len()).collect();
    wait_pairs(&cluster, &cross_node_pairs(&cluster, &all), Instant::now());
    let mut samples: Vec<[Vec<f64>; 4]> = vec![Default::default(); Stop::ALL.len()];
    for r in 0..restarts as usize {
        for (k, stop) in Stop::ALL.into_iter().enumerate() {
            let n = r * Stop::ALL.len() + k;
            let i = n % NODES;
            let s = restart(&mut cluster, i, stop, n);
            println!(
                "restart {} of node-{} ({}): {}ready {:.2} s, reachable {:.2} s, add {:.2} s",
                r + 1,
                i + 1,
                stop.label(),
                if stop == Stop::KillDetected {
                    format!("withdrawn by the others {:.2} s after the kill; ", s[0])
                } else {
                    String::new()
                },
                s[1],
                s[2],
                s[3]
            );
            for (f, v) in s.into_iter().enumerate() {
                samples[k][f].push(v);
            }
        }
    }
    let matrix = cluster.ping_matrix();
    assert!(matrix.failures().is_empty(), "full matrix:\n{matrix}");
    drop(cluster);

    println!("\ncold start, from the start of the 3 agents:");
    for (k, name) in [
        "setup (agents spawned)",
        "ready",
        "attached (6 ADDs)",
        "reachable",
    ]
    .iter()
    .enumerate()
    {
        summary(name, &cold[k]);
    }
    for (k, stop) in Stop::ALL.into_iter().enumerate() {
        println!("agent restart ({}), from the new start:", stop.label());
        if stop == Stop::KillDetected {
            summary("withdrawn (from the kill)", &samples[k][0]);
        }
        for (f, name) in ["ready", "its pods reachable", "new ADD on it"]
            .iter()
            .enumerate()
        {
            summary(name, &samples[k][f + 1]);
        }
    }
}
