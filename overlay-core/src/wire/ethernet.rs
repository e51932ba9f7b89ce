//! Ethernet II frames with an optional single 802.1Q tag.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3
//! +------------+------------+----------+ - - - - - - - - - - +-----------+
//! | dst (6)    | src (6)    | type (2) | [TPID 0x8100, TCI]  | payload   |
//! +------------+------------+----------+ - - - - - - - - - - +-----------+
//! ```
//!
//! When the type field at byte 12 is `0x8100`, the frame carries an 802.1Q
//! tag: bytes 14..16 are the tag control information (PCP, DEI, VID) and the
//! payload's EtherType moves to bytes 16..18. Only one tag is interpreted: a
//! second `0x8100` (or an 802.1ad `0x88a8` outer tag) is reported as the
//! payload's EtherType and left in the payload. Type values below `0x0600`
//! (802.3 length fields) are reported as [`EtherType::Other`]; this codec does
//! not interpret LLC.
//!
//! The tag belongs in [`Repr::vlan`], never in [`Repr::ethertype`]: an
//! untagged `Repr` whose EtherType is `0x8100` would announce a tag it does
//! not carry, so [`Repr::emit`] refuses it with
//! [`WireError::UntaggedVlanEtherType`]. A tagged `Repr` may carry `0x8100` (a
//! second tag, left in the payload), and any `Repr` may carry `0x88a8`, which
//! this codec does not treat as a tag: both emit and parse back unchanged.
//!
//! # Panic contract
//!
//! [`Packet::new_checked`] and [`Repr::parse`] never panic. After
//! [`Packet::check_len`] succeeded no accessor panics. [`Repr::emit`] never
//! panics: it returns an error for a contradictory `Repr` or a buffer shorter
//! than [`Repr::buffer_len`].
//!
//! # Example
//!
//! ```
//! use overlay_core::MacAddr;
//! use overlay_core::wire::ethernet::{EtherType, Packet, Repr, VlanTag};
//!
//! let repr = Repr {
//!     src_addr: MacAddr::new([0x02, 0, 0, 0, 0, 1]),
//!     dst_addr: MacAddr::new([0x02, 0, 0, 0, 0, 2]),
//!     vlan: Some(VlanTag::new(3, false, 100).unwrap()),
//!     ethertype: EtherType::Ipv4,
//! };
//! let mut buf = vec![0u8; repr.buffer_len()];
//! repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
//! assert_eq!(&buf[12..18], &[0x81, 0x00, 0x60, 0x64, 0x08, 0x00]);
//!
//! let packet = Packet::new_checked(&buf[..]).unwrap();
//! assert_eq!(Repr::parse(&packet).unwrap(), repr);
//! ```

use std::fmt;

use super::{Layer, WireError, need};
use crate::MacAddr;

mod field {
    use std::ops::{Range, RangeFrom};
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const TYPE: Range<usize> = 12..14;
    pub(super) const TCI: Range<usize> = 14..16;
    pub(super) const TAGGED_TYPE: Range<usize> = 16..18;
    pub(super) const PAYLOAD: RangeFrom<usize> = 14..;
    pub(super) const TAGGED_PAYLOAD: RangeFrom<usize> = 18..;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Length of an Ethernet II header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = field::TAGGED_PAYLOAD.start;
/// The 802.1Q tag protocol identifier: a type field of this value announces
/// a tag.
const TPID_8021Q: u16 = 0x8100;

/// The EtherType of an Ethernet payload (or of a Geneve payload).
///
/// ```
/// use overlay_core::wire::ethernet::EtherType;
/// assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);
/// assert_eq!(u16::from(EtherType::Other(0x88cc)), 0x88cc);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EtherType {
    /// IPv4 (`0x0800`).
    Ipv4,
    /// ARP (`0x0806`).
    Arp,
    /// Transparent Ethernet Bridging (`0x6558`), the Geneve protocol type for
    /// an Ethernet payload.
    TransparentEthernetBridging,
    /// An 802.1Q tag (`0x8100`).
    Vlan,
    /// IPv6 (`0x86dd`).
    Ipv6,
    /// Any other value.
    Other(u16),
}

impl From<u16> for EtherType {
    #[inline(always)]
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x6558 => EtherType::TransparentEthernetBridging,
            0x8100 => EtherType::Vlan,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Other(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline(always)]
    fn from(value: EtherType) -> u16 {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::TransparentEthernetBridging => 0x6558,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Other(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    #[inline(always)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", u16::from(*self))
    }
}

/// The tag control information of an 802.1Q tag.
///
/// ```
/// use overlay_core::wire::ethernet::VlanTag;
/// let tag = VlanTag::new(5, true, 4094).unwrap();
/// assert_eq!(tag.tci(), 0xbffe);
/// assert_eq!(VlanTag::from_tci(0xbffe), tag);
/// assert!(VlanTag::new(8, false, 1).is_err());
/// assert!(VlanTag::new(0, false, 4096).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    pcp: u8,
    dei: bool,
    vid: u16,
}

impl VlanTag {
    /// Builds a tag, checking that `pcp` fits in 3 bits and `vid` in 12 bits.
    #[inline(always)]
    pub fn new(pcp: u8, dei: bool, vid: u16) -> Result<Self, WireError> {
        if pcp > 7 {
            return Err(WireError::ValueOutOfRange {
                layer: Layer::Ethernet,
                field: "pcp",
                value: pcp.into(),
                max: 7,
            });
        }
        if vid > 0x0fff {
            return Err(WireError::ValueOutOfRange {
                layer: Layer::Ethernet,
                field: "vid",
                value: vid.into(),
                max: 0x0fff,
            });
        }
        Ok(VlanTag { pcp, dei, vid })
    }

    /// Decodes a 16-bit tag control information field.
    #[inline(always)]
    pub const fn from_tci(tci: u16) -> Self {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    /// Encodes the 16-bit tag control information field.
    #[inline(always)]
    pub const fn tci(self) -> u16 {
        ((self.pcp as u16) << 13) | ((self.dei as u16) << 12) | self.vid
    }

    /// Priority code point (0..=7).
    #[inline(always)]
    pub const fn pcp(self) -> u8 {
        self.pcp
    }

    /// Drop eligible indicator.
    #[inline(always)]
    pub const fn dei(self) -> bool {
        self.dei
    }

    /// VLAN identifier (0..=4095).
    #[inline(always)]
    pub const fn vid(self) -> u16 {
        self.vid
    }
}

super::packet_view!("an Ethernet II frame");

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the whole header.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        need(Layer::Ethernet, HEADER_LEN, data.len())?;
        if self.has_vlan_tag() {
            need(Layer::Ethernet, TAGGED_HEADER_LEN, data.len())?;
        }
        Ok(())
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> MacAddr {
        let mut octets = [0u8; 6];
        octets.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr::new(octets)
    }

    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> MacAddr {
        let mut octets = [0u8; 6];
        octets.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr::new(octets)
    }

    /// The raw type field at bytes 12..14 (the TPID `0x8100` if tagged).
    #[inline(always)]
    pub fn outer_ethertype(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::TYPE.start], d[field::TYPE.start + 1]])
    }

    /// True if the frame carries an 802.1Q tag.
    #[inline(always)]
    pub fn has_vlan_tag(&self) -> bool {
        self.outer_ethertype() == TPID_8021Q
    }

    /// The 802.1Q tag, if any.
    #[inline(always)]
    pub fn vlan_tag(&self) -> Option<VlanTag> {
        if self.has_vlan_tag() {
            let d = self.buffer.as_ref();
            Some(VlanTag::from_tci(u16::from_be_bytes([
                d[field::TCI.start],
                d[field::TCI.start + 1],
            ])))
        } else {
            None
        }
    }

    /// The EtherType of the payload (after the tag, if any).
    #[inline(always)]
    pub fn ethertype(&self) -> EtherType {
        if self.has_vlan_tag() {
            let d = self.buffer.as_ref();
            EtherType::from(u16::from_be_bytes([
                d[field::TAGGED_TYPE.start],
                d[field::TAGGED_TYPE.start + 1],
            ]))
        } else {
            EtherType::from(self.outer_ethertype())
        }
    }

    /// The header length and the payload's raw type in one read of the
    /// outer type field: `(14, type)`, or `(18, inner type)` with an 802.1Q
    /// tag. The same values as [`header_len`](Self::header_len) and
    /// [`ethertype`](Self::ethertype), for parsers that dispatch on the raw
    /// value. Call after [`check_len`](Self::check_len).
    ///
    /// ```
    /// use overlay_core::wire::ethernet::Packet;
    /// let mut frame = [0u8; 18];
    /// frame[12..14].copy_from_slice(&[0x81, 0x00]); // 802.1Q tag
    /// frame[16..18].copy_from_slice(&[0x08, 0x00]); // then IPv4
    /// let packet = Packet::new_checked(&frame[..]).unwrap();
    /// assert_eq!(packet.header_len_and_ethertype(), (18, 0x0800));
    ///
    /// frame[12..14].copy_from_slice(&[0x86, 0xdd]); // untagged IPv6
    /// let packet = Packet::new_checked(&frame[..]).unwrap();
    /// assert_eq!(packet.header_len_and_ethertype(), (14, 0x86dd));
    /// assert_eq!(packet.header_len(), 14);
    /// ```
    #[inline(always)]
    pub fn header_len_and_ethertype(&self) -> (usize, u16) {
        let d = self.buffer.as_ref();
        let outer = self.outer_ethertype();
        if outer == TPID_8021Q {
            let at = field::TAGGED_TYPE.start;
            (TAGGED_HEADER_LEN, u16::from_be_bytes([d[at], d[at + 1]]))
        } else {
            (HEADER_LEN, outer)
        }
    }

    /// Length of the header: 14, or 18 with a tag.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        if self.has_vlan_tag() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload: everything after the header, including any padding.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (everything after the header, including any padding), borrowed for the buffer's whole lifetime
    /// rather than the view's, so it can outlive the `Packet`.
    #[inline(always)]
    pub fn into_payload(self) -> &'a [u8] {
        let start = self.header_len();
        &T::as_ref(self.buffer)[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the destination address.
    #[inline(always)]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(addr.as_bytes());
    }

    /// Sets the source address.
    #[inline(always)]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(addr.as_bytes());
    }

    /// Writes the type field at bytes 12..14 (use `0x8100` to add a tag,
    /// then [`set_vlan_tag`](Self::set_vlan_tag) and
    /// [`set_ethertype`](Self::set_ethertype)).
    #[inline(always)]
    pub fn set_outer_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::TYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Writes the tag control information (bytes 14..16). Only meaningful
    /// when the type field is `0x8100`.
    #[inline(always)]
    pub fn set_vlan_tag(&mut self, tag: VlanTag) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tag.tci().to_be_bytes());
    }

    /// Writes the payload's EtherType at the position the current type field
    /// implies (bytes 16..18 if tagged, otherwise 12..14).
    #[inline(always)]
    pub fn set_ethertype(&mut self, value: EtherType) {
        let range = if self.has_vlan_tag() {
            field::TAGGED_TYPE
        } else {
            field::TYPE
        };
        self.buffer.as_mut()[range].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// The payload, mutably.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// A parsed Ethernet II header.
///
/// `ethertype` is the payload's type. With `vlan: None` it must not be the
/// 802.1Q TPID `0x8100` ([`EtherType::Vlan`], or `EtherType::Other(0x8100)`):
/// that header would announce a tag without carrying one.
/// [`check`](Repr::check) and [`emit`](Repr::emit) refuse it; parse never
/// produces it.
///
/// ```
/// use overlay_core::MacAddr;
/// use overlay_core::wire::WireError;
/// use overlay_core::wire::ethernet::{EtherType, Packet, Repr, VlanTag};
///
/// let mut repr = Repr {
///     src_addr: MacAddr::new([0x02, 0, 0, 0, 0, 1]),
///     dst_addr: MacAddr::BROADCAST,
///     vlan: None,
///     ethertype: EtherType::Vlan,
/// };
/// let mut buf = [0u8; 18];
/// assert_eq!(repr.emit(&mut Packet::new_unchecked(&mut buf[..])), Err(WireError::UntaggedVlanEtherType));
/// repr.vlan = Some(VlanTag::new(0, false, 10).unwrap());
/// repr.ethertype = EtherType::Ipv4;
/// assert_eq!(repr.emit(&mut Packet::new_unchecked(&mut buf[..])), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTag>,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked packet.
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        Ok(Self::read(packet))
    }

    /// Reads the fields of a packet that passed `check_len`.
    #[inline(always)]
    pub(crate) fn read<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Repr {
        Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            vlan: packet.vlan_tag(),
            ethertype: packet.ethertype(),
        }
    }

    /// Bytes [`emit`](Self::emit) writes: 14, or 18 with a tag.
    #[inline(always)]
    pub const fn buffer_len(&self) -> usize {
        if self.vlan.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Checks that the header can be emitted as it parses back: an untagged
    /// header must not carry the EtherType `0x8100`
    /// ([`WireError::UntaggedVlanEtherType`]).
    #[inline(always)]
    pub fn check(&self) -> Result<(), WireError> {
        if self.vlan.is_none() && u16::from(self.ethertype) == TPID_8021Q {
            return Err(WireError::UntaggedVlanEtherType);
        }
        Ok(())
    }

    /// Writes the header to the start of the packet's buffer, after
    /// [`check`](Self::check) and a check that the buffer holds
    /// [`buffer_len`](Self::buffer_len) bytes; on error nothing is written.
    #[inline(always)]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
    ) -> Result<(), WireError> {
        self.check()?;
        need(
            Layer::Ethernet,
            self.buffer_len(),
            packet.buffer.as_ref().len(),
        )?;
        packet.set_dst_addr(self.dst_addr);
        packet.set_src_addr(self.src_addr);
        match self.vlan {
            Some(tag) => {
                packet.set_outer_ethertype(TPID_8021Q);
                packet.set_vlan_tag(tag);
            }
            None => packet.set_outer_ethertype(u16::from(self.ethertype)),
        }
        packet.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    // A frame header as the Linux kernel emits it from a veth with an IPv4
    // payload: dst 02:42:ac:11:00:02, src 02:42:ac:11:00:01, type 0x0800.
    // Bytes written out by hand from the field layout of IEEE 802.3 clause 3.
    const UNTAGGED: [u8; 14] = [
        0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x02, 0x42, 0xac, 0x11, 0x00, 0x01, 0x08, 0x00,
    ];
    // The same with an 802.1Q tag PCP 5, DEI 0, VID 100 (TCI 0xa064) and IPv6.
    const TAGGED: [u8; 18] = [
        0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x02, 0x42, 0xac, 0x11, 0x00, 0x01, 0x81, 0x00, 0xa0,
        0x64, 0x86, 0xdd,
    ];

    fn golden_untagged() -> Repr {
        Repr {
            dst_addr: MacAddr::new([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]),
            src_addr: MacAddr::new([0x02, 0x42, 0xac, 0x11, 0x00, 0x01]),
            vlan: None,
            ethertype: EtherType::Ipv4,
        }
    }

    #[test]
    fn golden_untagged_header_parses_and_emits_identically() {
        let repr = Repr::parse(&Packet::new_checked(&UNTAGGED[..]).unwrap()).unwrap();
        assert_eq!(repr, golden_untagged());
        let mut out = [0u8; 14];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, UNTAGGED);
    }

    #[test]
    fn golden_tagged_header_parses_and_emits_identically() {
        let packet = Packet::new_checked(&TAGGED[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        let tag = repr.vlan.unwrap();
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (5, false, 100));
        assert_eq!(repr.ethertype, EtherType::Ipv6);
        assert_eq!(packet.header_len(), 18);
        let mut out = [0u8; 18];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, TAGGED);
    }

    #[test]
    fn tag_announced_but_missing_is_truncated() {
        assert_eq!(
            Packet::new_checked(&TAGGED[..16]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ethernet,
                needed: 18,
                got: 16
            }
        );
        assert_eq!(
            Packet::new_checked(&[][..]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ethernet,
                needed: 14,
                got: 0
            }
        );
    }

    #[test]
    fn payload_starts_after_the_tag() {
        let mut frame = TAGGED.to_vec();
        frame.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            Packet::new_checked(&frame[..]).unwrap().payload(),
            &[1, 2, 3]
        );
    }

    #[test]
    fn untagged_repr_with_the_vlan_ethertype_is_refused_without_writing() {
        for ethertype in [EtherType::Vlan, EtherType::Other(0x8100)] {
            let repr = Repr {
                vlan: None,
                ethertype,
                ..golden_untagged()
            };
            assert_eq!(repr.check(), Err(WireError::UntaggedVlanEtherType));
            // A buffer of exactly buffer_len() bytes: the old emit wrote the
            // type at 12..14, then indexed 16..18 for the "tagged" type.
            let mut out = [0xeeu8; HEADER_LEN];
            assert_eq!(repr.buffer_len(), out.len());
            assert_eq!(
                repr.emit(&mut Packet::new_unchecked(&mut out[..])),
                Err(WireError::UntaggedVlanEtherType),
                "{ethertype:?}"
            );
            assert_eq!(out, [0xee; HEADER_LEN], "nothing written");
        }
    }

    #[test]
    fn tagged_repr_may_carry_a_second_8021q_type_and_round_trips() {
        let repr = Repr {
            vlan: Some(VlanTag::new(1, false, 7).unwrap()),
            ethertype: EtherType::Vlan,
            ..golden_untagged()
        };
        let mut out = [0u8; TAGGED_HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[12..18], &[0x81, 0x00, 0x20, 0x07, 0x81, 0x00]);
        let packet = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn qinq_ethertype_is_not_a_tag_and_round_trips_untagged() {
        let repr = Repr {
            vlan: None,
            ethertype: EtherType::from(0x88a8),
            ..golden_untagged()
        };
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[12..14], &[0x88, 0xa8]);
        let packet = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(packet.header_len(), HEADER_LEN);
        assert_eq!(Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn emit_into_a_buffer_shorter_than_buffer_len_is_truncated_not_a_panic() {
        let tagged = Repr {
            vlan: Some(VlanTag::new(0, false, 1).unwrap()),
            ..golden_untagged()
        };
        let mut out = [0u8; TAGGED_HEADER_LEN - 1];
        assert_eq!(
            tagged.emit(&mut Packet::new_unchecked(&mut out[..])),
            Err(WireError::Truncated {
                layer: Layer::Ethernet,
                needed: TAGGED_HEADER_LEN,
                got: TAGGED_HEADER_LEN - 1
            })
        );
        assert_eq!(
            golden_untagged().emit(&mut Packet::new_unchecked(&mut out[..5])),
            Err(WireError::Truncated {
                layer: Layer::Ethernet,
                needed: HEADER_LEN,
                got: 5
            })
        );
    }

    pub(crate) fn arb_vlan() -> impl Strategy<Value = VlanTag> {
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(p, d, v)| VlanTag::new(p, d, v).unwrap())
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            proptest::option::of(arb_vlan()),
            any::<u16>(),
        )
            .prop_filter_map(
                "untagged frame cannot carry type 0x8100",
                |(s, d, vlan, t)| {
                    (vlan.is_some() || t != 0x8100).then(|| Repr {
                        src_addr: s.into(),
                        dst_addr: d.into(),
                        vlan,
                        ethertype: EtherType::from(t),
                    })
                },
            )
    }

    proptest! {
        #[test]
        fn repr_emit_parse_round_trips(repr in arb_repr(), extra in 0usize..4) {
            let mut buf = vec![0xa5u8; repr.buffer_len() + extra];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&packet).unwrap(), repr);
            prop_assert_eq!(packet.payload().len(), extra);
        }

        /// Any `Repr`, including the contradictory ones, into a buffer of
        /// `buffer_len()` bytes: emit refuses exactly the untagged `0x8100`
        /// and writes everything else so that it parses back unchanged.
        #[test]
        fn emit_refuses_exactly_the_untagged_tpid_and_round_trips_the_rest(
            s in any::<[u8; 6]>(),
            d in any::<[u8; 6]>(),
            vlan in proptest::option::of(arb_vlan()),
            t in prop_oneof![Just(0x8100u16), Just(0x88a8u16), any::<u16>()],
        ) {
            let repr = Repr { src_addr: s.into(), dst_addr: d.into(), vlan, ethertype: EtherType::from(t) };
            let mut buf = vec![0u8; repr.buffer_len()];
            let result = repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            if vlan.is_none() && t == 0x8100 {
                prop_assert_eq!(result, Err(WireError::UntaggedVlanEtherType));
            } else {
                prop_assert_eq!(result, Ok(()));
                let packet = Packet::new_checked(&buf[..]).unwrap();
                prop_assert_eq!(Repr::parse(&packet), Ok(repr));
            }
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = packet.payload();
            }
        }

        #[test]
        fn parse_never_panics_on_truncations(cut in 0usize..18) {
            let _ = Packet::new_checked(&TAGGED[..cut]).and_then(|p| Repr::parse(&p));
        }
    }
}
