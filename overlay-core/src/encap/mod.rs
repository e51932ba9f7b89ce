//! Encapsulation of Ethernet frames in UDP tunnels, in place and zero-copy.
//!
//! An [`Encapsulation`] writes the outer Ethernet, IP (v4 or v6), UDP and
//! tunnel headers into the *headroom* in front of an inner Ethernet frame that
//! already sits in a caller-owned buffer, and parses them back off a received
//! packet, returning the inner frame as a sub-slice. The inner frame is never
//! copied; encapsulation reads only the few header bytes that
//! [`flow_hash`] needs — unless the UDP checksum is enabled, which by nature
//! sums every byte. That is why the defaults ([`UdpChecksumMode::Auto`]) send
//! a zero UDP checksum over IPv4, as RFC 7348 section 5 recommends for VXLAN,
//! and a computed one over IPv6, where RFC 8200 requires it.
//!
//! This is **not** what a Linux VXLAN device does by default: one created
//! without `noudpcsum` (current iproute2 sends no checksum attribute, so the
//! kernel's default applies) reports `udpcsum` in `ip -d link show` and
//! sends computed checksums over IPv4 too, which it usually hands to the NIC
//! to compute. The two interoperate either way: over IPv4 a zero checksum
//! means "none" (RFC 768) and every receiver, Linux's included, accepts it,
//! while decapsulation here verifies any non-zero checksum it receives. Set
//! [`UdpChecksumMode::Compute`] to send what the kernel sends.
//!
//! Encapsulation refuses an inner Ethernet frame shorter than an Ethernet
//! header ([`EncapError::InnerFrameTooShort`]), which no receiver would
//! accept. The common configuration (IPv4 underlay, no VLAN tag, zero UDP
//! checksum) is written from a template at fixed offsets; every other goes
//! through the general, field-by-field path, which writes the same bytes.
//!
//! Decapsulation validates every outer header (lengths, versions, the IPv4
//! header checksum, the UDP checksum as configured, the UDP destination port,
//! no outer IPv4 fragments, the tunnel header) and refuses an inner Ethernet
//! frame shorter than an Ethernet header ([`DecapError::InnerFrameTooShort`];
//! the kernel drops those too), without allocating, and never panics. Its
//! result, [`Decapsulated`], records where each header is and reads fields
//! from the validated bytes on demand.
//!
//! Implementations: [`VxlanEncap`] (RFC 7348, with VXLAN-GBP) and
//! [`GeneveEncap`] (RFC 8926, with options). Further encapsulations implement
//! the same trait.
//!
//! # Example
//!
//! ```
//! use std::net::Ipv4Addr;
//! use overlay_core::MacAddr;
//! use overlay_core::encap::{Encapsulation, OuterParams, TunnelHeader, VxlanEncap};
//! use overlay_core::wire::Vni;
//!
//! let vxlan = VxlanEncap::new(Vni::new(42).unwrap());
//! let outer = OuterParams::new(
//!     MacAddr::new([0x02, 0, 0, 0, 0, 1]),
//!     MacAddr::new([0x02, 0, 0, 0, 0, 2]),
//!     Ipv4Addr::new(192, 0, 2, 1).into(),
//!     Ipv4Addr::new(192, 0, 2, 2).into(),
//! );
//!
//! // The caller receives the inner frame at `headroom` bytes into its buffer.
//! let headroom = vxlan.headroom(&outer);
//! assert_eq!(headroom, 50);
//! let inner = [0xabu8; 60];
//! let mut buf = vec![0u8; headroom + inner.len()];
//! buf[headroom..].copy_from_slice(&inner);
//!
//! let packet = vxlan.encapsulate(&mut buf, headroom, inner.len(), &outer).unwrap();
//! assert_eq!(packet, 0..110);
//!
//! let decap = vxlan.decapsulate(&buf[packet]).unwrap();
//! assert_eq!(decap.inner(), &inner[..]);
//! assert_eq!(decap.outer().ip.dst_addr(), outer.dst_ip);
//! assert!(matches!(decap.tunnel(), TunnelHeader::Vxlan(h) if h.vni.get() == 42));
//! ```

mod geneve;
mod hash;
mod vxlan;

use std::net::IpAddr;
use std::ops::{Range, RangeInclusive};

pub use geneve::GeneveEncap;
pub use hash::{flow_hash, source_port};
pub use vxlan::VxlanEncap;

use crate::MacAddr;
use crate::wire::ethernet::{self, EtherType, VlanTag};
use crate::wire::{
    IpProtocol, Layer, Vni, WireError, checksum, geneve as geneve_wire, ipv4, ipv6, udp,
};

/// A tunnel encapsulation that works in place on caller-owned buffers.
///
/// Implementations must never panic in [`decapsulate`](Self::decapsulate),
/// whatever the input, and must not copy or modify the inner frame in
/// [`encapsulate`](Self::encapsulate).
pub trait Encapsulation {
    /// Bytes needed in front of the inner frame for all outer headers.
    fn headroom(&self, outer: &OuterParams) -> usize;

    /// Writes the outer headers into `buf[inner_start - headroom..inner_start]`
    /// for the inner Ethernet frame at `buf[inner_start..inner_start + inner_len]`,
    /// and returns the range of `buf` that holds the complete packet.
    ///
    /// Bytes of `buf` outside the returned range are not touched, and neither
    /// are the inner frame's bytes. On error nothing is written.
    fn encapsulate(
        &self,
        buf: &mut [u8],
        inner_start: usize,
        inner_len: usize,
        outer: &OuterParams,
    ) -> Result<Range<usize>, EncapError>;

    /// Parses and validates the outer headers of a received packet (starting
    /// at its Ethernet header) and returns them with the inner frame as a
    /// sub-slice of `packet`.
    fn decapsulate<'a>(&self, packet: &'a [u8]) -> Result<Decapsulated<'a>, DecapError>;
}

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
    fn ip_header_len(&self) -> usize {
        match self.src_ip {
            IpAddr::V4(_) => ipv4::HEADER_LEN,
            IpAddr::V6(_) => ipv6::HEADER_LEN,
        }
    }

    #[inline(always)]
    fn eth_header_len(&self) -> usize {
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
    /// see the [module docs](self)); over IPv6 it matches Linux's
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
    fn tos(&self) -> Option<u8> {
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
    fn udp_parse_options(&self) -> udp::ParseOptions {
        udp::ParseOptions::default()
            .verify_checksum(self.verify_udp_checksum)
            .allow_zero_checksum_ipv6(self.allow_zero_udp_checksum_ipv6)
    }
}

/// Why a frame could not be encapsulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncapError {
    /// The inner frame starts too early in the buffer for the outer headers.
    #[error(
        "not enough headroom: outer headers need {needed} bytes, inner frame starts at {available}"
    )]
    NotEnoughHeadroom {
        /// Headroom the outer headers need.
        needed: usize,
        /// Offset of the inner frame, i.e. the headroom available.
        available: usize,
    },
    /// `inner_start + inner_len` runs past the end of the buffer.
    #[error("inner frame {start}..{end} runs past the buffer of {buf_len} bytes")]
    InnerOutOfBounds {
        /// Start of the inner frame.
        start: usize,
        /// End of the inner frame.
        end: usize,
        /// Buffer length.
        buf_len: usize,
    },
    /// Source and destination IP are of different families.
    #[error("outer source {src} and destination {dst} are of different IP families")]
    AddressFamilyMismatch {
        /// Source address.
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
    },
    /// The encapsulated packet would exceed the 16-bit IP/UDP length fields.
    #[error("encapsulated packet too long: {len} bytes of {layer} length, maximum 65535")]
    TooLong {
        /// Layer whose length field overflows.
        layer: Layer,
        /// The length that does not fit.
        len: usize,
    },
    /// A configured outer header field does not fit its wire field (for
    /// example a [`FlowLabel::Fixed`] wider than 20 bits). Nothing is written.
    #[error("outer header: {0}")]
    Header(#[from] WireError),
    /// The tunnel carries an Ethernet frame (VXLAN always, Geneve with
    /// protocol type `0x6558`) and the inner frame is shorter than an
    /// Ethernet header (14 bytes). Decapsulation refuses such packets
    /// ([`DecapError::InnerFrameTooShort`]), and so does the Linux kernel,
    /// so none is sent. Nothing is written.
    #[error("inner Ethernet frame is {len} bytes, shorter than the 14-byte Ethernet header")]
    InnerFrameTooShort {
        /// Length of the inner frame (0 to 13).
        len: usize,
    },
}

/// Why a packet could not be decapsulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecapError {
    /// A header is malformed. `error` names the layer and the offset within
    /// that header; `offset` is where that header starts in the packet.
    #[error("header at byte {offset} of the packet: {error}")]
    Wire {
        /// Offset of the malformed header from the start of the packet.
        offset: usize,
        /// What is wrong with it.
        error: WireError,
    },
    /// The outer frame carries neither IPv4 nor IPv6.
    #[error("outer frame carries EtherType {0}, not IPv4 or IPv6")]
    NotIp(EtherType),
    /// The outer IP packet is not UDP (IPv6 extension headers are not
    /// supported either).
    #[error("outer IP packet carries {0}, not UDP")]
    NotUdp(IpProtocol),
    /// The outer IPv4 packet is a fragment; reassemble first.
    #[error("outer IPv4 packet is a fragment (offset {offset} x 8 bytes, more fragments: {more})")]
    Fragmented {
        /// Fragment offset in 8-byte units.
        offset: u16,
        /// More-fragments flag.
        more: bool,
    },
    /// The UDP destination port is not the one configured.
    #[error("UDP destination port {got} is not the tunnel port {expected}")]
    UnexpectedPort {
        /// Configured port.
        expected: u16,
        /// Port found.
        got: u16,
    },
    /// The tunnel carries an Ethernet frame (VXLAN always, Geneve with
    /// protocol type `0x6558`) shorter than an Ethernet header (14 bytes).
    /// The Linux kernel drops such packets too.
    #[error(
        "inner Ethernet frame at byte {offset} of the packet is {len} bytes, shorter than the 14-byte Ethernet header"
    )]
    InnerFrameTooShort {
        /// Offset of the inner frame from the start of the packet.
        offset: usize,
        /// Length of the inner frame (0 to 13).
        len: usize,
    },
}

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
enum TunnelKind {
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
    packet: &'a [u8],
    ip_offset: usize,
    udp_offset: usize,
    ipv6: bool,
    udp_checksum_verified: bool,
    kind: TunnelKind,
    inner_offset: usize,
    inner: &'a [u8],
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

/// Where the outer layers are, as [`parse_outer`] found them.
#[derive(Debug)]
pub(super) struct Located<'a> {
    ip_offset: usize,
    udp_offset: usize,
    ipv6: bool,
    /// Whether a non-zero UDP checksum was verified.
    udp_checksum_verified: bool,
    /// The UDP payload (tunnel header and inner frame), bounded by the UDP
    /// length.
    udp_payload: &'a [u8],
}

impl<'a> Located<'a> {
    /// Wraps a [`WireError`] of the tunnel header.
    fn tunnel_error(&self) -> impl FnOnce(WireError) -> DecapError {
        at(self.udp_offset + udp::HEADER_LEN)
    }

    /// Completes a [`Decapsulated`] once the tunnel header is validated,
    /// refusing an Ethernet payload shorter than an Ethernet header. Both
    /// [`parse_outer`] paths end here, so neither can let one through.
    #[inline(always)]
    fn finish(
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
fn parse_outer<'a>(
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

/// Writes outer Ethernet/IP/UDP plus the pre-encoded `tunnel_header` in
/// front of the inner frame. Shared by every UDP-based encapsulation.
fn encapsulate_udp(
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
fn check_inner_len(inner_len: usize, ethernet_payload: bool) -> Result<(), EncapError> {
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
fn encapsulate_v4_fast<const ANY_INNER: bool>(
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
fn udp_headroom(outer: &OuterParams, tunnel_header_len: usize) -> usize {
    outer.eth_header_len() + outer.ip_header_len() + udp::HEADER_LEN + tunnel_header_len
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) fn outer_v4() -> OuterParams {
        OuterParams::new(
            MacAddr::new([0x02, 0, 0, 0, 0, 1]),
            MacAddr::new([0x02, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv4Addr::new(192, 0, 2, 2).into(),
        )
    }

    pub(crate) fn outer_v6() -> OuterParams {
        OuterParams::new(
            MacAddr::new([0x02, 0, 0, 0, 0, 1]),
            MacAddr::new([0x02, 0, 0, 0, 0, 2]),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
        )
    }

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
