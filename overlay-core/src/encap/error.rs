//! Why encapsulation or decapsulation failed.

use std::net::IpAddr;

#[cfg(doc)]
use super::FlowLabel;
use crate::wire::ethernet::EtherType;
use crate::wire::{IpProtocol, Layer, WireError};

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
