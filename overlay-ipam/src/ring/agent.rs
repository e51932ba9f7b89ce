//! A node's ring over a gossip layer, sans-IO: genesis discovery, the
//! ring's traffic cut into frame-sized messages, anti-entropy, and the ring
//! made durable before anything leaves the node.
//!
//! [`Node`] is the allocator and the CRDT replica; [`RingAgent`] is what an
//! agent runs around it, and what every agent built on this crate would
//! otherwise write again:
//!
//! - **Genesis discovery.** Every node of a cluster computes the same
//!   genesis address (the configured one, or the lowest seed address, see
//!   [`lowest_address`]). The node at that address waits
//!   [`RingAgentConfig::genesis_wait`] (an existing ring reaches it through
//!   anti-entropy meanwhile; a restarted node restores its stored ring with
//!   [`start`](RingAgent::start) instead) and then founds the ring alone;
//!   every other node waits until the membership layer shows it a peer at
//!   that address ([`peer_up`](RingAgent::peer_up)) and builds the same
//!   ring from that peer's id. No consensus round, no quorum count.
//! - **Durable before sent.** [`handle_timeout`](RingAgent::handle_timeout)
//!   and [`flush`](RingAgent::flush) commit the ring through the caller's
//!   [`RingStore`] whenever it changed, and only then move the node's
//!   outputs to the transmit queue: a donation is on disk before the
//!   recipient can use it, so a crash never gives a block away twice. A
//!   new identity (after a step-down) is committed before it is used.
//! - **Frame-sized messages.** Deltas are cut into parts of at most
//!   [`RingAgentConfig::records_per_message`] records
//!   ([`Delta::split`](super::Delta::split), tombstones in the first part),
//!   broadcast or unicast as the node asked.
//! - **Anti-entropy.** Every [`RingAgentConfig::anti_entropy`] the ring's
//!   digest goes to one random alive peer, which answers with what differs:
//!   a missed broadcast (or a ring the joiner learnt late) is repaired
//!   within seconds.
//!
//! Time is passed in (a [`Duration`] since any fixed origin) and randomness
//! as a [`rand::Rng`]; the agent never reads a clock nor opens a socket.
//! What it sends comes out of [`poll_transmit`](RingAgent::poll_transmit)
//! as a [`Transmit`] (a [`Destination`] and the bytes), what the operator
//! should hear about out of [`poll_event`](RingAgent::poll_event).
//!
//! # Why here, and not in `overlay-gossip`
//!
//! The ring needs a transport with unicast, broadcast and a membership
//! view; it does not need *this* transport. `overlay-gossip` knows nothing
//! of IPAM, and `overlay-ipam` does not depend on `overlay-gossip` either:
//! the agent speaks in peer ids, addresses and byte strings, which any
//! membership layer provides. The binary that owns both maps one onto the
//! other in a few lines: `PeerUp`/`PeerChanged` records to
//! [`peer_up`](RingAgent::peer_up) (with the record's first underlay
//! address), `PeerDown` to [`peer_down`](RingAgent::peer_down), messages
//! on the [`CHANNEL`] channel to [`handle_bytes`](RingAgent::handle_bytes),
//! and each [`Transmit`] to the gossip driver's unicast or broadcast. An
//! optional feature pulling `overlay-gossip` into this crate would have
//! bought nothing but a heavier dependency tree; being sans-IO, the agent
//! is tested below by exchanging its transmits in memory, without sockets.
//!
//! # Example
//!
//! Two nodes: `a` is at the genesis address and founds the ring after the
//! wait; `b` builds the same ring as soon as it sees `a`, and asks it for
//! space.
//!
//! ```
//! use overlay_core::PeerId;
//! use overlay_ipam::ring::agent::{Destination, RingAgent, RingAgentConfig, RingStore};
//! use overlay_ipam::ring::{Identity, Ring};
//! use rand::SeedableRng;
//! use std::net::IpAddr;
//! use std::time::Duration;
//!
//! /// A store that keeps the last ring in memory.
//! #[derive(Default)]
//! struct Memory(Option<Vec<u8>>);
//! impl RingStore for Memory {
//!     type Error = std::convert::Infallible;
//!     fn save_ring(&mut self, ring: &[u8]) -> Result<(), Self::Error> {
//!         self.0 = Some(ring.to_vec());
//!         Ok(())
//!     }
//!     fn save_identity(&mut self, _: Identity) -> Result<(), Self::Error> {
//!         Ok(())
//!     }
//! }
//!
//! let (ip_a, ip_b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
//! let (id_a, id_b) = (PeerId::from_u128(1), PeerId::from_u128(2));
//! let config = |own| RingAgentConfig::new("10.32.0.0/16".parse().unwrap(), 24, own, ip_a);
//! let mut a = RingAgent::<&str>::new(config(ip_a), Identity::new(id_a, 1), []);
//! let mut b = RingAgent::<&str>::new(config(ip_b), Identity::new(id_b, 1), []);
//! let (mut store_a, mut store_b) = (Memory::default(), Memory::default());
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! a.peer_up(Duration::ZERO, id_b, 1, Some(ip_b));
//! b.peer_up(Duration::ZERO, id_a, 1, Some(ip_a));
//!
//! // b knows the genesis peer at once; a founds the ring after its wait.
//! b.handle_timeout(Duration::ZERO, &mut rng, &mut store_b).unwrap();
//! a.handle_timeout(Duration::ZERO, &mut rng, &mut store_a).unwrap();
//! assert!(b.is_ready() && !a.is_ready());
//! a.handle_timeout(Duration::from_secs(2), &mut rng, &mut store_a).unwrap();
//! assert!(a.is_ready());
//! assert_eq!(store_a.0, Some(a.node().unwrap().ring().encode()));
//!
//! // b owns nothing: it asked a for space. Deliver, and a's donation back.
//! for _ in 0..2 {
//!     while let Some(t) = b.poll_transmit() {
//!         assert_eq!(t.to, Destination::Peer(id_a));
//!         a.handle_bytes(Duration::ZERO, id_b, &t.bytes).unwrap();
//!     }
//!     a.flush(&mut store_a).unwrap();
//!     while let Some(t) = a.poll_transmit() {
//!         b.handle_bytes(Duration::ZERO, id_a, &t.bytes).unwrap();
//!     }
//!     b.flush(&mut store_b).unwrap();
//! }
//! let owned = b.node().unwrap().owned_blocks();
//! assert!(!owned.is_empty());
//! assert_eq!(a.node().unwrap().ring(), b.node().unwrap().ring());
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use overlay_core::PeerId;
use rand::{Rng, RngExt};

use super::codec::DecodeError;
use super::state::{Anomaly, GenesisError, GenesisId, ReclaimError, Ring, Tombstone};
use super::{Identity, Message, Node, NodeConfig, Output};

/// The gossip channel name the ring's messages travel on.
pub const CHANNEL: &str = "ipam-ring";

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// One peer.
    Peer(PeerId),
    /// Every peer (a gossip broadcast).
    All,
}

/// Bytes to send on the ring's channel ([`CHANNEL`]): one encoded
/// [`Message`], at most [`RingAgentConfig::records_per_message`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit {
    /// Where.
    pub to: Destination,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// What the agent reports for logs, status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingEvent {
    /// The ring is known: founded, built from the genesis peer, or
    /// restored; the node allocates from now on.
    Ready {
        /// The ring's genesis (the same on every node of the cluster).
        genesis: GenesisId,
        /// Allocations restored into it.
        restored: usize,
    },
    /// A ring conflict (also kept in [`RingAgent::anomalies`]).
    Anomaly(Anomaly),
    /// This node was tombstoned and took a new identity (already
    /// committed through [`RingStore::save_identity`]).
    Reidentified {
        /// The retired identity.
        old: Identity,
        /// The new one.
        new: Identity,
    },
}

/// Where the agent makes the ring durable. Both methods must return only
/// once the value is on stable storage (an fsynced transaction): the agent
/// sends nothing that depends on it before.
pub trait RingStore {
    /// Why a commit failed.
    type Error;
    /// Commit the ring's [`Ring::encode`] form.
    fn save_ring(&mut self, ring: &[u8]) -> Result<(), Self::Error>;
    /// Commit a new identity (after a step-down).
    fn save_identity(&mut self, identity: Identity) -> Result<(), Self::Error>;
}

/// A failure of [`RingAgent::handle_timeout`] or [`RingAgent::start`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingAgentError<E> {
    /// The ring could not be founded from the configuration.
    #[error("ring genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The store refused a commit; nothing that depends on it was sent.
    #[error("store: {0}")]
    Store(E),
}

/// Why [`RingAgent::reclaim_peer`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReclaimRefused {
    /// The ring is not known yet.
    #[error("this node has not joined the address ring yet")]
    NotJoined,
    /// The peer named is this node.
    #[error("a node cannot reclaim itself")]
    Itself,
    /// The membership layer shows the peer alive.
    #[error("{0} is alive; stop it before declaring it dead")]
    Alive(PeerId),
    /// The ring refused the tombstone.
    #[error(transparent)]
    Ring(#[from] ReclaimError),
}

/// How a [`RingAgent`] runs. [`RingAgentConfig::new`] gives the defaults
/// `overlayd` uses; the fields are public for tests and simulations.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingAgentConfig {
    /// The cluster's address range.
    pub universe: IpNet,
    /// The prefix length of the smallest block (`/26` for 64 addresses).
    pub block_prefix: u8,
    /// This node's address in the membership layer.
    pub own_addr: IpAddr,
    /// The genesis peer's address: the same on every node.
    pub genesis_addr: IpAddr,
    /// How long the genesis node listens for an existing ring before it
    /// founds one (2 s).
    pub genesis_wait: Duration,
    /// How often the digest goes to a random alive peer (3 s).
    pub anti_entropy: Duration,
    /// Digest bucket bits (6: 64 buckets, 512 bytes).
    pub digest_bits: u8,
    /// Ring records per message (16: well under a gossip frame).
    pub records_per_message: usize,
    /// Anomalies kept for [`RingAgent::anomalies`] (100).
    pub max_anomalies: usize,
    /// The node allocator's configuration.
    pub node: NodeConfig,
}

impl RingAgentConfig {
    /// The defaults, for a universe cut into blocks of at least
    /// `block_prefix`, on the node at `own_addr` of a cluster whose ring
    /// the node at `genesis_addr` founds.
    pub fn new(universe: IpNet, block_prefix: u8, own_addr: IpAddr, genesis_addr: IpAddr) -> Self {
        RingAgentConfig {
            universe,
            block_prefix,
            own_addr,
            genesis_addr,
            genesis_wait: Duration::from_secs(2),
            anti_entropy: Duration::from_secs(3),
            digest_bits: 6,
            records_per_message: 16,
            max_anomalies: 100,
            node: NodeConfig::default(),
        }
    }

    /// The same configuration with another genesis wait.
    pub fn genesis_wait(mut self, wait: Duration) -> Self {
        self.genesis_wait = wait;
        self
    }

    /// The same configuration with another anti-entropy interval.
    pub fn anti_entropy(mut self, every: Duration) -> Self {
        self.anti_entropy = every;
        self
    }
}

/// The genesis address by the usual rule: the lowest of the seed addresses
/// and this node's own (every node of the cluster, given the same seeds,
/// finds the same one).
///
/// ```
/// use overlay_ipam::ring::agent::lowest_address;
/// use std::net::IpAddr;
///
/// let own: IpAddr = "192.0.2.7".parse().unwrap();
/// let seeds: Vec<IpAddr> = vec!["192.0.2.9".parse().unwrap(), "192.0.2.3".parse().unwrap()];
/// assert_eq!(lowest_address(seeds, own).to_string(), "192.0.2.3");
/// assert_eq!(lowest_address([], own), own);
/// ```
pub fn lowest_address(seeds: impl IntoIterator<Item = IpAddr>, own: IpAddr) -> IpAddr {
    seeds
        .into_iter()
        .chain(std::iter::once(own))
        .min()
        .unwrap_or(own)
}

/// A [`Node`] carried over a gossip layer (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct RingAgent<K> {
    config: RingAgentConfig,
    identity: Identity,
    /// `None` until the ring is known.
    node: Option<Node<K>>,
    /// Allocations to restore into the node once the ring is known.
    restored: Vec<(IpAddr, K)>,
    /// The ring as last committed.
    saved_ring: Vec<u8>,
    /// Every peer seen, with its address.
    peers: BTreeMap<PeerId, Option<IpAddr>>,
    down: BTreeSet<PeerId>,
    genesis_deadline: Option<Duration>,
    last_anti_entropy: Duration,
    published: Vec<IpNet>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RingEvent>,
    anomalies: VecDeque<Anomaly>,
}

impl<K: Clone + Eq + Hash + Ord> RingAgent<K> {
    /// An agent that does not know the ring yet, holding `restored`
    /// (allocations from the store) until it does.
    pub fn new(
        config: RingAgentConfig,
        identity: Identity,
        restored: impl IntoIterator<Item = (IpAddr, K)>,
    ) -> Self {
        RingAgent {
            config,
            identity,
            node: None,
            restored: restored.into_iter().collect(),
            saved_ring: Vec::new(),
            peers: BTreeMap::new(),
            down: BTreeSet::new(),
            genesis_deadline: None,
            last_anti_entropy: Duration::ZERO,
            published: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            anomalies: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RingAgentConfig {
        &self.config
    }

    /// This node's identity (a new one after a step-down).
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Whether the ring is known (allocation can start).
    pub fn is_ready(&self) -> bool {
        self.node.is_some()
    }

    /// The node allocator, once the ring is known.
    pub fn node(&self) -> Option<&Node<K>> {
        self.node.as_ref()
    }

    /// The node allocator, once the ring is known. Changes made through it
    /// (an allocation, a reclaim) are committed and sent by the next
    /// [`flush`](Self::flush), or with [`commit_with`](Self::commit_with).
    pub fn node_mut(&mut self) -> Option<&mut Node<K>> {
        self.node.as_mut()
    }

    /// Start from a known ring (the stored one after a restart), restoring
    /// the held allocations into it, and commit it.
    pub fn start<S: RingStore>(
        &mut self,
        now: Duration,
        ring: Ring,
        store: &mut S,
    ) -> Result<(), RingAgentError<S::Error>> {
        let restored = std::mem::take(&mut self.restored);
        self.events.push_back(RingEvent::Ready {
            genesis: ring.genesis().id(),
            restored: restored.len(),
        });
        self.node = Some(Node::restore(
            self.identity,
            ring,
            restored,
            self.config.node.clone(),
            now,
        ));
        self.save_ring(store).map_err(RingAgentError::Store)
    }

    /// Found or join the ring once the genesis peer is known.
    fn ensure_node<S: RingStore>(
        &mut self,
        now: Duration,
        store: &mut S,
    ) -> Result<(), RingAgentError<S::Error>> {
        if self.node.is_some() {
            return Ok(());
        }
        let genesis_peer = if self.config.genesis_addr == self.config.own_addr {
            match self.genesis_deadline {
                Some(deadline) if now >= deadline => Some(self.identity.peer),
                Some(_) => None,
                None => {
                    self.genesis_deadline = Some(now + self.config.genesis_wait);
                    None
                }
            }
        } else {
            self.peers
                .iter()
                .find(|(_, addr)| **addr == Some(self.config.genesis_addr))
                .map(|(id, _)| *id)
        };
        let Some(genesis_peer) = genesis_peer else {
            return Ok(());
        };
        let ring = Ring::from_seeds(
            self.config.universe,
            self.config.block_prefix,
            &[genesis_peer],
        )?;
        self.start(now, ring, store)
    }

    /// The membership layer saw `peer` alive (or its record changed), at
    /// `addr` (its first underlay address).
    pub fn peer_up(&mut self, now: Duration, peer: PeerId, incarnation: u64, addr: Option<IpAddr>) {
        if let Some(node) = &mut self.node {
            node.observe_peer(now, Identity::new(peer, incarnation));
        }
        self.down.remove(&peer);
        self.peers.insert(peer, addr);
    }

    /// The membership layer declared `peer` down: no more anti-entropy to
    /// it (its blocks stay its own until a reclaim).
    pub fn peer_down(&mut self, peer: PeerId) {
        self.down.insert(peer);
    }

    /// The peers anti-entropy picks from: seen, not down, not this node.
    pub fn alive_peers(&self) -> Vec<PeerId> {
        self.peers
            .keys()
            .filter(|id| **id != self.identity.peer && !self.down.contains(id))
            .copied()
            .collect()
    }

    /// A message that arrived on the ring's channel. `Ok(true)` when it was
    /// applied (the ring's owners may have changed), `Ok(false)` before the
    /// ring is known (anti-entropy repairs what was missed once it is).
    pub fn handle_bytes(
        &mut self,
        now: Duration,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<bool, DecodeError> {
        let message = Message::decode(bytes)?;
        Ok(self.handle_message(now, from, message))
    }

    /// A decoded message from `from` (see [`handle_bytes`](Self::handle_bytes)).
    pub fn handle_message(&mut self, now: Duration, from: PeerId, message: Message) -> bool {
        let Some(node) = &mut self.node else {
            return false;
        };
        match message {
            Message::Delta(delta) => {
                node.handle_delta(now, &delta);
            }
            other => node.handle_message(now, from, other),
        }
        true
    }

    /// Run the timers: found or join the ring when the genesis peer is
    /// known, the node's own timers, a digest to a random alive peer every
    /// [`RingAgentConfig::anti_entropy`], then [`flush`](Self::flush). Call
    /// it a few times a second.
    pub fn handle_timeout<S: RingStore>(
        &mut self,
        now: Duration,
        rng: &mut impl Rng,
        store: &mut S,
    ) -> Result<(), RingAgentError<S::Error>> {
        let anti_entropy = now.saturating_sub(self.last_anti_entropy) >= self.config.anti_entropy;
        if anti_entropy {
            self.last_anti_entropy = now;
        }
        self.ensure_node(now, store)?;
        let alive = match anti_entropy {
            true => self.alive_peers(),
            false => Vec::new(),
        };
        if let Some(node) = &mut self.node {
            node.handle_timeout(now, rng);
            if !alive.is_empty() {
                let to = alive[rng.random_range(0..alive.len())];
                let digest = node.digest_message(self.config.digest_bits);
                self.queue(Destination::Peer(to), digest);
            }
        }
        self.flush(store).map_err(RingAgentError::Store)
    }

    /// Commit the ring if it changed, then move the node's outputs to the
    /// transmit and event queues (a new identity is committed first). On a
    /// store failure nothing that depends on the commit is queued; the
    /// outputs wait for the next flush.
    pub fn flush<S: RingStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        self.save_ring(store)?;
        loop {
            let Some(out) = self.node.as_mut().and_then(Node::poll_output) else {
                return Ok(());
            };
            match out {
                Output::Broadcast(delta) => self.queue(Destination::All, Message::Delta(delta)),
                Output::Send { to, message } => self.queue(Destination::Peer(to), message),
                Output::Anomaly(a) => {
                    if self.anomalies.len() >= self.config.max_anomalies {
                        self.anomalies.pop_front();
                    }
                    if self.config.max_anomalies > 0 {
                        self.anomalies.push_back(a.clone());
                    }
                    self.events.push_back(RingEvent::Anomaly(a));
                }
                Output::Reidentified { old, new } => {
                    store.save_identity(new)?;
                    self.identity = new;
                    self.events.push_back(RingEvent::Reidentified { old, new });
                }
            }
        }
    }

    /// Commit a change that includes the ring: `commit` gets the ring's
    /// encoded form (`None` before the ring is known) to write in the same
    /// transaction as the caller's own data. On success the ring counts as
    /// saved, so the next [`flush`](Self::flush) does not write it again.
    pub fn commit_with<E>(
        &mut self,
        commit: impl FnOnce(Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let ring = self.node.as_ref().map(|n| n.ring().encode());
        commit(ring.as_deref())?;
        if let Some(ring) = ring {
            self.saved_ring = ring;
        }
        Ok(())
    }

    fn save_ring<S: RingStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        let bytes = node.ring().encode();
        if bytes != self.saved_ring {
            store.save_ring(&bytes)?;
            self.saved_ring = bytes;
        }
        Ok(())
    }

    /// Queue a message, deltas cut into parts.
    fn queue(&mut self, to: Destination, message: Message) {
        match message {
            Message::Delta(delta) => {
                for part in delta.split(self.config.records_per_message) {
                    self.transmits.push_back(Transmit {
                        to,
                        bytes: Message::Delta(part).encode(),
                    });
                }
            }
            other => self.transmits.push_back(Transmit {
                to,
                bytes: other.encode(),
            }),
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<RingEvent> {
        self.events.pop_front()
    }

    /// The most recent anomalies, oldest first.
    pub fn anomalies(&self) -> impl ExactSizeIterator<Item = &Anomaly> {
        self.anomalies.iter()
    }

    /// Declare `peer` dead (an operator's `rmpeer`): a tombstone for its
    /// incarnations up to `up_to_incarnation` naming this node as heir, so
    /// its blocks become this node's (quarantined, see
    /// [`NodeConfig::quarantine`]). Refused for this node itself and for a
    /// peer the membership layer shows alive. Returns the blocks the peer
    /// owned; the tombstone goes out with the next [`flush`](Self::flush).
    ///
    /// ```
    /// use overlay_core::PeerId;
    /// use overlay_ipam::ring::agent::{ReclaimRefused, RingAgent, RingAgentConfig, RingStore};
    /// use overlay_ipam::ring::{Identity, Ring};
    /// use std::time::Duration;
    ///
    /// # struct Nowhere;
    /// # impl RingStore for Nowhere {
    /// #     type Error = std::convert::Infallible;
    /// #     fn save_ring(&mut self, _: &[u8]) -> Result<(), Self::Error> { Ok(()) }
    /// #     fn save_identity(&mut self, _: Identity) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// let (me, gone) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let (universe, ip) = ("10.32.0.0/16".parse().unwrap(), "192.0.2.1".parse().unwrap());
    /// let mut agent = RingAgent::<u32>::new(RingAgentConfig::new(universe, 24, ip, ip), Identity::new(me, 1), []);
    /// let t = Duration::ZERO;
    /// agent.start(t, Ring::from_seeds(universe, 24, &[me, gone]).unwrap(), &mut Nowhere).unwrap();
    /// agent.peer_up(t, gone, 1, None);
    /// assert_eq!(agent.reclaim_peer(t, gone, 1), Err(ReclaimRefused::Alive(gone)));
    /// agent.peer_down(gone);
    /// assert_eq!(agent.reclaim_peer(t, gone, 1).unwrap(), ["10.32.128.0/17".parse().unwrap()]);
    /// assert_eq!(agent.reclaim_peer(t, me, 1), Err(ReclaimRefused::Itself));
    /// ```
    pub fn reclaim_peer(
        &mut self,
        now: Duration,
        peer: PeerId,
        up_to_incarnation: u64,
    ) -> Result<Vec<IpNet>, ReclaimRefused> {
        let me = self.identity.peer;
        let alive = self.peers.contains_key(&peer) && !self.down.contains(&peer);
        let Some(node) = &mut self.node else {
            return Err(ReclaimRefused::NotJoined);
        };
        if peer == me {
            return Err(ReclaimRefused::Itself);
        }
        if alive {
            return Err(ReclaimRefused::Alive(peer));
        }
        let blocks = node
            .ring()
            .entries_of(peer)
            .iter()
            .map(|e| e.block)
            .collect();
        let tombstone = Tombstone {
            peer,
            up_to_incarnation,
            heir: me,
        };
        node.reclaim(now, tombstone)?;
        Ok(blocks)
    }

    /// The blocks this node owns (at most `max`), when they differ from
    /// what was last [`published`](Self::blocks_published) in the node's
    /// membership record (routes to pods follow that record).
    pub fn blocks_to_publish(&self, max: usize) -> Option<Vec<IpNet>> {
        let mut blocks = self.node.as_ref()?.owned_blocks();
        blocks.truncate(max);
        (blocks != self.published).then_some(blocks)
    }

    /// The membership record now carries `blocks`.
    pub fn blocks_published(&mut self, blocks: Vec<IpNet>) {
        self.published = blocks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// A store in memory that can be made to fail.
    #[derive(Default)]
    struct Memory {
        ring: Option<Vec<u8>>,
        rings_saved: usize,
        identity: Option<Identity>,
        fail: bool,
    }

    impl RingStore for Memory {
        type Error = &'static str;
        fn save_ring(&mut self, ring: &[u8]) -> Result<(), Self::Error> {
            if self.fail {
                return Err("disk full");
            }
            self.ring = Some(ring.to_vec());
            self.rings_saved += 1;
            Ok(())
        }
        fn save_identity(&mut self, identity: Identity) -> Result<(), Self::Error> {
            if self.fail {
                return Err("disk full");
            }
            self.identity = Some(identity);
            Ok(())
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn config(own: u8) -> RingAgentConfig {
        RingAgentConfig::new("10.32.0.0/16".parse().expect("net"), 24, ip(own), ip(1))
    }

    struct Cluster {
        agents: Vec<RingAgent<u32>>,
        stores: Vec<Memory>,
        rng: StdRng,
        now: Duration,
        sent: usize,
    }

    impl Cluster {
        /// `n` nodes at 192.0.2.1.. that all see each other.
        fn new(n: u8) -> Self {
            let mut agents: Vec<RingAgent<u32>> = (1..=n)
                .map(|i| {
                    RingAgent::new(
                        config(i),
                        Identity::new(PeerId::from_u128(u128::from(i)), 1),
                        [],
                    )
                })
                .collect();
            for (i, a) in agents.iter_mut().enumerate() {
                for j in 1..=n {
                    if usize::from(j) != i + 1 {
                        a.peer_up(
                            Duration::ZERO,
                            PeerId::from_u128(u128::from(j)),
                            1,
                            Some(ip(j)),
                        );
                    }
                }
            }
            Cluster {
                stores: (0..n).map(|_| Memory::default()).collect(),
                agents,
                rng: StdRng::seed_from_u64(7),
                now: Duration::ZERO,
                sent: 0,
            }
        }

        /// Advance by `step`: timers, then deliver every transmit until
        /// quiet.
        fn step(&mut self, step: Duration) {
            self.now += step;
            for (a, s) in self.agents.iter_mut().zip(&mut self.stores) {
                if let Err(e) = a.handle_timeout(self.now, &mut self.rng, s) {
                    assert!(s.fail, "only a failing store fails: {e}");
                }
            }
            loop {
                let mut mail = Vec::new();
                for a in &mut self.agents {
                    let from = a.identity().peer;
                    while let Some(t) = a.poll_transmit() {
                        mail.push((from, t));
                    }
                }
                if mail.is_empty() {
                    return;
                }
                for (from, t) in mail {
                    for (a, s) in self.agents.iter_mut().zip(&mut self.stores) {
                        let me = a.identity().peer;
                        let to_me = match t.to {
                            Destination::All => me != from,
                            Destination::Peer(p) => p == me,
                        };
                        if to_me {
                            self.sent += 1;
                            a.handle_bytes(self.now, from, &t.bytes).expect("decodes");
                            if let Err(e) = a.flush(s) {
                                assert!(s.fail, "only a failing store fails: {e}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_lowest_address_founds_the_ring_after_the_wait_and_joiners_follow() {
        let mut c = Cluster::new(3);
        c.step(Duration::ZERO);
        // The joiners know the genesis peer from its address; the genesis
        // node waits for an existing ring first.
        assert!(!c.agents[0].is_ready());
        assert!(c.agents[1].is_ready() && c.agents[2].is_ready());
        let genesis = c.agents[1].node().expect("ready").ring().genesis().id();
        let founded = Ring::from_seeds(config(1).universe, 24, &[PeerId::from_u128(1)])
            .expect("ring")
            .genesis()
            .id();
        assert_eq!(genesis, founded);
        c.step(Duration::from_secs(1));
        assert!(!c.agents[0].is_ready());
        c.step(Duration::from_secs(1));
        assert!(c.agents[0].is_ready());
        assert_eq!(
            c.agents[0].poll_event(),
            Some(RingEvent::Ready {
                genesis,
                restored: 0
            })
        );
        // Within a few anti-entropy rounds every node owns space and the
        // replicas agree.
        for _ in 0..40 {
            c.step(Duration::from_millis(250));
        }
        for a in &c.agents {
            assert!(!a.node().expect("ready").owned_blocks().is_empty());
            assert_eq!(
                a.node().expect("ready").ring(),
                c.agents[0].node().expect("ready").ring()
            );
        }
        // Every store holds its node's ring.
        for (a, s) in c.agents.iter().zip(&c.stores) {
            assert_eq!(s.ring, Some(a.node().expect("ready").ring().encode()));
        }
    }

    #[test]
    fn nothing_is_sent_before_the_ring_is_durable() {
        let mut c = Cluster::new(2);
        c.stores[1].fail = true;
        c.step(Duration::from_secs(2));
        // b knows the ring but cannot commit it: no space request leaves.
        assert!(c.agents[1].is_ready());
        assert!(c.agents[1].poll_transmit().is_none());
        assert!(c.agents[1].node().expect("ready").owned_blocks().is_empty());
        let err = c.agents[1]
            .handle_timeout(c.now, &mut c.rng, &mut c.stores[1])
            .expect_err("store fails");
        assert!(matches!(err, RingAgentError::Store("disk full")));
        c.stores[1].fail = false;
        for _ in 0..8 {
            c.step(Duration::from_millis(250));
        }
        assert!(!c.agents[1].node().expect("ready").owned_blocks().is_empty());
        // The donor committed the donation before sending it.
        assert_eq!(
            c.stores[0].ring,
            Some(c.agents[0].node().expect("ready").ring().encode())
        );
    }

    #[test]
    fn deltas_are_cut_into_frame_sized_messages() {
        let mut a: RingAgent<u32> =
            RingAgent::new(config(1), Identity::new(PeerId::from_u128(1), 1), []);
        let mut store = Memory::default();
        let ring = Ring::from_seeds(a.config.universe, 28, &[PeerId::from_u128(1)]).expect("ring");
        a.start(Duration::ZERO, ring.clone(), &mut store)
            .expect("start");
        // A delta of 40 records: three messages of at most 16.
        let mut writer = ring;
        let mut delta = super::super::Delta::new(writer.genesis().id());
        let base = u32::from(std::net::Ipv4Addr::new(10, 32, 0, 0));
        for i in 0..40u32 {
            let block = IpNet::new(IpAddr::from(std::net::Ipv4Addr::from(base + i * 16)), 28)
                .expect("block");
            delta.records.push(
                writer
                    .write(PeerId::from_u128(1), block, PeerId::from_u128(2), 16)
                    .expect("write"),
            );
        }
        a.queue(Destination::All, Message::Delta(delta.clone()));
        let mut parts = Vec::new();
        while let Some(t) = a.poll_transmit() {
            assert_eq!(t.to, Destination::All);
            let Message::Delta(part) = Message::decode(&t.bytes).expect("decodes") else {
                panic!("a delta")
            };
            assert!(part.records.len() <= 16);
            parts.push(part);
        }
        assert_eq!(parts.len(), 3);
        let records: Vec<_> = parts.into_iter().flat_map(|p| p.records).collect();
        assert_eq!(records, delta.records);
    }

    #[test]
    fn anti_entropy_goes_to_alive_peers_only_every_interval() {
        let mut a: RingAgent<u32> =
            RingAgent::new(config(2), Identity::new(PeerId::from_u128(2), 1), []);
        let mut store = Memory::default();
        let mut rng = StdRng::seed_from_u64(3);
        let (p1, p3) = (PeerId::from_u128(1), PeerId::from_u128(3));
        a.peer_up(Duration::ZERO, p1, 1, Some(ip(1)));
        a.peer_up(Duration::ZERO, p3, 1, Some(ip(3)));
        a.peer_down(p3);
        assert_eq!(a.alive_peers(), [p1]);
        let digests = |a: &mut RingAgent<u32>| {
            let mut to = Vec::new();
            while let Some(t) = a.poll_transmit() {
                if matches!(Message::decode(&t.bytes), Ok(Message::Digest { .. })) {
                    to.push(t.to);
                }
            }
            to
        };
        let mut seen = Vec::new();
        for tick in 1..=24u32 {
            a.handle_timeout(Duration::from_millis(250) * tick, &mut rng, &mut store)
                .expect("store");
            seen.extend(digests(&mut a));
        }
        // Six seconds: two rounds, both to the one alive peer.
        assert_eq!(seen, [Destination::Peer(p1), Destination::Peer(p1)]);
        // Nothing queued before the ring is known, and then anti-entropy
        // waits for its interval again.
        assert!(a.is_ready());
    }

    #[test]
    fn a_joiner_waits_for_the_genesis_record_and_ignores_ring_traffic_until_then() {
        let mut b: RingAgent<u32> = RingAgent::new(
            config(2),
            Identity::new(PeerId::from_u128(2), 1),
            [(IpAddr::from([10, 32, 0, 9]), 5)],
        );
        let mut store = Memory::default();
        let mut rng = StdRng::seed_from_u64(3);
        b.handle_timeout(Duration::from_secs(60), &mut rng, &mut store)
            .expect("store");
        assert!(!b.is_ready());
        let digest = Message::SpaceRequest.encode();
        assert_eq!(
            b.handle_bytes(Duration::ZERO, PeerId::from_u128(1), &digest),
            Ok(false)
        );
        assert!(
            b.handle_bytes(Duration::ZERO, PeerId::from_u128(1), b"\xff")
                .is_err()
        );
        // A peer at another address is not the genesis peer.
        b.peer_up(Duration::ZERO, PeerId::from_u128(3), 1, Some(ip(3)));
        b.handle_timeout(Duration::from_secs(61), &mut rng, &mut store)
            .expect("store");
        assert!(!b.is_ready());
        b.peer_up(Duration::ZERO, PeerId::from_u128(1), 1, Some(ip(1)));
        b.handle_timeout(Duration::from_secs(62), &mut rng, &mut store)
            .expect("store");
        assert!(b.is_ready());
        assert!(matches!(
            b.poll_event(),
            Some(RingEvent::Ready { restored: 1, .. })
        ));
        // The restored pod's address is held (a claim goes to its owner).
        assert_eq!(
            b.node().expect("ready").allocations(),
            [(IpAddr::from([10, 32, 0, 9]), 5)]
        );
    }

    #[test]
    fn commit_with_counts_the_ring_as_saved_and_blocks_publish_on_change() {
        let mut a: RingAgent<u32> =
            RingAgent::new(config(1), Identity::new(PeerId::from_u128(1), 1), []);
        let mut store = Memory::default();
        assert_eq!(a.blocks_to_publish(4), None);
        let ring = Ring::from_seeds(a.config.universe, 24, &[PeerId::from_u128(1)]).expect("ring");
        a.start(Duration::ZERO, ring, &mut store).expect("start");
        assert_eq!(store.rings_saved, 1);
        a.node_mut()
            .expect("ready")
            .allocate(Duration::ZERO, 1)
            .expect("space");
        let mut written = None;
        a.commit_with(|ring| -> Result<(), ()> {
            written = ring.map(<[u8]>::to_vec);
            Ok(())
        })
        .expect("committed");
        assert!(written.is_some());
        a.flush(&mut store).expect("store");
        assert_eq!(
            store.rings_saved, 1,
            "the ring was committed with the allocation"
        );
        let blocks = a.blocks_to_publish(4).expect("changed");
        assert_eq!(blocks, ["10.32.0.0/16".parse::<IpNet>().expect("net")]);
        a.blocks_published(blocks);
        assert_eq!(a.blocks_to_publish(4), None);
    }

    #[test]
    fn a_tombstoned_node_commits_its_new_identity_before_using_it() {
        let (pa, pb) = (PeerId::from_u128(1), PeerId::from_u128(2));
        let mut a: RingAgent<u32> = RingAgent::new(config(1), Identity::new(pa, 1), []);
        let mut b: RingAgent<u32> = RingAgent::new(config(2), Identity::new(pb, 1), []);
        let (mut sa, mut sb) = (Memory::default(), Memory::default());
        let ring = Ring::from_seeds(a.config.universe, 24, &[pa, pb]).expect("ring");
        a.start(Duration::ZERO, ring.clone(), &mut sa)
            .expect("start");
        b.start(Duration::ZERO, ring, &mut sb).expect("start");
        b.peer_up(Duration::ZERO, pa, 1, Some(ip(1)));
        assert_eq!(
            b.reclaim_peer(Duration::ZERO, pa, 1),
            Err(ReclaimRefused::Alive(pa))
        );
        b.peer_down(pa);
        let blocks = b.reclaim_peer(Duration::ZERO, pa, 1).expect("reclaimed");
        assert_eq!(blocks, ["10.32.0.0/17".parse::<IpNet>().expect("net")]);
        b.flush(&mut sb).expect("store");
        assert_eq!(sb.ring, Some(b.node().expect("ready").ring().encode()));
        // a hears of its own tombstone, steps down, and re-identifies.
        while let Some(t) = b.poll_transmit() {
            a.handle_bytes(Duration::ZERO, pb, &t.bytes)
                .expect("decodes");
        }
        let mut rng = StdRng::seed_from_u64(9);
        a.handle_timeout(Duration::from_secs(1), &mut rng, &mut sa)
            .expect("store");
        let new = a.identity();
        assert_ne!(new, Identity::new(pa, 1));
        assert_eq!(sa.identity, Some(new));
        let mut events = std::iter::from_fn(|| a.poll_event());
        assert!(events.any(|e| matches!(e, RingEvent::Reidentified { new: n, .. } if n == new)));
    }
}
