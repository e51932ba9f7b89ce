//! The IPAM ring: merging replicas and applying gossip deltas at 1,000
//! peers, and one simulated second of a 1,000-peer cluster.
//!
//! * `merge/two_1000_peer_rings`: `Ring::merge` of two replicas of a ring
//!   seeded by 1,000 peers (10.0.0.0/8, /26 minimum blocks) that diverged:
//!   on one, 500 peers published free counts; on the other, the other 500
//!   did and 100 of them donated a block (splits);
//! * `merge/one_block_delta`: `Ring::apply` of a one-record delta (a free
//!   count update) to such a ring: the per-change cost of gossip;
//! * `gossip/*`: what a receiver spends per change, Weave-style (decode the
//!   whole ring and merge it: Weave gossiped the whole ring on every
//!   change) against ours (decode a one-record delta and apply it), in the
//!   same run;
//! * `sim/1000_peers_one_second`: one virtual second of the deterministic
//!   simulator at 1,000 peers with ADD/DEL load, 5% loss and 2%
//!   duplication (a larger run than the test suite's).
//!
//! Run with `cargo bench -p overlay-benches --bench ipam_ring`.

// Benchmarks build their own well-formed inputs; an unwrap that fails here is
// a bug in the benchmark, not untrusted data.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use overlay_core::PeerId;
use overlay_ipam::ring::sim::{Sim, SimConfig};
use overlay_ipam::ring::{Delta, Ring};

const PEERS: u128 = 1000;

fn peer(i: u128) -> PeerId {
    PeerId::from_u128(i + 1)
}

/// Two diverged replicas of a 1,000-peer ring.
fn replicas() -> (Ring, Ring) {
    let seeds: Vec<PeerId> = (0..PEERS).map(peer).collect();
    let base = Ring::from_seeds("10.0.0.0/8".parse().unwrap(), 26, &seeds).unwrap();
    let (mut a, mut b) = (base.clone(), base);
    for i in 0..PEERS {
        let p = peer(i);
        let replica = if i % 2 == 0 { &mut a } else { &mut b };
        let block = replica.entries_of(p)[0].block;
        replica.write(p, block, p, 1000).unwrap();
        if i % 10 == 1 {
            // Donate the top /26 of the block to the next peer.
            let std::net::IpAddr::V4(last) = block.broadcast() else {
                unreachable!("the universe is IPv4")
            };
            let top = ipnet::IpNet::new(std::net::Ipv4Addr::from(u32::from(last) & !63).into(), 26)
                .unwrap();
            replica.write(p, top, peer((i + 1) % PEERS), 64).unwrap();
        }
    }
    (a, b)
}

fn one_block_delta(ring: &Ring) -> Delta {
    let p = peer(500);
    let mut scratch = ring.clone();
    let block = scratch.entries_of(p)[0].block;
    let record = scratch.write(p, block, p, 999).unwrap();
    let mut delta = Delta::new(ring.genesis().id());
    delta.records.push(record);
    delta
}

fn bench_merge(c: &mut Criterion) {
    let (a, b) = replicas();
    let mut merged = a.clone();
    merged.merge(&b);
    assert!(merged.run_count() >= 1000);
    let delta = one_block_delta(&merged);

    let mut g = c.benchmark_group("merge");
    g.bench_function("two_1000_peer_rings", |bench| {
        bench.iter_batched_ref(
            || a.clone(),
            |x| black_box(x.merge(black_box(&b))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("one_block_delta", |bench| {
        bench.iter_batched_ref(
            || merged.clone(),
            |x| black_box(x.apply(black_box(&delta))),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let whole = merged.encode();
    let delta_bytes = delta.encode();
    // The receiver is one replica behind (it has seen only half the writes).
    let stale = a.clone();
    let mut g = c.benchmark_group("gossip");
    g.bench_function("weave_style_whole_ring_decode_and_merge", |bench| {
        bench.iter_batched_ref(
            || stale.clone(),
            |x| {
                let incoming = Ring::decode(black_box(&whole)).unwrap();
                black_box(x.merge(&incoming))
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("ours_one_record_delta_decode_and_apply", |bench| {
        bench.iter_batched_ref(
            || stale.clone(),
            |x| {
                let incoming = Delta::decode(black_box(&delta_bytes)).unwrap();
                black_box(x.apply(&incoming))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    eprintln!(
        "ipam_ring: whole ring {} bytes ({} runs), one-record delta {} bytes",
        whole.len(),
        merged.run_count(),
        delta_bytes.len()
    );
}

fn bench_sim(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    g.sample_size(10);
    g.bench_function("1000_peers_one_second", |bench| {
        bench.iter_batched_ref(
            || {
                let mut sim = Sim::new(SimConfig::default().peers(1000).seeds(100).seed(1));
                sim.random_load(500, 0);
                sim
            },
            |sim| {
                sim.random_load(250, 80);
                sim.run(Duration::from_secs(1));
                assert!(sim.violations().is_empty());
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_merge, bench_sim);
criterion_main!(benches);
