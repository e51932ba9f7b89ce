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

mod protocol;

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
    /// Every address of the universe can be handed out, its network address
    /// included (the example's first is `198.18.0.0`). A plugin-facing
    /// allocator that must not give a pod that address holds it back, as
    /// `agent::service::NodeIpam` (feature `agent`) does: it allocates the
    /// network address to no pod and gives the next one to the bridge.
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
    /// let first = n.allocate(Duration::ZERO, 0).unwrap();
    /// assert_eq!(first.to_string(), "198.18.0.0");
    /// for pod in 1..16 {
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
}
