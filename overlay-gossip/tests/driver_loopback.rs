//! The tokio driver on loopback UDP sockets: encrypted clusters converge and
//! carry channel messages, a wrong password is refused, leave and shutdown
//! are graceful, a slow application loses events rather than stalling gossip.
//!
//! Conditions are awaited with a deadline (`eventually`), never by sleeping
//! a fixed time and then asserting.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use overlay_core::PeerId;
use overlay_gossip::{
    Config, Event, PeerRecord,
    driver::{self, Credentials, DriverConfig, Handle},
    secure::{Psk, Security, StaticKeypair},
};
use rand::{SeedableRng, rngs::StdRng};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    id: PeerId,
    addr: SocketAddr,
    handle: Handle,
    events: mpsc::Receiver<Event>,
}

fn credentials(key: Option<u8>, seed: u64) -> Credentials {
    match key {
        Some(k) => Credentials::Encrypted {
            psk: Psk::from_key([k; 32], "driver-test").unwrap(),
            keypair: StaticKeypair::generate(&mut StdRng::seed_from_u64(seed)),
        },
        None => Credentials::Unencrypted,
    }
}

fn start(n: u128, key: Option<u8>, tune: impl FnOnce(DriverConfig) -> DriverConfig) -> Node {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let id = PeerId::from_u128(n);
    let mut record = PeerRecord::new(id);
    record.name = format!("node-{n}");
    record.underlay = vec![addr];
    let gossip = Config::new(record).with_gossip_interval(Duration::from_millis(50));
    let config =
        tune(DriverConfig::new(gossip, credentials(key, n as u64)).with_seed([n as u8; 32]));
    let (handle, events) = driver::spawn(config, socket).unwrap();
    Node {
        id,
        addr,
        handle,
        events,
    }
}

/// Polls `check` every 50 ms until it holds or [`WAIT`] passes.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn view_size(node: &Handle) -> usize {
    node.peers().await.map(|p| p.len()).unwrap_or(0)
}

/// Receives events until one matches, or fails after [`WAIT`].
async fn expect_event(
    events: &mut mpsc::Receiver<Event>,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if pred(&e) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no event: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_drivers_converge_exchange_messages_and_leave() {
    let mut nodes: Vec<Node> = (1..=3).map(|n| start(n, Some(7), |c| c)).collect();
    let seed = nodes[0].addr;
    for node in &nodes[1..] {
        node.handle.join(seed).await.unwrap();
    }
    for node in &nodes {
        eventually("a full view", async || view_size(&node.handle).await == 3).await;
    }
    for node in &nodes {
        let status = node.handle.status().await.unwrap();
        assert_eq!(status.security, Security::Encrypted);
        assert!(status.sessions >= 1);
        assert!(status.secure.handshakes_completed >= 1);
        assert_eq!(status.gossip.rejected.key_mismatch, 0);
        assert_eq!(
            status.secure.rejected.bad_mac + status.secure.rejected.handshake_failed,
            0
        );
    }
    // A record change reaches the others.
    nodes[2]
        .handle
        .update_local(|r| r.name = "renamed".into())
        .await
        .unwrap();
    let renamed = nodes[2].id;
    expect_event(
        &mut nodes[0].events,
        "PeerChanged",
        |e| matches!(e, Event::PeerChanged(r) if r.id == renamed && r.name == "renamed"),
    )
    .await;
    // Channels: a broadcast and a unicast.
    let mut channels = Vec::new();
    for node in &nodes {
        channels.push(node.handle.register_channel("test").await.unwrap());
    }
    nodes[0]
        .handle
        .broadcast(channels[0], b"to everyone".to_vec())
        .await
        .unwrap();
    let from = nodes[0].id;
    for node in &mut nodes[1..] {
        expect_event(&mut node.events, "the broadcast", |e| {
            matches!(e, Event::ChannelMessage { from: f, bytes, .. } if *f == from && bytes == b"to everyone")
        })
        .await;
    }
    let to = nodes[2].id;
    nodes[1]
        .handle
        .unicast(channels[1], to, b"just you".to_vec())
        .await
        .unwrap();
    let from = nodes[1].id;
    expect_event(&mut nodes[2].events, "the unicast", |e| {
        matches!(e, Event::ChannelMessage { from: f, bytes, .. } if *f == from && bytes == b"just you")
    })
    .await;
    // Node 3 leaves gracefully: the others see it go down.
    nodes[2].handle.shutdown(true).await.unwrap();
    assert!(matches!(
        nodes[2].handle.status().await,
        Err(driver::DriverError::Stopped)
    ));
    let gone = nodes[2].id;
    expect_event(
        &mut nodes[0].events,
        "PeerDown",
        |e| matches!(e, Event::PeerDown(id) if *id == gone),
    )
    .await;
    eventually("the view without the leaver", async || {
        view_size(&nodes[1].handle).await == 2
    })
    .await;
    for node in &nodes[..2] {
        node.handle.shutdown(false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let member = start(11, Some(1), |c| c);
    let other = start(12, Some(1), |c| c);
    other.handle.join(member.addr).await.unwrap();
    eventually("the members' view", async || {
        view_size(&member.handle).await == 2
    })
    .await;
    let intruder = start(13, Some(2), |c| c);
    intruder.handle.join(member.addr).await.unwrap();
    eventually("refused handshakes", async || {
        member
            .handle
            .status()
            .await
            .unwrap()
            .secure
            .rejected
            .handshake_failed
            >= 2
    })
    .await;
    assert_eq!(view_size(&member.handle).await, 2);
    assert_eq!(view_size(&other.handle).await, 2);
    assert_eq!(view_size(&intruder.handle).await, 1);
    let status = intruder.handle.status().await.unwrap();
    assert_eq!(status.sessions, 0);
    assert_eq!(
        status.gossip.datagrams_in, 0,
        "nothing reached the intruder's core"
    );
    for node in [&member, &other, &intruder] {
        node.handle.shutdown(false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencrypted_mode_says_so_and_refuses_encrypted_peers() {
    let a = start(21, None, |c| c);
    let b = start(22, None, |c| c);
    b.handle.join(a.addr).await.unwrap();
    eventually("a plain view", async || view_size(&a.handle).await == 2).await;
    let status = a.handle.status().await.unwrap();
    assert_eq!(status.security, Security::Unencrypted);
    assert_eq!(status.local.noise_static, [0; 32]);
    let encrypted = start(23, Some(1), |c| c);
    encrypted.handle.join(a.addr).await.unwrap();
    eventually("refused encrypted handshakes", async || {
        a.handle
            .status()
            .await
            .unwrap()
            .secure
            .rejected
            .security_mismatch
            >= 1
    })
    .await;
    assert_eq!(view_size(&a.handle).await, 2);
    for node in [&a, &b, &encrypted] {
        node.handle.shutdown(false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_loses_events_not_gossip() {
    // Nobody reads these events, and the channel holds one.
    let a = start(31, Some(3), |c| c.with_event_capacity(1));
    let others: Vec<Node> = (32..=35).map(|n| start(n, Some(3), |c| c)).collect();
    for node in &others {
        node.handle.join(a.addr).await.unwrap();
    }
    eventually("a full view despite the stuck application", async || {
        view_size(&a.handle).await == 5
    })
    .await;
    assert!(a.handle.status().await.unwrap().driver.events_dropped >= 1);
    for node in others.iter().map(|n| &n.handle).chain([&a.handle]) {
        node.shutdown(false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_the_task_and_frees_the_socket() {
    let a = start(41, Some(4), |c| c);
    let addr = a.addr;
    a.handle.abort().await;
    assert!(matches!(
        a.handle.status().await,
        Err(driver::DriverError::Stopped)
    ));
    // The socket was closed with the task: the address can be bound again.
    std::net::UdpSocket::bind(addr).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_is_rate_limited() {
    let a = start(51, Some(5), |c| c);
    let b = start(52, Some(5), |c| c);
    b.handle.join(a.addr).await.unwrap();
    eventually("a view of two", async || view_size(&a.handle).await == 2).await;

    // A hostile peer replays one handshake initiation as fast as it can.
    let target = a.addr;
    let (answered, elapsed) = tokio::task::spawn_blocking(move || {
        let mut rng = StdRng::seed_from_u64(9);
        let mut layer = overlay_gossip::secure::SecureLayer::encrypted(
            Psk::from_key([5; 32], "driver-test").unwrap(),
            StaticKeypair::generate(&mut rng),
            overlay_gossip::secure::SecureConfig::default(),
            &mut rng,
        );
        let initiation = layer
            .seal(Duration::ZERO, target, b"x")
            .unwrap()
            .remove(0)
            .bytes;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        let started = std::time::Instant::now();
        for _ in 0..2000 {
            socket.send_to(&initiation, target).unwrap();
            while socket.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        }
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while socket.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        (answered, started.elapsed())
    })
    .await
    .unwrap();
    let status = a.handle.status().await.unwrap();
    let limit = status.secure.rejected.rate_limited;
    // Default limit per source: a burst of 20, then 10 per second. (The
    // kernel drops part of the flood before the driver reads it.)
    let bound = 20 + (elapsed.as_secs_f64() * 10.0).ceil() as u64;
    let answered = answered as u64;
    assert!(
        answered <= bound,
        "{answered} handshake responses to one flooding source in {elapsed:?}"
    );
    assert!(limit >= 100, "only {limit} initiations were rate limited");
    assert!(answered + limit <= 2000);
    // The cluster is unaffected.
    b.handle
        .update_local(|r| r.name = "still here".into())
        .await
        .unwrap();
    eventually("a change after the flood", async || {
        a.handle
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|r| r.name == "still here")
    })
    .await;
    for node in [&a, &b] {
        node.handle.shutdown(false).await.unwrap();
    }
}
