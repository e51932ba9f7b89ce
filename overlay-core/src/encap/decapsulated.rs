//! The result of decapsulation: a validated packet read on demand.

use std::net::IpAddr;

#[cfg(doc)]
use super::{Encapsulation, TunnelConfig};
use crate::wire::ethernet::{self, EtherType};
use crate::wire::{Vni, geneve as geneve_wire, ipv4, ipv6, udp};

/// The outer IP header of a decapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OuterIp {
    /// IPv4 outer header.
    V4(ipv4::Repr),
    /// IPv6 outer header.
    V6(ipv6::Repr),
}

impl OuterIp {
    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> IpAddr {
        match self {
            OuterIp::V4(r) => r.src_addr.into(),
            OuterIp::V6(r) => r.src_addr.into(),
        }
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            OuterIp::V4(r) => r.dst_addr.into(),
            OuterIp::V6(r) => r.dst_addr.into(),
        }
    }

    /// TTL (IPv4) or hop limit (IPv6).
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        match self {
            OuterIp::V4(r) => r.ttl,
            OuterIp::V6(r) => r.hop_limit,
        }
    }
}

/// The parsed outer Ethernet, IP and UDP headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OuterHeaders {
    /// Outer Ethernet header (addresses and VLAN tag).
    pub ethernet: ethernet::Repr,
    /// Outer IP header.
    pub ip: OuterIp,
    /// Outer UDP header (ports).
    pub udp: udp::Repr,
}

/// A Geneve header as decapsulation returns it: options stay borrowed.
#[derive(Debug, Clone)]
pub struct GeneveHeader<'a> {
    /// O bit.
    pub oam: bool,
    /// C bit as received.
    pub critical: bool,
    /// Protocol type of the payload (`0x6558` for Ethernet).
    pub protocol_type: EtherType,
    /// The virtual network identifier.
    pub vni: Vni,
    /// The options, already validated: the iterator yields no errors.
    pub options: geneve_wire::Options<'a>,
}

/// The tunnel header of a decapsulated packet.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TunnelHeader<'a> {
    /// A VXLAN header.
    Vxlan(crate::wire::vxlan::Repr),
    /// A Geneve header.
    Geneve(GeneveHeader<'a>),
}

impl TunnelHeader<'_> {
    /// The VNI of either header.
    #[inline(always)]
    pub fn vni(&self) -> Vni {
        match self {
            TunnelHeader::Vxlan(h) => h.vni,
            TunnelHeader::Geneve(h) => h.vni,
        }
    }
}

/// Which tunnel header a [`Decapsulated`] packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TunnelKind {
    Vxlan,
    Geneve,
}

/// The result of [`Encapsulation::decapsulate`]: a validated packet with its
/// inner frame located.
///
/// Everything is read through accessor methods. Decapsulation only
/// validates and records offsets; the outer fields are read on demand
/// ([`outer`](Self::outer), [`tunnel`](Self::tunnel), [`vni`](Self::vni),
/// [`gbp`](Self::gbp), ...). They read bytes that decapsulation already
/// checked, so they are cheap and cannot fail, and a caller that needs only
/// the VNI and the inner frame pays for nothing else.
///
/// Offsets count from the start of [`packet`](Self::packet), the buffer
/// given to [`decapsulate`](Encapsulation::decapsulate).
///
/// ```
/// use overlay_core::encap::{Encapsulation, OuterParams, VxlanEncap};
/// use overlay_core::wire::{Vni, vxlan::Gbp};
/// use overlay_core::MacAddr;
///
/// let gbp = Gbp { dont_learn: true, policy_applied: false, group_policy_id: 300 };
/// let vxlan = VxlanEncap::new(Vni::new(7).unwrap()).with_gbp(gbp);
/// let outer = OuterParams::new(MacAddr::ZERO, MacAddr::BROADCAST,
///     "192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
/// let mut buf = vec![0u8; 50 + 60];
/// let range = vxlan.encapsulate(&mut buf, 50, 60, &outer).unwrap();
///
/// let d = vxlan.decapsulate(&buf[range]).unwrap();
/// assert_eq!(d.vni(), Vni::new(7).unwrap());
/// assert_eq!(d.gbp(), Some(gbp));
/// assert_eq!((d.inner_offset(), d.inner().len()), (50, 60));
/// // IPv4 default: a zero UDP checksum, so none present and none verified.
/// assert!(!d.udp_checksum_present() && !d.udp_checksum_verified());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Decapsulated<'a> {
    pub(super) packet: &'a [u8],
    pub(super) ip_offset: usize,
    pub(super) udp_offset: usize,
    pub(super) ipv6: bool,
    pub(super) udp_checksum_verified: bool,
    pub(super) kind: TunnelKind,
    pub(super) inner_offset: usize,
    pub(super) inner: &'a [u8],
}

// The accessors index `packet` at offsets that `decapsulate` validated with
// `check_len` on every layer; the fields are private so that no other offsets
// can be set.
impl<'a> Decapsulated<'a> {
    /// The whole packet that was decapsulated.
    #[inline(always)]
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// The inner frame: a sub-slice of the packet, bounded by the UDP length
    /// (trailing link-layer padding excluded). When it is an Ethernet frame
    /// (always for VXLAN, for Geneve with protocol type `0x6558`) it holds
    /// at least an Ethernet header's 14 bytes.
    #[inline(always)]
    pub fn inner(&self) -> &'a [u8] {
        self.inner
    }

    /// Offset of the inner frame within the packet.
    #[inline(always)]
    pub fn inner_offset(&self) -> usize {
        self.inner_offset
    }

    /// Whether the outer UDP checksum was present (non-zero). A zero
    /// checksum means "none" over IPv4, and over IPv6 where the tunnel
    /// accepts it ([`TunnelConfig::allow_zero_udp_checksum_ipv6`]).
    #[inline(always)]
    pub fn udp_checksum_present(&self) -> bool {
        udp::Packet::new_unchecked(&self.packet[self.udp_offset..]).checksum() != 0
    }

    /// Whether decapsulation verified the outer UDP checksum: it was
    /// present and [`TunnelConfig::verify_udp_checksum`] is on. A checksum
    /// that did not verify is an error, never a `Decapsulated`.
    #[inline(always)]
    pub fn udp_checksum_verified(&self) -> bool {
        self.udp_checksum_verified
    }

    /// The VXLAN group-policy extension (VXLAN-GBP) if the packet is VXLAN
    /// and carries it (the G flag is set): the D and A flags and the group
    /// policy ID. `None` for Geneve and for plain VXLAN.
    #[inline(always)]
    pub fn gbp(&self) -> Option<crate::wire::vxlan::Gbp> {
        match self.kind {
            TunnelKind::Vxlan => {
                let header =
                    crate::wire::vxlan::Packet::new_unchecked(&self.packet[self.tunnel_offset()..]);
                header.gbp_flag().then(|| crate::wire::vxlan::Gbp {
                    dont_learn: header.dont_learn(),
                    policy_applied: header.policy_applied(),
                    group_policy_id: header.group_policy_id(),
                })
            }
            TunnelKind::Geneve => None,
        }
    }

    /// Offset of the outer IP header (14, or 18 with a VLAN tag).
    #[inline(always)]
    pub fn ip_offset(&self) -> usize {
        self.ip_offset
    }

    /// Offset of the outer UDP header.
    #[inline(always)]
    pub fn udp_offset(&self) -> usize {
        self.udp_offset
    }

    /// Offset of the tunnel (VXLAN or Geneve) header.
    #[inline(always)]
    pub fn tunnel_offset(&self) -> usize {
        self.udp_offset + udp::HEADER_LEN
    }

    /// The outer source address, read from the validated header without
    /// building the whole [`OuterIp`] (for hot paths).
    ///
    /// ```
    /// # use overlay_core::encap::{Encapsulation, OuterParams, VxlanEncap};
    /// # use overlay_core::{MacAddr, wire::Vni};
    /// # let vxlan = VxlanEncap::new(Vni::new(7).unwrap());
    /// # let outer = OuterParams::new(MacAddr::new([2, 0, 0, 0, 0, 1]), MacAddr::new([2, 0, 0, 0, 0, 2]),
    /// #     "192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    /// # let mut buf = vec![0u8; vxlan.headroom(&outer) + 60];
    /// # let range = vxlan.encapsulate(&mut buf, vxlan.headroom(&outer), 60, &outer).unwrap();
    /// let d = vxlan.decapsulate(&buf[range]).unwrap();
    /// assert_eq!(d.outer_src_addr(), d.ip().src_addr());
    /// assert_eq!(d.outer_dst_addr(), d.ip().dst_addr());
    /// assert_eq!(d.udp_src_port(), d.udp().src_port);
    /// ```
    #[inline(always)]
    pub fn outer_src_addr(&self) -> IpAddr {
        let bytes = &self.packet[self.ip_offset..];
        if self.ipv6 {
            ipv6::Packet::new_unchecked(bytes).src_addr().into()
        } else {
            ipv4::Packet::new_unchecked(bytes).src_addr().into()
        }
    }

    /// The outer destination address; see [`outer_src_addr`](Self::outer_src_addr).
    #[inline(always)]
    pub fn outer_dst_addr(&self) -> IpAddr {
        let bytes = &self.packet[self.ip_offset..];
        if self.ipv6 {
            ipv6::Packet::new_unchecked(bytes).dst_addr().into()
        } else {
            ipv4::Packet::new_unchecked(bytes).dst_addr().into()
        }
    }

    /// The outer UDP source port (the flow hash of the sender), read from the
    /// validated header.
    #[inline(always)]
    pub fn udp_src_port(&self) -> u16 {
        udp::Packet::new_unchecked(&self.packet[self.udp_offset..]).src_port()
    }

    /// The outer Ethernet header.
    #[inline(always)]
    pub fn ethernet(&self) -> ethernet::Repr {
        ethernet::Repr::read(&ethernet::Packet::new_unchecked(self.packet))
    }

    /// The outer IP header.
    #[inline(always)]
    pub fn ip(&self) -> OuterIp {
        let bytes = &self.packet[self.ip_offset..];
        if self.ipv6 {
            OuterIp::V6(ipv6::Repr::read(&ipv6::Packet::new_unchecked(bytes)))
        } else {
            OuterIp::V4(ipv4::Repr::read(&ipv4::Packet::new_unchecked(bytes)))
        }
    }

    /// The outer UDP header.
    #[inline(always)]
    pub fn udp(&self) -> udp::Repr {
        udp::Repr::read(&udp::Packet::new_unchecked(&self.packet[self.udp_offset..]))
    }

    /// All outer headers.
    #[inline(always)]
    pub fn outer(&self) -> OuterHeaders {
        OuterHeaders {
            ethernet: self.ethernet(),
            ip: self.ip(),
            udp: self.udp(),
        }
    }

    /// The tunnel header; Geneve options stay borrowed from the packet.
    #[inline(always)]
    pub fn tunnel(&self) -> TunnelHeader<'a> {
        let bytes = &self.packet[self.tunnel_offset()..];
        match self.kind {
            TunnelKind::Vxlan => TunnelHeader::Vxlan(crate::wire::vxlan::Repr::read(
                &crate::wire::vxlan::Packet::new_unchecked(bytes),
            )),
            TunnelKind::Geneve => {
                let header = geneve_wire::Packet::new_unchecked(bytes);
                let area =
                    &self.packet[self.tunnel_offset() + geneve_wire::HEADER_LEN..self.inner_offset];
                TunnelHeader::Geneve(GeneveHeader {
                    oam: header.oam(),
                    critical: header.critical(),
                    protocol_type: header.protocol_type(),
                    vni: header.vni(),
                    options: geneve_wire::Options::new(area),
                })
            }
        }
    }

    /// The VNI (the same for VXLAN and Geneve: bytes 4..7 of the header).
    #[inline(always)]
    pub fn vni(&self) -> Vni {
        crate::wire::vxlan::Packet::new_unchecked(&self.packet[self.tunnel_offset()..]).vni()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{outer_v4, outer_v6};
    use super::super::{Encapsulation, GeneveEncap, VxlanEncap};
    use super::*;

    #[test]
    fn single_field_accessors_read_the_outer_addresses_and_source_port() {
        use crate::wire::ethernet::VlanTag;
        // One-port range: the source port is known and differs from the
        // destination port, so reading the wrong field or offset fails.
        const SRC_PORT: u16 = 50_000;
        let vxlan = VxlanEncap::new(Vni::new(7).unwrap());
        let config = vxlan
            .config()
            .clone()
            .with_src_port_range(SRC_PORT..=SRC_PORT);
        let vxlan = vxlan.with_config(config);
        let geneve = GeneveEncap::new(Vni::new(8).unwrap());
        let config = geneve
            .config()
            .clone()
            .with_src_port_range(SRC_PORT..=SRC_PORT);
        let geneve = geneve.with_config(config);
        let tunnels: [&dyn Encapsulation; 2] = [&vxlan, &geneve];
        let vlan = VlanTag::new(0, false, 100).unwrap();
        for tunnel in tunnels {
            for outer in [
                outer_v4(),
                outer_v6(),
                outer_v4().with_vlan(vlan),
                outer_v6().with_vlan(vlan),
            ] {
                let headroom = tunnel.headroom(&outer);
                let mut buf = vec![0x5au8; headroom + 60];
                let range = tunnel.encapsulate(&mut buf, headroom, 60, &outer).unwrap();
                let d = tunnel.decapsulate(&buf[range]).unwrap();
                assert_eq!(d.outer_src_addr(), outer.src_ip, "{outer:?}");
                assert_eq!(d.outer_dst_addr(), outer.dst_ip, "{outer:?}");
                assert_eq!(d.udp_src_port(), SRC_PORT, "{outer:?}");
                assert_ne!(d.udp().dst_port, SRC_PORT);
            }
        }
    }
}
