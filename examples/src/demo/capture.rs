//! A capture of what the nodes send each other on the underlay, and a
//! decoder that tells which nodes and pods a captured VXLAN packet is
//! between.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use overlay_core::encap::{Encapsulation, TunnelConfig, VxlanEncap};
use overlay_core::wire::ethernet::{self, EtherType};
use overlay_core::wire::{Vni, ipv4, ipv6};
use pcap_file::pcap::PcapReader;

use crate::cluster::Cluster;

/// The VNI and UDP port of node `i`'s VXLAN device `device`, as the kernel
/// reports them (`ip -details -json link show`).
pub fn vxlan_params(cluster: &Cluster, i: usize, device: &str) -> Result<(Vni, u16)> {
    let out = cluster.exec(
        i,
        &["ip", "-details", "-json", "link", "show", "dev", device],
    )?;
    parse_vxlan_params(&out, device)
}

/// The VNI and port in `ip -details -json link show` output.
fn parse_vxlan_params(out: &str, device: &str) -> Result<(Vni, u16)> {
    let json: serde_json::Value = serde_json::from_str(out).context("ip -json output")?;
    let data = &json[0]["linkinfo"]["info_data"];
    let vni = data["id"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| anyhow!("no VNI on {device}: {out}"))?;
    let port = data["port"]
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| anyhow!("no UDP port on {device}: {out}"))?;
    Ok((Vni::new(vni)?, port))
}

/// `tcpdump` on a node's underlay port in the switch namespace, writing the
/// UDP packets to one port (VXLAN) to a pcap file until stopped. Killed if
/// dropped.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    file: PathBuf,
    /// The switch-side interface it listens on.
    pub interface: String,
    /// The namespace that interface is in.
    pub netns: String,
}

impl Capture {
    /// Start it on node `node`'s underlay port, writing to
    /// `<work_dir>/underlay.pcap`, and wait until it listens (it says so on
    /// standard error before it captures anything).
    pub fn start(cluster: &Cluster, node: usize, work_dir: &Path, port: u16) -> Result<Capture> {
        let switch = cluster
            .switch_netns()
            .ok_or_else(|| anyhow!("no underlay switch"))?;
        let interface = cluster
            .underlay_port(node)
            .ok_or_else(|| anyhow!("no node {}", node + 1))?;
        let file = work_dir.join("underlay.pcap");
        let mut child = Command::new("ip")
            .args(["netns", "exec", switch.name(), "tcpdump", "-i", &interface])
            // Immediate mode: without it, the kernel hands packets over a
            // block at a time, up to a second late, and a capture stopped
            // within that second (a small demo's ping matrix) writes none.
            .args(["-s", "256", "--immediate-mode", "-U", "-w"])
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
        let mut capture = Capture {
            child,
            file,
            interface,
            netns: switch.name().to_owned(),
        };
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        if !line.contains("listening") {
            let _ = capture.child.kill();
            bail!("tcpdump: {}", line.trim());
        }
        Ok(capture)
    }

    /// Stop it (SIGTERM: it flushes the file) and return the first packet.
    pub fn finish(mut self) -> Result<Option<Vec<u8>>> {
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
        first_packet(&pcap)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first packet of a pcap file, if it holds any.
fn first_packet(pcap: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut reader = PcapReader::new(pcap).context("pcap header")?;
    Ok(match reader.next_packet() {
        Some(packet) => Some(packet.context("pcap record")?.data.into_owned()),
        None => None,
    })
}

/// One captured underlay frame, decoded by overlay-core: the outer
/// addresses (with the nodes they belong to), the VNI and the inner packet
/// (with the pods it is between).
pub fn describe_frame(cluster: &Cluster, frame: &[u8], vni: Vni, port: u16) -> Result<String> {
    let node = |ip: IpAddr| {
        cluster
            .nodes()
            .iter()
            .find(|n| n.ip == ip)
            .map(|n| n.name.clone())
    };
    let pod = |ip: IpAddr| {
        cluster
            .pods()
            .iter()
            .find(|p| p.ip == ip)
            .map(|p| p.container_id.clone())
    };
    describe_with(frame, vni, port, &node, &pod)
}

/// [`describe_frame`] with the node and pod names from `node` and `pod`.
fn describe_with(
    frame: &[u8],
    vni: Vni,
    port: u16,
    node: &dyn Fn(IpAddr) -> Option<String>,
    pod: &dyn Fn(IpAddr) -> Option<String>,
) -> Result<String> {
    // Captured as it leaves node 1, the outer UDP checksum may still be left
    // to the NIC (veth completes it lazily), so it is not verified here.
    let vxlan =
        VxlanEncap::new(vni).with_config(TunnelConfig::new(port).with_verify_udp_checksum(false));
    let d = vxlan
        .decapsulate(frame)
        .context("decode the captured packet")?;
    let label = |name: &dyn Fn(IpAddr) -> Option<String>, ip: IpAddr| match name(ip) {
        Some(n) => format!("{ip} ({n})"),
        None => ip.to_string(),
    };
    let inner = match ethernet::Packet::new_checked(d.inner()) {
        Ok(eth) => match eth.ethertype() {
            EtherType::Ipv4 => match ipv4::Packet::new_checked(eth.payload()) {
                Ok(ip) => format!(
                    "inner IPv4 {} -> {} {}",
                    label(pod, ip.src_addr().into()),
                    label(pod, ip.dst_addr().into()),
                    ip.protocol()
                ),
                Err(e) => format!("inner IPv4 ({e})"),
            },
            EtherType::Ipv6 => match ipv6::Packet::new_checked(eth.payload()) {
                Ok(ip) => format!(
                    "inner IPv6 {} -> {} {}",
                    label(pod, ip.src_addr().into()),
                    label(pod, ip.dst_addr().into()),
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
        label(node, d.outer_src_addr()),
        label(node, d.outer_dst_addr()),
        d.udp().src_port,
        d.udp().dst_port,
        d.vni().get(),
        d.inner().len()
    ))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use overlay_core::MacAddr;
    use overlay_core::encap::OuterParams;
    use overlay_core::wire::IpProtocol;

    use super::*;

    /// A VXLAN packet between 198.18.0.1 and .2 carrying ICMP between two
    /// pods, as `overlay-core` encapsulates it.
    fn packet(vni: Vni, port: u16) -> Vec<u8> {
        let mut inner = vec![0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa, 0x08, 0x00];
        let ip = ipv4::Repr::new(
            Ipv4Addr::new(198, 19, 0, 5),
            Ipv4Addr::new(198, 19, 1, 7),
            IpProtocol::Icmp,
            8,
        );
        let at = inner.len();
        inner.resize(at + ip.buffer_len() + 8, 0);
        ip.emit(&mut ipv4::Packet::new_unchecked(&mut inner[at..]))
            .unwrap();
        let vxlan = VxlanEncap::new(vni).with_config(TunnelConfig::new(port));
        let outer = OuterParams::new(
            MacAddr::new([0x02, 0, 0, 0, 0, 1]),
            MacAddr::new([0x02, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 18, 0, 2).into(),
        );
        let headroom = vxlan.headroom(&outer);
        let mut buf = vec![0u8; headroom];
        buf.extend_from_slice(&inner);
        let range = vxlan
            .encapsulate(&mut buf, headroom, inner.len(), &outer)
            .unwrap();
        buf[range].to_vec()
    }

    #[test]
    fn a_frame_is_told_by_its_nodes_pods_and_vni() {
        let vni = Vni::new(0x5eed).unwrap();
        let frame = packet(vni, 4789);
        let node = |ip: IpAddr| (ip == Ipv4Addr::new(198, 18, 0, 1)).then(|| "node-1".to_owned());
        let pod = |ip: IpAddr| (ip == Ipv4Addr::new(198, 19, 1, 7)).then(|| "pod3".to_owned());
        let text = describe_with(&frame, vni, 4789, &node, &pod).unwrap();
        assert!(
            text.contains("198.18.0.1 (node-1) -> 198.18.0.2 udp"),
            "{text}"
        );
        assert!(text.contains("-> 4789 VXLAN vni 24301"), "{text}");
        assert!(
            text.contains("inner IPv4 198.19.0.5 -> 198.19.1.7 (pod3) ICMP"),
            "{text}"
        );
        assert!(text.ends_with("inner frame 42 bytes"), "{text}");
    }

    #[test]
    fn a_frame_to_another_port_or_cut_short_is_an_error() {
        let frame = packet(Vni::new(7).unwrap(), 4789);
        let none = |_: IpAddr| None;
        // The VNI told is the packet's, whatever the device's is.
        let text = describe_with(&frame, Vni::new(8).unwrap(), 4789, &none, &none).unwrap();
        assert!(text.contains("VXLAN vni 7,"), "{text}");
        assert!(describe_with(&frame, Vni::new(7).unwrap(), 8472, &none, &none).is_err());
        assert!(describe_with(&frame[..20], Vni::new(7).unwrap(), 4789, &none, &none).is_err());
    }

    #[test]
    fn vxlan_parameters_come_from_ip_json() {
        let out = r#"[{"ifname":"ovdvx0","linkinfo":{"info_kind":"vxlan","info_data":{"id":42,"port":4789}}}]"#;
        let (vni, port) = parse_vxlan_params(out, "ovdvx0").unwrap();
        assert_eq!((vni.get(), port), (42, 4789));
        let err = parse_vxlan_params(r#"[{"linkinfo":{"info_data":{"port":4789}}}]"#, "ovdvx0")
            .unwrap_err();
        assert!(err.to_string().contains("no VNI on ovdvx0"), "{err}");
        assert!(
            parse_vxlan_params(
                r#"[{"linkinfo":{"info_data":{"id":16777216,"port":1}}}]"#,
                "x"
            )
            .is_err()
        );
        assert!(parse_vxlan_params("not json", "x").is_err());
    }

    #[test]
    fn a_pcap_file_gives_its_first_packet_or_none() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let write = |packets: &[&[u8]]| {
            let mut writer = PcapWriter::with_header(Vec::new(), PcapHeader::default()).unwrap();
            for data in packets {
                let len = u32::try_from(data.len()).unwrap();
                writer
                    .write_packet(&PcapPacket::new(Duration::ZERO, len, data))
                    .unwrap();
            }
            writer.into_writer()
        };
        assert_eq!(first_packet(&write(&[])).unwrap(), None);
        let file = write(&[&[1, 2, 3], &[4, 5]]);
        assert_eq!(first_packet(&file).unwrap(), Some(vec![1, 2, 3]));
        assert!(first_packet(&file[..10]).is_err());
    }
}
