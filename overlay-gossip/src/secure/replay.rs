//! The anti-replay sliding window for transport counters (RFC 6479 style).

/// Bits of the window bitmap (a ring of 64-bit words, as RFC 6479 and
/// WireGuard keep it). One word is the ring's slack, so
/// [`WINDOW_SIZE`] counters behind the highest one are still accepted.
const BITMAP_BITS: u64 = 2048;
const WORDS: usize = (BITMAP_BITS / 64) as usize;

/// How far behind the highest accepted counter a counter may be and still
/// be accepted once (reordering tolerance).
pub const WINDOW_SIZE: u64 = BITMAP_BITS - 64;

/// Why a counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The counter was already accepted.
    Replayed,
    /// The counter is more than [`WINDOW_SIZE`] behind the highest one.
    TooOld,
}

/// A sliding window over received 64-bit counters.
///
/// [`check`](Self::check) before decrypting, [`commit`](Self::commit) only
/// after the AEAD tag verified: a forged datagram must not move the window.
///
/// ```
/// use overlay_gossip::secure::{ReplayError, ReplayWindow, WINDOW_SIZE};
///
/// let mut w = ReplayWindow::new();
/// for c in [5, 3, 4] {
///     w.check(c).unwrap();
///     w.commit(c);
/// }
/// assert_eq!(w.check(4), Err(ReplayError::Replayed));
/// w.commit(5 + WINDOW_SIZE + 1);
/// assert_eq!(w.check(5), Err(ReplayError::TooOld));
/// ```
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// One more than the highest committed counter; 0 before the first.
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: every counter is new.
    pub const fn new() -> Self {
        Self {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    fn slot(counter: u64) -> (usize, u64) {
        (
            ((counter / 64) % WORDS as u64) as usize,
            1u64 << (counter % 64),
        )
    }

    /// Whether `counter` would be accepted. Does not change the window.
    ///
    /// # Errors
    /// [`ReplayError`] when it would not.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.next {
            return Ok(());
        }
        // counter < next, so next >= 1 and the subtraction is exact.
        if self.next - 1 - counter >= WINDOW_SIZE {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = Self::slot(counter);
        if self.bitmap[word] & bit != 0 {
            Err(ReplayError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records `counter` as received. Call only after [`check`](Self::check)
    /// accepted it and the datagram authenticated.
    pub fn commit(&mut self, counter: u64) {
        if counter >= self.next {
            // Clear the words the window slides over, at most the whole ring.
            let first = if self.next == 0 {
                0
            } else {
                (self.next - 1) / 64 + 1
            };
            let last = counter / 64;
            if last >= first {
                let count = (last - first + 1).min(WORDS as u64);
                for i in 0..count {
                    let (word, _) = Self::slot((first + i) * 64);
                    self.bitmap[word] = 0;
                }
            }
            self.next = counter.saturating_add(1);
        }
        let (word, bit) = Self::slot(counter);
        self.bitmap[word] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_reordered_and_replayed() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            assert_eq!(w.check(c), Ok(()));
            w.commit(c);
        }
        assert_eq!(w.check(50), Err(ReplayError::Replayed));
        assert_eq!(w.check(150), Ok(()));
        w.commit(150);
        assert_eq!(w.check(120), Ok(()));
        w.commit(120);
        assert_eq!(w.check(120), Err(ReplayError::Replayed));
    }

    #[test]
    fn window_edge_is_exact() {
        let mut w = ReplayWindow::new();
        let top = 10_000;
        w.commit(top);
        assert_eq!(w.check(top - WINDOW_SIZE + 1), Ok(()));
        assert_eq!(w.check(top - WINDOW_SIZE), Err(ReplayError::TooOld));
    }

    #[test]
    fn a_big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        w.commit(5);
        w.commit(5 + 2048);
        // 2053 lands in the same ring word and bit as 5: the word was cleared
        // before the new bit was set, so 2052 (the same word) is still new.
        assert_eq!(w.check(2052), Ok(()));
        assert_eq!(w.check(2053), Err(ReplayError::Replayed));
        assert_eq!(w.check(5), Err(ReplayError::TooOld));
    }

    #[test]
    fn counter_near_max_does_not_overflow() {
        let mut w = ReplayWindow::new();
        w.commit(u64::MAX - 1);
        assert_eq!(w.check(u64::MAX - 1), Err(ReplayError::Replayed));
        assert_eq!(w.check(u64::MAX), Ok(()));
        w.commit(u64::MAX);
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
    }

    proptest! {
        /// The window agrees with a model that remembers every counter.
        #[test]
        fn matches_a_set_model(ops in proptest::collection::vec(0u64..6000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut max: Option<u64> = None;
            for c in ops {
                let expected = if seen.contains(&c) {
                    Err(ReplayError::Replayed)
                } else if max.is_some_and(|m| c < m && m - c >= WINDOW_SIZE) {
                    Err(ReplayError::TooOld)
                } else {
                    Ok(())
                };
                // A replay beyond the window may be reported as either.
                let got = w.check(c);
                if seen.contains(&c) && max.is_some_and(|m| c < m && m - c >= WINDOW_SIZE) {
                    prop_assert!(got.is_err());
                } else {
                    prop_assert_eq!(got, expected);
                }
                if got.is_ok() {
                    w.commit(c);
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
