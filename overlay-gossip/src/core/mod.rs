//! The sans-IO gossip state machine.
//!
//! [`Gossip`] holds this peer's view (one [`PeerRecord`] per live peer),
//! disseminates changes, runs anti-entropy and SWIM, and delivers channel
//! messages. It never reads a clock or touches a socket: the caller passes
//! `now` (any monotonic [`Duration`] origin) into every call and moves
//! datagrams between [`Gossip::poll_transmit`] / [`Gossip::handle_datagram`]
//! and the network.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use overlay_core::PeerId;
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::digest::{Digest, bucket_range};
use crate::record::{FLAG_LEAVING, PeerRecord, RecordError};
use crate::swim::{
    FocaMembership, MemberEvent, Membership, SwimConfig, SwimId, decode_swim_header,
};
use crate::wire::{
    self, DecodeError, Frame, HEADER_LEN, MAX_CHANNEL_NAME, MAX_DATAGRAM_LEN, MAX_DIGEST_BITS,
    MAX_FRAME_LEN, MAX_PULL_IDS, MAX_SUMMARY_ENTRIES, MAX_VERSION, MIN_VERSION, Message, Stamp,
};

/// Depth of the first digest of an anti-entropy exchange (64 buckets, 512 B).
const AE_TOP_BITS: u8 = 6;
/// How many levels a drill-down descends at once (64 children).
const AE_STEP_BITS: u8 = 6;
/// A bucket with at most this many records is answered with a summary
/// instead of a finer digest.
const SUMMARY_THRESHOLD: usize = 16;
/// Broadcast ids remembered for deduplication.
const SEEN_CAPACITY: usize = 16_384;
/// Events kept for the application before the oldest are dropped.
const EVENT_CAPACITY: usize = 65_536;
/// Addresses remembered for rate-limiting `Versions` answers.
const VERSIONS_MEMORY: usize = 1024;

mod channels;
mod dissemination;
mod merge;

/// Configuration of a [`Gossip`] core.
///
/// ```
/// use std::time::Duration;
/// use overlay_core::PeerId;
/// use overlay_gossip::{Config, PeerRecord};
///
/// let mut me = PeerRecord::new(PeerId::from_u128(1));
/// me.underlay = vec!["192.0.2.1:7946".parse().unwrap()];
/// let cfg = Config::new(me).with_fanout(4).with_gossip_interval(Duration::from_millis(100));
/// assert_eq!(cfg.fanout, 4);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// This peer's own record: id, incarnation (larger after every restart)
    /// and the fields it publishes. Its `underlay[0]` is the gossip endpoint.
    pub record: PeerRecord,
    /// Peers a change is pushed to per gossip round.
    pub fanout: usize,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Sends per change are `retransmit_mult · ⌈log2(N + 1)⌉` (at least
    /// `fanout`).
    pub retransmit_mult: u32,
    /// Time between anti-entropy exchanges (one random neighbour each).
    pub anti_entropy_interval: Duration,
    /// Most peers this node pushes deltas to and runs anti-entropy with.
    pub max_neighbours: usize,
    /// SWIM probe period.
    pub probe_period: Duration,
    /// SWIM probe round-trip timeout.
    pub probe_rtt: Duration,
    /// How long a suspect has to refute before it is declared down.
    pub suspect_to_down: Duration,
    /// How often SWIM re-announces to peers it considers down (so healed
    /// partitions merge).
    pub announce_down_every: Duration,
    /// How long a departed peer is remembered (so old records of it are
    /// refused) before it is forgotten.
    pub tombstone_ttl: Duration,
    /// The expected cluster size (tunes SWIM's retransmissions).
    pub expected_size: u32,
}

impl Config {
    /// Defaults for a LAN cluster around this peer's record.
    pub fn new(record: PeerRecord) -> Self {
        Config {
            record,
            fanout: 3,
            gossip_interval: Duration::from_millis(200),
            retransmit_mult: 2,
            anti_entropy_interval: Duration::from_secs(10),
            max_neighbours: 64,
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down: Duration::from_secs(5),
            announce_down_every: Duration::from_secs(10),
            tombstone_ttl: Duration::from_secs(300),
            expected_size: 256,
        }
    }

    /// Sets [`Config::fanout`] (at least 1).
    pub fn with_fanout(mut self, fanout: usize) -> Self {
        self.fanout = fanout.max(1);
        self
    }

    /// Sets [`Config::gossip_interval`].
    pub fn with_gossip_interval(mut self, d: Duration) -> Self {
        self.gossip_interval = d;
        self
    }

    /// Sets [`Config::anti_entropy_interval`].
    pub fn with_anti_entropy_interval(mut self, d: Duration) -> Self {
        self.anti_entropy_interval = d;
        self
    }

    /// Sets [`Config::max_neighbours`] (at least 1).
    pub fn with_max_neighbours(mut self, n: usize) -> Self {
        self.max_neighbours = n.max(1);
        self
    }

    /// Sets [`Config::tombstone_ttl`].
    pub fn with_tombstone_ttl(mut self, d: Duration) -> Self {
        self.tombstone_ttl = d;
        self
    }

    /// Sets [`Config::expected_size`].
    pub fn with_expected_size(mut self, n: u32) -> Self {
        self.expected_size = n;
        self
    }
}

/// A datagram for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// The datagram (one or more frames).
    pub payload: Vec<u8>,
}

/// A registered channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId(u16);

/// What the core reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer's record arrived for the first time (or after it had gone).
    PeerUp(PeerRecord),
    /// A known peer published a newer record.
    PeerChanged(PeerRecord),
    /// A peer left or was declared dead.
    PeerDown(PeerId),
    /// A message on a registered channel.
    ChannelMessage {
        /// The channel.
        channel: ChannelId,
        /// The peer that sent it (the origin, for broadcasts).
        from: PeerId,
        /// The payload.
        bytes: Vec<u8>,
    },
    /// The cluster had declared this peer down; it rejoined with a new
    /// incarnation.
    Renewed {
        /// The new incarnation.
        incarnation: u64,
    },
    /// A peer speaks no protocol version in common with us.
    IncompatiblePeer {
        /// Its address.
        addr: SocketAddr,
        /// Its oldest version.
        min: u8,
        /// Its newest version.
        max: u8,
    },
}

/// Frames and datagrams refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// Undecodable frames (bad magic, truncated, invalid field).
    pub malformed: u64,
    /// Frames of a protocol version we do not speak.
    pub unsupported_version: u64,
    /// Frames of an unknown message type (skipped).
    pub unknown_type: u64,
    /// Datagrams over [`MAX_DATAGRAM_LEN`].
    pub too_big: u64,
    /// Frames claiming to come from this peer.
    pub from_self: u64,
    /// Frames or records whose claimed peer is bound to another static key.
    pub key_mismatch: u64,
    /// Frames whose inner sender differs from the frame sender.
    pub spoofed_sender: u64,
    /// SWIM payloads foca refused.
    pub swim: u64,
    /// Channel messages for a channel nobody registered.
    pub unknown_channel: u64,
    /// `Versions` answers with no common version.
    pub incompatible_peer: u64,
    /// Events dropped because the application did not poll them.
    pub events_dropped: u64,
}

/// Traffic and merge counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Datagrams handed in.
    pub datagrams_in: u64,
    /// Datagrams handed out.
    pub datagrams_out: u64,
    /// Frames accepted.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes handed in.
    pub bytes_in: u64,
    /// Bytes handed out.
    pub bytes_out: u64,
    /// Records that changed the view.
    pub records_merged: u64,
    /// Records older than (or equal to) what the view holds.
    pub records_stale: u64,
    /// Refusals by reason.
    pub rejected: Rejected,
}

/// Errors of the channel API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel name is empty or longer than [`MAX_CHANNEL_NAME`].
    #[error("channel name must be 1 to {MAX_CHANNEL_NAME} bytes, got {len}")]
    BadName {
        /// Its length.
        len: usize,
    },
    /// The channel was not registered here.
    #[error("channel not registered")]
    UnknownChannel,
    /// The peer is not in the view or has no gossip endpoint.
    #[error("peer {0} is unknown or has no address")]
    UnknownPeer(PeerId),
    /// The payload does not fit one frame.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooBig {
        /// Its length.
        len: usize,
        /// The limit for this channel.
        max: usize,
    },
}

struct Tombstone {
    incarnation: u64,
    version: u64,
    expires: Duration,
    /// The leaving record, kept while it is still being forwarded.
    record: Option<Arc<PeerRecord>>,
}

struct PendingBroadcast {
    origin: PeerId,
    seq: u64,
    channel: String,
    payload: Vec<u8>,
    remaining: u32,
}

/// The gossip core. See the [crate docs](crate) for the protocol.
///
/// ```
/// use std::time::Duration;
/// use overlay_core::PeerId;
/// use overlay_gossip::{Config, Event, Gossip, PeerRecord};
/// use rand::{SeedableRng, rngs::SmallRng};
///
/// let mk = |n: u128, port: u16| {
///     let mut r = PeerRecord::new(PeerId::from_u128(n));
///     r.underlay = vec![format!("192.0.2.{n}:{port}").parse().unwrap()];
///     Gossip::new(Config::new(r), &mut SmallRng::seed_from_u64(n as u64))
/// };
/// let (mut a, mut b) = (mk(1, 7946), mk(2, 7946));
/// let (addr_a, addr_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
/// let mut now = Duration::ZERO;
/// b.join(now, addr_a);
/// // A perfect network: move every datagram at once, then advance time.
/// for _ in 0..50 {
///     while let Some(t) = a.poll_transmit() { b.handle_datagram(now, addr_a, None, &t.payload); }
///     while let Some(t) = b.poll_transmit() { a.handle_datagram(now, addr_b, None, &t.payload); }
///     now += Duration::from_millis(100);
///     a.handle_timeout(now);
///     b.handle_timeout(now);
/// }
/// assert!(a.peer(PeerId::from_u128(2)).is_some());
/// assert!(b.peer(PeerId::from_u128(1)).is_some());
/// assert!(matches!(a.poll_event(), Some(Event::PeerUp(_))));
/// ```
pub struct Gossip {
    cfg: Config,
    me: PeerId,
    rng: SmallRng,
    swim: Box<dyn Membership + Send>,
    peers: BTreeMap<PeerId, Arc<PeerRecord>>,
    /// Live peers other than us, for uniform random choice.
    live_ids: Vec<PeerId>,
    tombstones: HashMap<PeerId, Tombstone>,
    digest: Digest,
    pending: HashMap<PeerId, u32>,
    broadcasts: Vec<PendingBroadcast>,
    seen: HashSet<(PeerId, u64)>,
    seen_order: VecDeque<(PeerId, u64)>,
    channels: Vec<String>,
    broadcast_seq: u64,
    neighbours: Vec<PeerId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_gossip: Duration,
    next_anti_entropy: Duration,
    next_gc: Duration,
    join_seed: Option<(SocketAddr, Duration, Duration)>,
    versions_replied: HashMap<SocketAddr, Duration>,
    left: bool,
    counters: Counters,
}

impl Gossip {
    /// A core for `config`, drawing its randomness from `rng` (seed it for
    /// deterministic runs).
    pub fn new(config: Config, rng: &mut impl Rng) -> Self {
        let mut own = SmallRng::from_rng(rng);
        let swim_rng = SmallRng::from_rng(&mut own);
        let me = config.record.id;
        let id = SwimId {
            peer: me,
            incarnation: config.record.incarnation,
            addr: config
                .record
                .gossip_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        let swim_cfg = SwimConfig {
            probe_period: config.probe_period,
            probe_rtt: config.probe_rtt,
            suspect_to_down: config.suspect_to_down,
            remove_down_after: config.tombstone_ttl,
            announce_down_every: config.announce_down_every,
            expected_size: config.expected_size,
        };
        let swim = Box::new(FocaMembership::new(id, &swim_cfg, swim_rng));
        let mut g = Gossip {
            me,
            rng: own,
            swim,
            peers: BTreeMap::new(),
            live_ids: Vec::new(),
            tombstones: HashMap::new(),
            digest: Digest::new(),
            pending: HashMap::new(),
            broadcasts: Vec::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            channels: Vec::new(),
            broadcast_seq: 0,
            neighbours: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_gossip: Duration::ZERO,
            next_anti_entropy: Duration::ZERO,
            next_gc: Duration::ZERO,
            join_seed: None,
            versions_replied: HashMap::new(),
            left: false,
            counters: Counters::default(),
            cfg: config,
        };
        let own_record = Arc::new(g.cfg.record.clone());
        g.digest.add(&stamp_of(&own_record));
        g.peers.insert(me, own_record);
        g.next_anti_entropy = g.jitter(g.cfg.anti_entropy_interval);
        g
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        let ms = d.as_millis().max(1) as u64;
        Duration::from_millis(self.rng.random_range(0..ms))
    }

    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.me
    }

    /// This peer's gossip endpoint (its record's first underlay endpoint).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local().gossip_addr()
    }

    /// This peer's own record.
    pub fn local(&self) -> &PeerRecord {
        // The own record is inserted in `new` and never removed.
        self.peers
            .get(&self.me)
            .map(Arc::as_ref)
            .unwrap_or(&self.cfg.record)
    }

    /// The live record of `id`, if any (this peer's own included).
    pub fn peer(&self, id: PeerId) -> Option<&PeerRecord> {
        self.peers.get(&id).map(Arc::as_ref)
    }

    /// All live records, ascending by id (this peer's own included).
    pub fn peers(&self) -> impl Iterator<Item = &PeerRecord> {
        self.peers.values().map(Arc::as_ref)
    }

    /// Number of live records (this peer's own included).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when the view holds only this peer.
    pub fn is_empty(&self) -> bool {
        self.peers.len() <= 1
    }

    /// The current anti-entropy neighbours (at most
    /// [`Config::max_neighbours`]); the driver may keep sessions to these.
    pub fn neighbours(&self) -> &[PeerId] {
        &self.neighbours
    }

    /// Members SWIM tracks (alive, suspect or recently down).
    pub fn swim_members(&self) -> usize {
        self.swim.num_members()
    }

    /// Departed peers still remembered.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// Counters since creation.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Approximate bytes of memory this core holds for its view: records,
    /// indexes, digest, SWIM state, queues.
    pub fn memory_usage(&self) -> usize {
        // A BTreeMap node holds up to 11 entries with two pointers of
        // overhead per entry on average; the Arc adds two counters.
        let map_entry = std::mem::size_of::<PeerId>() + std::mem::size_of::<Arc<PeerRecord>>() + 16;
        let records: usize = self.peers.values().map(|r| r.memory_size() + 16).sum();
        let tomb = self.tombstones.len()
            * (std::mem::size_of::<PeerId>() + std::mem::size_of::<Tombstone>() + 8);
        records
            + self.peers.len() * map_entry
            + self.live_ids.capacity() * std::mem::size_of::<PeerId>()
            + tomb
            + self.pending.capacity() * (std::mem::size_of::<PeerId>() + 4 + 8)
            + self.seen.capacity() * 32
            + self.seen_order.capacity() * 24
            + self.neighbours.capacity() * 16
            + self.digest.memory_size()
            + self.swim.memory_size()
    }

    /// A digest of the whole view (the XOR of every live record's stamp
    /// hash); equal views have equal fingerprints.
    pub fn view_fingerprint(&self) -> u64 {
        self.digest.hash_at(0, 0)
    }

    // ----- application API -------------------------------------------------

    /// Contacts a seed to join its cluster; retried with backoff until a
    /// peer is known.
    pub fn join(&mut self, now: Duration, seed: SocketAddr) {
        self.left = false;
        self.send_join(seed);
        self.join_seed = Some((seed, now + Duration::from_secs(1), Duration::from_secs(1)));
    }

    fn send_join(&mut self, seed: SocketAddr) {
        let rec = self.local().clone();
        self.send_frames(seed, vec![Message::Join(rec)]);
    }

    /// Leaves gracefully: publishes a leaving record and tells SWIM. The
    /// core stays quiet afterwards; drain [`Gossip::poll_transmit`] before
    /// dropping it.
    pub fn leave(&mut self, now: Duration) {
        if self.left {
            return;
        }
        let mut rec = self.local().clone();
        rec.flags |= FLAG_LEAVING;
        rec.version += 1;
        self.replace_own(now, rec);
        // No more rounds will run: push the leave to twice the fan-out now.
        let own = self.local().clone();
        let targets = self.choose_targets(self.cfg.fanout * 2);
        for t in targets {
            if let Some(addr) = self.addr_of(t) {
                self.send_frames(addr, vec![Message::Records(vec![own.clone()])]);
            }
        }
        self.swim.leave(now);
        self.drain_swim(now);
        self.left = true;
        self.join_seed = None;
    }

    /// Changes this peer's record: `f` edits a copy; the id and incarnation
    /// stay, the version is bumped when anything changed, and the change is
    /// disseminated.
    ///
    /// ```
    /// # use overlay_core::PeerId;
    /// # use overlay_gossip::{Config, Gossip, PeerRecord};
    /// # use rand::{SeedableRng, rngs::SmallRng};
    /// # let mut g = Gossip::new(Config::new(PeerRecord::new(PeerId::from_u128(1))), &mut SmallRng::seed_from_u64(1));
    /// let now = std::time::Duration::ZERO;
    /// g.update_local(now, |r| r.name = "node-1".into()).unwrap();
    /// assert_eq!(g.local().version, 1);
    /// ```
    pub fn update_local(
        &mut self,
        now: Duration,
        f: impl FnOnce(&mut PeerRecord),
    ) -> Result<(), RecordError> {
        let cur = self.local().clone();
        let mut next = cur.clone();
        f(&mut next);
        next.id = cur.id;
        next.incarnation = cur.incarnation;
        next.version = cur.version;
        next.validate()?;
        if next != cur {
            next.version += 1;
            self.replace_own(now, next);
        }
        Ok(())
    }

    fn replace_own(&mut self, now: Duration, rec: PeerRecord) {
        let swim_id_now = self.swim.identity();
        if swim_id_now.incarnation != rec.incarnation {
            let addr = rec.gossip_addr().unwrap_or(swim_id_now.addr);
            self.swim.change_identity(now, swim_id(&rec, addr));
            self.drain_swim(now);
        }
        let rec = Arc::new(rec);
        if let Some(old) = self.peers.insert(self.me, rec.clone()) {
            self.digest.remove(&stamp_of(&old));
        }
        self.digest.add(&stamp_of(&rec));
        self.cfg.record = (*rec).clone();
        let budget = self.budget();
        self.pending.insert(self.me, budget);
    }

    /// Seeds the view with records kept from an earlier run (or, in the
    /// simulator, a converged cluster): merged without events and without
    /// dissemination; anti-entropy reconciles them with the cluster. SWIM
    /// starts probing them as members.
    pub fn restore(&mut self, now: Duration, records: impl IntoIterator<Item = Arc<PeerRecord>>) {
        for rec in records {
            if rec.id == self.me || rec.validate().is_err() || rec.is_leaving() {
                continue;
            }
            if self
                .peers
                .get(&rec.id)
                .is_some_and(|c| c.stamp() >= rec.stamp())
            {
                continue;
            }
            if let Some(addr) = rec.gossip_addr() {
                self.swim.add_member(now, swim_id(&rec, addr));
            }
            self.insert_live(rec);
        }
        self.live_ids.shrink_to_fit();
        self.drain_swim(now);
    }

    // ----- sans-IO plumbing ------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Gossip::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.left {
            return None;
        }
        let mut t = self
            .next_gossip
            .min(self.next_anti_entropy)
            .min(self.next_gc);
        if let Some(s) = self.swim.poll_timeout() {
            t = t.min(s);
        }
        if let Some((_, at, _)) = self.join_seed {
            t = t.min(at);
        }
        Some(t)
    }

    /// Runs everything due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.left {
            return;
        }
        self.swim.handle_timeout(now);
        self.drain_swim(now);
        if let Some((seed, at, backoff)) = self.join_seed
            && at <= now
        {
            if self.live_ids.is_empty() {
                self.send_join(seed);
                let backoff = (backoff * 2).min(Duration::from_secs(30));
                self.join_seed = Some((seed, now + backoff, backoff));
            } else {
                self.join_seed = None;
            }
        }
        if self.next_gossip <= now {
            self.next_gossip = now + self.cfg.gossip_interval;
            self.gossip_round();
        }
        if self.next_anti_entropy <= now {
            self.next_anti_entropy = now + self.cfg.anti_entropy_interval;
            self.anti_entropy_round();
        }
        if self.next_gc <= now {
            self.next_gc = now + (self.cfg.tombstone_ttl / 8).max(Duration::from_millis(100));
            self.gc(now);
        }
    }

    /// Handles one datagram from `from`. `sender_static` is the Noise static
    /// key that authenticated it (`None` in unencrypted mode): frames that
    /// claim a peer whose record carries another key are dropped and counted.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        from: SocketAddr,
        sender_static: Option<[u8; 32]>,
        bytes: &[u8],
    ) {
        self.counters.datagrams_in += 1;
        self.counters.bytes_in += bytes.len() as u64;
        if self.left {
            return;
        }
        if bytes.len() > MAX_DATAGRAM_LEN {
            self.counters.rejected.too_big += 1;
            return;
        }
        for item in wire::parse_frames(bytes) {
            match item {
                Ok(frame) => self.handle_frame(now, from, sender_static, frame),
                Err(DecodeError::UnsupportedVersion { .. }) => {
                    self.counters.rejected.unsupported_version += 1;
                    self.answer_versions(now, from);
                }
                Err(_) => self.counters.rejected.malformed += 1,
            }
        }
        self.drain_swim(now);
    }

    fn answer_versions(&mut self, now: Duration, to: SocketAddr) {
        if self
            .versions_replied
            .get(&to)
            .is_some_and(|&t| now < t + Duration::from_secs(10))
        {
            return;
        }
        if self.versions_replied.len() >= VERSIONS_MEMORY {
            self.versions_replied.clear();
        }
        self.versions_replied.insert(to, now);
        self.send_frames(
            to,
            vec![Message::Versions {
                min: MIN_VERSION,
                max: MAX_VERSION,
            }],
        );
    }

    fn handle_frame(
        &mut self,
        now: Duration,
        from: SocketAddr,
        key: Option<[u8; 32]>,
        frame: Frame,
    ) {
        let sender = frame.sender;
        if sender == self.me {
            self.counters.rejected.from_self += 1;
            return;
        }
        if let Some(k) = key
            && self.peers.get(&sender).is_some_and(|r| r.noise_static != k)
        {
            self.counters.rejected.key_mismatch += 1;
            return;
        }
        if matches!(frame.message, Message::Other { .. }) {
            self.counters.rejected.unknown_type += 1;
            return;
        }
        self.counters.frames_in += 1;
        match frame.message {
            Message::Versions { min, max } => {
                if wire::negotiate(min, max).is_none() {
                    self.counters.rejected.incompatible_peer += 1;
                    self.push_event(Event::IncompatiblePeer {
                        addr: from,
                        min,
                        max,
                    });
                }
            }
            Message::Swim(payload) => match decode_swim_header(&payload) {
                Ok(h) if h.src.peer == sender => {
                    if self.swim.handle_data(now, &payload).is_err() {
                        self.counters.rejected.swim += 1;
                    }
                }
                Ok(_) => self.counters.rejected.spoofed_sender += 1,
                Err(_) => self.counters.rejected.swim += 1,
            },
            Message::Records(records) => {
                for r in records {
                    self.merge(now, r, sender, key);
                }
            }
            Message::Join(rec) => {
                if rec.id != sender {
                    self.counters.rejected.spoofed_sender += 1;
                    return;
                }
                self.merge(now, rec, sender, key);
                let own = self.local().clone();
                self.send_frames(from, vec![Message::Records(vec![own])]);
                self.send_digest(from);
            }
            Message::Digest {
                bits,
                first,
                hashes,
            } => self.on_digest(from, bits, usize::from(first), &hashes),
            Message::Summary { lo, hi, entries } => {
                if lo > hi {
                    self.counters.rejected.malformed += 1;
                } else {
                    self.on_summary(from, lo, hi, &entries);
                }
            }
            Message::Pull(ids) => {
                let recs: Vec<PeerRecord> = ids
                    .iter()
                    .filter_map(|id| self.peers.get(id).map(|r| (**r).clone()))
                    .collect();
                self.send_records(from, recs);
            }
            Message::Broadcast {
                origin,
                seq,
                channel,
                payload,
            } => self.on_broadcast(origin, seq, channel, payload),
            Message::Unicast { channel, payload } => {
                match self.channels.iter().position(|c| *c == channel) {
                    Some(i) => self.push_event(Event::ChannelMessage {
                        channel: ChannelId(i as u16),
                        from: sender,
                        bytes: payload,
                    }),
                    None => self.counters.rejected.unknown_channel += 1,
                }
            }
            // Counted above; later message types of this version would
            // land here too.
            _ => self.counters.rejected.unknown_type += 1,
        }
    }

    // ----- records ---------------------------------------------------------

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= EVENT_CAPACITY {
            self.events.pop_front();
            self.counters.rejected.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    // ----- dissemination ---------------------------------------------------

    // ----- anti-entropy ----------------------------------------------------

    // ----- output ----------------------------------------------------------
}

fn stamp_of(r: &PeerRecord) -> Stamp {
    Stamp {
        id: r.id,
        incarnation: r.incarnation,
        version: r.version,
    }
}

fn swim_id(r: &PeerRecord, addr: SocketAddr) -> SwimId {
    SwimId {
        peer: r.id,
        incarnation: r.incarnation,
        addr,
    }
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("id", &self.me)
            .field("peers", &self.peers.len())
            .field("tombstones", &self.tombstones.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}
