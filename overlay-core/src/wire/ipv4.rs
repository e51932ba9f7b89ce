//! IPv4 headers (RFC 791), with the header checksum.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |    DSCP   |ECN|          Total Length         |
//! |         Identification        |Flags|     Fragment Offset     |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! **Options are preserved**: [`Repr`] carries them byte-exact in an inline
//! [`Options`] value (at most 40 bytes, no allocation), so a parsed header
//! emits back to the same bytes. They are not interpreted.
//!
//! [`Packet::check_len`] checks the IHL and the total length against the
//! buffer; the payload is bounded by the total length, so Ethernet padding
//! after the datagram is excluded. [`Repr::parse`] additionally checks the
//! version and verifies the header checksum. Fragments parse (the fields are
//! in the `Repr`); it is up to the caller to refuse them. The reserved flag
//! bit (which RFC 791 requires to be zero) is ignored, so a header with it set
//! does not re-emit byte-exact.
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
//! use std::net::Ipv4Addr;
//! use overlay_core::wire::{IpProtocol, ipv4::{Packet, Repr}};
//!
//! let repr = Repr::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2), IpProtocol::Udp, 8);
//! let mut buf = vec![0u8; repr.buffer_len() + 8];
//! repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
//! let packet = Packet::new_checked(&buf[..]).unwrap();
//! assert!(packet.verify_checksum());
//! assert_eq!(Repr::parse(&packet).unwrap(), repr);
//! ```

use std::net::Ipv4Addr;

use super::{IpProtocol, Layer, WireError, checksum, need};

mod field {
    use std::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLG_OFF: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC_ADDR: Range<usize> = 12..16;
    pub(super) const DST_ADDR: Range<usize> = 16..20;
    pub(super) const OPTIONS_START: usize = 20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::OPTIONS_START;
/// Largest option area (IHL 15 means 60 header bytes).
pub const MAX_OPTIONS_LEN: usize = 40;
/// Largest DSCP (6 bits), in the IPv4 TOS byte and the IPv6 traffic class.
pub const MAX_DSCP: u8 = 0x3f;
/// Largest ECN codepoint (2 bits), in the IPv4 TOS byte and the IPv6
/// traffic class.
pub const MAX_ECN: u8 = 0x03;
/// Largest fragment offset (13 bits, in 8-byte units).
const MAX_FRAG_OFFSET: u16 = 0x1fff;

/// Raw IPv4 options, kept inline (at most 40 bytes, a multiple of 4).
///
/// ```
/// use overlay_core::wire::ipv4::Options;
/// // Router Alert (RFC 2113) padded to 4 bytes.
/// let opts = Options::new(&[0x94, 0x04, 0x00, 0x00]).unwrap();
/// assert_eq!(opts.as_bytes(), &[0x94, 0x04, 0x00, 0x00]);
/// assert!(Options::new(&[1, 1, 1]).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl Options {
    /// No options.
    pub const EMPTY: Options = Options {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Copies option bytes, checking that they fit the IHL field: a multiple
    /// of 4 bytes, at most 40.
    #[inline(always)]
    pub fn new(bytes: &[u8]) -> Result<Options, WireError> {
        if bytes.len() > MAX_OPTIONS_LEN {
            return Err(WireError::ValueOutOfRange {
                layer: Layer::Ipv4,
                field: "options",
                value: bytes.len(),
                max: MAX_OPTIONS_LEN,
            });
        }
        if !bytes.len().is_multiple_of(4) {
            return Err(WireError::NotWordAligned {
                layer: Layer::Ipv4,
                field: "options",
                value: bytes.len(),
            });
        }
        let mut out = Options::EMPTY;
        out.bytes[..bytes.len()].copy_from_slice(bytes);
        // bytes.len() <= 40 was checked above.
        out.len = bytes.len() as u8;
        Ok(out)
    }

    /// Copies options from a packet that passed `check_len`: the 4-bit IHL
    /// bounds them to 40 bytes in 4-byte words, so nothing is cut off.
    #[inline(always)]
    fn from_checked(bytes: &[u8]) -> Options {
        let len = bytes.len().min(MAX_OPTIONS_LEN) & !3;
        let mut out = Options::EMPTY;
        out.bytes[..len].copy_from_slice(&bytes[..len]);
        // len <= 40.
        out.len = len as u8;
        out
    }

    /// The option bytes.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True if there are no options.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Options {
    #[inline(always)]
    fn default() -> Self {
        Options::EMPTY
    }
}

impl std::fmt::Debug for Options {
    #[inline(always)]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Options").field(&self.as_bytes()).finish()
    }
}

super::packet_view!("an IPv4 packet");

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the fixed header, that the IHL is at
    /// least 5 and within the buffer, and that the total length is at least
    /// the header length and within the buffer.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        need(Layer::Ipv4, HEADER_LEN, len)?;
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::BadLength {
                layer: Layer::Ipv4,
                field: "ihl",
                offset: field::VER_IHL,
                // The field's value (in 32-bit words), not the length.
                value: header_len / 4,
            });
        }
        need(Layer::Ipv4, header_len, len)?;
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::BadLength {
                layer: Layer::Ipv4,
                field: "total length",
                offset: field::LENGTH.start,
                value: total_len,
            });
        }
        need(Layer::Ipv4, total_len, len)
    }

    #[inline(always)]
    fn u16_at(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    /// Version field (4 for IPv4).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL times 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (6 bits).
    #[inline(always)]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline(always)]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length of the datagram (header and payload).
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH.start)
    }

    /// Identification.
    #[inline(always)]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT.start)
    }

    /// Don't-fragment flag.
    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & 0x4000 != 0
    }

    /// More-fragments flag.
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & 0x2000 != 0
    }

    /// The reserved (evil) bit, which must be zero.
    #[inline(always)]
    pub fn reserved_flag(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & 0x8000 != 0
    }

    /// Fragment offset in units of 8 bytes.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        self.u16_at(field::FLG_OFF.start) & 0x1fff
    }

    /// Time to live.
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline(always)]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as on the wire.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[12], d[13], d[14], d[15])
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = self.buffer.as_ref();
        Ipv4Addr::new(d[16], d[17], d[18], d[19])
    }

    /// Raw options (bytes 20..header length).
    #[inline(always)]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    /// True if the header checksum verifies.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        checksum::small(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// Checks what [`Repr::parse`] checks beyond [`check_len`](Self::check_len):
    /// version 4 and a correct header checksum. Call after `check_len`.
    #[inline(always)]
    pub fn validate(&self) -> Result<(), WireError> {
        if self.version() != 4 {
            return Err(WireError::BadVersion {
                layer: Layer::Ipv4,
                version: self.version(),
            });
        }
        if !self.verify_checksum() {
            return Err(WireError::BadChecksum {
                layer: Layer::Ipv4,
                offset: field::CHECKSUM.start,
                found: self.checksum(),
            });
        }
        Ok(())
    }

    /// The payload, bounded by the total length (padding excluded).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (bounded by the total length), borrowed for the buffer's whole lifetime
    /// rather than the view's, so it can outlive the `Packet`.
    #[inline(always)]
    pub fn into_payload(self) -> &'a [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &T::as_ref(self.buffer)[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline(always)]
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version and the header length in bytes (a multiple of 4,
    /// at most 60; extra bits are masked off).
    #[inline(always)]
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        // header_len / 4 <= 15 after masking.
        let ihl = ((header_len / 4) & 0x0f) as u8;
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ihl;
    }

    /// Sets DSCP (6 bits) and ECN (2 bits); extra bits are masked off.
    #[inline(always)]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 0x03);
    }

    /// Sets the total length.
    #[inline(always)]
    pub fn set_total_len(&mut self, value: u16) {
        self.set_u16_at(field::LENGTH.start, value);
    }

    /// Sets the identification.
    #[inline(always)]
    pub fn set_ident(&mut self, value: u16) {
        self.set_u16_at(field::IDENT.start, value);
    }

    /// Sets the flags and the fragment offset (in 8-byte units, 13 bits).
    #[inline(always)]
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let value =
            (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | (offset & 0x1fff);
        self.set_u16_at(field::FLG_OFF.start, value);
    }

    /// Sets the time to live.
    #[inline(always)]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    #[inline(always)]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Sets the checksum field to a raw value.
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Sets the source address.
    #[inline(always)]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline(always)]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and writes the header checksum over the current header.
    #[inline(always)]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = !checksum::data(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(sum);
    }

    /// The options area, mutably.
    #[inline(always)]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..end]
    }

    /// The payload (bounded by the total length), mutably.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// A parsed IPv4 header.
///
/// Every field must fit its wire field: `dscp` 6 bits, `ecn` 2 bits,
/// `frag_offset` 13 bits, and `payload_len` plus
/// [`buffer_len`](Repr::buffer_len) the 16-bit total length.
/// [`check`](Repr::check) and [`emit`](Repr::emit) refuse anything else with
/// [`WireError::ValueOutOfRange`] rather than cut it; parse never produces it.
///
/// ```
/// use std::net::Ipv4Addr;
/// use overlay_core::wire::{IpProtocol, Layer, WireError, ipv4::{Packet, Repr}};
///
/// let mut repr = Repr::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2), IpProtocol::Udp, 8);
/// repr.dscp = 64; // one bit too many
/// let mut buf = [0u8; 20];
/// assert_eq!(
///     repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
///     Err(WireError::ValueOutOfRange { layer: Layer::Ipv4, field: "dscp", value: 64, max: 63 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// More-fragments flag.
    pub more_frags: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub frag_offset: u16,
    /// Options, preserved byte-exact.
    pub options: Options,
}

impl Repr {
    /// A header with the usual defaults for a tunnel: TTL 64, DF set, no
    /// options, DSCP/ECN 0, identification 0.
    #[inline(always)]
    pub fn new(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
    ) -> Repr {
        Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Options::EMPTY,
        }
    }

    /// Reads and validates a header: length checks, version 4 and a correct
    /// header checksum (see [`Packet::validate`]). The reserved flag bit is
    /// ignored and not kept.
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        packet.validate()?;
        Ok(Self::read(packet))
    }

    /// Reads the fields of a packet that passed `check_len`.
    #[inline(always)]
    pub(crate) fn read<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Repr {
        Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options: Options::from_checked(packet.options()),
        }
    }

    /// Header length: 20 plus the options.
    #[inline(always)]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Checks that every field fits its wire field (see [`Repr`]).
    #[inline(always)]
    pub fn check(&self) -> Result<(), WireError> {
        let out_of_range = |field, value: usize, max: usize| {
            (value > max).then_some(WireError::ValueOutOfRange {
                layer: Layer::Ipv4,
                field,
                value,
                max,
            })
        };
        let max_payload = usize::from(u16::MAX) - self.buffer_len();
        match out_of_range("dscp", self.dscp.into(), MAX_DSCP.into())
            .or_else(|| out_of_range("ecn", self.ecn.into(), MAX_ECN.into()))
            .or_else(|| {
                out_of_range(
                    "frag_offset",
                    self.frag_offset.into(),
                    MAX_FRAG_OFFSET.into(),
                )
            })
            .or_else(|| out_of_range("payload_len", self.payload_len, max_payload))
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Writes the header, including the checksum, after
    /// [`check`](Self::check) and a check that the buffer holds
    /// [`buffer_len`](Self::buffer_len) bytes; on error nothing is written.
    /// The payload is not touched.
    #[inline(always)]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
    ) -> Result<(), WireError> {
        self.check()?;
        let header_len = self.buffer_len();
        need(Layer::Ipv4, header_len, packet.buffer.as_ref().len())?;
        packet.set_version_and_header_len(4, header_len);
        packet.set_dscp_ecn(self.dscp, self.ecn);
        // `check` bounded header plus payload by u16::MAX.
        packet.set_total_len((header_len + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_flags_and_frag_offset(self.dont_frag, self.more_frags, self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet
            .options_mut()
            .copy_from_slice(self.options.as_bytes());
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    // The worked example from Wikipedia "Internet checksum"/"IPv4 header
    // checksum": 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7,
    // a UDP datagram 192.168.0.1 -> 192.168.0.199, TTL 64, DF, checksum
    // 0xb861 (computed there by hand, independently of this code).
    const GOLDEN: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn golden_buf() -> Vec<u8> {
        let mut buf = GOLDEN.to_vec();
        buf.resize(0x73, 0);
        buf
    }

    #[test]
    fn golden_header_parses_and_emits_identically() {
        let buf = golden_buf();
        let packet = Packet::new_checked(&buf[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        let mut want = Repr::new(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            IpProtocol::Udp,
            0x73 - 20,
        );
        want.ttl = 64;
        assert_eq!(repr, want);
        let mut out = [0u8; 0x73];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[..20], &GOLDEN[..]);
    }

    #[test]
    fn corrupted_checksum_is_rejected_with_its_offset() {
        let mut buf = golden_buf();
        buf[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(WireError::BadChecksum {
                layer: Layer::Ipv4,
                offset: 10,
                found: 0xb860
            })
        );
    }

    #[test]
    fn bad_ihl_total_length_and_version_are_rejected() {
        let mut buf = golden_buf();
        buf[0] = 0x44;
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(WireError::BadLength {
                field: "ihl",
                value: 4,
                ..
            })
        ));
        assert_eq!(
            Packet::new_checked(&buf[..]).unwrap_err().to_string(),
            "IPv4: length field `ihl` at byte 0 holds invalid value 4"
        );
        let mut buf = golden_buf();
        buf[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(WireError::BadLength {
                field: "total length",
                value: 19,
                ..
            })
        ));
        let buf = golden_buf();
        assert_eq!(
            Packet::new_checked(&buf[..0x72]),
            Err(WireError::Truncated {
                layer: Layer::Ipv4,
                needed: 0x73,
                got: 0x72
            })
        );
        let mut buf = golden_buf();
        buf[0] = 0x65;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(WireError::BadVersion {
                layer: Layer::Ipv4,
                version: 6
            })
        );
    }

    #[test]
    fn options_are_preserved_byte_exact() {
        let mut repr = Repr::new(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            IpProtocol::Udp,
            0,
        );
        repr.options = Options::new(&[0x94, 0x04, 0x00, 0x00]).unwrap();
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf[0], 0x46);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(Repr::parse(&packet).unwrap(), repr);
    }

    #[test]
    fn payload_excludes_link_layer_padding() {
        let mut buf = golden_buf();
        buf.extend_from_slice(&[0xee; 6]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.payload().len(), 0x73 - 20);
    }

    #[test]
    fn fields_beyond_their_wire_width_are_refused_not_cut() {
        let base = Repr::new(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            IpProtocol::Udp,
            0,
        );
        /// A field name, how to spoil it, the spoilt value and the maximum.
        type Case = (&'static str, fn(&mut Repr), usize, usize);
        let cases: [Case; 4] = [
            ("dscp", |r| r.dscp = 64, 64, 63),
            ("ecn", |r| r.ecn = 4, 4, 3),
            ("frag_offset", |r| r.frag_offset = 0x2000, 0x2000, 0x1fff),
            ("payload_len", |r| r.payload_len = 65_516, 65_516, 65_515),
        ];
        for (field, spoil, value, max) in cases {
            let mut repr = base;
            spoil(&mut repr);
            let mut buf = [0xeeu8; HEADER_LEN];
            assert_eq!(
                repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
                Err(WireError::ValueOutOfRange {
                    layer: Layer::Ipv4,
                    field,
                    value,
                    max
                })
            );
            assert_eq!(buf, [0xee; HEADER_LEN], "{field}: nothing written");
        }
    }

    #[test]
    fn largest_value_of_every_field_emits_and_parses_back() {
        let mut repr = Repr::new(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            IpProtocol::Udp,
            65_535 - HEADER_LEN,
        );
        (repr.dscp, repr.ecn, repr.frag_offset) = (63, 3, 0x1fff);
        let mut buf = vec![0u8; 65_535];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
    }

    #[test]
    fn emit_into_a_buffer_shorter_than_buffer_len_is_truncated_not_a_panic() {
        let mut repr = Repr::new(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            IpProtocol::Udp,
            0,
        );
        repr.options = Options::new(&[1, 1, 1, 1]).unwrap();
        let mut buf = [0u8; HEADER_LEN];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(WireError::Truncated {
                layer: Layer::Ipv4,
                needed: 24,
                got: 20
            })
        );
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            (
                any::<[u8; 4]>(),
                any::<[u8; 4]>(),
                any::<u8>(),
                0usize..1500,
                any::<u8>(),
            ),
            (
                0u8..64,
                0u8..4,
                any::<u16>(),
                any::<bool>(),
                any::<bool>(),
                0u16..0x2000,
            ),
            (0usize..=10).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4)),
        )
            .prop_map(
                |((s, d, p, len, ttl), (dscp, ecn, ident, df, mf, off), opts)| Repr {
                    src_addr: s.into(),
                    dst_addr: d.into(),
                    protocol: IpProtocol::from(p),
                    payload_len: len,
                    ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off,
                    options: Options::new(&opts).unwrap(),
                },
            )
    }

    proptest! {
        #[test]
        fn repr_emit_parse_round_trips(repr in arb_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&packet).unwrap(), repr);
        }

        /// One field pushed past its wire width, the others valid: emit
        /// names that field, and writes nothing into a `buffer_len()` buffer.
        #[test]
        fn emit_refuses_any_field_beyond_its_wire_width(
            repr in arb_repr(),
            which in 0usize..4,
            excess in 1usize..10_000,
        ) {
            let mut repr = repr;
            let max_payload = 65_535 - repr.buffer_len();
            let (field, value, max) = match which {
                0 => { repr.dscp = (63 + excess).min(255) as u8; ("dscp", usize::from(repr.dscp), 63) }
                1 => { repr.ecn = (3 + excess).min(255) as u8; ("ecn", usize::from(repr.ecn), 3) }
                2 => { repr.frag_offset = (0x1fff + excess) as u16; ("frag_offset", usize::from(repr.frag_offset), 0x1fff) }
                _ => { repr.payload_len = max_payload + excess; ("payload_len", repr.payload_len, max_payload) }
            };
            let mut buf = vec![0xeeu8; repr.buffer_len()];
            prop_assert_eq!(
                repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
                Err(WireError::ValueOutOfRange { layer: Layer::Ipv4, field, value, max })
            );
            prop_assert!(buf.iter().all(|&b| b == 0xee));
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = (packet.payload(), packet.options());
            }
        }

        #[test]
        fn parse_never_panics_on_truncations(cut in 0usize..0x73) {
            let buf = golden_buf();
            prop_assert!(Packet::new_checked(&buf[..cut]).is_err());
        }
    }
}
