//! Zero-copy wire codecs for the headers of an overlay packet.
//!
//! Every header module follows the same shape (the one smoltcp made popular):
//!
//! * `Packet<T: AsRef<[u8]>>` is a view over a caller-owned buffer.
//!   [`Packet::new_checked`](ethernet::Packet::new_checked) validates the
//!   lengths the accessors rely on; `new_unchecked` is for emission into a
//!   buffer the caller sized with `Repr::buffer_len`. Setters live in a
//!   separate `impl<T: AsRef<[u8]> + AsMut<[u8]>>` block.
//! * `Repr` is the validated, owned meaning of a header: `parse` reads it from
//!   a checked `Packet`, `buffer_len` says how many bytes `emit` writes, and
//!   `emit` writes it back.
//!
//! # Emitting
//!
//! A `Repr`'s fields are public, so one can be built with values its wire
//! fields cannot hold (an IPv4 DSCP above 63, an IPv6 flow label above 20
//! bits, a payload longer than a 16-bit length field describes, an untagged
//! Ethernet header whose type is the 802.1Q TPID). Every `Repr` therefore has
//! a `check` method that names the offending field, and every `emit` returns
//! `Result<(), WireError>`: it calls `check` and verifies that the buffer
//! holds `buffer_len()` bytes before it writes anything, so a value is never
//! silently cut to fit and a header is either written whole or not at all.
//! `Repr::parse` only produces values that `check` accepts.
//!
//! # Panic contract
//!
//! For every module:
//!
//! * `Packet::new_checked` and `Repr::parse` never panic, whatever the bytes
//!   and their length (including zero). They return a [`WireError`] that names
//!   the layer and what was wrong.
//! * After `check_len` (or `new_checked`) succeeded, no accessor panics.
//! * Accessors on a `Packet` built with `new_unchecked` over a buffer that is
//!   too short may panic; that is the price of not checking lengths twice.
//! * `emit` never panics, whatever the `Repr` and the buffer: it returns
//!   [`WireError::ValueOutOfRange`] (or another error naming the field) for a
//!   value that does not fit, and [`WireError::Truncated`] for a buffer shorter
//!   than `Repr::buffer_len()`.
//!
//! The property tests of each module and the fuzz targets in `fuzz/` check
//! the first two points on arbitrary input.
//!
//! # Layers
//!
//! * [`ethernet`]: Ethernet II with at most one 802.1Q tag.
//! * [`ipv4`] and [`ipv6`]: the outer IP header.
//! * [`udp`]: UDP with checksums over the IPv4 or IPv6 pseudo-header,
//!   computed with [`checksum`].
//! * [`vxlan`]: VXLAN (RFC 7348) with the group-policy extension.
//! * [`geneve`]: Geneve (RFC 8926) with TLV options.

pub mod checksum;
pub mod ethernet;
pub mod geneve;
mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
mod vni;
pub mod vxlan;

use std::fmt;

pub use ip::IpProtocol;
pub use vni::{ParseVniError, Vni, VniError};

/// The protocol layer a [`WireError`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// Ethernet II header (with its optional 802.1Q tag).
    Ethernet,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// UDP header.
    Udp,
    /// VXLAN header.
    Vxlan,
    /// Geneve fixed header.
    Geneve,
    /// Geneve TLV option area.
    GeneveOption,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Udp => "UDP",
            Layer::Vxlan => "VXLAN",
            Layer::Geneve => "Geneve",
            Layer::GeneveOption => "Geneve option",
        })
    }
}

/// What was wrong with a header, and where.
///
/// # Offsets
///
/// Every offset (and every `needed`/`got` length) counts bytes from the
/// start of the buffer given to the parser that returned the error: the
/// buffer of the `Packet` view, which starts at its header (for Geneve
/// options, the Geneve header, as [`geneve::Packet::options`] and
/// [`geneve::Packet::validate`] see them). Errors of
/// [`Encapsulation::decapsulate`](crate::encap::Encapsulation::decapsulate)
/// wrap these with the offset of that header in the packet
/// ([`DecapError::Wire`](crate::encap::DecapError::Wire)).
///
/// # Values
///
/// Errors about a field print the value the field holds on the wire, not a
/// length derived from it (an IPv4 IHL of 4 is reported as 4, not as 16
/// bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before the header (or the length its fields announce).
    #[error("{layer}: truncated, need {needed} bytes, have {got}")]
    Truncated {
        /// Layer being read.
        layer: Layer,
        /// Bytes needed from the start of the header.
        needed: usize,
        /// Bytes available from the start of the header.
        got: usize,
    },
    /// The version field holds a value this codec does not implement.
    #[error("{layer}: unsupported version {version}")]
    BadVersion {
        /// Layer being read.
        layer: Layer,
        /// Version found on the wire.
        version: u8,
    },
    /// A length field is inconsistent (for example an IPv4 IHL below 5, an
    /// IPv4 total length below the header length, a UDP length below 8).
    #[error("{layer}: length field `{field}` at byte {offset} holds invalid value {value}")]
    BadLength {
        /// Layer being read.
        layer: Layer,
        /// Name of the length field.
        field: &'static str,
        /// Byte offset of the field within the header.
        offset: usize,
        /// The value the field holds, in the field's own unit (32-bit words
        /// for the IPv4 IHL, bytes for the others).
        value: usize,
    },
    /// A checksum does not verify.
    #[error("{layer}: bad checksum {found:#06x} at byte {offset}")]
    BadChecksum {
        /// Layer being read.
        layer: Layer,
        /// Byte offset of the checksum field within the header.
        offset: usize,
        /// Checksum found on the wire.
        found: u16,
    },
    /// A UDP datagram over IPv6 carries a zero checksum and the caller did not
    /// opt in to the RFC 6935/6936 tunnel exception.
    #[error(
        "UDP: zero checksum over IPv6 not permitted (RFC 8200); enable the RFC 6935 tunnel exception to accept it"
    )]
    ZeroUdpChecksumIpv6,
    /// The VXLAN I flag (byte 0, bit 0x08) is clear: the VNI is not valid.
    #[error("VXLAN: I flag (byte 0, mask 0x08) is clear, the VNI is not valid")]
    VxlanVniFlagClear,
    /// A Geneve option's length runs past the option area announced by the
    /// header's option length.
    #[error(
        "Geneve option at byte {offset}: length {length} runs past the option area ending at byte {area_end}"
    )]
    BadOptionLength {
        /// Byte offset of the option from the start of the Geneve header.
        offset: usize,
        /// Total length of the option (header and data) in bytes.
        length: usize,
        /// End of the option area, in bytes from the start of the Geneve header.
        area_end: usize,
    },
    /// A Geneve option has the critical bit set but the header's C bit is
    /// clear (RFC 8926 section 3.4: C must be set if any option is critical).
    #[error(
        "Geneve option at byte {offset} is critical (type {type_:#04x}) but the C bit is clear"
    )]
    CriticalBitNotSet {
        /// Byte offset of the option from the start of the Geneve header.
        offset: usize,
        /// Option type.
        type_: u8,
    },
    /// A value does not fit its field.
    #[error("{layer}: value {value} of `{field}` exceeds the maximum {max}")]
    ValueOutOfRange {
        /// Layer the field belongs to.
        layer: Layer,
        /// Name of the field.
        field: &'static str,
        /// Value given.
        value: usize,
        /// Largest value the field holds.
        max: usize,
    },
    /// An untagged Ethernet header whose EtherType is the 802.1Q TPID
    /// `0x8100`: the type field would announce a tag that the header does not
    /// carry, and a receiver would read the payload's first four bytes as the
    /// tag. Set [`ethernet::Repr::vlan`] instead.
    #[error(
        "Ethernet: EtherType 0x8100 announces an 802.1Q tag but the header has none; set `vlan` instead"
    )]
    UntaggedVlanEtherType,
    /// A length is not a multiple of four bytes where the format counts in
    /// 4-byte words (IPv4 options, Geneve option data).
    #[error("{layer}: `{field}` length {value} is not a multiple of 4")]
    NotWordAligned {
        /// Layer the field belongs to.
        layer: Layer,
        /// Name of the field.
        field: &'static str,
        /// Length given, in bytes.
        value: usize,
    },
}

/// Declares a module's `Packet<T>` view with the constructors every codec
/// shares; the module adds `check_len` and the field accessors.
macro_rules! packet_view {
    ($what:literal) => {
        #[doc = concat!("A read/write view of ", $what, ".")]
        ///
        /// Build it with [`new_checked`](Self::new_checked) over untrusted
        /// bytes, or with [`new_unchecked`](Self::new_unchecked) over a buffer
        /// sized for emission.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Packet<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> Packet<T> {
            /// Wraps a buffer without checking it: accessors may panic on a
            /// buffer that is too short.
            #[inline]
            pub const fn new_unchecked(buffer: T) -> Packet<T> {
                Packet { buffer }
            }

            /// Wraps a buffer and runs [`check_len`](Self::check_len), after
            /// which no accessor panics.
            #[inline]
            pub fn new_checked(buffer: T) -> Result<Packet<T>, $crate::wire::WireError> {
                let packet = Self::new_unchecked(buffer);
                packet.check_len()?;
                Ok(packet)
            }

            /// Returns the underlying buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}
use packet_view;

/// Shorthand for a [`WireError::Truncated`] check: `Ok` if `got >= needed`.
fn need(layer: Layer, needed: usize, got: usize) -> Result<(), WireError> {
    if got < needed {
        Err(WireError::Truncated { layer, needed, got })
    } else {
        Ok(())
    }
}
