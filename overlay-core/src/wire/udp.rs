//! UDP headers (RFC 768) with checksums over the IPv4 or IPv6 pseudo-header.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! |            Length             |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! # Zero checksums
//!
//! * Over IPv4 a zero checksum means "no checksum" (RFC 768) and is always
//!   accepted. RFC 7348 section 5 says VXLAN over IPv4 SHOULD send a zero
//!   checksum, and the [`encap`](crate::encap) defaults do; the Linux kernel's
//!   VXLAN device, by contrast, computes it by default (`udpcsum`, usually
//!   offloaded to the NIC) unless created with `noudpcsum`.
//! * Over IPv6 the checksum is mandatory (RFC 8200 section 8.1), so
//!   [`Repr::parse`] rejects a zero checksum with
//!   [`WireError::ZeroUdpChecksumIpv6`] unless the caller opts in with
//!   [`ParseOptions::allow_zero_checksum_ipv6`]. RFC 6935 and RFC 6936 permit
//!   zero checksums over IPv6 for tunnel protocols on endpoints configured for
//!   it (Linux: `udp6zerocsumrx`); the opt-in is exactly that configuration.
//!
//! A computed checksum of `0x0000` is sent as `0xffff` (RFC 768).
//!
//! # Panic contract
//!
//! [`Packet::new_checked`] and [`Repr::parse`] never panic. After
//! [`Packet::check_len`] succeeded no accessor panics. [`Repr::emit`] never
//! panics: it refuses a payload length the 16-bit length field cannot hold
//! ([`Repr::check`]), a buffer shorter than [`Repr::buffer_len`], and, when
//! it computes the checksum (which covers the payload), a buffer that does
//! not hold the `payload_len` bytes after the header.
//!
//! # Example
//!
//! ```
//! use std::net::Ipv6Addr;
//! use overlay_core::wire::udp::{AddrPair, Checksum, Packet, ParseOptions, Repr};
//!
//! let addrs = AddrPair::from(("2001:db8::1".parse::<Ipv6Addr>().unwrap(), "2001:db8::2".parse::<Ipv6Addr>().unwrap()));
//! let repr = Repr { src_port: 49152, dst_port: 4789, payload_len: 4 };
//! let mut buf = [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
//! repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &addrs, Checksum::Compute).unwrap();
//! let packet = Packet::new_checked(&buf[..]).unwrap();
//! assert!(packet.verify_checksum(&addrs));
//! assert_eq!(Repr::parse(&packet, &addrs, &ParseOptions::default()).unwrap(), repr);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Layer, WireError, checksum, need};

mod field {
    use std::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;
/// Largest payload the 16-bit length field describes (65535 - 8).
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize - HEADER_LEN;
/// IP protocol number of UDP.
const PROTOCOL_UDP: u8 = 17;

/// The source and destination addresses of the IP header that carries a
/// datagram, for the checksum pseudo-header. Both are of the same family by
/// construction.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use overlay_core::wire::udp::AddrPair;
/// let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// let b = IpAddr::V6("2001:db8::1".parse().unwrap());
/// assert!(AddrPair::new(a, a).is_some());
/// assert!(AddrPair::new(a, b).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrPair {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl AddrPair {
    /// Pairs two addresses; `None` if their families differ.
    #[inline(always)]
    pub fn new(src: IpAddr, dst: IpAddr) -> Option<AddrPair> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(AddrPair::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(AddrPair::V6 { src, dst }),
            _ => None,
        }
    }

    /// Partial checksum of the pseudo-header for a UDP length of `len`.
    #[inline(always)]
    pub fn pseudo_header_sum(&self, len: u16) -> u16 {
        match *self {
            AddrPair::V4 { src, dst } => checksum::pseudo_header_v4(src, dst, PROTOCOL_UDP, len),
            AddrPair::V6 { src, dst } => {
                checksum::pseudo_header_v6(src, dst, PROTOCOL_UDP, u32::from(len))
            }
        }
    }

    /// True for IPv6.
    #[inline(always)]
    pub fn is_ipv6(&self) -> bool {
        matches!(self, AddrPair::V6 { .. })
    }
}

impl From<(Ipv4Addr, Ipv4Addr)> for AddrPair {
    #[inline(always)]
    fn from((src, dst): (Ipv4Addr, Ipv4Addr)) -> Self {
        AddrPair::V4 { src, dst }
    }
}

impl From<(Ipv6Addr, Ipv6Addr)> for AddrPair {
    #[inline(always)]
    fn from((src, dst): (Ipv6Addr, Ipv6Addr)) -> Self {
        AddrPair::V6 { src, dst }
    }
}

/// How [`Repr::parse`] treats the checksum.
///
/// ```
/// use overlay_core::wire::udp::ParseOptions;
/// let tunnel = ParseOptions::default().allow_zero_checksum_ipv6(true);
/// assert!(tunnel.verifies_checksum());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    verify_checksum: bool,
    allow_zero_checksum_ipv6: bool,
}

impl Default for ParseOptions {
    /// Verify non-zero checksums; reject zero checksums over IPv6.
    #[inline(always)]
    fn default() -> Self {
        ParseOptions {
            verify_checksum: true,
            allow_zero_checksum_ipv6: false,
        }
    }
}

impl ParseOptions {
    /// Whether non-zero checksums are verified (default: yes). Turn off only
    /// when the NIC already verified them.
    #[inline(always)]
    pub fn verify_checksum(mut self, on: bool) -> Self {
        self.verify_checksum = on;
        self
    }

    /// Whether a zero checksum over IPv6 is accepted (default: no). This is
    /// the RFC 6935/6936 exception for tunnel endpoints.
    #[inline(always)]
    pub fn allow_zero_checksum_ipv6(mut self, on: bool) -> Self {
        self.allow_zero_checksum_ipv6 = on;
        self
    }

    /// True if non-zero checksums are verified.
    #[inline(always)]
    pub fn verifies_checksum(&self) -> bool {
        self.verify_checksum
    }

    /// True if zero checksums over IPv6 are accepted.
    #[inline(always)]
    pub fn allows_zero_checksum_ipv6(&self) -> bool {
        self.allow_zero_checksum_ipv6
    }
}

/// What [`Repr::emit`] writes into the checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Checksum {
    /// Compute the checksum over pseudo-header, header and payload. This
    /// reads every payload byte.
    Compute,
    /// Write zero ("no checksum"). Always valid over IPv4; over IPv6 only
    /// towards receivers that accept it (RFC 6935/6936).
    Zero,
}

super::packet_view!("a UDP datagram");

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the header, that the length field is at
    /// least 8, and that the buffer holds the length it announces.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        need(Layer::Udp, HEADER_LEN, len)?;
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(WireError::BadLength {
                layer: Layer::Udp,
                field: "length",
                offset: field::LENGTH.start,
                value: field_len,
            });
        }
        need(Layer::Udp, field_len, len)
    }

    #[inline(always)]
    fn u16_at(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    /// Source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT.start)
    }

    /// Length field (header and payload).
    #[inline(always)]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH.start)
    }

    /// True if the length field says there is no payload.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// True if the checksum verifies against the pseudo-header of `addrs`.
    /// A zero checksum does not verify (it means "none").
    #[inline(always)]
    pub fn verify_checksum(&self, addrs: &AddrPair) -> bool {
        let len = self.len();
        let sum = checksum::combine(&[
            addrs.pseudo_header_sum(len),
            checksum::data(&self.buffer.as_ref()[..usize::from(len)]),
        ]);
        self.checksum() != 0 && sum == 0xffff
    }

    /// Checks the checksum as [`Repr::parse`] does (see the
    /// [module docs](self) on zero checksums). Call after
    /// [`check_len`](Self::check_len).
    #[inline(always)]
    pub fn validate(&self, addrs: &AddrPair, options: &ParseOptions) -> Result<(), WireError> {
        let found = self.checksum();
        if found == 0 {
            if addrs.is_ipv6() && !options.allow_zero_checksum_ipv6 {
                return Err(WireError::ZeroUdpChecksumIpv6);
            }
        } else if options.verify_checksum && !self.verify_checksum(addrs) {
            return Err(WireError::BadChecksum {
                layer: Layer::Udp,
                offset: field::CHECKSUM.start,
                found,
            });
        }
        Ok(())
    }

    /// The payload, bounded by the length field.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (bounded by the length field), borrowed for the buffer's whole lifetime
    /// rather than the view's, so it can outlive the `Packet`.
    #[inline(always)]
    pub fn into_payload(self) -> &'a [u8] {
        let end = usize::from(self.len());
        &T::as_ref(self.buffer)[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline(always)]
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port.
    #[inline(always)]
    pub fn set_src_port(&mut self, value: u16) {
        self.set_u16_at(field::SRC_PORT.start, value);
    }

    /// Sets the destination port.
    #[inline(always)]
    pub fn set_dst_port(&mut self, value: u16) {
        self.set_u16_at(field::DST_PORT.start, value);
    }

    /// Sets the length field.
    #[inline(always)]
    pub fn set_len(&mut self, value: u16) {
        self.set_u16_at(field::LENGTH.start, value);
    }

    /// Sets the checksum field to a raw value.
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Computes the checksum over pseudo-header, header and payload (as
    /// bounded by the length field) and writes it.
    #[inline(always)]
    pub fn fill_checksum(&mut self, addrs: &AddrPair) {
        self.set_checksum(0);
        let len = self.len();
        let sum = !checksum::combine(&[
            addrs.pseudo_header_sum(len),
            checksum::data(&self.buffer.as_ref()[..usize::from(len)]),
        ]);
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }

    /// The payload (bounded by the length field), mutably.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A parsed UDP header.
///
/// The checksum is not part of the representation: [`Repr::parse`] checks it
/// according to [`ParseOptions`], and [`Repr::emit`] writes it according to
/// [`Checksum`]. `payload_len + 8` must fit the 16-bit length field;
/// [`check`](Repr::check) and [`emit`](Repr::emit) refuse a longer payload
/// with [`WireError::ValueOutOfRange`] rather than cut it (parse never
/// produces one).
///
/// ```
/// use std::net::Ipv4Addr;
/// use overlay_core::wire::{Layer, WireError, udp::{AddrPair, Checksum, Packet, Repr}};
///
/// let addrs = AddrPair::from((Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)));
/// let repr = Repr { src_port: 49152, dst_port: 4789, payload_len: 4 };
/// let mut header_only = [0u8; 8];
/// // The checksum covers the payload, which this buffer does not hold.
/// assert_eq!(
///     repr.emit(&mut Packet::new_unchecked(&mut header_only[..]), &addrs, Checksum::Compute),
///     Err(WireError::Truncated { layer: Layer::Udp, needed: 12, got: 8 })
/// );
/// // A zero checksum reads no payload.
/// assert_eq!(repr.emit(&mut Packet::new_unchecked(&mut header_only[..]), &addrs, Checksum::Zero), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Reads a header and checks its checksum against the pseudo-header of
    /// `addrs` as `options` say (see the [module docs](self) on zero
    /// checksums).
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&T>,
        addrs: &AddrPair,
        options: &ParseOptions,
    ) -> Result<Repr, WireError> {
        packet.check_len()?;
        packet.validate(addrs, options)?;
        Ok(Self::read(packet))
    }

    /// Reads the fields of a packet that passed `check_len`.
    #[inline(always)]
    pub(crate) fn read<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Repr {
        Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()).saturating_sub(HEADER_LEN),
        }
    }

    /// Header length: always 8.
    #[inline(always)]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Checks that `payload_len + 8` fits the 16-bit length field.
    #[inline(always)]
    pub fn check(&self) -> Result<(), WireError> {
        if self.payload_len > MAX_PAYLOAD_LEN {
            return Err(WireError::ValueOutOfRange {
                layer: Layer::Udp,
                field: "payload_len",
                value: self.payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(())
    }

    /// Writes the header after [`check`](Self::check) and a check that the
    /// buffer holds the header, and with [`Checksum::Compute`] also the
    /// `payload_len` bytes after it, which must already be in place since the
    /// checksum covers them. On error nothing is written.
    #[inline(always)]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
        addrs: &AddrPair,
        checksum: Checksum,
    ) -> Result<(), WireError> {
        self.check()?;
        let reads = match checksum {
            Checksum::Compute => HEADER_LEN + self.payload_len,
            Checksum::Zero => HEADER_LEN,
        };
        need(Layer::Udp, reads, packet.buffer.as_ref().len())?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        // `check` bounded payload_len + 8 by u16::MAX.
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        match checksum {
            Checksum::Compute => packet.fill_checksum(addrs),
            Checksum::Zero => packet.set_checksum(0),
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4() -> AddrPair {
        AddrPair::from((Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)))
    }

    fn v6() -> AddrPair {
        AddrPair::from((
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            "2001:db8::2".parse::<Ipv6Addr>().unwrap(),
        ))
    }

    // UDP 192.0.2.1:49152 -> 192.0.2.2:4789 carrying the 4 bytes "ABCD".
    // Checksum computed independently of this module (Python, summing the
    // 16-bit words by hand):
    //   pseudo: c000+0201 + c000+0202 + 0011 + 000c = 0x18420
    //   header: c000 + 12b5 + 000c                   = 0x0d2c1
    //   data:   4142 + 4344                          = 0x08486
    //   total 0x2db67 -> fold 0xdb69 -> complement 0x2496.
    const GOLDEN_V4: [u8; 12] = [
        0xc0, 0x00, 0x12, 0xb5, 0x00, 0x0c, 0x24, 0x96, b'A', b'B', b'C', b'D',
    ];

    #[test]
    fn golden_ipv4_datagram_parses_and_emits_identically() {
        let packet = Packet::new_checked(&GOLDEN_V4[..]).unwrap();
        let repr = Repr::parse(&packet, &v4(), &ParseOptions::default()).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 49152,
                dst_port: 4789,
                payload_len: 4
            }
        );
        let mut out = GOLDEN_V4;
        out[..8].fill(0);
        repr.emit(
            &mut Packet::new_unchecked(&mut out[..]),
            &v4(),
            Checksum::Compute,
        )
        .unwrap();
        assert_eq!(out, GOLDEN_V4);
    }

    #[test]
    fn zero_checksum_is_accepted_on_ipv4_and_rejected_on_ipv6_unless_opted_in() {
        let mut buf = GOLDEN_V4;
        buf[6..8].fill(0);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert!(Repr::parse(&packet, &v4(), &ParseOptions::default()).is_ok());
        assert_eq!(
            Repr::parse(&packet, &v6(), &ParseOptions::default()),
            Err(WireError::ZeroUdpChecksumIpv6)
        );
        let tunnel = ParseOptions::default().allow_zero_checksum_ipv6(true);
        assert!(Repr::parse(&packet, &v6(), &tunnel).is_ok());
    }

    #[test]
    fn wrong_checksum_is_rejected_unless_verification_is_off() {
        let mut buf = GOLDEN_V4;
        buf[8] = b'Z';
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Repr::parse(&packet, &v4(), &ParseOptions::default()),
            Err(WireError::BadChecksum {
                layer: Layer::Udp,
                offset: 6,
                found: 0x2496
            })
        );
        // The same bytes checked against the wrong pseudo-header fail too.
        assert!(
            Repr::parse(
                &Packet::new_checked(&GOLDEN_V4[..]).unwrap(),
                &v6(),
                &ParseOptions::default()
            )
            .is_err()
        );
        let off = ParseOptions::default().verify_checksum(false);
        assert!(Repr::parse(&packet, &v4(), &off).is_ok());
    }

    #[test]
    fn computed_zero_checksum_is_sent_as_ffff() {
        // Choose the payload so that the checksum would be 0: find a 2-byte
        // payload word w with !(sum + w) == 0, i.e. sum + w == 0xffff.
        let addrs = v4();
        let mut buf = [0u8; 10];
        let repr = Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        };
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..]),
            &addrs,
            Checksum::Zero,
        )
        .unwrap();
        let partial = checksum::combine(&[addrs.pseudo_header_sum(10), checksum::data(&buf)]);
        let w = 0xffff - partial;
        buf[8..10].copy_from_slice(&w.to_be_bytes());
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..]),
            &addrs,
            Checksum::Compute,
        )
        .unwrap();
        assert_eq!(Packet::new_unchecked(&buf[..]).checksum(), 0xffff);
        assert!(
            Repr::parse(
                &Packet::new_checked(&buf[..]).unwrap(),
                &addrs,
                &ParseOptions::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn length_field_below_header_or_beyond_buffer_is_rejected() {
        let mut buf = GOLDEN_V4;
        buf[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(WireError::BadLength { value: 7, .. })
        ));
        assert_eq!(
            Packet::new_checked(&GOLDEN_V4[..11]),
            Err(WireError::Truncated {
                layer: Layer::Udp,
                needed: 12,
                got: 11
            })
        );
    }

    #[test]
    fn payload_length_beyond_the_length_field_is_refused_not_cut() {
        // 65528 + 8 = 65536 used to be written as length 0.
        let repr = Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: MAX_PAYLOAD_LEN + 1,
        };
        for mode in [Checksum::Zero, Checksum::Compute] {
            let mut buf = [0xeeu8; HEADER_LEN];
            assert_eq!(
                repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &v4(), mode),
                Err(WireError::ValueOutOfRange {
                    layer: Layer::Udp,
                    field: "payload_len",
                    value: 65_528,
                    max: 65_527
                })
            );
            assert_eq!(buf, [0xee; HEADER_LEN], "nothing written");
        }
        let widest = Repr {
            payload_len: MAX_PAYLOAD_LEN,
            ..repr
        };
        let mut buf = vec![0u8; 65_535];
        widest
            .emit(
                &mut Packet::new_unchecked(&mut buf[..]),
                &v6(),
                Checksum::Compute,
            )
            .unwrap();
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Repr::parse(&packet, &v6(), &ParseOptions::default()),
            Ok(widest)
        );
    }

    #[test]
    fn computed_checksum_over_a_payload_beyond_the_buffer_is_truncated_not_a_panic() {
        let repr = Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 100,
        };
        // buffer_len() bytes: enough for the header, not for the checksum.
        let mut buf = [0u8; HEADER_LEN];
        assert_eq!(repr.buffer_len(), buf.len());
        assert_eq!(
            repr.emit(
                &mut Packet::new_unchecked(&mut buf[..]),
                &v4(),
                Checksum::Compute
            ),
            Err(WireError::Truncated {
                layer: Layer::Udp,
                needed: 108,
                got: 8
            })
        );
        assert_eq!(
            repr.emit(
                &mut Packet::new_unchecked(&mut buf[..]),
                &v4(),
                Checksum::Zero
            ),
            Ok(())
        );
        assert_eq!(
            repr.emit(
                &mut Packet::new_unchecked(&mut buf[..7]),
                &v4(),
                Checksum::Zero
            ),
            Err(WireError::Truncated {
                layer: Layer::Udp,
                needed: 8,
                got: 7
            })
        );
    }

    pub(crate) fn arb_addrs() -> impl Strategy<Value = AddrPair> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>())
                .prop_map(|(s, d)| AddrPair::from((Ipv4Addr::from(s), Ipv4Addr::from(d)))),
            (any::<[u8; 16]>(), any::<[u8; 16]>())
                .prop_map(|(s, d)| AddrPair::from((Ipv6Addr::from(s), Ipv6Addr::from(d)))),
        ]
    }

    proptest! {
        #[test]
        fn repr_emit_parse_round_trips_with_checksum(
            ports in any::<(u16, u16)>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            addrs in arb_addrs(),
        ) {
            let repr = Repr { src_port: ports.0, dst_port: ports.1, payload_len: payload.len() };
            let mut buf = vec![0u8; HEADER_LEN];
            buf.extend_from_slice(&payload);
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &addrs, Checksum::Compute).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum(&addrs));
            prop_assert_eq!(Repr::parse(&packet, &addrs, &ParseOptions::default()).unwrap(), repr);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        /// Whatever the payload length and buffer, emit either writes a
        /// datagram that parses back or refuses with the reason; it never
        /// panics and never cuts the length.
        #[test]
        fn emit_never_panics_and_refuses_what_does_not_fit(
            payload_len in prop_oneof![0usize..200, 65_500usize..70_000],
            buf_len in prop_oneof![0usize..220, 65_500usize..70_000],
            compute in any::<bool>(),
            addrs in arb_addrs(),
        ) {
            let repr = Repr { src_port: 7, dst_port: 4789, payload_len };
            let mode = if compute { Checksum::Compute } else { Checksum::Zero };
            let mut buf = vec![0u8; buf_len];
            let result = repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &addrs, mode);
            let reads = if compute { HEADER_LEN + payload_len } else { HEADER_LEN };
            if payload_len > MAX_PAYLOAD_LEN {
                prop_assert!(matches!(result, Err(WireError::ValueOutOfRange { field: "payload_len", .. })), "{:?}", result);
            } else if buf_len < reads {
                prop_assert_eq!(result, Err(WireError::Truncated { layer: Layer::Udp, needed: reads, got: buf_len }));
            } else {
                prop_assert_eq!(result, Ok(()));
                prop_assert_eq!(usize::from(Packet::new_unchecked(&buf[..]).len()), HEADER_LEN + payload_len);
            }
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000), addrs in arb_addrs()) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet, &addrs, &ParseOptions::default());
                let _ = packet.payload();
            }
        }
    }
}
