//! Scenario tests of the secure layer: two or more layers exchange datagrams
//! in memory, with virtual time.

use std::{net::SocketAddr, time::Duration};

use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use super::*;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, i], 7946))
}

fn psk(key: u8) -> Psk {
    Psk::from_key([key; 32], "test-cluster").unwrap()
}

fn layer(rng: &mut StdRng, key: u8, config: SecureConfig) -> SecureLayer {
    SecureLayer::encrypted(psk(key), StaticKeypair::generate(rng), config, rng)
}

/// A delivered plaintext: sender, bytes, sender's static key.
type Received = (SocketAddr, Vec<u8>, Option<[u8; 32]>);

/// Nodes at 192.0.2.1, .2, ... that deliver datagrams to each other at once.
struct Net {
    nodes: Vec<(SocketAddr, SecureLayer)>,
    received: Vec<Vec<Received>>,
    rejected: Vec<(SocketAddr, Reject)>,
    now: Duration,
}

impl Net {
    fn new(layers: Vec<SecureLayer>) -> Self {
        let n = layers.len();
        let nodes = layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| (addr(i as u8 + 1), l))
            .collect();
        Self {
            nodes,
            received: vec![Vec::new(); n],
            rejected: Vec::new(),
            now: Duration::from_secs(1),
        }
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|(x, _)| *x == a)
    }

    fn layer(&mut self, i: usize) -> &mut SecureLayer {
        &mut self.nodes[i].1
    }

    fn send(&mut self, from: usize, to: usize, plaintext: &[u8]) {
        let dst = self.nodes[to].0;
        let now = self.now;
        let out = self.nodes[from].1.seal(now, dst, plaintext).unwrap();
        self.deliver(from, out, &mut |_| true);
    }

    /// Delivers datagrams (and every reply) until the network is quiet;
    /// `keep` may drop or alter each one.
    fn deliver(
        &mut self,
        from: usize,
        out: Vec<Datagram>,
        keep: &mut dyn FnMut(&mut Datagram) -> bool,
    ) {
        let mut queue: Vec<(SocketAddr, Datagram)> =
            out.into_iter().map(|d| (self.nodes[from].0, d)).collect();
        while let Some((src, mut d)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            if !keep(&mut d) {
                continue;
            }
            let Some(to) = self.index(d.dst) else {
                continue;
            };
            match self.nodes[to].1.open(self.now, src, &d.bytes) {
                Ok(opened) => {
                    if let Some(p) = opened.plaintext {
                        self.received[to].push((src, p, opened.remote_static));
                    }
                    let me = self.nodes[to].0;
                    queue.extend(opened.replies.into_iter().map(|r| (me, r)));
                }
                Err(reason) => self.rejected.push((d.dst, reason)),
            }
        }
    }

    /// Advances time and runs every layer's timers.
    fn advance(&mut self, by: Duration, keep: &mut dyn FnMut(&mut Datagram) -> bool) {
        self.now += by;
        for i in 0..self.nodes.len() {
            let now = self.now;
            let out = self.nodes[i].1.handle_timeout(now);
            self.deliver(i, out, keep);
        }
    }
}

fn pair(seed: u64) -> Net {
    let mut rng = StdRng::seed_from_u64(seed);
    Net::new(vec![
        layer(&mut rng, 1, SecureConfig::default()),
        layer(&mut rng, 1, SecureConfig::default()),
    ])
}

/// A and B with a confirmed session, and one transport datagram A -> B not
/// yet delivered.
fn established_with_datagram() -> (Net, Vec<u8>) {
    let mut net = pair(3);
    net.send(0, 1, b"hello");
    assert_eq!(net.received[1].len(), 1);
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"payload").unwrap();
    assert_eq!(
        out.len(),
        1,
        "one transport datagram on a confirmed session"
    );
    (net, out[0].bytes.clone())
}

#[test]
fn noise_protocol_names_parse() {
    for p in [Pattern::Xxpsk3, Pattern::Ikpsk2] {
        assert!(p.noise_name().parse::<snow::params::NoiseParams>().is_ok());
    }
}

#[test]
fn xx_handshake_delivers_both_ways_with_authenticated_statics() {
    let mut net = pair(1);
    let (a_pub, b_pub) = (
        *net.layer(0).local_static().unwrap(),
        *net.layer(1).local_static().unwrap(),
    );
    net.send(0, 1, b"from a");
    net.send(1, 0, b"from b");
    assert_eq!(
        net.received[1],
        vec![(addr(1), b"from a".to_vec(), Some(a_pub))]
    );
    assert_eq!(
        net.received[0],
        vec![(addr(2), b"from b".to_vec(), Some(b_pub))]
    );
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    for i in 0..2 {
        assert_eq!(net.layer(i).stats().handshakes_completed, 1);
        assert_eq!(net.layer(i).security(), Security::Encrypted);
    }
    assert_eq!(net.layer(0).stats().handshakes_initiated, 1);
    assert_eq!(net.layer(0).remote_static(addr(2)), Some(b_pub));
}

#[test]
fn wrong_psk_never_completes_with_xx() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut net = Net::new(vec![
        layer(&mut rng, 1, SecureConfig::default()),
        layer(&mut rng, 2, SecureConfig::default()),
    ]);
    net.send(0, 1, b"secret");
    for _ in 0..10 {
        net.advance(Duration::from_secs(5), &mut |_| true);
    }
    assert!(net.received.iter().all(Vec::is_empty));
    let t = net.now;
    assert!(!net.layer(0).has_session(t, addr(2)));
    let t = net.now;
    assert!(!net.layer(1).has_session(t, addr(1)));
    // B refuses every message 3; A sees no confirmation and gives up.
    let attempts = SecureConfig::default().handshake_attempts as u64;
    assert_eq!(net.layer(1).stats().rejected.handshake_failed, attempts);
    assert_eq!(net.layer(0).stats().rejected.handshake_failed, attempts);
    assert_eq!(net.layer(0).stats().handshakes_initiated, attempts);
    assert_eq!(net.layer(0).stats().handshakes_timed_out, 1);
    assert_eq!(net.layer(0).stats().queue_dropped, 1);
    assert_eq!(
        net.layer(0).stats().handshakes_completed + net.layer(1).stats().handshakes_completed,
        0
    );
}

#[test]
fn wrong_psk_never_completes_with_ik() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut net = Net::new(vec![
        layer(&mut rng, 1, SecureConfig::default()),
        layer(&mut rng, 2, SecureConfig::default()),
    ]);
    let b_pub = *net.layer(1).local_static().unwrap();
    net.layer(0).learn_static(addr(2), b_pub);
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"secret").unwrap();
    assert!(matches!(
        Frame::parse(&out[0].bytes),
        Ok(Frame::Initiation {
            pattern: Pattern::Ikpsk2,
            ..
        })
    ));
    net.deliver(0, out, &mut |_| true);
    for _ in 0..10 {
        net.advance(Duration::from_secs(5), &mut |_| true);
    }
    assert!(net.received.iter().all(Vec::is_empty));
    let t = net.now;
    assert!(!net.layer(1).has_session(t, addr(1)));
    assert!(
        net.layer(0).stats().rejected.handshake_failed >= 1,
        "A refuses B's message 2"
    );
    assert_eq!(
        net.layer(0).stats().handshakes_completed + net.layer(1).stats().handshakes_completed,
        0
    );
}

#[test]
fn every_single_byte_tamper_is_rejected_and_counted() {
    let (mut net, datagram) = established_with_datagram();
    let now = net.now;
    for i in 0..datagram.len() {
        for flip in [0x01, 0x80] {
            let mut forged = datagram.clone();
            forged[i] ^= flip;
            assert!(
                net.layer(1).open(now, addr(1), &forged).is_err(),
                "flip {flip:#x} at byte {i} accepted"
            );
        }
    }
    let r = net.layer(1).stats().rejected;
    assert!(
        r.bad_mac >= 2 * (datagram.len() as u64 - 14),
        "ciphertext and counter flips fail the tag: {r:?}"
    );
    assert_eq!(r.total(), 2 * datagram.len() as u64);
    // Forgeries did not move the replay window: the genuine datagram opens.
    let opened = net.layer(1).open(now, addr(1), &datagram).unwrap();
    assert_eq!(opened.plaintext.as_deref(), Some(&b"payload"[..]));
}

#[test]
fn replayed_datagram_is_rejected_and_counted() {
    let (mut net, datagram) = established_with_datagram();
    let now = net.now;
    assert!(net.layer(1).open(now, addr(1), &datagram).is_ok());
    assert_eq!(
        net.layer(1).open(now, addr(1), &datagram),
        Err(Reject::Replayed)
    );
    assert_eq!(net.layer(1).stats().rejected.replayed, 1);
}

#[test]
fn datagram_from_another_address_is_unknown_session() {
    let (mut net, datagram) = established_with_datagram();
    let now = net.now;
    assert_eq!(
        net.layer(1).open(now, addr(9), &datagram),
        Err(Reject::UnknownSession)
    );
    assert_eq!(net.layer(1).stats().rejected.unknown_session, 1);
}

#[test]
fn reordered_within_window_accepted_beyond_window_rejected() {
    let (mut net, first) = established_with_datagram();
    let now = net.now;
    let mut later: Vec<Vec<u8>> = (0..WINDOW_SIZE + 10)
        .map(|i| {
            net.layer(0)
                .seal(now, addr(2), &i.to_be_bytes())
                .unwrap()
                .remove(0)
                .bytes
        })
        .collect();
    // The newest 100, in reverse order: all accepted.
    let tail = later.split_off(later.len() - 100);
    for d in tail.iter().rev() {
        assert!(net.layer(1).open(now, addr(1), d).is_ok());
    }
    // The first one is now more than WINDOW_SIZE behind.
    assert_eq!(net.layer(1).open(now, addr(1), &first), Err(Reject::TooOld));
    // One just inside the window is still accepted once.
    let inside = &later[later.len() - (WINDOW_SIZE as usize - 101)];
    assert!(net.layer(1).open(now, addr(1), inside).is_ok());
    assert_eq!(
        net.layer(1).open(now, addr(1), inside),
        Err(Reject::Replayed)
    );
    assert_eq!(net.layer(1).stats().rejected.too_old, 1);
}

#[test]
fn handshake_responses_are_rate_limited_per_source_and_globally() {
    let mut rng = StdRng::seed_from_u64(5);
    let config = SecureConfig {
        handshake_rate_per_source: RateLimit::new(1, 2),
        handshake_rate_global: RateLimit::new(1, 5),
        ..SecureConfig::default()
    };
    let mut responder = layer(&mut rng, 1, config);
    let now = Duration::from_secs(1);
    let target = addr(1);
    // Ten initiators on one IP address, different ports.
    let mut answered = 0;
    for port in 0..10u16 {
        let mut init = layer(&mut rng, 1, SecureConfig::default());
        let out = init.seal(now, target, b"x").unwrap();
        let src = SocketAddr::from(([198, 51, 100, 1], 10_000 + port));
        if responder.open(now, src, &out[0].bytes).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, 2, "per-source burst");
    // Many sources: the global bucket (5, two spent) caps them.
    for ip in 2..20u8 {
        let mut init = layer(&mut rng, 1, SecureConfig::default());
        let out = init.seal(now, target, b"x").unwrap();
        let src = SocketAddr::from(([198, 51, 100, ip], 7946));
        if responder.open(now, src, &out[0].bytes).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, 5, "global burst");
    assert_eq!(responder.stats().rejected.rate_limited, 10 + 18 - 5);
}

#[test]
fn ik_is_used_after_xx_learned_the_key_and_on_rekey() {
    let mut net = pair(6);
    net.send(0, 1, b"join");
    let b_pub = *net.layer(1).local_static().unwrap();
    assert_eq!(net.layer(0).remote_static(addr(2)), Some(b_pub));
    // Past the rekey time the next seal still sends on the old session and
    // starts an IKpsk2 handshake.
    net.now += SecureConfig::default().rekey_after_time;
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"after rekey").unwrap();
    assert_eq!(out.len(), 2);
    assert!(matches!(
        Frame::parse(&out[0].bytes),
        Ok(Frame::Transport { .. })
    ));
    assert!(matches!(
        Frame::parse(&out[1].bytes),
        Ok(Frame::Initiation {
            pattern: Pattern::Ikpsk2,
            ..
        })
    ));
    net.deliver(0, out, &mut |_| true);
    assert_eq!(net.received[1].len(), 2);
    assert_eq!(net.layer(0).stats().handshakes_completed, 2);
    assert_eq!(net.layer(1).stats().handshakes_completed, 2);
    // The new session carries data both ways.
    net.send(1, 0, b"on the new session");
    net.send(0, 1, b"and back");
    assert_eq!(net.received[0].len(), 1);
    assert_eq!(net.received[1].len(), 3);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
}

#[test]
fn key_learned_from_gossip_gives_one_round_trip_ik() {
    let mut net = pair(7);
    let b_pub = *net.layer(1).local_static().unwrap();
    net.layer(0).learn_static(addr(2), b_pub);
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"hi").unwrap();
    assert!(matches!(
        Frame::parse(&out[0].bytes),
        Ok(Frame::Initiation {
            pattern: Pattern::Ikpsk2,
            ..
        })
    ));
    net.deliver(0, out, &mut |_| true);
    let a_pub = *net.layer(0).local_static().unwrap();
    assert_eq!(
        net.received[1],
        vec![(addr(1), b"hi".to_vec(), Some(a_pub))]
    );
}

#[test]
fn replayed_ik_initiation_is_refused() {
    let mut net = pair(8);
    let b_pub = *net.layer(1).local_static().unwrap();
    net.layer(0).learn_static(addr(2), b_pub);
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"hi").unwrap();
    let initiation = out[0].bytes.clone();
    net.deliver(0, out, &mut |_| true);
    let now = net.now + Duration::from_secs(1);
    assert_eq!(
        net.layer(1).open(now, addr(1), &initiation),
        Err(Reject::Replayed)
    );
    assert_eq!(net.layer(1).stats().rejected.replayed, 1);
}

#[test]
fn ik_with_a_stale_key_falls_back_to_xx() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut net = pair(9);
    // A believes B has another static key (B restarted with a new identity).
    net.layer(0)
        .learn_static(addr(2), *StaticKeypair::generate(&mut rng).public());
    net.send(0, 1, b"hello");
    assert!(net.received[1].is_empty());
    assert_eq!(net.layer(1).stats().rejected.handshake_failed, 1);
    net.advance(Duration::from_secs(5), &mut |_| true);
    assert_eq!(net.received[1].len(), 1, "the XX retry learned the new key");
    assert_eq!(
        net.layer(0).remote_static(addr(2)).as_ref(),
        net.layer(1).local_static()
    );
}

#[test]
fn lost_initiation_is_retried() {
    let mut net = pair(10);
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"x").unwrap();
    net.deliver(0, out, &mut |_| false);
    assert_eq!(
        net.layer(0).poll_timeout(),
        Some(net.now + SecureConfig::default().handshake_timeout)
    );
    net.advance(Duration::from_secs(5), &mut |_| true);
    assert_eq!(net.received[1].len(), 1);
    assert_eq!(net.layer(0).stats().handshakes_initiated, 2);
}

#[test]
fn queue_is_bounded_while_handshaking() {
    let mut net = pair(11);
    let now = net.now;
    let mut initiation = Vec::new();
    for i in 0..100u32 {
        initiation.extend(net.layer(0).seal(now, addr(2), &i.to_be_bytes()).unwrap());
    }
    assert_eq!(
        initiation.len(),
        1,
        "one handshake for all the queued frames"
    );
    net.deliver(0, initiation, &mut |_| true);
    let max = SecureConfig::default().max_queued_per_peer;
    assert_eq!(net.received[1].len(), max);
    assert_eq!(
        net.received[1][0].1,
        (100 - max as u32).to_be_bytes(),
        "the oldest were dropped"
    );
    assert_eq!(net.layer(0).stats().queue_dropped, 100 - max as u64);
}

#[test]
fn restarted_peer_with_new_key_reconnects() {
    let mut net = pair(12);
    net.send(0, 1, b"before");
    let mut rng = StdRng::seed_from_u64(99);
    net.nodes[1].1 = layer(&mut rng, 1, SecureConfig::default());
    // A still sends on the old session: B does not know it.
    net.send(0, 1, b"lost");
    assert_eq!(
        net.rejected.last(),
        Some(&(addr(2), Reject::UnknownSession))
    );
    // B speaks first after its restart: XX, A learns the new key.
    net.send(1, 0, b"i am back");
    assert_eq!(net.received[0].len(), 1);
    net.send(0, 1, b"welcome");
    assert_eq!(net.received[1].len(), 2);
    assert_eq!(
        net.layer(0).remote_static(addr(2)).as_ref(),
        net.layer(1).local_static()
    );
}

#[test]
fn silent_peer_triggers_a_new_handshake() {
    let mut net = pair(13);
    net.send(0, 1, b"before");
    let mut rng = StdRng::seed_from_u64(98);
    net.nodes[1].1 = layer(&mut rng, 1, SecureConfig::default());
    net.now += Duration::from_secs(20);
    // A sends into the void; after `stale_after` without an answer it
    // re-handshakes (IK fails on B's new key, the XX retry succeeds).
    net.send(0, 1, b"anyone?");
    net.advance(Duration::from_secs(5), &mut |_| true);
    net.send(0, 1, b"there you are");
    assert_eq!(
        net.received[1].last().map(|r| r.1.clone()),
        Some(b"there you are".to_vec())
    );
}

#[test]
fn sessions_expire_and_are_dropped() {
    let mut net = pair(14);
    net.send(0, 1, b"x");
    assert_eq!(net.layer(0).session_count(), 1);
    let expiry = net.layer(0).poll_timeout().unwrap();
    assert_eq!(expiry, net.now + SecureConfig::default().reject_after_time);
    net.advance(SecureConfig::default().reject_after_time, &mut |_| true);
    assert_eq!(net.layer(0).session_count(), 0);
    let t = net.now;
    assert!(!net.layer(0).has_session(t, addr(2)));
    // The known key stays: the next handshake is IK.
    let t = net.now;
    let out = net.layer(0).seal(t, addr(2), b"y").unwrap();
    assert!(matches!(
        Frame::parse(&out[0].bytes),
        Ok(Frame::Initiation {
            pattern: Pattern::Ikpsk2,
            ..
        })
    ));
}

#[test]
fn unencrypted_mode_frames_plain_and_refuses_the_other_mode() {
    let mut rng = StdRng::seed_from_u64(15);
    let mut plain_a = SecureLayer::unencrypted(SecureConfig::default(), &mut rng);
    let mut plain_b = SecureLayer::unencrypted(SecureConfig::default(), &mut rng);
    assert_eq!(plain_a.security(), Security::Unencrypted);
    assert_eq!(plain_a.local_static(), None);
    let now = Duration::from_secs(1);
    let out = plain_a.seal(now, addr(2), b"hello").unwrap();
    assert_eq!(out[0].bytes, b"\x01\x01hello");
    let opened = plain_b.open(now, addr(1), &out[0].bytes).unwrap();
    assert_eq!(opened.plaintext.as_deref(), Some(&b"hello"[..]));
    assert_eq!(opened.remote_static, None);

    let mut secure = layer(&mut rng, 1, SecureConfig::default());
    assert_eq!(
        secure.open(now, addr(1), &out[0].bytes),
        Err(Reject::SecurityMismatch)
    );
    let init = secure.seal(now, addr(2), b"x").unwrap();
    assert_eq!(
        plain_b.open(now, addr(3), &init[0].bytes),
        Err(Reject::SecurityMismatch)
    );
    assert_eq!(secure.stats().rejected.security_mismatch, 1);
}

#[test]
fn oversized_plaintext_is_refused() {
    let mut net = pair(16);
    let big = vec![0u8; MAX_PLAINTEXT + 1];
    let t = net.now;
    assert_eq!(
        net.layer(0).seal(t, addr(2), &big),
        Err(SealError::TooLarge(MAX_PLAINTEXT + 1))
    );
    let max = vec![0u8; MAX_PLAINTEXT];
    net.send(0, 1, &max);
    assert_eq!(net.received[1][0].1.len(), MAX_PLAINTEXT);
}

#[test]
fn simultaneous_initiations_both_work() {
    let mut net = pair(17);
    let now = net.now;
    let a = net.layer(0).seal(now, addr(2), b"a").unwrap();
    let b = net.layer(1).seal(now, addr(1), b"b").unwrap();
    net.deliver(0, a, &mut |_| true);
    net.deliver(1, b, &mut |_| true);
    for _ in 0..3 {
        net.send(0, 1, b"more a");
        net.send(1, 0, b"more b");
    }
    assert_eq!(net.received[1].len(), 4);
    assert_eq!(net.received[0].len(), 4);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
}

#[test]
fn peer_table_is_bounded() {
    let mut rng = StdRng::seed_from_u64(18);
    let config = SecureConfig {
        max_peers: 4,
        ..SecureConfig::default()
    };
    let mut a = layer(&mut rng, 1, config);
    let now = Duration::from_secs(1);
    for i in 0..10u8 {
        let _ = a.seal(now, addr(10 + i), b"x").unwrap();
    }
    assert_eq!(a.stats().handshakes_initiated, 4);
    assert_eq!(a.stats().queue_dropped, 6);
}

/// Arbitrary bytes never panic the layer, in either mode (one layer of each
/// kind for all cases: building one costs key generation).
#[test]
fn open_never_panics_on_arbitrary_bytes() {
    use proptest::test_runner::TestRunner;
    use std::cell::RefCell;

    let mut rng = StdRng::seed_from_u64(21);
    let secure = RefCell::new(layer(&mut rng, 1, SecureConfig::default()));
    let plain = RefCell::new(SecureLayer::unencrypted(SecureConfig::default(), &mut rng));
    let now = Duration::from_secs(1);
    TestRunner::default()
        .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
            let _ = secure.borrow_mut().open(now, addr(2), &bytes);
            let _ = plain.borrow_mut().open(now, addr(2), &bytes);
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Under loss, duplication and reordering, every plaintext arrives at
    /// most once, and after the faults stop new plaintext gets through.
    #[test]
    fn faults_never_duplicate_and_the_pair_recovers(
        faults in proptest::collection::vec((0u8..4, any::<bool>()), 1..60),
    ) {
        let mut net = pair(22);
        let mut fault = faults.into_iter().cycle().take(200);
        let mut held: Vec<Datagram> = Vec::new();
        let mut sent = 0u32;
        for round in 0..12u32 {
            for _ in 0..3 {
                let (from, to) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
                let dst = net.nodes[to].0;
                let out = net.nodes[from].1.seal(net.now, dst, &sent.to_be_bytes()).unwrap();
                sent += 1;
                let mut keep = |d: &mut Datagram| match fault.next() {
                    // drop
                    Some((0, _)) => false,
                    // duplicate later (held back, delivered next round)
                    Some((1, _)) => { held.push(d.clone()); true }
                    // delay: deliver only later
                    Some((2, _)) => { held.push(d.clone()); false }
                    _ => true,
                };
                net.deliver(from, out, &mut keep);
            }
            for d in std::mem::take(&mut held) {
                let from = if d.dst == addr(1) { 1 } else { 0 };
                net.deliver(from, vec![d], &mut |_| true);
            }
            net.advance(Duration::from_secs(2), &mut |_| true);
        }
        for node in &net.received {
            let mut seen: Vec<&Vec<u8>> = node.iter().map(|r| &r.1).collect();
            let len = seen.len();
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), len, "a plaintext arrived twice");
        }
        // Without faults, both directions work again.
        net.advance(Duration::from_secs(10), &mut |_| true);
        let before = (net.received[0].len(), net.received[1].len());
        net.send(0, 1, b"final a");
        net.advance(Duration::from_secs(5), &mut |_| true);
        net.send(1, 0, b"final b");
        net.advance(Duration::from_secs(5), &mut |_| true);
        prop_assert!(net.received[1][before.1..].iter().any(|r| r.1 == b"final a"));
        prop_assert!(net.received[0][before.0..].iter().any(|r| r.1 == b"final b"));
    }
}
