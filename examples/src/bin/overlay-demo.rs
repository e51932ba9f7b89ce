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

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use ipnet::IpNet;
use overlay_core::encap::{Encapsulation, TunnelConfig, VxlanEncap};
use overlay_core::wire::ethernet::{self, EtherType};
use overlay_core::wire::{Vni, ipv4, ipv6};
use overlay_examples::agent::status::{Encryption, Status};
use overlay_examples::cluster::{Cluster, ClusterConfig, NetnsRegistry};
use overlay_testsupport::{CAP_NET_ADMIN, CAP_SYS_ADMIN, effective_capabilities};
use pcap_file::pcap::PcapReader;

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

/// The signals that stop the demo.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// The write end of the pipe [`on_signal`] writes the signal number to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The handler of SIGINT and SIGTERM: it only writes the signal number to
/// [`SIGNAL_PIPE`] (write(2) is async-signal-safe), for the signal thread.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: errno is thread-local; write(2) gets a valid one-byte buffer.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = u8::try_from(sig).unwrap_or(0);
        libc::write(
            SIGNAL_PIPE.load(Ordering::SeqCst),
            std::ptr::from_ref(&byte).cast(),
            1,
        );
        *libc::__errno_location() = errno;
    }
}

/// Catch SIGINT and SIGTERM with [`on_signal`] and take them on a thread of
/// their own: the first one is sent on `events`, later ones only print that
/// the cleanup is under way.
///
/// The signals are caught, not blocked: a blocked signal stays blocked in
/// the processes the demo starts (`std::process::Command` keeps the signal
/// mask), and `overlayd` must stop on SIGTERM. A caught signal is reset to
/// its default action by exec(2), so `overlayd`, `ping` and `tcpdump` react
/// to Ctrl-C as usual. A signal that is ignored when the demo starts (a
/// background job of a shell without job control) stays ignored.
fn take_stop_signals(events: mpsc::Sender<Event>) -> Result<()> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: pipe2(2) gets a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("signal pipe");
    }
    let [read_end, write_end] = fds;
    SIGNAL_PIPE.store(write_end, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut first = true;
            loop {
                let mut byte = 0u8;
                // SAFETY: read(2) into a valid one-byte buffer.
                let n = unsafe { libc::read(read_end, std::ptr::from_mut(&mut byte).cast(), 1) };
                if n != 1 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                let sig = libc::c_int::from(byte);
                if first {
                    first = false;
                    let _ = events.send(Event::Signal(sig));
                } else {
                    eprintln!("{}: still cleaning up", signal_name(sig));
                }
            }
        })
        .context("start the signal thread")?;
    for sig in STOP_SIGNALS {
        // SAFETY: sigaction(2) with zero-initialised (valid) structures, a
        // handler of the right type and an initialised mask.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                return Err(std::io::Error::last_os_error()).context("read a signal's action");
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_flags = libc::SA_RESTART;
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("catch SIGINT and SIGTERM");
            }
        }
    }
    Ok(())
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
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
    if let Err(e) = take_stop_signals(events.clone()) {
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
            kill_processes_in(&inodes);
            let _ = std::fs::remove_dir_all(&work_dir);
            // 128 + signal number, as a shell reports a process killed by it.
            ExitCode::from(u8::try_from(128 + sig).unwrap_or(1))
        }
        Err(_) => {
            eprintln!("overlay-demo: the demo thread vanished");
            ExitCode::FAILURE
        }
    }
}

/// The inodes of the network namespaces named `<prefix>-*`.
fn netns_inodes(prefix: &str) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.ino())
        .collect()
}

/// SIGKILL every child of this process whose network namespace is one of
/// `inodes` (children only: a namespace inode may be reused as soon as the
/// namespace is destroyed, by anyone).
fn kill_processes_in(inodes: &BTreeSet<u64>) {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let held = std::fs::read_link(entry.path().join("ns/net"))
            .ok()
            .and_then(|l| {
                l.to_str()?
                    .strip_prefix("net:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .is_some_and(|ino| inodes.contains(&ino));
        // The parent pid: the 2nd field after the command, which is in
        // parentheses and may hold spaces.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let child = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            == Some(me.as_str());
        if held && child {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
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
        print_keep_help(&names, prefix, &bin_dir, work_dir, ping);
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
    wait_ready(cluster)?;

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
    wait_routes(cluster)?;

    checkpoint()?;
    say("topology (overlayctl topology on node-1):");
    show(&cluster.overlayctl(0, &["topology"])?);
    say("IPAM: the blocks each node owns and the addresses used in them:");
    show(&ipam_table(cluster)?);

    checkpoint()?;
    let (vni, port) = vxlan_params(cluster)?;
    let capture = Capture::start(cluster, work_dir, port);
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
        Ok(Ok(Some(frame))) => say(decode(cluster, &frame, vni, port)?),
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

/// Wait until every agent is ready (IPAM `ready`, every other node
/// programmed as a peer), saying so per node.
fn wait_ready(cluster: &mut Cluster) -> Result<()> {
    say("waiting for the agents to join the mesh, claim address space and program their peers");
    let nodes = cluster.nodes().len();
    let start = Instant::now();
    let mut ready = vec![false; nodes];
    while ready.contains(&false) {
        checkpoint()?;
        let running = cluster.running();
        for (i, ready) in ready.iter_mut().enumerate() {
            if *ready {
                continue;
            }
            if !running.contains(&i) {
                bail!(
                    "overlayd on {} exited:\n{}",
                    cluster.nodes()[i].name,
                    cluster.log_tail(i, 20)
                );
            }
            let Ok(s) = cluster.status(i) else { continue };
            if s.ipam.state == "ready" && s.datapath.peers_programmed + 1 == nodes {
                *ready = true;
                say(format!(
                    "{}: overlayd ready after {:.1}s: {}, encryption {}, owns {}",
                    s.node.name,
                    start.elapsed().as_secs_f64(),
                    plural(s.peers.len(), "peer"),
                    match s.encryption {
                        Encryption::Encrypted => "on",
                        Encryption::Unencrypted => "off",
                    },
                    blocks_or_none(&s.node.blocks),
                ));
            }
        }
        if start.elapsed() > READY_TIMEOUT {
            let mut msg = format!("agents not ready after {READY_TIMEOUT:?}:");
            for i in (0..nodes).filter(|i| !ready[*i]) {
                msg.push_str(&format!(
                    "\n--- {}:\n{}",
                    cluster.nodes()[i].name,
                    cluster.log_tail(i, 15)
                ));
            }
            bail!(msg);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `1 pod`, `2 pods`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn blocks_or_none(blocks: &[String]) -> String {
    if blocks.is_empty() {
        "no block yet".into()
    } else {
        blocks.join(" ")
    }
}

/// Every node's status.
fn statuses(cluster: &Cluster) -> Result<Vec<Status>> {
    (0..cluster.nodes().len())
        .map(|i| cluster.status(i))
        .collect()
}

/// Wait until every node routes every block the other nodes own (what each
/// node says it owns), and has programmed that many routes.
fn wait_routes(cluster: &Cluster) -> Result<()> {
    let start = Instant::now();
    loop {
        checkpoint()?;
        let all = statuses(cluster)?;
        let converged = all.iter().all(|s| {
            let remote: usize = all
                .iter()
                .filter(|o| o.node.id != s.node.id)
                .map(|o| o.node.blocks.len())
                .sum();
            let views_agree = all.iter().filter(|o| o.node.id != s.node.id).all(|o| {
                s.peers
                    .iter()
                    .any(|p| p.id == o.node.id && sorted(&p.blocks) == sorted(&o.node.blocks))
            });
            views_agree && s.datapath.routes == remote
        });
        if converged {
            say(format!(
                "routes converged after {:.1}s: every node routes every other node's blocks through its VXLAN device",
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if start.elapsed() > ROUTES_TIMEOUT {
            let mut msg = format!("routes not converged after {ROUTES_TIMEOUT:?}:");
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

fn sorted(v: &[String]) -> Vec<&String> {
    let mut v: Vec<&String> = v.iter().collect();
    v.sort();
    v
}

/// One row per node: its blocks, the addresses used and free in them, and
/// its pods.
fn ipam_table(cluster: &Cluster) -> Result<String> {
    let all = statuses(cluster)?;
    let mut rows = vec![[
        "NODE".to_owned(),
        "UNDERLAY".into(),
        "BLOCKS".into(),
        "USED".into(),
        "FREE".into(),
        "PODS".into(),
    ]];
    for (i, s) in all.iter().enumerate() {
        let pods: Vec<String> = cluster
            .pods()
            .iter()
            .filter(|p| p.node == i)
            .map(|p| format!("{} {}", p.container_id, p.ip))
            .collect();
        rows.push([
            s.node.name.clone(),
            cluster.nodes()[i].ip.to_string(),
            s.ipam
                .blocks
                .iter()
                .map(|b| b.cidr.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            s.ipam.used.to_string(),
            s.ipam.free.to_string(),
            pods.join(", "),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| match c {
                3 | 4 => format!("{cell:>w$}"),
                5 => cell.clone(),
                _ => format!("{cell:<w$}"),
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "range {} (state {} on every node; `overlayctl status ipam` shows one node's full view)",
        all.first().map_or("", |s| s.ipam.range.as_str()),
        all.first().map_or("", |s| s.ipam.state.as_str()),
    ));
    Ok(out)
}

/// The VNI and UDP port of node 1's VXLAN device, as the kernel reports
/// them (`ip -details -json link show`).
fn vxlan_params(cluster: &Cluster) -> Result<(Vni, u16)> {
    let out = cluster.exec(
        0,
        &["ip", "-details", "-json", "link", "show", "dev", VXLAN],
    )?;
    let json: serde_json::Value = serde_json::from_str(&out).context("ip -json output")?;
    let data = &json[0]["linkinfo"]["info_data"];
    let vni = data["id"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| anyhow!("no VNI on {VXLAN}: {out}"))?;
    let port = data["port"]
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| anyhow!("no UDP port on {VXLAN}: {out}"))?;
    Ok((Vni::new(vni)?, port))
}

/// `tcpdump` on node 1's underlay port in the switch namespace, writing
/// VXLAN packets to a pcap file until stopped. Killed if dropped.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Start it and wait until it listens (it says so on standard error
    /// before it captures anything).
    fn start(cluster: &Cluster, work_dir: &Path, port: u16) -> Result<Capture> {
        let switch = cluster
            .switch_netns()
            .ok_or_else(|| anyhow!("no underlay switch"))?;
        let interface = cluster
            .underlay_port(0)
            .ok_or_else(|| anyhow!("no node 1"))?;
        let file = work_dir.join("underlay.pcap");
        let mut child = Command::new("ip")
            .args(["netns", "exec", switch.name(), "tcpdump", "-i", &interface])
            .args(["-s", "256", "-U", "-w"])
            .arg(&file)
            .args(["udp", "dst", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start tcpdump")?;
        let stderr = child.stderr.take().context("tcpdump's standard error")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stderr).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut capture = Capture { child, file };
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        if !line.contains("listening") {
            let _ = capture.child.kill();
            bail!("tcpdump: {}", line.trim());
        }
        say(format!(
            "tcpdump captures VXLAN (udp port {port}) on node-1's underlay port {interface} in {}",
            switch.name()
        ));
        Ok(capture)
    }

    /// Stop it (SIGTERM: it flushes the file) and return the first packet.
    fn finish(mut self) -> Result<Option<Vec<u8>>> {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pcap =
            std::fs::read(&self.file).with_context(|| format!("read {}", self.file.display()))?;
        let mut reader = PcapReader::new(pcap.as_slice()).context("pcap header")?;
        Ok(match reader.next_packet() {
            Some(packet) => Some(packet.context("pcap record")?.data.into_owned()),
            None => None,
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One captured underlay frame, decoded by overlay-core: the outer
/// addresses (with the nodes they belong to), the VNI and the inner packet.
fn decode(cluster: &Cluster, frame: &[u8], vni: Vni, port: u16) -> Result<String> {
    // Captured as it leaves node 1, the outer UDP checksum may still be left
    // to the NIC (veth completes it lazily), so it is not verified here.
    let vxlan =
        VxlanEncap::new(vni).with_config(TunnelConfig::new(port).with_verify_udp_checksum(false));
    let d = vxlan
        .decapsulate(frame)
        .context("decode the captured packet")?;
    let who = |ip: IpAddr| {
        cluster
            .nodes()
            .iter()
            .find(|n| n.ip == ip)
            .map_or_else(|| ip.to_string(), |n| format!("{ip} ({})", n.name))
    };
    let pod = |ip: IpAddr| {
        cluster
            .pods()
            .iter()
            .find(|p| p.ip == ip)
            .map_or_else(|| ip.to_string(), |p| format!("{ip} ({})", p.container_id))
    };
    let inner = match ethernet::Packet::new_checked(d.inner()) {
        Ok(eth) => match eth.ethertype() {
            EtherType::Ipv4 => match ipv4::Packet::new_checked(eth.payload()) {
                Ok(ip) => format!(
                    "inner IPv4 {} -> {} {}",
                    pod(ip.src_addr().into()),
                    pod(ip.dst_addr().into()),
                    ip.protocol()
                ),
                Err(e) => format!("inner IPv4 ({e})"),
            },
            EtherType::Ipv6 => match ipv6::Packet::new_checked(eth.payload()) {
                Ok(ip) => format!(
                    "inner IPv6 {} -> {} {}",
                    pod(ip.src_addr().into()),
                    pod(ip.dst_addr().into()),
                    ip.next_header()
                ),
                Err(e) => format!("inner IPv6 ({e})"),
            },
            other => format!("inner ethertype {other:?}"),
        },
        Err(e) => format!("inner frame ({e})"),
    };
    Ok(format!(
        "captured on the underlay and decoded by overlay-core: {} -> {} udp {} -> {} VXLAN vni {}, {inner}, inner frame {} bytes",
        who(d.outer_src_addr()),
        who(d.outer_dst_addr()),
        d.udp().src_port,
        d.udp().dst_port,
        d.vni().get(),
        d.inner().len()
    ))
}

/// With `--keep`: what is left running and how to look at it and delete it.
fn print_keep_help(
    names: &[String],
    prefix: &str,
    bin_dir: &Path,
    work_dir: &Path,
    ping: Option<(String, IpAddr)>,
) {
    let ctl = bin_dir.join("overlayctl");
    let node1 = format!("{prefix}-n1");
    let admin = work_dir.join("node-1").join("admin.sock");
    println!(
        "\nkept running: {} namespaces ({}), the agents' state and logs in {}",
        names.len(),
        names.join(" "),
        work_dir.display()
    );
    println!(
        "look at it with overlayctl in a node's namespace (the status API is on its loopback):"
    );
    println!("    ip netns exec {node1} {} status", ctl.display());
    println!("    ip netns exec {node1} {} status ipam", ctl.display());
    println!("    ip netns exec {node1} {} topology", ctl.display());
    if let Some((from, to)) = ping {
        println!("pods are namespaces too:");
        println!("    ip netns exec {from} ping {to}");
    }
    println!("admin commands go to the agent's admin socket, e.g. declaring a node dead:");
    println!(
        "    ip netns exec {node1} {} --admin-socket {} rmpeer node-2",
        ctl.display(),
        admin.display()
    );
    println!("delete it (kills the agents, deletes every namespace and link):");
    println!(
        "    for ns in $(cd /run/netns && ls -d {prefix}-*); do ip netns pids $ns | xargs -r kill -9; ip netns del $ns; done; rm -rf {}",
        work_dir.display()
    );
}
