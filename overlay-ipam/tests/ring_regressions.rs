//! Named regressions for each Weave Net IPAM failure traced in the design
//! note (section 3.4): each scenario that broke Weave runs here against the
//! ring and the node allocator.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::net::IpAddr;
use std::time::Duration;

use overlay_core::PeerId;
use overlay_ipam::ring::sim::{Sim, SimConfig};
use overlay_ipam::ring::{
    AllocFailure, Anomaly, Delta, Identity, Message, Node, NodeConfig, Output, Record, Ring, Stamp,
    Tombstone,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const T0: Duration = Duration::ZERO;

fn id(n: u128) -> PeerId {
    PeerId::from_u128(n)
}

fn ring(seeds: &[PeerId]) -> Ring {
    Ring::from_seeds("198.18.0.0/16".parse().unwrap(), 26, seeds).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Everything a node wants to send, split by kind.
#[derive(Default)]
struct Drained {
    broadcasts: Vec<Delta>,
    sends: Vec<(PeerId, Message)>,
    anomalies: Vec<Anomaly>,
    reidentified: Vec<(Identity, Identity)>,
}

fn drain<K: Clone + Eq + std::hash::Hash + Ord>(node: &mut Node<K>) -> Drained {
    let mut d = Drained::default();
    while let Some(out) = node.poll_output() {
        match out {
            Output::Broadcast(delta) => d.broadcasts.push(delta),
            Output::Send { to, message } => d.sends.push((to, message)),
            Output::Anomaly(a) => d.anomalies.push(a),
            Output::Reidentified { old, new } => d.reidentified.push((old, new)),
            other => panic!("unexpected output {other:?}"),
        }
    }
    d
}

/// Weave docs: "don't run rmpeer on more than one host"; a double rmpeer
/// made two owners and split the cluster into cliques. Here two
/// authorities reclaim one peer with different heirs: every replica picks
/// the lowest heir, the conflict is an anomaly, nothing errors, and the
/// losing heir (which quarantined the blocks) never allocated from them.
#[test]
fn weave_double_rmpeer_resolves_to_the_lowest_heir() {
    let [dead, h1, h2] = [id(3), id(1), id(2)];
    let base = ring(&[dead, h1, h2]);
    let cfg = NodeConfig::default();
    let mut n1 = Node::<u32>::new(Identity::new(h1, 1), base.clone(), cfg.clone());
    let mut n2 = Node::<u32>::new(Identity::new(h2, 1), base.clone(), cfg.clone());
    let dead_block = base.entries_of(dead)[0].block;
    n1.reclaim(
        T0,
        Tombstone {
            peer: dead,
            up_to_incarnation: 1,
            heir: h1,
        },
    )
    .unwrap();
    n2.reclaim(
        T0,
        Tombstone {
            peer: dead,
            up_to_incarnation: 1,
            heir: h2,
        },
    )
    .unwrap();
    let (d1, d2) = (drain(&mut n1), drain(&mut n2));
    // Inside the quarantine the adopted block is not allocated from.
    assert!(n2.allocate_given(T0, dead_block.network(), 9).is_err());
    let r1 = n1.handle_delta(T0, &d2.broadcasts[0]);
    let r2 = n2.handle_delta(T0, &d1.broadcasts[0]);
    let conflict = Anomaly::ConflictingHeirs {
        peer: dead,
        heirs: vec![h1, h2],
    };
    assert_eq!(r1.anomalies, std::slice::from_ref(&conflict));
    assert_eq!(r2.anomalies, [conflict]);
    assert_eq!(n1.ring(), n2.ring());
    assert!(n1.owned_blocks().contains(&dead_block));
    assert!(!n2.owned_blocks().contains(&dead_block));
}

/// Weave #3165: a peer restored a ring where it owned a range at v592 while
/// the cluster had it at v1460 under another owner: "Received update for
/// IP range I own", and the connection dropped. Here the stale replica
/// merges without error, hands the range over, and claims its live
/// addresses from the new owner.
#[test]
fn weave_3165_stale_ring_at_a_lower_version_merges_and_claims() {
    let (p, q) = (id(1), id(2));
    let base = ring(&[p, q]);
    let block: ipnet::IpNet = "198.18.0.0/26".parse().unwrap();
    let mut cluster = base.clone();
    // P's history: 592 writes, then a donation to Q, then Q's 868 writes.
    let mut stale = base.clone();
    for _ in 0..592 {
        stale.write(p, block, p, 10).unwrap();
    }
    cluster.merge(&stale);
    cluster.write(p, block, q, 64).unwrap();
    for _ in 0..867 {
        cluster.write(q, block, q, 60).unwrap();
    }
    assert_eq!(cluster.entry_at(block.network()).unwrap().version, 1460);
    assert_eq!(stale.entry_at(block.network()).unwrap().version, 592);

    // P restarts from the stale store, with a live pod in the block.
    let mut node = Node::restore(
        Identity::new(p, 2),
        stale,
        [(ip("198.18.0.5"), 1u32)],
        NodeConfig::default(),
        T0,
    );
    let report = node.handle_ring(T0, &cluster);
    assert!(report.changed);
    assert!(
        report.anomalies.is_empty(),
        "no error, no anomaly: {report:?}"
    );
    assert!(!node.owned_blocks().contains(&block));
    let out = drain(&mut node);
    assert!(out.sends.contains(&(
        q,
        Message::Claim {
            addresses: vec![ip("198.18.0.5")]
        }
    )));
    assert!(
        out.anomalies
            .contains(&Anomaly::LostAllocations { owner: q, count: 1 })
    );
    // The new owner grants it (it is free there), and never hands it out.
    let mut owner = Node::<u32>::new(Identity::new(q, 1), cluster, NodeConfig::default());
    owner.handle_message(
        T0,
        p,
        Message::Claim {
            addresses: vec![ip("198.18.0.5")],
        },
    );
    assert_eq!(owner.granted_claims(), [(ip("198.18.0.5"), p)]);
    assert!(owner.allocate_given(T0, ip("198.18.0.5"), 7).is_err());
    let reply = drain(&mut owner).sends;
    assert_eq!(
        reply,
        [(
            p,
            Message::ClaimReply {
                granted: vec![ip("198.18.0.5")],
                refused: vec![]
            }
        )]
    );
    // The pod's address stays held through a release message.
    node.handle_message(T0, q, reply[0].1.clone());
    assert_eq!(node.allocations(), [(ip("198.18.0.5"), 1)]);
    node.release(T0, &1);
    let release = drain(&mut node).sends;
    owner.handle_message(T0, p, release[0].1.clone());
    assert!(owner.granted_claims().is_empty());
}

/// Weave: the old owner kept bumping versions on every allocation and won
/// ranges back from an `rmpeer` "+100" transfer. Here an owner cut off and
/// reclaimed allocates 150 times (each a version bump) and still loses: its
/// writes carry the fenced epoch.
#[test]
fn owner_allocating_more_than_100_times_while_reclaimed_never_wins_back() {
    let (p, heir) = (id(1), id(2));
    let base = ring(&[p, heir]);
    let mut owner = base.clone();
    let blocks = base.entries_of(p);
    let mut authority = base.clone();
    authority
        .reclaim(Tombstone {
            peer: p,
            up_to_incarnation: 1,
            heir,
        })
        .unwrap();
    for i in 0..150u32 {
        let b = blocks[0].block;
        owner.write(p, b, p, i).unwrap();
    }
    assert!(owner.entry_at(blocks[0].block.network()).unwrap().version >= 150);
    for (a, b) in [(&owner, &authority), (&authority, &owner)] {
        let mut m = a.clone();
        m.merge(b);
        assert!(m.entries().iter().all(|e| e.owner == heir));
    }
}

/// Weave #1593 and #3955: a wrong initial peer count (or a peer list read
/// while incomplete) left Paxos without quorum and every pod "awaiting
/// consensus". There is no count here: a ring from a seed list allocates
/// at once on any seed, alone.
#[test]
fn weave_1593_a_seed_allocates_alone_with_no_quorum_to_reach() {
    let seeds: Vec<PeerId> = (1..=4).map(id).collect();
    let mut node = Node::new(
        Identity::new(seeds[2], 1),
        ring(&seeds),
        NodeConfig::default(),
    );
    assert!(node.allocate(T0, "pod").is_ok());
    assert!(drain(&mut node).sends.is_empty());
}

/// Weave #3955: a restart with a wiped store ("Peer not in list; removing
/// persisted data") never became ready. Here a node restarting with
/// nothing takes a fresh identity, gets space by donation in the
/// background, and its old identity's blocks are reclaimed for use.
#[test]
fn weave_3955_restart_with_a_wiped_store_is_ready_after_a_donation() {
    let mut sim = Sim::new(SimConfig::default().peers(8).seeds(8).seed(21));
    for i in 0..8 {
        sim.add_pod(i).unwrap();
    }
    sim.run(Duration::from_secs(2));
    let old = sim.node(4).identity();
    let new = sim.wipe_restart(4);
    assert_ne!(old.peer, new.peer);
    assert!(matches!(sim.add_pod(4), Err(AllocFailure::NoSpaceYet)));
    sim.run(Duration::from_secs(3));
    assert!(sim.add_pod(4).is_ok(), "space arrived by donation");
    // The authority reclaims the old identity; its blocks become usable.
    sim.reclaim(old.peer, old.incarnation, 5, 5);
    sim.run(Duration::from_secs(12));
    assert!(sim.run_until_converged(Duration::from_secs(30)).is_some());
    assert!(sim.node(4).ring().entries_of(old.peer).is_empty());
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// Weave #3003: an address outside the ring was recorded locally only
/// (claim.go "not in our range"). Here it is refused, never silently kept,
/// and a record outside the ring is skipped with an anomaly.
#[test]
fn weave_3003_a_claim_outside_the_ring_is_refused_and_reported() {
    let p = id(1);
    let base = ring(&[p]);
    let mut node = Node::<u32>::new(Identity::new(p, 1), base.clone(), NodeConfig::default());
    let outside = ip("192.0.2.10");
    assert_eq!(
        node.allocate_given(T0, outside, 1),
        Err(AllocFailure::Conflict {
            address: outside,
            owner: None
        })
    );
    // A restored allocation outside the ring is reported, kept out of
    // every block, and not claimed from anyone.
    let mut restored = Node::restore(
        Identity::new(p, 2),
        base.clone(),
        [(outside, 5u32)],
        NodeConfig::default(),
        T0,
    );
    let out = drain(&mut restored);
    assert!(out.anomalies.contains(&Anomaly::InvalidRecord {
        block: outside.into()
    }));
    assert!(out.sends.is_empty());
    assert!(restored.allocations().contains(&(outside, 5)));
    let mut delta = Delta::new(base.genesis().id());
    delta.records.push(Record {
        block: "192.0.2.0/26".parse().unwrap(),
        stamp: Stamp {
            epoch: 0,
            version: 1,
            owner: p,
            free: 0,
        },
    });
    let report = node.handle_delta(T0, &delta);
    assert!(!report.changed);
    assert_eq!(
        report.anomalies,
        [Anomaly::InvalidRecord {
            block: "192.0.2.0/26".parse().unwrap()
        }]
    );
}

/// Weave concepts.md: "If two or more peers share the same name chaos will
/// ensue, … double allocation". Here two agents with one `PeerId` (a cloned
/// disk) are detected by their incarnations; the lower steps down, takes a
/// new identity, and claims its pods' addresses: duplicates that already
/// happened are reported as conflicts, the rest are granted, and no new
/// duplicate can follow.
#[test]
fn cloned_identities_are_detected_and_the_lower_incarnation_re_identifies() {
    let (p, q) = (id(1), id(2));
    let base = ring(&[p, q]);
    let cfg = NodeConfig::default();
    let mut original = Node::<u32>::new(Identity::new(p, 4), base.clone(), cfg.clone());
    let mut clone = Node::<u32>::new(Identity::new(p, 5), base, cfg);
    let a = original.allocate(T0, 1).unwrap();
    original.allocate(T0, 2).unwrap();
    let b = clone.allocate(T0, 10).unwrap();
    assert_eq!(a, b, "the clones hand out the same address");
    // The gossip layer shows each the other's identity.
    original.observe_peer(T0, clone.identity());
    clone.observe_peer(T0, original.identity());
    assert!(original.is_retired());
    assert!(!clone.is_retired());
    let out = drain(&mut original);
    assert!(out.anomalies.contains(&Anomaly::CloneDetected {
        peer: p,
        ours: 4,
        theirs: 5
    }));
    let mut rng = StdRng::seed_from_u64(1);
    original.handle_timeout(T0, &mut rng);
    let out = drain(&mut original);
    let (old, new) = out.reidentified[0];
    assert_eq!(old.peer, p);
    assert_ne!(new.peer, p);
    let (to, claim) = out
        .sends
        .iter()
        .find(|(_, m)| matches!(m, Message::Claim { .. }))
        .unwrap();
    assert_eq!(*to, p);
    clone.handle_message(T0, new.peer, claim.clone());
    let out = drain(&mut clone);
    assert!(
        out.anomalies
            .iter()
            .any(|x| matches!(x, Anomaly::ClaimConflict { address, .. } if *address == a))
    );
    let Message::ClaimReply { granted, refused } = &out.sends[0].1 else {
        panic!()
    };
    assert_eq!(refused, &[a]);
    assert_eq!(granted.len(), 1);
    // The clone never hands out the granted address again.
    for k in 0..100 {
        assert_ne!(clone.allocate(T0, 100 + k).unwrap(), granted[0]);
    }
}

/// Weave #3908: rings "seeded by different peers" refused to merge and the
/// connection dropped. Here they are kept apart and reported.
#[test]
fn weave_3908_rings_of_different_seeds_are_kept_apart_and_reported() {
    let a = ring(&[id(1), id(2)]);
    let b = ring(&[id(1), id(3)]);
    let mut node = Node::<u32>::new(Identity::new(id(1), 1), a.clone(), NodeConfig::default());
    let report = node.handle_ring(T0, &b);
    assert!(!report.changed);
    assert_eq!(
        report.anomalies,
        [Anomaly::GenesisMismatch {
            ours: a.genesis().id(),
            theirs: b.genesis().id()
        }]
    );
    assert_eq!(node.ring(), &a);
    // The anti-entropy exchange reports it too, and sends nothing.
    node.handle_message(
        T0,
        id(3),
        Message::Digest {
            digest: b.digest(4),
            reply: true,
        },
    );
    let out = drain(&mut node);
    assert!(out.sends.is_empty());
    assert_eq!(out.anomalies.len(), 2);
}
