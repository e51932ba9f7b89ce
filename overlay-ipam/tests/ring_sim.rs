//! The deterministic simulator (design note section 3.6, S1-S4).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::time::{Duration, Instant};

use overlay_ipam::ring::sim::{Sim, SimConfig, Violation};

#[test]
fn smoke() {
    for (peers, seeds) in [(1000, 100)] {
    let t = Instant::now();
    let mut sim = Sim::new(SimConfig::default().peers(peers).seeds(seeds).seed(7));
    let mut failed = 0;
    for _ in 0..10 {
        failed += sim.random_load(300, 100);
        sim.run(Duration::from_secs(1));
        if !sim.violations().is_empty() { break; }
    }
    eprintln!("{peers} failed {failed} pods {} delivered {} converged {} anomalies {:?} {:?}", sim.pods().count(), sim.delivered(), sim.converged(), sim.anomaly_counts(), t.elapsed());
    if let Some(Violation::Duplicate { address, holder, pod, .. }) = sim.violations().first() {
        let who: Vec<_> = sim.pods().filter(|p| p.0 == *holder || p.0 == *pod).collect();
        eprintln!("{address} {who:?}");
        for (_, n, _) in &who {
            eprintln!("node {n}: {:?} blocks {:?}", sim.node(*n).identity(), sim.node(*n).owned_blocks());
        }
        eprintln!("ring at 0: {:?}", sim.node(0).ring().entry_at(*address));
        panic!();
    }
    }
}
