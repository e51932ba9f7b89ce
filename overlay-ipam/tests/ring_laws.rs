//! The ring's laws (design note section 3.6, P1-P4) over states reached by
//! random operation sequences: genesis, owner writes (splits, donations,
//! free reports), reclaims, merges, delta application, and (for the laws
//! that must hold whatever arrives) arbitrary raw records.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use overlay_core::PeerId;
use overlay_ipam::ring::{Anomaly, Delta, Record, Ring, Stamp, Tombstone};
use proptest::prelude::*;

const PEERS: u128 = 4;

fn peer(i: u128) -> PeerId {
    PeerId::from_u128(i % PEERS + 1)
}

fn universe(v6: bool) -> (IpNet, u8) {
    if v6 {
        ("2001:db8::/112".parse().unwrap(), 122)
    } else {
        ("10.0.0.0/16".parse().unwrap(), 26)
    }
}

type Op = (u8, u16, u16, u32);

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn net(like: IpAddr, value: u128, len: u8) -> IpNet {
    let ip = match like {
        IpAddr::V4(_) => IpAddr::V4((value as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(value.into()),
    };
    IpNet::new(ip, len).unwrap()
}

/// A sub-block of `block` of prefix length `len + extra`, the `pick`-th.
fn sub_block(block: IpNet, extra: u8, pick: u32) -> IpNet {
    let len = block.prefix_len() + extra;
    let host = u32::from(block.max_prefix_len() - len);
    let index = u128::from(pick) % (1u128 << extra);
    net(block.addr(), bits(block.network()) + (index << host), len)
}

/// One replica per peer. Owner writes happen only on the owner's replica
/// (single writer); `raw` adds arbitrary records (forged, stale, cloned).
fn run_ops(v6: bool, ops: &[Op], raw: bool) -> (Vec<Ring>, Vec<Anomaly>) {
    let (u, min) = universe(v6);
    let seeds: Vec<PeerId> = (0..PEERS).map(peer).collect();
    let genesis = Ring::from_seeds(u, min, &seeds).unwrap();
    let mut replicas = vec![genesis; PEERS as usize];
    let mut reclaimed = BTreeSet::new();
    let mut anomalies = Vec::new();
    for &(kind, a, b, c) in ops {
        let (i, j) = (
            usize::from(a) % PEERS as usize,
            usize::from(b) % PEERS as usize,
        );
        match kind % if raw { 5 } else { 4 } {
            0 => {
                let me = peer(i as u128);
                if !raw && reclaimed.contains(&me) {
                    // Dead peers do not write (fenced writes are tested with raw records).
                    continue;
                }
                let mine = replicas[i].entries_of(me);
                if mine.is_empty() {
                    continue;
                }
                let e = mine[usize::from(b) % mine.len()];
                let extra = (c % u32::from(min - e.block.prefix_len() + 1)) as u8;
                let block = sub_block(e.block, extra, c >> 8);
                let to = if c & 1 == 0 {
                    me
                } else {
                    peer(u128::from(c >> 4))
                };
                if replicas[i].tombstone_of(to).is_some() {
                    continue;
                }
                let rec = replicas[i].write(me, block, to, c >> 16).unwrap();
                assert_eq!(rec.block, block);
            }
            1 => anomalies.extend(merge_into(&mut replicas, i, j)),
            2 => {
                let dead = peer(i as u128);
                let heir = peer(j as u128);
                if i == j || reclaimed.contains(&heir) || !reclaimed.insert(dead) {
                    continue;
                }
                if !raw {
                    // A legitimate authority reclaims a peer dead for longer
                    // than convergence takes: its replica has everything the
                    // dead peer wrote (otherwise a donation racing the reclaim
                    // is a real double ownership, reported as such).
                    for k in 0..replicas.len() {
                        anomalies.extend(merge_into(&mut replicas, j, k));
                    }
                }
                replicas[j]
                    .reclaim(Tombstone {
                        peer: dead,
                        up_to_incarnation: u64::from(c),
                        heir,
                    })
                    .unwrap();
            }
            3 => {
                let delta = replicas[j].to_delta();
                anomalies.extend(replicas[i].apply(&delta).anomalies);
            }
            _ => {
                let host = u32::from(u.max_prefix_len() - min);
                let first = bits(u.network()) + ((u128::from(c) % 64) << host);
                let rec = Record {
                    block: net(u.addr(), first, min),
                    stamp: Stamp {
                        epoch: u32::from(a % 3),
                        version: u64::from(b % 5),
                        owner: peer(u128::from(c >> 8)),
                        free: c >> 16,
                    },
                };
                let mut d = Delta::new(replicas[i].genesis().id());
                d.records.push(rec);
                anomalies.extend(replicas[i].apply(&d).anomalies);
            }
        }
    }
    (replicas, anomalies)
}

fn merge_into(replicas: &mut [Ring], i: usize, j: usize) -> Vec<Anomaly> {
    let other = replicas[j].clone();
    replicas[i].merge(&other).anomalies
}

fn merged(a: &Ring, b: &Ring) -> (Ring, Vec<Anomaly>) {
    let mut m = a.clone();
    let report = m.merge(b);
    (m, report.anomalies)
}

/// P2: sorted, contiguous, aligned, inside the universe, no smaller than
/// the minimum block, `free <= size`.
fn assert_tiles(ring: &Ring) {
    let g = ring.genesis();
    let entries = ring.entries();
    let mut next = bits(g.universe().network());
    for e in &entries {
        assert_eq!(e.block.trunc(), e.block, "aligned");
        assert_eq!(bits(e.block.network()), next, "contiguous and sorted");
        assert!(e.block.prefix_len() <= g.min_block_len());
        assert!(u128::from(e.free) <= e.size());
        next = bits(e.block.broadcast()).wrapping_add(1);
    }
    assert_eq!(
        next,
        bits(g.universe().broadcast()).wrapping_add(1),
        "covers the universe"
    );
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (any::<u8>(), any::<u16>(), any::<u16>(), any::<u32>()),
        0..max,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// P1: commutative, associative, idempotent, over reachable states
    /// including forged and stale records.
    #[test]
    fn p1_merge_is_a_semilattice_join(v6 in any::<bool>(), ops in ops(60), x in 0usize..4, y in 0usize..4, z in 0usize..4) {
        let (r, _) = run_ops(v6, &ops, true);
        let (a, b, c) = (&r[x], &r[y], &r[z]);
        let (ab, an_ab) = merged(a, b);
        let (ba, an_ba) = merged(b, a);
        prop_assert_eq!(&ab, &ba);
        prop_assert_eq!(an_ab, an_ba, "anomalies are symmetric");
        let (bc, _) = merged(b, c);
        prop_assert_eq!(merged(a, &bc).0, merged(&ab, c).0);
        let (aa, an_aa) = merged(a, a);
        prop_assert_eq!(&aa, a);
        prop_assert!(an_aa.is_empty());
        // Gossiping the whole state as a delta is the same join.
        let mut applied = a.clone();
        applied.apply(&b.to_delta());
        prop_assert_eq!(applied, ab);
    }

    /// P2: every reachable state and every merge tiles the universe.
    #[test]
    fn p2_entries_tile_the_universe(v6 in any::<bool>(), ops in ops(60), x in 0usize..4, y in 0usize..4) {
        let (r, _) = run_ops(v6, &ops, true);
        for ring in &r {
            assert_tiles(ring);
        }
        assert_tiles(&merged(&r[x], &r[y]).0);
    }

    /// P3: an owner write changes ownership only inside its block and only
    /// where the writer owned it; a fenced write never wins, whatever its
    /// version.
    #[test]
    fn p3_single_writer_and_fencing(v6 in any::<bool>(), ops in ops(40), w in any::<(u16, u32)>(), version in any::<u64>()) {
        let (r, _) = run_ops(v6, &ops, false);
        let ring = &r[0];
        let me = peer(0);
        let mine = ring.entries_of(me);
        if !mine.is_empty() {
            let e = mine[usize::from(w.0) % mine.len()];
            let to = peer(u128::from(w.1));
            let mut after = ring.clone();
            if ring.tombstone_of(to).is_some() {
                prop_assert!(after.write(me, e.block, to, 0).is_err());
                return Ok(());
            }
            after.write(me, e.block, to, 0).unwrap();
            for probe in ring.entries() {
                let ip = probe.block.network();
                let before = ring.entry_at(ip).unwrap().owner;
                let now = after.entry_at(ip).unwrap().owner;
                if e.block.contains(&ip) {
                    prop_assert_eq!(before, me);
                    prop_assert_eq!(now, to);
                } else {
                    prop_assert_eq!(before, now);
                }
            }
        }
        // Fencing: reclaim peer 2 at replica 1; then peer 2 writes with any
        // version at its old epoch: the heir still owns every block.
        let dead = peer(2);
        let heir = peer(1);
        let mut fenced = r[1].clone();
        if fenced.tombstone_of(dead).is_none() && fenced.tombstone_of(heir).is_none() {
            let old: Vec<_> = fenced.entries_of(dead);
            fenced.reclaim(Tombstone { peer: dead, up_to_incarnation: 0, heir }).unwrap();
            let mut late = Delta::new(fenced.genesis().id());
            for e in &old {
                late.records.push(Record {
                    block: e.block,
                    stamp: Stamp { epoch: e.epoch, version, owner: dead, free: 1 },
                });
            }
            fenced.apply(&late);
            for e in &old {
                prop_assert_eq!(fenced.entry_at(e.block.network()).unwrap().owner, heir);
            }
            // The dead peer cannot write any more either.
            for e in &old {
                prop_assert!(fenced.write(dead, e.block, dead, 0).is_err());
            }
        }
    }

    /// P4 (no false alarms): sequences of legitimate operations (owner
    /// writes on the owner's replica, one reclaim per peer by an authority
    /// that waited for convergence and names a live heir, merges) never
    /// report an anomaly.
    #[test]
    fn p4_legitimate_histories_report_nothing(v6 in any::<bool>(), ops in ops(80)) {
        let (r, anomalies) = run_ops(v6, &ops, false);
        prop_assert!(anomalies.is_empty(), "{:?}", anomalies);
        for x in &r {
            for y in &r {
                let m = merged(x, y).1;
                prop_assert!(m.is_empty(), "{:?}", m);
            }
        }
    }
}

/// P4 (exactly the seeded conflicts): a cloned writer, a double reclaim, a
/// record outside the ring and a foreign genesis each report their
/// anomaly, and only it.
#[test]
fn p4_each_seeded_conflict_reports_exactly_its_anomaly() {
    let (u, min) = universe(false);
    let [a, b, c, d] = [1, 2, 3, 4].map(PeerId::from_u128);
    let base = Ring::from_seeds(u, min, &[a, b, c, d]).unwrap();
    let block: IpNet = "10.0.0.0/26".parse().unwrap();

    // Clone: two processes with id `a` write the same block at one version.
    let (mut x, mut y) = (base.clone(), base.clone());
    let rx = x.write(a, block, a, 10).unwrap();
    let ry = y.write(a, block, a, 20).unwrap();
    assert_eq!(rx.stamp.version, ry.stamp.version);
    let (m, anomalies) = merged(&x, &y);
    assert_eq!(
        anomalies,
        [Anomaly::ConcurrentWrite {
            first: "10.0.0.0".parse().unwrap(),
            last: "10.0.0.63".parse().unwrap(),
            a: rx.stamp,
            b: ry.stamp,
        }]
    );
    assert_eq!(m.entry_at("10.0.0.1".parse().unwrap()).unwrap().free, 20);

    // Double reclaim of d with heirs c and b: the lowest heir (b) wins.
    let (mut x, mut y) = (base.clone(), base.clone());
    x.reclaim(Tombstone {
        peer: d,
        up_to_incarnation: 1,
        heir: c,
    })
    .unwrap();
    y.reclaim(Tombstone {
        peer: d,
        up_to_incarnation: 1,
        heir: b,
    })
    .unwrap();
    let (m, anomalies) = merged(&x, &y);
    let d_block = base.entries_of(d)[0].block;
    assert_eq!(
        anomalies,
        [Anomaly::ConflictingHeirs {
            peer: d,
            heirs: vec![b, c]
        }]
    );
    assert!(m.entries_of(b).iter().any(|e| e.block == d_block));
    assert_eq!(m, merged(&y, &x).0);

    // A record outside the ring (Weave #3003) is skipped and reported.
    let mut x = base.clone();
    let mut delta = Delta::new(x.genesis().id());
    let outside: IpNet = "192.0.2.0/26".parse().unwrap();
    let misaligned: IpNet = "10.0.0.1/26".parse().unwrap();
    let small: IpNet = "10.0.0.0/28".parse().unwrap();
    for block in [outside, misaligned, small] {
        delta.records.push(Record {
            block,
            stamp: Stamp {
                epoch: 9,
                version: 9,
                owner: a,
                free: 0,
            },
        });
    }
    let report = x.apply(&delta);
    assert!(!report.changed);
    assert_eq!(report.anomalies.len(), 3);
    assert_eq!(x, base);

    // A foreign ring is kept apart.
    let foreign = Ring::from_seeds(u, min, &[a, b]).unwrap();
    let mut x = base.clone();
    let report = x.merge(&foreign);
    assert_eq!(
        report.anomalies,
        [Anomaly::GenesisMismatch {
            ours: base.genesis().id(),
            theirs: foreign.genesis().id()
        }]
    );
    assert_eq!(x, base);
}
