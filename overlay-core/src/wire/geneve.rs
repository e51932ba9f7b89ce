//! Geneve headers (RFC 8926) with TLV options.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Each option:
//! |          Option Class         |      Type     |R|R|R| Length  |
//! |                  Variable-Length Option Data                  |
//! ```
//!
//! Opt Len and the option Length count 4-byte words (the option Length
//! excludes the 4-byte option header). The high bit of the option type is the
//! critical bit.
//!
//! # Validation
//!
//! * Version must be 0 ([`WireError::BadVersion`] otherwise).
//! * Every option must lie inside the option area announced by Opt Len
//!   ([`WireError::BadOptionLength`] with the option's offset otherwise).
//!   [`Packet::options`] yields that error from its iterator; [`Repr::parse`]
//!   returns it.
//! * **C bit**: RFC 8926 says C is set when any option is critical. If an
//!   option is critical but C is clear, [`Repr::parse`] rejects the header
//!   with [`WireError::CriticalBitNotSet`]: a receiver trusting C would skip an
//!   option it must not ignore. If C is set but no option is critical, parse
//!   accepts the header (the bit only tells receivers to look at the
//!   options), and the [`Repr`], which derives C from its options, re-emits it
//!   clear.
//! * Reserved bits (header and option R bits) are written as zero and ignored
//!   on receipt (RFC 8926 section 3.4).
//! * Unknown options are kept byte-exact (class, type and data) in
//!   [`GeneveOption`]; this codec interprets none of them.
//!
//! # Panic contract
//!
//! [`Packet::new_checked`], [`Repr::parse`] and the [`Options`] iterator never
//! panic. After [`Packet::check_len`] succeeded no accessor panics.
//! [`Repr::emit`] never panics: it returns an error if the options do not fit
//! the 6-bit Opt Len ([`Repr::check`]) or the buffer is shorter than
//! [`Repr::buffer_len`]. The other fields fit by construction (a [`Vni`] holds
//! 24 bits, a [`GeneveOption`] at most 124 data bytes in whole words).
//!
//! # Example
//!
//! ```
//! use overlay_core::wire::{Vni, ethernet::EtherType};
//! use overlay_core::wire::geneve::{GeneveOption, Packet, Repr};
//!
//! let repr = Repr {
//!     oam: false,
//!     protocol_type: EtherType::TransparentEthernetBridging,
//!     vni: Vni::new(7).unwrap(),
//!     options: vec![GeneveOption::new(0x0102, 0x80, vec![1, 2, 3, 4]).unwrap()],
//! };
//! let mut buf = vec![0u8; repr.buffer_len()];
//! repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
//! let packet = Packet::new_checked(&buf[..]).unwrap();
//! assert!(packet.critical());
//! let opt = packet.options().next().unwrap().unwrap();
//! assert_eq!((opt.class(), opt.type_(), opt.data()), (0x0102, 0x80, &[1, 2, 3, 4][..]));
//! assert_eq!(Repr::parse(&packet).unwrap(), repr);
//! ```

use super::ethernet::EtherType;
use super::{Layer, Vni, WireError, need};

mod field {
    use std::ops::Range;
    pub(super) const VER_OPTLEN: usize = 0;
    pub(super) const FLAGS: usize = 1;
    pub(super) const PROTOCOL: Range<usize> = 2..4;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const RESERVED: usize = 7;
    pub(super) const OPTIONS_START: usize = 8;

    // Within one option.
    pub(super) const OPT_CLASS: Range<usize> = 0..2;
    pub(super) const OPT_TYPE: usize = 2;
    pub(super) const OPT_LEN: usize = 3;
    pub(super) const OPT_DATA_START: usize = 4;
}

/// Length of the fixed Geneve header.
pub const HEADER_LEN: usize = field::OPTIONS_START;
/// The IANA-assigned Geneve UDP port.
pub const DEFAULT_PORT: u16 = 6081;
/// Largest option area (Opt Len is 6 bits of 4-byte words).
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// Largest option data (the option Length is 5 bits of 4-byte words).
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;
/// Length of an option header.
pub const OPTION_HEADER_LEN: usize = field::OPT_DATA_START;

const FLAG_O: u8 = 0x80;
const FLAG_C: u8 = 0x40;
/// The critical bit of an option type.
pub const CRITICAL_TYPE_BIT: u8 = 0x80;

/// A borrowed Geneve option, as yielded by [`Options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeneveOptionRef<'a> {
    class: u16,
    type_: u8,
    data: &'a [u8],
}

impl<'a> GeneveOptionRef<'a> {
    /// Option class.
    #[inline]
    pub fn class(&self) -> u16 {
        self.class
    }

    /// Option type (the high bit is the critical bit).
    #[inline]
    pub fn type_(&self) -> u8 {
        self.type_
    }

    /// True if the critical bit of the type is set.
    #[inline]
    pub fn is_critical(&self) -> bool {
        self.type_ & CRITICAL_TYPE_BIT != 0
    }

    /// Option data (a multiple of 4 bytes, at most 124).
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Copies the option into an owned [`GeneveOption`].
    #[inline]
    pub fn to_owned(&self) -> GeneveOption {
        GeneveOption {
            class: self.class,
            type_: self.type_,
            data: self.data.to_vec(),
        }
    }
}

/// An owned Geneve option; its data is a multiple of 4 bytes, at most 124.
///
/// ```
/// use overlay_core::wire::geneve::GeneveOption;
/// let opt = GeneveOption::new(0xffff, 0x01, vec![0; 8]).unwrap();
/// assert_eq!(opt.wire_len(), 12);
/// assert!(!opt.is_critical());
/// assert!(GeneveOption::new(0xffff, 0x01, vec![0; 3]).is_err());
/// assert!(GeneveOption::new(0xffff, 0x01, vec![0; 128]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GeneveOption {
    class: u16,
    type_: u8,
    data: Vec<u8>,
}

impl GeneveOption {
    /// Builds an option, checking the data length.
    #[inline]
    pub fn new(class: u16, type_: u8, data: Vec<u8>) -> Result<GeneveOption, WireError> {
        if data.len() > MAX_OPTION_DATA_LEN {
            return Err(WireError::ValueOutOfRange {
                layer: Layer::GeneveOption,
                field: "option data",
                value: data.len(),
                max: MAX_OPTION_DATA_LEN,
            });
        }
        if !data.len().is_multiple_of(4) {
            return Err(WireError::NotWordAligned {
                layer: Layer::GeneveOption,
                field: "option data",
                value: data.len(),
            });
        }
        Ok(GeneveOption { class, type_, data })
    }

    /// Option class.
    #[inline]
    pub fn class(&self) -> u16 {
        self.class
    }

    /// Option type (the high bit is the critical bit).
    #[inline]
    pub fn type_(&self) -> u8 {
        self.type_
    }

    /// True if the critical bit of the type is set.
    #[inline]
    pub fn is_critical(&self) -> bool {
        self.type_ & CRITICAL_TYPE_BIT != 0
    }

    /// Option data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Bytes on the wire: 4-byte header plus data.
    #[inline]
    pub fn wire_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len()
    }

    /// Writes the option to the start of `buf`, which must hold
    /// [`wire_len`](Self::wire_len) bytes; returns the bytes written.
    #[inline]
    fn emit(&self, buf: &mut [u8]) -> usize {
        let end = self.wire_len();
        buf[field::OPT_CLASS].copy_from_slice(&self.class.to_be_bytes());
        buf[field::OPT_TYPE] = self.type_;
        // data.len() <= 124 by construction, so the word count fits in 5 bits.
        buf[field::OPT_LEN] = (self.data.len() / 4) as u8;
        buf[OPTION_HEADER_LEN..end].copy_from_slice(&self.data);
        end
    }
}

impl From<GeneveOptionRef<'_>> for GeneveOption {
    #[inline]
    fn from(opt: GeneveOptionRef<'_>) -> Self {
        opt.to_owned()
    }
}

/// Iterator over the TLV options of a Geneve header.
///
/// Yields each option, or once a [`WireError::BadOptionLength`] for an option
/// that runs past the option area, after which it stops. Offsets in errors
/// count from the start of the Geneve header.
///
/// ```
/// use overlay_core::wire::{WireError, geneve::Options};
/// // One option claiming 8 data bytes in a 4-byte area.
/// let mut it = Options::new(&[0x01, 0x02, 0x03, 0x02]);
/// assert_eq!(it.next(), Some(Err(WireError::BadOptionLength { offset: 8, length: 12, area_end: 12 })));
/// assert_eq!(it.next(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Options<'a> {
    area: &'a [u8],
    pos: usize,
}

impl<'a> Options<'a> {
    /// Iterates over a raw option area (the bytes after the fixed header).
    #[inline]
    pub fn new(area: &'a [u8]) -> Options<'a> {
        Options { area, pos: 0 }
    }

    /// The raw option area.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.area
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<GeneveOptionRef<'a>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.area.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = HEADER_LEN + self.pos;
        let area_end = HEADER_LEN + self.area.len();
        let bad = |length| {
            Some(Err(WireError::BadOptionLength {
                offset,
                length,
                area_end,
            }))
        };
        let (Some(class), Some(&type_), Some(&len_byte)) = (
            rest.get(field::OPT_CLASS),
            rest.get(field::OPT_TYPE),
            rest.get(field::OPT_LEN),
        ) else {
            self.pos = self.area.len();
            return bad(OPTION_HEADER_LEN);
        };
        let length = OPTION_HEADER_LEN + usize::from(len_byte & 0x1f) * 4;
        let Some(data) = rest.get(OPTION_HEADER_LEN..length) else {
            self.pos = self.area.len();
            return bad(length);
        };
        self.pos += length;
        Some(Ok(GeneveOptionRef {
            class: u16::from_be_bytes([class[0], class[1]]),
            type_,
            data,
        }))
    }
}

super::packet_view!("a Geneve header and its payload");

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the fixed header and the option area
    /// that Opt Len announces. Options themselves are checked by
    /// [`options`](Self::options) and [`Repr::parse`].
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        need(Layer::Geneve, HEADER_LEN, len)?;
        need(Layer::Geneve, self.header_len(), len)
    }

    /// Version (must be 0).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }

    /// Length of the option area in bytes (Opt Len times 4).
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) * 4
    }

    /// Header length including options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// O bit: the payload is an OAM (control) frame.
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_O != 0
    }

    /// C bit: critical options are present.
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_C != 0
    }

    /// Protocol type of the payload (`0x6558` for Ethernet).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        let d = self.buffer.as_ref();
        EtherType::from(u16::from_be_bytes([
            d[field::PROTOCOL.start],
            d[field::PROTOCOL.start + 1],
        ]))
    }

    /// The 24-bit VNI.
    #[inline]
    pub fn vni(&self) -> Vni {
        let d = self.buffer.as_ref();
        Vni::from_be_bytes([d[4], d[5], d[6]])
    }

    /// True if any reserved bit of the fixed header is set.
    #[inline]
    pub fn reserved_bits_set(&self) -> bool {
        let d = self.buffer.as_ref();
        d[field::FLAGS] & !(FLAG_O | FLAG_C) != 0 || d[field::RESERVED] != 0
    }

    /// The raw option area.
    #[inline]
    pub fn options_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Iterates over the options.
    #[inline]
    pub fn options(&self) -> Options<'_> {
        Options::new(self.options_bytes())
    }

    /// Checks everything [`Repr::parse`] checks, without allocating: version
    /// 0, every option inside the option area, and the C bit set if any
    /// option is critical. Call after [`check_len`](Self::check_len).
    ///
    /// ```
    /// use overlay_core::wire::{WireError, geneve::Packet};
    /// // Version 0, one critical option (type 0x80) but C clear.
    /// let bytes = [0x01, 0x00, 0x65, 0x58, 0, 0, 1, 0, 0x01, 0x02, 0x80, 0x00];
    /// let packet = Packet::new_checked(&bytes[..]).unwrap();
    /// assert_eq!(packet.validate(), Err(WireError::CriticalBitNotSet { offset: 8, type_: 0x80 }));
    /// ```
    #[inline]
    pub fn validate(&self) -> Result<(), WireError> {
        if self.version() != 0 {
            return Err(WireError::BadVersion {
                layer: Layer::Geneve,
                version: self.version(),
            });
        }
        let critical = self.critical();
        let mut offset = HEADER_LEN;
        for opt in self.options() {
            let opt = opt?;
            if opt.is_critical() && !critical {
                return Err(WireError::CriticalBitNotSet {
                    offset,
                    type_: opt.type_(),
                });
            }
            offset += OPTION_HEADER_LEN + opt.data().len();
        }
        Ok(())
    }

    /// The encapsulated payload (after the options).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (after the options), borrowed for the buffer's whole lifetime
    /// rather than the view's, so it can outlive the `Packet`.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let start = self.header_len();
        &T::as_ref(self.buffer)[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version (2 bits) and option area length in bytes (a multiple of
    /// 4, at most 252; extra bits are masked off).
    #[inline]
    pub fn set_version_and_options_len(&mut self, version: u8, options_len: usize) {
        // (options_len / 4) & 0x3f fits in 6 bits.
        let words = ((options_len / 4) & 0x3f) as u8;
        self.buffer.as_mut()[field::VER_OPTLEN] = (version << 6) | words;
    }

    /// Sets the O and C bits (the other flag bits are cleared).
    #[inline]
    pub fn set_flags(&mut self, oam: bool, critical: bool) {
        let mut flags = 0;
        if oam {
            flags |= FLAG_O;
        }
        if critical {
            flags |= FLAG_C;
        }
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Sets the VNI.
    #[inline]
    pub fn set_vni(&mut self, vni: Vni) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&vni.to_be_bytes());
    }

    /// Sets the reserved byte after the VNI.
    #[inline]
    pub fn set_reserved(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED] = value;
    }

    /// The option area, mutably.
    #[inline]
    pub fn options_bytes_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// A parsed Geneve header with its options.
///
/// The C bit is not stored: [`emit`](Repr::emit) sets it exactly when an
/// option is critical (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// O bit: the payload is an OAM frame.
    pub oam: bool,
    /// Protocol type of the payload.
    pub protocol_type: EtherType,
    /// The virtual network identifier.
    pub vni: Vni,
    /// Options in wire order, byte-exact.
    pub options: Vec<GeneveOption>,
}

impl Repr {
    /// Reads a header: version 0, well-formed options, consistent C bit
    /// (see [`Packet::validate`]).
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        packet.validate()?;
        let options = packet
            .options()
            .map(|opt| opt.map(|o| o.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Repr {
            oam: packet.oam(),
            protocol_type: packet.protocol_type(),
            vni: packet.vni(),
            options,
        })
    }

    /// Length of the option area in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        self.options.iter().map(GeneveOption::wire_len).sum()
    }

    /// Header length including options.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// True if any option is critical (the C bit that emit writes).
    #[inline]
    pub fn critical(&self) -> bool {
        self.options.iter().any(GeneveOption::is_critical)
    }

    /// Checks that the options fit the 6-bit Opt Len (at most 252 bytes).
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        let len = self.options_len();
        if len > MAX_OPTIONS_LEN {
            return Err(WireError::ValueOutOfRange {
                layer: Layer::Geneve,
                field: "options length",
                value: len,
                max: MAX_OPTIONS_LEN,
            });
        }
        Ok(())
    }

    /// Writes the header and its options; fails (writing nothing) if the
    /// options are longer than 252 bytes or the buffer is shorter than
    /// [`buffer_len`](Self::buffer_len).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
    ) -> Result<(), WireError> {
        self.check()?;
        need(
            Layer::Geneve,
            self.buffer_len(),
            packet.buffer.as_ref().len(),
        )?;
        packet.set_version_and_options_len(0, self.options_len());
        packet.set_flags(self.oam, self.critical());
        packet.set_protocol_type(self.protocol_type);
        packet.set_vni(self.vni);
        packet.set_reserved(0);
        let mut area = packet.options_bytes_mut();
        for opt in &self.options {
            let n = opt.emit(area);
            area = &mut area[n..];
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    // A Geneve header as Open vSwitch sends it with one option of its
    // registered class 0x0102 (RFC 8926 IANA "Geneve Option Class"):
    //   00 ..: version 0, Opt Len 2 words (8 bytes)      -> 0x02
    //   C set (critical option present)                  -> 0x40
    //   protocol 0x6558 (Transparent Ethernet Bridging)
    //   VNI 0x000064 (100), reserved 0
    //   option: class 0x0102, type 0x80 (critical), length 1 word, data
    //           de ad be ef
    // Assembled by hand from the RFC 8926 section 3 diagrams.
    const GOLDEN: [u8; 16] = [
        0x02, 0x40, 0x65, 0x58, 0x00, 0x00, 0x64, 0x00, 0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe,
        0xef,
    ];
    // RFC 8926 without options, O bit set, protocol IPv4, VNI 0xffffff.
    const GOLDEN_OAM: [u8; 8] = [0x00, 0x80, 0x08, 0x00, 0xff, 0xff, 0xff, 0x00];

    #[test]
    fn golden_header_with_option_parses_and_emits_identically() {
        let packet = Packet::new_checked(&GOLDEN[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                oam: false,
                protocol_type: EtherType::TransparentEthernetBridging,
                vni: Vni::new(100).unwrap(),
                options: vec![
                    GeneveOption::new(0x0102, 0x80, vec![0xde, 0xad, 0xbe, 0xef]).unwrap()
                ],
            }
        );
        let mut out = [0u8; 16];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, GOLDEN);
    }

    #[test]
    fn golden_oam_header_without_options_parses_and_emits_identically() {
        let repr = Repr::parse(&Packet::new_checked(&GOLDEN_OAM[..]).unwrap()).unwrap();
        assert!(repr.oam && repr.options.is_empty());
        assert_eq!(repr.protocol_type, EtherType::Ipv4);
        assert_eq!(repr.vni, Vni::MAX);
        let mut out = [0u8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, GOLDEN_OAM);
    }

    #[test]
    fn nonzero_version_is_rejected() {
        let mut buf = GOLDEN_OAM;
        buf[0] = 0x40;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(WireError::BadVersion {
                layer: Layer::Geneve,
                version: 1
            })
        );
    }

    #[test]
    fn option_running_past_the_area_is_rejected_with_its_offset() {
        let mut buf = GOLDEN;
        buf[11] = 0x02; // 2 data words, but only 1 word is left in the area
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(WireError::BadOptionLength {
                offset: 8,
                length: 12,
                area_end: 16
            })
        );
    }

    #[test]
    fn option_area_beyond_buffer_is_truncated() {
        assert_eq!(
            Packet::new_checked(&GOLDEN[..12]),
            Err(WireError::Truncated {
                layer: Layer::Geneve,
                needed: 16,
                got: 12
            })
        );
    }

    #[test]
    fn critical_option_without_c_bit_is_rejected() {
        let mut buf = GOLDEN;
        buf[1] = 0x00;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(WireError::CriticalBitNotSet {
                offset: 8,
                type_: 0x80
            })
        );
    }

    #[test]
    fn c_bit_without_critical_option_is_accepted_and_normalised() {
        let mut buf = GOLDEN;
        buf[10] = 0x01; // non-critical type
        let repr = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert!(!repr.critical());
        let mut out = [0u8; 16];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out[1], 0x00);
    }

    #[test]
    fn option_reserved_bits_are_ignored() {
        let mut buf = GOLDEN;
        buf[11] |= 0xe0;
        let repr = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(repr.options[0].data(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn options_longer_than_opt_len_can_hold_are_refused_on_emit() {
        let big = GeneveOption::new(1, 1, vec![0; MAX_OPTION_DATA_LEN]).unwrap();
        let repr = Repr {
            oam: false,
            protocol_type: EtherType::TransparentEthernetBridging,
            vni: Vni::new(1).unwrap(),
            options: vec![big.clone(), big.clone(), big],
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        assert!(matches!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(WireError::ValueOutOfRange {
                value: 384,
                max: 252,
                ..
            })
        ));
        assert!(buf.iter().all(|&b| b == 0));
    }

    pub(crate) fn arb_option() -> impl Strategy<Value = GeneveOption> {
        (any::<u16>(), any::<u8>(), 0usize..=8).prop_flat_map(|(c, t, words)| {
            proptest::collection::vec(any::<u8>(), words * 4)
                .prop_map(move |data| GeneveOption::new(c, t, data).unwrap())
        })
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            any::<bool>(),
            any::<u16>(),
            0u32..=0xff_ffff,
            proptest::collection::vec(arb_option(), 0..6),
        )
            .prop_map(|(oam, p, v, options)| Repr {
                oam,
                protocol_type: EtherType::from(p),
                vni: Vni::new(v).unwrap(),
                options,
            })
            .prop_filter("options must fit Opt Len", |r| r.check().is_ok())
    }

    #[test]
    fn emit_into_a_buffer_shorter_than_buffer_len_is_truncated_not_a_panic() {
        let repr = Repr {
            oam: false,
            protocol_type: EtherType::TransparentEthernetBridging,
            vni: Vni::new(1).unwrap(),
            options: vec![GeneveOption::new(1, 2, vec![0; 8]).unwrap()],
        };
        let mut buf = [0xeeu8; 19];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(WireError::Truncated {
                layer: Layer::Geneve,
                needed: 20,
                got: 19
            })
        );
        assert_eq!(buf, [0xee; 19], "nothing written");
    }

    proptest! {
        #[test]
        fn repr_emit_parse_round_trips(repr in arb_repr()) {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(!packet.reserved_bits_set());
            prop_assert_eq!(Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn parsed_bytes_re_emit_byte_exact(repr in arb_repr()) {
            // bytes -> Repr -> bytes is the identity on well-formed input.
            let mut first = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut first[..])).unwrap();
            let parsed = Repr::parse(&Packet::new_checked(&first[..]).unwrap()).unwrap();
            let mut second = vec![0u8; parsed.buffer_len()];
            parsed.emit(&mut Packet::new_unchecked(&mut second[..])).unwrap();
            prop_assert_eq!(first, second);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = packet.options().count();
                let _ = packet.payload();
            }
        }

        #[test]
        fn options_iterator_never_panics_and_terminates(area in proptest::collection::vec(any::<u8>(), 0..300)) {
            let n = Options::new(&area).take(1000).count();
            prop_assert!(n <= area.len() / 4 + 1);
        }

        #[test]
        fn parse_never_panics_on_truncations(cut in 0usize..16) {
            prop_assert!(Packet::new_checked(&GOLDEN[..cut]).is_err());
        }
    }
}
