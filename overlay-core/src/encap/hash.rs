//! Flow hashing for the outer UDP source port (RFC 7348 section 5).

use std::ops::RangeInclusive;

/// A small multiply-rotate mixer finished with MurmurHash3's `fmix64`. Not
/// cryptographic: it spreads flows over ports, it does not resist an
/// adversary choosing flows.
///
/// Each input is multiplied on its own and folded in with a rotate and xor,
/// so the multiplications run in parallel and the serial chain per input is
/// two cheap instructions; `fmix64` then avalanches the result.
struct Mixer(u64);

impl Mixer {
    const SEED: u64 = 0x243f_6a88_85a3_08d3;
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    #[inline]
    fn add(&mut self, value: u64) {
        self.0 = self.0.rotate_left(23) ^ value.wrapping_mul(Self::K);
    }

    #[inline]
    fn finish(self) -> u32 {
        // fmix64 from MurmurHash3, then fold to 32 bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        // Truncation folds the high half in first.
        ((h >> 32) ^ h) as u32
    }
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Hashes the flow of an inner Ethernet frame, for the outer UDP source port.
///
/// RFC 7348 section 5 asks for a source port computed from a hash of the
/// inner headers so that ECMP and RSS in the underlay spread tunnels' flows
/// while keeping each flow on one path. The hash covers:
///
/// * the destination and source MAC addresses and the EtherType (after a
///   single 802.1Q tag, whose VID is included too);
/// * for IPv4 and IPv6: the source and destination addresses and the
///   protocol / next header;
/// * for TCP and UDP (IPv4 not fragmented, IPv6 without extension headers):
///   the source and destination ports.
///
/// It reads at most the first 82 bytes of the frame (a tagged IPv4 header
/// with 40 bytes of options, then the ports) and never panics: a
/// frame too short for a layer is hashed over the layers it has. The result
/// is deterministic (no per-process seed), so a flow keeps its source port,
/// and thus its underlay path, across restarts of the sender.
///
/// ```
/// use overlay_core::encap::flow_hash;
///
/// let mut frame = vec![0u8; 64];
/// frame[12..14].copy_from_slice(&[0x08, 0x00]);
/// frame[14] = 0x45;
/// let a = flow_hash(&frame);
/// frame[30] = 1; // another destination address
/// assert_ne!(flow_hash(&frame), a);
/// assert_eq!(flow_hash(&[]), flow_hash(&[]));
/// ```
pub fn flow_hash(frame: &[u8]) -> u32 {
    flow_hash_ipv4(frame).unwrap_or_else(|| flow_hash_general(frame))
}

/// [`flow_hash`] of the common frame (untagged IPv4 without options, at
/// least 38 bytes) at fixed offsets, inlined into the encapsulation fast
/// path; `None` for any other frame. The same inputs in the same order as
/// [`flow_hash_general`], so the same hash (a property test checks it).
#[inline(always)]
pub(super) fn flow_hash_ipv4(frame: &[u8]) -> Option<u32> {
    let h = frame.first_chunk::<38>()?;
    if h[12..14] != [0x08, 0x00] || h[14] != 0x45 {
        return None;
    }
    let be = |at: usize| u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    let mut m = Mixer(Mixer::SEED);
    m.add((be(0) << 32) | be(4));
    m.add((be(8) << 16) | 0x0800);
    m.add((be(26) << 32) | be(30));
    let protocol = h[23];
    m.add(u64::from(protocol));
    let frag = u16::from_be_bytes([h[20], h[21]]);
    if matches!(protocol, 6 | 17) && frag & 0x3fff == 0 {
        m.add(be(34));
    }
    Some(m.finish())
}

/// [`flow_hash`] for every frame.
fn flow_hash_general(frame: &[u8]) -> u32 {
    let mut m = Mixer(Mixer::SEED);
    let (Some(macs_hi), Some(macs_lo), Some(mut ethertype)) =
        (be_u64(frame, 0), be_u32(frame, 8), be_u16(frame, 12))
    else {
        // Not even an Ethernet header: hash what is there.
        for (i, &b) in frame.iter().enumerate() {
            m.add(u64::from(b) << (i % 8 * 8));
        }
        m.add(frame.len() as u64);
        return m.finish();
    };
    m.add(macs_hi);
    let mut l3 = 14;
    if ethertype == 0x8100
        && let (Some(tci), Some(inner)) = (be_u16(frame, 14), be_u16(frame, 16))
    {
        m.add(u64::from(tci & 0x0fff) << 48);
        ethertype = inner;
        l3 = 18;
    }
    m.add((u64::from(macs_lo) << 16) | u64::from(ethertype));
    let ports_at = match ethertype {
        0x0800 => hash_ipv4(&mut m, frame, l3),
        0x86dd => hash_ipv6(&mut m, frame, l3),
        _ => None,
    };
    if let Some(ports) = ports_at.and_then(|at| be_u32(frame, at)) {
        m.add(u64::from(ports));
    }
    m.finish()
}

/// Mixes IPv4 addresses and protocol; returns the offset of the L4 ports if
/// the packet is TCP or UDP and not a fragment.
fn hash_ipv4(m: &mut Mixer, frame: &[u8], l3: usize) -> Option<usize> {
    let ver_ihl = *frame.get(l3)?;
    if ver_ihl >> 4 != 4 {
        return None;
    }
    let addrs = be_u64(frame, l3 + 12)?;
    let protocol = *frame.get(l3 + 9)?;
    m.add(addrs);
    m.add(u64::from(protocol));
    let frag = be_u16(frame, l3 + 6)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let is_fragment = frag & 0x3fff != 0;
    (matches!(protocol, 6 | 17) && !is_fragment && ihl >= 20).then_some(l3 + ihl)
}

/// Mixes IPv6 addresses and next header; returns the offset of the L4 ports
/// if the next header is TCP or UDP.
fn hash_ipv6(m: &mut Mixer, frame: &[u8], l3: usize) -> Option<usize> {
    if *frame.get(l3)? >> 4 != 6 {
        return None;
    }
    let next_header = *frame.get(l3 + 6)?;
    for i in 0..4 {
        m.add(be_u64(frame, l3 + 8 + i * 8)?);
    }
    m.add(u64::from(next_header));
    matches!(next_header, 6 | 17).then_some(l3 + 40)
}

/// Maps a flow hash onto a port range, uniformly: the hash is scaled by
/// multiplication (like Linux's `udp_flow_src_port`), not reduced modulo, so
/// every port gets an equal share. Both bounds are included; an inverted
/// range is used as if its bounds were swapped.
///
/// ```
/// use overlay_core::encap::source_port;
/// assert_eq!(source_port(0, 49152..=65535), 49152);
/// assert_eq!(source_port(u32::MAX, 49152..=65535), 65535);
/// assert_eq!(source_port(12345, 4000..=4000), 4000);
/// ```
pub fn source_port(hash: u32, range: RangeInclusive<u16>) -> u16 {
    PortRange::new(&range).port(hash)
}

/// A source port range as [`source_port`] uses it: the lowest port and the
/// number of ports. Built once per tunnel by the encapsulation fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PortRange {
    lo: u16,
    /// 1 to 65536.
    span: u32,
}

impl PortRange {
    /// Both bounds included; an inverted range is used as if its bounds
    /// were swapped.
    #[inline(always)]
    pub(super) fn new(range: &RangeInclusive<u16>) -> PortRange {
        let (lo, hi) = if range.start() <= range.end() {
            (*range.start(), *range.end())
        } else {
            (*range.end(), *range.start())
        };
        PortRange {
            lo,
            span: u32::from(hi - lo) + 1,
        }
    }

    /// The port for a flow that hashes to `hash`.
    #[inline(always)]
    pub(super) fn port(self, hash: u32) -> u16 {
        // (hash * span) >> 32 < span <= 65536, so the sum stays within
        // lo..=hi.
        self.lo + ((u64::from(hash) * u64::from(self.span)) >> 32) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tcp4_frame(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f[36..38].copy_from_slice(&dst_port.to_be_bytes());
        f
    }

    #[test]
    fn hash_depends_on_l4_ports_for_tcp() {
        assert_ne!(
            flow_hash(&tcp4_frame(1000, 80)),
            flow_hash(&tcp4_frame(1001, 80))
        );
    }

    #[test]
    fn hash_ignores_payload_and_ttl() {
        let a = tcp4_frame(1000, 80);
        let mut b = a.clone();
        b[22] = 1; // TTL
        b[50] = 0xff; // payload byte
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn fragments_are_hashed_without_ports() {
        let mut a = tcp4_frame(1000, 80);
        let mut b = tcp4_frame(2000, 80);
        a[20] = 0x20; // MF
        b[20] = 0x20;
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn ipv6_udp_ports_are_hashed() {
        let mut f = vec![0u8; 62];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[20] = 17;
        let a = flow_hash(&f);
        f[55] = 1; // source port low byte (54..56)
        assert_ne!(flow_hash(&f), a);
    }

    #[test]
    fn vlan_tagged_frames_hash_the_inner_flow() {
        let plain = tcp4_frame(1000, 80);
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&plain[12..]);
        let mut other = tagged.clone();
        other[38] = 0x99; // source port of the tagged frame (18 + 20)
        assert_ne!(flow_hash(&tagged), flow_hash(&other));
    }

    #[test]
    fn ports_spread_over_the_whole_range() {
        let mut seen = std::collections::HashSet::new();
        for p in 0..4096u16 {
            seen.insert(source_port(flow_hash(&tcp4_frame(p, 80)), 49152..=49167));
        }
        assert_eq!(seen.len(), 16);
    }

    proptest! {
        #[test]
        fn hash_never_panics_on_any_frame(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = flow_hash(&frame);
        }

        #[test]
        fn source_port_stays_in_range(hash in any::<u32>(), a in any::<u16>(), b in any::<u16>()) {
            let p = source_port(hash, a..=b);
            prop_assert!(p >= a.min(b) && p <= a.max(b));
        }

        /// The fixed-offset path for untagged IPv4 without options hashes
        /// exactly what the general path hashes.
        #[test]
        fn ipv4_fast_path_hashes_like_the_general_path(
            mut frame in proptest::collection::vec(any::<u8>(), 38..80),
            protocol in prop_oneof![Just(6u8), Just(17), any::<u8>()],
            frag in prop_oneof![Just(0u16), Just(0x4000), any::<u16>()],
        ) {
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame[14] = 0x45;
            frame[23] = protocol;
            frame[20..22].copy_from_slice(&frag.to_be_bytes());
            prop_assert_eq!(flow_hash(&frame), flow_hash_general(&frame));
            for len in 0..frame.len() {
                prop_assert_eq!(flow_hash(&frame[..len]), flow_hash_general(&frame[..len]));
            }
        }
    }
}
