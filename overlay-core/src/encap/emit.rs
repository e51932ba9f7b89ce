//! Writing the outer headers in front of an inner frame: the general,
//! field-by-field path and the IPv4 template fast path.

use std::net::IpAddr;
use std::ops::Range;

#[cfg(doc)]
use super::DecapError;
use super::hash;
use super::{EncapError, OuterParams, TunnelConfig, UdpChecksumMode, flow_hash, source_port};
use crate::wire::ethernet::{self, EtherType};
use crate::wire::{IpProtocol, Layer, WireError, checksum, ipv4, ipv6, udp};

/// Writes outer Ethernet/IP/UDP plus the pre-encoded `tunnel_header` in
/// front of the inner frame. Shared by every UDP-based encapsulation.
pub(super) fn encapsulate_udp(
    cfg: &TunnelConfig,
    tunnel_header: &[u8],
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    outer: &OuterParams,
) -> Result<Range<usize>, EncapError> {
    // Matched here rather than through `AddrPair::new`'s `Option`, and errors
    // built lazily below: values built only to be discarded are stored to the
    // stack on every packet, and reading them back stalls.
    let addrs = match (outer.src_ip, outer.dst_ip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => udp::AddrPair::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => udp::AddrPair::V6 { src, dst },
        (src, dst) => return Err(EncapError::AddressFamilyMismatch { src, dst }),
    };
    let eth_len = outer.eth_header_len();
    let ip_len = outer.ip_header_len();
    let headroom = udp_headroom(outer, tunnel_header.len());
    let Some(start) = inner_start.checked_sub(headroom) else {
        return Err(EncapError::NotEnoughHeadroom {
            needed: headroom,
            available: inner_start,
        });
    };
    let end = inner_start
        .checked_add(inner_len)
        .filter(|&end| end <= buf.len())
        .ok_or_else(|| EncapError::InnerOutOfBounds {
            start: inner_start,
            end: inner_start.saturating_add(inner_len),
            buf_len: buf.len(),
        })?;
    let udp_payload_len = tunnel_header.len() + inner_len;
    let udp_len = udp::HEADER_LEN + udp_payload_len;
    let ip_total = match addrs {
        udp::AddrPair::V4 { .. } => (ip_len + udp_len, Layer::Ipv4),
        udp::AddrPair::V6 { .. } => (udp_len, Layer::Ipv6),
    };
    for (len, layer) in [(udp_len, Layer::Udp), ip_total] {
        if len > usize::from(u16::MAX) {
            return Err(EncapError::TooLong { layer, len });
        }
    }

    let hash = flow_hash(&buf[inner_start..end]);
    let src_port = source_port(hash, cfg.src_port_range.clone());
    // Checked before anything is written; constant 0 (and folded away) for
    // an IPv4 underlay.
    let flow_label = match addrs {
        udp::AddrPair::V4 { .. } => 0,
        udp::AddrPair::V6 { .. } => cfg.ipv6_flow_label.value(hash),
    };
    let Some(tos) = cfg.tos() else {
        let layer = if addrs.is_ipv6() {
            Layer::Ipv6
        } else {
            Layer::Ipv4
        };
        let (field, value, max) = if cfg.dscp > ipv4::MAX_DSCP {
            ("dscp", cfg.dscp, ipv4::MAX_DSCP)
        } else {
            ("ecn", cfg.ecn, ipv4::MAX_ECN)
        };
        return Err(EncapError::Header(WireError::ValueOutOfRange {
            layer,
            field,
            value: value.into(),
            max: max.into(),
        }));
    };
    if flow_label > ipv6::MAX_FLOW_LABEL {
        return Err(EncapError::Header(WireError::ValueOutOfRange {
            layer: Layer::Ipv6,
            field: "flow_label",
            // Lossless: u32 fits usize on every target this crate builds for.
            value: flow_label as usize,
            max: ipv6::MAX_FLOW_LABEL as usize,
        }));
    }
    // From here on no emit can fail: the lengths were bounded above, the
    // buffers are split to exactly the header sizes, the flow label was
    // checked and the EtherType is IPv4 or IPv6. The `?`s only keep that
    // reasoning out of the panic-freedom argument.
    let packet = &mut buf[start..end];
    let (eth_buf, rest) = packet.split_at_mut(eth_len);
    let (ip_buf, l4) = rest.split_at_mut(ip_len);
    l4[udp::HEADER_LEN..udp::HEADER_LEN + tunnel_header.len()].copy_from_slice(tunnel_header);

    let checksum = match (cfg.udp_checksum, addrs.is_ipv6()) {
        (UdpChecksumMode::Compute, _) | (UdpChecksumMode::Auto, true) => udp::Checksum::Compute,
        (UdpChecksumMode::Zero, _) | (UdpChecksumMode::Auto, false) => udp::Checksum::Zero,
    };
    udp::Repr {
        src_port,
        dst_port: cfg.dst_port,
        payload_len: udp_payload_len,
    }
    .emit(&mut udp::Packet::new_unchecked(&mut *l4), &addrs, checksum)?;

    let ethertype = match addrs {
        udp::AddrPair::V4 { src, dst } => {
            // Written field by field rather than through ipv4::Repr: the
            // header has no options, and this is the per-packet hot path.
            let mut ip = ipv4::Packet::new_unchecked(&mut *ip_buf);
            ip.set_version_and_header_len(4, ipv4::HEADER_LEN);
            ip.set_dscp_ecn(cfg.dscp, cfg.ecn);
            // ip_len + udp_len <= 65535 was checked above.
            ip.set_total_len((ip_len + udp_len) as u16);
            ip.set_ident(outer.ipv4_ident);
            ip.set_flags_and_frag_offset(cfg.dont_fragment, false, 0);
            ip.set_ttl(cfg.ttl);
            ip.set_protocol(IpProtocol::Udp);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            // Summed from the values rather than re-read from the buffer,
            // which would stall on the bytes just stored.
            let (s, d) = (u32::from(src), u32::from(dst));
            let words = [
                0x4500 | u16::from(tos),
                (ip_len + udp_len) as u16,
                outer.ipv4_ident,
                if cfg.dont_fragment { 0x4000 } else { 0 },
                (u16::from(cfg.ttl) << 8) | u16::from(u8::from(IpProtocol::Udp)),
                (s >> 16) as u16,
                s as u16,
                (d >> 16) as u16,
                d as u16,
            ];
            ip.set_checksum(!checksum::combine(&words));
            EtherType::Ipv4
        }
        udp::AddrPair::V6 { src, dst } => {
            let mut ip = ipv6::Repr::new(src, dst, IpProtocol::Udp, udp_len);
            ip.hop_limit = cfg.ttl;
            (ip.dscp, ip.ecn) = (cfg.dscp, cfg.ecn);
            ip.flow_label = flow_label;
            ip.emit(&mut ipv6::Packet::new_unchecked(&mut *ip_buf))?;
            EtherType::Ipv6
        }
    };
    ethernet::Repr {
        src_addr: outer.src_mac,
        dst_addr: outer.dst_mac,
        vlan: outer.vlan,
        ethertype,
    }
    .emit(&mut ethernet::Packet::new_unchecked(&mut *eth_buf))?;
    Ok(start..end)
}

/// Refuses an Ethernet payload shorter than an Ethernet header, as
/// decapsulation does ([`DecapError::InnerFrameTooShort`]).
#[inline(always)]
pub(super) fn check_inner_len(inner_len: usize, ethernet_payload: bool) -> Result<(), EncapError> {
    if ethernet_payload && inner_len < ethernet::HEADER_LEN {
        return Err(EncapError::InnerFrameTooShort { len: inner_len });
    }
    Ok(())
}

/// Headroom of the fast path: untagged Ethernet, IPv4 without options, UDP
/// and an 8-byte tunnel header.
const V4_HEADROOM: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + 8;

/// The outer headers of the common configuration (IPv4 underlay, no VLAN
/// tag, zero UDP checksum) with an 8-byte tunnel header, encoded once when
/// the tunnel is configured: [`encapsulate_v4_fast`] copies it in front of
/// the frame and writes the per-packet fields at fixed offsets.
///
/// Built only from a [`TunnelConfig`] whose UDP checksum over IPv4 is zero;
/// the general path ([`encapsulate_udp`]) covers everything else, and a
/// property test holds the two to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct V4Template {
    /// Ethernet, IPv4, UDP and tunnel header with every per-packet field
    /// (MAC addresses, IPv4 total length, identification, checksum and
    /// addresses, UDP source port and length) zero.
    bytes: [u8; V4_HEADROOM],
    /// One's-complement sum of the constant IPv4 header words (version,
    /// IHL and TOS; flags; TTL and protocol), not folded.
    ip_sum: u32,
    /// The configured source port range.
    ports: hash::PortRange,
}

impl V4Template {
    /// The template for `cfg` and `tunnel_header`, or `None` if `cfg` sends
    /// a computed UDP checksum over IPv4 or its DSCP or ECN is out of range.
    pub(super) fn new(cfg: &TunnelConfig, tunnel_header: &[u8; 8]) -> Option<V4Template> {
        match cfg.udp_checksum {
            UdpChecksumMode::Auto | UdpChecksumMode::Zero => {}
            UdpChecksumMode::Compute => return None,
        }
        // Out of range: the general path reports it.
        let tos = cfg.tos()?;
        let mut bytes = [0u8; V4_HEADROOM];
        let (eth, rest) = bytes.split_at_mut(ethernet::HEADER_LEN);
        let (ip, rest) = rest.split_at_mut(ipv4::HEADER_LEN);
        let (udp, tunnel) = rest.split_at_mut(udp::HEADER_LEN);
        eth[12..14].copy_from_slice(&u16::from(EtherType::Ipv4).to_be_bytes());
        let ver_ihl_tos = 0x4500 | u16::from(tos);
        let flags: u16 = if cfg.dont_fragment { 0x4000 } else { 0 };
        let ttl_protocol = (u16::from(cfg.ttl) << 8) | u16::from(u8::from(IpProtocol::Udp));
        ip[0..2].copy_from_slice(&ver_ihl_tos.to_be_bytes());
        ip[6..8].copy_from_slice(&flags.to_be_bytes());
        ip[8..10].copy_from_slice(&ttl_protocol.to_be_bytes());
        udp[2..4].copy_from_slice(&cfg.dst_port.to_be_bytes());
        tunnel.copy_from_slice(tunnel_header);
        Some(V4Template {
            bytes,
            ip_sum: u32::from(ver_ihl_tos) + u32::from(flags) + u32::from(ttl_protocol),
            ports: hash::PortRange::new(&cfg.src_port_range),
        })
    }
}

/// [`encapsulate_udp`] for the configuration `template` was built for, at
/// fixed offsets: `None` (nothing written) unless the outer addresses are
/// both IPv4, there is no VLAN tag, the headroom and the inner frame fit
/// the buffer, and the inner frame holds an Ethernet header and fits the
/// 16-bit length fields. The caller then takes the general path, which
/// writes the same bytes or returns the error.
///
/// `ANY_INNER` false inlines the flow hash of the common inner frame
/// (untagged IPv4) and hands any other to the `true` instance, out of line,
/// so that the common case calls nothing and keeps its values in registers.
#[inline(always)]
pub(super) fn encapsulate_v4_fast<const ANY_INNER: bool>(
    template: &V4Template,
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    outer: &OuterParams,
) -> Option<Range<usize>> {
    /// IPv4 total length = this + inner frame.
    const IP_OVERHEAD: usize = V4_HEADROOM - ethernet::HEADER_LEN;
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (outer.src_ip, outer.dst_ip) else {
        return None;
    };
    if outer.vlan.is_some()
        || !(ethernet::HEADER_LEN..=usize::from(u16::MAX) - IP_OVERHEAD).contains(&inner_len)
    {
        return None;
    }
    let start = inner_start.checked_sub(V4_HEADROOM)?;
    let end = inner_start.checked_add(inner_len)?;
    let (head, inner) = buf
        .get_mut(start..end)?
        .split_first_chunk_mut::<V4_HEADROOM>()?;
    let hash = if ANY_INNER {
        flow_hash(inner)
    } else {
        match hash::flow_hash_ipv4(inner) {
            Some(hash) => hash,
            None => {
                return encapsulate_v4_fast_any_inner(template, buf, inner_start, inner_len, outer);
            }
        }
    };
    let src_port = template.ports.port(hash);

    // The bound on inner_len above keeps both lengths within 16 bits.
    let ip_total = (IP_OVERHEAD + inner_len) as u16;
    let udp_len = ip_total - ipv4::HEADER_LEN as u16;
    let (s, d) = (u32::from(src), u32::from(dst));
    let sum = template.ip_sum
        + u32::from(ip_total)
        + u32::from(outer.ipv4_ident)
        + (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff);
    // At most 10 words of 16 bits: two folds reach 16 bits.
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);

    *head = template.bytes;
    head[0..6].copy_from_slice(&outer.dst_mac.octets());
    head[6..12].copy_from_slice(&outer.src_mac.octets());
    head[16..18].copy_from_slice(&ip_total.to_be_bytes());
    head[18..20].copy_from_slice(&outer.ipv4_ident.to_be_bytes());
    head[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    head[26..30].copy_from_slice(&src.octets());
    head[30..34].copy_from_slice(&dst.octets());
    head[34..36].copy_from_slice(&src_port.to_be_bytes());
    head[38..40].copy_from_slice(&udp_len.to_be_bytes());
    Some(start..end)
}

/// [`encapsulate_v4_fast`] for inner frames other than untagged IPv4.
#[inline(never)]
fn encapsulate_v4_fast_any_inner(
    template: &V4Template,
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    outer: &OuterParams,
) -> Option<Range<usize>> {
    encapsulate_v4_fast::<true>(template, buf, inner_start, inner_len, outer)
}

/// Headroom of a UDP-based encapsulation with a tunnel header of `len` bytes.
#[inline(always)]
pub(super) fn udp_headroom(outer: &OuterParams, tunnel_header_len: usize) -> usize {
    outer.eth_header_len() + outer.ip_header_len() + udp::HEADER_LEN + tunnel_header_len
}

#[cfg(test)]
mod tests {
    use super::super::FlowLabel;
    use super::super::tests::{outer_v4, outer_v6};
    use super::*;

    #[test]
    fn ipv6_flow_label_follows_the_configured_policy() {
        let inner = [0x5au8; 60];
        let label = |policy| {
            let cfg = TunnelConfig::new(4789).with_ipv6_flow_label(policy);
            let mut buf = [0u8; 130];
            buf[70..].copy_from_slice(&inner);
            encapsulate_udp(&cfg, &[0; 8], &mut buf, 70, 60, &outer_v6()).unwrap();
            ipv6::Packet::new_checked(&buf[14..]).unwrap().flow_label()
        };
        assert_eq!(label(FlowLabel::Fixed(0)), 0);
        assert_eq!(label(FlowLabel::Fixed(0xabcde)), 0xabcde);
        assert_eq!(
            label(FlowLabel::FromFlowHash),
            FlowLabel::FromFlowHash.value(flow_hash(&inner))
        );
    }

    #[test]
    fn mixed_address_families_are_refused() {
        let mut outer = outer_v4();
        outer.dst_ip = outer_v6().dst_ip;
        let mut buf = [0u8; 200];
        let err = encapsulate_udp(&TunnelConfig::new(4789), &[0; 8], &mut buf, 100, 50, &outer);
        assert!(matches!(err, Err(EncapError::AddressFamilyMismatch { .. })));
    }

    #[test]
    fn short_headroom_and_out_of_bounds_inner_are_refused_without_writing() {
        let mut buf = [0u8; 200];
        assert_eq!(
            encapsulate_udp(
                &TunnelConfig::new(4789),
                &[0; 8],
                &mut buf,
                49,
                50,
                &outer_v4()
            ),
            Err(EncapError::NotEnoughHeadroom {
                needed: 50,
                available: 49
            })
        );
        assert_eq!(
            encapsulate_udp(
                &TunnelConfig::new(4789),
                &[0; 8],
                &mut buf,
                50,
                151,
                &outer_v4()
            ),
            Err(EncapError::InnerOutOfBounds {
                start: 50,
                end: 201,
                buf_len: 200
            })
        );
        assert_eq!(
            encapsulate_udp(
                &TunnelConfig::new(4789),
                &[0; 8],
                &mut buf,
                50,
                usize::MAX,
                &outer_v4()
            ),
            Err(EncapError::InnerOutOfBounds {
                start: 50,
                end: usize::MAX,
                buf_len: 200
            })
        );
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn oversized_inner_frames_are_refused() {
        let mut buf = vec![0u8; 70_000];
        assert_eq!(
            encapsulate_udp(
                &TunnelConfig::new(4789),
                &[0; 8],
                &mut buf,
                50,
                65_520,
                &outer_v4()
            ),
            Err(EncapError::TooLong {
                layer: Layer::Udp,
                len: 65_536
            })
        );
        assert_eq!(
            encapsulate_udp(
                &TunnelConfig::new(4789),
                &[0; 8],
                &mut buf,
                50,
                65_500,
                &outer_v4()
            ),
            Err(EncapError::TooLong {
                layer: Layer::Ipv4,
                len: 65_536
            })
        );
    }

    #[test]
    fn fixed_flow_label_wider_than_20_bits_is_refused_without_writing() {
        let cfg = TunnelConfig::new(4789).with_ipv6_flow_label(FlowLabel::Fixed(0x10_0000));
        let mut buf = [0xeeu8; 130];
        assert_eq!(
            encapsulate_udp(&cfg, &[0; 8], &mut buf, 70, 60, &outer_v6()),
            Err(EncapError::Header(WireError::ValueOutOfRange {
                layer: Layer::Ipv6,
                field: "flow_label",
                value: 0x10_0000,
                max: 0xf_ffff
            }))
        );
        assert!(buf.iter().all(|&b| b == 0xee), "nothing written");
        // Over IPv4 the IPv6 flow label plays no part.
        assert!(encapsulate_udp(&cfg, &[0; 8], &mut buf, 70, 60, &outer_v4()).is_ok());
    }
}
