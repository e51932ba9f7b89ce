//! Six peers in the deterministic gossip simulator (virtual time, seeded
//! randomness, 1% loss): they join through one seed and converge on one
//! view of every peer's record; a change to one record spreads; then one
//! peer leaves gracefully and another crashes, and the others notice both
//! (the crash through SWIM's failure detection). Prints the virtual time
//! and gossip rounds each step took and the datagrams it cost.
//!
//! No privileges and no network: every datagram stays in the simulator.
//!
//! ```sh
//! cargo run -p overlay-gossip --example simulated_mesh
//! ```
//!
//! Addresses are from the documentation ranges (RFC 2544, RFC 5737).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use overlay_core::PeerId;
use overlay_gossip::Event;
use overlay_gossip::sim::{NodeIdx, Sim, SimConfig};

const PEERS: usize = 6;
/// How long each step may take in virtual time before the example fails.
const LIMIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulated_mesh: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut sim = Sim::new(SimConfig::default().with_seed(11).with_loss(0.01));
    // Each peer gossips on 198.18.0.<i+1>:7946 (the simulator's default) and
    // announces a /28 pod block of 203.0.113.0/24.
    let mut nodes = Vec::new();
    for i in 0..PEERS {
        let block = format!("203.0.113.{}/28", 16 * i).parse()?;
        nodes.push(sim.add_node_with(|cfg| cfg.record.pod_blocks = vec![block], None));
    }
    let join = |s: &mut Sim| nodes[1..].iter().for_each(|&n| s.join(n, nodes[0]));
    step(
        &mut sim,
        "all peers joined, views equal",
        join,
        Sim::converged,
    )?;
    views_hold(&sim, &nodes)?;
    let mut view: Vec<_> = sim.gossip(nodes[5]).peers().collect();
    view.sort_by(|a, b| a.name.cmp(&b.name));
    for record in view {
        println!(
            "  node 5 sees {} at {:?} with pod blocks {:?}",
            record.name, record.underlay, record.pod_blocks
        );
    }

    // Node 2 announces a second block: a new version of its record.
    let (block, id2) = ("198.51.100.0/28".parse()?, sim.id(nodes[2]));
    let update = |s: &mut Sim| s.update(nodes[2], |r| r.pod_blocks.push(block));
    step(
        &mut sim,
        "node 2's new block reached everyone",
        update,
        |s| s.count_knowing(id2, s.gossip(nodes[2]).local().stamp()) == s.running(),
    )?;
    if !sim
        .gossip(nodes[0])
        .peer(id2)
        .is_some_and(|r| r.pod_blocks.contains(&block))
    {
        return Err("node 0 does not see node 2's new block".into());
    }

    // Node 4 leaves gracefully; node 5 crashes (no goodbye, SWIM must find out).
    let (left, crashed) = (nodes[4], nodes[5]);
    let (left_id, crashed_id) = (sim.id(left), sim.id(crashed));
    let survivors = &nodes[..4];
    let leave = |s: &mut Sim| s.leave(left);
    step(&mut sim, "everyone saw node 4 leave", leave, |s| {
        survivors.iter().all(|&n| saw_down(s, n, left_id))
    })?;
    let crash = |s: &mut Sim| s.crash(crashed);
    step(&mut sim, "everyone declared node 5 dead", crash, |s| {
        survivors.iter().all(|&n| saw_down(s, n, crashed_id)) && s.converged()
    })?;
    views_hold(&sim, survivors)?;

    let (delivered, dropped) = sim.delivery_stats();
    let bytes: u64 = nodes.iter().map(|&n| sim.bytes_sent(n)).sum();
    println!("total: {delivered} datagrams delivered, {dropped} dropped, {bytes} bytes sent");
    println!("ok: the {} survivors agree on one view", survivors.len());
    Ok(())
}

/// Apply `act`, run the simulator until `done` holds and print how long
/// it took in virtual time and gossip rounds, and the datagrams sent.
fn step(
    sim: &mut Sim,
    what: &str,
    act: impl FnOnce(&mut Sim),
    done: impl FnMut(&Sim) -> bool,
) -> Result<(), Box<dyn Error>> {
    let (start, sent) = (sim.now(), datagrams(sim));
    act(sim);
    if !sim.run_until(LIMIT, done) {
        return Err(format!("not within {LIMIT:?}: {what}").into());
    }
    let took = sim.now() - start;
    // Node 0 never leaves here; every node has the default interval.
    let round = sim.gossip(0).config().gossip_interval;
    println!(
        "{what}: {took:?} ({:.1} rounds of {round:?}), {} datagrams",
        took.as_secs_f64() / round.as_secs_f64(),
        datagrams(sim) - sent
    );
    Ok(())
}

/// Datagrams sent by every node so far.
fn datagrams(sim: &Sim) -> u64 {
    (0..sim.len()).map(|n| sim.datagrams_sent(n)).sum()
}

/// Whether node `n` reported `peer` down.
fn saw_down(sim: &Sim, n: NodeIdx, peer: PeerId) -> bool {
    sim.events(n)
        .iter()
        .any(|e| matches!(e, Event::PeerDown(id) if *id == peer))
}

/// An error unless each of `nodes` holds exactly the records of `nodes`.
fn views_hold(sim: &Sim, nodes: &[NodeIdx]) -> Result<(), Box<dyn Error>> {
    for &n in nodes {
        let g = sim.gossip(n);
        if g.len() != nodes.len() || nodes.iter().any(|&m| g.peer(sim.id(m)).is_none()) {
            return Err(format!("node {n}'s view is not {nodes:?}").into());
        }
    }
    Ok(())
}
