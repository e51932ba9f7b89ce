//! A fast, seeded hasher for the owner index.
//!
//! Owners are small keys (integers, short ids); SipHash, std's default,
//! costs more than the rest of an allocation. This is the folded-multiply
//! construction of foldhash and wyhash: each 8-byte word is mixed into the
//! state with a 64x64->128-bit multiply whose halves are XORed. The seed
//! comes from std's per-process random keys, so the bucket of a key is not
//! predictable from outside the process.

use std::hash::{BuildHasher, Hasher, RandomState};

/// An odd constant with well-spread bits (from PCG).
const MULTIPLE: u64 = 0x5851_f42d_4c95_7f2d;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`FastHasher`]s with a per-map random seed.
#[derive(Debug, Clone)]
pub(crate) struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        FastState {
            seed: RandomState::new().hash_one(0x6f76_6c61_7969_7061_u64) | 1,
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            acc: self.seed,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FastHasher {
    acc: u64,
    seed: u64,
}

impl FastHasher {
    fn mix(&mut self, word: u64) {
        self.acc = folded_multiply(self.acc ^ word, MULTIPLE);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        self.mix(bytes.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.acc, self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_keys_spread_over_buckets() {
        let state = FastState::default();
        // The low 10 bits pick the bucket of a 1024-bucket table; hashbrown
        // uses the top 7 bits as the tag.
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for i in 0u32..1024 {
            let h = state.hash_one(i);
            low.insert(h & 1023);
            top.insert(h >> 57);
        }
        assert!(low.len() > 550, "{} distinct buckets", low.len());
        assert!(top.len() > 120, "{} distinct tags", top.len());
        assert_ne!(state.hash_one("ab"), state.hash_one("ba"));
        assert_ne!(state.hash_one(("a", "bc")), state.hash_one(("ab", "c")));
    }
}
