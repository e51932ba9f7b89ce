//! The node-level allocator: one agent's view of the ring, its owned blocks
//! and the pods it allocated, as a sans-IO state machine.

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use overlay_core::PeerId;
use rand::{Rng, RngExt};

use super::codec::Digest;
use super::state::{Anomaly, Delta, Entry, MergeReport, Record, Ring, cidr_cover, net_of};
use crate::alloc::IpAllocator;
use crate::range::to_bits;

/// Who a node is: a 128-bit [`PeerId`], created once and stored, plus an
/// incarnation the agent bumps and makes durable before anything else at
/// every start.
///
/// ```
/// use overlay_ipam::ring::Identity;
/// use rand::SeedableRng;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let a = Identity::random(&mut rng);
/// let b = Identity::random(&mut rng);
/// assert_ne!(a.peer, b.peer);
/// assert_eq!(a.incarnation, 0);
/// assert_eq!(a.restarted().incarnation, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The peer id.
    pub peer: PeerId,
    /// The incarnation: bumped at every start.
    pub incarnation: u64,
}

impl Identity {
    /// An identity.
    pub const fn new(peer: PeerId, incarnation: u64) -> Self {
        Identity { peer, incarnation }
    }

    /// A fresh identity: 128 random bits, incarnation 0.
    pub fn random(rng: &mut impl Rng) -> Self {
        Identity {
            peer: PeerId::from_u128(rng.random()),
            incarnation: 0,
        }
    }

    /// The same peer, one incarnation later (what a restart uses).
    pub const fn restarted(self) -> Self {
        Identity {
            peer: self.peer,
            incarnation: self.incarnation.saturating_add(1),
        }
    }
}

/// The node allocator's tuning. `Default` gives the design note's values.
///
/// ```
/// use overlay_ipam::ring::NodeConfig;
/// use std::time::Duration;
///
/// let c = NodeConfig::default().quarantine(Duration::from_secs(60)).low_water(32);
/// assert_eq!((c.quarantine, c.low_water), (Duration::from_secs(60), 32));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeConfig {
    /// How long an heir keeps adopted blocks before allocating from them
    /// (at least twice the measured p99 gossip convergence), so a returning
    /// owner can claim back its live addresses. Default 30 s.
    pub quarantine: Duration,
    /// Ask for space when usable free addresses drop below this. Default 16.
    pub low_water: u64,
    /// Wait this long for a donor (or a claim's owner) before asking again.
    /// Default 2 s.
    pub retry: Duration,
    /// Publish a block's free count at most this often. Default 5 s.
    pub free_report_interval: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            quarantine: Duration::from_secs(30),
            low_water: 16,
            retry: Duration::from_secs(2),
            free_report_interval: Duration::from_secs(5),
        }
    }
}

impl NodeConfig {
    /// Set [`quarantine`](Self::quarantine).
    pub fn quarantine(mut self, d: Duration) -> Self {
        self.quarantine = d;
        self
    }

    /// Set [`low_water`](Self::low_water).
    pub fn low_water(mut self, n: u64) -> Self {
        self.low_water = n;
        self
    }

    /// Set [`retry`](Self::retry).
    pub fn retry(mut self, d: Duration) -> Self {
        self.retry = d;
        self
    }

    /// Set [`free_report_interval`](Self::free_report_interval).
    pub fn free_report_interval(mut self, d: Duration) -> Self {
        self.free_report_interval = d;
        self
    }
}

/// Who holds an address in a block a node owns: one of its pods, or
/// another peer whose claim it granted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder<K> {
    /// A local pod.
    Pod(K),
    /// Another peer's pod, by a granted claim.
    Peer(PeerId),
}

/// Why an allocation failed, at once (it never waits on the network).
///
/// CNI mapping ([`cni_code`](Self::cni_code)): `NoSpaceYet` and `Conflict`
/// are transient, **11** ("try again later"; kubelet retries the ADD, by
/// when space has arrived or the holder has released); `Exhausted` means no
/// peer advertises any free space, **50** ("plugin not available", the code
/// `STATUS` also reports) until addresses are released or the universe
/// grows.
///
/// ```
/// use overlay_ipam::ring::AllocFailure;
///
/// assert_eq!(AllocFailure::NoSpaceYet.cni_code(), 11);
/// assert_eq!(AllocFailure::Exhausted.cni_code(), 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocFailure {
    /// This node owns no usable free address now, but space exists in the
    /// ring (owned by peers, or in quarantine here): a request is under way.
    #[error("no address space yet; space has been requested")]
    NoSpaceYet,
    /// No peer advertises free space.
    #[error("the address ring is exhausted")]
    Exhausted,
    /// The address asked for is held, or owned by another peer, or
    /// outside the ring (`owner` is `None`).
    #[error("{address} is not available here")]
    Conflict {
        /// The address.
        address: IpAddr,
        /// Its owner in the ring, if it is in the ring.
        owner: Option<PeerId>,
    },
}

impl AllocFailure {
    /// The CNI error code: 11 for transient failures, 50 for exhaustion.
    pub fn cni_code(&self) -> u32 {
        match self {
            AllocFailure::NoSpaceYet | AllocFailure::Conflict { .. } => 11,
            AllocFailure::Exhausted => 50,
        }
    }
}

/// A message between node allocators (the agent carries it; the ring
/// parts use [`codec`](super::codec)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Please donate a block.
    SpaceRequest,
    /// No block to donate.
    SpaceDenied,
    /// Grant these addresses (in your blocks) to my live pods.
    Claim {
        /// The addresses.
        addresses: Vec<IpAddr>,
    },
    /// The answer to a claim.
    ClaimReply {
        /// Now held for the claimant.
        granted: Vec<IpAddr>,
        /// Held by someone else: a conflict.
        refused: Vec<IpAddr>,
    },
    /// My pods no longer use these granted addresses.
    ReleaseClaim {
        /// The addresses.
        addresses: Vec<IpAddr>,
    },
    /// Ring writes (a donation, or an anti-entropy repair).
    Delta(Delta),
    /// Anti-entropy: my digest; answer with the buckets that differ (and,
    /// if `reply`, your digest so I can send you mine).
    Digest {
        /// The sender's digest.
        digest: Digest,
        /// Whether the receiver should answer with its own digest.
        reply: bool,
    },
}

/// What a [`Node`] asks its agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Gossip these ring writes to everyone.
    Broadcast(Delta),
    /// Send a message to one peer.
    Send {
        /// The peer.
        to: PeerId,
        /// The message.
        message: Message,
    },
    /// Something for status, metrics and events.
    Anomaly(Anomaly),
    /// The node took a new identity (after stepping down); persist it.
    Reidentified {
        /// The retired identity.
        old: Identity,
        /// The new one.
        new: Identity,
    },
}

#[derive(Debug, Clone)]
struct Block<K> {
    net: IpNet,
    alloc: IpAllocator<Holder<K>>,
    /// Quarantine end: allocation from this block starts then.
    usable_at: Duration,
    /// Whether the block was adopted by a reclaim (never donated).
    adopted: bool,
    reported_free: u32,
}

#[derive(Debug, Clone)]
struct Foreign<K> {
    key: K,
    owner: PeerId,
    state: ClaimState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    Pending { sent: Option<Duration> },
    Granted,
    Refused,
}

/// One node's allocator over the ring (the agent's view). Owner keys `K`
/// name local pods (a container id, a `(container, interface)` pair).
///
/// Allocation never waits: [`allocate`](Self::allocate) answers from owned,
/// unquarantined space or fails at once with an [`AllocFailure`]. The rest
/// is driven by the agent: feed it ring traffic
/// ([`handle_delta`](Self::handle_delta),
/// [`handle_message`](Self::handle_message)), call
/// [`handle_timeout`](Self::handle_timeout) regularly (it keeps the reserve
/// topped up, repeats claims, publishes free counts, re-identifies after a
/// step-down) and send what [`poll_output`](Self::poll_output) returns.
/// Persist [`ring`](Self::ring), [`allocations`](Self::allocations) and
/// [`identity`](Self::identity) in one transaction before answering an ADD
/// or sending a donation; [`restore`](Self::restore) rebuilds from them.
///
/// ```
/// use overlay_ipam::ring::{AllocFailure, Identity, Message, Node, NodeConfig, Output, Ring};
/// use overlay_core::PeerId;
/// use rand::SeedableRng;
/// use std::time::Duration;
///
/// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
/// // One named seed: a owns everything, b nothing yet.
/// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a]).unwrap();
/// let mut na = Node::<&str>::new(Identity::new(a, 1), ring.clone(), NodeConfig::default());
/// let mut nb = Node::new(Identity::new(b, 1), ring, NodeConfig::default());
/// let mut rng = rand::rngs::StdRng::seed_from_u64(3);
/// let t = Duration::ZERO;
///
/// assert_eq!(nb.allocate(t, "pod"), Err(AllocFailure::NoSpaceYet));
/// nb.handle_timeout(t, &mut rng); // below the low-water mark: ask a donor
/// let Some(Output::Send { to, message }) = nb.poll_output() else { panic!() };
/// assert_eq!((to, &message), (a, &Message::SpaceRequest));
/// na.handle_message(t, b, message);
/// // a donates its largest free aligned block of at most half its space.
/// let mut donation = None;
/// while let Some(out) = na.poll_output() {
///     if let Output::Send { to, message } = out { assert_eq!(to, b); donation = Some(message); }
/// }
/// nb.handle_message(t, a, donation.unwrap());
/// assert_eq!(nb.owned_blocks(), ["198.18.0.128/25".parse().unwrap()]);
/// assert_eq!(nb.allocate(t, "pod").unwrap().to_string(), "198.18.0.128");
/// ```
#[derive(Debug, Clone)]
pub struct Node<K> {
    id: Identity,
    config: NodeConfig,
    ring: Ring,
    blocks: BTreeMap<u128, Block<K>>,
    foreign: BTreeMap<IpAddr, Foreign<K>>,
    retired: Option<PeerId>,
    request: Option<(PeerId, Duration)>,
    last_free_report: Option<Duration>,
    outbox: VecDeque<Output>,
    digest_cache: Option<Digest>,
}

impl<K: Clone + Eq + Hash + Ord> Node<K> {
    /// A node with no allocations.
    pub fn new(id: Identity, ring: Ring, config: NodeConfig) -> Self {
        let mut node = Node {
            id,
            config,
            ring,
            blocks: BTreeMap::new(),
            foreign: BTreeMap::new(),
            retired: None,
            request: None,
            last_free_report: None,
            outbox: VecDeque::new(),
            digest_cache: None,
        };
        node.reconcile(Duration::ZERO, false);
        node
    }

    /// A node rebuilt from its store after a restart: `id` (with its
    /// incarnation already bumped), the committed ring and the committed
    /// allocations of local pods. Addresses outside the blocks it owns are
    /// claimed from their owners (they are never silently kept: Weave
    /// #3003). Blocks adopted before the crash restart their quarantine.
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Node, NodeConfig, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let a = PeerId::from_u128(1);
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a]).unwrap();
    /// let mut n = Node::new(Identity::new(a, 1), ring, NodeConfig::default());
    /// let ip = n.allocate(Duration::ZERO, 7u32).unwrap();
    /// let (ring, pods) = (n.ring().clone(), n.allocations());
    /// let mut back = Node::restore(n.identity().restarted(), ring, pods, NodeConfig::default(), Duration::ZERO);
    /// assert_eq!(back.allocations(), [(ip, 7)]);
    /// assert_ne!(back.allocate(Duration::ZERO, 8).unwrap(), ip);
    /// ```
    pub fn restore(
        id: Identity,
        ring: Ring,
        allocations: impl IntoIterator<Item = (IpAddr, K)>,
        config: NodeConfig,
        now: Duration,
    ) -> Self {
        let mut node = Node::new(id, ring, config);
        for b in node.blocks.values_mut() {
            if b.adopted {
                b.usable_at = now + node.config.quarantine;
            }
        }
        for (ip, key) in allocations {
            let placed = node
                .block_of_mut(ip)
                .map(|b| b.alloc.allocate(ip, Holder::Pod(key.clone())).is_ok())
                .unwrap_or(false);
            if !placed {
                let owner = node.ring.entry_at(ip).map(|e| e.owner);
                match owner {
                    Some(owner) => {
                        node.foreign.insert(
                            ip,
                            Foreign {
                                key,
                                owner,
                                state: ClaimState::Pending { sent: None },
                            },
                        );
                    }
                    None => {
                        // Outside the ring: keep the pod's address out of
                        // every allocator and report it.
                        node.outbox
                            .push_back(Output::Anomaly(Anomaly::InvalidRecord {
                                block: IpNet::from(ip),
                            }));
                        node.foreign.insert(
                            ip,
                            Foreign {
                                key,
                                owner: node.id.peer,
                                state: ClaimState::Refused,
                            },
                        );
                    }
                }
            }
        }
        node.reconcile(now, false);
        node.send_claims(now, true);
        node
    }

    /// The current identity.
    pub fn identity(&self) -> Identity {
        self.id
    }

    /// The ring replica.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Whether the node stepped down and waits for
    /// [`handle_timeout`](Self::handle_timeout) to re-identify.
    pub fn is_retired(&self) -> bool {
        self.retired.is_some()
    }

    /// The blocks this node owns, sorted.
    pub fn owned_blocks(&self) -> Vec<IpNet> {
        self.blocks.values().map(|b| b.net).collect()
    }

    /// Addresses of local pods (in owned blocks, or claimed from other
    /// owners), sorted: what the store keeps with the ring.
    pub fn allocations(&self) -> Vec<(IpAddr, K)> {
        let mut out: Vec<(IpAddr, K)> = self
            .blocks
            .values()
            .flat_map(|b| {
                b.alloc.iter().filter_map(|(ip, h)| match h {
                    Holder::Pod(k) => Some((ip, k.clone())),
                    Holder::Peer(_) => None,
                })
            })
            .chain(self.foreign.iter().map(|(ip, f)| (*ip, f.key.clone())))
            .collect();
        out.sort();
        out
    }

    /// Addresses held in owned blocks for other peers' claims.
    pub fn granted_claims(&self) -> Vec<(IpAddr, PeerId)> {
        self.blocks
            .values()
            .flat_map(|b| {
                b.alloc.iter().filter_map(|(ip, h)| match h {
                    Holder::Peer(p) => Some((ip, *p)),
                    Holder::Pod(_) => None,
                })
            })
            .collect()
    }

    /// Free addresses allocation can use now (owned blocks out of
    /// quarantine).
    pub fn usable_free(&self, now: Duration) -> u64 {
        self.blocks
            .values()
            .filter(|b| b.usable_at <= now)
            .map(|b| b.alloc.free())
            .sum()
    }

    /// The next output for the agent.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    fn block_of_mut(&mut self, ip: IpAddr) -> Option<&mut Block<K>> {
        let bits = to_bits(ip);
        let (_, b) = self.blocks.range_mut(..=bits).next_back()?;
        b.net.contains(&ip).then_some(b)
    }

    /// Allocate an address for `key`, at once: from owned blocks out of
    /// quarantine (blocks adopted by a reclaim last). Fails with
    /// [`AllocFailure::NoSpaceYet`] while space is only elsewhere or in
    /// quarantine, [`AllocFailure::Exhausted`] when nobody advertises space.
    ///
    /// ```
    /// use overlay_ipam::ring::{AllocFailure, Identity, Node, NodeConfig, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let a = PeerId::from_u128(1);
    /// // A /28 universe: sixteen addresses, all a's.
    /// let ring = Ring::from_seeds("198.18.0.0/28".parse().unwrap(), 28, &[a]).unwrap();
    /// let mut n = Node::new(Identity::new(a, 1), ring, NodeConfig::default());
    /// for pod in 0..16 {
    ///     n.allocate(Duration::ZERO, pod).unwrap();
    /// }
    /// // Nobody has space left: exhausted (CNI 50), at once.
    /// assert_eq!(n.allocate(Duration::ZERO, 16), Err(AllocFailure::Exhausted));
    /// ```
    pub fn allocate(&mut self, now: Duration, key: K) -> Result<IpAddr, AllocFailure> {
        if self.retired.is_none() {
            let mut order: Vec<(Duration, u128)> = self
                .blocks
                .iter()
                .filter(|(_, b)| b.usable_at <= now && b.alloc.free() > 0)
                .map(|(k, b)| (b.usable_at, *k))
                .collect();
            order.sort();
            for (_, k) in order {
                if let Some(b) = self.blocks.get_mut(&k)
                    && let Ok(ip) = b.alloc.allocate_next(Holder::Pod(key.clone()))
                {
                    return Ok(ip);
                }
            }
        }
        let elsewhere = self
            .ring
            .free_by_owner()
            .iter()
            .any(|(p, free)| *p != self.id.peer && *free > 0);
        let quarantined = self.blocks.values().any(|b| b.alloc.free() > 0);
        if elsewhere || quarantined {
            Err(AllocFailure::NoSpaceYet)
        } else {
            Err(AllocFailure::Exhausted)
        }
    }

    /// Allocate the given address for `key` (a static IP, or re-adopting a
    /// pod's address). It must be free in a block this node owns; otherwise
    /// [`AllocFailure::Conflict`] names its owner (`None`: outside the ring,
    /// Weave #3003).
    ///
    /// ```
    /// use overlay_ipam::ring::{AllocFailure, Identity, Node, NodeConfig, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a, b]).unwrap();
    /// let mut n = Node::new(Identity::new(a, 1), ring, NodeConfig::default());
    /// let t = Duration::ZERO;
    /// let ip = "198.18.0.9".parse().unwrap();
    /// assert_eq!(n.allocate_given(t, ip, "x"), Ok(()));
    /// assert_eq!(n.allocate_given(t, ip, "y"), Err(AllocFailure::Conflict { address: ip, owner: Some(a) }));
    /// let theirs = "198.18.0.200".parse().unwrap();
    /// assert_eq!(n.allocate_given(t, theirs, "y"), Err(AllocFailure::Conflict { address: theirs, owner: Some(b) }));
    /// let outside = "192.0.2.1".parse().unwrap();
    /// assert_eq!(n.allocate_given(t, outside, "y"), Err(AllocFailure::Conflict { address: outside, owner: None }));
    /// ```
    pub fn allocate_given(
        &mut self,
        now: Duration,
        ip: IpAddr,
        key: K,
    ) -> Result<(), AllocFailure> {
        let owner = self.ring.entry_at(ip).map(|e| e.owner);
        let conflict = AllocFailure::Conflict { address: ip, owner };
        if self.retired.is_some() || self.foreign.contains_key(&ip) {
            return Err(conflict);
        }
        match self.block_of_mut(ip) {
            Some(b) if b.usable_at <= now => {
                b.alloc.allocate(ip, Holder::Pod(key)).map_err(|_| conflict)
            }
            _ => Err(conflict),
        }
    }

    /// Release every address of `key`; the addresses. Claimed addresses
    /// are released at their owners (a [`Message::ReleaseClaim`]).
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Node, NodeConfig, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let a = PeerId::from_u128(1);
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a]).unwrap();
    /// let mut n = Node::new(Identity::new(a, 1), ring, NodeConfig::default());
    /// let t = Duration::ZERO;
    /// let (x, y) = (n.allocate(t, "pod").unwrap(), n.allocate(t, "pod").unwrap());
    /// assert_eq!(n.release(t, &"pod"), vec![x, y]);
    /// assert!(n.allocations().is_empty());
    /// ```
    pub fn release(&mut self, _now: Duration, key: &K) -> Vec<IpAddr> {
        let holder = Holder::Pod(key.clone());
        let mut out: Vec<IpAddr> = Vec::new();
        for b in self.blocks.values_mut() {
            out.extend(b.alloc.release_owner(&holder));
        }
        let mine: Vec<IpAddr> = self
            .foreign
            .iter()
            .filter(|(_, f)| &f.key == key)
            .map(|(ip, _)| *ip)
            .collect();
        let mut by_owner: BTreeMap<PeerId, Vec<IpAddr>> = BTreeMap::new();
        for ip in mine {
            if let Some(f) = self.foreign.remove(&ip) {
                if f.owner != self.id.peer && f.state != ClaimState::Refused {
                    by_owner.entry(f.owner).or_default().push(ip);
                }
                out.push(ip);
            }
        }
        for (to, addresses) in by_owner {
            self.outbox.push_back(Output::Send {
                to,
                message: Message::ReleaseClaim { addresses },
            });
        }
        out.sort();
        out
    }

    /// Merge ring writes from gossip.
    ///
    /// ```
    /// use overlay_ipam::ring::{Delta, Identity, Node, NodeConfig, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a]).unwrap();
    /// let mut nb = Node::<u32>::new(Identity::new(b, 1), ring.clone(), NodeConfig::default());
    /// // a gives b a block; b learns it from gossip and can allocate there.
    /// let mut delta = Delta::new(ring.genesis().id());
    /// delta.records.push(ring.write(a, "198.18.0.240/28".parse().unwrap(), b, 16).unwrap());
    /// assert!(nb.handle_delta(Duration::ZERO, &delta).changed);
    /// assert_eq!(nb.allocate(Duration::ZERO, 1).unwrap().to_string(), "198.18.0.240");
    /// ```
    pub fn handle_delta(&mut self, now: Duration, delta: &Delta) -> MergeReport {
        let tombstones = self.ring.tombstone_count();
        let report = self.ring.apply(delta);
        // Our blocks change only through records that give us space, touch
        // our blocks or our claimed addresses, or through new tombstones;
        // anything else needs no reconcile (the common case at scale).
        let relevant = self.ring.tombstone_count() != tombstones
            || delta
                .records
                .iter()
                .any(|r| self.touches_us(r.block, r.stamp.owner));
        if report.changed {
            self.digest_cache = None;
        }
        self.after_merge(now, &report, relevant);
        report
    }

    fn touches_us(&self, block: IpNet, owner: PeerId) -> bool {
        if owner == self.id.peer {
            return true;
        }
        let (lo, hi) = (to_bits(block.network()), to_bits(block.broadcast()));
        let owned = self
            .blocks
            .range(..=hi)
            .next_back()
            .is_some_and(|(_, b)| to_bits(b.net.broadcast()) >= lo);
        owned || self.foreign.keys().any(|ip| block.contains(ip))
    }

    /// Merge a whole ring (a full-state exchange, or the store's copy).
    pub fn handle_ring(&mut self, now: Duration, ring: &Ring) -> MergeReport {
        let report = self.ring.merge(ring);
        if report.changed {
            self.digest_cache = None;
        }
        self.after_merge(now, &report, true);
        report
    }

    fn after_merge(&mut self, now: Duration, report: &MergeReport, relevant: bool) {
        for a in &report.anomalies {
            self.outbox.push_back(Output::Anomaly(a.clone()));
        }
        if report.changed && relevant {
            self.reconcile(now, true);
            self.send_claims(now, false);
        }
    }

    /// Reclaim a dead peer, as the authority decided (see
    /// [`Ring::reclaim`]): apply the tombstone and its fencing writes here
    /// and broadcast them. If this node is the heir, the adopted blocks are
    /// quarantined for [`NodeConfig::quarantine`].
    ///
    /// ```
    /// use overlay_ipam::ring::{AllocFailure, Identity, Node, NodeConfig, Output, Ring, Tombstone};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let (dead, heir) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[dead, heir]).unwrap();
    /// let mut n = Node::new(Identity::new(heir, 1), ring, NodeConfig::default());
    /// let t = Duration::from_secs(100);
    /// n.reclaim(t, Tombstone { peer: dead, up_to_incarnation: 4, heir }).unwrap();
    /// assert!(matches!(n.poll_output(), Some(Output::Broadcast(_))));
    /// // The adopted block is quarantined; the heir's own block is used first.
    /// assert_eq!(n.allocate_given(t, "198.18.0.1".parse().unwrap(), 1), Err(AllocFailure::Conflict { address: "198.18.0.1".parse().unwrap(), owner: Some(heir) }));
    /// let later = t + NodeConfig::default().quarantine;
    /// assert_eq!(n.allocate_given(later, "198.18.0.1".parse().unwrap(), 1), Ok(()));
    /// ```
    pub fn reclaim(
        &mut self,
        now: Duration,
        tombstone: super::state::Tombstone,
    ) -> Result<(), super::state::ReclaimError> {
        let delta = self.ring.reclaim(tombstone)?;
        self.reconcile(now, true);
        self.send_claims(now, false);
        self.outbox.push_back(Output::Broadcast(delta));
        Ok(())
    }

    /// The gossip layer saw `other` alive. If it carries our peer id with a
    /// different incarnation, an agent runs with our identity (a cloned
    /// disk): the lower incarnation steps down and re-identifies.
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Node, NodeConfig, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let a = PeerId::from_u128(1);
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a]).unwrap();
    /// let mut clone = Node::<u32>::new(Identity::new(a, 3), ring, NodeConfig::default());
    /// clone.observe_peer(Duration::ZERO, Identity::new(a, 5));
    /// assert!(clone.is_retired());
    /// ```
    pub fn observe_peer(&mut self, now: Duration, other: Identity) {
        if other.peer != self.id.peer || other.incarnation == self.id.incarnation {
            return;
        }
        self.outbox
            .push_back(Output::Anomaly(Anomaly::CloneDetected {
                peer: self.id.peer,
                ours: self.id.incarnation,
                theirs: other.incarnation,
            }));
        if other.incarnation > self.id.incarnation && self.retired.is_none() {
            self.step_down(now);
        }
    }

    /// Handle a message from peer `from`.
    pub fn handle_message(&mut self, now: Duration, from: PeerId, message: Message) {
        match message {
            Message::SpaceRequest => self.donate(now, from),
            Message::SpaceDenied => {
                if self.request.is_some_and(|(p, _)| p == from) {
                    self.request = None;
                }
            }
            Message::Claim { addresses } => self.grant_claims(from, addresses),
            Message::ClaimReply { granted, refused } => {
                for ip in granted {
                    if let Some(f) = self.foreign.get_mut(&ip)
                        && f.owner == from
                    {
                        f.state = ClaimState::Granted;
                    }
                }
                for ip in refused {
                    if let Some(f) = self.foreign.get_mut(&ip)
                        && f.owner == from
                        && f.state != ClaimState::Refused
                    {
                        f.state = ClaimState::Refused;
                        self.outbox
                            .push_back(Output::Anomaly(Anomaly::ClaimConflict {
                                address: ip,
                                claimant: self.id.peer,
                                owner: from,
                            }));
                    }
                }
            }
            Message::ReleaseClaim { addresses } => {
                for ip in addresses {
                    if let Some(b) = self.block_of_mut(ip)
                        && b.alloc.owner(ip) == Some(&Holder::Peer(from))
                    {
                        let _ = b.alloc.release(ip);
                    }
                }
            }
            Message::Delta(delta) => {
                self.handle_delta(now, &delta);
            }
            Message::Digest { digest, reply } => {
                let ours = self.digest(digest.bucket_bits());
                let Some(buckets) = ours.differing(&digest) else {
                    self.outbox
                        .push_back(Output::Anomaly(Anomaly::GenesisMismatch {
                            ours: self.ring.genesis().id(),
                            theirs: digest.genesis(),
                        }));
                    return;
                };
                if !buckets.is_empty() || ours.tombstone_hash() != digest.tombstone_hash() {
                    let delta = self.ring.delta_for_buckets(digest.bucket_bits(), &buckets);
                    self.outbox.push_back(Output::Send {
                        to: from,
                        message: Message::Delta(delta),
                    });
                    if reply {
                        self.outbox.push_back(Output::Send {
                            to: from,
                            message: Message::Digest {
                                digest: ours,
                                reply: false,
                            },
                        });
                    }
                }
            }
        }
    }

    /// Timers: re-identify after a step-down, keep the reserve (ask a donor
    /// chosen at random weighted by advertised free space when usable free
    /// space is below the low-water mark), repeat unanswered claims, and
    /// publish coarsened free counts.
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Message, Node, NodeConfig, Output, Ring};
    /// use overlay_core::PeerId;
    /// use rand::SeedableRng;
    /// use std::time::Duration;
    ///
    /// let (a, b, c) = (PeerId::from_u128(1), PeerId::from_u128(2), PeerId::from_u128(3));
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a, b]).unwrap();
    /// let mut nc = Node::<u32>::new(Identity::new(c, 1), ring, NodeConfig::default());
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    /// nc.handle_timeout(Duration::ZERO, &mut rng);
    /// let Some(Output::Send { to, message: Message::SpaceRequest }) = nc.poll_output() else { panic!() };
    /// assert!(to == a || to == b);
    /// // Not again before the retry interval.
    /// nc.handle_timeout(Duration::from_millis(100), &mut rng);
    /// assert_eq!(nc.poll_output(), None);
    /// ```
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut impl Rng) {
        if self.retired.is_some() {
            let old = self.id;
            self.id = Identity::random(rng);
            self.retired = None;
            self.request = None;
            self.outbox
                .push_back(Output::Reidentified { old, new: self.id });
            self.reconcile(now, true);
            self.send_claims(now, true);
            return;
        }
        self.send_claims(now, false);
        self.report_free(now);
        if self.usable_free(now) >= self.config.low_water {
            return;
        }
        if let Some((_, sent)) = self.request
            && now < sent + self.config.retry
        {
            return;
        }
        self.request = None;
        let donors: Vec<(PeerId, u64)> = self
            .ring
            .free_by_owner()
            .into_iter()
            .filter(|(p, free)| *p != self.id.peer && *free > 0)
            .collect();
        let total: u64 = donors.iter().map(|(_, f)| *f).sum();
        if total == 0 {
            return;
        }
        let mut pick = rng.random_range(0..total);
        for (peer, free) in donors {
            if pick < free {
                self.request = Some((peer, now));
                self.outbox.push_back(Output::Send {
                    to: peer,
                    message: Message::SpaceRequest,
                });
                return;
            }
            pick -= free;
        }
    }

    /// An anti-entropy opener for `to`: our digest with `bucket_bits` bits
    /// of buckets.
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Message, Node, NodeConfig, Output, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a, b]).unwrap();
    /// let mut na = Node::<u32>::new(Identity::new(a, 1), ring.clone(), NodeConfig::default());
    /// let mut nb = Node::<u32>::new(Identity::new(b, 1), ring, NodeConfig::default());
    /// na.allocate(Duration::from_secs(10), 1).unwrap();
    /// na.handle_timeout(Duration::from_secs(10), &mut rand::rngs::StdRng::from_seed([0; 32]));
    /// while na.poll_output().is_some() {} // the free-count broadcast is lost
    /// // Anti-entropy repairs it: b answers a's digest with its own, a sends the difference.
    /// nb.handle_message(Duration::ZERO, a, na.digest_message(4));
    /// while let Some(Output::Send { message, .. }) = nb.poll_output() {
    ///     na.handle_message(Duration::ZERO, b, message);
    /// }
    /// while let Some(Output::Send { message, .. }) = na.poll_output() {
    ///     nb.handle_message(Duration::ZERO, a, message);
    /// }
    /// assert_eq!(na.ring(), nb.ring());
    /// # use rand::SeedableRng;
    /// ```
    pub fn digest_message(&mut self, bucket_bits: u8) -> Message {
        Message::Digest {
            digest: self.digest(bucket_bits),
            reply: true,
        }
    }

    /// The ring's digest, cached until the ring changes.
    fn digest(&mut self, bucket_bits: u8) -> Digest {
        match &self.digest_cache {
            Some(d) if d.bucket_bits() == self.ring.digest_bits(bucket_bits) => d.clone(),
            _ => {
                let d = self.ring.digest(bucket_bits);
                self.digest_cache = Some(d.clone());
                d
            }
        }
    }

    fn report_free(&mut self, now: Duration) {
        if self
            .last_free_report
            .is_some_and(|t| now < t + self.config.free_report_interval)
        {
            return;
        }
        let me = self.id.peer;
        let mut records = Vec::new();
        let candidates: Vec<(IpNet, u32)> = self
            .blocks
            .values()
            .filter(|b| b.usable_at <= now)
            .filter_map(|b| {
                let free = u32::try_from(b.alloc.free()).unwrap_or(u32::MAX);
                let size = u32::try_from(b.alloc.size()).unwrap_or(u32::MAX);
                // Coarsened: publish when the count moved by an eighth of
                // the block, or reached or left zero.
                let moved = free.abs_diff(b.reported_free) >= (size / 8).max(1)
                    || (free == 0) != (b.reported_free == 0);
                moved.then_some((b.net, free))
            })
            .collect();
        for (net, free) in candidates {
            if let Ok(r) = self.ring.write(me, net, me, free) {
                records.push(r);
            }
        }
        if records.is_empty() {
            return;
        }
        self.last_free_report = Some(now);
        self.reconcile(now, true);
        for r in &records {
            if let Some(b) = self.blocks.get_mut(&to_bits(r.block.network())) {
                b.reported_free = r.stamp.free;
            }
        }
        self.broadcast(records);
    }

    fn broadcast(&mut self, records: Vec<Record>) {
        let mut delta = Delta::new(self.ring.genesis().id());
        delta.records = records;
        self.outbox.push_back(Output::Broadcast(delta));
    }

    fn donate(&mut self, now: Duration, to: PeerId) {
        let deny = Output::Send {
            to,
            message: Message::SpaceDenied,
        };
        if self.retired.is_some() || to == self.id.peer {
            self.outbox.push_back(deny);
            return;
        }
        let Some(block) = self.donatable(now) else {
            self.outbox.push_back(deny);
            return;
        };
        let free = u32::try_from(super::state::host_size(
            block.max_prefix_len(),
            block.prefix_len(),
        ))
        .unwrap_or(u32::MAX);
        match self.ring.write(self.id.peer, block, to, free) {
            Ok(record) => {
                self.reconcile(now, true);
                let mut delta = Delta::new(self.ring.genesis().id());
                delta.records.push(record);
                self.outbox.push_back(Output::Broadcast(delta.clone()));
                self.outbox.push_back(Output::Send {
                    to,
                    message: Message::Delta(delta),
                });
            }
            Err(_) => self.outbox.push_back(deny),
        }
    }

    /// The largest free aligned block (no smaller than the ring's minimum)
    /// inside an unquarantined owned block, of at most half the usable free
    /// space; the highest address among equals (the donor allocates from
    /// the bottom of its blocks).
    fn donatable(&self, now: Duration) -> Option<IpNet> {
        let half = self.usable_free(now) / 2;
        let min_len = self.ring.genesis().min_block_len();
        let mut best: Option<(u8, u128)> = None;
        for b in self.blocks.values().filter(|b| b.usable_at <= now) {
            let width = b.net.max_prefix_len();
            let (lo, hi) = (to_bits(b.net.network()), to_bits(b.net.broadcast()));
            let mut cursor = lo;
            let used: Vec<u128> = b.alloc.iter().map(|(ip, _)| to_bits(ip)).collect();
            let gaps = used
                .iter()
                .map(|&u| (u, true))
                .chain(std::iter::once((hi, false)));
            for (bound, is_used) in gaps {
                let gap_last = if is_used {
                    bound.checked_sub(1)
                } else {
                    Some(bound)
                };
                if let Some(gap_last) = gap_last
                    && cursor <= gap_last
                {
                    for (first, len) in cidr_cover(cursor, gap_last, width) {
                        if len > min_len {
                            continue;
                        }
                        // Shrink to the cap (at most half the free space),
                        // keeping the top of the free block.
                        let orig = super::state::host_size(width, len);
                        let mut len = len;
                        while len < min_len
                            && u64::try_from(super::state::host_size(width, len))
                                .map_or(true, |s| s > half)
                        {
                            len += 1;
                        }
                        let size = super::state::host_size(width, len);
                        if u64::try_from(size).map_or(true, |s| s > half) {
                            continue;
                        }
                        let first = first + (orig - size);
                        if best.is_none_or(|(bl, bf)| len < bl || (len == bl && first > bf)) {
                            best = Some((len, first));
                        }
                    }
                }
                cursor = bound.saturating_add(1);
            }
        }
        let like = self.ring.genesis().universe().addr();
        best.map(|(len, first)| net_of(like, first, len))
    }

    fn grant_claims(&mut self, from: PeerId, addresses: Vec<IpAddr>) {
        let (mut granted, mut refused) = (Vec::new(), Vec::new());
        for ip in addresses {
            let me = self.id.peer;
            let Some(b) = self.block_of_mut(ip) else {
                // Not ours (any more): the claimant asks the owner it sees.
                continue;
            };
            match b.alloc.owner(ip) {
                None => {
                    if b.alloc.allocate(ip, Holder::Peer(from)).is_ok() {
                        granted.push(ip);
                    }
                }
                Some(Holder::Peer(p)) if *p == from => granted.push(ip),
                Some(_) => {
                    refused.push(ip);
                    self.outbox
                        .push_back(Output::Anomaly(Anomaly::ClaimConflict {
                            address: ip,
                            claimant: from,
                            owner: me,
                        }));
                }
            }
        }
        if !granted.is_empty() || !refused.is_empty() {
            self.outbox.push_back(Output::Send {
                to: from,
                message: Message::ClaimReply { granted, refused },
            });
        }
    }

    fn step_down(&mut self, _now: Duration) {
        let heir = self
            .ring
            .tombstone_of(self.id.peer)
            .map_or(self.id.peer, |t| t.heir);
        self.outbox.push_back(Output::Anomaly(Anomaly::SteppedDown {
            peer: self.id.peer,
            heir,
        }));
        self.retired = Some(self.id.peer);
        let blocks = std::mem::take(&mut self.blocks);
        for b in blocks.into_values() {
            for (ip, h) in b.alloc.iter() {
                if let Holder::Pod(k) = h {
                    let owner = self.ring.entry_at(ip).map_or(heir, |e| e.owner);
                    self.foreign.insert(
                        ip,
                        Foreign {
                            key: k.clone(),
                            owner,
                            state: ClaimState::Pending { sent: None },
                        },
                    );
                }
            }
        }
    }

    /// Bring the owned blocks in line with the ring's view: keep unchanged
    /// blocks, build allocators for new ones (quarantined if adopted), move
    /// live allocations, and turn allocations in blocks we lost into
    /// claims. Steps down if the ring has a tombstone for us.
    fn reconcile(&mut self, now: Duration, quarantine_new: bool) {
        self.digest_cache = None;
        if self.retired.is_some() {
            return;
        }
        if self.ring.tombstone_of(self.id.peer).is_some() {
            self.step_down(now);
            return;
        }
        let me = self.id.peer;
        let mine: Vec<Entry> = self.ring.entries_of(me);
        let unchanged = mine.len() == self.blocks.len()
            && mine.iter().all(|e| {
                self.blocks
                    .get(&to_bits(e.block.network()))
                    .is_some_and(|b| b.net == e.block)
            });
        if !unchanged {
            let mut old = std::mem::take(&mut self.blocks);
            let mut moved: Vec<(IpAddr, Holder<K>)> = Vec::new();
            for e in &mine {
                let key = to_bits(e.block.network());
                if old.get(&key).is_some_and(|b| b.net == e.block)
                    && let Some(b) = old.remove(&key)
                {
                    self.blocks.insert(key, b);
                    continue;
                }
                let Ok(alloc) = IpAllocator::for_range(e.block.network(), e.block.broadcast())
                else {
                    continue;
                };
                self.blocks.insert(
                    key,
                    Block {
                        net: e.block,
                        alloc,
                        usable_at: if e.is_adopted() && quarantine_new {
                            now + self.config.quarantine
                        } else {
                            Duration::ZERO
                        },
                        adopted: e.is_adopted(),
                        reported_free: e.free,
                    },
                );
            }
            let quarantine: Vec<(IpNet, Duration, bool)> = old
                .values()
                .map(|b| (b.net, b.usable_at, b.adopted))
                .collect();
            for b in old.into_values() {
                moved.extend(b.alloc.iter().map(|(ip, h)| (ip, h.clone())));
            }
            // A reshaped block keeps the quarantine of the blocks it came from.
            for b in self.blocks.values_mut() {
                for (net, until, adopted) in &quarantine {
                    if b.net.contains(&net.network()) || net.contains(&b.net.network()) {
                        b.usable_at = b.usable_at.max(*until);
                        b.adopted |= *adopted;
                    }
                }
            }
            for (ip, h) in moved {
                let placed = self
                    .block_of_mut(ip)
                    .map(|b| b.alloc.allocate(ip, h.clone()).is_ok())
                    .unwrap_or(false);
                if !placed
                    && let Holder::Pod(key) = h
                    && let Some(e) = self.ring.entry_at(ip)
                {
                    self.foreign.insert(
                        ip,
                        Foreign {
                            key,
                            owner: e.owner,
                            state: ClaimState::Pending { sent: None },
                        },
                    );
                }
            }
        }
        // Claimed addresses that are now in our blocks come home; those
        // whose owner changed are claimed from the new owner.
        let ips: Vec<IpAddr> = self.foreign.keys().copied().collect();
        for ip in ips {
            let Some(f) = self.foreign.get(&ip).cloned() else {
                continue;
            };
            if f.state == ClaimState::Refused {
                continue;
            }
            if let Some(b) = self.block_of_mut(ip) {
                if b.alloc.allocate(ip, Holder::Pod(f.key.clone())).is_ok()
                    || b.alloc.owner(ip) == Some(&Holder::Pod(f.key.clone()))
                {
                    self.foreign.remove(&ip);
                }
                continue;
            }
            if let Some(e) = self.ring.entry_at(ip)
                && e.owner != f.owner
                && let Some(slot) = self.foreign.get_mut(&ip)
            {
                slot.owner = e.owner;
                slot.state = ClaimState::Pending { sent: None };
            }
        }
    }

    /// Send claims that are pending and due (all pending ones if `all`).
    fn send_claims(&mut self, now: Duration, all: bool) {
        if self.retired.is_some() {
            return;
        }
        let retry = self.config.retry;
        let mut by_owner: BTreeMap<PeerId, Vec<IpAddr>> = BTreeMap::new();
        let mut fresh: BTreeMap<PeerId, usize> = BTreeMap::new();
        for (ip, f) in self.foreign.iter_mut() {
            if let ClaimState::Pending { sent } = f.state
                && (all || sent.is_none_or(|t| now >= t + retry))
                && f.owner != self.id.peer
            {
                if sent.is_none() {
                    *fresh.entry(f.owner).or_default() += 1;
                }
                f.state = ClaimState::Pending { sent: Some(now) };
                by_owner.entry(f.owner).or_default().push(*ip);
            }
        }
        for (owner, count) in fresh {
            self.outbox
                .push_back(Output::Anomaly(Anomaly::LostAllocations { owner, count }));
        }
        for (to, addresses) in by_owner {
            self.outbox.push_back(Output::Send {
                to,
                message: Message::Claim { addresses },
            });
        }
    }
}
