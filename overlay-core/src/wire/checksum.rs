//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers.
//!
//! Sums are kept folded to 16 bits and not yet complemented, so that partial
//! sums over separate pieces (pseudo-header, header, payload) can be
//! [`combine`]d; the value written on the wire is `!combine(&[..])`.
//!
//! ```
//! use overlay_core::wire::checksum;
//! use std::net::Ipv4Addr;
//!
//! // UDP checksum of an empty datagram from 192.0.2.1:1 to 192.0.2.2:2.
//! let header = [0, 1, 0, 2, 0, 8, 0, 0];
//! let pseudo = checksum::pseudo_header_v4(
//!     Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2), 17, 8);
//! let sum = !checksum::combine(&[pseudo, checksum::data(&header)]);
//! // A receiver summing everything including the checksum gets 0xffff.
//! let mut with_sum = header;
//! with_sum[6..8].copy_from_slice(&sum.to_be_bytes());
//! assert_eq!(checksum::combine(&[pseudo, checksum::data(&with_sum)]), 0xffff);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide one's-complement accumulator to 16 bits, without branches.
///
/// Valid because 2^16 and 2^32 are both congruent to 1 modulo 0xffff. A
/// non-zero input never folds to zero.
#[inline]
fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32); // < 2^33
    let s = (s & 0xffff) + (s >> 16); // < 2^17 + 2^16
    let s = (s & 0xffff) + (s >> 16); // <= 0x10001
    let s = (s & 0xffff) + (s >> 16); // <= 0xffff
    // The last fold leaves s <= 0xffff.
    s as u16
}

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16
/// bits. An odd trailing byte is padded with a zero byte, as RFC 1071 says.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Summing 32-bit big-endian words is equivalent to summing 16-bit
        // words once folded. The end-around carry keeps the sum exact modulo
        // 2^64 - 1 (a multiple of 0xffff) however long the input is.
        let pair = u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            + u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
        let (sum, carry) = acc.overflowing_add(pair);
        acc = sum + u64::from(carry);
    }
    // Fold to 16 bits so that the remainder (under 8 bytes) cannot overflow.
    acc = u64::from(fold(acc));
    let mut rest = chunks.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        acc += u64::from(u32::from_be_bytes([*a, *b, *c, *d]));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        acc += u64::from(u16::from_be_bytes([*a, *b]));
        rest = tail;
    }
    if let [last] = rest {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold(acc)
}

/// One's-complement sum of a short input, such as an IP header, as
/// big-endian 16-bit words folded to 16 bits.
///
/// Gives the same result as [`data`]; it is a simpler loop for the 20 to 60
/// bytes of an IPv4 header: a 32-bit accumulator, which cannot overflow for
/// inputs up to 131 071 bytes, and two folds. Longer inputs are passed to
/// [`data`].
///
/// ```
/// use overlay_core::wire::checksum;
/// let header = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
///               0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];
/// assert_eq!(checksum::small(&header), 0xffff); // a valid IPv4 header
/// assert_eq!(checksum::small(&header), checksum::data(&header));
/// ```
#[inline(always)]
pub fn small(input: &[u8]) -> u16 {
    if input.len() > 131_071 {
        return data(input);
    }
    let mut sum: u32 = 0;
    let mut words = input.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    let s = (sum & 0xffff) + (sum >> 16); // <= 0x1fffe
    let s = (s & 0xffff) + (s >> 16); // <= 0xffff
    s as u16
}

/// One's-complement sum of already folded partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Partial sum of the IPv4 pseudo-header (RFC 768): source, destination,
/// protocol and upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let mut buf = [0u8; 12];
    buf[0..4].copy_from_slice(&src.octets());
    buf[4..8].copy_from_slice(&dst.octets());
    buf[9] = protocol;
    buf[10..12].copy_from_slice(&length.to_be_bytes());
    data(&buf)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source,
/// destination, 32-bit upper-layer length and next header.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut buf = [0u8; 40];
    buf[0..16].copy_from_slice(&src.octets());
    buf[16..32].copy_from_slice(&dst.octets());
    buf[32..36].copy_from_slice(&length.to_be_bytes());
    buf[39] = next_header;
    data(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook definition: 16-bit words, end-around carry after each add.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for w in bytes.chunks(2) {
            let word = u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            sum += word;
            if sum > 0xffff {
                sum = (sum & 0xffff) + 1;
            }
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12]), 0x1200);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    proptest! {
        #[test]
        fn fast_sum_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(data(&bytes), reference(&bytes));
        }

        #[test]
        fn combine_of_even_split_equals_whole(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(bytes.len() & !1);
            prop_assert_eq!(combine(&[data(&bytes[..cut]), data(&bytes[cut..])]), data(&bytes));
        }
    }

    #[test]
    fn small_agrees_with_data_on_every_short_length() {
        let bytes: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(97) ^ 0xa5) as u8)
            .collect();
        for len in 0..bytes.len() {
            assert_eq!(small(&bytes[..len]), data(&bytes[..len]), "length {len}");
        }
        let ones = vec![0xffu8; 131_071];
        assert_eq!(small(&ones), data(&ones));
        let longer = vec![0xffu8; 131_073];
        assert_eq!(small(&longer), data(&longer));
    }
}
