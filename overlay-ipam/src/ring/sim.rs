//! A deterministic simulator of a cluster of [`Node`]s: seeded randomness,
//! virtual time, and an in-memory network with loss, duplication, delay
//! (hence reordering) and partitions; crash-restart rolls a node back to
//! its last committed store. It checks, at every step, the properties of
//! the design note's section 3.6:
//!
//! - **S1** no address is held by two live pods ([`Sim::violations`]);
//! - **S2** every ADD answers at once ([`Sim::add_pod`] never advances
//!   time; failures are typed) and succeeds once space has been refilled;
//! - **S3** replicas converge after healing ([`Sim::converged`]);
//! - **S4** every acknowledged address is in the store after a crash.
//!
//! Gossip is modelled as a broadcast of each delta to every reachable node
//! (each copy lost, duplicated and delayed independently) plus periodic
//! digest anti-entropy with one random peer; the membership layer is
//! modelled by telling each node the identity of the peers it exchanges
//! digests with ([`Node::observe_peer`]).
//!
//! ```
//! use overlay_ipam::ring::sim::{Sim, SimConfig};
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(SimConfig::default().peers(8).seed(1));
//! for i in 0..8 {
//!     sim.add_pod(i).unwrap();
//! }
//! sim.run(Duration::from_secs(30));
//! assert!(sim.violations().is_empty());
//! assert!(sim.converged());
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use ipnet::IpNet;
use overlay_core::PeerId;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::node::{AllocFailure, Identity, Message, Node, NodeConfig, Output};
use super::state::{Anomaly, Delta, Ring, Tombstone};

/// The simulator's parameters. `Default`: 16 peers, all of them genesis
/// seeds, `10.0.0.0/8` with `/26` minimum blocks, 5% loss, 2% duplication,
/// up to 200 ms delay, 100 ms ticks.
///
/// ```
/// use overlay_ipam::ring::sim::SimConfig;
///
/// let c = SimConfig::default().peers(1000).seeds(10).loss(0.1);
/// assert_eq!((c.peers, c.seeds, c.loss), (1000, 10, 0.1));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Number of nodes.
    pub peers: usize,
    /// How many of them (the first ones) seed the ring; the others start
    /// with no space.
    pub seeds: usize,
    /// RNG seed: the same seed gives the same run.
    pub seed: u64,
    /// The ring's universe.
    pub universe: IpNet,
    /// The minimum block.
    pub min_block_len: u8,
    /// Probability that a message copy is lost.
    pub loss: f64,
    /// Probability that a message copy is delivered twice.
    pub duplicate: f64,
    /// Largest delivery delay (uniform); different delays reorder.
    pub max_delay: Duration,
    /// Virtual time per step.
    pub tick: Duration,
    /// Anti-entropy period per node.
    pub anti_entropy: Duration,
    /// Digest buckets (`log2`).
    pub bucket_bits: u8,
    /// The nodes' configuration.
    pub node: NodeConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            peers: 16,
            seeds: 16,
            seed: 0,
            universe: IpNet::V4("10.0.0.0/8".parse().unwrap_or_default()),
            min_block_len: 26,
            loss: 0.05,
            duplicate: 0.02,
            max_delay: Duration::from_millis(200),
            tick: Duration::from_millis(100),
            anti_entropy: Duration::from_secs(2),
            bucket_bits: 8,
            node: NodeConfig::default()
                .quarantine(Duration::from_secs(10))
                .retry(Duration::from_secs(1))
                .free_report_interval(Duration::from_secs(10)),
        }
    }
}

impl SimConfig {
    /// Set [`peers`](Self::peers) (and [`seeds`](Self::seeds) if it was
    /// larger).
    pub fn peers(mut self, n: usize) -> Self {
        self.peers = n;
        self.seeds = self.seeds.min(n).max(1);
        self
    }

    /// Set [`seeds`](Self::seeds).
    pub fn seeds(mut self, n: usize) -> Self {
        self.seeds = n.max(1);
        self
    }

    /// Set [`seed`](Self::seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set [`universe`](Self::universe) and
    /// [`min_block_len`](Self::min_block_len).
    pub fn universe(mut self, universe: IpNet, min_block_len: u8) -> Self {
        self.universe = universe;
        self.min_block_len = min_block_len;
        self
    }

    /// Set [`loss`](Self::loss).
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Set [`duplicate`](Self::duplicate).
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Set [`node`](Self::node).
    pub fn node(mut self, node: NodeConfig) -> Self {
        self.node = node;
        self
    }
}

/// A broken property, with the virtual time it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// S1: two live pods hold one address.
    Duplicate {
        /// When.
        at: Duration,
        /// The address.
        address: IpAddr,
        /// The pod that held it.
        holder: u64,
        /// The pod that was given it too.
        pod: u64,
    },
    /// S4: an acknowledged address was missing from the store after a
    /// crash.
    Lost {
        /// When.
        at: Duration,
        /// The pod.
        pod: u64,
    },
}

#[derive(Debug, Clone)]
struct Store {
    identity: Identity,
    ring: Vec<u8>,
    pods: Vec<(IpAddr, u64)>,
}

#[derive(Debug)]
struct SimNode {
    node: Node<u64>,
    store: Store,
    up: bool,
    alive: bool,
    group: u32,
}

#[derive(Debug, Clone)]
enum Payload {
    Message(Message),
    /// One broadcast, shared by all its copies.
    Broadcast(Rc<Delta>),
}

#[derive(Debug)]
struct InFlight {
    /// Delivery time within its tick (for reordering), then send order.
    at: Duration,
    seq: u64,
    from: usize,
    to: usize,
    payload: Payload,
}

/// The simulated cluster. See the [module docs](self).
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    genesis_ring: Ring,
    rng: StdRng,
    now: Duration,
    nodes: Vec<SimNode>,
    by_peer: HashMap<PeerId, usize>,
    /// Messages by the tick they arrive in (a timing wheel: slot 0 is the
    /// next tick).
    wheel: VecDeque<Vec<InFlight>>,
    in_flight: usize,
    seq: u64,
    next_pod: u64,
    pods: BTreeMap<u64, (usize, IpAddr)>,
    held: HashMap<IpAddr, u64>,
    violations: Vec<Violation>,
    anomalies: BTreeMap<&'static str, u64>,
    delivered: u64,
}

impl Sim {
    /// A cluster of `config.peers` nodes; the first `config.seeds` seed the
    /// ring (every node computes it from the seed list).
    ///
    /// # Panics
    ///
    /// If the seeds do not fit the universe (a test set-up error).
    pub fn new(config: SimConfig) -> Sim {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let ids: Vec<Identity> = (0..config.peers)
            .map(|_| Identity {
                incarnation: 1,
                ..Identity::random(&mut rng)
            })
            .collect();
        let seeds: Vec<PeerId> = ids.iter().take(config.seeds).map(|i| i.peer).collect();
        let ring = Ring::from_seeds(config.universe, config.min_block_len, &seeds)
            .expect("the simulator's seeds fit its universe");
        let mut sim = Sim {
            genesis_ring: ring.clone(),
            rng,
            now: Duration::ZERO,
            nodes: Vec::with_capacity(config.peers),
            by_peer: HashMap::new(),
            wheel: VecDeque::new(),
            in_flight: 0,
            seq: 0,
            next_pod: 0,
            pods: BTreeMap::new(),
            held: HashMap::new(),
            violations: Vec::new(),
            anomalies: BTreeMap::new(),
            delivered: 0,
            config,
        };
        for id in ids {
            let node = Node::new(id, ring.clone(), sim.config.node.clone());
            sim.by_peer.insert(id.peer, sim.nodes.len());
            sim.nodes.push(SimNode {
                store: Store {
                    identity: id,
                    ring: ring.encode(),
                    pods: Vec::new(),
                },
                node,
                up: true,
                alive: true,
                group: 0,
            });
        }
        sim
    }

    /// The virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The number of nodes (alive or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node<u64> {
        &self.nodes[i].node
    }

    /// Properties broken so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Anomalies reported by nodes, counted by kind.
    pub fn anomaly_counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.anomalies
    }

    /// Message copies delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Message copies in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Live pods: `(pod, node, address)`.
    pub fn pods(&self) -> impl Iterator<Item = (u64, usize, IpAddr)> + '_ {
        self.pods.iter().map(|(&p, &(n, ip))| (p, n, ip))
    }

    fn commit(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.store = Store {
            identity: n.node.identity(),
            ring: n.node.ring().encode(),
            pods: n.node.allocations(),
        };
    }

    /// A CNI ADD on node `i`: allocates at once (time does not move),
    /// commits, and checks S1.
    pub fn add_pod(&mut self, i: usize) -> Result<IpAddr, AllocFailure> {
        if !self.nodes[i].up {
            return Err(AllocFailure::NoSpaceYet);
        }
        let pod = self.next_pod;
        self.next_pod += 1;
        let ip = self.nodes[i].node.allocate(self.now, pod)?;
        self.commit(i);
        if let Some(&holder) = self.held.get(&ip) {
            self.violations.push(Violation::Duplicate {
                at: self.now,
                address: ip,
                holder,
                pod,
            });
        }
        self.held.insert(ip, pod);
        self.pods.insert(pod, (i, ip));
        self.flush(i);
        Ok(ip)
    }

    /// A CNI DEL of `pod`.
    pub fn del_pod(&mut self, pod: u64) {
        let Some((i, ip)) = self.pods.remove(&pod) else {
            return;
        };
        if self.held.get(&ip) == Some(&pod) {
            self.held.remove(&ip);
        }
        if self.nodes[i].up {
            self.nodes[i].node.release(self.now, &pod);
            self.commit(i);
            self.flush(i);
        }
    }

    /// Delete a random live pod of node `i`, if it has one.
    pub fn del_random_pod(&mut self, i: usize) {
        let pods: Vec<u64> = self
            .pods
            .iter()
            .filter(|(_, (n, _))| *n == i)
            .map(|(p, _)| *p)
            .collect();
        if pods.is_empty() {
            return;
        }
        let k = self.rng.random_range(0..pods.len());
        self.del_pod(pods[k]);
    }

    /// Random load: `adds` ADDs and `dels` DELs on random live nodes;
    /// returns the number of failed ADDs.
    pub fn random_load(&mut self, adds: usize, dels: usize) -> usize {
        let mut failed = 0;
        for _ in 0..adds {
            let i = self.rng.random_range(0..self.nodes.len());
            if self.nodes[i].alive && self.nodes[i].up && self.add_pod(i).is_err() {
                failed += 1;
            }
        }
        for _ in 0..dels {
            if self.pods.is_empty() {
                break;
            }
            let k = self.rng.random_range(0..self.pods.len());
            if let Some(&pod) = self.pods.keys().nth(k) {
                self.del_pod(pod);
            }
        }
        failed
    }

    /// Put node `i` in partition `group` (nodes talk only within a group).
    ///
    /// ```
    /// use overlay_ipam::ring::sim::{Sim, SimConfig};
    /// use std::time::Duration;
    ///
    /// let mut sim = Sim::new(SimConfig::default().peers(4).seed(3));
    /// sim.set_group(0, 1);
    /// // A reclaim applied at node 0 cannot spread.
    /// let dead = sim.node(3).identity();
    /// sim.kill(3);
    /// sim.reclaim(dead.peer, dead.incarnation, 0, 0);
    /// sim.run(Duration::from_secs(5));
    /// assert!(!sim.converged());
    /// sim.heal();
    /// assert!(sim.run_until_converged(Duration::from_secs(30)).is_some());
    /// ```
    pub fn set_group(&mut self, i: usize, group: u32) {
        self.nodes[i].group = group;
    }

    /// Heal every partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Crash node `i`: it stops; its pods keep running (only the agent
    /// died).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Restart node `i` from its last committed store, one incarnation
    /// later, and check S4.
    ///
    /// ```
    /// use overlay_ipam::ring::sim::{Sim, SimConfig};
    ///
    /// let mut sim = Sim::new(SimConfig::default().peers(3).seed(2));
    /// let ip = sim.add_pod(1).unwrap();
    /// sim.crash(1);
    /// sim.restart(1);
    /// assert!(sim.violations().is_empty()); // the acknowledged address survived
    /// assert_eq!(sim.node(1).allocations()[0].0, ip);
    /// assert_eq!(sim.node(1).identity().incarnation, 2);
    /// ```
    pub fn restart(&mut self, i: usize) {
        let store = self.nodes[i].store.clone();
        let ring = Ring::decode(&store.ring).unwrap_or_else(|_| self.genesis_ring.clone());
        let id = store.identity.restarted();
        let node = Node::restore(id, ring, store.pods, self.config.node.clone(), self.now);
        self.nodes[i].node = node;
        self.nodes[i].up = true;
        self.by_peer.insert(id.peer, i);
        let restored = self.nodes[i].node.allocations();
        let lost: Vec<u64> = self
            .pods
            .iter()
            .filter(|(p, (n, ip))| *n == i && !restored.contains(&(*ip, **p)))
            .map(|(p, _)| *p)
            .collect();
        for pod in lost {
            self.violations.push(Violation::Lost { at: self.now, pod });
        }
        self.commit(i);
        self.flush(i);
    }

    /// Node `i` dies for good with its pods (the machine is gone).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].alive = false;
        self.drop_pods_of(i);
    }

    fn drop_pods_of(&mut self, i: usize) {
        let pods: Vec<u64> = self
            .pods
            .iter()
            .filter(|(_, (n, _))| *n == i)
            .map(|(p, _)| *p)
            .collect();
        for pod in pods {
            if let Some((_, ip)) = self.pods.remove(&pod)
                && self.held.get(&ip) == Some(&pod)
            {
                self.held.remove(&ip);
            }
        }
    }

    /// Node `i` comes back with a wiped store (Weave #3955): its pods died
    /// with the machine; it takes a fresh identity and the genesis ring
    /// every node computes from the seed list. Its old identity's blocks
    /// stay with the old id until a reclaim.
    pub fn wipe_restart(&mut self, i: usize) -> Identity {
        self.drop_pods_of(i);
        let id = Identity {
            incarnation: 1,
            ..Identity::random(&mut self.rng)
        };
        let node = Node::new(id, self.genesis_ring.clone(), self.config.node.clone());
        self.nodes[i].node = node;
        self.nodes[i].up = true;
        self.nodes[i].alive = true;
        self.by_peer.insert(id.peer, i);
        self.commit(i);
        id
    }

    /// The authority reclaims `dead`'s identity (as of its committed store)
    /// with `heir`'s identity as heir; the tombstone is applied at node
    /// `via` and gossiped from there.
    ///
    /// ```
    /// use overlay_ipam::ring::sim::{Sim, SimConfig};
    /// use std::time::Duration;
    ///
    /// let mut sim = Sim::new(SimConfig::default().peers(3).seed(4));
    /// let dead = sim.node(2).identity();
    /// sim.kill(2);
    /// sim.reclaim(dead.peer, dead.incarnation, 0, 1);
    /// assert!(sim.run_until_converged(Duration::from_secs(10)).is_some());
    /// assert!(sim.node(0).ring().entries_of(dead.peer).is_empty());
    /// ```
    pub fn reclaim(&mut self, dead: PeerId, up_to_incarnation: u64, heir: usize, via: usize) {
        let tombstone = Tombstone {
            peer: dead,
            up_to_incarnation,
            heir: self.nodes[heir].node.identity().peer,
        };
        if self.nodes[via].node.reclaim(self.now, tombstone).is_ok() {
            self.commit(via);
            self.flush(via);
        }
    }

    /// Whether all live, running nodes hold equal rings.
    pub fn converged(&self) -> bool {
        let mut live = self.nodes.iter().filter(|n| n.alive && n.up);
        let Some(first) = live.next() else {
            return true;
        };
        live.all(|n| n.node.ring() == first.node.ring())
    }

    /// Advance virtual time by `d`, one tick at a time.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Run until converged or `max` elapsed; the time it took.
    pub fn run_until_converged(&mut self, max: Duration) -> Option<Duration> {
        let start = self.now;
        while self.now - start < max {
            self.step();
            if self.converged() {
                return Some(self.now - start);
            }
        }
        None
    }

    /// One tick: deliver due messages, run every node's timers, start the
    /// anti-entropy rounds that are due.
    pub fn step(&mut self) {
        self.now += self.config.tick;
        let mut due = self.wheel.pop_front().unwrap_or_default();
        self.in_flight -= due.len();
        due.sort_by_key(|m| (m.at, m.seq));
        for m in due {
            self.deliver(m);
        }
        let period = (self.config.anti_entropy.as_nanos() / self.config.tick.as_nanos()).max(1);
        let tick_no = self.now.as_nanos() / self.config.tick.as_nanos();
        for i in 0..self.nodes.len() {
            if !(self.nodes[i].alive && self.nodes[i].up) {
                continue;
            }
            self.nodes[i].node.handle_timeout(self.now, &mut self.rng);
            if (tick_no + i as u128).is_multiple_of(period) {
                let j = self.rng.random_range(0..self.nodes.len());
                if j != i {
                    let message = self.nodes[i].node.digest_message(self.config.bucket_bits);
                    self.send(i, j, Payload::Message(message));
                }
            }
            self.flush(i);
        }
    }

    fn reachable(&self, from: usize, to: usize) -> bool {
        let (a, b) = (&self.nodes[from], &self.nodes[to]);
        a.alive && b.alive && b.up && a.group == b.group
    }

    fn send(&mut self, from: usize, to: usize, payload: Payload) {
        if !self.reachable(from, to) || self.rng.random_bool(self.config.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.config.duplicate) {
            2
        } else {
            1
        };
        let tick = self.config.tick.as_micros().max(1);
        for _ in 0..copies {
            let delay = self
                .rng
                .random_range(0..=self.config.max_delay.as_micros() as u64)
                .max(1);
            // Arrives in the tick that contains now + delay.
            let slot = ((u128::from(delay) - 1) / tick) as usize;
            while self.wheel.len() <= slot {
                self.wheel.push_back(Vec::new());
            }
            self.seq += 1;
            self.in_flight += 1;
            self.wheel[slot].push(InFlight {
                at: self.now + Duration::from_micros(delay),
                seq: self.seq,
                from,
                to,
                payload: payload.clone(),
            });
        }
    }

    fn deliver(&mut self, m: InFlight) {
        if !self.reachable(m.from, m.to) {
            return;
        }
        self.delivered += 1;
        let from_id = self.nodes[m.from].node.identity();
        let now = self.now;
        let node = &mut self.nodes[m.to].node;
        match m.payload {
            Payload::Broadcast(delta) => {
                node.handle_delta(now, &delta);
            }
            Payload::Message(message) => {
                if matches!(message, Message::Digest { .. }) {
                    node.observe_peer(now, from_id);
                }
                let own_write = matches!(message, Message::SpaceRequest | Message::Claim { .. });
                node.handle_message(now, from_id.peer, message);
                if own_write {
                    // A donation or a grant is committed before it is sent.
                    self.commit(m.to);
                }
            }
        }
        self.flush(m.to);
    }

    /// Route node `i`'s outputs.
    fn flush(&mut self, i: usize) {
        let mut commit = false;
        while let Some(out) = self.nodes[i].node.poll_output() {
            match out {
                Output::Broadcast(delta) => {
                    commit = true;
                    let delta = Payload::Broadcast(Rc::new(delta));
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.send(i, j, delta.clone());
                        }
                    }
                }
                Output::Send { to, message } => {
                    if let Some(&j) = self.by_peer.get(&to) {
                        self.send(i, j, Payload::Message(message));
                    }
                }
                Output::Anomaly(a) => {
                    *self.anomalies.entry(anomaly_kind(&a)).or_default() += 1;
                }
                Output::Reidentified { new, .. } => {
                    commit = true;
                    self.by_peer.insert(new.peer, i);
                }
            }
        }
        if commit {
            self.commit(i);
        }
    }
}

/// A short name for an anomaly's kind (for counters).
///
/// ```
/// use overlay_ipam::ring::{Anomaly, GenesisId};
/// use overlay_ipam::ring::sim::anomaly_kind;
///
/// let a = Anomaly::GenesisMismatch { ours: GenesisId::from_u128(1), theirs: GenesisId::from_u128(2) };
/// assert_eq!(anomaly_kind(&a), "genesis_mismatch");
/// ```
pub fn anomaly_kind(a: &Anomaly) -> &'static str {
    match a {
        Anomaly::GenesisMismatch { .. } => "genesis_mismatch",
        Anomaly::ConcurrentWrite { .. } => "concurrent_write",
        Anomaly::ConflictingHeirs { .. } => "conflicting_heirs",
        Anomaly::InvalidRecord { .. } => "invalid_record",
        Anomaly::InvalidTombstone { .. } => "invalid_tombstone",
        Anomaly::ClaimConflict { .. } => "claim_conflict",
        Anomaly::LostAllocations { .. } => "lost_allocations",
        Anomaly::SteppedDown { .. } => "stepped_down",
        Anomaly::CloneDetected { .. } => "clone_detected",
    }
}
