//! The cluster ring of address blocks in its deterministic simulator: five
//! nodes, two of which seed the ring with `198.18.0.0/16`; the other three
//! get blocks by donation, every node allocates pod addresses at once from
//! its own blocks, the replicas converge over a lossy network, and after
//! one node dies its blocks are reclaimed by an heir (a fencing tombstone)
//! and every replica agrees on the new owner.
//!
//! The ring hands out every address of a node's blocks, the range's network
//! address (`198.18.0.0`) included. A plugin-facing allocator holds that one
//! back: `overlay_ipam::agent::service`, which `overlayd` runs, does, and
//! gives the next address to the node's bridge.
//!
//! Virtual time, seeded randomness, no privileges and no network:
//!
//! ```sh
//! cargo run -p overlay-ipam --example cluster_ring
//! ```
//!
//! Addresses are from the benchmarking range 198.18.0.0/15 (RFC 2544).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use overlay_ipam::ring::sim::{Sim, SimConfig};

const PEERS: usize = 5;
/// How long each phase may take in virtual time before the example fails.
const LIMIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster_ring: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // 5% loss, 2% duplication and up to 200 ms delay per message copy (the
    // simulator's defaults); /24 is the smallest block that can move.
    let config = SimConfig::default()
        .peers(PEERS)
        .seeds(2)
        .seed(7)
        .universe("198.18.0.0/16".parse()?, 24);
    let mut sim = Sim::new(config);
    println!("genesis (computed by every node from the seed list):");
    show(&sim, None);

    // A CNI ADD never waits: a node without space answers at once (CNI
    // code 11, "try again") and asks a donor for a block in the background.
    for i in 0..PEERS {
        match sim.add_pod(i) {
            Ok(ip) => println!("  ADD on node {i}: {ip}"),
            Err(e) => println!(
                "  ADD on node {i}: {e:?} (CNI {}), asks for space",
                e.cni_code()
            ),
        }
    }
    let sent = sim.delivered();
    let took = run_until(&mut sim, |s| {
        s.converged() && (0..PEERS).all(|i| !s.node(i).owned_blocks().is_empty())
    })
    .ok_or("the joiners got no space, or the replicas did not converge")?;
    println!(
        "every node owns space, replicas equal after {took:?} (virtual), {} message copies",
        sim.delivered() - sent
    );
    for i in 0..PEERS {
        for _ in 0..2 {
            sim.add_pod(i)
                .map_err(|e| format!("ADD on node {i}: {e:?}"))?;
        }
    }
    show(&sim, None);

    // Node 3 dies with its pods; the authority (here: node 1) reclaims its
    // identity with node 0 as heir.
    let (dead_idx, heir_idx) = (3, 0);
    let dead = sim.node(dead_idx).identity();
    let dead_blocks = sim.node(dead_idx).owned_blocks();
    sim.kill(dead_idx);
    sim.reclaim(dead.peer, dead.incarnation, heir_idx, 1);
    let sent = sim.delivered();
    let took = run_until(&mut sim, |s| s.converged())
        .ok_or("the replicas did not converge after the reclaim")?;
    println!(
        "node {dead_idx} died; reclaim of {dead_blocks:?} converged after {took:?}, {} message copies",
        sim.delivered() - sent
    );
    show(&sim, Some(dead_idx));

    // The outcome: nothing left with the dead peer, its blocks are the
    // heir's (adopted, quarantined before reuse), no address given twice.
    let heir = sim.node(heir_idx);
    for i in (0..PEERS).filter(|&i| i != dead_idx) {
        if !sim.node(i).ring().entries_of(dead.peer).is_empty() {
            return Err(format!("node {i} still sees blocks of the dead peer").into());
        }
    }
    for block in &dead_blocks {
        let entry = heir
            .ring()
            .entry_at(block.network())
            .ok_or("a reclaimed block is missing from the ring")?;
        if entry.owner != heir.identity().peer || !entry.is_adopted() {
            return Err(format!("{block} is not adopted by the heir: {entry:?}").into());
        }
    }
    if !dead_blocks.iter().all(|b| heir.owned_blocks().contains(b)) {
        return Err("the heir's allocator did not take the dead node's blocks".into());
    }
    if !sim.violations().is_empty() {
        return Err(format!("safety violated: {:?}", sim.violations()).into());
    }
    println!("anomalies reported: {:?}", sim.anomaly_counts());
    println!(
        "ok: {} live pods, no address held twice, the dead node's blocks are node {heir_idx}'s",
        sim.pods().count()
    );
    Ok(())
}

/// Step the simulator until `done` holds; the virtual time it took, or
/// `None` after [`LIMIT`].
fn run_until(sim: &mut Sim, done: impl Fn(&Sim) -> bool) -> Option<Duration> {
    let start = sim.now();
    while sim.now() - start < LIMIT {
        sim.step();
        if done(sim) {
            return Some(sim.now() - start);
        }
    }
    None
}

/// One line per node: its blocks and its pods' addresses.
fn show(sim: &Sim, dead: Option<usize>) {
    for i in 0..sim.len() {
        if dead == Some(i) {
            println!("  node {i}: dead");
            continue;
        }
        let node = sim.node(i);
        let blocks: Vec<String> = node.owned_blocks().iter().map(|b| b.to_string()).collect();
        let pods: Vec<String> = node
            .allocations()
            .iter()
            .map(|(ip, _)| ip.to_string())
            .collect();
        println!(
            "  node {i}: blocks [{}] pods [{}]",
            blocks.join(" "),
            pods.join(" ")
        );
    }
}
