//! Network interface names: the one definition of what a valid name is.
//!
//! Linux accepts an interface name when its `dev_valid_name` does: 1 to 15
//! bytes (`IFNAMSIZ - 1`), not `.` or `..`, and no `/`, `:` or whitespace
//! byte (the kernel's `isspace`: tab, newline, vertical tab, form feed,
//! carriage return, space and the byte `0xa0`). libcni's
//! `ValidateInterfaceName` checks the same on Unicode characters instead of
//! bytes (so it also refuses, for example, U+2003 EM SPACE). [`validate`]
//! accepts a name only when both would, and also refuses control
//! characters (including NUL, which would cut the name short in a netlink
//! attribute): the kernel takes those, but they are never meant and they
//! garble logs and `ip link` output.
//!
//! `overlay-cni` (for `CNI_IFNAME`) and `overlay-netlink` (for every name it
//! sends to the kernel) both call [`validate`], so the two can never
//! disagree.
//!
//! ```
//! use overlay_core::ifname::{self, IfnameError};
//!
//! assert!(ifname::validate("eth0").is_ok());
//! assert!(ifname::validate("vxlan.100").is_ok());
//! assert_eq!(
//!     ifname::validate("a-name-of-16-byt"),
//!     Err(IfnameError::TooLong { len: 16 })
//! );
//! assert_eq!(
//!     ifname::validate("eth 0"),
//!     Err(IfnameError::Character { ch: ' ' })
//! );
//! ```

use thiserror::Error;

/// The longest interface name Linux accepts, in bytes (`IFNAMSIZ - 1`).
pub const MAX_LEN: usize = 15;

/// Why a string is not a valid interface name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IfnameError {
    /// The name is empty.
    #[error("interface name is empty")]
    Empty,
    /// The name is longer than [`MAX_LEN`] bytes.
    #[error("interface name is {len} bytes long; at most {MAX_LEN} are allowed")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name is `.` or `..`, which the kernel reserves.
    #[error("interface name must not be . or ..")]
    Reserved,
    /// The name contains `/`, `:`, whitespace or a control character.
    #[error(
        "interface name contains {ch:?}; / : whitespace and control characters are not allowed"
    )]
    Character {
        /// The first refused character.
        ch: char,
    },
}

/// Checks `name` against the rules in the [module docs](self).
///
/// ```
/// use overlay_core::ifname;
///
/// assert!(ifname::validate("exactly15bytes_").is_ok());
/// assert!(ifname::validate("..").is_err());
/// assert!(ifname::validate("br/0").is_err());
/// // 0xa0 is whitespace to the kernel, and it is the second byte of "à".
/// assert!(ifname::validate("vethà").is_err());
/// ```
pub fn validate(name: &str) -> Result<(), IfnameError> {
    if name.is_empty() {
        return Err(IfnameError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(IfnameError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(IfnameError::Reserved);
    }
    for ch in name.chars() {
        let refused = ch == '/' || ch == ':' || ch.is_whitespace() || ch.is_control();
        // The kernel's isspace on each byte of the UTF-8 encoding: only 0xa0
        // is outside ASCII (ASCII whitespace is caught above).
        let mut buf = [0u8; 4];
        if refused || ch.encode_utf8(&mut buf).bytes().any(|b| b == 0xa0) {
            return Err(IfnameError::Character { ch });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_and_libcni_accept_are_valid() {
        for ok in [
            "eth0",
            "a",
            "net1.100",
            "exactly15bytes_",
            "...",
            "veth-é",
            "br_0",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn length_counts_bytes_not_characters() {
        // 8 characters, 16 bytes.
        assert_eq!(validate("éééééééé"), Err(IfnameError::TooLong { len: 16 }));
        assert_eq!(validate(""), Err(IfnameError::Empty));
    }

    #[test]
    fn dot_and_dot_dot_are_reserved() {
        assert_eq!(validate("."), Err(IfnameError::Reserved));
        assert_eq!(validate(".."), Err(IfnameError::Reserved));
    }

    #[test]
    fn slash_colon_whitespace_and_control_characters_are_refused() {
        for (name, ch) in [
            ("br/0", '/'),
            ("eth0:1", ':'),
            ("eth 0", ' '),
            ("eth\t0", '\t'),
            ("eth\n", '\n'),
            ("a\u{0}b", '\u{0}'),
            ("a\u{1}b", '\u{1}'),
            ("a\u{7f}b", '\u{7f}'),
            ("a\u{85}b", '\u{85}'),
            ("a\u{2003}b", '\u{2003}'),
            ("a\u{a0}b", '\u{a0}'),
        ] {
            assert_eq!(
                validate(name),
                Err(IfnameError::Character { ch }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_character_whose_encoding_holds_byte_0xa0_is_refused_as_the_kernel_does() {
        // U+00E0 is C3 A0 in UTF-8; the kernel's isspace(0xa0) is true.
        assert_eq!(validate("vethà"), Err(IfnameError::Character { ch: 'à' }));
        // U+0120 is C4 A0.
        assert!(validate("xĠ").is_err());
    }
}
