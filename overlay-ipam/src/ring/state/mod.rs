//! The replicated ring state: genesis, stamps, runs, tombstones, merge and
//! the ownership view. See the [module docs](super) for the design.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use overlay_core::PeerId;
use overlay_core::hash::Fnv1a64;

use crate::range::{from_bits, to_bits};

mod merge;

/// The identity of one ring: every replica of a ring carries it, and rings
/// with different ids are never merged (see [`Anomaly::GenesisMismatch`]).
///
/// ```
/// use overlay_ipam::ring::GenesisId;
///
/// let id = GenesisId::from_u128(0x2a);
/// assert_eq!(id.to_string(), "0000000000000000000000000000002a");
/// assert_eq!(GenesisId::from_u128(id.as_u128()), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GenesisId(u128);

impl GenesisId {
    /// An id from its numeric value (for example 128 random bits chosen
    /// once by the creator of a `ring-genesis` object).
    pub const fn from_u128(value: u128) -> Self {
        GenesisId(value)
    }

    /// The numeric value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for GenesisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for GenesisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GenesisId({self})")
    }
}

/// Why a genesis could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// The seed list is empty.
    #[error("a ring needs at least one seed")]
    NoSeeds,
    /// The minimum block is larger than the universe or longer than an address.
    #[error("minimum block /{min_block_len} does not fit universe {universe}")]
    BadMinBlock {
        /// The universe.
        universe: IpNet,
        /// The minimum block prefix length asked for.
        min_block_len: u8,
    },
    /// An IPv6 universe of `::/0` (2^128 addresses) is not supported.
    #[error("universe {0} is too large (IPv6 /0)")]
    UniverseTooLarge(IpNet),
    /// More seeds than minimum blocks in the universe.
    #[error("{seeds} seeds do not fit {blocks} blocks of the minimum size")]
    TooManySeeds {
        /// Distinct seeds given.
        seeds: usize,
        /// Minimum-size blocks in the universe.
        blocks: u128,
    },
}

/// The parameters every replica of one ring shares: its id, the universe
/// prefix it divides, and the smallest block it ever splits to.
///
/// ```
/// use overlay_ipam::ring::Genesis;
/// use overlay_core::PeerId;
///
/// let seeds = [PeerId::from_u128(2), PeerId::from_u128(1)];
/// let a = Genesis::from_seeds("10.32.0.0/12".parse().unwrap(), 26, &seeds).unwrap();
/// // Every seed computes the same id, whatever the order of its list.
/// let b = Genesis::from_seeds("10.32.0.0/12".parse().unwrap(), 26, &[seeds[1], seeds[0]]).unwrap();
/// assert_eq!(a, b);
/// // A different seed list is a different ring.
/// let c = Genesis::from_seeds("10.32.0.0/12".parse().unwrap(), 26, &seeds[..1]).unwrap();
/// assert_ne!(a.id(), c.id());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Genesis {
    id: GenesisId,
    universe: IpNet,
    min_block_len: u8,
}

impl Genesis {
    /// A genesis with an explicit id (for example one created once in a
    /// Kubernetes `ring-genesis` object). Host bits of `universe` are
    /// cleared.
    ///
    /// ```
    /// use overlay_ipam::ring::{Genesis, GenesisError, GenesisId};
    ///
    /// let g = Genesis::new(GenesisId::from_u128(7), "2001:db8::/96".parse().unwrap(), 122).unwrap();
    /// assert_eq!(g.min_block_len(), 122);
    /// let bad = Genesis::new(GenesisId::from_u128(7), "10.0.0.0/24".parse().unwrap(), 16);
    /// assert!(matches!(bad, Err(GenesisError::BadMinBlock { .. })));
    /// ```
    pub fn new(id: GenesisId, universe: IpNet, min_block_len: u8) -> Result<Self, GenesisError> {
        let universe = universe.trunc();
        if min_block_len < universe.prefix_len() || min_block_len > universe.max_prefix_len() {
            return Err(GenesisError::BadMinBlock {
                universe,
                min_block_len,
            });
        }
        if universe.max_prefix_len() == 128 && universe.prefix_len() == 0 {
            return Err(GenesisError::UniverseTooLarge(universe));
        }
        Ok(Genesis {
            id,
            universe,
            min_block_len,
        })
    }

    /// The genesis every seed of `seeds` computes identically: the id is a
    /// stable hash of the universe, the minimum block and the sorted,
    /// deduplicated seed list (no coordination and no quorum count).
    pub fn from_seeds(
        universe: IpNet,
        min_block_len: u8,
        seeds: &[PeerId],
    ) -> Result<Self, GenesisError> {
        let seeds = sorted_seeds(seeds)?;
        let universe = universe.trunc();
        let mut hi = Fnv1a64::new();
        let mut lo = Fnv1a64::new();
        hi.write(b"overlay-ring-genesis-hi\0");
        lo.write(b"overlay-ring-genesis-lo\0");
        for h in [&mut hi, &mut lo] {
            h.write(&to_bits(universe.network()).to_be_bytes()).write(&[
                u8::from(universe.addr().is_ipv6()),
                universe.prefix_len(),
                min_block_len,
            ]);
            for s in &seeds {
                h.write(&s.to_bytes());
            }
        }
        let id = (u128::from(hi.finish()) << 64) | u128::from(lo.finish());
        Genesis::new(GenesisId(id), universe, min_block_len)
    }

    /// The ring's id.
    pub fn id(&self) -> GenesisId {
        self.id
    }

    /// The prefix the ring divides.
    pub fn universe(&self) -> IpNet {
        self.universe
    }

    /// The longest prefix (smallest block) ownership is ever split to.
    pub fn min_block_len(&self) -> u8 {
        self.min_block_len
    }

    fn first(&self) -> u128 {
        to_bits(self.universe.network())
    }

    fn last(&self) -> u128 {
        to_bits(self.universe.broadcast())
    }

    fn width(&self) -> u8 {
        self.universe.max_prefix_len()
    }
}

fn sorted_seeds(seeds: &[PeerId]) -> Result<Vec<PeerId>, GenesisError> {
    let seeds: Vec<PeerId> = seeds
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if seeds.is_empty() {
        return Err(GenesisError::NoSeeds);
    }
    Ok(seeds)
}

/// The version stamp of one block: who owns it and how recent the write is.
///
/// Stamps are ordered by `epoch`, then `version`, then **lower** `owner`
/// first, then `free`; [`Ring::merge`] keeps the greatest stamp for every
/// address. Only a fencing reclaim raises `epoch` (and writes `version` 0),
/// only the owner raises `version`, so a write from a fenced epoch never
/// wins, whatever its version. Equal epochs and versions with different
/// content mean two writers (a cloned identity, two heirs): the lower owner
/// wins deterministically and an [`Anomaly::ConcurrentWrite`] is reported.
///
/// ```
/// use overlay_ipam::ring::Stamp;
/// use overlay_core::PeerId;
///
/// let p = PeerId::from_u128(9);
/// let heir = PeerId::from_u128(5);
/// let fenced = Stamp { epoch: 0, version: u64::MAX, owner: p, free: 0 };
/// let adopted = Stamp { epoch: 1, version: 0, owner: heir, free: 0 };
/// assert!(adopted > fenced);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Bumped only by a fencing reclaim.
    pub epoch: u32,
    /// Bumped only by the owner, on every write it makes.
    pub version: u64,
    /// The owner.
    pub owner: PeerId,
    /// Advisory count of free addresses, for donor choice only.
    pub free: u32,
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then(self.version.cmp(&other.version))
            .then(other.owner.cmp(&self.owner))
            .then(self.free.cmp(&other.free))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One block's write, as it travels in a [`Delta`]: the stamp applies to
/// every address of `block`.
///
/// ```
/// use overlay_ipam::ring::{Record, Stamp};
/// use overlay_core::PeerId;
///
/// let r = Record {
///     block: "10.0.0.0/26".parse().unwrap(),
///     stamp: Stamp { epoch: 0, version: 3, owner: PeerId::from_u128(1), free: 60 },
/// };
/// assert_eq!(r.block.prefix_len(), 26);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    /// The aligned block written.
    pub block: IpNet,
    /// The stamp written.
    pub stamp: Stamp,
}

/// The reclaim of a dead peer: `peer` (up to and including its
/// `up_to_incarnation`) is dead, and `heir` adopts its blocks. A grow-only
/// set in every [`Ring`]; a peer named by a tombstone never owns anything
/// again, so a returning peer steps down and re-identifies.
///
/// ```
/// use overlay_ipam::ring::Tombstone;
/// use overlay_core::PeerId;
///
/// let t = Tombstone { peer: PeerId::from_u128(3), up_to_incarnation: 7, heir: PeerId::from_u128(1) };
/// assert_ne!(t.peer, t.heir);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tombstone {
    /// The dead peer.
    pub peer: PeerId,
    /// The highest incarnation of `peer` the authority saw dead.
    pub up_to_incarnation: u64,
    /// The peer that adopts `peer`'s blocks.
    pub heir: PeerId,
}

/// A set of block writes and tombstones for one ring: what the gossip
/// layer carries (and what anti-entropy repairs with).
///
/// ```
/// use overlay_ipam::ring::{Delta, GenesisId};
///
/// let d = Delta::new(GenesisId::from_u128(1));
/// assert!(d.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The ring the writes belong to.
    pub genesis: GenesisId,
    /// Block writes.
    pub records: Vec<Record>,
    /// Tombstones.
    pub tombstones: Vec<Tombstone>,
}

impl Delta {
    /// An empty delta of ring `genesis`.
    pub fn new(genesis: GenesisId) -> Self {
        Delta {
            genesis,
            records: Vec::new(),
            tombstones: Vec::new(),
        }
    }

    /// Whether the delta carries nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.tombstones.is_empty()
    }

    /// The same writes as deltas of at most `max_records` records each (at
    /// least one), the tombstones riding with the first: for a transport
    /// with a frame limit. Applying the parts in any order has the effect
    /// of applying the whole.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let seeds: Vec<PeerId> = (1..=40).map(PeerId::from_u128).collect();
    /// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &seeds).unwrap();
    /// let whole = ring.to_delta();
    /// let parts = whole.split(16);
    /// assert!(parts.iter().all(|p| p.records.len() <= 16));
    /// assert_eq!(parts.iter().map(|p| p.records.len()).sum::<usize>(), whole.records.len());
    /// let mut again = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &seeds).unwrap();
    /// for p in &parts { again.apply(p); }
    /// assert_eq!(again, ring);
    /// ```
    pub fn split(&self, max_records: usize) -> Vec<Delta> {
        let max = max_records.max(1);
        if self.records.len() <= max {
            return vec![self.clone()];
        }
        self.records
            .chunks(max)
            .enumerate()
            .map(|(i, records)| Delta {
                genesis: self.genesis,
                records: records.to_vec(),
                tombstones: if i == 0 {
                    self.tombstones.clone()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }
}

/// One block of the ownership view ([`Ring::entries`]): tombstones
/// resolved, runs cut into aligned CIDR blocks.
///
/// ```
/// use overlay_ipam::ring::Ring;
/// use overlay_core::PeerId;
///
/// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(1)]).unwrap();
/// let e = ring.entries()[0];
/// assert_eq!((e.block.to_string(), e.owner, e.epoch, e.version), ("10.0.0.0/16".into(), PeerId::from_u128(1), 0, 0));
/// assert_eq!(e.free, 65536);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Entry {
    /// The aligned block.
    pub block: IpNet,
    /// Its owner (the heir, for a reclaimed block).
    pub owner: PeerId,
    /// Its epoch (raised by each reclaim it went through).
    pub epoch: u32,
    /// Its version (0 for a block adopted and not yet written by its heir).
    pub version: u64,
    /// Advisory free addresses, at most the block's size.
    pub free: u32,
}

impl Entry {
    /// Whether the block was adopted by a reclaim and not written since: the
    /// heir quarantines such blocks before allocating from them.
    ///
    /// ```
    /// use overlay_ipam::ring::{Ring, Tombstone};
    /// use overlay_core::PeerId;
    ///
    /// let (p, q) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[p, q]).unwrap();
    /// assert!(!ring.entries()[0].is_adopted());
    /// ring.reclaim(Tombstone { peer: p, up_to_incarnation: 0, heir: q }).unwrap();
    /// assert!(ring.entries()[0].is_adopted());
    /// ```
    pub fn is_adopted(&self) -> bool {
        self.epoch > 0 && self.version == 0
    }

    /// The number of addresses in the block (saturating at `u128::MAX`).
    pub fn size(&self) -> u128 {
        block_size(self.block)
    }
}

fn block_size(net: IpNet) -> u128 {
    let host = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host).unwrap_or(u128::MAX)
}

/// What a merge found that status, metrics and events should show. Merges
/// never fail; they report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Anomaly {
    /// A ring of another genesis was offered and kept apart (Weave's
    /// "seeded by different peers" split brain, reported instead of
    /// dropping the connection).
    GenesisMismatch {
        /// Our ring.
        ours: GenesisId,
        /// The ring offered.
        theirs: GenesisId,
    },
    /// Two different owner writes with the same epoch and version for one
    /// range: two processes wrote as one owner (a cloned identity). The
    /// greater stamp (`b`) won.
    ConcurrentWrite {
        /// First address of the range.
        first: IpAddr,
        /// Last address of the range.
        last: IpAddr,
        /// The losing stamp.
        a: Stamp,
        /// The winning stamp.
        b: Stamp,
    },
    /// Tombstones for one peer name different heirs (a double reclaim, like
    /// Weave's double `rmpeer`); the lowest heir wins.
    ConflictingHeirs {
        /// The dead peer.
        peer: PeerId,
        /// Every heir named, lowest (the winner) first.
        heirs: Vec<PeerId>,
    },
    /// A record outside the ring or not a block of it was ignored (Weave
    /// #3003 recorded such addresses locally).
    InvalidRecord {
        /// The block of the record.
        block: IpNet,
    },
    /// A tombstone naming the dead peer as its own heir was ignored.
    InvalidTombstone {
        /// The peer.
        peer: PeerId,
    },
    /// A claim for an address held by someone else: two pods hold one
    /// address, and the claimant's pod must be given a new one.
    ClaimConflict {
        /// The address.
        address: IpAddr,
        /// The peer that asked for it back.
        claimant: PeerId,
        /// The owner that refused.
        owner: PeerId,
    },
    /// Addresses of live local pods are in a block this node no longer
    /// owns; they were claimed from its owner.
    LostAllocations {
        /// The current owner.
        owner: PeerId,
        /// How many addresses.
        count: usize,
    },
    /// This node found itself tombstoned and stepped down.
    SteppedDown {
        /// Our retired identity.
        peer: PeerId,
        /// The heir that adopted our blocks.
        heir: PeerId,
    },
    /// Another agent runs with our `PeerId` (a cloned disk); the one with
    /// the lower incarnation steps down.
    CloneDetected {
        /// The shared id.
        peer: PeerId,
        /// Our incarnation.
        ours: u64,
        /// Theirs.
        theirs: u64,
    },
}

/// What a [`Ring::merge`] or [`Ring::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeReport {
    /// Whether the ring changed.
    pub changed: bool,
    /// What it found, sorted and deduplicated.
    pub anomalies: Vec<Anomaly>,
}

/// Why an owner's write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The block is not a block of the ring (family, range, alignment or
    /// below the minimum size).
    #[error("{0} is not a block of the ring")]
    NotABlock(IpNet),
    /// The writer does not own all of the block.
    #[error("{block} is not owned by {writer}")]
    NotOwner {
        /// The block.
        block: IpNet,
        /// Who tried to write.
        writer: PeerId,
    },
    /// The new owner has been reclaimed (a tombstone names it).
    #[error("{0} has been reclaimed and cannot own blocks")]
    DeadOwner(PeerId),
    /// The block's version cannot be raised any more.
    #[error("{0} has reached the highest version")]
    VersionExhausted(IpNet),
}

/// Why a reclaim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReclaimError {
    /// A peer cannot be its own heir.
    #[error("{0} cannot inherit its own blocks")]
    SelfHeir(PeerId),
}

/// A maximal range of addresses with one stamp, `first..=` the next run's
/// first address minus one (or the universe's last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Run {
    pub(crate) first: u128,
    pub(crate) stamp: Stamp,
}

/// The replicated ring of address blocks: a CRDT. See the [module
/// docs](super).
///
/// ```
/// use overlay_ipam::ring::Ring;
/// use overlay_core::PeerId;
///
/// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
/// let mut x = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
/// let mut y = x.clone();
/// // a donates a /26 to b on replica x; y learns it by merge.
/// x.write(a, "10.0.0.0/26".parse().unwrap(), b, 64).unwrap();
/// let report = y.merge(&x);
/// assert!(report.changed && report.anomalies.is_empty());
/// assert_eq!(x, y);
/// assert_eq!(y.entry_at("10.0.0.1".parse().unwrap()).unwrap().owner, b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    genesis: Genesis,
    runs: Vec<Run>,
    /// dead peer -> heir -> highest incarnation named.
    tombstones: BTreeMap<PeerId, BTreeMap<PeerId, u64>>,
}

impl Ring {
    /// The ring of `genesis` divided among `seeds` deterministically: sorted
    /// by id, the universe is halved recursively (the first half of the
    /// seeds gets the first half), so every seed computes the same ring
    /// without any exchange. One seed owns the whole universe.
    ///
    /// ```
    /// use overlay_ipam::ring::{Genesis, Ring};
    /// use overlay_core::PeerId;
    ///
    /// let seeds: Vec<_> = (1..=3).map(PeerId::from_u128).collect();
    /// let g = Genesis::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &seeds).unwrap();
    /// let ring = Ring::with_seeds(g, &seeds).unwrap();
    /// let blocks: Vec<_> = ring.entries().iter().map(|e| (e.block.to_string(), e.owner.as_u128())).collect();
    /// assert_eq!(blocks, [("10.0.0.0/18".to_string(), 1), ("10.0.64.0/18".into(), 2), ("10.0.128.0/17".into(), 3)]);
    /// ```
    pub fn with_seeds(genesis: Genesis, seeds: &[PeerId]) -> Result<Ring, GenesisError> {
        let seeds = sorted_seeds(seeds)?;
        let blocks = 1u128
            .checked_shl(u32::from(
                genesis.min_block_len - genesis.universe.prefix_len(),
            ))
            .unwrap_or(u128::MAX);
        if seeds.len() as u128 > blocks {
            return Err(GenesisError::TooManySeeds {
                seeds: seeds.len(),
                blocks,
            });
        }
        let mut runs = Vec::with_capacity(seeds.len());
        let width = genesis.width();
        // (first address, prefix length, seeds) still to divide.
        let mut stack = vec![(genesis.first(), genesis.universe.prefix_len(), &seeds[..])];
        while let Some((first, len, part)) = stack.pop() {
            if let [owner] = part {
                let free = u32::try_from(host_size(width, len)).unwrap_or(u32::MAX);
                runs.push(Run {
                    first,
                    stamp: Stamp {
                        epoch: 0,
                        version: 0,
                        owner: *owner,
                        free,
                    },
                });
                continue;
            }
            let half = part.len().div_ceil(2);
            let mid = first + host_size(width, len + 1);
            stack.push((mid, len + 1, &part[half..]));
            stack.push((first, len + 1, &part[..half]));
        }
        Ok(Ring {
            genesis,
            runs,
            tombstones: BTreeMap::new(),
        })
    }

    /// [`Genesis::from_seeds`] and [`Ring::with_seeds`] in one: the ring
    /// every seed of `seeds` computes, or (with one seed) the ring of one
    /// named seed.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let v6 = Ring::from_seeds("2001:db8::/96".parse().unwrap(), 122, &[PeerId::from_u128(1)]).unwrap();
    /// assert_eq!(v6.entries().len(), 1);
    /// ```
    pub fn from_seeds(
        universe: IpNet,
        min_block_len: u8,
        seeds: &[PeerId],
    ) -> Result<Ring, GenesisError> {
        Ring::with_seeds(Genesis::from_seeds(universe, min_block_len, seeds)?, seeds)
    }

    /// The ring's genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The number of runs (maximal ranges with one stamp) held: the size of
    /// the state, whatever the number of view blocks.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    pub(crate) fn from_parts(
        genesis: Genesis,
        runs: Vec<Run>,
        tombstones: BTreeMap<PeerId, BTreeMap<PeerId, u64>>,
    ) -> Ring {
        Ring {
            genesis,
            runs,
            tombstones,
        }
    }

    pub(crate) fn run_last(&self, i: usize) -> u128 {
        match self.runs.get(i + 1) {
            Some(next) => next.first - 1,
            None => self.genesis.last(),
        }
    }

    pub(crate) fn tombstone_count(&self) -> usize {
        self.tombstones.values().map(BTreeMap::len).sum()
    }

    /// Every tombstone held, sorted.
    ///
    /// ```
    /// use overlay_ipam::ring::{Ring, Tombstone};
    /// use overlay_core::PeerId;
    ///
    /// let (p, q) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[p, q]).unwrap();
    /// let t = Tombstone { peer: p, up_to_incarnation: 4, heir: q };
    /// ring.reclaim(t).unwrap();
    /// assert_eq!(ring.tombstones(), vec![t]);
    /// ```
    pub fn tombstones(&self) -> Vec<Tombstone> {
        self.tombstones
            .iter()
            .flat_map(|(&peer, heirs)| {
                heirs
                    .iter()
                    .map(move |(&heir, &up_to_incarnation)| Tombstone {
                        peer,
                        up_to_incarnation,
                        heir,
                    })
            })
            .collect()
    }

    /// The winning tombstone of `peer`, if it is dead: the lowest heir, with
    /// the highest incarnation any tombstone named.
    ///
    /// ```
    /// use overlay_ipam::ring::{Ring, Tombstone};
    /// use overlay_core::PeerId;
    ///
    /// let [p, h1, h2] = [3, 1, 2].map(PeerId::from_u128);
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[p, h1, h2]).unwrap();
    /// ring.reclaim(Tombstone { peer: p, up_to_incarnation: 1, heir: h2 }).unwrap();
    /// ring.reclaim(Tombstone { peer: p, up_to_incarnation: 2, heir: h1 }).unwrap();
    /// assert_eq!(ring.tombstone_of(p), Some(Tombstone { peer: p, up_to_incarnation: 2, heir: h1 }));
    /// ```
    pub fn tombstone_of(&self, peer: PeerId) -> Option<Tombstone> {
        let heirs = self.tombstones.get(&peer)?;
        let (&heir, _) = heirs.iter().next()?;
        let up_to_incarnation = heirs.values().copied().max().unwrap_or(0);
        Some(Tombstone {
            peer,
            up_to_incarnation,
            heir,
        })
    }

    /// The live owner of blocks last written by `owner`, and the number of
    /// reclaims between them: follows heirs (lowest first) through chains
    /// of tombstones; a cycle (every peer in it dead) resolves to its
    /// lowest member.
    fn resolve(&self, owner: PeerId) -> (PeerId, u32) {
        if self.tombstones.is_empty() {
            return (owner, 0);
        }
        let mut cur = owner;
        let mut hops = 0u32;
        let mut seen = Vec::new();
        while let Some(heirs) = self.tombstones.get(&cur) {
            let Some((&heir, _)) = heirs.iter().next() else {
                break;
            };
            if seen.contains(&cur) {
                let lowest = seen.iter().copied().min().unwrap_or(cur);
                return (lowest, hops);
            }
            seen.push(cur);
            cur = heir;
            hops = hops.saturating_add(1);
        }
        (cur, hops)
    }

    /// The stamp the view shows for a raw stamp.
    fn view_stamp(&self, raw: Stamp) -> Stamp {
        let (owner, hops) = self.resolve(raw.owner);
        if hops == 0 {
            raw
        } else {
            Stamp {
                epoch: raw.epoch.saturating_add(hops),
                version: 0,
                owner,
                free: raw.free,
            }
        }
    }

    /// The ownership view: tombstones resolved to heirs, every run cut into
    /// aligned CIDR blocks, sorted by address; they tile the universe.
    ///
    /// ```
    /// use overlay_ipam::ring::{Ring, Tombstone};
    /// use overlay_core::PeerId;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
    /// ring.write(a, "10.0.0.64/26".parse().unwrap(), b, 64).unwrap();
    /// let view: Vec<_> = ring.entries().iter().map(|e| (e.block.to_string(), e.owner.as_u128())).collect();
    /// assert_eq!(view[..3], [("10.0.0.0/26".to_string(), 1), ("10.0.0.64/26".into(), 2), ("10.0.0.128/25".into(), 1)]);
    /// ```
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.runs.len());
        for i in 0..self.runs.len() {
            self.push_entries(i, &mut out);
        }
        out
    }

    fn push_entries(&self, i: usize, out: &mut Vec<Entry>) {
        let run = self.runs[i];
        let last = self.run_last(i);
        let view = self.view_stamp(run.stamp);
        let run_size = last - run.first;
        let like = self.genesis.universe.addr();
        let width = self.genesis.width();
        for (first, len) in cidr_cover(run.first, last, width) {
            let size = host_size(width, len);
            let free = if size - 1 == run_size {
                u128::from(view.free)
            } else {
                // Share the run's advisory count by size (scaled down so the
                // product fits: free < 2^32, the sizes < 2^64 after the shift).
                let shift = (128 - run_size.leading_zeros()).saturating_sub(64);
                u128::from(view.free) * (size >> shift) / ((run_size >> shift) + 1)
            };
            out.push(Entry {
                block: net_of(like, first, len),
                owner: view.owner,
                epoch: view.epoch,
                version: view.version,
                free: u32::try_from(free.min(size)).unwrap_or(u32::MAX),
            });
        }
    }

    fn run_index(&self, bits: u128) -> usize {
        self.runs
            .partition_point(|r| r.first <= bits)
            .saturating_sub(1)
    }

    /// The view block holding `ip`, if `ip` is in the universe.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(1)]).unwrap();
    /// assert!(ring.entry_at("10.0.3.4".parse().unwrap()).is_some());
    /// assert!(ring.entry_at("10.1.0.0".parse().unwrap()).is_none());
    /// ```
    pub fn entry_at(&self, ip: IpAddr) -> Option<Entry> {
        if !self.genesis.universe.contains(&ip) {
            return None;
        }
        let i = self.run_index(to_bits(ip));
        let mut blocks = Vec::new();
        self.push_entries(i, &mut blocks);
        blocks.into_iter().find(|e| e.block.contains(&ip))
    }

    /// The view blocks owned by `peer`.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
    /// assert_eq!(ring.entries_of(b)[0].block.to_string(), "10.0.128.0/17");
    /// ```
    pub fn entries_of(&self, peer: PeerId) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..self.runs.len() {
            if self.resolve(self.runs[i].stamp.owner).0 == peer {
                self.push_entries(i, &mut out);
            }
        }
        out
    }

    /// Advisory free addresses per live owner (the view's `free` summed),
    /// for choosing donors.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(1)]).unwrap();
    /// assert_eq!(ring.free_by_owner()[&PeerId::from_u128(1)], 65536);
    /// ```
    pub fn free_by_owner(&self) -> BTreeMap<PeerId, u64> {
        let mut out = BTreeMap::new();
        for run in &self.runs {
            let view = self.view_stamp(run.stamp);
            *out.entry(view.owner).or_insert(0u64) += u64::from(view.free);
        }
        out
    }

    /// Whether `block` is a block of this ring: same family, inside the
    /// universe, aligned, no smaller than the minimum block.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(1)]).unwrap();
    /// assert!(ring.is_block("10.0.1.0/24".parse().unwrap()));
    /// assert!(!ring.is_block("10.0.1.0/28".parse().unwrap())); // below the minimum
    /// assert!(!ring.is_block("10.0.1.1/24".parse().unwrap())); // not aligned
    /// assert!(!ring.is_block("10.1.0.0/24".parse().unwrap())); // outside
    /// ```
    pub fn is_block(&self, block: IpNet) -> bool {
        block.addr().is_ipv4() == self.genesis.universe.addr().is_ipv4()
            && block.trunc() == block
            && block.prefix_len() <= self.genesis.min_block_len
            && block.prefix_len() >= self.genesis.universe.prefix_len()
            && self.genesis.universe.contains(&block.network())
    }
}

fn finish(changed: bool, mut anomalies: Vec<Anomaly>) -> MergeReport {
    anomalies.sort();
    anomalies.dedup();
    MergeReport { changed, anomalies }
}

fn push_run(out: &mut Vec<Run>, first: u128, stamp: Stamp) {
    if out.last().is_some_and(|r| r.stamp == stamp) {
        return;
    }
    out.push(Run { first, stamp });
}

/// 2^(width - len) as u128 (width - len < 128 for every supported universe).
pub(crate) fn host_size(width: u8, len: u8) -> u128 {
    1u128
        .checked_shl(u32::from(width.saturating_sub(len)))
        .unwrap_or(u128::MAX)
}

pub(crate) fn net_of(like: IpAddr, first: u128, len: u8) -> IpNet {
    // `len` never exceeds the family's width here: it comes from cidr_cover
    // over addresses of that family.
    IpNet::new(from_bits(like, first), len).unwrap_or_else(|_| IpNet::from(from_bits(like, first)))
}

/// The aligned CIDR blocks `(first, prefix_len)` that exactly cover
/// `lo..=hi` in an address space of `width` bits, largest possible first.
pub(crate) fn cidr_cover(lo: u128, hi: u128, width: u8) -> impl Iterator<Item = (u128, u8)> {
    let mut next = Some(lo);
    std::iter::from_fn(move || {
        let lo = next?;
        if lo > hi {
            next = None;
            return None;
        }
        let align = lo.trailing_zeros().min(u32::from(width));
        let span = hi - lo;
        let fit = if span == u128::MAX {
            128
        } else {
            127 - (span + 1).leading_zeros()
        };
        let host = align.min(fit);
        let len = width - host as u8;
        let block_last = lo + low_mask(host);
        next = if block_last >= hi {
            None
        } else {
            Some(block_last + 1)
        };
        Some((lo, len))
    })
}

/// The `bits` lowest bits set (all 128 for `bits >= 128`).
pub(crate) fn low_mask(bits: u32) -> u128 {
    1u128.checked_shl(bits).map_or(u128::MAX, |b| b - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_cover_splits_unaligned_ranges_into_largest_blocks() {
        let got: Vec<_> = cidr_cover(0x40, 0xff, 32).collect();
        assert_eq!(got, [(0x40, 26), (0x80, 25)]);
        let got: Vec<_> = cidr_cover(0, u128::MAX, 128).collect();
        assert_eq!(got, [(0, 0)]);
        let got: Vec<_> = cidr_cover(5, 5, 32).collect();
        assert_eq!(got, [(5, 32)]);
        let got: Vec<_> = cidr_cover(0, u32::MAX.into(), 32).collect();
        assert_eq!(got, [(0, 0)]);
    }

    #[test]
    fn genesis_halves_recursively_and_gives_every_seed_one_block() {
        let seeds: Vec<_> = (1..=5).map(PeerId::from_u128).collect();
        let ring = Ring::from_seeds("10.0.0.0/8".parse().unwrap(), 26, &seeds).unwrap();
        let owners: Vec<_> = ring.entries().iter().map(|e| e.owner.as_u128()).collect();
        assert_eq!(owners, [1, 2, 3, 4, 5]);
        let too_many = Ring::from_seeds("10.0.0.0/25".parse().unwrap(), 26, &seeds);
        assert!(matches!(too_many, Err(GenesisError::TooManySeeds { .. })));
    }

    #[test]
    fn apply_range_coalesces_back_to_one_run() {
        let p = PeerId::from_u128(1);
        let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[p]).unwrap();
        let r = ring.write(p, "10.0.1.0/26".parse().unwrap(), p, 5).unwrap();
        assert_eq!(ring.run_count(), 3);
        let mut ignored = Vec::new();
        // The same stamp over the rest: one run again.
        ring.apply_range(0x0a00_0000, 0x0a00_00ff, r.stamp, &mut ignored);
        ring.apply_range(0x0a00_0140, 0x0a00_ffff, r.stamp, &mut ignored);
        assert_eq!(ring.run_count(), 1);
    }
}
