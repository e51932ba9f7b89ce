//! The deterministic simulator (design note section 3.6, S1-S5): no
//! address is ever held by two live pods, every ADD answers at once and
//! succeeds once space is refilled, acknowledged addresses survive crashes,
//! replicas converge after healing, reclaimed space becomes usable.
//!
//! `OVERLAY_RING_SIM_PEERS` (default 1000) sets the size of the large run;
//! bigger runs are for release builds (`cargo test --release`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::time::Duration;

use overlay_ipam::ring::AllocFailure;
use overlay_ipam::ring::sim::{Sim, SimConfig};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn assert_clean(sim: &Sim) {
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// After healing, every live node gets an address within a few refill
/// periods (S2: space is requested in the background and arrives).
fn assert_every_node_allocates(sim: &mut Sim, nodes: impl IntoIterator<Item = usize> + Clone) {
    for _ in 0..20 {
        let pending: Vec<usize> = nodes
            .clone()
            .into_iter()
            .filter(|&i| sim.node(i).usable_free(sim.now()) == 0)
            .collect();
        if pending.is_empty() {
            break;
        }
        sim.run(secs(1));
    }
    for i in nodes {
        match sim.add_pod(i) {
            Ok(_) => {}
            Err(e) => panic!("node {i} could not allocate after refill: {e:?}"),
        }
    }
}

#[test]
fn thousand_peers_with_loss_partitions_crashes_and_reclaims_never_duplicate_and_converge() {
    let peers: usize = std::env::var("OVERLAY_RING_SIM_PEERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut sim = Sim::new(
        SimConfig::default()
            .peers(peers)
            .seeds(peers / 10)
            .seed(11)
            .loss(0.05)
            .duplicate(0.02),
    );
    // Load with ADD/DEL churn.
    for _ in 0..3 {
        sim.random_load(peers / 4, peers / 12);
        sim.run(secs(1));
    }
    // A partition: a tenth of the nodes on their own, load on both sides.
    for i in 0..peers / 10 {
        sim.set_group(i * 10 % peers, 1);
    }
    for _ in 0..2 {
        sim.random_load(peers / 4, peers / 12);
        sim.run(secs(1));
    }
    // Agent crashes (pods keep running) and restarts from the store.
    for i in (3..peers).step_by(97) {
        sim.crash(i);
    }
    sim.random_load(peers / 8, 0);
    sim.run(secs(1));
    for i in (3..peers).step_by(97) {
        sim.restart(i);
    }
    // Machines die for good; an authority reclaims each with a live heir.
    let dead: Vec<usize> = (5..peers).step_by(151).collect();
    for &i in &dead {
        let id = sim.node(i).identity();
        sim.kill(i);
        sim.reclaim(id.peer, id.incarnation, (i + 1) % peers, (i + 1) % peers);
    }
    sim.heal();
    sim.random_load(peers / 8, peers / 20);
    let took = sim.run_until_converged(secs(120));
    assert_clean(&sim);
    assert!(took.is_some(), "replicas did not converge after healing");
    assert!(sim.pods().count() > peers / 2, "the load ran");
    // S5 and S2: after the quarantine every live node can allocate.
    sim.run(secs(11));
    let live: Vec<usize> = (0..peers)
        .filter(|i| !dead.contains(i))
        .step_by(37)
        .collect();
    assert_every_node_allocates(&mut sim, live);
    assert_clean(&sim);
    assert_eq!(sim.anomaly_counts().get("claim_conflict"), None);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut sim = Sim::new(SimConfig::default().peers(24).seeds(3).seed(5));
        for _ in 0..5 {
            sim.random_load(10, 3);
            sim.run(secs(1));
        }
        (
            sim.delivered(),
            sim.pods().collect::<Vec<_>>(),
            sim.node(0).ring().clone(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn every_add_answers_at_once_with_a_typed_reason() {
    // One seed owns everything; the others have nothing yet.
    let mut sim = Sim::new(SimConfig::default().peers(4).seeds(1).seed(2));
    let before = sim.now();
    assert_eq!(sim.add_pod(3), Err(AllocFailure::NoSpaceYet));
    assert_eq!(sim.now(), before, "an ADD never waits on the network");
    assert_eq!(AllocFailure::NoSpaceYet.cni_code(), 11);
    assert_every_node_allocates(&mut sim, 1..4);
    assert_clean(&sim);
}

#[test]
fn exhaustion_is_reported_as_exhausted_once_no_peer_has_space() {
    let mut sim = Sim::new(
        SimConfig::default()
            .peers(2)
            .seeds(2)
            .seed(3)
            .loss(0.0)
            .universe("198.18.0.0/27".parse().unwrap(), 28),
    );
    let mut last = Ok("0.0.0.0".parse().unwrap());
    for _ in 0..40 {
        last = sim.add_pod(0);
        if last.is_err() {
            sim.run(secs(3));
            last = sim.add_pod(0);
        }
        if last.is_err() {
            break;
        }
    }
    while sim.add_pod(1).is_ok() {}
    sim.run(secs(12));
    let err = sim.add_pod(0).unwrap_err();
    assert_eq!(err, AllocFailure::Exhausted, "{last:?}");
    assert_eq!(err.cni_code(), 50);
    assert_eq!(sim.pods().count(), 32);
    assert_clean(&sim);
}

#[test]
fn mass_restart_of_all_nodes_keeps_every_acknowledged_address() {
    let mut sim = Sim::new(SimConfig::default().peers(40).seeds(4).seed(8));
    for _ in 0..6 {
        sim.random_load(30, 8);
        sim.run(secs(1));
    }
    let before: Vec<_> = sim.pods().collect();
    for i in 0..40 {
        sim.crash(i);
    }
    sim.run(secs(1));
    for i in 0..40 {
        sim.restart(i);
    }
    // S4: restart checks every acknowledged address is in the store.
    assert_clean(&sim);
    assert_eq!(sim.pods().collect::<Vec<_>>(), before);
    for _ in 0..4 {
        sim.random_load(30, 8);
        sim.run(secs(1));
    }
    assert!(sim.run_until_converged(secs(60)).is_some());
    assert_clean(&sim);
}

#[test]
fn a_reclaimed_peer_returning_within_quarantine_gets_its_live_addresses_back() {
    let mut sim = Sim::new(SimConfig::default().peers(6).seeds(6).seed(4).loss(0.0));
    let pods: Vec<_> = (0..5).map(|_| sim.add_pod(2).unwrap()).collect();
    sim.run(secs(2));
    // Node 2 is cut off; the authority wrongly declares it dead.
    sim.set_group(2, 1);
    let id = sim.node(2).identity();
    sim.reclaim(id.peer, id.incarnation, 3, 3);
    sim.run(secs(2));
    // It still allocates in its partition (its writes are fenced).
    for _ in 0..3 {
        sim.add_pod(2).unwrap();
    }
    sim.heal();
    assert!(sim.run_until_converged(secs(30)).is_some());
    // It stepped down and re-identified; its pods keep their addresses,
    // granted back by the heir, and the heir never hands them out.
    assert_ne!(sim.node(2).identity().peer, id.peer);
    assert_eq!(sim.anomaly_counts().get("stepped_down"), Some(&1));
    let mine: Vec<_> = sim
        .node(2)
        .allocations()
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    for ip in &pods {
        assert!(mine.contains(ip));
    }
    sim.run(secs(12));
    for _ in 0..200 {
        let _ = sim.add_pod(3);
    }
    assert_clean(&sim);
    assert_eq!(sim.anomaly_counts().get("claim_conflict"), None);
}

/// Heavy faults across several seeds: 20% loss, 10% duplication, rotating
/// three-way partitions, an agent crash every round, and a live node
/// wrongly reclaimed while partitioned (it steps down and claims back).
#[test]
fn several_seeds_under_heavy_loss_partitions_crashes_and_a_wrongful_reclaim() {
    let peers = 120;
    for seed in 0..8u64 {
        let mut sim = Sim::new(
            SimConfig::default()
                .peers(peers)
                .seeds(12)
                .seed(seed)
                .loss(0.2)
                .duplicate(0.1),
        );
        for round in 0..12u64 {
            sim.random_load(60, 25);
            if round % 3 == 0 {
                for i in 0..peers {
                    sim.set_group(i, ((i as u64 + round + seed) % 3) as u32);
                }
            }
            if round % 3 == 2 {
                sim.heal();
            }
            let c = ((round * 7 + seed) as usize) % peers;
            sim.crash(c);
            sim.run(Duration::from_millis(700));
            sim.restart(c);
            if round == 5 {
                let v = (seed as usize * 13 + 1) % peers;
                let id = sim.node(v).identity();
                sim.reclaim(id.peer, id.incarnation, (v + 1) % peers, (v + 1) % peers);
            }
            sim.run(secs(1));
        }
        sim.heal();
        let took = sim.run_until_converged(secs(120));
        assert_clean(&sim);
        assert!(took.is_some(), "seed {seed} did not converge");
        assert_eq!(sim.anomaly_counts().get("stepped_down"), Some(&1));
        assert_eq!(sim.anomaly_counts().get("claim_conflict"), None);
    }
}
