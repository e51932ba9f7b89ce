//! Frames captured from the Linux kernel's own VXLAN device, decoded by our codecs.
//!
//! # How the fixtures were made
//!
//! `tests/fixtures/vxlan-*.pcap` were captured by the privileged tests at the
//! bottom of this file (`live_kernel_capture_*`), run with
//! `OVERLAY_CAPTURE_FIXTURES_DIR` pointing at `tests/fixtures`; the script
//! `scripts/capture-vxlan-fixtures.sh` does exactly that, and
//! `tests/fixtures/README.md` lists the equivalent `ip` and `tcpdump` commands.
//! For every [`Scenario`]:
//!
//! 1. two namespaces `A` and `B` (`overlay_testsupport::TestNetns`) are joined
//!    by a veth pair, the underlay, with fixed MAC addresses;
//! 2. each gets a kernel VXLAN device (`ip link add ... type vxlan id N local ..
//!    remote .. dstport 4789` plus the scenario's extra options such as `gbp`
//!    or `udpcsum`) with a fixed MAC address, an overlay address and a
//!    permanent neighbour entry for the other side, so that no ARP or neighbour
//!    discovery is needed;
//! 3. `tcpdump -w` on A's underlay veth records the VXLAN frames that carry an
//!    ICMP echo (the filter drops MLD and router solicitations), while A pings
//!    B across the overlay, once per entry of [`Scenario::pings`] (with
//!    `ping -m MARK`: the kernel copies the socket mark into the VXLAN-GBP
//!    header).
//!
//! The checked-in tests decode those bytes; the live tests capture anew and run
//! the same checks, so that a kernel that changes what it sends is noticed.
//! The live tests also check the checksum setting the kernel reports for the
//! device (`ip -d link show`: `udpcsum` or `noudpcsum`, `[no]udp6zerocsumtx`)
//! against the checksum its frames carry. [`IPV4_DEFAULT`] passes no checksum
//! option at all, so it records the kernel's own default over IPv4: on Linux
//! 6.x with iproute2 6.1 that is `udpcsum`, a computed checksum (not the zero
//! checksum RFC 7348 recommends and overlay-core sends by default).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use overlay_core::MacAddr;
use overlay_core::encap::{
    DecapError, Encapsulation, OuterIp, TunnelConfig, TunnelHeader, VxlanEncap,
};
use overlay_core::wire::ethernet::{self, EtherType};
use overlay_core::wire::vxlan::{self, Gbp};
use overlay_core::wire::{IpProtocol, Vni, WireError, checksum, ipv4, ipv6, udp};
use overlay_testsupport::{TestNetns, privileged_test, veth_between};

#[path = "fixtures/pcap.rs"]
mod pcap;
use pcap::{TempDir, read_pcap};

/// MAC addresses given to the underlay veth ends in A and B.
const UNDERLAY_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0x01, 0x01], [0x02, 0, 0, 0, 0x01, 0x02]];
/// MAC addresses given to the VXLAN devices in A and B.
const OVERLAY_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0x0a, 0x01], [0x02, 0, 0, 0, 0x0a, 0x02]];
/// The IANA VXLAN port, which every scenario uses as `dstport`.
const VXLAN_PORT: u16 = 4789;
/// The kernel's default `ip_local_port_range`, from which a VXLAN device
/// without `srcport` picks the flow-hashed UDP source port.
const KERNEL_SOURCE_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// One capture: a pair of kernel VXLAN devices and the pings sent across.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    /// The fixture's file stem in `tests/fixtures`.
    name: &'static str,
    /// The VXLAN network identifier of both devices.
    vni: u32,
    /// Underlay addresses of A and B (on the veth pair).
    underlay: [&'static str; 2],
    /// Overlay addresses of A and B (on the VXLAN devices).
    overlay: [&'static str; 2],
    /// Extra `ip link add ... type vxlan` options.
    options: &'static [&'static str],
    /// One ping from A to B per entry, with this socket mark (0: none).
    pings: &'static [u32],
    /// Whether the kernel fills in the outer UDP checksum (and reports
    /// `udpcsum` for an IPv4 device, `noudp6zerocsumtx` for an IPv6 one).
    udp_checksum: bool,
}

/// The mark that asks for VXLAN-GBP "don't learn" (bit 22), "policy applied"
/// (bit 19) and group policy ID 0x1234, as the kernel maps `skb->mark`.
const MARK_GBP_D_A_1234: u32 = (1 << 22) | (1 << 19) | 0x1234;
/// A mark that carries only group policy ID 0x00ab.
const MARK_GBP_00AB: u32 = 0x00ab;

const IPV4: Scenario = Scenario {
    name: "vxlan-ipv4",
    vni: 42,
    underlay: ["198.51.100.1/24", "198.51.100.2/24"],
    overlay: ["192.0.2.1/24", "192.0.2.2/24"],
    options: &["noudpcsum"],
    pings: &[0, 0],
    udp_checksum: false,
};

/// No checksum option: what the kernel does by default over IPv4.
const IPV4_DEFAULT: Scenario = Scenario {
    name: "vxlan-ipv4-default",
    vni: 45,
    underlay: ["198.51.100.1/24", "198.51.100.2/24"],
    overlay: ["192.0.2.1/24", "192.0.2.2/24"],
    options: &[],
    pings: &[0],
    udp_checksum: true,
};

const IPV4_UDPCSUM: Scenario = Scenario {
    name: "vxlan-ipv4-udpcsum",
    vni: 43,
    underlay: ["198.51.100.1/24", "198.51.100.2/24"],
    overlay: ["192.0.2.1/24", "192.0.2.2/24"],
    options: &["udpcsum"],
    pings: &[0],
    udp_checksum: true,
};

const GBP: Scenario = Scenario {
    name: "vxlan-gbp",
    vni: 44,
    underlay: ["198.51.100.1/24", "198.51.100.2/24"],
    overlay: ["192.0.2.1/24", "192.0.2.2/24"],
    options: &["gbp", "noudpcsum"],
    pings: &[MARK_GBP_D_A_1234, MARK_GBP_00AB],
    udp_checksum: false,
};

const IPV6: Scenario = Scenario {
    name: "vxlan-ipv6",
    vni: 46,
    underlay: ["2001:db8:1::1/64", "2001:db8:1::2/64"],
    overlay: ["2001:db8:2::1/64", "2001:db8:2::2/64"],
    options: &[],
    pings: &[0, 0],
    udp_checksum: true,
};

const IPV6_ZERO_CSUM: Scenario = Scenario {
    name: "vxlan-ipv6-zerocsum",
    vni: 47,
    underlay: ["2001:db8:1::1/64", "2001:db8:1::2/64"],
    overlay: ["2001:db8:2::1/64", "2001:db8:2::2/64"],
    options: &["udp6zerocsumtx", "udp6zerocsumrx"],
    pings: &[0],
    udp_checksum: false,
};

impl Scenario {
    fn underlay_net(&self, side: usize) -> IpNet {
        parse_net(self.underlay[side])
    }

    fn overlay_net(&self, side: usize) -> IpNet {
        parse_net(self.overlay[side])
    }

    fn fixture_path(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{}.pcap", self.name))
    }

    /// The tcpdump filter that keeps the VXLAN frames carrying ICMP echoes.
    fn capture_filter(&self) -> &'static str {
        if self.underlay_net(0).addr().is_ipv4() {
            // udp[28:2]: inner EtherType; udp[39]: inner IPv4 protocol.
            "udp dst port 4789 and udp[28:2] = 0x0800 and udp[39] = 1"
        } else {
            // Fixed offsets from the IPv6 header (no extension headers): UDP
            // destination port, inner EtherType, inner next header, ICMPv6 type.
            "ip6[6] = 17 and ip6[42:2] = 4789 and ip6[68:2] = 0x86dd and ip6[76] = 58 \
             and (ip6[110] = 128 or ip6[110] = 129)"
        }
    }
}

fn parse_net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| panic!("scenario address {s}: {e}"))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

// ---------------------------------------------------------------------------
// Capturing from the kernel
// ---------------------------------------------------------------------------

/// A running `tcpdump`, killed when dropped if it is still running.
struct Tcpdump(Child);

impl Tcpdump {
    /// Start tcpdump in `ns` on `dev`, writing `count` frames matching `filter`
    /// to `out`, and return once it is listening.
    fn start(ns: &TestNetns, dev: &str, count: usize, filter: &str, out: &Path) -> Self {
        let count = count.to_string();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "tcpdump",
                "-Z",
                "root",
                "-U",
                "-n",
            ])
            .args(["-i", dev, "-c", count.as_str(), "-w"])
            .arg(out)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump (is it installed?)");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut guard = Tcpdump(child);
        let mut line = String::new();
        let mut reader = BufReader::new(stderr);
        loop {
            line.clear();
            let n = reader.read_line(&mut line).expect("read tcpdump stderr");
            if n == 0 {
                let status = guard.0.wait().expect("wait for tcpdump");
                panic!("tcpdump exited ({status}) before it listened");
            }
            if line.contains("listening on") {
                break;
            }
        }
        // Drain the rest (the statistics at exit) so tcpdump never blocks.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        guard
    }

    /// Wait for tcpdump to exit after its frame count, at most `limit`.
    fn finish(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("poll tcpdump") {
                assert!(status.success(), "tcpdump failed: {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump did not see the expected frames within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `SIOCETHTOOL` from `<linux/sockios.h>`.
const SIOCETHTOOL: u64 = 0x8946;
/// `ETHTOOL_STXCSUM` from `<linux/ethtool.h>`: set transmit checksum offload.
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value` from `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit).
#[repr(C)]
struct IfreqData {
    name: [u8; 16],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

unsafe extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

/// `ethtool -K <dev> tx off`, through the ioctl (ethtool itself may be absent),
/// on the calling thread's network namespace.
///
/// A veth completes outgoing UDP checksums lazily (`CHECKSUM_PARTIAL`), so a
/// capture would hold only the pseudo-header sum; without the offload the
/// kernel computes the real checksum in software before tcpdump sees it.
fn disable_tx_checksum_offload(dev: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    assert!(dev.len() < 16, "interface name {dev} too long");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let mut req = IfreqData {
        name: [0; 16],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: `req` is a valid `struct ifreq` whose `ifr_data` points at a
    // live `struct ethtool_value`; both outlive the call, and the socket is open.
    let rc = unsafe { ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfreqData) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Check that the kernel reports the UDP checksum setting the scenario
/// expects for its VXLAN device `ovt-vx` in `ns` (`ip -d link show`).
fn check_reported_checksum_setting(s: &Scenario, ns: &TestNetns) {
    let show = ns
        .ip(["-d", "link", "show", "ovt-vx"])
        .expect("ip -d link show");
    let text = String::from_utf8_lossy(&show.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let (on, off) = if s.underlay_net(0).addr().is_ipv4() {
        ("udpcsum", "noudpcsum")
    } else {
        // Over IPv6 the setting is the zero-checksum opt-out.
        ("noudp6zerocsumtx", "udp6zerocsumtx")
    };
    let expected = if s.udp_checksum { on } else { off };
    assert!(
        words.contains(&expected),
        "{}: the kernel does not report `{expected}` for `ip link add ... {}`:\n{text}",
        s.name,
        s.options.join(" ")
    );
}

/// Set up the scenario's namespaces and devices, ping across, and return the
/// bytes of the pcap file tcpdump wrote on A's underlay veth.
fn capture(s: &Scenario) -> Vec<u8> {
    let a = TestNetns::with_kind("fa").expect("create namespace A");
    let b = TestNetns::with_kind("fb").expect("create namespace B");
    let link = veth_between(&a, s.underlay_net(0), &b, s.underlay_net(1)).expect("veth underlay");
    let sides = [(&a, &link.a_name), (&b, &link.b_name)];
    for (i, (ns, veth)) in sides.iter().enumerate() {
        let mac = mac_string(UNDERLAY_MACS[i]);
        ns.ip(["link", "set", veth.as_str(), "address", mac.as_str()])
            .expect("set underlay MAC");
        let veth = veth.to_string();
        ns.run_in(move || disable_tx_checksum_offload(&veth))
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("turn off tx checksum offload: {e}"));
    }
    for (i, (ns, _)) in sides.iter().enumerate() {
        let local = s.underlay_net(i).addr().to_string();
        let remote = s.underlay_net(1 - i).addr().to_string();
        let vni = s.vni.to_string();
        let port = VXLAN_PORT.to_string();
        let mut args = vec![
            "link", "add", "ovt-vx", "type", "vxlan", "id", &vni, "local", &local, "remote",
            &remote, "dstport", &port,
        ];
        args.extend_from_slice(s.options);
        ns.ip(args).expect("create kernel VXLAN device");
        check_reported_checksum_setting(s, ns);
        let mac = mac_string(OVERLAY_MACS[i]);
        ns.ip(["link", "set", "ovt-vx", "address", mac.as_str()])
            .expect("set VXLAN MAC");
        let addr = s.overlay_net(i).to_string();
        let mut add = vec!["addr", "add", addr.as_str(), "dev", "ovt-vx"];
        if s.overlay_net(i).addr().is_ipv6() {
            add.push("nodad");
        }
        ns.ip(add).expect("add overlay address");
        ns.ip(["link", "set", "ovt-vx", "up"]).expect("VXLAN up");
        let peer = s.overlay_net(1 - i).addr().to_string();
        let peer_mac = mac_string(OVERLAY_MACS[1 - i]);
        ns.ip([
            "neigh",
            "add",
            &peer,
            "lladdr",
            &peer_mac,
            "dev",
            "ovt-vx",
            "nud",
            "permanent",
        ])
        .expect("permanent neighbour for the peer");
    }

    let dir = TempDir::new("fx");
    let out = dir.0.join(format!("{}.pcap", s.name));
    let tcpdump = Tcpdump::start(
        &a,
        &link.a_name,
        2 * s.pings.len(),
        s.capture_filter(),
        &out,
    );
    let target = s.overlay_net(1).addr().to_string();
    for &mark in s.pings {
        let mut argv = vec!["ping".to_string(), "-c1".into(), "-W2".into()];
        if mark != 0 {
            argv.extend(["-m".to_string(), mark.to_string()]);
        }
        argv.push(target.clone());
        let ping = a.exec(&argv).expect("run ping");
        assert!(
            ping.status.success(),
            "{argv:?} across the kernel VXLAN failed: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
    }
    tcpdump.finish(Duration::from_secs(10));
    let bytes = fs::read(&out).expect("read the capture");
    if let Some(dir) = std::env::var_os("OVERLAY_CAPTURE_FIXTURES_DIR") {
        let dest = Path::new(&dir).join(format!("{}.pcap", s.name));
        fs::write(&dest, &bytes).expect("write fixture");
        eprintln!("wrote {}", dest.display());
    }
    bytes
}

// ---------------------------------------------------------------------------
// Decoding with overlay-core and checking the fields
// ---------------------------------------------------------------------------

/// ICMP echo request/reply types for IPv4 and ICMPv6.
const ICMP_ECHO: [u8; 2] = [8, 0];
const ICMPV6_ECHO: [u8; 2] = [128, 129];

/// The group-policy extension the kernel writes for a socket mark: none for
/// mark 0; otherwise bits 0-15 are the ID, bit 22 D and bit 19 A.
fn gbp_for_mark(mark: u32) -> Option<Gbp> {
    (mark != 0).then_some(Gbp {
        dont_learn: mark & (1 << 22) != 0,
        policy_applied: mark & (1 << 19) != 0,
        group_policy_id: (mark & 0xffff) as u16,
    })
}

/// Decode every frame of a capture of `s` and check it field by field.
fn check(s: &Scenario, pcap: &[u8]) {
    let frames = read_pcap(pcap);
    assert_eq!(frames.len(), 2 * s.pings.len(), "{}: frame count", s.name);
    let vni = Vni::new(s.vni).expect("scenario VNI fits 24 bits");
    let mut config = TunnelConfig::new(VXLAN_PORT);
    if !s.udp_checksum && s.underlay_net(0).addr().is_ipv6() {
        // A default decapsulator refuses a zero checksum over IPv6 (RFC
        // 8200); the kernel device was told `udp6zerocsumrx`, so are we.
        let strict = VxlanEncap::new(vni);
        for frame in &frames {
            assert_eq!(
                strict.decapsulate(frame).map(|_| ()),
                Err(DecapError::Wire {
                    offset: 54,
                    error: WireError::ZeroUdpChecksumIpv6
                }),
                "{}: zero IPv6 UDP checksum accepted without the RFC 6935 opt-in",
                s.name
            );
        }
        config = config.with_allow_zero_udp_checksum_ipv6(true);
    }
    let decap = VxlanEncap::new(vni).with_config(config);
    for (i, frame) in frames.iter().enumerate() {
        let what = format!("{} frame {i}", s.name);
        // Even frames are A's echo requests, odd ones B's replies.
        let (from, to) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
        let d = decap
            .decapsulate(frame)
            .unwrap_or_else(|e| panic!("{what}: decapsulation failed: {e}"));

        // Outer Ethernet: the underlay veth ends.
        assert_eq!(
            d.outer().ethernet.src_addr,
            MacAddr::new(UNDERLAY_MACS[from]),
            "{what}"
        );
        assert_eq!(
            d.outer().ethernet.dst_addr,
            MacAddr::new(UNDERLAY_MACS[to]),
            "{what}"
        );
        assert_eq!(d.outer().ethernet.vlan, None, "{what}");

        // Outer IP: the underlay addresses, a valid IPv4 header checksum.
        assert_eq!(
            d.outer().ip.src_addr(),
            s.underlay_net(from).addr(),
            "{what}"
        );
        assert_eq!(d.outer().ip.dst_addr(), s.underlay_net(to).addr(), "{what}");
        assert_eq!(d.outer().ip.ttl(), 64, "{what}: the kernel's default TTL");
        let l3 = &frame[ethernet::HEADER_LEN..];
        let (ethertype, l4) = match d.outer().ip {
            OuterIp::V4(ip) => {
                let packet = ipv4::Packet::new_checked(l3).expect("decapsulated IPv4");
                assert!(packet.verify_checksum(), "{what}: IPv4 header checksum");
                assert_eq!(ip.protocol, IpProtocol::Udp, "{what}");
                (EtherType::Ipv4, &l3[packet.header_len()..])
            }
            OuterIp::V6(ip) => {
                assert_eq!(ip.next_header, IpProtocol::Udp, "{what}");
                (EtherType::Ipv6, &l3[ipv6::HEADER_LEN..])
            }
        };
        assert_eq!(d.outer().ethernet.ethertype, ethertype, "{what}");

        // Outer UDP: port 4789, a flow-hashed source port, and a checksum
        // that is zero or verifies, as the device was told.
        assert_eq!(d.outer().udp.dst_port, VXLAN_PORT, "{what}");
        assert!(
            KERNEL_SOURCE_PORTS.contains(&d.outer().udp.src_port),
            "{what}: source port {} outside the kernel's range",
            d.outer().udp.src_port
        );
        let udp = udp::Packet::new_checked(l4).expect("decapsulated UDP");
        let addrs = udp::AddrPair::new(d.outer().ip.src_addr(), d.outer().ip.dst_addr())
            .expect("one address family");
        if s.udp_checksum {
            assert_ne!(udp.checksum(), 0, "{what}: the kernel was told to checksum");
            assert!(udp.verify_checksum(&addrs), "{what}: UDP checksum");
        } else {
            assert_eq!(
                udp.checksum(),
                0,
                "{what}: the kernel was told not to checksum"
            );
        }
        assert_eq!(
            d.outer().udp.payload_len,
            frame.len() - d.inner_offset() + vxlan::HEADER_LEN
        );

        // VXLAN: the VNI, no reserved bits, and the GBP bits of the mark.
        let TunnelHeader::Vxlan(header) = d.tunnel() else {
            panic!("{what}: not a VXLAN header");
        };
        assert_eq!(header.vni, vni, "{what}");
        let vxlan_bytes = &frame[d.inner_offset() - vxlan::HEADER_LEN..];
        let raw = vxlan::Packet::new_checked(vxlan_bytes).expect("decapsulated VXLAN");
        assert!(!raw.reserved_bits_set(), "{what}: reserved VXLAN bits set");
        let expected_gbp = if i % 2 == 0 {
            gbp_for_mark(s.pings[i / 2])
        } else {
            None // the kernel's ICMP reply carries no mark
        };
        assert_eq!(header.gbp, expected_gbp, "{what}: group policy");

        // Inner frame: the sub-slice up to the end of the capture, between
        // the two VXLAN devices, carrying the echo with valid checksums.
        assert_eq!(d.inner_offset() + d.inner().len(), frame.len(), "{what}");
        assert!(
            std::ptr::eq(d.inner(), &frame[d.inner_offset()..]),
            "{what}: not a sub-slice"
        );
        let inner = ethernet::Packet::new_checked(d.inner()).expect("inner Ethernet");
        let inner_eth = ethernet::Repr::parse(&inner).expect("inner Ethernet");
        assert_eq!(
            inner_eth.src_addr,
            MacAddr::new(OVERLAY_MACS[from]),
            "{what}"
        );
        assert_eq!(inner_eth.dst_addr, MacAddr::new(OVERLAY_MACS[to]), "{what}");
        let overlay_src = s.overlay_net(from).addr();
        let overlay_dst = s.overlay_net(to).addr();
        let echo = match (overlay_src, overlay_dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                assert_eq!(inner_eth.ethertype, EtherType::Ipv4, "{what}");
                let ip = ipv4::Packet::new_checked(inner.payload()).expect("inner IPv4");
                let repr = ipv4::Repr::parse(&ip).expect("inner IPv4 with a valid checksum");
                assert_eq!((repr.src_addr, repr.dst_addr), (src, dst), "{what}");
                assert_eq!(repr.protocol, IpProtocol::Icmp, "{what}");
                // A valid checksum makes the one's-complement sum all ones.
                assert_eq!(
                    checksum::data(ip.payload()),
                    0xffff,
                    "{what}: ICMP checksum"
                );
                (ip.payload()[0], ICMP_ECHO)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                assert_eq!(inner_eth.ethertype, EtherType::Ipv6, "{what}");
                let ip = ipv6::Packet::new_checked(inner.payload()).expect("inner IPv6");
                let repr = ipv6::Repr::parse(&ip).expect("inner IPv6");
                assert_eq!((repr.src_addr, repr.dst_addr), (src, dst), "{what}");
                assert_eq!(repr.next_header, IpProtocol::Icmpv6, "{what}");
                let len = u32::try_from(ip.payload().len()).expect("short payload");
                let sum = checksum::combine(&[
                    checksum::pseudo_header_v6(src, dst, 58, len),
                    checksum::data(ip.payload()),
                ]);
                assert_eq!(sum, 0xffff, "{what}: ICMPv6 checksum");
                (ip.payload()[0], ICMPV6_ECHO)
            }
            _ => panic!("{what}: scenario mixes address families"),
        };
        let (icmp_type, [request, reply]) = echo;
        assert_eq!(
            icmp_type,
            if i % 2 == 0 { request } else { reply },
            "{what}"
        );
    }
}

/// Compare a new capture with the checked-in fixture on the bytes that do not
/// vary between captures: frame lengths, the outer Ethernet header, the
/// VXLAN header and the inner Ethernet header. (IPv4 identifiers, UDP source
/// ports, checksums, ICMP identifiers and timestamps differ from run to run.)
fn same_shape(s: &Scenario, fixture: &[u8], live: &[u8]) {
    let (old, new) = (read_pcap(fixture), read_pcap(live));
    assert_eq!(old.len(), new.len(), "{}: frame count", s.name);
    // Neither IPv4 options nor IPv6 extension headers: `check` saw plain headers.
    let ip_len = if s.underlay_net(0).addr().is_ipv4() {
        20
    } else {
        40
    };
    let tunnel = ethernet::HEADER_LEN + ip_len + udp::HEADER_LEN;
    let inner = tunnel + vxlan::HEADER_LEN;
    for (i, (a, b)) in old.iter().zip(&new).enumerate() {
        let what = format!("{} frame {i}: the kernel now sends", s.name);
        assert_eq!(a.len(), b.len(), "{what} another length");
        assert_eq!(
            a[..ethernet::HEADER_LEN],
            b[..ethernet::HEADER_LEN],
            "{what} another outer Ethernet header"
        );
        assert_eq!(
            a[tunnel..inner],
            b[tunnel..inner],
            "{what} another VXLAN header"
        );
        let inner_eth = inner..inner + ethernet::HEADER_LEN;
        assert_eq!(
            a[inner_eth.clone()],
            b[inner_eth],
            "{what} another inner Ethernet header"
        );
    }
}

macro_rules! scenario_tests {
    ($($scenario:ident: $fixture:ident, $live:ident;)*) => {$(
        #[test]
        fn $fixture() {
            let pcap = fs::read($scenario.fixture_path()).expect("read the checked-in fixture");
            check(&$scenario, &pcap);
        }

        #[test]
        fn $live() {
            privileged_test!();
            // Read first: a regeneration run overwrites the fixture. Only a
            // regeneration run may lack it (a scenario captured for the
            // first time).
            let fixture = match fs::read($scenario.fixture_path()) {
                Ok(bytes) => Some(bytes),
                Err(e) if std::env::var_os("OVERLAY_CAPTURE_FIXTURES_DIR").is_some() => {
                    eprintln!("{}: no fixture yet ({e}), capturing the first", $scenario.name);
                    None
                }
                Err(e) => panic!("read the checked-in fixture: {e}"),
            };
            let live = capture(&$scenario);
            check(&$scenario, &live);
            if let Some(fixture) = fixture {
                same_shape(&$scenario, &fixture, &live);
            }
        }
    )*};
}

scenario_tests! {
    IPV4: kernel_vxlan_ipv4_fixture_decodes_to_the_kernel_fields,
        live_kernel_vxlan_ipv4_capture_decodes_to_the_same_fields;
    IPV4_DEFAULT: kernel_vxlan_ipv4_default_fixture_carries_a_computed_udp_checksum,
        live_kernel_vxlan_ipv4_default_device_reports_udpcsum_and_sends_checksums;
    IPV4_UDPCSUM: kernel_vxlan_ipv4_udpcsum_fixture_decodes_with_a_valid_udp_checksum,
        live_kernel_vxlan_ipv4_udpcsum_capture_decodes_to_the_same_fields;
    GBP: kernel_vxlan_gbp_fixture_decodes_the_group_policy_bits,
        live_kernel_vxlan_gbp_capture_decodes_to_the_same_fields;
    IPV6: kernel_vxlan_ipv6_fixture_decodes_to_the_kernel_fields,
        live_kernel_vxlan_ipv6_capture_decodes_to_the_same_fields;
    IPV6_ZERO_CSUM: kernel_vxlan_ipv6_zero_checksum_fixture_decodes_under_rfc_6935,
        live_kernel_vxlan_ipv6_zero_checksum_capture_decodes_to_the_same_fields;
}
