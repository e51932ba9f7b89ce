//! IPv6 fixed headers (RFC 8200 section 3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! |                     Source Address (16)                       |
//! |                  Destination Address (16)                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Only the fixed header is decoded; extension headers are payload, announced
//! by [`Repr::next_header`]. Jumbograms (payload length 0 with a hop-by-hop
//! jumbo option) are not supported: a payload length of 0 means an empty
//! payload.
//!
//! # Panic contract
//!
//! [`Packet::new_checked`] and [`Repr::parse`] never panic. After
//! [`Packet::check_len`] succeeded no accessor panics. [`Repr::emit`] never
//! panics: it refuses a field out of its wire range ([`Repr::check`]) and a
//! buffer shorter than [`Repr::buffer_len`].
//!
//! # Example
//!
//! ```
//! use overlay_core::wire::{IpProtocol, ipv6::{Packet, Repr}};
//!
//! let repr = Repr::new("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), IpProtocol::Udp, 0);
//! let mut buf = vec![0u8; repr.buffer_len()];
//! repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
//! assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
//! ```

use std::net::Ipv6Addr;

use super::{IpProtocol, Layer, WireError, need};

mod field {
    use std::ops::Range;
    pub(super) const VER_TC_FLOW: Range<usize> = 0..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC_ADDR: Range<usize> = 8..24;
    pub(super) const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Largest flow label (20 bits).
pub const MAX_FLOW_LABEL: u32 = 0x000f_ffff;

super::packet_view!("an IPv6 packet");

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the fixed header and the payload length
    /// it announces.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        need(Layer::Ipv6, HEADER_LEN, len)?;
        need(
            Layer::Ipv6,
            HEADER_LEN + usize::from(self.payload_len()),
            len,
        )
    }

    #[inline]
    fn word0(&self) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Version field (6 for IPv6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Differentiated services code point (6 bits): the high bits of the
    /// traffic class, as [`ipv4::Packet::dscp`](super::ipv4::Packet::dscp)
    /// reads them from the TOS byte.
    #[inline]
    pub fn dscp(&self) -> u8 {
        // 6 bits after the shift and mask.
        ((self.word0() >> 22) & 0x3f) as u8
    }

    /// Explicit congestion notification (2 bits): the low bits of the
    /// traffic class.
    #[inline]
    pub fn ecn(&self) -> u8 {
        ((self.word0() >> 20) & 0x03) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::LENGTH.start], d[field::LENGTH.start + 1]])
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Checks what [`Repr::parse`] checks beyond [`check_len`](Self::check_len):
    /// version 6. Call after `check_len`.
    #[inline]
    pub fn validate(&self) -> Result<(), WireError> {
        if self.version() != 6 {
            return Err(WireError::BadVersion {
                layer: Layer::Ipv6,
                version: self.version(),
            });
        }
        Ok(())
    }

    /// The payload, bounded by the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (bounded by the payload length), borrowed for the buffer's whole lifetime
    /// rather than the view's, so it can outlive the `Packet`.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &T::as_ref(self.buffer)[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version, traffic class (DSCP, 6 bits, and ECN, 2 bits) and flow
    /// label (20 bits); extra bits are masked off.
    #[inline]
    pub fn set_version_dscp_ecn_flow(&mut self, version: u8, dscp: u8, ecn: u8, flow_label: u32) {
        let word = (u32::from(version & 0x0f) << 28)
            | (u32::from(dscp & 0x3f) << 22)
            | (u32::from(ecn & 0x03) << 20)
            | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload (bounded by the payload length), mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A parsed IPv6 fixed header.
///
/// `flow_label` must fit in 20 bits and `payload_len` in 16 bits (jumbograms
/// are not supported); [`check`](Repr::check) and [`emit`](Repr::emit) refuse
/// anything else with [`WireError::ValueOutOfRange`] rather than cut it.
/// Parse never produces it.
///
/// ```
/// use overlay_core::wire::{IpProtocol, Layer, WireError, ipv6::{Packet, Repr}};
///
/// let mut repr = Repr::new("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), IpProtocol::Udp, 0);
/// repr.flow_label = 0x10_0000; // 21 bits
/// let mut buf = [0u8; 40];
/// assert_eq!(
///     repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
///     Err(WireError::ValueOutOfRange { layer: Layer::Ipv6, field: "flow_label", value: 0x10_0000, max: 0xf_ffff })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Differentiated services code point (6 bits of the traffic class),
    /// as in [`ipv4::Repr::dscp`](super::ipv4::Repr::dscp).
    pub dscp: u8,
    /// Explicit congestion notification (2 bits of the traffic class), as
    /// in [`ipv4::Repr::ecn`](super::ipv4::Repr::ecn).
    pub ecn: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// A header with hop limit 64, DSCP and ECN 0 and flow label 0.
    #[inline]
    pub fn new(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        next_header: IpProtocol,
        payload_len: usize,
    ) -> Repr {
        Repr {
            src_addr,
            dst_addr,
            next_header,
            payload_len,
            hop_limit: 64,
            dscp: 0,
            ecn: 0,
            flow_label: 0,
        }
    }

    /// Reads and validates a header: length checks and version 6.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        packet.validate()?;
        Ok(Self::read(packet))
    }

    /// Reads the fields of a packet that passed `check_len`.
    #[inline]
    pub(crate) fn read<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Repr {
        Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            flow_label: packet.flow_label(),
        }
    }

    /// Header length: always 40.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Checks that every field fits its wire field (see [`Repr`]).
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        let out_of_range = |field, value: usize, max: usize| {
            Err(WireError::ValueOutOfRange {
                layer: Layer::Ipv6,
                field,
                value,
                max,
            })
        };
        if self.dscp > super::ipv4::MAX_DSCP {
            return out_of_range("dscp", self.dscp.into(), super::ipv4::MAX_DSCP.into());
        }
        if self.ecn > super::ipv4::MAX_ECN {
            return out_of_range("ecn", self.ecn.into(), super::ipv4::MAX_ECN.into());
        }
        if self.flow_label > MAX_FLOW_LABEL {
            // Lossless: u32 fits usize on every target this crate builds for.
            return out_of_range(
                "flow_label",
                self.flow_label as usize,
                MAX_FLOW_LABEL as usize,
            );
        }
        if self.payload_len > usize::from(u16::MAX) {
            return out_of_range("payload_len", self.payload_len, u16::MAX.into());
        }
        Ok(())
    }

    /// Writes the fixed header after [`check`](Self::check) and a check
    /// that the buffer holds [`buffer_len`](Self::buffer_len) bytes; on error
    /// nothing is written. The payload is not touched.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
    ) -> Result<(), WireError> {
        self.check()?;
        need(Layer::Ipv6, HEADER_LEN, packet.buffer.as_ref().len())?;
        packet.set_version_dscp_ecn_flow(6, self.dscp, self.ecn, self.flow_label);
        // `check` bounded the payload length by u16::MAX.
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    // An IPv6/UDP header for 2001:db8::1 -> 2001:db8::2, traffic class 0xb8
    // (DSCP EF), flow label 0x12345, 16 payload bytes, hop limit 64. Written
    // by hand from the RFC 8200 layout: 6b 81 23 45 = version 6, tc 0xb8,
    // flow 0x12345.
    const GOLDEN: [u8; 40] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x10, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    ];

    #[test]
    fn golden_header_parses_and_emits_identically() {
        let mut buf = GOLDEN.to_vec();
        buf.resize(56, 0);
        let repr = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: "2001:db8::1".parse().unwrap(),
                dst_addr: "2001:db8::2".parse().unwrap(),
                next_header: IpProtocol::Udp,
                payload_len: 16,
                hop_limit: 64,
                // Traffic class 0xb8: DSCP 46 (EF), ECN 0.
                dscp: 46,
                ecn: 0,
                flow_label: 0x12345,
            }
        );
        let mut out = [0u8; 40];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, GOLDEN);
    }

    #[test]
    fn payload_length_beyond_buffer_and_wrong_version_are_rejected() {
        assert_eq!(
            Packet::new_checked(&GOLDEN[..]),
            Err(WireError::Truncated {
                layer: Layer::Ipv6,
                needed: 56,
                got: 40
            })
        );
        let mut buf = GOLDEN.to_vec();
        buf[0] = 0x4b;
        buf.resize(56, 0);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(WireError::BadVersion {
                layer: Layer::Ipv6,
                version: 4
            })
        );
    }

    #[test]
    fn flow_label_and_payload_length_beyond_their_fields_are_refused_not_cut() {
        let base = Repr::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            IpProtocol::Udp,
            0,
        );
        let long_label = Repr {
            flow_label: 0x10_0000,
            ..base
        };
        let long_payload = Repr {
            payload_len: 65_536,
            ..base
        };
        for (repr, field, value, max) in [
            (long_label, "flow_label", 0x10_0000, 0xf_ffff),
            (long_payload, "payload_len", 65_536, 65_535),
        ] {
            let mut buf = [0xeeu8; HEADER_LEN];
            assert_eq!(
                repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
                Err(WireError::ValueOutOfRange {
                    layer: Layer::Ipv6,
                    field,
                    value,
                    max
                })
            );
            assert_eq!(buf, [0xee; HEADER_LEN], "{field}: nothing written");
        }
        let widest = Repr {
            flow_label: MAX_FLOW_LABEL,
            payload_len: 65_535,
            ..base
        };
        let mut buf = vec![0u8; HEADER_LEN + 65_535];
        widest
            .emit(&mut Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Ok(widest)
        );
    }

    #[test]
    fn emit_into_a_buffer_shorter_than_buffer_len_is_truncated_not_a_panic() {
        let repr = Repr::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            IpProtocol::Udp,
            0,
        );
        let mut buf = [0u8; HEADER_LEN - 1];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(WireError::Truncated {
                layer: Layer::Ipv6,
                needed: HEADER_LEN,
                got: HEADER_LEN - 1
            })
        );
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0usize..1500,
            any::<u8>(),
            any::<u8>(),
            0u32..0x10_0000,
        )
            .prop_map(|(s, d, nh, len, hl, tc, fl)| Repr {
                dscp: tc >> 2,
                ecn: tc & 0x03,
                src_addr: s.into(),
                dst_addr: d.into(),
                next_header: IpProtocol::from(nh),
                payload_len: len,
                hop_limit: hl,
                flow_label: fl,
            })
    }

    proptest! {
        #[test]
        fn repr_emit_parse_round_trips(repr in arb_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }

        /// A flow label beyond 20 bits or a payload length beyond 16 bits is
        /// refused, naming the field; nothing is written.
        #[test]
        fn emit_refuses_any_field_beyond_its_wire_width(
            repr in arb_repr(),
            label in proptest::option::of(0x10_0000u32..),
            payload_len in proptest::option::of(65_536usize..1 << 40),
        ) {
            let mut repr = repr;
            repr.flow_label = label.unwrap_or(repr.flow_label);
            repr.payload_len = payload_len.unwrap_or(repr.payload_len);
            let mut buf = vec![0xeeu8; repr.buffer_len()];
            let result = repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let expected = match (label, payload_len) {
                (Some(value), _) => Err(WireError::ValueOutOfRange {
                    layer: Layer::Ipv6, field: "flow_label", value: value as usize, max: 0xf_ffff,
                }),
                (None, Some(value)) => Err(WireError::ValueOutOfRange {
                    layer: Layer::Ipv6, field: "payload_len", value, max: 65_535,
                }),
                (None, None) => Ok(()),
            };
            prop_assert_eq!(&result, &expected);
            if result.is_err() {
                prop_assert!(buf.iter().all(|&b| b == 0xee));
            }
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = packet.payload();
            }
        }
    }
}
