//! VXLAN headers (RFC 7348) with the group-policy extension
//! (VXLAN-GBP, draft-smith-vxlan-group-policy).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |G|R|R|R|I|R|R|R|R|D|R|R|A|R|R|R|        Group Policy ID        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          VXLAN Network Identifier (VNI)       |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Plain RFC 7348 VXLAN has only the I flag; bytes 1..4 and byte 7 are
//! reserved. With GBP, G says the group policy ID is present, D means "don't
//! learn" the source address, and A means the policy has already been
//! applied.
//!
//! # Validation of flags and reserved bits
//!
//! * The I flag must be set ([`WireError::VxlanVniFlagClear`] otherwise): RFC
//!   7348 requires it for a valid VNI, and Linux drops such packets too.
//! * Reserved bits are written as zero and **ignored** on receipt, as RFC 7348
//!   section 5 requires; so are D, A and the group policy ID when G is clear
//!   (they are reserved then). A [`Repr`] therefore does not hold them, and a
//!   header with reserved bits set does not re-emit byte-exact. Strict
//!   receivers (the Linux kernel drops VXLAN packets with unknown flags) can
//!   check [`Packet::reserved_bits_set`] themselves.
//!
//! # Panic contract
//!
//! [`Packet::new_checked`] and [`Repr::parse`] never panic. After
//! [`Packet::check_len`] succeeded no accessor panics. [`Repr::emit`] never
//! panics: every field of a [`Repr`] fits its wire field by construction (a
//! [`Vni`] holds 24 bits, the group policy ID 16), so it only refuses a buffer
//! shorter than [`Repr::buffer_len`].
//!
//! # Example
//!
//! ```
//! use overlay_core::wire::{Vni, vxlan::{Gbp, Packet, Repr}};
//!
//! let repr = Repr {
//!     vni: Vni::new(42).unwrap(),
//!     gbp: Some(Gbp { dont_learn: false, policy_applied: true, group_policy_id: 0x0102 }),
//! };
//! let mut buf = [0u8; 8];
//! repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
//! assert_eq!(buf, [0x88, 0x08, 0x01, 0x02, 0x00, 0x00, 0x2a, 0x00]);
//! assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
//! ```

use super::{Layer, Vni, WireError, need};

mod field {
    use std::ops::{Range, RangeFrom};
    pub(super) const FLAGS: usize = 0;
    pub(super) const GBP_FLAGS: usize = 1;
    pub(super) const GROUP_POLICY_ID: Range<usize> = 2..4;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const RESERVED2: usize = 7;
    pub(super) const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of a VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// The IANA-assigned VXLAN UDP port (RFC 7348 section 5), 4789: the one
/// definition of it in the workspace. [`VxlanEncap::new`](crate::encap::VxlanEncap::new)
/// uses it; other crates (netlink device defaults, tools) refer to it
/// rather than repeat the number.
///
/// ```
/// assert_eq!(overlay_core::wire::vxlan::DEFAULT_PORT, 4789);
/// ```
pub const DEFAULT_PORT: u16 = 4789;

const FLAG_G: u8 = 0x80;
const FLAG_I: u8 = 0x08;
const GBP_D: u8 = 0x40;
const GBP_A: u8 = 0x08;

/// The VXLAN group-policy extension fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gbp {
    /// D bit: the receiver must not learn the inner source address.
    pub dont_learn: bool,
    /// A bit: the group policy has already been applied.
    pub policy_applied: bool,
    /// Group policy ID of the sender's endpoint.
    pub group_policy_id: u16,
}

super::packet_view!("a VXLAN header and its payload");

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the 8-byte header.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), WireError> {
        need(Layer::Vxlan, HEADER_LEN, self.buffer.as_ref().len())
    }

    /// The raw flags byte (byte 0).
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// I flag: the VNI is valid.
    #[inline(always)]
    pub fn vni_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// G flag: the group policy extension is present.
    #[inline(always)]
    pub fn gbp_flag(&self) -> bool {
        self.flags() & FLAG_G != 0
    }

    /// D bit (meaningful only with G).
    #[inline(always)]
    pub fn dont_learn(&self) -> bool {
        self.buffer.as_ref()[field::GBP_FLAGS] & GBP_D != 0
    }

    /// A bit (meaningful only with G).
    #[inline(always)]
    pub fn policy_applied(&self) -> bool {
        self.buffer.as_ref()[field::GBP_FLAGS] & GBP_A != 0
    }

    /// Group policy ID (meaningful only with G).
    #[inline(always)]
    pub fn group_policy_id(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([
            d[field::GROUP_POLICY_ID.start],
            d[field::GROUP_POLICY_ID.start + 1],
        ])
    }

    /// The 24-bit VNI.
    #[inline(always)]
    pub fn vni(&self) -> Vni {
        let d = self.buffer.as_ref();
        Vni::from_be_bytes([d[4], d[5], d[6]])
    }

    /// True if any bit that is reserved (given the G flag) is set. RFC 7348
    /// says receivers ignore them; the Linux kernel drops such packets.
    #[inline(always)]
    pub fn reserved_bits_set(&self) -> bool {
        let d = self.buffer.as_ref();
        let flags_known = FLAG_I | FLAG_G;
        if d[field::FLAGS] & !flags_known != 0 || d[field::RESERVED2] != 0 {
            return true;
        }
        if self.gbp_flag() {
            d[field::GBP_FLAGS] & !(GBP_D | GBP_A) != 0
        } else {
            d[field::GBP_FLAGS] != 0 || self.group_policy_id() != 0
        }
    }

    /// Checks what [`Repr::parse`] checks beyond [`check_len`](Self::check_len):
    /// the I flag. Call after `check_len`.
    #[inline(always)]
    pub fn validate(&self) -> Result<(), WireError> {
        if self.vni_flag() {
            Ok(())
        } else {
            Err(WireError::VxlanVniFlagClear)
        }
    }

    /// The encapsulated frame (everything after the header).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (everything after the header), borrowed for the buffer's whole lifetime
    /// rather than the view's, so it can outlive the `Packet`.
    #[inline(always)]
    pub fn into_payload(self) -> &'a [u8] {
        let start = HEADER_LEN;
        &T::as_ref(self.buffer)[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the raw flags byte.
    #[inline(always)]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the raw GBP flags byte (byte 1: D is 0x40, A is 0x08).
    #[inline(always)]
    pub fn set_gbp_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::GBP_FLAGS] = value;
    }

    /// Sets the group policy ID.
    #[inline(always)]
    pub fn set_group_policy_id(&mut self, value: u16) {
        self.buffer.as_mut()[field::GROUP_POLICY_ID].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the VNI.
    #[inline(always)]
    pub fn set_vni(&mut self, vni: Vni) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&vni.to_be_bytes());
    }

    /// Sets the last reserved byte.
    #[inline(always)]
    pub fn set_reserved2(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED2] = value;
    }

    /// The encapsulated frame, mutably.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The virtual network identifier.
    pub vni: Vni,
    /// Group-policy extension, present when the G flag is set.
    pub gbp: Option<Gbp>,
}

impl Repr {
    /// Reads a header: the I flag must be set; reserved bits are ignored
    /// (see the [module docs](self)).
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        packet.validate()?;
        Ok(Self::read(packet))
    }

    /// Reads the fields of a packet that passed `check_len`.
    #[inline(always)]
    pub(crate) fn read<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Repr {
        let gbp = packet.gbp_flag().then(|| Gbp {
            dont_learn: packet.dont_learn(),
            policy_applied: packet.policy_applied(),
            group_policy_id: packet.group_policy_id(),
        });
        Repr {
            vni: packet.vni(),
            gbp,
        }
    }

    /// Header length: always 8.
    #[inline(always)]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Checks that every field fits its wire field. Always `Ok` for VXLAN
    /// (the types hold nothing wider than the wire); present so that every
    /// wire module offers the same `check`/`emit` pair.
    #[inline(always)]
    pub const fn check(&self) -> Result<(), WireError> {
        Ok(())
    }

    /// Writes the header, with all reserved bits zero, after a check that
    /// the buffer holds [`buffer_len`](Self::buffer_len) bytes; on error
    /// nothing is written.
    #[inline(always)]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
    ) -> Result<(), WireError> {
        self.check()?;
        need(Layer::Vxlan, HEADER_LEN, packet.buffer.as_ref().len())?;
        match self.gbp {
            Some(gbp) => {
                packet.set_flags(FLAG_I | FLAG_G);
                let mut flags = 0;
                if gbp.dont_learn {
                    flags |= GBP_D;
                }
                if gbp.policy_applied {
                    flags |= GBP_A;
                }
                packet.set_gbp_flags(flags);
                packet.set_group_policy_id(gbp.group_policy_id);
            }
            None => {
                packet.set_flags(FLAG_I);
                packet.set_gbp_flags(0);
                packet.set_group_policy_id(0);
            }
        }
        packet.set_vni(self.vni);
        packet.set_reserved2(0);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 7348 header for VNI 5001 (0x001389): flags 0x08, rest reserved.
    // The same bytes Wireshark shows for the kernel's "vxlan id 5001".
    const PLAIN: [u8; 8] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x13, 0x89, 0x00];
    // VXLAN-GBP (draft-smith-vxlan-group-policy section 2.1): G and I
    // (0x88), D and A (0x48), group policy ID 0xbeef, VNI 0xabcdef.
    const GBP: [u8; 8] = [0x88, 0x48, 0xbe, 0xef, 0xab, 0xcd, 0xef, 0x00];

    #[test]
    fn golden_plain_header_parses_and_emits_identically() {
        let repr = Repr::parse(&Packet::new_checked(&PLAIN[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                vni: Vni::new(5001).unwrap(),
                gbp: None
            }
        );
        let mut out = [0xffu8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, PLAIN);
    }

    #[test]
    fn golden_gbp_header_parses_and_emits_identically() {
        let repr = Repr::parse(&Packet::new_checked(&GBP[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                vni: Vni::new(0xab_cdef).unwrap(),
                gbp: Some(Gbp {
                    dont_learn: true,
                    policy_applied: true,
                    group_policy_id: 0xbeef
                }),
            }
        );
        let mut out = [0u8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, GBP);
    }

    #[test]
    fn clear_i_flag_is_rejected() {
        let mut buf = PLAIN;
        buf[0] = 0x00;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(WireError::VxlanVniFlagClear)
        );
    }

    #[test]
    fn reserved_bits_are_ignored_but_reported() {
        let mut buf = PLAIN;
        buf[0] |= 0x01;
        buf[1] = 0x48; // D and A without G are reserved bits
        buf[7] = 0xff;
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.reserved_bits_set());
        assert_eq!(
            Repr::parse(&packet).unwrap(),
            Repr {
                vni: Vni::new(5001).unwrap(),
                gbp: None
            }
        );
        assert!(!Packet::new_checked(&GBP[..]).unwrap().reserved_bits_set());
        assert!(!Packet::new_checked(&PLAIN[..]).unwrap().reserved_bits_set());
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            Packet::new_checked(&PLAIN[..7]),
            Err(WireError::Truncated {
                layer: Layer::Vxlan,
                needed: 8,
                got: 7
            })
        );
    }

    pub(crate) fn arb_gbp() -> impl Strategy<Value = Gbp> {
        (any::<bool>(), any::<bool>(), any::<u16>()).prop_map(|(d, a, id)| Gbp {
            dont_learn: d,
            policy_applied: a,
            group_policy_id: id,
        })
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Repr> {
        (0u32..=0xff_ffff, proptest::option::of(arb_gbp())).prop_map(|(v, gbp)| Repr {
            vni: Vni::new(v).unwrap(),
            gbp,
        })
    }

    #[test]
    fn emit_into_a_buffer_shorter_than_buffer_len_is_truncated_not_a_panic() {
        let repr = Repr {
            vni: Vni::new(5001).unwrap(),
            gbp: None,
        };
        let mut buf = [0xeeu8; HEADER_LEN - 1];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(WireError::Truncated {
                layer: Layer::Vxlan,
                needed: HEADER_LEN,
                got: HEADER_LEN - 1
            })
        );
        assert_eq!(buf, [0xee; HEADER_LEN - 1], "nothing written");
    }

    proptest! {
        #[test]
        fn repr_emit_parse_round_trips(repr in arb_repr()) {
            let mut buf = [0x5au8; 8];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(!packet.reserved_bits_set());
            prop_assert_eq!(Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = (packet.payload(), packet.reserved_bits_set());
            }
        }
    }
}
