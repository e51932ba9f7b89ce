//! Stable hashes: the same value in every process, build and version.
//!
//! Values that name things outside one process (a host veth name derived
//! from a CNI attachment, a route metric spread over prefixes) must not
//! change when the program is rebuilt or restarted, which rules out std's
//! randomly seeded `RandomState`. These are FNV-1a (Fowler, Noll, Vo), as
//! specified in draft-eastlake-fnv: small, fast on short inputs and fixed
//! forever. They are not for hash tables fed by untrusted input (FNV is not
//! collision-resistant).
//!
//! ```
//! use overlay_core::hash::{Fnv1a32, Fnv1a64};
//!
//! // Published test vectors.
//! assert_eq!(Fnv1a64::new().write(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
//! assert_eq!(Fnv1a32::new().write(b"a").finish(), 0xe40c_292c);
//! ```

/// FNV-1a with a 64-bit state.
///
/// ```
/// use overlay_core::hash::Fnv1a64;
///
/// let mut h = Fnv1a64::new();
/// h.write(b"pods").write(&[0]);
/// assert_eq!(h.finish(), Fnv1a64::new().write(b"pods\0").finish());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    /// The FNV-64 offset basis.
    pub const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    /// The FNV-64 prime.
    pub const PRIME: u64 = 0x0100_0000_01b3;

    /// A hasher that has seen no bytes.
    pub const fn new() -> Self {
        Fnv1a64(Self::OFFSET_BASIS)
    }

    /// Feeds `bytes`; returns the hasher for chaining.
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
        self
    }

    /// The hash of every byte fed so far.
    pub const fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a with a 32-bit state.
///
/// ```
/// use overlay_core::hash::Fnv1a32;
///
/// assert_eq!(Fnv1a32::new().finish(), Fnv1a32::OFFSET_BASIS);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a32(u32);

impl Fnv1a32 {
    /// The FNV-32 offset basis.
    pub const OFFSET_BASIS: u32 = 0x811c_9dc5;
    /// The FNV-32 prime.
    pub const PRIME: u32 = 0x0100_0193;

    /// A hasher that has seen no bytes.
    pub const fn new() -> Self {
        Fnv1a32(Self::OFFSET_BASIS)
    }

    /// Feeds `bytes`; returns the hasher for chaining.
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(Self::PRIME);
        }
        self
    }

    /// The hash of every byte fed so far.
    pub const fn finish(&self) -> u32 {
        self.0
    }
}

impl Default for Fnv1a32 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_vectors() {
        // From draft-eastlake-fnv's test suite.
        assert_eq!(Fnv1a64::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            Fnv1a64::new().write(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
        assert_eq!(Fnv1a32::new().write(b"foobar").finish(), 0xbf9c_f968);
    }

    #[test]
    fn writes_in_pieces_equal_one_write() {
        let mut a = Fnv1a64::new();
        a.write(b"foo").write(b"").write(b"bar");
        assert_eq!(a.finish(), Fnv1a64::new().write(b"foobar").finish());
        let mut b = Fnv1a32::default();
        b.write(b"fo").write(b"obar");
        assert_eq!(b.finish(), Fnv1a32::new().write(b"foobar").finish());
    }
}
