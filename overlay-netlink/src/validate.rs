//! Input validation, run before any request reaches the kernel.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, InvalidInput, IpFamily, Result};

/// The longest interface name Linux accepts (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// The largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// Check an interface name as the kernel's `dev_valid_name` does: 1 to 15
/// bytes, not `.` or `..`, no `/`, `:` or whitespace.
///
/// ```
/// use overlay_netlink::validate_ifname;
/// assert!(validate_ifname("vxlan.1").is_ok());
/// assert!(validate_ifname("a-name-of-16-byt").is_err());
/// assert!(validate_ifname("eth 0").is_err());
/// ```
pub fn validate_ifname(name: &str) -> std::result::Result<(), InvalidInput> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(InvalidInput::NameReserved { name: name.into() });
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(InvalidInput::NameTooLong {
            name: name.into(),
            len: name.len(),
        });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(InvalidInput::NameCharacter {
            name: name.into(),
            ch,
        });
    }
    Ok(())
}

pub(crate) fn ifname(operation: &'static str, name: &str) -> Result<()> {
    validate_ifname(name).map_err(|source| Error::invalid(operation, name, source))
}

pub(crate) fn vni(operation: &'static str, object: &str, vni: u32) -> Result<()> {
    if vni > MAX_VNI {
        return Err(Error::invalid(
            operation,
            object,
            InvalidInput::VniOutOfRange { vni },
        ));
    }
    Ok(())
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

    #[test]
    fn vni_must_fit_in_24_bits() {
        assert!(vni("x", "v", MAX_VNI).is_ok());
        assert!(matches!(
            vni("x", "v", MAX_VNI + 1),
            Err(Error::InvalidInput {
                source: InvalidInput::VniOutOfRange { vni: 0x0100_0000 },
                ..
            })
        ));
    }
}
