//! Decapsulation and encapsulation of VXLAN frames: overlay-core against
//! `etherparse` and a hand-written offset parser, in the same run.
//!
//! Each decapsulation benchmark takes a whole VXLAN frame as it arrives on the
//! underlay (outer Ethernet/IPv4/UDP/VXLAN around an inner Ethernet/IPv4/TCP
//! frame) and produces the same [`Decapsulated`] summary: the VNI, the outer
//! addresses and UDP source port, and the inner five-tuple. Frames are 122
//! bytes (a bare TCP segment with 18 bytes of data) and 1514 bytes (a full
//! 1500-byte underlay MTU, inner frame 1464 bytes) on the wire.
//!
//! * `ours`: overlay-core's VXLAN decapsulation, then its Ethernet and IPv4
//!   views over the inner frame;
//! * `floor`: a minimal hand-written parser at fixed offsets that validates
//!   what our decapsulation validates (bounds, versions, lengths, protocol
//!   numbers, the outer IPv4 header checksum, no outer fragments, the UDP
//!   port and the zero UDP checksum, the VXLAN I flag);
//! * `etherparse_slices`: etherparse's low-level slices chained by hand
//!   (`Ethernet2Slice`, `Ipv4Slice`, `UdpSlice`, then the same for the inner
//!   frame with `TcpSlice`); etherparse checks lengths but not the IPv4
//!   header checksum, so it does a little less work than the other two;
//! * `etherparse_sliced_packet`: `SlicedPacket::from_ethernet` on the outer
//!   frame, then again on the inner frame.
//!
//! Encapsulation writes the outer headers in place in front of an inner frame
//! that already sits in a buffer with headroom; it must cost the same at both
//! sizes.
//!
//! Run with `cargo bench -p overlay-benches --bench codec`.

// Benchmarks build their own well-formed inputs; an unwrap that fails here is
// a bug in the benchmark, not untrusted data.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
const OUTER_LEN: usize = 50;
/// The VXLAN UDP port (RFC 7348).
const VXLAN_PORT: u16 = 4789;
/// Frame sizes on the wire, outer headers included.
const FRAME_SIZES: [usize; 2] = [122, 1514];

const OUTER_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OUTER_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const OUTER_SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const OUTER_DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const OUTER_SRC_PORT: u16 = 49_320;
const VNI: u32 = 0x00_2a_17;
const INNER_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const INNER_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const INNER_SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const INNER_DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const INNER_SRC_PORT: u16 = 40_000;
const INNER_DST_PORT: u16 = 8080;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The inner flow's five-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FiveTuple {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
}

/// What every decapsulation benchmark produces from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decapsulated {
    vni: u32,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    outer_src_port: u16,
    inner: FiveTuple,
}

fn expected() -> Decapsulated {
    Decapsulated {
        vni: VNI,
        outer_src: OUTER_SRC,
        outer_dst: OUTER_DST,
        outer_src_port: OUTER_SRC_PORT,
        inner: FiveTuple {
            src: INNER_SRC,
            dst: INNER_DST,
            protocol: PROTO_TCP,
            src_port: INNER_SRC_PORT,
            dst_port: INNER_DST_PORT,
        },
    }
}

// ---------------------------------------------------------------------------
// Inputs, built byte by byte (independent of every parser measured here)
// ---------------------------------------------------------------------------

/// RFC 1071 checksum of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Write an IPv4 header without options at `buf[..20]`.
fn put_ipv4(buf: &mut [u8], total_len: usize, protocol: u8, src: Ipv4Addr, dst: Ipv4Addr) {
    buf[0] = 0x45;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&u16::try_from(total_len).unwrap().to_be_bytes());
    buf[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
    buf[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    buf[8] = 64;
    buf[9] = protocol;
    buf[10..12].fill(0);
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let sum = internet_checksum(&buf[..20]);
    buf[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The inner Ethernet/IPv4/TCP frame of `len` bytes.
fn inner_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&INNER_DST_MAC);
    f[6..12].copy_from_slice(&INNER_SRC_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    put_ipv4(&mut f[14..], len - 14, PROTO_TCP, INNER_SRC, INNER_DST);
    let tcp = &mut f[34..];
    tcp[0..2].copy_from_slice(&INNER_SRC_PORT.to_be_bytes());
    tcp[2..4].copy_from_slice(&INNER_DST_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&0x0506_0708u32.to_be_bytes());
    tcp[12] = 5 << 4; // data offset: 20 bytes
    tcp[13] = 0x18; // PSH, ACK
    tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    for (i, b) in tcp[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // The TCP checksum is left zero: no parser measured here verifies it.
    f
}

/// A whole VXLAN frame of `len` bytes on the wire, UDP checksum zero (what
/// RFC 7348 recommends over IPv4 and a Linux device created with `noudpcsum`
/// sends; iproute2's default device sends computed checksums).
fn vxlan_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; OUTER_LEN];
    f.extend_from_slice(&inner_frame(len - OUTER_LEN));
    f[0..6].copy_from_slice(&OUTER_DST_MAC);
    f[6..12].copy_from_slice(&OUTER_SRC_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    put_ipv4(&mut f[14..], len - 14, PROTO_UDP, OUTER_SRC, OUTER_DST);
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&OUTER_SRC_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&VXLAN_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&u16::try_from(len - 34).unwrap().to_be_bytes());
    udp[6..8].fill(0);
    let vxlan = &mut udp[8..];
    vxlan[0] = 0x08; // I flag
    vxlan[1..4].fill(0);
    vxlan[4..7].copy_from_slice(&VNI.to_be_bytes()[1..]);
    vxlan[7] = 0;
    f
}

// ---------------------------------------------------------------------------
// The floor: a hand-written offset parser
// ---------------------------------------------------------------------------

mod floor {
    use super::*;

    #[inline(always)]
    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    #[inline(always)]
    fn ipv4_addr(b: &[u8], at: usize) -> Ipv4Addr {
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    /// Parse an IPv4 header and return its length, after checking the
    /// version, IHL, total length and the protocol.
    #[inline(always)]
    fn ipv4(ip: &[u8], protocol: u8) -> Option<usize> {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(be16(ip, 2));
        if ihl < 20 || total < ihl || total > ip.len() || ip[9] != protocol {
            return None;
        }
        Some(ihl)
    }

    /// The RFC 1071 sum of an IPv4 header is all ones when its checksum is
    /// right.
    #[inline(always)]
    fn ipv4_checksum_ok(header: &[u8]) -> bool {
        let mut sum: u32 = 0;
        for word in header.chunks_exact(2) {
            sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    pub(super) fn decapsulate(frame: &[u8]) -> Option<Decapsulated> {
        if frame.len() < 14 || be16(frame, 12) != 0x0800 {
            return None;
        }
        let ip = &frame[14..];
        let ihl = ipv4(ip, PROTO_UDP)?;
        // Like a receiving host: a correct header checksum, no fragments.
        if !ipv4_checksum_ok(&ip[..ihl]) || be16(ip, 6) & 0x3fff != 0 {
            return None;
        }
        let ip = &ip[..usize::from(be16(ip, 2))];
        let udp = &ip[ihl..];
        // A non-zero UDP checksum would be verified; these frames carry none
        // (the Linux default over IPv4), and the check is on that path.
        if udp.len() < 8 || be16(udp, 2) != VXLAN_PORT || be16(udp, 6) != 0 {
            return None;
        }
        let udp_len = usize::from(be16(udp, 4));
        if udp_len < 8 || udp_len > udp.len() {
            return None;
        }
        let vxlan = &udp[8..udp_len];
        if vxlan.len() < 8 || vxlan[0] & 0x08 == 0 {
            return None;
        }
        let vni = u32::from_be_bytes([0, vxlan[4], vxlan[5], vxlan[6]]);
        let inner = &vxlan[8..];
        if inner.len() < 14 || be16(inner, 12) != 0x0800 {
            return None;
        }
        let iip = &inner[14..];
        let iihl = ipv4(iip, PROTO_TCP)?;
        let tcp = &iip[iihl..usize::from(be16(iip, 2))];
        if tcp.len() < 20 {
            return None;
        }
        Some(Decapsulated {
            vni,
            outer_src: ipv4_addr(ip, 12),
            outer_dst: ipv4_addr(ip, 16),
            outer_src_port: be16(udp, 0),
            inner: FiveTuple {
                src: ipv4_addr(iip, 12),
                dst: ipv4_addr(iip, 16),
                protocol: PROTO_TCP,
                src_port: be16(tcp, 0),
                dst_port: be16(tcp, 2),
            },
        })
    }
}

// ---------------------------------------------------------------------------
// overlay-core
// ---------------------------------------------------------------------------

mod ours {
    use super::*;
    use overlay_core::encap::{Encapsulation, VxlanEncap};
    use overlay_core::wire::ethernet::{self, EtherType};
    use overlay_core::wire::{IpProtocol, Vni, ipv4};
    use std::net::IpAddr;

    /// The decapsulator: any VNI, port 4789, defaults otherwise.
    pub(super) fn vxlan() -> VxlanEncap {
        VxlanEncap::new(Vni::new(VNI).unwrap())
    }

    /// Decapsulate (which validates every outer header and locates the
    /// inner frame), read the outer fields the summary needs through the
    /// `Decapsulated` accessors (no second parse of the outer headers), then the inner five-tuple through the
    /// Ethernet and IPv4 views (the TCP ports are the first four payload
    /// bytes; overlay-core has no TCP codec, and needs none).
    #[inline(always)]
    pub(super) fn decapsulate(encap: &VxlanEncap, frame: &[u8]) -> Option<Decapsulated> {
        let d = encap.decapsulate(frame).ok()?;
        let (IpAddr::V4(outer_src), IpAddr::V4(outer_dst)) =
            (d.outer_src_addr(), d.outer_dst_addr())
        else {
            return None;
        };
        let inner = ethernet::Packet::new_checked(d.inner()).ok()?;
        if inner.ethertype() != EtherType::Ipv4 {
            return None;
        }
        let ip = ipv4::Packet::new_checked(inner.payload()).ok()?;
        if ip.version() != 4 || ip.protocol() != IpProtocol::Tcp {
            return None;
        }
        let tcp = ip.payload();
        if tcp.len() < 20 {
            return None;
        }
        Some(Decapsulated {
            vni: d.vni().get(),
            outer_src,
            outer_dst,
            outer_src_port: d.udp_src_port(),
            inner: FiveTuple {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                protocol: PROTO_TCP,
                src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            },
        })
    }
}

// ---------------------------------------------------------------------------
// etherparse
// ---------------------------------------------------------------------------

mod with_etherparse {
    use super::*;
    use etherparse::{
        EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, LinkSlice, NetSlice, SlicedPacket,
        TcpSlice, TransportSlice, UdpSlice,
    };

    /// The VXLAN header by hand: etherparse has no VXLAN codec.
    #[inline(always)]
    fn vxlan(payload: &[u8]) -> Option<(u32, &[u8])> {
        if payload.len() < 8 || payload[0] & 0x08 == 0 {
            return None;
        }
        Some((
            u32::from_be_bytes([0, payload[4], payload[5], payload[6]]),
            &payload[8..],
        ))
    }

    /// The summary from the slices both etherparse variants end with.
    #[inline(always)]
    fn summary(
        vni: u32,
        ip: &Ipv4Slice<'_>,
        outer_src_port: u16,
        iip: &Ipv4Slice<'_>,
        tcp: &TcpSlice<'_>,
    ) -> Decapsulated {
        Decapsulated {
            vni,
            outer_src: ip.header().source_addr(),
            outer_dst: ip.header().destination_addr(),
            outer_src_port,
            inner: FiveTuple {
                src: iip.header().source_addr(),
                dst: iip.header().destination_addr(),
                protocol: PROTO_TCP,
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
            },
        }
    }

    /// The low-level slices, chained by hand.
    pub(super) fn slices(frame: &[u8]) -> Option<Decapsulated> {
        let eth = Ethernet2Slice::from_slice_without_fcs(frame).ok()?;
        if eth.ether_type() != EtherType::IPV4 {
            return None;
        }
        let ip = Ipv4Slice::from_slice(eth.payload_slice()).ok()?;
        if ip.payload_ip_number() != IpNumber::UDP {
            return None;
        }
        let udp = UdpSlice::from_slice(ip.payload().payload).ok()?;
        if udp.destination_port() != VXLAN_PORT {
            return None;
        }
        let (vni, inner) = vxlan(udp.payload())?;
        let ieth = Ethernet2Slice::from_slice_without_fcs(inner).ok()?;
        if ieth.ether_type() != EtherType::IPV4 {
            return None;
        }
        let iip = Ipv4Slice::from_slice(ieth.payload_slice()).ok()?;
        if iip.payload_ip_number() != IpNumber::TCP {
            return None;
        }
        let tcp = TcpSlice::from_slice(iip.payload().payload).ok()?;
        Some(summary(vni, &ip, udp.source_port(), &iip, &tcp))
    }

    /// `SlicedPacket::from_ethernet` on the outer frame, then on the inner.
    pub(super) fn sliced_packet(frame: &[u8]) -> Option<Decapsulated> {
        let outer = SlicedPacket::from_ethernet(frame).ok()?;
        if !matches!(outer.link, Some(LinkSlice::Ethernet2(_))) {
            return None;
        }
        let Some(NetSlice::Ipv4(ip)) = &outer.net else {
            return None;
        };
        let Some(TransportSlice::Udp(udp)) = &outer.transport else {
            return None;
        };
        if udp.destination_port() != VXLAN_PORT {
            return None;
        }
        let (vni, inner) = vxlan(udp.payload())?;
        let inner = SlicedPacket::from_ethernet(inner).ok()?;
        let Some(NetSlice::Ipv4(iip)) = &inner.net else {
            return None;
        };
        let Some(TransportSlice::Tcp(tcp)) = &inner.transport else {
            return None;
        };
        Some(summary(vni, ip, udp.source_port(), iip, tcp))
    }
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

type Decapsulator = fn(&[u8]) -> Option<Decapsulated>;

fn ours_decapsulate(frame: &[u8]) -> Option<Decapsulated> {
    thread_local! {
        static VXLAN: overlay_core::encap::VxlanEncap = ours::vxlan();
    }
    VXLAN.with(|vxlan| ours::decapsulate(vxlan, frame))
}

fn peers() -> [(&'static str, Decapsulator); 3] {
    [
        ("floor", floor::decapsulate),
        ("etherparse_slices", with_etherparse::slices),
        ("etherparse_sliced_packet", with_etherparse::sliced_packet),
    ]
}

fn bench_decapsulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("vxlan_decapsulate");
    group.throughput(Throughput::Elements(1));
    let vxlan = ours::vxlan();
    for size in FRAME_SIZES {
        let frame = vxlan_frame(size);
        // Every contender must decode the frame to the same fields before
        // its time means anything.
        assert_eq!(
            ours_decapsulate(&frame),
            Some(expected()),
            "ours at {size} bytes"
        );
        group.bench_with_input(BenchmarkId::new("ours", size), &frame, |b, frame| {
            b.iter(|| ours::decapsulate(&vxlan, black_box(frame)))
        });
        for (name, decapsulate) in peers() {
            assert_eq!(
                decapsulate(&frame),
                Some(expected()),
                "{name} at {size} bytes"
            );
            group.bench_with_input(BenchmarkId::new(name, size), &frame, |b, frame| {
                b.iter(|| decapsulate(black_box(frame)))
            });
        }
    }
    group.finish();
}

/// The outer headers by hand, as the floor for encapsulation: a template
/// copied in front of the frame, then the lengths, the flow-hashed source
/// port and the IPv4 header checksum.
fn floor_encapsulate(template: &[u8; OUTER_LEN], buf: &mut [u8], inner_len: usize) {
    let inner = &buf[OUTER_LEN..OUTER_LEN + inner_len];
    // The same inputs a flow hash reads: addresses and ports of the inner flow.
    let mut hash: u32 = 0x9e37_79b9;
    for &b in &inner[26..38] {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let src_port = 49152 + (hash % 16384) as u16;
    buf[..OUTER_LEN].copy_from_slice(template);
    let ip_total = (inner_len + OUTER_LEN - 14) as u16;
    buf[16..18].copy_from_slice(&ip_total.to_be_bytes());
    let mut sum: u32 = 0;
    for word in buf[14..34].chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    buf[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    buf[34..36].copy_from_slice(&src_port.to_be_bytes());
    buf[38..40].copy_from_slice(&(ip_total - 20).to_be_bytes());
}

fn bench_encapsulate(c: &mut Criterion) {
    use overlay_core::MacAddr;
    use overlay_core::encap::{Encapsulation, OuterParams};

    let mut group = c.benchmark_group("vxlan_encapsulate_in_place");
    group.throughput(Throughput::Elements(1));
    let vxlan = ours::vxlan();
    let outer = OuterParams::new(
        MacAddr::new(OUTER_SRC_MAC),
        MacAddr::new(OUTER_DST_MAC),
        OUTER_SRC.into(),
        OUTER_DST.into(),
    );
    assert_eq!(vxlan.headroom(&outer), OUTER_LEN);
    for size in FRAME_SIZES {
        let inner_len = size - OUTER_LEN;
        let mut buf = vec![0u8; OUTER_LEN];
        buf.extend_from_slice(&inner_frame(inner_len));
        let range = vxlan
            .encapsulate(&mut buf, OUTER_LEN, inner_len, &outer)
            .unwrap();
        assert_eq!(range, 0..size);
        let mut template = [0u8; OUTER_LEN];
        template.copy_from_slice(&buf[..OUTER_LEN]);
        let decoded = ours_decapsulate(&buf).unwrap();
        assert_eq!((decoded.vni, decoded.inner), (VNI, expected().inner));

        group.bench_function(BenchmarkId::new("ours", size), |b| {
            b.iter(|| {
                vxlan
                    .encapsulate(black_box(&mut buf), OUTER_LEN, black_box(inner_len), &outer)
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("floor", size), |b| {
            b.iter(|| floor_encapsulate(&template, black_box(&mut buf), black_box(inner_len)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decapsulate, bench_encapsulate);
criterion_main!(benches);
