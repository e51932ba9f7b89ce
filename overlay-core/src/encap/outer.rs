//! Parsing and validation of the outer headers of a received packet: the
//! IPv4 fast path at fixed offsets and the general parser.

use super::{DecapError, Decapsulated, TunnelConfig, TunnelKind};
use crate::wire::ethernet::{self, EtherType};
use crate::wire::{IpProtocol, WireError, ipv4, ipv6, udp};

/// Where the outer layers are, as [`parse_outer`] found them.
#[derive(Debug)]
pub(super) struct Located<'a> {
    pub(super) ip_offset: usize,
    pub(super) udp_offset: usize,
    pub(super) ipv6: bool,
    /// Whether a non-zero UDP checksum was verified.
    pub(super) udp_checksum_verified: bool,
    /// The UDP payload (tunnel header and inner frame), bounded by the UDP
    /// length.
    pub(super) udp_payload: &'a [u8],
}

impl<'a> Located<'a> {
    /// Wraps a [`WireError`] of the tunnel header.
    pub(super) fn tunnel_error(&self) -> impl FnOnce(WireError) -> DecapError {
        at(self.udp_offset + udp::HEADER_LEN)
    }

    /// Completes a [`Decapsulated`] once the tunnel header is validated,
    /// refusing an Ethernet payload shorter than an Ethernet header. Both
    /// [`parse_outer`] paths end here, so neither can let one through.
    #[inline(always)]
    pub(super) fn finish(
        self,
        packet: &'a [u8],
        kind: TunnelKind,
        tunnel_header_len: usize,
        ethernet_payload: bool,
    ) -> Result<Decapsulated<'a>, DecapError> {
        let inner_offset = self.udp_offset + udp::HEADER_LEN + tunnel_header_len;
        let inner = self
            .udp_payload
            .get(tunnel_header_len..)
            .unwrap_or_default();
        if ethernet_payload && inner.len() < ethernet::HEADER_LEN {
            return Err(DecapError::InnerFrameTooShort {
                offset: inner_offset,
                len: inner.len(),
            });
        }
        Ok(Decapsulated {
            packet,
            ip_offset: self.ip_offset,
            udp_offset: self.udp_offset,
            ipv6: self.ipv6,
            udp_checksum_verified: self.udp_checksum_verified,
            kind,
            inner_offset,
            inner,
        })
    }
}

/// Wraps a [`WireError`] of the header that starts at `offset`.
#[inline(always)]
fn at(offset: usize) -> impl FnOnce(WireError) -> DecapError {
    move |error| DecapError::Wire { offset, error }
}

/// Validates outer Ethernet, IPv4/IPv6 and UDP; never panics.
///
/// The IPv4 underlay with a zero UDP checksum (what this crate sends by
/// default, and Linux VXLAN devices created with `noudpcsum`) is the
/// per-packet hot path and stays inline; IPv6 and checksum verification,
/// which sum the whole packet anyway, are out of line so that their
/// registers and calls do not weigh on it.
///
/// `min_payload` is the shortest UDP payload the tunnel can accept (its
/// fixed header, plus an Ethernet header if the payload is always Ethernet):
/// the fast path leaves anything shorter to the general path, whose caller
/// then refuses it with a typed error ([`Located::finish`]).
#[inline(always)]
pub(super) fn parse_outer<'a>(
    packet: &'a [u8],
    cfg: &TunnelConfig,
    min_payload: usize,
) -> Result<Located<'a>, DecapError> {
    match parse_outer_fast(packet, cfg, min_payload) {
        Some(located) => Ok(located),
        None => parse_outer_general(packet, cfg),
    }
}

/// The common case at fixed offsets: an untagged frame, IPv4 without
/// options, a zero UDP checksum, a UDP payload of at least `min_payload`
/// bytes. `Some` only where [`parse_outer_general`] accepts the packet and
/// locates the same layers (a property test holds the two together);
/// anything else, including every error, is left to it.
#[inline(always)]
fn parse_outer_fast<'a>(
    packet: &'a [u8],
    cfg: &TunnelConfig,
    min_payload: usize,
) -> Option<Located<'a>> {
    const IP: usize = ethernet::HEADER_LEN;
    const UDP: usize = IP + ipv4::HEADER_LEN;
    let h: &[u8; UDP + udp::HEADER_LEN] = packet.first_chunk()?;
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    // IPv4, version 4 and IHL 5, UDP, neither more fragments nor an offset
    // (DF and the reserved bit are not looked at, as in the general path).
    if be16(12) != 0x0800 || h[IP] != 0x45 || h[IP + 9] != 17 || be16(IP + 6) & 0x3fff != 0 {
        return None;
    }
    // The header checksum over five 32-bit words; all ones when right.
    let mut sum: u64 = 0;
    for word in h[IP..UDP].chunks_exact(4) {
        sum += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let ip_total = usize::from(be16(IP + 2));
    if sum != 0xffff || ip_total < UDP - IP + udp::HEADER_LEN || ip_total > packet.len() - IP {
        return None;
    }
    let udp_len = usize::from(be16(UDP + 4));
    if be16(UDP + 6) != 0
        || be16(UDP + 2) != cfg.dst_port
        || udp_len < udp::HEADER_LEN + min_payload
        || udp_len > ip_total - (UDP - IP)
    {
        return None;
    }
    Some(Located {
        ip_offset: IP,
        udp_offset: UDP,
        ipv6: false,
        udp_checksum_verified: false,
        udp_payload: packet.get(UDP + udp::HEADER_LEN..UDP + udp_len)?,
    })
}

/// Every outer header layout, with a typed error for whatever is wrong.
#[inline(never)]
fn parse_outer_general<'a>(
    packet: &'a [u8],
    cfg: &TunnelConfig,
) -> Result<Located<'a>, DecapError> {
    let eth = ethernet::Packet::new_checked(packet).map_err(at(0))?;
    // The tag test once: header length and payload type both follow from it.
    let (ip_offset, ethertype) = eth.header_len_and_ethertype();
    let l3 = packet.get(ip_offset..).unwrap_or_default();
    if ethertype != u16::from(EtherType::Ipv4) {
        if ethertype == u16::from(EtherType::Ipv6) {
            return parse_outer_v6(l3, ip_offset, cfg);
        }
        return Err(DecapError::NotIp(EtherType::from(ethertype)));
    }
    let p = ipv4::Packet::new_checked(l3).map_err(at(ip_offset))?;
    p.validate().map_err(at(ip_offset))?;
    if p.more_frags() || p.frag_offset() != 0 {
        return Err(DecapError::Fragmented {
            offset: p.frag_offset(),
            more: p.more_frags(),
        });
    }
    if p.protocol() != IpProtocol::Udp {
        return Err(DecapError::NotUdp(p.protocol()));
    }
    let udp_offset = ip_offset + p.header_len();
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let udp_packet = udp::Packet::new_checked(p.into_payload()).map_err(at(udp_offset))?;
    let verified = udp_packet.checksum() != 0 && cfg.verify_udp_checksum;
    if verified {
        verify_udp(
            &udp_packet,
            &udp::AddrPair::V4 { src, dst },
            cfg,
            udp_offset,
        )?;
    }
    located(udp_packet, cfg, ip_offset, udp_offset, false, verified)
}

/// [`parse_outer`] for an IPv6 underlay, from the IPv6 header on.
#[inline(always)]
fn parse_outer_v6<'a>(
    l3: &'a [u8],
    ip_offset: usize,
    cfg: &TunnelConfig,
) -> Result<Located<'a>, DecapError> {
    let p = ipv6::Packet::new_checked(l3).map_err(at(ip_offset))?;
    p.validate().map_err(at(ip_offset))?;
    if p.next_header() != IpProtocol::Udp {
        return Err(DecapError::NotUdp(p.next_header()));
    }
    let addrs = udp::AddrPair::from((p.src_addr(), p.dst_addr()));
    let udp_offset = ip_offset + ipv6::HEADER_LEN;
    let udp_packet = udp::Packet::new_checked(p.into_payload()).map_err(at(udp_offset))?;
    verify_udp(&udp_packet, &addrs, cfg, udp_offset)?;
    let verified = udp_packet.checksum() != 0 && cfg.verify_udp_checksum;
    located(udp_packet, cfg, ip_offset, udp_offset, true, verified)
}

/// The UDP checksum rules of [`udp::Packet::validate`] under the tunnel's
/// options, out of line: the IPv4 zero-checksum case never calls it.
#[inline(never)]
fn verify_udp(
    udp_packet: &udp::Packet<&[u8]>,
    addrs: &udp::AddrPair,
    cfg: &TunnelConfig,
    udp_offset: usize,
) -> Result<(), DecapError> {
    udp_packet
        .validate(addrs, &cfg.udp_parse_options())
        .map_err(at(udp_offset))
}

/// Checks the destination port and records where the layers start.
#[inline(always)]
fn located<'a>(
    udp_packet: udp::Packet<&'a [u8]>,
    cfg: &TunnelConfig,
    ip_offset: usize,
    udp_offset: usize,
    ipv6: bool,
    udp_checksum_verified: bool,
) -> Result<Located<'a>, DecapError> {
    if udp_packet.dst_port() != cfg.dst_port {
        return Err(DecapError::UnexpectedPort {
            expected: cfg.dst_port,
            got: udp_packet.dst_port(),
        });
    }
    Ok(Located {
        ip_offset,
        udp_offset,
        ipv6,
        udp_checksum_verified,
        udp_payload: udp_packet.into_payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{outer_v4, outer_v6};
    use super::super::{
        EncapError, Encapsulation, GeneveEncap, UdpChecksumMode, VxlanEncap, encapsulate_udp,
        udp_headroom,
    };
    use super::*;
    use crate::wire::Vni;

    /// A VXLAN-shaped IPv4 packet from `encapsulate_udp` with `inner_len`
    /// bytes of inner frame.
    fn v4_packet(cfg: &TunnelConfig, inner_len: usize) -> Vec<u8> {
        let headroom = udp_headroom(&outer_v4(), 8);
        let mut buf: Vec<u8> = (0..headroom + inner_len).map(|i| i as u8).collect();
        encapsulate_udp(
            cfg,
            &[0x08, 0, 0, 0, 0, 0, 1, 0],
            &mut buf,
            headroom,
            inner_len,
            &outer_v4(),
        )
        .unwrap();
        buf
    }

    /// What VXLAN passes as `min_payload`: its header and an Ethernet header.
    const VXLAN_MIN: usize = 8 + ethernet::HEADER_LEN;

    fn fields(l: &Located<'_>) -> (usize, usize, bool, bool, *const u8, usize) {
        (
            l.ip_offset,
            l.udp_offset,
            l.ipv6,
            l.udp_checksum_verified,
            l.udp_payload.as_ptr(),
            l.udp_payload.len(),
        )
    }

    #[test]
    fn fast_path_takes_the_default_ipv4_packet_and_agrees_with_the_general_path() {
        let cfg = TunnelConfig::new(4789);
        let packet = v4_packet(&cfg, 64);
        let fast = parse_outer_fast(&packet, &cfg, VXLAN_MIN)
            .expect("the common case is on the fast path");
        let general = parse_outer_general(&packet, &cfg).unwrap();
        assert_eq!(fields(&fast), fields(&general));
        assert_eq!(fast.udp_payload.len(), 8 + 64);
    }

    #[test]
    fn fast_path_leaves_options_tags_and_checksums_to_the_general_path() {
        let cfg = TunnelConfig::new(4789);
        // A non-zero UDP checksum must be verified: not on the fast path.
        let computed = TunnelConfig::new(4789).with_udp_checksum(UdpChecksumMode::Compute);
        let packet = v4_packet(&computed, 64);
        assert!(parse_outer_fast(&packet, &cfg, VXLAN_MIN).is_none());
        assert!(parse_outer_general(&packet, &cfg).is_ok());
        // A wrong IPv4 header checksum.
        let mut packet = v4_packet(&cfg, 64);
        packet[24] ^= 1;
        assert!(parse_outer_fast(&packet, &cfg, VXLAN_MIN).is_none());
        assert!(matches!(
            parse_outer(&packet, &cfg, VXLAN_MIN),
            Err(DecapError::Wire { offset: 14, .. })
        ));
        // Another port.
        let packet = v4_packet(&TunnelConfig::new(6081), 64);
        assert!(parse_outer_fast(&packet, &cfg, VXLAN_MIN).is_none());
        assert!(matches!(
            parse_outer(&packet, &cfg, VXLAN_MIN),
            Err(DecapError::UnexpectedPort {
                expected: 4789,
                got: 6081
            })
        ));
    }

    #[test]
    fn fast_path_leaves_inner_frames_shorter_than_ethernet_to_the_refusing_general_path() {
        let cfg = TunnelConfig::new(4789);
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        for inner_len in 0..ethernet::HEADER_LEN {
            let packet = v4_packet(&cfg, inner_len);
            assert!(parse_outer_fast(&packet, &cfg, VXLAN_MIN).is_none());
            assert_eq!(
                vxlan.decapsulate(&packet).unwrap_err(),
                DecapError::InnerFrameTooShort {
                    offset: 50,
                    len: inner_len
                }
            );
        }
        let packet = v4_packet(&cfg, ethernet::HEADER_LEN);
        assert!(parse_outer_fast(&packet, &cfg, VXLAN_MIN).is_some());
        assert_eq!(vxlan.decapsulate(&packet).unwrap().inner().len(), 14);
    }

    proptest::proptest! {
        /// Inner frames of 0 to 13 bytes are refused with a typed error by
        /// encapsulation and, when another sender sends them anyway, by
        /// decapsulation, whichever path parses the outer headers (fast: IPv4, untagged,
        /// zero checksum; general: a tag, IPv6 or a computed checksum), for
        /// VXLAN and for Geneve carrying Ethernet; 14 bytes are accepted.
        #[test]
        fn inner_frames_shorter_than_ethernet_are_refused_on_every_path(
            inner_len in 0usize..=ethernet::HEADER_LEN,
            v6 in proptest::bool::ANY,
            vlan in proptest::option::of(crate::wire::ethernet::tests::arb_vlan()),
            compute in proptest::bool::ANY,
        ) {
            let mode = if compute { UdpChecksumMode::Compute } else { UdpChecksumMode::Auto };
            let vxlan = VxlanEncap::new(Vni::new(3).unwrap())
                .with_config(TunnelConfig::new(4789).with_udp_checksum(mode));
            let geneve = GeneveEncap::new(Vni::new(3).unwrap())
                .with_config(TunnelConfig::new(6081).with_udp_checksum(mode));
            let tunnels: [(&dyn Encapsulation, &TunnelConfig, &[u8]); 2] = [
                (&vxlan, vxlan.config(), vxlan.encoded_header()),
                (&geneve, geneve.config(), geneve.encoded_header()),
            ];
            let mut outer = if v6 { outer_v6() } else { outer_v4() };
            outer.vlan = vlan;
            for (tunnel, cfg, header) in tunnels {
                let headroom = tunnel.headroom(&outer);
                let mut buf = vec![0x5au8; headroom + inner_len];
                // Encapsulation refuses such frames, so they are written
                // below its minimum check, as another sender might.
                let sent = tunnel.encapsulate(&mut buf.clone(), headroom, inner_len, &outer);
                let range = encapsulate_udp(cfg, header, &mut buf, headroom, inner_len, &outer).unwrap();
                let result = tunnel.decapsulate(&buf[range]);
                if inner_len < ethernet::HEADER_LEN {
                    proptest::prop_assert_eq!(sent, Err(EncapError::InnerFrameTooShort { len: inner_len }));
                    proptest::prop_assert_eq!(
                        result.unwrap_err(),
                        DecapError::InnerFrameTooShort { offset: headroom, len: inner_len }
                    );
                } else {
                    proptest::prop_assert!(sent.is_ok());
                    proptest::prop_assert_eq!(result.unwrap().inner().len(), inner_len);
                }
            }
        }

        /// Whatever the fast path accepts, the general path accepts with the
        /// same layers, on valid, corrupted and truncated packets alike.
        #[test]
        fn fast_path_never_disagrees_with_the_general_path(
            inner_len in 0usize..200,
            compute in proptest::bool::ANY,
            flips in proptest::collection::vec((0usize..64, 0u8..8), 0..3),
            cut in proptest::option::of(0usize..300),
        ) {
            let mode = if compute { UdpChecksumMode::Compute } else { UdpChecksumMode::Zero };
            let cfg = TunnelConfig::new(4789).with_udp_checksum(mode);
            let mut packet = v4_packet(&cfg, inner_len);
            for (at, bit) in flips {
                if let Some(b) = packet.get_mut(at) {
                    *b ^= 1 << bit;
                }
            }
            if let Some(cut) = cut {
                packet.truncate(cut);
            }
            if let Some(fast) = parse_outer_fast(&packet, &cfg, VXLAN_MIN) {
                let general = parse_outer_general(&packet, &cfg);
                proptest::prop_assert!(general.is_ok(), "general rejects what fast accepts: {general:?}");
                if let Ok(general) = general {
                    proptest::prop_assert_eq!(fields(&fast), fields(&general));
                }
            }
        }
    }
}
