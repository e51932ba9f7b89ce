//! Fuzz overlay-ipam's ring codecs (`Delta`, `Ring`, `Digest` decoders) on
//! untrusted bytes: decoding never panics; what decodes re-encodes to the
//! same value; a decoded ring is valid (merging it into itself changes
//! nothing, its view tiles the universe, its whole-state delta rebuilds
//! it); a decoded delta applies to a ring of its genesis without panicking.
#![no_main]

use overlay_core::PeerId;
use overlay_ipam::ring::{Delta, Digest, Genesis, Ring};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(delta) = Delta::decode(data) {
        assert_eq!(Delta::decode(&delta.encode()).as_ref(), Ok(&delta));
        for (universe, min) in [("10.0.0.0/8", 24), ("2001:db8::/64", 120)] {
            let Ok(genesis) =
                Genesis::new(delta.genesis, universe.parse().unwrap_or_default(), min)
            else {
                continue;
            };
            let Ok(mut ring) =
                Ring::with_seeds(genesis, &[PeerId::from_u128(1), PeerId::from_u128(2)])
            else {
                continue;
            };
            ring.apply(&delta);
            let again = ring.clone();
            assert!(
                !ring.apply(&delta).changed,
                "applying a delta twice changes nothing"
            );
            assert_eq!(ring, again);
        }
    }
    if let Ok(ring) = Ring::decode(data) {
        assert_eq!(Ring::decode(&ring.encode()).as_ref(), Ok(&ring));
        let mut merged = ring.clone();
        assert!(!merged.merge(&ring).changed);
        let mut rebuilt = ring.clone();
        assert!(!rebuilt.apply(&ring.to_delta()).changed);
        let universe = ring.genesis().universe();
        let mut covered = 0u128;
        for e in ring.entries() {
            assert!(universe.contains(&e.block));
            assert!(u128::from(e.free) <= e.size());
            covered = covered.saturating_add(e.size());
        }
        // A universe is never an IPv6 /0, so its size fits a u128.
        let host = u32::from(universe.max_prefix_len() - universe.prefix_len());
        assert_eq!(
            covered,
            1u128 << host,
            "the view covers the universe exactly"
        );
    }
    if let Ok(digest) = Digest::decode(data) {
        assert_eq!(Digest::decode(&digest.encode()).as_ref(), Ok(&digest));
    }
});
