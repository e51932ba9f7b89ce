//! Five encrypted gossip agents on a real network: five test namespaces
//! joined by veth pairs to a bridge in a sixth, addresses from 198.18.0.0/24.
//!
//! * they converge;
//! * one is killed (its task aborted, no leave) and restarted with a new
//!   incarnation, and all converge again;
//! * an agent with the wrong password is refused and counted;
//! * datagrams injected from another namespace through a plain UDP socket —
//!   a forged one, a tampered copy of a genuine one and a replayed one — are
//!   rejected and counted by reason.
//!
//! Each agent is a tokio task; its socket is bound on a thread that entered
//! the agent's namespace (`TestNetns::run_in`) and then handed to tokio, so
//! every datagram crosses the kernel's veth and bridge path.
//!
//! Privileged: skipped visibly without CAP_NET_ADMIN, a failure under
//! `OVERLAY_REQUIRE_PRIVILEGED=1`.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use overlay_core::PeerId;
use overlay_gossip::{
    Config, PeerRecord,
    driver::{self, Credentials, DriverConfig, Handle},
    secure::{Frame, Psk, PskParams, SecureConfig, SecureLayer, StaticKeypair},
};
use overlay_testsupport::{TestNetns, privileged_test, unique_name};
use rand::{SeedableRng, rngs::StdRng};

const PORT: u16 = 7946;
const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: &str = "netns-cluster";
/// Small Argon2id parameters keep the test fast; production uses the default.
const PARAMS: PskParams = PskParams::new(1024, 1, 1);

/// A hub namespace with a bridge; every member namespace hangs off it.
struct Lan {
    hub: TestNetns,
    bridge: String,
    members: Vec<TestNetns>,
}

impl Lan {
    fn new() -> Self {
        let hub = TestNetns::new().unwrap();
        let bridge = unique_name("br");
        hub.ip(["link", "add", bridge.as_str(), "type", "bridge"])
            .unwrap();
        hub.ip(["link", "set", bridge.as_str(), "up"]).unwrap();
        Self {
            hub,
            bridge,
            members: Vec::new(),
        }
    }

    /// A new namespace with 198.18.0.`host`/24 on a veth to the bridge.
    fn add(&mut self, host: u8) -> usize {
        let ns = TestNetns::new().unwrap();
        let (h, n) = (unique_name("h"), unique_name("n"));
        self.hub
            .ip([
                "link",
                "add",
                h.as_str(),
                "type",
                "veth",
                "peer",
                "name",
                n.as_str(),
                "netns",
                ns.name(),
            ])
            .unwrap();
        self.hub
            .ip(["link", "set", h.as_str(), "master", self.bridge.as_str()])
            .unwrap();
        self.hub.ip(["link", "set", h.as_str(), "up"]).unwrap();
        let addr = format!("{}/24", ip(host));
        ns.ip(["addr", "add", addr.as_str(), "dev", n.as_str()])
            .unwrap();
        ns.ip(["link", "set", n.as_str(), "up"]).unwrap();
        self.members.push(ns);
        self.members.len() - 1
    }

    /// A UDP socket bound to 198.18.0.`host`:PORT inside member `i`.
    fn socket(&self, i: usize, host: u8) -> UdpSocket {
        self.members[i]
            .run_in(move || UdpSocket::bind(SocketAddr::from((ip(host), PORT))))
            .unwrap()
            .unwrap()
    }
}

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, host)
}

fn addr(host: u8) -> SocketAddr {
    SocketAddr::from((ip(host), PORT))
}

/// An agent's persistent identity: its id and static key survive restarts.
#[derive(Clone)]
struct Identity {
    host: u8,
    id: PeerId,
    keypair: StaticKeypair,
}

impl Identity {
    fn new(host: u8) -> Self {
        let keypair = StaticKeypair::generate(&mut StdRng::seed_from_u64(u64::from(host)));
        Self {
            host,
            id: PeerId::from_u128(u128::from(host)),
            keypair,
        }
    }
}

fn start_agent(
    lan: &Lan,
    member: usize,
    who: &Identity,
    incarnation: u64,
    password: &str,
) -> Handle {
    let socket = lan.socket(member, who.host);
    let mut record = PeerRecord::new(who.id);
    record.name = format!("agent-{}", who.host);
    record.incarnation = incarnation;
    record.underlay = vec![addr(who.host)];
    let mut gossip = Config::new(record)
        .with_gossip_interval(Duration::from_millis(100))
        .with_anti_entropy_interval(Duration::from_secs(2));
    gossip.suspect_to_down = Duration::from_secs(2);
    let psk = Psk::from_password(password, CLUSTER, PARAMS).unwrap();
    let credentials = Credentials::Encrypted {
        psk,
        keypair: who.keypair.clone(),
    };
    let config = DriverConfig::new(gossip, credentials);
    // The channel is never read here: the test polls the view instead.
    let (handle, _events) = driver::spawn(config.with_event_capacity(1), socket).unwrap();
    handle
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every agent's view is exactly `ids`, with `who` at `incarnation` or newer.
async fn converged(agents: &[Handle], ids: &[PeerId], who: PeerId, incarnation: u64) -> bool {
    for agent in agents {
        let Ok(view) = agent.peers().await else {
            return false;
        };
        let mut seen: Vec<PeerId> = view.iter().map(|r| r.id).collect();
        seen.sort();
        if seen != ids
            || !view
                .iter()
                .any(|r| r.id == who && r.incarnation >= incarnation)
        {
            return false;
        }
    }
    true
}

/// Runs a handshake from a plain socket in the injector's namespace with the
/// sans-IO layer (as a member with the cluster key would), then returns one
/// genuine transport datagram for `target`, not yet sent.
fn genuine_datagram(socket: &UdpSocket, target: SocketAddr) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(77);
    let psk = Psk::from_password("right password", CLUSTER, PARAMS).unwrap();
    let mut layer = SecureLayer::encrypted(
        psk,
        StaticKeypair::generate(&mut rng),
        SecureConfig::default(),
        &mut rng,
    );
    let start = std::time::Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = layer.seal(start.elapsed(), target, b"not gossip").unwrap();
    let mut buf = [0u8; 2048];
    while !layer.has_session(start.elapsed(), target) {
        assert!(
            start.elapsed() < WAIT,
            "the injector's handshake did not complete"
        );
        for d in out.drain(..) {
            socket.send_to(&d.bytes, d.dst).unwrap();
        }
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == target => {
                if let Ok(opened) = layer.open(start.elapsed(), from, &buf[..n]) {
                    out.extend(opened.replies);
                }
            }
            // Other agents' traffic, or nothing yet: retry the handshake.
            _ => out.extend(layer.handle_timeout(start.elapsed() + Duration::from_secs(5))),
        }
    }
    // Any queued frame went out with the confirmation; this one is held back.
    for d in out.drain(..) {
        socket.send_to(&d.bytes, d.dst).unwrap();
    }
    let mut sealed = layer.seal(start.elapsed(), target, b"captured").unwrap();
    assert_eq!(sealed.len(), 1);
    sealed.remove(0).bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_encrypted_agents_over_veth() {
    privileged_test!();
    let mut lan = Lan::new();
    let identities: Vec<Identity> = (1..=5).map(Identity::new).collect();
    let members: Vec<usize> = identities.iter().map(|who| lan.add(who.host)).collect();
    let mut ids: Vec<PeerId> = identities.iter().map(|who| who.id).collect();
    ids.sort();

    // 1. Five agents join through the first one and converge.
    let mut agents: Vec<Handle> = identities
        .iter()
        .zip(&members)
        .map(|(who, &m)| start_agent(&lan, m, who, 0, "right password"))
        .collect();
    for agent in &agents[1..] {
        agent.join(addr(1)).await.unwrap();
    }
    eventually("convergence", async || {
        converged(&agents, &ids, ids[0], 0).await
    })
    .await;
    for agent in &agents {
        let status = agent.status().await.unwrap();
        assert_eq!(status.security, overlay_gossip::secure::Security::Encrypted);
        assert!(status.sessions >= 1);
    }

    // 2. Agent 3 is killed and restarts with a new incarnation (same
    //    identity, fresh sessions); everyone converges on its new record.
    agents[2].abort().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agents[2] = start_agent(&lan, members[2], &identities[2], 1, "right password");
    agents[2].join(addr(1)).await.unwrap();
    eventually("convergence after the restart", async || {
        converged(&agents, &ids, identities[2].id, 1).await
    })
    .await;

    // 3. An agent with the wrong password is refused.
    let intruder_member = lan.add(6);
    let intruder = start_agent(
        &lan,
        intruder_member,
        &Identity::new(6),
        0,
        "wrong password",
    );
    intruder.join(addr(1)).await.unwrap();
    eventually("the intruder's handshakes refused", async || {
        agents[0]
            .status()
            .await
            .unwrap()
            .secure
            .rejected
            .handshake_failed
            >= 2
    })
    .await;
    assert_eq!(
        intruder.peers().await.unwrap().len(),
        1,
        "the intruder learned nothing"
    );
    assert_eq!(intruder.status().await.unwrap().gossip.datagrams_in, 0);
    assert!(
        converged(&agents, &ids, identities[2].id, 1).await,
        "the intruder is in nobody's view"
    );
    intruder.shutdown(false).await.unwrap();

    // 4. Datagrams injected from a test namespace through a plain socket.
    let injector_member = lan.add(7);
    let socket = lan.socket(injector_member, 7);
    let target = addr(2);
    let before = agents[1].status().await.unwrap().secure.rejected;
    let socket = tokio::task::spawn_blocking(move || {
        let genuine = genuine_datagram(&socket, target);
        // A forged frame: a transport header with a made-up session index.
        let forged = Frame::Transport {
            receiver: 0x0bad_cafe,
            counter: 1,
            ciphertext: &[0x55; 32],
        }
        .to_vec();
        socket.send_to(&forged, target).unwrap();
        // A tampered copy of the genuine datagram: one ciphertext bit flipped.
        let mut tampered = genuine.clone();
        let last = tampered.len() - 1;
        tampered[last - 20] ^= 0x01;
        socket.send_to(&tampered, target).unwrap();
        // The genuine one, twice: accepted once, then a replay.
        socket.send_to(&genuine, target).unwrap();
        socket.send_to(&genuine, target).unwrap();
        socket
    })
    .await
    .unwrap();
    eventually("the injected datagrams counted", async || {
        let r = agents[1].status().await.unwrap().secure.rejected;
        r.bad_mac > before.bad_mac
            && r.replayed > before.replayed
            && r.unknown_session > before.unknown_session
    })
    .await;
    let after = agents[1].status().await.unwrap().secure.rejected;
    assert_eq!(after.bad_mac - before.bad_mac, 1, "the tampered datagram");
    assert_eq!(after.replayed - before.replayed, 1, "the replayed datagram");
    drop(socket);

    // The cluster is unaffected, and shuts down gracefully.
    assert!(converged(&agents, &ids, identities[2].id, 1).await);
    for agent in &agents {
        agent.shutdown(true).await.unwrap();
    }
}
