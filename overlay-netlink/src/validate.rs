//! Input validation, run before any request reaches the kernel.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, InvalidInput, IpFamily, Result};

/// The longest interface name Linux accepts (`IFNAMSIZ - 1`); the one
/// definition is [`overlay_core::ifname::MAX_LEN`].
pub const MAX_IFNAME_LEN: usize = overlay_core::ifname::MAX_LEN;

/// Check an interface name with the one rule set of
/// [`overlay_core::ifname::validate`] (the kernel's `dev_valid_name` and
/// libcni's, and no control characters), as the error type of this crate.
///
/// ```
/// use overlay_netlink::validate_ifname;
/// assert!(validate_ifname("vxlan.1").is_ok());
/// assert!(validate_ifname("a-name-of-16-byt").is_err());
/// assert!(validate_ifname("eth 0").is_err());
/// ```
pub fn validate_ifname(name: &str) -> std::result::Result<(), InvalidInput> {
    use overlay_core::ifname::IfnameError;
    overlay_core::ifname::validate(name).map_err(|e| match e {
        IfnameError::TooLong { len } => InvalidInput::NameTooLong {
            name: name.into(),
            len,
        },
        IfnameError::Character { ch } => InvalidInput::NameCharacter {
            name: name.into(),
            ch,
        },
        // Empty, `.`, `..` and any rule added later.
        _ => InvalidInput::NameReserved { name: name.into() },
    })
}

pub(crate) fn ifname(operation: &'static str, name: &str) -> Result<()> {
    validate_ifname(name).map_err(|source| Error::invalid(operation, name, source))
}

pub(crate) fn family(
    operation: &'static str,
    object: &dyn std::fmt::Display,
    what: &'static str,
    addr: IpAddr,
    expected: IpFamily,
) -> Result<()> {
    if IpFamily::of(addr) != expected {
        return Err(Error::invalid(
            operation,
            object,
            InvalidInput::FamilyMismatch {
                what,
                addr,
                expected,
            },
        ));
    }
    Ok(())
}

pub(crate) fn prefix(operation: &'static str, net: IpNet) -> Result<()> {
    if net.trunc() != net {
        return Err(Error::invalid(
            operation,
            net,
            InvalidInput::HostBits { net },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("123456789012345").is_ok());
        assert!(matches!(
            validate_ifname("1234567890123456"),
            Err(InvalidInput::NameTooLong { len: 16, .. })
        ));
        assert!(matches!(
            validate_ifname(""),
            Err(InvalidInput::NameReserved { .. })
        ));
        assert!(matches!(
            validate_ifname(".."),
            Err(InvalidInput::NameReserved { .. })
        ));
        for (bad, ch) in [("a/b", '/'), ("a b", ' '), ("a\tb", '\t'), ("a:b", ':')] {
            assert_eq!(
                validate_ifname(bad),
                Err(InvalidInput::NameCharacter {
                    name: bad.into(),
                    ch
                })
            );
        }
    }
}
