//! The local demo of the overlay SDK: a two-node VXLAN overlay in network
//! namespaces on this machine, built with `overlay-netlink` and checked with
//! `overlay-core`.
//!
//! What it does (as root, `scripts/demo.sh`):
//!
//! 1. creates two "node" namespaces joined by a veth underlay
//!    (192.0.2.1 and 192.0.2.2) and a "pod" namespace behind each node;
//! 2. on each node: a bridge with the pod gateway, a veth into the pod, and a
//!    VXLAN device whose MTU is computed from the underlay (minus 50 bytes);
//! 3. programs each node's remote peer the flannel way (neighbour, FDB entry,
//!    on-link route) with [`overlay_netlink::overlay::Overlay::reconcile`],
//!    then reconciles again to show that nothing changes;
//! 4. pings pod to pod across the overlay while capturing one packet on the
//!    underlay, and decodes it with [`overlay_core::encap::VxlanEncap`];
//! 5. deletes everything it created (pass `--keep` to leave it for a look).
//!
//! Interrupted by SIGINT (Ctrl-C) or SIGTERM at any point, it stops what it is
//! doing, kills the processes it started (`ping`, `tcpdump`) and whatever else
//! runs in its namespaces, deletes the namespaces (and with them every link
//! it made) and exits with status 128 + the signal number. `--keep` applies
//! only to a demo that runs to the end: an interrupted demo always cleans up,
//! since a half-built overlay is no use for a look. A second signal during
//! the cleanup does not cut it short.
//!
//! Without root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`) it says so and exits
//! with status 1 before it touches anything.
//!
//! It only wires the library crates together; the logic lives in them.

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::process::{Child, ChildStderr, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use overlay_core::encap::{Encapsulation, TunnelConfig, VxlanEncap};
use overlay_core::mtu::{IpFamily, overlay_mtu};
use overlay_core::wire::Vni;
use overlay_netlink::overlay::{Overlay, RemotePeer};
use overlay_netlink::{Handle, MacAddr, Netns, Route, VethConfig, VxlanConfig};
use overlay_testsupport::{CAP_NET_ADMIN, CAP_SYS_ADMIN, TestNetns, effective_capabilities};
use pcap_file::pcap::PcapReader;
use tokio::sync::oneshot;

/// The VXLAN network identifier and UDP port of the demo overlay.
const VNI: u32 = 42;
const VXLAN_PORT: u16 = overlay_core::wire::vxlan::DEFAULT_PORT;

/// Namespaces created by the demo (`ovd-<pid>-<role>`), each held by
/// overlay-testsupport's guard, which kills the processes left inside and
/// deletes the namespace when dropped. Dropped in reverse order of creation,
/// unless kept.
struct Namespaces {
    guards: Vec<TestNetns>,
    keep: bool,
}

impl Namespaces {
    fn create(&mut self, role: &str) -> Result<Netns> {
        let name = format!("ovd-{}-{role}", std::process::id());
        let guard =
            TestNetns::named(name.as_str()).with_context(|| format!("create namespace {name}"))?;
        let ns = Netns::open(guard.name()).with_context(|| format!("open namespace {name}"))?;
        self.guards.push(guard);
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if self.keep {
            let kept: Vec<String> = self.guards.drain(..).map(TestNetns::keep).collect();
            println!("kept namespaces: {}", kept.join(" "));
            return;
        }
        while let Some(guard) = self.guards.pop() {
            drop(guard);
        }
    }
}

struct Node {
    ns: Netns,
    pod: Netns,
    handle: Handle,
    vxlan: u32,
    peer: RemotePeer,
    pod_ip: IpAddr,
}

/// Build node `n`: bridge `ovl0` with 198.18.n.1/24, a pod at 198.18.n.2, and
/// VXLAN device `vxlan.42` with VTEP address 198.18.n.0/32.
async fn build_node(
    n: u8,
    ns: Netns,
    pod: Netns,
    underlay: &str,
    underlay_ip: IpAddr,
) -> Result<Node> {
    ns.sysctl_set("net.ipv4.ip_forward", "1")?;
    let h = ns.handle()?;
    let link = h.link();
    let under = link.get(underlay).await?;
    let underlay_mtu = under.mtu.context("underlay has no MTU")?;
    // The overlay MTU is the underlay's minus what encapsulation adds in
    // front of a frame (50 bytes over IPv4, 70 over IPv6): overlay-core's
    // one definition.
    let vxlan = VxlanEncap::new(Vni::new(VNI)?);
    let overlay_mtu = overlay_mtu(
        underlay_mtu,
        IpFamily::of(underlay_ip),
        IpFamily::V4,
        &vxlan,
    )
    .with_context(|| format!("overlay MTU from the underlay's {underlay_mtu}"))?;

    let br = link.ensure_bridge("ovl0").await?;
    link.set_mtu(br.index, overlay_mtu).await?;
    h.address()
        .add((br.index, net(&format!("198.18.{n}.1/24"))?))
        .await?;
    link.set_up(br.index).await?;

    let veth = link
        .add_veth(
            &VethConfig::new("vethpod", "eth0")
                .peer_netns(&pod)
                .mtu(overlay_mtu),
        )
        .await?;
    link.set_master(veth.index, br.index).await?;
    link.set_up(veth.index).await?;
    let pod_ip: IpAddr = format!("198.18.{n}.2").parse()?;
    {
        let ph = pod.handle()?;
        let eth0 = ph.link().get("eth0").await?;
        ph.address()
            .add((eth0.index, net(&format!("{pod_ip}/24"))?))
            .await?;
        ph.link().set_up(eth0.index).await?;
        ph.link().set_up("lo").await?;
        ph.route()
            .replace(&Route::new(net("0.0.0.0/0")?).gateway(format!("198.18.{n}.1").parse()?))
            .await?;
    }

    let mac = MacAddr::from([0x02, 0, 0, 0, n, 0]);
    let (vx, _) = link
        .ensure_vxlan(
            &VxlanConfig::new(format!("vxlan.{VNI}"), Vni::new(VNI)?)
                .local(underlay_ip)
                .underlay(under.index)
                .port(VXLAN_PORT)
                .learning(false)
                .mtu(overlay_mtu)
                .mac(mac),
        )
        .await?;
    // No IPv6 autoconfiguration on the VXLAN device (a key with '/' is a path,
    // so the dot in the device name stays).
    ns.sysctl_set(&format!("net/ipv6/conf/vxlan.{VNI}/disable_ipv6"), "1")?;
    h.address()
        .add((vx.index, net(&format!("198.18.{n}.0/32"))?))
        .await?;
    link.set_up(vx.index).await?;
    println!(
        "node{n}: underlay {underlay_ip} (mtu {underlay_mtu}), vxlan.{VNI} mtu {overlay_mtu}, pods 198.18.{n}.0/24, pod at {pod_ip}"
    );
    let peer = RemotePeer::new(underlay_ip, mac, format!("198.18.{n}.0").parse()?)
        .pod_cidr(net(&format!("198.18.{n}.0/24"))?);
    Ok(Node {
        ns,
        pod,
        handle: h,
        vxlan: vx.index,
        peer,
        pod_ip,
    })
}

fn net(s: &str) -> Result<IpNet> {
    s.parse().with_context(|| format!("parse {s}"))
}

/// A child process (`ping`, `tcpdump`), killed and reaped when dropped, so
/// that an error or a signal never leaves one running.
struct KillOnDrop(Child);

impl KillOnDrop {
    /// Wait for the process to exit without blocking the runtime, so that a
    /// signal can interrupt the wait; `None` if `limit` passes first.
    async fn exited_within(&mut self, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the process wrote to its (piped) standard output. Call it
    /// once the process has exited.
    fn stdout(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            stdout.read_to_end(&mut out)?;
        }
        Ok(out)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line a child writes to `stderr`, or what it wrote before EOF.
/// Read on a thread of its own, so the wait can be interrupted by a signal;
/// the thread ends when the child exits or is killed.
async fn first_line(stderr: ChildStderr) -> String {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.await.unwrap_or_default()
}

/// Start `tcpdump -c 1 -w -` in namespace `ns` and wait until it listens (it
/// says so on standard error before it captures anything).
async fn start_capture(ns: &str, interface: &str, filter: &str) -> Result<KillOnDrop> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "tcpdump", "-i", interface])
        .args(["-c", "1", "-U", "-w", "-", filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)?;
    if let Some(stderr) = child.0.stderr.take() {
        // One line ("listening on ..."), or EOF if tcpdump failed.
        first_line(stderr).await;
    }
    Ok(child)
}

/// The first packet of a pcap stream (what `tcpdump -w -` writes), read with
/// the `pcap-file` crate; `None` if the stream holds no complete packet.
fn first_pcap_record(pcap: &[u8]) -> Option<Vec<u8>> {
    let mut reader = PcapReader::new(pcap).ok()?;
    let packet = reader.next_packet()?.ok()?;
    Some(packet.data.into_owned())
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

/// Block SIGINT and SIGTERM in this thread, and so in every thread started
/// from it later (the runtime's, the netlink helpers'), and take them on a
/// thread of their own with sigwait(2): the first one is sent on the returned
/// channel, later ones only print that the cleanup is under way. Call it
/// before any other thread exists. Child processes start with an empty
/// signal mask (`std::process::Command` resets it), so `ping` and `tcpdump`
/// still react to Ctrl-C as usual.
///
/// A signal that is ignored when the demo starts (a background job of a
/// shell without job control) stays ignored.
fn take_stop_signals() -> Result<oneshot::Receiver<libc::c_int>> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the
    // calls get valid pointers and have no other preconditions.
    let set = unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        for sig in STOP_SIGNALS {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        let set = set.assume_init();
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc)).context("block SIGINT and SIGTERM");
        }
        set
    };
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut tx = Some(tx);
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: valid pointers to an initialised set and an int.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(sig);
                    }
                    None => eprintln!("{}: still cleaning up", signal_name(sig)),
                }
            }
        })
        .context("start the signal thread")?;
    Ok(rx)
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

fn main() -> ExitCode {
    let keep = std::env::args().any(|a| a == "--keep");
    if has_privileges() == Some(false) {
        eprintln!(
            "overlay-demo needs root: it creates network namespaces, links and routes \
             (CAP_SYS_ADMIN and CAP_NET_ADMIN). Run it as root, e.g. `sudo scripts/demo.sh`."
        );
        return ExitCode::FAILURE;
    }
    let stop = match take_stop_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("overlay-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("overlay-demo: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut spaces = Namespaces {
        guards: Vec::new(),
        keep,
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            // A signal wins over a demo step that ends in the same poll.
            biased;
            Ok(sig) = stop => Err(sig),
            result = run(&mut spaces, keep) => Ok(result),
        }
    });
    // The demo's future is gone: its child processes are killed and its
    // netlink sockets closed. Dropping `spaces` deletes the namespaces.
    match outcome {
        Ok(Ok(())) => {
            drop(spaces);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            drop(spaces);
            eprintln!("overlay-demo: {e:#}");
            ExitCode::FAILURE
        }
        Err(sig) => {
            if keep {
                eprintln!("{}: not keeping a half-built demo", signal_name(sig));
            }
            eprintln!("{}: cleaning up", signal_name(sig));
            spaces.keep = false;
            drop(spaces);
            // 128 + signal number, as a shell reports a process killed by it.
            ExitCode::from(u8::try_from(128 + sig).unwrap_or(1))
        }
    }
}

/// The demo itself; the namespaces it creates are recorded in `spaces`,
/// which the caller deletes however this ends.
async fn run(spaces: &mut Namespaces, keep: bool) -> Result<()> {
    println!(
        "overlay {} - local two-node VXLAN demo",
        env!("CARGO_PKG_VERSION")
    );
    let ns1 = spaces.create("node1")?;
    let ns2 = spaces.create("node2")?;
    let pod1 = spaces.create("pod1")?;
    let pod2 = spaces.create("pod2")?;

    // The underlay: one veth pair between the node namespaces.
    {
        let h1 = ns1.handle()?;
        h1.link()
            .add_veth(&VethConfig::new("under0", "under0").peer_netns(&ns2))
            .await?;
    }
    for (ns, addr) in [(&ns1, "192.0.2.1/24"), (&ns2, "192.0.2.2/24")] {
        let h = ns.handle()?;
        let under = h.link().get("under0").await?;
        h.address().add((under.index, net(addr)?)).await?;
        h.link().set_up(under.index).await?;
    }

    let node1 = build_node(1, ns1, pod1, "under0", "192.0.2.1".parse()?).await?;
    let node2 = build_node(2, ns2, pod2, "under0", "192.0.2.2".parse()?).await?;

    for (me, other) in [(&node1, &node2), (&node2, &node1)] {
        let overlay = Overlay::new(&me.handle, me.vxlan);
        let first = overlay.reconcile(std::slice::from_ref(&other.peer)).await?;
        let again = overlay.reconcile(std::slice::from_ref(&other.peer)).await?;
        println!(
            "{}: reconcile added {:?} with {} changes; again: no-op = {}",
            me.ns.name().unwrap_or("?"),
            first.added,
            first.changes.len(),
            again.is_noop()
        );
        if !first.is_complete() {
            bail!("peer programming failed: {:?}", first.failures);
        }
    }

    // Capture one encapsulated packet on node1's underlay while pod1 pings pod2.
    let node1_name = node1.ns.name().context("node1 has a name")?.to_string();
    let filter = format!("udp dst port {VXLAN_PORT}");
    let tcpdump = start_capture(&node1_name, "under0", &filter).await;
    let pod1_name = node1.pod.name().context("pod1 has a name")?;
    println!(
        "pod1 pings pod2 ({}) across the overlay; tcpdump captures on node1's underlay",
        node2.pod_ip
    );
    let mut ping = Command::new("ip")
        .args(["netns", "exec", pod1_name, "ping", "-c", "3", "-W", "2"])
        .arg(node2.pod_ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .context("start ping")?;
    // Three echoes a second apart, each waiting at most two seconds.
    let ping_status = ping
        .exited_within(Duration::from_secs(10))
        .await?
        .context("ping did not finish")?;
    print!("{}", String::from_utf8_lossy(&ping.stdout()?));
    if !ping_status.success() {
        // Dropping the capture kills tcpdump.
        bail!("pod1 cannot reach pod2 across the overlay");
    }

    match tcpdump {
        Ok(mut capture) => {
            // tcpdump exits after one packet; a capture that saw none is
            // killed after the wait (and reported below).
            capture.exited_within(Duration::from_secs(2)).await?;
            let _ = capture.0.kill();
            match first_pcap_record(&capture.stdout()?) {
                Some(frame) => {
                    // Captured on the sending side, the outer UDP checksum is
                    // still left to the NIC (veth completes it lazily), so it
                    // is not verified here.
                    let vxlan = VxlanEncap::new(Vni::new(VNI)?)
                        .with_config(TunnelConfig::new(VXLAN_PORT).with_verify_udp_checksum(false));
                    let d = vxlan.decapsulate(&frame)?;
                    let ip = d.ip();
                    let udp = d.udp();
                    let vni = d.vni().get();
                    println!(
                        "captured on the underlay and decoded by overlay-core: {} -> {} udp {} -> {} vni {} inner frame {} bytes",
                        ip.src_addr(),
                        ip.dst_addr(),
                        udp.src_port,
                        udp.dst_port,
                        vni,
                        d.inner().len()
                    );
                }
                None => println!("(no packet captured; is tcpdump installed?)"),
            }
        }
        Err(e) => println!("(tcpdump not available: {e})"),
    }

    drop(node1);
    drop(node2);
    println!("demo complete{}", if keep { "" } else { "; cleaning up" });
    Ok(())
}
