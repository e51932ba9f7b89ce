//! Bucketed digests of the live records, for anti-entropy.
//!
//! A peer falls in bucket `id >> (128 - bits)` at depth `bits`. The digest
//! keeps, at the finest depth ([`MAX_DIGEST_BITS`], 4,096 buckets), the XOR of
//! the stamp hashes of the records in each bucket and their count; any coarser
//! bucket is the XOR (and sum) of its children. Adding, removing or updating
//! a record costs O(1); the digest costs 48 KiB whatever the cluster size.

use overlay_core::PeerId;
use overlay_core::hash::Fnv1a64;

use crate::wire::{MAX_DIGEST_BITS, Stamp};

const FINE: usize = 1 << MAX_DIGEST_BITS;

/// The hash a record contributes to its bucket.
pub(crate) fn stamp_hash(s: &Stamp) -> u64 {
    let mut h = Fnv1a64::new();
    h.write(&s.id.to_bytes())
        .write(&s.incarnation.to_be_bytes())
        .write(&s.version.to_be_bytes());
    h.finish()
}

/// The bucket of `id` at depth `bits` (0..=12).
pub(crate) fn bucket(id: PeerId, bits: u8) -> usize {
    if bits == 0 {
        0
    } else {
        (id.as_u128() >> (128 - u32::from(bits))) as usize
    }
}

/// The inclusive id range of bucket `idx` at depth `bits`.
pub(crate) fn bucket_range(bits: u8, idx: usize) -> (PeerId, PeerId) {
    if bits == 0 {
        return (PeerId::from_u128(0), PeerId::from_u128(u128::MAX));
    }
    let shift = 128 - u32::from(bits);
    let lo = (idx as u128) << shift;
    let hi = lo | ((1u128 << shift) - 1);
    (PeerId::from_u128(lo), PeerId::from_u128(hi))
}

pub(crate) struct Digest {
    hashes: Vec<u64>,
    counts: Vec<u32>,
}

impl Digest {
    pub(crate) fn new() -> Self {
        Digest {
            hashes: vec![0; FINE],
            counts: vec![0; FINE],
        }
    }

    pub(crate) fn add(&mut self, s: &Stamp) {
        let b = bucket(s.id, MAX_DIGEST_BITS);
        self.hashes[b] ^= stamp_hash(s);
        self.counts[b] += 1;
    }

    pub(crate) fn remove(&mut self, s: &Stamp) {
        let b = bucket(s.id, MAX_DIGEST_BITS);
        self.hashes[b] ^= stamp_hash(s);
        self.counts[b] = self.counts[b].saturating_sub(1);
    }

    fn fine_range(bits: u8, idx: usize) -> std::ops::Range<usize> {
        let span = 1usize << (MAX_DIGEST_BITS - bits.min(MAX_DIGEST_BITS));
        let start = idx.saturating_mul(span).min(FINE);
        start..(start + span).min(FINE)
    }

    /// The hash of bucket `idx` at depth `bits`.
    pub(crate) fn hash_at(&self, bits: u8, idx: usize) -> u64 {
        self.hashes[Self::fine_range(bits, idx)]
            .iter()
            .fold(0, |a, h| a ^ h)
    }

    /// The number of records in bucket `idx` at depth `bits`.
    pub(crate) fn count_at(&self, bits: u8, idx: usize) -> usize {
        self.counts[Self::fine_range(bits, idx)]
            .iter()
            .map(|&c| c as usize)
            .sum()
    }

    /// Hashes of buckets `first..first+n` at depth `bits`.
    pub(crate) fn hashes(&self, bits: u8, first: usize, n: usize) -> Vec<u64> {
        (first..first + n).map(|i| self.hash_at(bits, i)).collect()
    }

    pub(crate) fn memory_size(&self) -> usize {
        FINE * (8 + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: u128, v: u64) -> Stamp {
        Stamp {
            id: PeerId::from_u128(id),
            incarnation: 1,
            version: v,
        }
    }

    #[test]
    fn coarse_buckets_aggregate_fine_ones() {
        let mut d = Digest::new();
        let a = st(u128::MAX, 1);
        let b = st(1, 2);
        d.add(&a);
        d.add(&b);
        assert_eq!(d.count_at(0, 0), 2);
        assert_eq!(d.hash_at(0, 0), stamp_hash(&a) ^ stamp_hash(&b));
        assert_eq!(d.count_at(1, 1), 1);
        assert_eq!(d.hash_at(1, 0), stamp_hash(&b));
        d.remove(&a);
        assert_eq!(d.hash_at(0, 0), stamp_hash(&b));
    }

    #[test]
    fn ranges_match_buckets() {
        for bits in [0u8, 1, 6, 12] {
            let (lo, hi) = bucket_range(bits, 1.min((1 << bits) - 1));
            assert_eq!(bucket(lo, bits), bucket(hi, bits));
        }
        assert_eq!(bucket(PeerId::from_u128(u128::MAX), 12), FINE - 1);
    }
}
