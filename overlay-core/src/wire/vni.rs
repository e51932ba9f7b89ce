//! The 24-bit virtual network identifier shared by VXLAN and Geneve.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 24-bit VXLAN / Geneve virtual network identifier (VNI).
///
/// The constructor rejects values above [`Vni::MAX`], so a `Vni` always fits
/// its 24-bit field on the wire. Serde uses the plain number and validates it.
///
/// ```
/// use overlay_core::wire::{Vni, VniError};
///
/// let vni = Vni::new(42).unwrap();
/// assert_eq!(vni.get(), 42);
/// assert_eq!(Vni::new(0x100_0000), Err(VniError { value: 0x100_0000 }));
/// assert_eq!("16777215".parse::<Vni>().unwrap(), Vni::MAX);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vni(u32);

/// Error for a VNI value that does not fit in 24 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("VNI {value} does not fit in 24 bits (maximum 16777215)")]
pub struct VniError {
    /// The rejected value.
    pub value: u32,
}

impl Vni {
    /// The largest VNI, `0xFF_FFFF`.
    pub const MAX: Vni = Vni(0x00ff_ffff);

    /// Checks that `value` fits in 24 bits.
    #[inline(always)]
    pub const fn new(value: u32) -> Result<Self, VniError> {
        if value > Self::MAX.0 {
            Err(VniError { value })
        } else {
            Ok(Vni(value))
        }
    }

    /// Takes the low 24 bits of `value`, ignoring the rest.
    #[inline(always)]
    pub const fn from_u24_masked(value: u32) -> Self {
        Vni(value & Self::MAX.0)
    }

    /// Returns the numeric value (at most `0xFF_FFFF`).
    #[inline(always)]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Reads a VNI from three big-endian bytes.
    #[inline(always)]
    pub(crate) fn from_be_bytes(b: [u8; 3]) -> Self {
        Vni(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// Returns the three big-endian bytes of the VNI.
    #[inline(always)]
    pub(crate) fn to_be_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }
}

impl TryFrom<u32> for Vni {
    type Error = VniError;
    #[inline(always)]
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Vni::new(value)
    }
}

impl From<Vni> for u32 {
    #[inline(always)]
    fn from(vni: Vni) -> u32 {
        vni.0
    }
}

impl fmt::Display for Vni {
    #[inline(always)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Vni {
    #[inline(always)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vni({})", self.0)
    }
}

/// Why a string is not a VNI: what [`Vni`]'s `FromStr` returns.
///
/// Exported as `overlay_core::ParseVniError` and
/// `overlay_core::wire::ParseVniError`.
///
/// ```
/// use overlay_core::{ParseVniError, Vni};
/// assert!(matches!("x".parse::<Vni>(), Err(ParseVniError::NotANumber(_))));
/// let err = "16777216".parse::<Vni>().unwrap_err();
/// assert!(matches!(err, ParseVniError::OutOfRange(_)));
/// assert_eq!(err.to_string(), "VNI 16777216 does not fit in 24 bits (maximum 16777215)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseVniError {
    /// Not a decimal number.
    #[error("VNI is not a decimal number: {0}")]
    NotANumber(#[from] std::num::ParseIntError),
    /// A number above 24 bits.
    #[error(transparent)]
    OutOfRange(#[from] VniError),
}

impl FromStr for Vni {
    type Err = ParseVniError;
    #[inline(always)]
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Vni::new(s.parse::<u32>()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_24_bit_values() {
        assert_eq!(Vni::new(0).unwrap().get(), 0);
        assert_eq!(Vni::new(0xff_ffff).unwrap(), Vni::MAX);
        assert_eq!(Vni::new(0x100_0000), Err(VniError { value: 0x100_0000 }));
        assert_eq!(Vni::from_u24_masked(0x1ab_cdef).get(), 0xab_cdef);
    }

    #[test]
    fn serde_validates_the_range() {
        assert_eq!(serde_json::to_string(&Vni::new(7).unwrap()).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Vni>("7").unwrap().get(), 7);
        assert!(serde_json::from_str::<Vni>("16777216").is_err());
    }

    #[test]
    fn byte_conversions_are_big_endian() {
        let vni = Vni::new(0x12_3456).unwrap();
        assert_eq!(vni.to_be_bytes(), [0x12, 0x34, 0x56]);
        assert_eq!(Vni::from_be_bytes([0x12, 0x34, 0x56]), vni);
    }

    #[test]
    fn from_str_reports_range_and_syntax_errors() {
        assert!(matches!(
            "x".parse::<Vni>(),
            Err(ParseVniError::NotANumber(_))
        ));
        assert!(matches!(
            "16777216".parse::<Vni>(),
            Err(ParseVniError::OutOfRange(VniError { value: 16_777_216 }))
        ));
    }
}
