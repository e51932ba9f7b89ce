//! The simulator's pluggable datagram path: a transport that authenticates
//! cluster membership and reports each sender's static key, as the Noise
//! layer does. Peers without the cluster secret, or whose record names a key
//! other than the one they authenticate with, never join.

use std::net::SocketAddr;
use std::time::Duration;

use overlay_gossip::sim::{Opened, Sim, SimConfig, Transport};

/// A stand-in for the Noise layer (no cryptography): datagrams carry the
/// cluster secret and the sender's static key in clear; `open` drops
/// datagrams with another secret and reports the key as authenticated.
struct Tagged {
    secret: u8,
    key: [u8; 32],
}

impl Transport for Tagged {
    fn seal(
        &mut self,
        _now: Duration,
        dst: SocketAddr,
        payload: Vec<u8>,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let mut d = Vec::with_capacity(33 + payload.len());
        d.push(self.secret);
        d.extend_from_slice(&self.key);
        d.extend_from_slice(&payload);
        out.push((dst, d));
    }

    fn open(
        &mut self,
        _now: Duration,
        _from: SocketAddr,
        datagram: &[u8],
        _out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> Option<Opened> {
        let (&secret, rest) = datagram.split_first()?;
        if secret != self.secret || rest.len() < 32 {
            return None;
        }
        let (key, payload) = rest.split_at(32);
        Some(Opened {
            payload: payload.to_vec(),
            sender_static: key.try_into().ok(),
        })
    }
}

fn key_of(n: usize) -> [u8; 32] {
    [n as u8 + 1; 32]
}

#[test]
fn peers_without_the_secret_or_with_a_foreign_key_never_join() {
    let mut sim = Sim::new(SimConfig::default().with_seed(11)).with_transport_factory(|i, _| {
        Box::new(Tagged {
            secret: 7,
            key: key_of(i),
        })
    });
    let mut good = Vec::new();
    for i in 0..6 {
        good.push(sim.add_node_with(|c| c.record.noise_static = key_of(i), None));
    }
    // Wrong cluster secret.
    let outsider = sim.add_node_with(
        |c| c.record.noise_static = key_of(6),
        Some(Box::new(Tagged {
            secret: 8,
            key: key_of(6),
        })),
    );
    // Right secret, but its record claims someone else's key.
    let impostor = sim.add_node_with(
        |c| c.record.noise_static = key_of(0),
        Some(Box::new(Tagged {
            secret: 7,
            key: key_of(7),
        })),
    );
    for &n in &good[1..] {
        sim.join(n, good[0]);
    }
    sim.join(outsider, good[0]);
    sim.join(impostor, good[1]);
    sim.run_for(Duration::from_secs(20));
    let (out_id, imp_id) = (sim.id(outsider), sim.id(impostor));
    for &n in &good {
        let g = sim.gossip(n);
        assert_eq!(g.len(), 6, "node {n}");
        assert!(g.peer(out_id).is_none());
        assert!(g.peer(imp_id).is_none());
    }
    assert_eq!(sim.gossip(outsider).len(), 1);
    assert!(sim.gossip(good[1]).counters().rejected.key_mismatch > 0);
    // Every good view holds exactly the good peers, each with its own key.
    let reference: Vec<_> = sim.gossip(good[0]).peers().cloned().collect();
    for &n in &good {
        assert_eq!(
            sim.gossip(n).peers().cloned().collect::<Vec<_>>(),
            reference
        );
    }
    for (i, &n) in good.iter().enumerate() {
        assert_eq!(
            sim.gossip(good[0]).peer(sim.id(n)).unwrap().noise_static,
            key_of(i)
        );
    }
}
