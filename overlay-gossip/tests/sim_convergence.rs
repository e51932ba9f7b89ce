//! Scenario tests in the deterministic simulator: joins, partitions, crashes,
//! graceful leaves, anti-entropy repair, channels, random fault schedules.

use std::time::Duration;

use overlay_gossip::sim::{Link, NodeIdx, Sim, SimConfig};
use overlay_gossip::{Config, Event};
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

/// Faster timers than the LAN defaults, so scenarios take few virtual
/// seconds.
fn quick(c: &mut Config) {
    c.anti_entropy_interval = Duration::from_secs(2);
    c.announce_down_every = Duration::from_secs(2);
    c.suspect_to_down = Duration::from_secs(3);
    c.tombstone_ttl = Duration::from_secs(30);
}

fn cluster(seed: u64, n: usize, loss: f64) -> (Sim, Vec<NodeIdx>) {
    let mut sim = Sim::new(
        SimConfig::default()
            .with_seed(seed)
            .with_loss(loss)
            .with_tune(quick),
    );
    let nodes: Vec<NodeIdx> = (0..n).map(|_| sim.add_node()).collect();
    for &i in &nodes[1..] {
        sim.join(i, nodes[0]);
    }
    assert!(
        sim.run_until(60 * S, Sim::converged),
        "cluster of {n} did not converge"
    );
    (sim, nodes)
}

fn assert_identical_views(sim: &Sim, nodes: &[NodeIdx]) {
    let reference: Vec<_> = sim.gossip(nodes[0]).peers().cloned().collect();
    assert_eq!(reference.len(), nodes.len());
    for &n in nodes {
        let view: Vec<_> = sim.gossip(n).peers().cloned().collect();
        assert_eq!(view, reference, "node {n} sees a different view");
    }
}

#[test]
fn joins_through_one_seed_converge_to_identical_views_despite_loss() {
    let (sim, nodes) = cluster(1, 24, 0.01);
    assert_identical_views(&sim, &nodes);
    // Every node reported every other one exactly once as up.
    for &n in &nodes {
        let ups = sim
            .events(n)
            .iter()
            .filter(|e| matches!(e, Event::PeerUp(_)))
            .count();
        assert_eq!(ups, nodes.len() - 1, "node {n}");
        assert_eq!(sim.gossip(n).swim_members(), nodes.len() - 1);
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let (sim, nodes) = cluster(seed, 10, 0.02);
        nodes
            .iter()
            .map(|&n| (sim.bytes_sent(n), sim.gossip(n).view_fingerprint()))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn a_change_reaches_everyone_and_only_the_owner_bumps_the_version() {
    let (mut sim, nodes) = cluster(2, 16, 0.01);
    let owner = nodes[7];
    let id = sim.id(owner);
    sim.update(owner, |r| {
        r.pod_blocks.push("10.250.0.0/24".parse().unwrap())
    });
    let stamp = sim.gossip(owner).local().stamp();
    assert_eq!(stamp.1, 1);
    assert!(sim.run_until(10 * S, |s| s.count_knowing(id, stamp) == 16));
    for &n in &nodes {
        let r = sim.gossip(n).peer(id).unwrap();
        assert_eq!(r.pod_blocks.len(), 2);
    }
    assert!(sim.converged());
}

#[test]
fn partitions_heal_and_both_sides_changes_merge() {
    let (mut sim, nodes) = cluster(3, 12, 0.0);
    let (left, right) = nodes.split_at(6);
    sim.partition(&[left, right]);
    // Long enough for SWIM on each side to declare the other side down.
    sim.run_for(20 * S);
    for &n in left {
        assert_eq!(
            sim.gossip(n).len(),
            6,
            "left node {n} still sees the right side"
        );
    }
    for &n in right {
        assert_eq!(sim.gossip(n).len(), 6);
    }
    sim.update(left[1], |r| r.name = "left-changed".into());
    sim.update(right[2], |r| r.name = "right-changed".into());
    sim.heal();
    assert!(
        sim.run_until(90 * S, Sim::converged),
        "no convergence after heal"
    );
    assert_identical_views(&sim, &nodes);
    let l = sim.id(left[1]);
    let r = sim.id(right[2]);
    for &n in &nodes {
        assert_eq!(sim.gossip(n).peer(l).unwrap().name, "left-changed");
        assert_eq!(sim.gossip(n).peer(r).unwrap().name, "right-changed");
    }
}

#[test]
fn crash_is_detected_and_restart_rejoins_with_a_new_incarnation() {
    let (mut sim, nodes) = cluster(4, 10, 0.01);
    let victim = nodes[4];
    let id = sim.id(victim);
    let old = sim.gossip(victim).local().incarnation;
    sim.crash(victim);
    assert!(
        sim.run_until(30 * S, |s| nodes
            .iter()
            .filter(|&&n| n != victim)
            .all(|&n| s.gossip(n).peer(id).is_none())),
        "crash not detected"
    );
    assert!(sim.events(nodes[0]).contains(&Event::PeerDown(id)));
    sim.restart(victim, nodes[1]);
    assert!(
        sim.run_until(60 * S, Sim::converged),
        "no convergence after restart"
    );
    assert_identical_views(&sim, &nodes);
    for &n in &nodes {
        assert_eq!(sim.gossip(n).peer(id).unwrap().incarnation, old + 1);
    }
}

#[test]
fn graceful_leave_spreads_fast_and_tombstones_are_collected() {
    let (mut sim, nodes) = cluster(5, 10, 0.0);
    let leaver = nodes[3];
    let id = sim.id(leaver);
    sim.leave(leaver);
    // Well before SWIM could have suspected it.
    assert!(sim.run_until(2 * S, |s| {
        nodes
            .iter()
            .filter(|&&n| n != leaver)
            .all(|&n| s.gossip(n).peer(id).is_none())
    }));
    assert!(sim.converged());
    assert!(sim.gossip(nodes[0]).tombstones() >= 1);
    // tombstone_ttl is 30 s in `quick`.
    sim.run_for(40 * S);
    for &n in nodes.iter().filter(|&&n| n != leaver) {
        assert_eq!(sim.gossip(n).tombstones(), 0, "node {n} kept a tombstone");
    }
}

#[test]
fn anti_entropy_repairs_a_change_whose_dissemination_was_lost() {
    let (mut sim, nodes) = cluster(6, 10, 0.0);
    let cut_off = nodes[9];
    let owner = nodes[2];
    // Cut one node off for less than SWIM needs to declare it down; the
    // change's whole retransmit budget is spent meanwhile.
    sim.partition(&[&[cut_off]]);
    sim.update(owner, |r| r.name = "changed".into());
    sim.run_for(S + S / 2);
    assert_ne!(
        sim.gossip(cut_off).peer(sim.id(owner)).unwrap().name,
        "changed"
    );
    sim.heal();
    assert!(sim.run_until(30 * S, Sim::converged));
    assert_eq!(
        sim.gossip(cut_off).peer(sim.id(owner)).unwrap().name,
        "changed"
    );
    assert_eq!(
        sim.gossip(cut_off)
            .peer(sim.id(cut_off))
            .unwrap()
            .incarnation,
        0
    );
}

#[test]
fn lossy_link_still_converges() {
    let (mut sim, nodes) = cluster(7, 8, 0.0);
    for &n in &nodes[1..] {
        sim.set_link(
            nodes[0],
            n,
            Link {
                latency: Duration::from_millis(20),
                loss: 0.3,
            },
        );
    }
    sim.update(nodes[0], |r| r.name = "through-loss".into());
    assert!(sim.run_until(30 * S, Sim::converged));
}

#[test]
fn channels_broadcast_to_all_and_unicast_to_one() {
    let (mut sim, nodes) = cluster(8, 12, 0.0);
    let mut chans = Vec::new();
    for &n in &nodes {
        chans.push(sim.register_channel(n, "ipam-ring").unwrap());
    }
    let ch = chans[0];
    sim.with_node(nodes[0], |g, now| {
        g.broadcast(now, ch, b"claim 10.0.0.0/16")
    })
    .unwrap()
    .unwrap();
    let target = sim.id(nodes[5]);
    sim.with_node(nodes[1], |g, now| g.unicast(now, ch, target, b"hello"))
        .unwrap()
        .unwrap();
    sim.run_for(5 * S);
    let from0 = sim.id(nodes[0]);
    let from1 = sim.id(nodes[1]);
    for &n in &nodes[1..] {
        let got: Vec<_> = sim
            .events(n)
            .iter()
            .filter_map(|e| match e {
                Event::ChannelMessage { from, bytes, .. } if *from == from0 => Some(bytes.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![b"claim 10.0.0.0/16".to_vec()],
            "node {n}: exactly once"
        );
    }
    let unicasts: usize = nodes
        .iter()
        .map(|&n| {
            sim.events(n)
                .iter()
                .filter(|e| matches!(e, Event::ChannelMessage { from, .. } if *from == from1))
                .count()
        })
        .sum();
    assert_eq!(unicasts, 1);
    assert!(sim.events(nodes[5]).iter().any(|e| matches!(
        e,
        Event::ChannelMessage { from, bytes, .. } if *from == from1 && bytes == b"hello"
    )));
}

#[test]
fn neighbour_limit_bounds_push_targets_and_still_converges() {
    fn narrow(c: &mut Config) {
        quick(c);
        c.max_neighbours = 4;
    }
    let mut sim = Sim::new(SimConfig::default().with_seed(9).with_tune(narrow));
    let nodes: Vec<_> = (0..30).map(|_| sim.add_node()).collect();
    for &n in &nodes[1..] {
        sim.join(n, nodes[0]);
    }
    assert!(sim.run_until(60 * S, Sim::converged));
    for &n in &nodes {
        assert!(sim.gossip(n).neighbours().len() <= 4);
    }
    sim.update(nodes[3], |r| r.name = "x".into());
    assert!(sim.run_until(30 * S, Sim::converged));
}

/// 300 peers in the debug test suite (seeding SWIM with a full view is
/// quadratic per node in foca, 37 s for 1,000 peers in debug); the
/// `gossip_sim` bench runs 1,000 and 5,000.
#[test]
fn three_hundred_peer_smoke_converges_on_a_change_within_12_rounds() {
    const N: usize = 300;
    let mut sim = Sim::new(
        SimConfig::default()
            .with_seed(10)
            .with_loss(0.01)
            .with_record_events(false)
            .with_tune(|c| c.expected_size = 300),
    );
    let nodes = sim.add_converged(N);
    assert!(sim.converged());
    let owner = nodes[150];
    sim.update(owner, |r| r.name = "changed".into());
    let start = sim.now();
    let stamp = sim.gossip(owner).local().stamp();
    let id = sim.id(owner);
    assert!(sim.run_until(10 * S, |s| s.count_knowing(id, stamp) == N));
    // 12 gossip rounds of 200 ms.
    let took = sim.now() - start;
    assert!(took <= Duration::from_millis(2400), "took {took:?}");
    sim.run_for(5 * S);
    assert!(sim.converged());
}

#[derive(Debug, Clone)]
enum Fault {
    Partition(u8),
    Heal,
    Crash(u8),
    Restart(u8),
    Update(u8),
    Wait(u8),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        any::<u8>().prop_map(Fault::Partition),
        Just(Fault::Heal),
        any::<u8>().prop_map(Fault::Crash),
        any::<u8>().prop_map(Fault::Restart),
        any::<u8>().prop_map(Fault::Update),
        (1u8..20).prop_map(Fault::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_fault_schedule_ends_converged_once_the_network_heals(
        seed in any::<u64>(),
        faults in prop::collection::vec(fault(), 1..10),
    ) {
        const N: usize = 6;
        let mut sim = Sim::new(SimConfig::default().with_seed(seed).with_loss(0.02).with_tune(quick));
        let nodes: Vec<_> = (0..N).map(|_| sim.add_node()).collect();
        for &n in &nodes[1..] {
            sim.join(n, nodes[0]);
        }
        sim.run_for(3 * S);
        for f in faults {
            match f {
                Fault::Partition(mask) => {
                    let a: Vec<_> = nodes.iter().copied().filter(|&n| mask & (1 << n) != 0).collect();
                    sim.partition(&[&a]);
                }
                Fault::Heal => sim.heal(),
                Fault::Crash(i) => {
                    let i = usize::from(i) % N;
                    // Keep at least one node running to rejoin through.
                    if sim.running() > 1 && sim.is_up(i) {
                        sim.crash(i);
                    }
                }
                Fault::Restart(i) => {
                    let i = usize::from(i) % N;
                    if !sim.is_up(i) {
                        let seed_node = (0..N).find(|&s| sim.is_up(s)).unwrap();
                        sim.restart(i, seed_node);
                    }
                }
                Fault::Update(i) => {
                    let i = usize::from(i) % N;
                    if sim.is_up(i) {
                        sim.update(i, |r| r.version_note());
                    }
                }
                Fault::Wait(s) => sim.run_for(Duration::from_millis(u64::from(s) * 250)),
            }
        }
        sim.heal();
        prop_assert!(sim.run_until(120 * S, Sim::converged), "no convergence");
        let up: Vec<_> = (0..N).filter(|&i| sim.is_up(i)).collect();
        assert_identical_views(&sim, &up);
    }
}

trait Touch {
    fn version_note(&mut self);
}

impl Touch for overlay_gossip::PeerRecord {
    fn version_note(&mut self) {
        self.name = format!("{}+", self.name);
    }
}
