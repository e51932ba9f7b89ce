//! The local demo of the overlay SDK: a cluster of nodes in network
//! namespaces on this machine, each running the real `overlayd`, with pods
//! attached by the real `overlay` CNI plugin, pinging each other across
//! nodes through VXLAN.
//!
//! What it does (as root, `scripts/demo.sh`), on
//! [`overlay_examples::cluster`]:
//!
//! 1. creates an underlay switch (a bridge in a namespace of its own) and
//!    `--nodes` node namespaces plugged into it (`198.18.0.1`, `.2`, ...),
//!    and starts `overlayd` in each, with an encrypted gossip mesh;
//! 2. waits until every agent has joined the mesh, claimed address space in
//!    the pod range (`--range`) and programmed every other node as a VXLAN
//!    peer;
//! 3. attaches `--pods` pods to each node by running the `overlay` CNI
//!    executable through `overlay-cni`'s runtime side, as a container
//!    runtime does, and waits until every node routes every other node's
//!    address blocks;
//! 4. prints the topology (`overlayctl topology` on node 1) and the IPAM
//!    view of every node;
//! 5. runs a ping matrix (every pod pings every other pod) while `tcpdump`
//!    captures node 1's underlay port, and decodes one captured VXLAN packet
//!    with [`overlay_core::encap::VxlanEncap`];
//! 6. tears everything down through the plugin (`DEL`), stops the agents and
//!    deletes the namespaces, or with `--keep` leaves it running for a look
//!    with `overlayctl` and says how to delete it.
//!
//! The binaries `overlayd`, `overlay` and `overlayctl` are taken from the
//! directory of the demo's own executable (`cargo build --bins` puts them
//! there). Namespaces are named `ovd-<pid>-<role>`: `sw` (the switch),
//! `n<k>` (node k), `n<k>p<j>` (pod j, on node k); state, sockets, logs and
//! the capture go to `$TMPDIR/ovd-<pid>`.
//!
//! Interrupted by SIGINT (Ctrl-C) or SIGTERM at any point, it stops, kills
//! every process in its namespaces (`overlayd`, `ping`, `tcpdump`, a
//! plugin), deletes the namespaces (and with them every link it made) and
//! exits with status 128 + the signal number. `--keep` applies only to a demo
//! that runs to the end: an interrupted demo always cleans up, since a
//! half-built cluster is no use for a look. A second signal during the
//! cleanup does not cut it short.
//!
//! Without root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`) it says so and exits
//! with status 1 before it touches anything.
//!
//! It only wires the library crates and the example binaries together; the
//! logic lives in them.

use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use ipnet::IpNet;
use overlay_examples::agent::status::Encryption;
use overlay_examples::cluster::{
    Cluster, ClusterConfig, NetnsRegistry, kill_children_in, netns_inodes,
};
use overlay_examples::demo::capture::{Capture, describe_frame, vxlan_params};
use overlay_examples::demo::report::{
    IpamRow, Kept, blocks_or_none, ipam_table, keep_help, plural,
};
use overlay_examples::demo::signals::{exit_status, signal_name, take_stop_signals};
use overlay_testsupport::{CAP_NET_ADMIN, CAP_SYS_ADMIN, effective_capabilities};

/// A local overlay cluster in network namespaces: nodes running overlayd,
/// pods attached by the overlay CNI plugin, a pod-to-pod ping matrix across
/// nodes. Needs root; deletes everything it made when done or interrupted.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Nodes: network namespaces on a shared underlay, each running overlayd.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    nodes: u16,
    /// Pods attached to each node.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=50))]
    pods: u16,
    /// The cluster's pod range, which the agents divide into blocks. The
    /// default is inside 198.18.0.0/15, reserved for testing (the underlay
    /// is 198.18.0.0/24); overlayd's own default is 10.32.0.0/12.
    #[arg(long, default_value = "198.19.0.0/16")]
    range: IpNet,
    /// Leave the cluster running at the end (agents, pods, namespaces) for a
    /// look with overlayctl, and print how to delete it. Ignored when the
    /// demo is interrupted.
    #[arg(long)]
    keep: bool,
    /// Echo requests per pair in the ping matrix, 0.2 s apart (more gives
    /// tcpdump or Wireshark on the underlay more to show).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pings: u32,
}

/// The underlay: node `k` gets host address `k`.
const UNDERLAY: &str = "198.18.0.0/24";
/// The pods' bridge and the VXLAN device on every node.
const BRIDGE: &str = "ovdbr0";
const VXLAN: &str = "ovdvx0";

/// How long the agents may take to become ready, and the routes to converge.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const ROUTES_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cleanup after a signal waits for the demo's step under way
/// to give up (everything it uses is gone by then, so it fails fast).
const WORKER_GRACE: Duration = Duration::from_secs(5);

/// Set when a signal stopped the demo: the demo's thread prints nothing more
/// and leaves the cleanup to the main thread.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Fail if a signal stopped the demo; called between steps.
fn checkpoint() -> Result<()> {
    if stopping() {
        bail!("stopped by a signal");
    }
    Ok(())
}

/// When the demo started, for the progress lines' timestamps.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// A progress line, with the time since the start.
fn say(msg: impl AsRef<str>) {
    if !stopping() {
        let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
        println!("[{t:5.1}s] {}", msg.as_ref());
    }
}

/// A block of text (a table), indented.
fn show(text: &str) {
    if !stopping() {
        for line in text.lines() {
            println!("    {line}");
        }
    }
}

/// How the demo ended when nobody interrupted it.
enum Finished {
    /// Everything was deleted.
    TornDown,
    /// Left running (`--keep`).
    Kept,
}

/// What the main thread waits for.
enum Event {
    Signal(libc::c_int),
    Done(Result<Finished>),
}

/// Whether this process may create namespaces and links: `CAP_SYS_ADMIN`
/// and `CAP_NET_ADMIN` in its effective set. `None` if that cannot be read.
fn has_privileges() -> Option<bool> {
    let caps = effective_capabilities()?;
    Some(
        [CAP_NET_ADMIN, CAP_SYS_ADMIN]
            .iter()
            .all(|bit| caps & (1 << bit) != 0),
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    if has_privileges() == Some(false) {
        eprintln!(
            "overlay-demo needs root: it creates network namespaces, links and routes \
             (CAP_SYS_ADMIN and CAP_NET_ADMIN). Run it as root, e.g. `sudo scripts/demo.sh`."
        );
        return ExitCode::FAILURE;
    }
    let (events, done) = mpsc::channel();
    let on_signal = events.clone();
    if let Err(e) = take_stop_signals(move |sig| {
        let _ = on_signal.send(Event::Signal(sig));
    }) {
        eprintln!("overlay-demo: {e:#}");
        return ExitCode::FAILURE;
    }
    STARTED.get_or_init(Instant::now);
    let prefix = format!("ovd-{}", std::process::id());
    let work_dir = std::env::temp_dir().join(&prefix);
    let registry = NetnsRegistry::default();
    let keep = args.keep;
    let worker = {
        let (registry, work_dir, prefix) = (registry.clone(), work_dir.clone(), prefix.clone());
        std::thread::Builder::new()
            .name("demo".into())
            .spawn(move || {
                let outcome = run(&args, &prefix, registry, &work_dir);
                let _ = events.send(Event::Done(outcome));
            })
    };
    if let Err(e) = worker {
        eprintln!("overlay-demo: cannot start the demo thread: {e}");
        return ExitCode::FAILURE;
    }
    match done.recv() {
        Ok(Event::Done(Ok(Finished::Kept))) => ExitCode::SUCCESS,
        Ok(Event::Done(Ok(Finished::TornDown))) => {
            registry.delete_all_with_prefix(&prefix);
            let _ = std::fs::remove_dir_all(&work_dir);
            ExitCode::SUCCESS
        }
        Ok(Event::Done(Err(e))) => {
            // The cluster was torn down when the demo's thread dropped it;
            // this only catches what a failed step left.
            registry.delete_all_with_prefix(&prefix);
            eprintln!("overlay-demo: {e:#}");
            if work_dir.join("node-1").exists() {
                eprintln!(
                    "overlay-demo: agent logs kept in {}/node-*/overlayd.log",
                    work_dir.display()
                );
            }
            ExitCode::FAILURE
        }
        Ok(Event::Signal(sig)) => {
            STOPPING.store(true, Ordering::SeqCst);
            if keep {
                eprintln!("{}: not keeping a half-built demo", signal_name(sig));
            }
            eprintln!(
                "{}: cleaning up: killing the demo's processes, deleting its namespaces",
                signal_name(sig)
            );
            // Kill everything in the namespaces and delete them: the step
            // under way fails at once.
            let mut inodes = netns_inodes(&prefix);
            registry.delete_all_with_prefix(&prefix);
            // Let the step give up, so that it creates nothing after the
            // final sweep; the process exits after it regardless.
            let deadline = Instant::now() + WORKER_GRACE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match done.recv_timeout(left) {
                    Ok(Event::Done(_)) | Err(_) => break,
                    Ok(Event::Signal(_)) => {}
                }
            }
            inodes.extend(netns_inodes(&prefix));
            registry.delete_all_with_prefix(&prefix);
            // A process that entered a namespace after its processes were
            // listed (`ip netns exec` racing the deletion) keeps it alive
            // without a name: find it by the namespace's inode.
            kill_children_in(&inodes);
            let _ = std::fs::remove_dir_all(&work_dir);
            ExitCode::from(exit_status(sig))
        }
        Err(_) => {
            eprintln!("overlay-demo: the demo thread vanished");
            ExitCode::FAILURE
        }
    }
}

/// The demo. Namespaces it creates are recorded in `registry`, which the
/// main thread uses to clean up after a signal.
fn run(args: &Args, prefix: &str, registry: NetnsRegistry, work_dir: &Path) -> Result<Finished> {
    let bin_dir = std::env::current_exe()
        .context("the demo's own path")?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the demo's executable has no directory"))?;
    for bin in ["overlayd", "overlay", "overlayctl"] {
        if !bin_dir.join(bin).is_file() {
            bail!(
                "{bin} is not next to overlay-demo in {}: build the example binaries first \
                 (cargo build -p overlay-examples --bins, as scripts/demo.sh does)",
                bin_dir.display()
            );
        }
    }
    let underlay: IpNet = UNDERLAY.parse()?;
    // The agents program pod blocks of the underlay's family only.
    if args.range.addr().is_ipv4() != underlay.addr().is_ipv4() {
        bail!(
            "--range {}: the underlay is {underlay}, pods must be IPv4",
            args.range
        );
    }
    if args.range.contains(&underlay.network()) || underlay.contains(&args.range.network()) {
        bail!("--range {} overlaps the underlay {underlay}", args.range);
    }
    let mut config = ClusterConfig::new(&bin_dir, work_dir);
    config.nodes = usize::from(args.nodes);
    config.range = args.range;
    config.underlay = underlay;
    config.netns_prefix = Some(prefix.to_owned());
    config.bridge = BRIDGE.into();
    config.vxlan = VXLAN.into();
    config.registry = registry;

    println!(
        "overlay {} demo: {} running overlayd, {} on each, pods from {}",
        env!("CARGO_PKG_VERSION"),
        plural(args.nodes.into(), "node"),
        plural(args.pods.into(), "pod"),
        config.range
    );
    say(format!(
        "creating the underlay switch ({prefix}-sw, {}) and {}, a namespace each; starting overlayd on each (encrypted mesh)",
        config.underlay,
        plural(args.nodes.into(), "node")
    ));
    let mut cluster = Cluster::start(config)?;
    let outcome = demo(&mut cluster, args, &bin_dir, work_dir);
    if stopping() {
        // The main thread deletes everything: leave it alone here.
        let _ = cluster.keep();
        bail!("stopped by a signal");
    }
    outcome?;
    if args.keep {
        // A pod to ping from, and one on another node to ping.
        let ping = match (cluster.pods().first(), cluster.pods().last()) {
            (Some(from), Some(to)) => Some((from.netns().name().to_owned(), to.ip)),
            _ => None,
        };
        let names = cluster.keep();
        println!(
            "{}",
            keep_help(&Kept {
                names: &names,
                prefix,
                bin_dir: &bin_dir,
                work_dir,
                ping,
            })
        );
        return Ok(Finished::Kept);
    }
    let (pods, nodes) = (cluster.pods().len(), cluster.nodes().len());
    say(format!(
        "tearing down: CNI DEL of {} through the plugin, stopping {}, deleting the namespaces",
        plural(pods, "pod"),
        plural(nodes, "agent")
    ));
    let failed = cluster.teardown();
    if !failed.is_empty() {
        bail!("teardown: {}", failed.join("; "));
    }
    say("done: everything the demo created is gone");
    Ok(Finished::TornDown)
}

/// The steps between start and teardown.
fn demo(cluster: &mut Cluster, args: &Args, bin_dir: &Path, work_dir: &Path) -> Result<()> {
    for node in cluster.nodes() {
        say(format!(
            "{}: namespace {}, underlay {}, overlayd started",
            node.name,
            node.netns().name(),
            node.ip
        ));
    }
    say("waiting for the agents to join the mesh, claim address space and program their peers");
    cluster.wait_each_ready(READY_TIMEOUT, |s, took| {
        say(format!(
            "{}: overlayd ready after {:.1}s: {}, encryption {}, owns {}",
            s.node.name,
            took.as_secs_f64(),
            plural(s.peers.len(), "peer"),
            match s.encryption {
                Encryption::Encrypted => "on",
                Encryption::Unencrypted => "off",
            },
            blocks_or_none(&s.node.blocks),
        ));
    })?;

    say(format!(
        "attaching {} per node with the overlay CNI plugin ({}), run as a container runtime runs it",
        plural(args.pods.into(), "pod"),
        bin_dir.join("overlay").display()
    ));
    let mut n = 0;
    for i in 0..cluster.nodes().len() {
        for _ in 0..args.pods {
            checkpoint()?;
            n += 1;
            let p = cluster.attach(i, &format!("pod{n}"))?;
            let pod = &cluster.pods()[p];
            let ip = pod.result.ips.first();
            say(format!(
                "pod{n} on {}: {} gateway {} (namespace {})",
                cluster.nodes()[i].name,
                ip.map_or_else(|| pod.ip.to_string(), |c| c.address.to_string()),
                ip.and_then(|c| c.gateway)
                    .map_or_else(|| "none".to_owned(), |g| g.to_string()),
                pod.netns().name(),
            ));
        }
    }
    cluster.distinct_addresses()?;
    let took = cluster.wait_routes(ROUTES_TIMEOUT)?;
    say(format!(
        "routes converged after {:.1}s: every node routes every other node's blocks through its VXLAN device",
        took.as_secs_f64()
    ));

    checkpoint()?;
    say("topology (overlayctl topology on node-1):");
    show(&cluster.overlayctl(0, &["topology"])?);
    say("IPAM: the blocks each node owns and the addresses used in them:");
    let statuses = cluster.statuses()?;
    let rows: Vec<IpamRow<'_>> = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| IpamRow {
            status,
            underlay: cluster.nodes()[i].ip,
            pods: cluster
                .pods()
                .iter()
                .filter(|p| p.node == i)
                .map(|p| (p.container_id.clone(), p.ip))
                .collect(),
        })
        .collect();
    show(&ipam_table(&rows));

    checkpoint()?;
    let (vni, port) = vxlan_params(cluster, 0, VXLAN)?;
    let capture = Capture::start(cluster, 0, work_dir, port);
    if let Ok(c) = &capture {
        say(format!(
            "tcpdump captures VXLAN (udp port {port}) on node-1's underlay port {} in {}",
            c.interface, c.netns
        ));
    }
    let pairs = cluster.pods().len() * cluster.pods().len().saturating_sub(1);
    say(format!(
        "ping matrix: every pod pings every other pod, on its node and across nodes ({pairs} pairs)"
    ));
    let matrix = cluster.ping_matrix_with(args.pings);
    checkpoint()?;
    show(&matrix.to_string());
    let failures = matrix.failures();
    let captured = capture.map(Capture::finish);
    if !failures.is_empty() {
        let mut msg = format!("{} of {pairs} pairs did not answer:", failures.len());
        for f in &failures {
            msg.push_str(&format!("\n  {f}"));
        }
        for i in 0..cluster.nodes().len() {
            msg.push_str(&format!(
                "\n--- {}:\n{}",
                cluster.nodes()[i].name,
                cluster.describe_node(i)
            ));
        }
        bail!(msg);
    }
    say(format!(
        "all {pairs} pairs answered: pod traffic crosses the nodes through VXLAN"
    ));
    match captured {
        Ok(Ok(Some(frame))) => say(describe_frame(cluster, &frame, vni, port)?),
        Ok(Ok(None)) => say("(tcpdump captured no VXLAN packet)"),
        Ok(Err(e)) | Err(e) => say(format!("(no capture: {e:#})")),
    }
    if args.keep {
        say(format!(
            "the capture stays in {}",
            work_dir.join("underlay.pcap").display()
        ));
    }
    Ok(())
}
