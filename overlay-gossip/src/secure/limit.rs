//! Rate limits on handshake responses: per source address and global.
//!
//! Answering a Noise message 1 costs several X25519 operations, so a flood of
//! initiations (or of replays of a captured one) must not turn into a flood
//! of CPU work. Each limit is a token bucket kept as a GCRA "theoretical
//! arrival time", one `Duration` per source.

use std::{collections::HashMap, net::IpAddr, time::Duration};

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate (events per second); 0 refuses everything.
    pub per_second: u32,
    /// How many events may arrive at once after a quiet period.
    pub burst: u32,
}

impl RateLimit {
    /// A limit of `per_second` sustained and `burst` at once.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    fn interval(&self) -> Option<Duration> {
        (self.per_second > 0).then(|| Duration::from_secs(1) / self.per_second)
    }

    /// GCRA: admits an event at `now` given the theoretical arrival time
    /// `tat`, and returns the new one.
    fn admit(&self, now: Duration, tat: Duration) -> Option<Duration> {
        let interval = self.interval()?;
        let tolerance = interval * self.burst.saturating_sub(1);
        let start = tat.max(now);
        (start.saturating_sub(now) <= tolerance).then(|| start + interval)
    }
}

/// Admits handshake work from a source if both its own bucket and the
/// global one have a token. The per-source table is bounded: sources whose
/// bucket has refilled are forgotten first, and when every tracked source is
/// still limited, new sources are refused.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeLimiter {
    per_source: RateLimit,
    global: RateLimit,
    global_tat: Duration,
    sources: HashMap<IpAddr, Duration>,
    max_sources: usize,
}

impl HandshakeLimiter {
    pub(crate) fn new(per_source: RateLimit, global: RateLimit, max_sources: usize) -> Self {
        Self {
            per_source,
            global,
            global_tat: Duration::ZERO,
            sources: HashMap::new(),
            max_sources,
        }
    }

    /// Whether one handshake from `source` may be processed at `now`.
    pub(crate) fn allow(&mut self, now: Duration, source: IpAddr) -> bool {
        let tat = self.sources.get(&source).copied().unwrap_or(Duration::ZERO);
        let Some(source_tat) = self.per_source.admit(now, tat) else {
            return false;
        };
        let Some(global_tat) = self.global.admit(now, self.global_tat) else {
            return false;
        };
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            // A refilled bucket is the same as no entry.
            self.sources.retain(|_, tat| *tat > now);
            if self.sources.len() >= self.max_sources {
                return false;
            }
        }
        self.sources.insert(source, source_tat);
        self.global_tat = global_tat;
        true
    }

    #[cfg(test)]
    pub(crate) fn tracked_sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn per_source_burst_then_sustained_rate() {
        let mut l = HandshakeLimiter::new(RateLimit::new(10, 3), RateLimit::new(1000, 1000), 16);
        let t = Duration::from_secs(1);
        assert!((0..3).all(|_| l.allow(t, A)));
        assert!(!l.allow(t, A), "the burst is spent");
        assert!(l.allow(t, B), "another source has its own bucket");
        assert!(
            l.allow(t + Duration::from_millis(100), A),
            "one token per 100 ms"
        );
        assert!(!l.allow(t + Duration::from_millis(100), A));
    }

    #[test]
    fn global_limit_caps_many_sources() {
        let mut l = HandshakeLimiter::new(RateLimit::new(10, 10), RateLimit::new(5, 5), 1024);
        let t = Duration::from_secs(1);
        let admitted = (0..100u8)
            .filter(|i| l.allow(t, IpAddr::V4(Ipv4Addr::new(198, 51, 100, *i))))
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn source_table_is_bounded() {
        let mut l = HandshakeLimiter::new(RateLimit::new(1, 1), RateLimit::new(1000, 1000), 4);
        let t = Duration::from_secs(1);
        for i in 0..4u8 {
            assert!(l.allow(t, IpAddr::V4(Ipv4Addr::new(203, 0, 113, i))));
        }
        assert!(!l.allow(t, A), "table full of limited sources");
        assert_eq!(l.tracked_sources(), 4);
        // A second later every bucket has refilled: the entries are dropped.
        assert!(l.allow(t + Duration::from_secs(1), A));
        assert_eq!(l.tracked_sources(), 1);
    }

    #[test]
    fn zero_rate_refuses() {
        let mut l = HandshakeLimiter::new(RateLimit::new(0, 5), RateLimit::new(10, 10), 4);
        assert!(!l.allow(Duration::from_secs(1), A));
    }
}
