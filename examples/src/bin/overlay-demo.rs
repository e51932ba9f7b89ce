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
//! It only wires the library crates together; the logic lives in them.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use overlay_core::encap::{Encapsulation, OuterParams, TunnelConfig, VxlanEncap};
use overlay_core::wire::Vni;
use overlay_netlink::overlay::{Overlay, RemotePeer};
use overlay_netlink::{Handle, MacAddr, Netns, Route, VethConfig, VxlanConfig};

/// The VXLAN network identifier and UDP port of the demo overlay.
const VNI: u32 = 42;
const VXLAN_PORT: u16 = 4789;

/// Namespaces created by the demo, deleted on drop unless kept.
struct Namespaces {
    names: Vec<String>,
    keep: bool,
}

impl Namespaces {
    fn create(&mut self, role: &str) -> Result<Netns> {
        let name = format!("ovd-{}-{role}", std::process::id());
        let ns = Netns::create(&name).with_context(|| format!("create namespace {name}"))?;
        self.names.push(name);
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if self.keep {
            println!("kept namespaces: {}", self.names.join(" "));
            return;
        }
        for name in self.names.drain(..).rev() {
            if let Err(e) = Netns::remove(&name) {
                eprintln!("cannot delete namespace {name}: {e}");
            }
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
    // front of a frame (50 bytes over IPv4, 70 over IPv6), as overlay-core
    // computes it.
    let vxlan = VxlanEncap::new(Vni::new(VNI)?);
    let overhead = vxlan.headroom(&OuterParams::new(
        MacAddr::ZERO,
        MacAddr::ZERO,
        underlay_ip,
        underlay_ip,
    ));
    let overlay_mtu = u32::try_from(overhead)
        .ok()
        .and_then(|o| underlay_mtu.checked_sub(o))
        .with_context(|| format!("underlay MTU {underlay_mtu} is below the VXLAN overhead"))?;

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
            &VxlanConfig::new(format!("vxlan.{VNI}"), VNI)
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

/// A running `tcpdump -c 1 -w -`, killed when dropped.
struct Capture(std::process::Child);

impl Capture {
    /// Wrap a started tcpdump and wait until it listens: it says so on
    /// standard error before it captures anything.
    fn started(mut child: std::process::Child) -> Capture {
        if let Some(stderr) = child.stderr.take() {
            let mut line = String::new();
            // One line ("listening on ..."), or EOF if tcpdump failed.
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line);
        }
        Capture(child)
    }

    /// Wait up to `limit` for the capture to end, then return what it wrote.
    fn finish(mut self, limit: Duration) -> Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + limit;
        while self.0.try_wait()?.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let mut out = Vec::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            std::io::Read::read_to_end(&mut stdout, &mut out)?;
        }
        Ok(out)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first record of a classic pcap stream (what `tcpdump -w -` writes).
fn first_pcap_record(pcap: &[u8]) -> Option<&[u8]> {
    const GLOBAL: usize = 24;
    const RECORD: usize = 16;
    let magic = pcap.get(..4)?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return None,
    };
    let len_bytes: [u8; 4] = pcap.get(GLOBAL + 8..GLOBAL + 12)?.try_into().ok()?;
    let len = if le {
        u32::from_le_bytes(len_bytes)
    } else {
        u32::from_be_bytes(len_bytes)
    };
    pcap.get(GLOBAL + RECORD..GLOBAL + RECORD + usize::try_from(len).ok()?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    println!(
        "overlay {} - local two-node VXLAN demo",
        env!("CARGO_PKG_VERSION")
    );
    let mut spaces = Namespaces {
        names: Vec::new(),
        keep,
    };
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
    let tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node1_name,
            "tcpdump",
            "-i",
            "under0",
            "-c",
            "1",
            "-U",
            "-w",
            "-",
        ])
        .arg(&filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Capture::started);
    let pod1_name = node1.pod.name().context("pod1 has a name")?;
    let ping = Command::new("ip")
        .args(["netns", "exec", pod1_name, "ping", "-c", "3", "-W", "2"])
        .arg(node2.pod_ip.to_string())
        .output()?;
    print!("{}", String::from_utf8_lossy(&ping.stdout));
    if !ping.status.success() {
        // Dropping the capture kills tcpdump.
        bail!("pod1 cannot reach pod2 across the overlay");
    }

    match tcpdump {
        Ok(capture) => {
            match first_pcap_record(&capture.finish(Duration::from_secs(2))?) {
                Some(frame) => {
                    // Captured on the sending side, the outer UDP checksum is
                    // still left to the NIC (veth completes it lazily), so it
                    // is not verified here.
                    let vxlan = VxlanEncap::new(Vni::new(VNI)?)
                        .with_config(TunnelConfig::new(VXLAN_PORT).with_verify_udp_checksum(false));
                    let d = vxlan.decapsulate(frame)?;
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
                        d.inner.len()
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
