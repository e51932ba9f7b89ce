//! Peer identity.

use std::fmt;
use std::str::FromStr;

use crate::mac::hex_val;

/// The stable identity of one node (peer) of the overlay.
///
/// A `PeerId` is 128 bits. The natural source is the node's systemd
/// `/etc/machine-id`, which is 128 random bits written once at install time as
/// 32 lower-case hex digits: it survives reboots and agent restarts, which is
/// what "stable per node" needs, and two nodes never share it unless an image
/// was cloned carelessly. This crate does no I/O: the caller reads the file and
/// hands its text to [`PeerId::from_machine_id`]. Any other 128-bit source
/// (a random value persisted by the agent, a UUID) works the same way through
/// [`PeerId::from_bytes`].
///
/// The text form is 32 lower-case hex digits. [`FromStr`] also accepts the
/// hyphenated UUID form `8-4-4-4-12` and upper-case digits. Serde uses the
/// text form. Ordering is the numeric order of the 128-bit value, so peers can
/// break ties deterministically.
///
/// ```
/// use overlay_core::PeerId;
///
/// let id = PeerId::from_machine_id("4f1c6b1e9d2a4c3b8e7f60a1b2c3d4e5\n").unwrap();
/// assert_eq!(id.to_string(), "4f1c6b1e9d2a4c3b8e7f60a1b2c3d4e5");
/// let same: PeerId = "4F1C6B1E-9D2A-4C3B-8E7F-60A1B2C3D4E5".parse().unwrap();
/// assert_eq!(id, same);
/// assert_eq!(PeerId::from_u128(id.as_u128()), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(u128);

impl PeerId {
    /// Builds an id from its 16 bytes, most significant first.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        PeerId(u128::from_be_bytes(bytes))
    }

    /// Returns the 16 bytes, most significant first.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Builds an id from its numeric value.
    pub const fn from_u128(value: u128) -> Self {
        PeerId(value)
    }

    /// Returns the numeric value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Parses the contents of `/etc/machine-id` (surrounding whitespace, such
    /// as the trailing newline, is ignored).
    ///
    /// ```
    /// # use overlay_core::PeerId;
    /// assert!(PeerId::from_machine_id("  0123456789abcdef0123456789abcdef\n").is_ok());
    /// assert!(PeerId::from_machine_id("uninitialized\n").is_err());
    /// ```
    pub fn from_machine_id(contents: &str) -> Result<Self, ParsePeerIdError> {
        contents.trim().parse()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// Error returned when a string is not a [`PeerId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePeerIdError {
    /// The string has neither 32 hex digits nor the 36-character UUID form.
    #[error(
        "peer id must be 32 hex digits or a hyphenated UUID (36 characters), got {len} characters"
    )]
    BadLength {
        /// Length of the input in bytes.
        len: usize,
    },
    /// A character is not a hex digit (or a hyphen where the UUID form has one).
    #[error("peer id has an invalid character at byte {offset}")]
    BadCharacter {
        /// Byte offset of the offending character.
        offset: usize,
    },
}

impl FromStr for PeerId {
    type Err = ParsePeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let hyphens: &[usize] = match b.len() {
            32 => &[],
            36 => &[8, 13, 18, 23],
            len => return Err(ParsePeerIdError::BadLength { len }),
        };
        let mut value: u128 = 0;
        for (offset, &c) in b.iter().enumerate() {
            if hyphens.contains(&offset) {
                if c != b'-' {
                    return Err(ParsePeerIdError::BadCharacter { offset });
                }
                continue;
            }
            let digit = hex_val(c).ok_or(ParsePeerIdError::BadCharacter { offset })?;
            value = (value << 4) | u128::from(digit);
        }
        Ok(PeerId(value))
    }
}

crate::serde_via_str!(PeerId);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_is_32_lowercase_hex_digits_with_leading_zeros() {
        assert_eq!(
            PeerId::from_u128(0x2a).to_string(),
            "0000000000000000000000000000002a"
        );
    }

    #[test]
    fn rejects_bad_strings_with_position() {
        assert_eq!(
            "abc".parse::<PeerId>(),
            Err(ParsePeerIdError::BadLength { len: 3 })
        );
        assert_eq!(
            "0123456789abcdef0123456789abcdeg".parse::<PeerId>(),
            Err(ParsePeerIdError::BadCharacter { offset: 31 })
        );
        assert_eq!(
            "01234567x89ab-cdef-0123-456789abcdef".parse::<PeerId>(),
            Err(ParsePeerIdError::BadCharacter { offset: 8 })
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id = PeerId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0123456789abcdef0011223344556677\"");
        assert_eq!(serde_json::from_str::<PeerId>(&json).unwrap(), id);
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(v in any::<u128>()) {
            let id = PeerId::from_u128(v);
            prop_assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
            prop_assert_eq!(PeerId::from_bytes(id.to_bytes()), id);
        }

        #[test]
        fn parse_never_panics(s in ".{0,48}") {
            let _ = s.parse::<PeerId>();
        }
    }
}
