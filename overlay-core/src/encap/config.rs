//! Outer addressing and the UDP/IP settings of a tunnel.

use std::net::IpAddr;
use std::ops::RangeInclusive;

#[cfg(doc)]
use super::{EncapError, Encapsulation, flow_hash};
use crate::MacAddr;
use crate::wire::ethernet::{self, VlanTag};
use crate::wire::{ipv4, ipv6, udp};

/// Per-packet (per-peer) outer addressing.
///
/// ```
/// use std::net::Ipv6Addr;
/// use overlay_core::MacAddr;
/// use overlay_core::encap::OuterParams;
/// use overlay_core::wire::ethernet::VlanTag;
///
/// let outer = OuterParams::new(
///     MacAddr::new([0x02, 0, 0, 0, 0, 1]),
///     MacAddr::new([0x02, 0, 0, 0, 0, 2]),
///     "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
///     "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
/// )
/// .with_vlan(VlanTag::new(0, false, 10).unwrap());
/// assert!(outer.vlan.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OuterParams {
    /// Outer source MAC (the local underlay interface).
    pub src_mac: MacAddr,
    /// Outer destination MAC (the next hop towards the peer).
    pub dst_mac: MacAddr,
    /// Optional 802.1Q tag on the outer frame.
    pub vlan: Option<VlanTag>,
    /// Outer source IP (the local underlay address).
    pub src_ip: IpAddr,
    /// Outer destination IP (the peer's underlay address); same family as
    /// `src_ip`.
    pub dst_ip: IpAddr,
    /// IPv4 identification field. Zero by default, which RFC 6864 permits
    /// for atomic (DF) datagrams; set it per packet when DF is off.
    pub ipv4_ident: u16,
}

impl OuterParams {
    /// Outer addressing without VLAN tag and with IPv4 identification 0.
    #[inline(always)]
    pub fn new(src_mac: MacAddr, dst_mac: MacAddr, src_ip: IpAddr, dst_ip: IpAddr) -> Self {
        OuterParams {
            src_mac,
            dst_mac,
            vlan: None,
            src_ip,
            dst_ip,
            ipv4_ident: 0,
        }
    }

    /// Adds an 802.1Q tag to the outer frame.
    #[inline(always)]
    pub fn with_vlan(mut self, tag: VlanTag) -> Self {
        self.vlan = Some(tag);
        self
    }

    /// Sets the IPv4 identification.
    #[inline(always)]
    pub fn with_ipv4_ident(mut self, ident: u16) -> Self {
        self.ipv4_ident = ident;
        self
    }

    #[inline(always)]
    pub(super) fn ip_header_len(&self) -> usize {
        match self.src_ip {
            IpAddr::V4(_) => ipv4::HEADER_LEN,
            IpAddr::V6(_) => ipv6::HEADER_LEN,
        }
    }

    #[inline(always)]
    pub(super) fn eth_header_len(&self) -> usize {
        if self.vlan.is_some() {
            ethernet::TAGGED_HEADER_LEN
        } else {
            ethernet::HEADER_LEN
        }
    }
}

/// Which outer UDP checksum encapsulation writes.
///
/// ```
/// use overlay_core::encap::{TunnelConfig, UdpChecksumMode};
/// // The default: zero over IPv4 (RFC 7348 section 5), computed over IPv6.
/// assert_eq!(TunnelConfig::new(4789).udp_checksum, UdpChecksumMode::Auto);
/// // What a Linux VXLAN device created without `noudpcsum` sends.
/// let like_the_kernel = TunnelConfig::new(4789).with_udp_checksum(UdpChecksumMode::Compute);
/// # let _ = like_the_kernel;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum UdpChecksumMode {
    /// Zero over IPv4, computed over IPv6: what RFC 7348 section 5
    /// recommends for VXLAN over IPv4 and what RFC 8200 requires over IPv6.
    /// Over IPv4 this differs from a Linux VXLAN device's default (`udpcsum`,
    /// see the [module docs](super)); over IPv6 it matches Linux's
    /// `noudp6zerocsumtx`.
    #[default]
    Auto,
    /// Always computed. Reads every byte of the inner frame. What a Linux
    /// VXLAN device created without `noudpcsum` sends.
    Compute,
    /// Always zero. Over IPv6 only for receivers that accept it
    /// (RFC 6935/6936; Linux `udp6zerocsumrx`).
    Zero,
}

/// The flow label of an outer IPv6 header.
///
/// ```
/// use overlay_core::encap::FlowLabel;
/// assert_eq!(FlowLabel::Fixed(0x12345).value(0xdead_beef), 0x12345);
/// assert_eq!(FlowLabel::FromFlowHash.value(0xdead_beef), 0xdbeef);
/// // A hash whose low 20 bits are zero still yields a non-zero label.
/// assert_ne!(FlowLabel::FromFlowHash.value(0x0010_0000), 0);
/// // A fixed label wider than 20 bits is not cut: encapsulation refuses it.
/// assert_eq!(FlowLabel::Fixed(0x10_0000).value(0), 0x10_0000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlowLabel {
    /// A fixed label, at most [`ipv6::MAX_FLOW_LABEL`] (20 bits);
    /// [`Encapsulation::encapsulate`] refuses a wider one with
    /// [`EncapError::Header`] rather than cut it. Linux's default is 0.
    Fixed(u32),
    /// The low 20 bits of the inner [`flow_hash`], never 0, so that IPv6
    /// routers that balance on the flow label spread tunnelled flows like
    /// the UDP source port does (RFC 6438).
    FromFlowHash,
}

impl FlowLabel {
    /// The label for a packet whose inner flow hashes to `hash`: the fixed
    /// label as given, or 20 bits of the hash.
    #[inline(always)]
    pub fn value(self, hash: u32) -> u32 {
        match self {
            FlowLabel::Fixed(label) => label,
            // RFC 6437: 0 means "no label", so map it to 1.
            FlowLabel::FromFlowHash => (hash & 0x000f_ffff).max(1),
        }
    }
}

/// Outer UDP/IP settings shared by the UDP-based encapsulations.
///
/// ```
/// use overlay_core::encap::{TunnelConfig, UdpChecksumMode};
/// let cfg = TunnelConfig::new(4789).with_ttl(32).with_udp_checksum(UdpChecksumMode::Compute);
/// assert_eq!(cfg.dst_port, 4789);
/// assert_eq!(cfg.src_port_range, 49152..=65535);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TunnelConfig {
    /// UDP destination port written, and required on receipt.
    pub dst_port: u16,
    /// Range the flow-hashed UDP source port is mapped into. Defaults to the
    /// IANA dynamic range 49152..=65535 (RFC 7348 section 5 recommends it;
    /// Linux uses its `ip_local_port_range` unless `srcport` is set).
    pub src_port_range: RangeInclusive<u16>,
    /// Outer UDP checksum on transmission.
    pub udp_checksum: UdpChecksumMode,
    /// Outer IPv4 TTL / IPv6 hop limit (default 64).
    pub ttl: u8,
    /// Outer IPv4 don't-fragment bit (default set: the overlay MTU is sized so
    /// that tunnel packets never need fragmenting).
    pub dont_fragment: bool,
    /// Outer DSCP (6 bits; default 0): in the IPv4 TOS byte and the IPv6
    /// traffic class alike, as [`ipv4::Repr::dscp`] and
    /// [`ipv6::Repr::dscp`]. Encapsulation refuses a value above
    /// [`ipv4::MAX_DSCP`] with [`EncapError::Header`].
    pub dscp: u8,
    /// Outer ECN codepoint (2 bits; default 0), as [`ipv4::Repr::ecn`] and
    /// [`ipv6::Repr::ecn`]; above [`ipv4::MAX_ECN`] is refused.
    pub ecn: u8,
    /// Outer IPv6 flow label (default [`FlowLabel::Fixed`]`(0)`, like Linux).
    pub ipv6_flow_label: FlowLabel,
    /// Whether received non-zero UDP checksums are verified (default yes).
    pub verify_udp_checksum: bool,
    /// Whether received zero UDP checksums over IPv6 are accepted (default
    /// no; RFC 6935/6936 tunnel exception, Linux `udp6zerocsumrx`).
    pub allow_zero_udp_checksum_ipv6: bool,
}

impl TunnelConfig {
    /// Defaults for the given UDP destination port.
    #[inline(always)]
    pub fn new(dst_port: u16) -> Self {
        TunnelConfig {
            dst_port,
            src_port_range: 49152..=65535,
            udp_checksum: UdpChecksumMode::Auto,
            ttl: 64,
            dont_fragment: true,
            dscp: 0,
            ecn: 0,
            ipv6_flow_label: FlowLabel::Fixed(0),
            verify_udp_checksum: true,
            allow_zero_udp_checksum_ipv6: false,
        }
    }

    /// Sets the UDP destination port.
    #[inline(always)]
    pub fn with_dst_port(mut self, port: u16) -> Self {
        self.dst_port = port;
        self
    }

    /// Sets the source port range.
    #[inline(always)]
    pub fn with_src_port_range(mut self, range: RangeInclusive<u16>) -> Self {
        self.src_port_range = range;
        self
    }

    /// Sets the UDP checksum mode for transmission.
    #[inline(always)]
    pub fn with_udp_checksum(mut self, mode: UdpChecksumMode) -> Self {
        self.udp_checksum = mode;
        self
    }

    /// Sets the TTL / hop limit.
    #[inline(always)]
    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the IPv4 don't-fragment bit.
    #[inline(always)]
    pub fn with_dont_fragment(mut self, on: bool) -> Self {
        self.dont_fragment = on;
        self
    }

    /// Sets the outer DSCP and ECN (IPv4 TOS byte, IPv6 traffic class).
    ///
    /// ```
    /// use overlay_core::encap::TunnelConfig;
    /// let cfg = TunnelConfig::new(4789).with_dscp_ecn(46, 0); // EF
    /// assert_eq!((cfg.dscp, cfg.ecn), (46, 0));
    /// ```
    #[inline(always)]
    pub fn with_dscp_ecn(mut self, dscp: u8, ecn: u8) -> Self {
        self.dscp = dscp;
        self.ecn = ecn;
        self
    }

    /// The TOS byte / traffic class the DSCP and ECN make up; `None` if
    /// either is out of range.
    #[inline(always)]
    pub(super) fn tos(&self) -> Option<u8> {
        (self.dscp <= ipv4::MAX_DSCP && self.ecn <= ipv4::MAX_ECN)
            .then_some((self.dscp << 2) | self.ecn)
    }

    /// Sets the outer IPv6 flow label policy.
    #[inline(always)]
    pub fn with_ipv6_flow_label(mut self, label: FlowLabel) -> Self {
        self.ipv6_flow_label = label;
        self
    }

    /// Sets whether received UDP checksums are verified.
    #[inline(always)]
    pub fn with_verify_udp_checksum(mut self, on: bool) -> Self {
        self.verify_udp_checksum = on;
        self
    }

    /// Sets whether zero UDP checksums over IPv6 are accepted on receipt.
    #[inline(always)]
    pub fn with_allow_zero_udp_checksum_ipv6(mut self, on: bool) -> Self {
        self.allow_zero_udp_checksum_ipv6 = on;
        self
    }

    #[inline(always)]
    pub(super) fn udp_parse_options(&self) -> udp::ParseOptions {
        udp::ParseOptions::default()
            .verify_checksum(self.verify_udp_checksum)
            .allow_zero_checksum_ipv6(self.allow_zero_udp_checksum_ipv6)
    }
}
