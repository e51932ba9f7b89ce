//! A bitmap with summary levels: find the next clear bit in a few word
//! operations however full the map is.
//!
//! Level 0 holds one bit per position (1 = taken). Every higher level holds
//! one bit per word of the level below, set exactly when that word is full
//! (all 64 bits set). The top level is a single word. Bits past the end of a
//! level (the padding of its last word) are kept set, so they are never
//! found clear and a last word whose real bits are all taken counts as full.
//!
//! Memory: `len / 8` bytes for level 0 plus `1/63` of that for the
//! summaries. Setting or clearing a bit touches one word per level at most;
//! finding the next clear bit climbs while the current word is full and
//! descends with `trailing_zeros`, so it costs O(levels) word operations
//! (five levels for 2^32 positions) instead of a scan.

/// Positions per word.
const W: u64 = 64;

#[derive(Debug, Clone)]
pub(crate) struct Bitmap {
    len: u64,
    /// `levels[0]` is the leaf level; the last level is one word.
    levels: Vec<Vec<u64>>,
}

/// `(word index, bit mask)` of position `i`.
fn split(i: u64) -> (usize, u64) {
    // Positions are below 2^32 (the allocator's limit), so the word index
    // fits `usize` on every supported target.
    ((i / W) as usize, 1u64 << (i % W))
}

impl Bitmap {
    /// A map of `len` clear positions; `len` is at least 1.
    pub(crate) fn new(len: u64) -> Bitmap {
        let mut levels = Vec::new();
        let mut n = len.max(1);
        loop {
            let words = n.div_ceil(W);
            let mut level = vec![0u64; words as usize];
            let rem = n % W;
            if rem != 0
                && let Some(last) = level.last_mut()
            {
                *last = !0u64 << rem;
            }
            levels.push(level);
            if words == 1 {
                break;
            }
            n = words;
        }
        Bitmap { len, levels }
    }

    /// Whether position `i` (below `len`) is set.
    pub(crate) fn get(&self, i: u64) -> bool {
        let (word, mask) = split(i);
        self.levels[0].get(word).is_some_and(|w| w & mask != 0)
    }

    /// Set position `i` (below `len`, currently clear), updating the
    /// summaries of words that became full.
    pub(crate) fn set(&mut self, i: u64) {
        let mut idx = i;
        for level in &mut self.levels {
            let (word, mask) = split(idx);
            let Some(w) = level.get_mut(word) else { return };
            *w |= mask;
            if *w != !0 {
                return;
            }
            idx /= W;
        }
    }

    /// Clear position `i` (below `len`, currently set), updating the
    /// summaries of words that stop being full.
    pub(crate) fn clear(&mut self, i: u64) {
        let mut idx = i;
        for level in &mut self.levels {
            let (word, mask) = split(idx);
            let Some(w) = level.get_mut(word) else { return };
            let was_full = *w == !0;
            *w &= !mask;
            if !was_full {
                return;
            }
            idx /= W;
        }
    }

    /// The first clear position at or after `start`, if any.
    pub(crate) fn next_clear(&self, start: u64) -> Option<u64> {
        if start >= self.len {
            return None;
        }
        // Climb: look for a clear bit at or after `idx` in its word; when
        // there is none, continue with the next word, one level up.
        let mut level = 0;
        let mut idx = start;
        loop {
            let words = self.levels.get(level)?;
            let (word, _) = split(idx);
            let bits = *words.get(word)?;
            let clear = !bits & (!0u64 << (idx % W));
            if clear != 0 {
                idx = word as u64 * W + u64::from(clear.trailing_zeros());
                break;
            }
            idx = word as u64 + 1;
            level += 1;
        }
        // Descend: a clear summary bit means its word below is not full.
        while level > 0 {
            level -= 1;
            let bits = self.levels[level][idx as usize];
            idx = idx * W + u64::from((!bits).trailing_zeros());
        }
        Some(idx)
    }

    /// The set positions at or after `start`, in order.
    pub(crate) fn iter_set(&self, start: u64) -> impl Iterator<Item = u64> + '_ {
        let len = self.len;
        let first = (start / W) as usize;
        self.levels[0]
            .iter()
            .enumerate()
            .skip(first)
            .flat_map(move |(word, &bits)| {
                let base = word as u64 * W;
                let mut rest = if word == first {
                    bits & (!0u64 << (start % W))
                } else {
                    bits
                };
                std::iter::from_fn(move || {
                    if rest == 0 {
                        return None;
                    }
                    let bit = u64::from(rest.trailing_zeros());
                    rest &= rest - 1;
                    Some(base + bit)
                })
            })
            .take_while(move |&i| i < len)
    }

    /// Bytes held by the levels.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.capacity() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn sizes_around_word_boundaries() {
        for len in [1, 2, 63, 64, 65, 4095, 4096, 4097, 262_145] {
            let mut b = Bitmap::new(len);
            for i in 0..len {
                assert_eq!(b.next_clear(0), Some(i), "len {len}");
                b.set(i);
            }
            assert_eq!(b.next_clear(0), None, "len {len} full");
            b.clear(len - 1);
            assert_eq!(b.next_clear(0), Some(len - 1));
            if len == 1 {
                continue;
            }
            b.clear(0);
            assert_eq!(b.next_clear(0), Some(0));
            assert_eq!(b.next_clear(1), Some(len - 1));
            assert_eq!(b.next_clear(len), None);
        }
    }

    proptest! {
        #[test]
        fn matches_a_set(len in 1u64..20_000, ops in proptest::collection::vec((any::<bool>(), any::<u64>()), 0..300), probes in proptest::collection::vec(any::<u64>(), 1..20)) {
            let mut b = Bitmap::new(len);
            let mut model = BTreeSet::new();
            for (set, at) in ops {
                let i = at % len;
                if set && model.insert(i) {
                    b.set(i);
                } else if !set && model.remove(&i) {
                    b.clear(i);
                }
            }
            for p in probes {
                let start = p % (len + 1);
                let want = (start..len).find(|i| !model.contains(i));
                prop_assert_eq!(b.next_clear(start), want);
                let set: Vec<u64> = b.iter_set(start).collect();
                let want: Vec<u64> = model.range(start..).copied().collect();
                prop_assert_eq!(set, want);
            }
        }
    }
}
