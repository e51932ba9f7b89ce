//! The gossip core in the simulator with every node's datagrams through the
//! secure layer.

use std::time::Duration;

use rand::{SeedableRng, rngs::StdRng};

use super::*;
use crate::sim::{NodeIdx, Sim, SimConfig, Transport};

/// Node `i`'s static key: fixed per index, so a restarted node keeps its
/// identity (its record's `noise_static` stays valid).
fn keypair(i: NodeIdx) -> StaticKeypair {
    let mut secret = [0x42u8; 32];
    secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
    StaticKeypair::from_secret(secret)
}

fn secure(i: NodeIdx, psk_byte: u8) -> Box<dyn Transport> {
    let mut rng = StdRng::seed_from_u64(1000 + i as u64);
    let psk = Psk::from_key([psk_byte; 32], "sim").expect("32-byte key");
    Box::new(SecureLayer::encrypted(
        psk,
        keypair(i),
        SecureConfig::default(),
        &mut rng,
    ))
}

/// `n` nodes with the cluster key; the factory rebuilds a restarted node's
/// layer with its old identity and a fresh session table.
fn secure_sim(seed: u64, n: usize) -> (Sim, Vec<NodeIdx>) {
    let mut sim = Sim::new(SimConfig::default().with_seed(seed).with_loss(0.01))
        .with_transport_factory(|i, _| secure(i, 1));
    let nodes: Vec<NodeIdx> = (0..n)
        .map(|i| sim.add_node_with(|cfg| cfg.record.noise_static = *keypair(i).public(), None))
        .collect();
    for &node in &nodes[1..] {
        sim.join(node, nodes[0]);
    }
    (sim, nodes)
}

#[test]
fn encrypted_cluster_converges_and_survives_a_restart() {
    let (mut sim, nodes) = secure_sim(31, 8);
    assert!(
        sim.run_until(Duration::from_secs(60), Sim::converged),
        "initial convergence"
    );
    for &n in &nodes {
        let g = sim.gossip(n);
        assert_eq!(g.len(), nodes.len());
        assert_eq!(g.counters().rejected.key_mismatch, 0);
    }
    // Node 5 crashes and restarts with a new incarnation and no sessions.
    sim.crash(nodes[5]);
    sim.run_for(Duration::from_secs(2));
    sim.restart(nodes[5], nodes[0]);
    assert!(
        sim.run_until(Duration::from_secs(90), Sim::converged),
        "convergence after the restart"
    );
    assert_eq!(
        sim.gossip(nodes[3])
            .peer(sim.id(nodes[5]))
            .map(|r| r.incarnation),
        Some(1)
    );
}

#[test]
fn wrong_key_peer_never_joins() {
    let (mut sim, nodes) = secure_sim(32, 5);
    assert!(sim.run_until(Duration::from_secs(60), Sim::converged));
    let intruder = sim.add_node_with(
        |cfg| cfg.record.noise_static = *keypair(99).public(),
        Some(secure(99, 2)),
    );
    sim.join(intruder, nodes[0]);
    sim.run_for(Duration::from_secs(60));
    let intruder_id = sim.id(intruder);
    for &n in &nodes {
        assert!(
            sim.gossip(n).peer(intruder_id).is_none(),
            "node {n} learned the intruder"
        );
        assert_eq!(sim.gossip(n).len(), nodes.len());
    }
    assert_eq!(
        sim.gossip(intruder).len(),
        1,
        "the intruder learned nothing"
    );
    assert_eq!(
        sim.gossip(intruder).counters().datagrams_in,
        0,
        "no datagram reached its core"
    );
}
