//! The core against hostile or foreign input: key binding, spoofed senders,
//! unknown message types and versions, oversized datagrams.

use std::net::SocketAddr;
use std::time::Duration;

use overlay_core::PeerId;
use overlay_gossip::wire::{Frame, Message, parse_frames};
use overlay_gossip::{Config, Event, Gossip, PeerRecord};
use rand::SeedableRng;
use rand::rngs::SmallRng;

const T0: Duration = Duration::ZERO;

fn record(n: u8) -> PeerRecord {
    let mut r = PeerRecord::new(PeerId::from_u128(u128::from(n)));
    r.underlay = vec![addr(n)];
    r.noise_static = [n; 32];
    r
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 7946))
}

fn core(n: u8) -> Gossip {
    Gossip::new(
        Config::new(record(n)),
        &mut SmallRng::seed_from_u64(u64::from(n)),
    )
}

fn dgram(sender: u8, m: Message) -> Vec<u8> {
    let mut b = Vec::new();
    Frame::new(PeerId::from_u128(u128::from(sender)), m)
        .emit(&mut b)
        .expect("test frames fit");
    b
}

fn drain(g: &mut Gossip) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(t) = g.poll_transmit() {
        out.extend(parse_frames(&t.payload).map(|f| f.expect("the core emits valid frames")));
    }
    out
}

#[test]
fn join_binds_the_peer_to_its_static_key_and_other_keys_are_refused() {
    let mut a = core(1);
    let b = record(2);
    a.handle_datagram(
        T0,
        addr(2),
        Some([2; 32]),
        &dgram(2, Message::Join(b.clone())),
    );
    assert_eq!(a.peer(b.id), Some(&b));
    assert!(matches!(a.poll_event(), Some(Event::PeerUp(_))));
    // The join is answered with our record and a digest.
    let answer = drain(&mut a);
    assert!(matches!(answer[0].message, Message::Records(_)));
    assert!(
        answer
            .iter()
            .any(|f| matches!(f.message, Message::Digest { .. }))
    );

    // Anyone else claiming to be peer 2 (authenticated with another key) is
    // dropped, and so is a newer record of peer 2 it carries.
    let mut forged = b.clone();
    forged.version = 5;
    forged.noise_static = [9; 32];
    a.handle_datagram(
        T0,
        addr(9),
        Some([9; 32]),
        &dgram(2, Message::Records(vec![forged.clone()])),
    );
    assert_eq!(a.counters().rejected.key_mismatch, 1);
    assert_eq!(a.peer(b.id).unwrap().version, 0);

    // A third party relaying a key change of peer 2 is not believed either.
    a.handle_datagram(
        T0,
        addr(3),
        Some([3; 32]),
        &dgram(3, Message::Records(vec![forged])),
    );
    assert_eq!(a.counters().rejected.key_mismatch, 2);
    assert_eq!(a.peer(b.id).unwrap().noise_static, [2; 32]);

    // A joiner whose record names a key other than the one it authenticated
    // with never gets in.
    let mut liar = record(4);
    liar.noise_static = [5; 32];
    a.handle_datagram(T0, addr(4), Some([4; 32]), &dgram(4, Message::Join(liar)));
    assert!(a.peer(PeerId::from_u128(4)).is_none());
    assert_eq!(a.counters().rejected.key_mismatch, 3);
}

#[test]
fn a_restart_may_change_the_key_with_a_new_incarnation() {
    let mut a = core(1);
    let b = record(2);
    a.handle_datagram(
        T0,
        addr(2),
        Some([2; 32]),
        &dgram(2, Message::Join(b.clone())),
    );
    let mut reborn = b.clone();
    reborn.incarnation = 1;
    reborn.noise_static = [22; 32];
    a.handle_datagram(
        T0,
        addr(2),
        Some([22; 32]),
        &dgram(2, Message::Join(reborn.clone())),
    );
    // The frame header check uses the record known before this frame (the
    // old key), so the direct frame is refused; agents persist their static
    // key across restarts. A relay of the new incarnation is accepted.
    assert_eq!(a.counters().rejected.key_mismatch, 1);
    a.handle_datagram(
        T0,
        addr(3),
        Some([3; 32]),
        &dgram(3, Message::Records(vec![reborn.clone()])),
    );
    assert_eq!(a.peer(b.id), Some(&reborn));
}

#[test]
fn swim_payload_from_another_peer_than_the_frame_sender_is_refused() {
    let mut a = core(1);
    let mut b = core(2);
    b.join(T0, addr(1));
    // Get b's SWIM traffic flowing: a learns b, b learns a.
    for t in drain(&mut b) {
        let mut d = Vec::new();
        t.emit(&mut d).unwrap();
        a.handle_datagram(T0, addr(2), None, &d);
    }
    for t in drain(&mut a) {
        let mut d = Vec::new();
        t.emit(&mut d).unwrap();
        b.handle_datagram(T0, addr(1), None, &d);
    }
    let mut now = T0;
    let mut swim = None;
    for _ in 0..50 {
        now += Duration::from_millis(100);
        b.handle_timeout(now);
        if let Some(f) = drain(&mut b)
            .into_iter()
            .find(|f| matches!(f.message, Message::Swim(_)))
        {
            swim = Some(f);
            break;
        }
    }
    let Message::Swim(payload) = swim.expect("b probes a").message else {
        unreachable!()
    };
    a.handle_datagram(now, addr(3), None, &dgram(3, Message::Swim(payload)));
    assert_eq!(a.counters().rejected.spoofed_sender, 1);
}

#[test]
fn unknown_types_are_skipped_and_counted_and_later_frames_still_count() {
    let mut a = core(1);
    let mut d = dgram(
        2,
        Message::Other {
            kind: 99,
            body: vec![1, 2, 3],
        },
    );
    d.extend(dgram(2, Message::Join(record(2))));
    a.handle_datagram(T0, addr(2), None, &d);
    assert_eq!(a.counters().rejected.unknown_type, 1);
    assert!(a.peer(PeerId::from_u128(2)).is_some());
}

#[test]
fn unsupported_version_is_answered_with_ours_once_per_interval() {
    let mut a = core(1);
    let mut f = Frame::new(PeerId::from_u128(2), Message::Pull(vec![]));
    f.version = 7;
    let mut d = Vec::new();
    f.emit(&mut d).unwrap();
    a.handle_datagram(T0, addr(2), None, &d);
    a.handle_datagram(T0, addr(2), None, &d);
    assert_eq!(a.counters().rejected.unsupported_version, 2);
    let out = drain(&mut a);
    let versions: Vec<_> = out
        .iter()
        .filter(|f| matches!(f.message, Message::Versions { min: 1, max: 1 }))
        .collect();
    assert_eq!(versions.len(), 1);
    // A peer that answers with versions we do not speak is reported.
    a.handle_datagram(
        T0,
        addr(2),
        None,
        &dgram(2, Message::Versions { min: 5, max: 7 }),
    );
    assert_eq!(a.counters().rejected.incompatible_peer, 1);
    assert!(
        std::iter::from_fn(|| a.poll_event())
            .any(|e| matches!(e, Event::IncompatiblePeer { min: 5, max: 7, .. }))
    );
}

#[test]
fn garbage_oversized_and_self_addressed_input_is_counted_not_fatal() {
    let mut a = core(1);
    a.handle_datagram(T0, addr(2), None, b"not a frame");
    a.handle_datagram(T0, addr(2), None, &vec![0u8; 2000]);
    a.handle_datagram(T0, addr(2), None, &dgram(1, Message::Join(record(1))));
    let c = a.counters();
    assert_eq!(c.rejected.malformed, 1);
    assert_eq!(c.rejected.too_big, 1);
    assert_eq!(c.rejected.from_self, 1);
    assert_eq!(c.datagrams_in, 3);
    assert_eq!(a.len(), 1);
}

#[test]
fn unicast_on_an_unregistered_channel_is_counted() {
    let mut a = core(1);
    a.handle_datagram(
        T0,
        addr(2),
        None,
        &dgram(
            2,
            Message::Unicast {
                channel: "nope".into(),
                payload: vec![1],
            },
        ),
    );
    assert_eq!(a.counters().rejected.unknown_channel, 1);
    assert!(a.poll_event().is_none());
}

#[test]
fn a_stale_own_record_after_a_restart_is_superseded() {
    // We restarted at incarnation 0 but the cluster holds our incarnation 3.
    let mut a = core(1);
    let mut old_me = record(1);
    old_me.incarnation = 3;
    a.handle_datagram(T0, addr(2), None, &dgram(2, Message::Records(vec![old_me])));
    assert_eq!(a.local().incarnation, 4);
}

#[test]
fn the_core_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Gossip>();
}
