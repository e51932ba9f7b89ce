//! The ring's binary forms: round trips of deltas, full states and digests
//! (IPv4 and IPv6), and decoders that never panic on untrusted bytes.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::net::IpAddr;

use ipnet::IpNet;
use overlay_core::PeerId;
use overlay_ipam::ring::{DecodeError, Delta, Digest, GenesisId, Record, Ring, Stamp, Tombstone};
use proptest::prelude::*;

fn stamp() -> impl Strategy<Value = Stamp> {
    (any::<u32>(), any::<u64>(), any::<u128>(), any::<u32>()).prop_map(
        |(epoch, version, owner, free)| Stamp {
            epoch,
            version,
            owner: PeerId::from_u128(owner),
            free,
        },
    )
}

fn block() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::V4(a.into()), l).unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::new(IpAddr::V6(a.into()), l).unwrap()),
    ]
}

fn tombstone() -> impl Strategy<Value = Tombstone> {
    (any::<u128>(), any::<u64>(), any::<u128>())
        .prop_filter("a peer is not its own heir", |(p, _, h)| p != h)
        .prop_map(|(p, i, h)| Tombstone {
            peer: PeerId::from_u128(p),
            up_to_incarnation: i,
            heir: PeerId::from_u128(h),
        })
}

fn delta() -> impl Strategy<Value = Delta> {
    (
        any::<u128>(),
        prop::collection::vec((block(), stamp()), 0..20),
        prop::collection::vec(tombstone(), 0..5),
    )
        .prop_map(|(g, records, tombstones)| Delta {
            genesis: GenesisId::from_u128(g),
            records: records
                .into_iter()
                .map(|(block, stamp)| Record { block, stamp })
                .collect(),
            tombstones,
        })
}

/// A ring reached by owner writes and reclaims.
fn ring() -> impl Strategy<Value = Ring> {
    (
        any::<bool>(),
        1u128..6,
        prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 0..30),
    )
        .prop_map(|(v6, seeds, ops)| {
            let (u, min): (IpNet, u8) = if v6 {
                ("2001:db8::/100".parse().unwrap(), 120)
            } else {
                ("10.0.0.0/12".parse().unwrap(), 24)
            };
            let seeds: Vec<PeerId> = (1..=seeds).map(PeerId::from_u128).collect();
            let mut ring = Ring::from_seeds(u, min, &seeds).unwrap();
            for (k, a, b) in ops {
                let me = seeds[a as usize % seeds.len()];
                if k % 7 == 0 {
                    let heir = seeds[b as usize % seeds.len()];
                    let _ = ring.reclaim(Tombstone {
                        peer: me,
                        up_to_incarnation: u64::from(b),
                        heir,
                    });
                    continue;
                }
                let mine = ring.entries_of(me);
                if mine.is_empty() {
                    continue;
                }
                let e = mine[b as usize % mine.len()];
                let len = (e.block.prefix_len() + (k % 4)).min(min);
                let sub = IpNet::new(e.block.network(), len).unwrap();
                let to = seeds[(b >> 8) as usize % seeds.len()];
                let _ = ring.write(me, sub, to, b >> 16);
            }
            ring
        })
}

proptest! {
    #[test]
    fn deltas_round_trip(d in delta()) {
        prop_assert_eq!(Delta::decode(&d.encode()), Ok(d));
    }

    #[test]
    fn rings_round_trip(r in ring()) {
        let bytes = r.encode();
        prop_assert_eq!(Ring::decode(&bytes), Ok(r.clone()));
        let digest = r.digest(6);
        prop_assert_eq!(Digest::decode(&digest.encode()), Ok(digest));
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Delta::decode(&bytes);
        let _ = Ring::decode(&bytes);
        let _ = Digest::decode(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_encodings(r in ring(), d in delta(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        for mut bytes in [r.encode(), d.encode(), r.digest(3).encode()] {
            for &(at, x) in &flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            let cut = cut % (bytes.len() + 1);
            for b in [&bytes[..], &bytes[..cut]] {
                if let Ok(ring) = Ring::decode(b) {
                    // A decoded ring is valid: it re-encodes to a ring equal to it.
                    prop_assert_eq!(Ring::decode(&ring.encode()), Ok(ring.clone()));
                    let mut twice = ring.clone();
                    prop_assert!(!twice.merge(&ring).changed);
                }
                let _ = Delta::decode(b);
                let _ = Digest::decode(b);
            }
        }
    }
}

#[test]
fn a_ring_that_does_not_tile_is_refused_with_its_offset() {
    let r = Ring::from_seeds(
        "10.0.0.0/16".parse().unwrap(),
        26,
        &[PeerId::from_u128(1), PeerId::from_u128(2)],
    )
    .unwrap();
    let mut bytes = r.encode();
    // The second run's first address (after header, universe, min, count,
    // the first run: address, owner, epoch 0, version 0, free 32768 in
    // three bytes) moved off the minimum-block grid.
    let second = 2 + 16 + 1 + 4 + 1 + 1 + 1 + (4 + 16 + 1 + 1 + 3);
    bytes[second + 3] = 1;
    assert_eq!(
        Ring::decode(&bytes),
        Err(DecodeError::NotATiling { at: second })
    );
}

#[test]
fn counts_larger_than_the_input_are_refused_before_allocating() {
    let mut bytes = vec![1, 1];
    bytes.extend([0; 16]);
    bytes.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        Delta::decode(&bytes),
        Err(DecodeError::TooMany { at: 18, .. })
    ));
}

#[test]
fn a_delta_record_is_a_few_tens_of_bytes() {
    let mut d = Delta::new(GenesisId::from_u128(1));
    d.records.push(Record {
        block: "2001:db8::/122".parse().unwrap(),
        stamp: Stamp {
            epoch: 1,
            version: 1_000_000,
            owner: PeerId::from_u128(u128::MAX),
            free: 64,
        },
    });
    // 18 header + 1 count + (1 family + 16 token + 1 len + 16 owner + 1 + 3 + 1) + 1.
    assert_eq!(d.encode().len(), 18 + 1 + 39 + 1);
}
