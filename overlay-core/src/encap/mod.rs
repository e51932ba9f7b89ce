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

mod config;
mod decapsulated;
mod emit;
mod error;
mod geneve;
mod hash;
mod outer;
mod vxlan;

use std::ops::Range;

pub use config::{FlowLabel, OuterParams, TunnelConfig, UdpChecksumMode};
pub use decapsulated::{Decapsulated, GeneveHeader, OuterHeaders, OuterIp, TunnelHeader};
pub use error::{DecapError, EncapError};
pub use geneve::GeneveEncap;
pub use hash::{flow_hash, source_port};
pub use vxlan::VxlanEncap;

use decapsulated::TunnelKind;
use emit::{V4Template, check_inner_len, encapsulate_udp, encapsulate_v4_fast, udp_headroom};
use outer::parse_outer;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::MacAddr;
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
}
