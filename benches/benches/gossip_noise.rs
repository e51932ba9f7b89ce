//! The cost of the gossip secure layer (`overlay_gossip::secure`): Noise
//! handshakes, per-datagram seal and open, and the password KDF, against bare
//! `snow` in the same run.
//!
//! * `handshake/{xxpsk3,ikpsk2}/ours`: two `SecureLayer`s from the first
//!   `seal` until the first payload is delivered and both sides hold a
//!   confirmed session (XXpsk3: three handshake messages and the responder's
//!   confirmation; IKpsk2: two messages, the payload confirms). Key pairs are
//!   generated outside the measurement; ephemeral keys inside.
//! * `handshake/{xxpsk3,ikpsk2}/snow`: the same Noise messages with snow's
//!   `HandshakeState` directly (no envelope, no session table), the floor.
//! * `seal/{64,1200}` and `open/{64,1200}`: one transport datagram with a
//!   64-byte (SWIM probe) and a 1,200-byte (full gossip frame) payload.
//!   `ours` includes the envelope, the counter, the replay window and the
//!   session lookup by index; `snow` is `StatelessTransportState::write_message`
//!   / `read_message` alone.
//! * `argon2id_production`: `Psk::from_password` with the production
//!   parameters (m = 64 MiB, t = 3, p = 1), paid once at start-up.
//!
//! Run with `cargo bench -p overlay-benches --bench gossip_noise`.

// Benchmarks build their own well-formed inputs; an unwrap that fails here is
// a bug in the benchmark, not untrusted data.
#![allow(clippy::unwrap_used)]

use std::{hint::black_box, net::SocketAddr, time::Duration};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use overlay_gossip::secure::{Psk, PskParams, SecureConfig, SecureLayer, StaticKeypair};
use rand::{SeedableRng, rngs::StdRng};

const A: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    7946,
);
const B: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)),
    7946,
);
const NOW: Duration = Duration::from_secs(1);
const SIZES: [usize; 2] = [64, 1200];
const XX: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
const IK: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";

fn psk() -> Psk {
    Psk::from_key([7u8; 32], "bench").unwrap()
}

fn layers(rng: &mut StdRng, ik: bool) -> (SecureLayer, SecureLayer) {
    let mut a = SecureLayer::encrypted(
        psk(),
        StaticKeypair::generate(rng),
        SecureConfig::default(),
        rng,
    );
    let b = SecureLayer::encrypted(
        psk(),
        StaticKeypair::generate(rng),
        SecureConfig::default(),
        rng,
    );
    if ik {
        a.learn_static(B, *b.local_static().unwrap());
    }
    (a, b)
}

/// Runs the exchange that `seal` started until nothing is left to send;
/// returns the payloads B received.
fn exchange(
    a: &mut SecureLayer,
    b: &mut SecureLayer,
    mut to_b: Vec<overlay_gossip::secure::Datagram>,
) -> usize {
    let mut delivered = 0;
    while !to_b.is_empty() {
        let mut to_a = Vec::new();
        for d in to_b.drain(..) {
            let opened = b.open(NOW, A, &d.bytes).unwrap();
            delivered += usize::from(opened.plaintext.is_some());
            to_a.extend(opened.replies);
        }
        for d in to_a {
            to_b.extend(a.open(NOW, B, &d.bytes).unwrap().replies);
        }
    }
    delivered
}

/// A bare snow handshake; returns the initiator's and the responder's
/// transport states.
fn snow_handshake(
    pattern: &str,
    a: &StaticKeypair,
    b: &StaticKeypair,
) -> (snow::StatelessTransportState, snow::StatelessTransportState) {
    let psk = psk();
    let params: snow::params::NoiseParams = pattern.parse().unwrap();
    let at = if pattern == XX { 3 } else { 2 };
    let mut init = snow::Builder::new(params.clone())
        .local_private_key(a.secret_bytes())
        .unwrap()
        .psk(at, psk.as_bytes())
        .unwrap();
    if pattern == IK {
        init = init.remote_public_key(b.public()).unwrap();
    }
    let mut init = init.build_initiator().unwrap();
    let mut resp = snow::Builder::new(params)
        .local_private_key(b.secret_bytes())
        .unwrap()
        .psk(at, psk.as_bytes())
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut msg, mut payload) = ([0u8; 256], [0u8; 256]);
    let mut from_init = true;
    while !(init.is_handshake_finished() && resp.is_handshake_finished()) {
        let (w, r) = if from_init {
            (&mut init, &mut resp)
        } else {
            (&mut resp, &mut init)
        };
        let n = w.write_message(&[0u8; 8], &mut msg).unwrap();
        r.read_message(&msg[..n], &mut payload).unwrap();
        from_init = !from_init;
    }
    (
        init.into_stateless_transport_mode().unwrap(),
        resp.into_stateless_transport_mode().unwrap(),
    )
}

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("gossip_noise/handshake");
    let mut rng = StdRng::seed_from_u64(1);
    for (name, ik) in [("xxpsk3", false), ("ikpsk2", true)] {
        group.bench_function(BenchmarkId::new(name, "ours"), |bench| {
            bench.iter_batched(
                || layers(&mut rng, ik),
                |(mut a, mut b)| {
                    let out = a.seal(NOW, B, b"probe").unwrap();
                    assert_eq!(exchange(&mut a, &mut b, out), 1);
                    (a, b)
                },
                BatchSize::SmallInput,
            );
        });
        let (ka, kb) = (
            StaticKeypair::generate(&mut rng),
            StaticKeypair::generate(&mut rng),
        );
        let pattern = if ik { IK } else { XX };
        group.bench_function(BenchmarkId::new(name, "snow"), |bench| {
            bench.iter(|| black_box(snow_handshake(pattern, &ka, &kb)));
        });
    }
    group.finish();
}

fn bench_transport(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let (mut a, mut b) = layers(&mut rng, false);
    let out = a.seal(NOW, B, b"join").unwrap();
    exchange(&mut a, &mut b, out);
    let (ka, kb) = (
        StaticKeypair::generate(&mut rng),
        StaticKeypair::generate(&mut rng),
    );
    let (bare, bare_resp) = snow_handshake(XX, &ka, &kb);

    let mut group = c.benchmark_group("gossip_noise/seal");
    for size in SIZES {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("ours", size), &payload, |bench, p| {
            bench.iter(|| black_box(a.seal(NOW, B, black_box(p)).unwrap()));
        });
        let mut nonce = 0u64;
        group.bench_with_input(BenchmarkId::new("snow", size), &payload, |bench, p| {
            bench.iter(|| {
                let mut out = vec![0u8; p.len() + 16];
                nonce += 1;
                bare.write_message(nonce, black_box(p), &mut out).unwrap();
                black_box(out)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("gossip_noise/open");
    for size in SIZES {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("ours", size), &payload, |bench, p| {
            // Each datagram opens once (the replay window refuses a second
            // time), so sealing happens in the untimed setup.
            bench.iter_batched(
                || a.seal(NOW, B, p).unwrap().remove(0).bytes,
                |d| black_box(b.open(NOW, A, &d).unwrap()),
                BatchSize::SmallInput,
            );
        });
        let mut sealed = vec![0u8; size + 16];
        bare.write_message(1, &payload, &mut sealed).unwrap();
        group.bench_with_input(BenchmarkId::new("snow", size), &sealed, |bench, d| {
            bench.iter(|| {
                let mut out = vec![0u8; d.len()];
                black_box(bare_resp.read_message(1, black_box(d), &mut out).unwrap());
                black_box(out)
            });
        });
    }
    group.finish();
}

fn bench_argon2(c: &mut Criterion) {
    let mut group = c.benchmark_group("gossip_noise");
    group.sample_size(10);
    group.bench_function("argon2id_production", |bench| {
        bench.iter(|| {
            black_box(
                Psk::from_password(black_box("correct horse"), "bench", PskParams::default())
                    .unwrap(),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench_handshake, bench_transport, bench_argon2);
criterion_main!(benches);
