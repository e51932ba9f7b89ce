//! A deterministic in-process network for [`Gossip`] cores.
//!
//! The simulator drives the same sans-IO core as the real driver: virtual
//! time, a seeded RNG, per-link latency, jitter and loss, partitions, crashes
//! and restarts with a new incarnation. Two runs with the same seed and the
//! same calls are identical.
//!
//! Every node's datagram path goes through a [`Transport`]: [`Plain`] passes
//! bytes through; an encrypting layer (Noise) implements the same trait and
//! plugs in with [`Sim::with_transport_factory`] or
//! [`Sim::add_node_with`].
//!
//! ```
//! use std::time::Duration;
//! use overlay_gossip::sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::default().with_seed(1).with_loss(0.01));
//! let nodes: Vec<_> = (0..8).map(|_| sim.add_node()).collect();
//! for &n in &nodes[1..] {
//!     sim.join(n, nodes[0]);
//! }
//! assert!(sim.run_until(Duration::from_secs(30), |s| s.converged()));
//! // A partition, then healing.
//! sim.partition(&[&nodes[..4], &nodes[4..]]);
//! sim.run_for(Duration::from_secs(2));
//! sim.heal();
//! sim.update(nodes[5], |r| r.name = "renamed".into());
//! assert!(sim.run_until(Duration::from_secs(60), |s| s.converged()));
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use overlay_core::{MacAddr, PeerId};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::core::{ChannelId, Config, Event, Gossip};
use crate::digest::stamp_hash;
use crate::record::PeerRecord;
use crate::wire::Stamp;

/// A datagram opened by a [`Transport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The plaintext datagram for the core.
    pub payload: Vec<u8>,
    /// The authenticated static key of the sender, if the layer has one.
    pub sender_static: Option<[u8; 32]>,
}

/// The per-node datagram path between the core and the network.
///
/// `seal` turns a core datagram into zero or more wire datagrams (an
/// encrypting layer may hold it back until a handshake completes and emit
/// handshake messages instead); `open` turns a wire datagram into at most
/// one core datagram and may emit datagrams of its own (handshake
/// answers, queued payloads released by a completed handshake).
pub trait Transport {
    /// Wraps a datagram of the core for `dst`; pushes what to send on `out`.
    fn seal(
        &mut self,
        now: Duration,
        dst: SocketAddr,
        payload: Vec<u8>,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    );
    /// Unwraps a datagram from `from`; pushes anything to send on `out`.
    fn open(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> Option<Opened>;
    /// When [`Transport::handle_timeout`] must next run (retransmissions).
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    /// Runs the layer's timers.
    fn handle_timeout(&mut self, now: Duration, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let _ = (now, out);
    }
}

/// The unencrypted transport: bytes pass through, no sender key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Transport for Plain {
    fn seal(
        &mut self,
        _now: Duration,
        dst: SocketAddr,
        payload: Vec<u8>,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        out.push((dst, payload));
    }

    fn open(
        &mut self,
        _now: Duration,
        _from: SocketAddr,
        datagram: &[u8],
        _out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> Option<Opened> {
        Some(Opened {
            payload: datagram.to_vec(),
            sender_static: None,
        })
    }
}

/// Network and node defaults of a simulation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// RNG seed (network and nodes).
    pub seed: u64,
    /// One-way latency of every link.
    pub latency: Duration,
    /// Uniform extra latency, `0..jitter`.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Keep every node's events for [`Sim::events`] (turn off for big runs).
    pub record_events: bool,
    /// Applied to every node's [`Config`] when it is created.
    pub tune: fn(&mut Config),
}

fn no_tuning(_: &mut Config) {}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            record_events: true,
            tune: no_tuning,
        }
    }
}

impl SimConfig {
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the default loss probability.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
    /// Sets the default latency and jitter.
    pub fn with_latency(mut self, latency: Duration, jitter: Duration) -> Self {
        self.latency = latency;
        self.jitter = jitter;
        self
    }
    /// Sets whether events are kept.
    pub fn with_record_events(mut self, on: bool) -> Self {
        self.record_events = on;
        self
    }
    /// Sets the node config hook.
    pub fn with_tune(mut self, tune: fn(&mut Config)) -> Self {
        self.tune = tune;
        self
    }
}

/// A node's index in the simulation.
pub type NodeIdx = usize;

/// Link parameters overriding the defaults for one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// One-way latency.
    pub latency: Duration,
    /// Loss probability.
    pub loss: f64,
}

struct Node {
    gossip: Option<Gossip>,
    transport: Box<dyn Transport>,
    record: PeerRecord,
    addr: SocketAddr,
    epoch: u64,
    scheduled: Option<Duration>,
    group: u32,
    events: Vec<Event>,
    bytes_sent: u64,
    datagrams_sent: u64,
}

struct InFlight {
    at: Duration,
    seq: u64,
    from: SocketAddr,
    to: NodeIdx,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

type TransportFactory = Box<dyn FnMut(NodeIdx, &PeerRecord) -> Box<dyn Transport>>;

/// The simulated network. See the [module docs](self).
pub struct Sim {
    cfg: SimConfig,
    now: Duration,
    rng: SmallRng,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, NodeIdx>,
    in_flight: BinaryHeap<InFlight>,
    timers: BinaryHeap<Reverse<(Duration, NodeIdx, u64)>>,
    links: HashMap<(NodeIdx, NodeIdx), Link>,
    seq: u64,
    factory: TransportFactory,
    scratch: Vec<(SocketAddr, Vec<u8>)>,
    delivered: u64,
    dropped: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl Sim {
    /// An empty network.
    pub fn new(cfg: SimConfig) -> Self {
        Sim {
            rng: SmallRng::seed_from_u64(cfg.seed),
            cfg,
            now: Duration::ZERO,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            links: HashMap::new(),
            seq: 0,
            factory: Box::new(|_, _| Box::new(Plain)),
            scratch: Vec::new(),
            delivered: 0,
            dropped: 0,
        }
    }

    /// Builds every later node's transport (and every restarted node's) with
    /// `f` instead of [`Plain`].
    pub fn with_transport_factory(
        mut self,
        f: impl FnMut(NodeIdx, &PeerRecord) -> Box<dyn Transport> + 'static,
    ) -> Self {
        self.factory = Box::new(f);
        self
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The default record of node `i`: a random id, endpoint
    /// `198.18.0.0 + i + 1:7946`, a VTEP MAC and a /24 pod block from `i`.
    fn default_record(&mut self, i: usize) -> PeerRecord {
        let id = PeerId::from_u128(self.rng.random::<u128>());
        let mut r = PeerRecord::new(id);
        let n = (i + 1) as u32;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n);
        r.underlay = vec![SocketAddr::new(IpAddr::V4(ip), 7946)];
        r.name = format!("node-{i}");
        let b = n.to_be_bytes();
        r.vtep_mac = MacAddr::new([0x02, 0, b[0], b[1], b[2], b[3]]);
        if let Ok(net) = format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff).parse() {
            r.pod_blocks = vec![net];
        }
        r.noise_static[..16].copy_from_slice(&id.to_bytes());
        r
    }

    /// Adds a node with the default record and transport; it is not joined.
    pub fn add_node(&mut self) -> NodeIdx {
        self.add_node_with(|_| {}, None)
    }

    /// Adds a node: `edit` adjusts its config (record included) after the
    /// defaults and [`SimConfig::tune`]; `transport` replaces the factory's.
    pub fn add_node_with(
        &mut self,
        edit: impl FnOnce(&mut Config),
        transport: Option<Box<dyn Transport>>,
    ) -> NodeIdx {
        let i = self.nodes.len();
        let mut cfg = Config::new(self.default_record(i));
        (self.cfg.tune)(&mut cfg);
        edit(&mut cfg);
        let record = cfg.record.clone();
        let addr = record
            .gossip_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let transport = transport.unwrap_or_else(|| (self.factory)(i, &record));
        let gossip = Gossip::new(cfg, &mut self.rng);
        self.by_addr.insert(addr, i);
        self.nodes.push(Node {
            gossip: Some(gossip),
            transport,
            record,
            addr,
            epoch: 0,
            scheduled: None,
            group: 0,
            events: Vec::new(),
            bytes_sent: 0,
            datagrams_sent: 0,
        });
        self.flush(i);
        i
    }

    /// Adds `n` nodes whose views already hold every one of them (as if the
    /// cluster had converged), through [`Gossip::restore`]. Records are
    /// shared between the nodes' views, so big clusters fit in memory.
    pub fn add_converged(&mut self, n: usize) -> Vec<NodeIdx> {
        let idx: Vec<NodeIdx> = (0..n).map(|_| self.add_node()).collect();
        let records: Vec<Arc<PeerRecord>> = idx
            .iter()
            .map(|&i| Arc::new(self.nodes[i].record.clone()))
            .collect();
        let now = self.now;
        for &i in &idx {
            if let Some(g) = self.nodes[i].gossip.as_mut() {
                g.restore(now, records.iter().cloned());
            }
            self.flush(i);
        }
        idx
    }

    /// Node `i`'s core. Panics if `i` is crashed (a test bug).
    pub fn gossip(&self, i: NodeIdx) -> &Gossip {
        self.nodes[i]
            .gossip
            .as_ref()
            .expect("node is crashed; restart it first")
    }

    /// Node `i`'s id.
    pub fn id(&self, i: NodeIdx) -> PeerId {
        self.nodes[i].record.id
    }

    /// Node `i`'s gossip endpoint.
    pub fn addr(&self, i: NodeIdx) -> SocketAddr {
        self.nodes[i].addr
    }

    /// True unless node `i` is crashed or has left.
    pub fn is_up(&self, i: NodeIdx) -> bool {
        self.nodes[i].gossip.is_some()
    }

    /// The events node `i` reported (with [`SimConfig::record_events`]).
    pub fn events(&self, i: NodeIdx) -> &[Event] {
        &self.nodes[i].events
    }

    /// Bytes node `i` sent since it was added.
    pub fn bytes_sent(&self, i: NodeIdx) -> u64 {
        self.nodes[i].bytes_sent
    }

    /// Datagrams node `i` sent since it was added.
    pub fn datagrams_sent(&self, i: NodeIdx) -> u64 {
        self.nodes[i].datagrams_sent
    }

    /// Datagrams delivered and dropped (loss, partition, no receiver).
    pub fn delivery_stats(&self) -> (u64, u64) {
        (self.delivered, self.dropped)
    }

    /// Runs `f` on node `i`'s core at the current time, then sends what it
    /// queued. Does nothing for a crashed node.
    pub fn with_node<T>(
        &mut self,
        i: NodeIdx,
        f: impl FnOnce(&mut Gossip, Duration) -> T,
    ) -> Option<T> {
        let now = self.now;
        let out = self.nodes[i].gossip.as_mut().map(|g| f(g, now));
        self.flush(i);
        out
    }

    /// Node `i` joins through node `seed`.
    pub fn join(&mut self, i: NodeIdx, seed: NodeIdx) {
        let addr = self.nodes[seed].addr;
        self.with_node(i, |g, now| g.join(now, addr));
    }

    /// Node `i` changes its record.
    pub fn update(&mut self, i: NodeIdx, f: impl FnOnce(&mut PeerRecord)) {
        let r = self.with_node(i, |g, now| g.update_local(now, f));
        if let Some(Ok(())) = r {
            self.nodes[i].record = self.gossip(i).local().clone();
        }
    }

    /// Node `i` registers `name`.
    pub fn register_channel(&mut self, i: NodeIdx, name: &str) -> Option<ChannelId> {
        self.with_node(i, |g, _| g.register_channel(name).ok())
            .flatten()
    }

    /// Node `i` leaves gracefully; its last datagrams are sent, then it stops.
    pub fn leave(&mut self, i: NodeIdx) {
        self.with_node(i, |g, now| g.leave(now));
        self.nodes[i].gossip = None;
        self.nodes[i].epoch += 1;
    }

    /// Node `i` crashes: its state is lost, datagrams to it are dropped.
    pub fn crash(&mut self, i: NodeIdx) {
        self.nodes[i].gossip = None;
        self.nodes[i].epoch += 1;
        self.nodes[i].scheduled = None;
    }

    /// Node `i` restarts with its record at a new incarnation and an empty
    /// view, and joins through `seed`.
    pub fn restart(&mut self, i: NodeIdx, seed: NodeIdx) {
        let mut rec = self.nodes[i].record.clone();
        rec.incarnation += 1;
        rec.version = 0;
        rec.flags = 0;
        let mut cfg = Config::new(rec.clone());
        (self.cfg.tune)(&mut cfg);
        cfg.record = rec.clone();
        self.nodes[i].transport = (self.factory)(i, &rec);
        self.nodes[i].record = rec;
        self.nodes[i].gossip = Some(Gossip::new(cfg, &mut self.rng));
        self.nodes[i].epoch += 1;
        self.nodes[i].scheduled = None;
        self.join(i, seed);
    }

    /// Splits the network: nodes in different groups cannot reach each other;
    /// nodes not listed form one more group together.
    pub fn partition(&mut self, groups: &[&[NodeIdx]]) {
        for n in &mut self.nodes {
            n.group = 0;
        }
        for (g, members) in groups.iter().enumerate() {
            for &m in *members {
                self.nodes[m].group = g as u32 + 1;
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Overrides the link `from -> to`.
    pub fn set_link(&mut self, from: NodeIdx, to: NodeIdx, link: Link) {
        self.links.insert((from, to), link);
    }

    /// Runs until `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
        self.now = end;
    }

    /// Runs until `pred` holds (checked every 10 ms of virtual time) or
    /// `max` has passed; returns whether it held.
    pub fn run_until(&mut self, max: Duration, mut pred: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + max;
        while self.now < end {
            if pred(self) {
                return true;
            }
            let slice = (self.now + Duration::from_millis(10)).min(end);
            while self.step(slice) {}
            self.now = slice;
        }
        pred(self)
    }

    /// Processes the next event if it is due by `until`; false when none is.
    fn step(&mut self, until: Duration) -> bool {
        let next_pkt = self.in_flight.peek().map(|p| p.at);
        let next_timer = self.timers.peek().map(|Reverse((t, _, _))| *t);
        let take_pkt = match (next_pkt, next_timer) {
            (Some(p), Some(t)) => p <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if take_pkt {
            let Some(p) = self.in_flight.pop_if_due(until) else {
                return false;
            };
            self.now = self.now.max(p.at);
            self.deliver(p);
        } else {
            let Some(Reverse((at, i, epoch))) = self.timers.peek().copied() else {
                return false;
            };
            if at > until {
                return false;
            }
            self.timers.pop();
            self.now = self.now.max(at);
            let node = &mut self.nodes[i];
            if node.epoch != epoch || node.scheduled != Some(at) {
                return true;
            }
            node.scheduled = None;
            let now = self.now;
            if let Some(g) = node.gossip.as_mut() {
                if g.poll_timeout().is_some_and(|t| t <= now) {
                    g.handle_timeout(now);
                }
                if node.transport.poll_timeout().is_some_and(|t| t <= now) {
                    let mut out = std::mem::take(&mut self.scratch);
                    node.transport.handle_timeout(now, &mut out);
                    for (dst, bytes) in out.drain(..) {
                        self.send(i, dst, bytes);
                    }
                    self.scratch = out;
                }
            }
            self.flush(i);
        }
        true
    }

    fn deliver(&mut self, p: InFlight) {
        let i = p.to;
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        let node = &mut self.nodes[i];
        if let Some(g) = node.gossip.as_mut() {
            self.delivered += 1;
            if let Some(opened) = node.transport.open(now, p.from, &p.bytes, &mut out) {
                g.handle_datagram(now, p.from, opened.sender_static, &opened.payload);
            }
        } else {
            self.dropped += 1;
        }
        for (dst, bytes) in out.drain(..) {
            self.send(i, dst, bytes);
        }
        self.scratch = out;
        self.flush(i);
    }

    /// Sends everything node `i` queued and reschedules its timer.
    fn flush(&mut self, i: NodeIdx) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        let record = self.cfg.record_events;
        let node = &mut self.nodes[i];
        let Some(g) = node.gossip.as_mut() else {
            return;
        };
        while let Some(t) = g.poll_transmit() {
            node.transport.seal(now, t.dst, t.payload, &mut out);
        }
        while let Some(e) = g.poll_event() {
            if record {
                node.events.push(e);
            }
        }
        let due = match (g.poll_timeout(), node.transport.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = due {
            let t = t.max(now);
            if node.scheduled.is_none_or(|s| t < s) {
                node.scheduled = Some(t);
                self.timers.push(Reverse((t, i, node.epoch)));
            }
        }
        for (dst, bytes) in out.drain(..) {
            self.send(i, dst, bytes);
        }
        self.scratch = out;
    }

    fn send(&mut self, from: NodeIdx, dst: SocketAddr, bytes: Vec<u8>) {
        self.nodes[from].bytes_sent += bytes.len() as u64;
        self.nodes[from].datagrams_sent += 1;
        let Some(&to) = self.by_addr.get(&dst) else {
            self.dropped += 1;
            return;
        };
        if self.nodes[from].group != self.nodes[to].group {
            self.dropped += 1;
            return;
        }
        let link = self.links.get(&(from, to)).copied().unwrap_or(Link {
            latency: self.cfg.latency,
            loss: self.cfg.loss,
        });
        if link.loss > 0.0 && self.rng.random_bool(link.loss.min(1.0)) {
            self.dropped += 1;
            return;
        }
        let jitter = self.cfg.jitter.as_micros() as u64;
        let extra = if jitter > 0 {
            Duration::from_micros(self.rng.random_range(0..jitter))
        } else {
            Duration::ZERO
        };
        self.seq += 1;
        self.in_flight.push(InFlight {
            at: self.now + link.latency + extra,
            seq: self.seq,
            from: self.nodes[from].addr,
            to,
            bytes,
        });
    }

    /// True when every running node's view is exactly the set of running
    /// nodes' current records (compared by size and view fingerprint).
    pub fn converged(&self) -> bool {
        let mut fp = 0u64;
        let mut n = 0;
        for node in &self.nodes {
            if let Some(g) = &node.gossip {
                let l = g.local();
                fp ^= stamp_hash(&Stamp {
                    id: l.id,
                    incarnation: l.incarnation,
                    version: l.version,
                });
                n += 1;
            }
        }
        self.nodes
            .iter()
            .filter_map(|x| x.gossip.as_ref())
            .all(|g| g.len() == n && g.view_fingerprint() == fp)
    }

    /// How many running nodes hold `id`'s record at `stamp` or newer.
    pub fn count_knowing(&self, id: PeerId, stamp: (u64, u64)) -> usize {
        self.nodes
            .iter()
            .filter_map(|x| x.gossip.as_ref())
            .filter(|g| g.peer(id).is_some_and(|r| r.stamp() >= stamp))
            .count()
    }

    /// Number of running nodes.
    pub fn running(&self) -> usize {
        self.nodes.iter().filter(|n| n.gossip.is_some()).count()
    }
}

trait PopIfDue {
    fn pop_if_due(&mut self, until: Duration) -> Option<InFlight>;
}

impl PopIfDue for BinaryHeap<InFlight> {
    fn pop_if_due(&mut self, until: Duration) -> Option<InFlight> {
        if self.peek().is_some_and(|p| p.at <= until) {
            self.pop()
        } else {
            None
        }
    }
}
