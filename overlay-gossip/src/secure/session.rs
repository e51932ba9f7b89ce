//! The session table: handshakes, transport sessions and their timers, keyed
//! by the remote socket address.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use rand::{CryptoRng, Rng, SeedableRng, rngs::StdRng};
use snow::{Builder, HandshakeState, StatelessTransportState, params::NoiseParams};

use super::{
    config::{Datagram, Opened, Reject, SealError, SecureConfig, SecureStats, Security},
    frame::{Frame, MAX_HANDSHAKE_LEN, Pattern, TAG_LEN, TRANSPORT_OVERHEAD, transport_header},
    keys::{KEY_LEN, Psk, SeededResolver, StaticKeypair},
    limit::HandshakeLimiter,
    replay::{ReplayError, ReplayWindow},
};

/// Mixed into every handshake hash: a peer of another protocol (or a later
/// incompatible version of this one) cannot complete a handshake with us.
const PROLOGUE: &[u8] = b"overlay-gossip noise v1";

/// The largest plaintext [`SecureLayer::seal`] accepts: a Noise message is at
/// most 65,535 bytes with its tag, and a UDP datagram at most 65,507.
pub const MAX_PLAINTEXT: usize = 65_507 - TRANSPORT_OVERHEAD;

/// A session refuses to send or receive counters at or above this value; a
/// rekey starts long before ([`SecureConfig::rekey_after_messages`]).
const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 16);

/// Length of the handshake timestamp payload (nanoseconds, big-endian).
const TIMESTAMP_LEN: usize = 8;

/// A transport session: the keys of one completed handshake.
struct Session {
    local_index: u32,
    remote_index: u32,
    transport: StatelessTransportState,
    remote_static: [u8; KEY_LEN],
    send_counter: u64,
    replay: ReplayWindow,
    established: Duration,
    last_received: Duration,
    last_sent: Duration,
    initiator: bool,
}

impl Session {
    fn expired(&self, now: Duration, config: &SecureConfig) -> bool {
        now.saturating_sub(self.established) >= config.reject_after_time
            || self.send_counter >= REJECT_AFTER_MESSAGES
    }

    fn encrypt(&mut self, now: Duration, plaintext: &[u8]) -> Option<Vec<u8>> {
        let counter = self.send_counter;
        let header = transport_header(self.remote_index, counter);
        let mut out = vec![0u8; header.len() + plaintext.len() + TAG_LEN];
        out[..header.len()].copy_from_slice(&header);
        let written = self
            .transport
            .write_message(counter, plaintext, &mut out[header.len()..])
            .ok()?;
        out.truncate(header.len() + written);
        self.send_counter += 1;
        self.last_sent = now;
        Some(out)
    }
}

enum Initiating {
    /// Message 1 sent; waiting for message 2.
    Sent {
        hs: Box<HandshakeState>,
        local_index: u32,
        pattern: Pattern,
    },
    /// XXpsk3 message 3 sent; the responder confirms with a transport
    /// datagram (only it can check our PSK).
    AwaitConfirm(Box<Session>),
    /// The last attempt failed; the next starts at the deadline.
    Failed,
}

struct Initiator {
    stage: Initiating,
    attempts: u32,
    deadline: Duration,
}

enum Responding {
    /// XXpsk3 message 2 sent; waiting for message 3.
    AwaitFinish {
        hs: Box<HandshakeState>,
        local_index: u32,
        remote_index: u32,
    },
    /// IKpsk2 message 2 sent; the initiator confirms with a transport
    /// datagram (it proves it derived the same keys).
    AwaitConfirm(Box<Session>),
}

struct Responder {
    stage: Responding,
    deadline: Duration,
}

#[derive(Default)]
struct Peer {
    remote_static: Option<[u8; KEY_LEN]>,
    current: Option<Box<Session>>,
    previous: Option<Box<Session>>,
    initiator: Option<Initiator>,
    responder: Option<Responder>,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
}

impl Peer {
    fn is_idle(&self) -> bool {
        self.current.is_none()
            && self.previous.is_none()
            && self.initiator.is_none()
            && self.responder.is_none()
            && self.queue.is_empty()
    }

    fn local_indices(&self) -> impl Iterator<Item = u32> + '_ {
        let sessions = [self.current.as_deref(), self.previous.as_deref()]
            .into_iter()
            .flatten();
        let init = self.initiator.as_ref().and_then(|i| match &i.stage {
            Initiating::Sent { local_index, .. } => Some(*local_index),
            Initiating::AwaitConfirm(s) => Some(s.local_index),
            Initiating::Failed => None,
        });
        let resp = self.responder.as_ref().map(|r| match &r.stage {
            Responding::AwaitFinish { local_index, .. } => *local_index,
            Responding::AwaitConfirm(s) => s.local_index,
        });
        sessions.map(|s| s.local_index).chain(init).chain(resp)
    }
}

struct Keys {
    psk: Psk,
    keypair: StaticKeypair,
    xx: NoiseParams,
    ik: NoiseParams,
}

/// The secure layer: a sans-IO table of Noise sessions keyed by the remote
/// socket address, between the gossip core and the UDP socket.
///
/// [`seal`](Self::seal) turns a gossip frame for an address into datagrams
/// (starting a handshake and queueing the frame when there is no session);
/// [`open`](Self::open) turns a received datagram into a gossip frame and the
/// sender's authenticated static key; [`handle_timeout`](Self::handle_timeout)
/// at [`poll_timeout`](Self::poll_timeout) retries handshakes and expires
/// sessions. Time is passed in; randomness comes from a seed given at
/// construction.
///
/// Handshakes: `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` when the remote static
/// key is unknown (joining through a seed address), `Noise_IKpsk2_...` when it
/// is known ([`learn_static`](Self::learn_static), or from an earlier XX
/// handshake). A session carries data only once both sides proved they hold
/// the cluster key: after XXpsk3 the responder confirms with an empty
/// transport datagram, after IKpsk2 the initiator does.
///
/// ```
/// use std::time::Duration;
/// use overlay_gossip::secure::{Psk, SecureConfig, SecureLayer, StaticKeypair};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(7);
/// let psk = Psk::from_key([1u8; 32], "cluster")?;
/// let (a_addr, b_addr) = ("192.0.2.1:7946".parse()?, "192.0.2.2:7946".parse()?);
/// let mut a = SecureLayer::encrypted(psk.clone(), StaticKeypair::generate(&mut rng), SecureConfig::default(), &mut rng);
/// let mut b = SecureLayer::encrypted(psk, StaticKeypair::generate(&mut rng), SecureConfig::default(), &mut rng);
/// let now = Duration::from_secs(1);
///
/// // A has no session with B yet: the frame waits while a handshake runs.
/// let mut to_b = a.seal(now, b_addr, b"ping")?;
/// let mut received = Vec::new();
/// while !to_b.is_empty() {
///     let mut to_a = Vec::new();
///     for d in to_b.drain(..) {
///         let opened = b.open(now, a_addr, &d.bytes).expect("B accepts A");
///         received.extend(opened.plaintext);
///         to_a.extend(opened.replies);
///     }
///     for d in to_a {
///         to_b.extend(a.open(now, b_addr, &d.bytes).expect("A accepts B").replies);
///     }
/// }
/// assert_eq!(received, [b"ping".to_vec()]);
/// assert_eq!(a.remote_static(b_addr), Some(*b.local_static().unwrap()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SecureLayer {
    keys: Option<Keys>,
    config: SecureConfig,
    rng: StdRng,
    peers: HashMap<SocketAddr, Peer>,
    by_index: HashMap<u32, SocketAddr>,
    limiter: HandshakeLimiter,
    ik_timestamps: HashMap<[u8; KEY_LEN], u64>,
    stats: SecureStats,
}

impl std::fmt::Debug for SecureLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureLayer")
            .field("security", &self.security())
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn noise_params(pattern: Pattern) -> NoiseParams {
    // Invariant: `noise_name` is one of two constant protocol names that
    // snow's default resolver supports; every test builds both.
    pattern
        .noise_name()
        .parse()
        .expect("constant Noise protocol name parses")
}

impl SecureLayer {
    /// An encrypted layer with the cluster key and this node's static key.
    /// `rng` seeds the layer's own generator (ephemeral keys, indices).
    pub fn encrypted<R: CryptoRng + ?Sized>(
        psk: Psk,
        keypair: StaticKeypair,
        config: SecureConfig,
        rng: &mut R,
    ) -> Self {
        let keys = Keys {
            psk,
            keypair,
            xx: noise_params(Pattern::Xxpsk3),
            ik: noise_params(Pattern::Ikpsk2),
        };
        Self::new(Some(keys), config, rng)
    }

    /// The explicit unencrypted mode, for clusters without a password:
    /// frames travel in plain text and [`security`](Self::security) says so.
    pub fn unencrypted<R: CryptoRng + ?Sized>(config: SecureConfig, rng: &mut R) -> Self {
        Self::new(None, config, rng)
    }

    fn new<R: CryptoRng + ?Sized>(keys: Option<Keys>, config: SecureConfig, rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let limiter = HandshakeLimiter::new(
            config.handshake_rate_per_source,
            config.handshake_rate_global,
            config.max_peers,
        );
        Self {
            keys,
            config,
            rng: StdRng::from_seed(seed),
            peers: HashMap::new(),
            by_index: HashMap::new(),
            limiter,
            ik_timestamps: HashMap::new(),
            stats: SecureStats::default(),
        }
    }

    /// Whether gossip is encrypted.
    pub fn security(&self) -> Security {
        if self.keys.is_some() {
            Security::Encrypted
        } else {
            Security::Unencrypted
        }
    }

    /// This node's static public key (`None` when unencrypted).
    pub fn local_static(&self) -> Option<&[u8; KEY_LEN]> {
        self.keys.as_ref().map(|k| k.keypair.public())
    }

    /// The counters.
    pub fn stats(&self) -> &SecureStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &SecureConfig {
        &self.config
    }

    /// The static key of the peer at `addr`, once known (learned from gossip
    /// or from a handshake).
    pub fn remote_static(&self, addr: SocketAddr) -> Option<[u8; KEY_LEN]> {
        self.peers.get(&addr).and_then(|p| p.remote_static)
    }

    /// Whether a confirmed session with `addr` exists.
    pub fn has_session(&self, now: Duration, addr: SocketAddr) -> bool {
        self.peers
            .get(&addr)
            .and_then(|p| p.current.as_ref())
            .is_some_and(|s| !s.expired(now, &self.config))
    }

    /// Number of addresses with a confirmed session.
    pub fn session_count(&self) -> usize {
        self.peers.values().filter(|p| p.current.is_some()).count()
    }

    /// Tells the layer the static key of the peer at `addr` (from its gossiped
    /// record), so the next handshake uses IKpsk2. A different key than the
    /// one of the current session takes effect at the next handshake.
    pub fn learn_static(&mut self, addr: SocketAddr, key: [u8; KEY_LEN]) {
        if self.keys.is_none() || !self.make_room(addr) {
            return;
        }
        self.peers.entry(addr).or_default().remote_static = Some(key);
    }

    /// Drops every session, handshake and queued frame for `addr` (the core
    /// says the peer left).
    pub fn forget(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.remove(&addr) {
            for index in peer.local_indices() {
                self.by_index.remove(&index);
            }
            self.stats.queue_dropped += peer.queue.len() as u64;
        }
    }

    /// Ensures there is room for an entry for `addr`.
    fn make_room(&mut self, addr: SocketAddr) -> bool {
        if self.peers.contains_key(&addr) || self.peers.len() < self.config.max_peers {
            return true;
        }
        self.peers
            .retain(|_, p| !p.is_idle() || p.remote_static.is_some());
        if self.peers.len() >= self.config.max_peers {
            self.peers.retain(|_, p| !p.is_idle());
        }
        self.peers.len() < self.config.max_peers
    }

    fn new_index(&mut self, addr: SocketAddr) -> u32 {
        loop {
            let index = self.rng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(e) = self.by_index.entry(index) {
                e.insert(addr);
                return index;
            }
        }
    }

    fn timestamp(&self, now: Duration) -> [u8; TIMESTAMP_LEN] {
        let t = self.config.wall_clock_at_zero + now;
        u64::try_from(t.as_nanos())
            .unwrap_or(u64::MAX)
            .to_be_bytes()
    }

    fn builder(&mut self, pattern: Pattern) -> Option<Builder<'_>> {
        let keys = self.keys.as_ref()?;
        let resolver = SeededResolver::new(&mut self.rng);
        let params = match pattern {
            Pattern::Xxpsk3 => keys.xx.clone(),
            Pattern::Ikpsk2 => keys.ik.clone(),
        };
        let psk_at = match pattern {
            Pattern::Xxpsk3 => 3,
            Pattern::Ikpsk2 => 2,
        };
        Builder::with_resolver(params, Box::new(resolver))
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(keys.keypair.secret_bytes()))
            .and_then(|b| b.psk(psk_at, keys.psk.as_bytes()))
            .ok()
    }

    /// Encrypts `plaintext` for `dst`. With a confirmed session that is one
    /// transport datagram; otherwise the plaintext is queued (bounded) and a
    /// handshake starts. In the unencrypted mode it is one plain frame.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] beyond [`MAX_PLAINTEXT`].
    pub fn seal(
        &mut self,
        now: Duration,
        dst: SocketAddr,
        plaintext: &[u8],
    ) -> Result<Vec<Datagram>, SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLarge(plaintext.len()));
        }
        if self.keys.is_none() {
            self.stats.sealed += 1;
            return Ok(vec![Datagram {
                dst,
                bytes: Frame::Plain { payload: plaintext }.to_vec(),
            }]);
        }
        let mut out = Vec::new();
        if !self.make_room(dst) {
            self.stats.queue_dropped += 1;
            return Ok(out);
        }
        let config = self.config.clone();
        let peer = self.peers.entry(dst).or_default();
        if peer
            .current
            .as_ref()
            .is_some_and(|s| s.expired(now, &config))
            && let Some(old) = peer.current.take()
        {
            self.by_index.remove(&old.local_index);
        }
        let rekey = if let Some(session) = peer.current.as_mut() {
            if let Some(bytes) = session.encrypt(now, plaintext) {
                self.stats.sealed += 1;
                out.push(Datagram { dst, bytes });
            }
            let age = now.saturating_sub(session.established);
            // The responder waits a little longer, so both sides rarely rekey
            // at once.
            let rekey_age = if session.initiator {
                config.rekey_after_time
            } else {
                config.rekey_after_time + config.handshake_timeout
            };
            let stale = now.saturating_sub(session.last_received) >= config.stale_after
                && session.last_sent > session.last_received
                && age >= config.stale_after;
            age >= rekey_age || session.send_counter >= config.rekey_after_messages || stale
        } else {
            peer.queue.push_back(plaintext.to_vec());
            peer.queued_bytes += plaintext.len();
            while peer.queue.len() > config.max_queued_per_peer
                || peer.queued_bytes > config.max_queued_bytes_per_peer
            {
                match peer.queue.pop_front() {
                    Some(dropped) => {
                        peer.queued_bytes -= dropped.len();
                        self.stats.queue_dropped += 1;
                    }
                    None => break,
                }
            }
            true
        };
        if rekey && peer.initiator.is_none() {
            out.extend(self.initiate(now, dst, 0));
        }
        Ok(out)
    }

    /// Starts (or restarts) a handshake with `dst` as the initiator.
    fn initiate(&mut self, now: Duration, dst: SocketAddr, attempts: u32) -> Option<Datagram> {
        let known = self.peers.get(&dst).and_then(|p| p.remote_static);
        // After a failed IK attempt the peer may have a new static key: fall
        // back to XX, which learns it.
        let pattern = match known {
            Some(_) if attempts == 0 => Pattern::Ikpsk2,
            _ => Pattern::Xxpsk3,
        };
        if let Some(old) = self.peers.get_mut(&dst).and_then(|p| p.initiator.take()) {
            match old.stage {
                Initiating::Sent { local_index, .. } => {
                    self.by_index.remove(&local_index);
                }
                Initiating::AwaitConfirm(s) => {
                    self.by_index.remove(&s.local_index);
                }
                Initiating::Failed => {}
            }
        }
        let deadline = now + self.config.handshake_timeout;
        let failed = Initiator {
            stage: Initiating::Failed,
            attempts: attempts + 1,
            deadline,
        };
        let local_index = self.new_index(dst);
        let timestamp = self.timestamp(now);
        let mut msg = [0u8; MAX_HANDSHAKE_LEN];
        let built = self.builder(pattern).and_then(|b| match (pattern, known) {
            (Pattern::Ikpsk2, Some(rs)) => b.remote_public_key(&rs).ok()?.build_initiator().ok(),
            _ => b.build_initiator().ok(),
        });
        let written = built.and_then(|mut hs| {
            let payload: &[u8] = if pattern == Pattern::Ikpsk2 {
                &timestamp
            } else {
                &[]
            };
            let n = hs.write_message(payload, &mut msg).ok()?;
            Some((hs, n))
        });
        self.stats.handshakes_initiated += 1;
        let peer = self.peers.entry(dst).or_default();
        let Some((hs, n)) = written else {
            self.by_index.remove(&local_index);
            peer.initiator = Some(failed);
            return None;
        };
        peer.initiator = Some(Initiator {
            stage: Initiating::Sent {
                hs: Box::new(hs),
                local_index,
                pattern,
            },
            attempts: attempts + 1,
            deadline,
        });
        let noise = msg.get(..n)?;
        Some(Datagram {
            dst,
            bytes: Frame::Initiation {
                pattern,
                sender: local_index,
                noise,
            }
            .to_vec(),
        })
    }

    /// Processes a received datagram from `src`.
    ///
    /// # Errors
    /// [`Reject`] says why the datagram was dropped; the matching counter in
    /// [`SecureStats::rejected`] has been incremented.
    pub fn open(
        &mut self,
        now: Duration,
        src: SocketAddr,
        datagram: &[u8],
    ) -> Result<Opened, Reject> {
        let result = self.open_inner(now, src, datagram);
        match &result {
            Ok(opened) if opened.plaintext.is_some() => self.stats.opened += 1,
            Ok(_) => {}
            Err(reason) => self.stats.rejected.count(*reason),
        }
        result
    }

    fn open_inner(
        &mut self,
        now: Duration,
        src: SocketAddr,
        datagram: &[u8],
    ) -> Result<Opened, Reject> {
        let frame = Frame::parse(datagram).map_err(Reject::Malformed)?;
        if self.keys.is_none() {
            return match frame {
                Frame::Plain { payload } => Ok(Opened {
                    plaintext: Some(payload.to_vec()),
                    ..Opened::default()
                }),
                _ => Err(Reject::SecurityMismatch),
            };
        }
        match frame {
            Frame::Plain { .. } => Err(Reject::SecurityMismatch),
            Frame::Initiation {
                pattern,
                sender,
                noise,
            } => self.on_initiation(now, src, pattern, sender, noise),
            Frame::Response {
                sender,
                receiver,
                noise,
            } => self.on_response(now, src, sender, receiver, noise),
            Frame::Finish { receiver, noise } => self.on_finish(now, src, receiver, noise),
            Frame::Transport {
                receiver,
                counter,
                ciphertext,
            } => self.on_transport(now, src, receiver, counter, ciphertext),
        }
    }

    fn on_initiation(
        &mut self,
        now: Duration,
        src: SocketAddr,
        pattern: Pattern,
        sender: u32,
        noise: &[u8],
    ) -> Result<Opened, Reject> {
        if !self.limiter.allow(now, src.ip()) || !self.make_room(src) {
            return Err(Reject::RateLimited);
        }
        let mut hs = self
            .builder(pattern)
            .and_then(|b| b.build_responder().ok())
            .ok_or(Reject::HandshakeFailed)?;
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let n = hs
            .read_message(noise, &mut payload)
            .map_err(|_| Reject::HandshakeFailed)?;
        let mut remote = None;
        if pattern == Pattern::Ikpsk2 {
            let rs = static_of(hs.get_remote_static()).ok_or(Reject::HandshakeFailed)?;
            let stamp = payload
                .get(..n)
                .and_then(|p| <[u8; TIMESTAMP_LEN]>::try_from(p).ok());
            let stamp = u64::from_be_bytes(stamp.ok_or(Reject::HandshakeFailed)?);
            if self
                .ik_timestamps
                .get(&rs)
                .is_some_and(|last| stamp <= *last)
            {
                return Err(Reject::Replayed);
            }
            if self.ik_timestamps.len() >= self.config.max_peers
                && !self.ik_timestamps.contains_key(&rs)
            {
                // Bounded: forgetting one lets one old initiation through
                // once, which still cannot confirm a session.
                let evict = self.ik_timestamps.keys().next().copied();
                if let Some(k) = evict {
                    self.ik_timestamps.remove(&k);
                }
            }
            self.ik_timestamps.insert(rs, stamp);
            remote = Some(rs);
        }
        let local_index = self.new_index(src);
        let mut msg = [0u8; MAX_HANDSHAKE_LEN];
        let written = hs.write_message(&[], &mut msg);
        let Ok(written) = written else {
            self.by_index.remove(&local_index);
            return Err(Reject::HandshakeFailed);
        };
        let stage = match pattern {
            Pattern::Ikpsk2 => {
                let rs = remote.ok_or(Reject::HandshakeFailed)?;
                let transport = hs
                    .into_stateless_transport_mode()
                    .map_err(|_| Reject::HandshakeFailed)?;
                Responding::AwaitConfirm(Box::new(new_session(
                    now,
                    local_index,
                    sender,
                    transport,
                    rs,
                    false,
                )))
            }
            Pattern::Xxpsk3 => Responding::AwaitFinish {
                hs: Box::new(hs),
                local_index,
                remote_index: sender,
            },
        };
        let deadline = now + self.config.handshake_timeout;
        let peer = self.peers.entry(src).or_default();
        if let Some(old) = peer.responder.replace(Responder { stage, deadline }) {
            let index = match old.stage {
                Responding::AwaitFinish { local_index, .. } => local_index,
                Responding::AwaitConfirm(s) => s.local_index,
            };
            self.by_index.remove(&index);
        }
        let noise = msg.get(..written).ok_or(Reject::HandshakeFailed)?;
        let reply = Frame::Response {
            sender: local_index,
            receiver: sender,
            noise,
        }
        .to_vec();
        Ok(Opened {
            plaintext: None,
            remote_static: None,
            replies: vec![Datagram {
                dst: src,
                bytes: reply,
            }],
        })
    }

    fn owner(&self, src: SocketAddr, receiver: u32) -> Result<(), Reject> {
        match self.by_index.get(&receiver) {
            Some(addr) if *addr == src => Ok(()),
            _ => Err(Reject::UnknownSession),
        }
    }

    fn on_response(
        &mut self,
        now: Duration,
        src: SocketAddr,
        sender: u32,
        receiver: u32,
        noise: &[u8],
    ) -> Result<Opened, Reject> {
        self.owner(src, receiver)?;
        let retry_at = now + self.config.handshake_timeout;
        let peer = self.peers.get_mut(&src).ok_or(Reject::UnknownSession)?;
        let initiator = peer.initiator.as_mut().ok_or(Reject::UnknownSession)?;
        let Initiating::Sent { local_index, .. } = &initiator.stage else {
            return Err(Reject::UnknownSession);
        };
        if *local_index != receiver {
            return Err(Reject::UnknownSession);
        }
        let Initiating::Sent {
            mut hs,
            local_index,
            pattern,
        } = std::mem::replace(&mut initiator.stage, Initiating::Failed)
        else {
            return Err(Reject::UnknownSession);
        };
        // Whatever happens next, a failed attempt retries at the old deadline
        // at the latest.
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let read = hs.read_message(noise, &mut payload);
        let rs = read.ok().and_then(|_| static_of(hs.get_remote_static()));
        let Some(rs) = rs else {
            self.by_index.remove(&local_index);
            return Err(Reject::HandshakeFailed);
        };
        match pattern {
            Pattern::Ikpsk2 => {
                let Ok(transport) = hs.into_stateless_transport_mode() else {
                    self.by_index.remove(&local_index);
                    return Err(Reject::HandshakeFailed);
                };
                let session = new_session(now, local_index, sender, transport, rs, true);
                peer.initiator = None;
                let replies = self.confirm(now, src, session, true);
                Ok(Opened {
                    plaintext: None,
                    remote_static: Some(rs),
                    replies,
                })
            }
            Pattern::Xxpsk3 => {
                let timestamp = self.timestamp(now);
                let mut msg = [0u8; MAX_HANDSHAKE_LEN];
                let written = hs.write_message(&timestamp, &mut msg).ok();
                let transport = written.and_then(|_| hs.into_stateless_transport_mode().ok());
                let (Some(n), Some(transport)) = (written, transport) else {
                    self.by_index.remove(&local_index);
                    return Err(Reject::HandshakeFailed);
                };
                let session = new_session(now, local_index, sender, transport, rs, true);
                let peer = self.peers.get_mut(&src).ok_or(Reject::UnknownSession)?;
                if let Some(initiator) = peer.initiator.as_mut() {
                    initiator.stage = Initiating::AwaitConfirm(Box::new(session));
                    initiator.deadline = retry_at;
                }
                let noise = msg.get(..n).ok_or(Reject::HandshakeFailed)?;
                let finish = Frame::Finish {
                    receiver: sender,
                    noise,
                }
                .to_vec();
                // The responder's static is not reported yet: it is
                // authenticated against the cluster key only once the
                // responder confirms.
                Ok(Opened {
                    plaintext: None,
                    remote_static: None,
                    replies: vec![Datagram {
                        dst: src,
                        bytes: finish,
                    }],
                })
            }
        }
    }

    fn on_finish(
        &mut self,
        now: Duration,
        src: SocketAddr,
        receiver: u32,
        noise: &[u8],
    ) -> Result<Opened, Reject> {
        self.owner(src, receiver)?;
        let peer = self.peers.get_mut(&src).ok_or(Reject::UnknownSession)?;
        match &peer.responder {
            Some(Responder {
                stage: Responding::AwaitFinish { local_index, .. },
                ..
            }) if *local_index == receiver => {}
            _ => return Err(Reject::UnknownSession),
        }
        let Some(Responder {
            stage:
                Responding::AwaitFinish {
                    mut hs,
                    local_index,
                    remote_index,
                },
            ..
        }) = peer.responder.take()
        else {
            return Err(Reject::UnknownSession);
        };
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let read = hs.read_message(noise, &mut payload);
        let rs = read.ok().and_then(|_| static_of(hs.get_remote_static()));
        let transport = rs.and_then(|_| hs.into_stateless_transport_mode().ok());
        let (Some(rs), Some(transport)) = (rs, transport) else {
            self.by_index.remove(&local_index);
            return Err(Reject::HandshakeFailed);
        };
        let session = new_session(now, local_index, remote_index, transport, rs, false);
        let replies = self.confirm(now, src, session, true);
        Ok(Opened {
            plaintext: None,
            remote_static: Some(rs),
            replies,
        })
    }

    fn on_transport(
        &mut self,
        now: Duration,
        src: SocketAddr,
        receiver: u32,
        counter: u64,
        ciphertext: &[u8],
    ) -> Result<Opened, Reject> {
        self.owner(src, receiver)?;
        let config = self.config.clone();
        let peer = self.peers.get_mut(&src).ok_or(Reject::UnknownSession)?;
        let (session, pending) = find_session(peer, receiver).ok_or(Reject::UnknownSession)?;
        if session.expired(now, &config) || counter >= REJECT_AFTER_MESSAGES {
            return Err(Reject::UnknownSession);
        }
        session.replay.check(counter).map_err(|e| match e {
            ReplayError::Replayed => Reject::Replayed,
            ReplayError::TooOld => Reject::TooOld,
        })?;
        let mut plaintext = vec![0u8; ciphertext.len().saturating_sub(TAG_LEN)];
        let n = session
            .transport
            .read_message(counter, ciphertext, &mut plaintext)
            .map_err(|_| Reject::BadMac)?;
        plaintext.truncate(n);
        session.replay.commit(counter);
        session.last_received = now;
        let rs = session.remote_static;
        let mut replies = Vec::new();
        if let Some(role) = pending {
            // The first authenticated datagram on a pending session confirms it.
            let session = take_pending(peer, role);
            if let Some(session) = session {
                replies = self.confirm(now, src, *session, false);
            }
        }
        let plaintext = (!plaintext.is_empty()).then_some(plaintext);
        Ok(Opened {
            plaintext,
            remote_static: Some(rs),
            replies,
        })
    }

    /// Makes `session` the current one for `addr`, flushes the queue on it
    /// and, when `announce` is set and nothing was queued, sends an empty
    /// datagram so the other side can confirm too.
    fn confirm(
        &mut self,
        now: Duration,
        addr: SocketAddr,
        session: Session,
        announce: bool,
    ) -> Vec<Datagram> {
        self.stats.handshakes_completed += 1;
        let peer = self.peers.entry(addr).or_default();
        peer.remote_static = Some(session.remote_static);
        if let Some(old) = peer.previous.take() {
            self.by_index.remove(&old.local_index);
        }
        peer.previous = peer.current.take();
        let mut session = Box::new(session);
        let mut out = Vec::new();
        let queued: Vec<Vec<u8>> = peer.queue.drain(..).collect();
        peer.queued_bytes = 0;
        for plaintext in &queued {
            if let Some(bytes) = session.encrypt(now, plaintext) {
                self.stats.sealed += 1;
                out.push(Datagram { dst: addr, bytes });
            }
        }
        if out.is_empty()
            && announce
            && let Some(bytes) = session.encrypt(now, &[])
        {
            out.push(Datagram { dst: addr, bytes });
        }
        peer.current = Some(session);
        out
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let config = &self.config;
        self.peers
            .values()
            .flat_map(|p| {
                let sessions = [p.current.as_deref(), p.previous.as_deref()]
                    .into_iter()
                    .flatten()
                    .map(|s| s.established + config.reject_after_time);
                let init = p.initiator.as_ref().map(|i| i.deadline);
                let resp = p.responder.as_ref().map(|r| r.deadline);
                sessions.chain(init).chain(resp)
            })
            .min()
    }

    /// Retries handshakes whose answer is overdue, gives up after
    /// [`SecureConfig::handshake_attempts`], drops half-done responder
    /// handshakes and expired sessions. Returns the datagrams to send.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Datagram> {
        let config = self.config.clone();
        let mut retry = Vec::new();
        let mut freed = Vec::new();
        for (addr, peer) in &mut self.peers {
            for slot in [&mut peer.current, &mut peer.previous] {
                if slot.as_ref().is_some_and(|s| s.expired(now, &config))
                    && let Some(s) = slot.take()
                {
                    freed.push(s.local_index);
                }
            }
            if peer.responder.as_ref().is_some_and(|r| r.deadline <= now)
                && let Some(r) = peer.responder.take()
            {
                freed.push(match r.stage {
                    Responding::AwaitFinish { local_index, .. } => local_index,
                    Responding::AwaitConfirm(s) => s.local_index,
                });
            }
            if let Some(initiator) = peer.initiator.as_ref().filter(|i| i.deadline <= now) {
                let confirm_missing = matches!(initiator.stage, Initiating::AwaitConfirm(_));
                if confirm_missing {
                    // XXpsk3 message 3 was never confirmed: most likely the
                    // responder holds another cluster key.
                    self.stats.rejected.handshake_failed += 1;
                }
                let wanted = !peer.queue.is_empty() || peer.current.is_some();
                if initiator.attempts < config.handshake_attempts && wanted {
                    retry.push((*addr, initiator.attempts));
                } else {
                    if let Some(i) = peer.initiator.take() {
                        match i.stage {
                            Initiating::Sent { local_index, .. } => freed.push(local_index),
                            Initiating::AwaitConfirm(s) => freed.push(s.local_index),
                            Initiating::Failed => {}
                        }
                    }
                    if wanted {
                        self.stats.handshakes_timed_out += 1;
                    }
                    self.stats.queue_dropped += peer.queue.len() as u64;
                    peer.queue.clear();
                    peer.queued_bytes = 0;
                }
            }
        }
        for index in freed {
            self.by_index.remove(&index);
        }
        self.peers
            .retain(|_, p| !p.is_idle() || p.remote_static.is_some());
        retry
            .into_iter()
            .filter_map(|(addr, attempts)| self.initiate(now, addr, attempts))
            .collect()
    }
}

fn static_of(key: Option<&[u8]>) -> Option<[u8; KEY_LEN]> {
    key.and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
}

fn new_session(
    now: Duration,
    local_index: u32,
    remote_index: u32,
    transport: StatelessTransportState,
    remote_static: [u8; KEY_LEN],
    initiator: bool,
) -> Session {
    Session {
        local_index,
        remote_index,
        transport,
        remote_static,
        send_counter: 0,
        replay: ReplayWindow::new(),
        established: now,
        last_received: now,
        last_sent: now,
        initiator,
    }
}

#[derive(Clone, Copy)]
enum PendingRole {
    Initiator,
    Responder,
}

fn find_session(peer: &mut Peer, index: u32) -> Option<(&mut Session, Option<PendingRole>)> {
    if peer
        .current
        .as_ref()
        .is_some_and(|s| s.local_index == index)
    {
        return peer.current.as_deref_mut().map(|s| (s, None));
    }
    if peer
        .previous
        .as_ref()
        .is_some_and(|s| s.local_index == index)
    {
        return peer.previous.as_deref_mut().map(|s| (s, None));
    }
    if let Some(Initiator {
        stage: Initiating::AwaitConfirm(s),
        ..
    }) = peer.initiator.as_mut()
        && s.local_index == index
    {
        return Some((s, Some(PendingRole::Initiator)));
    }
    if let Some(Responder {
        stage: Responding::AwaitConfirm(s),
        ..
    }) = peer.responder.as_mut()
        && s.local_index == index
    {
        return Some((s, Some(PendingRole::Responder)));
    }
    None
}

fn take_pending(peer: &mut Peer, role: PendingRole) -> Option<Box<Session>> {
    match role {
        PendingRole::Initiator => match peer.initiator.take() {
            Some(Initiator {
                stage: Initiating::AwaitConfirm(s),
                ..
            }) => Some(s),
            other => {
                peer.initiator = other;
                None
            }
        },
        PendingRole::Responder => match peer.responder.take() {
            Some(Responder {
                stage: Responding::AwaitConfirm(s),
                ..
            }) => Some(s),
            other => {
                peer.responder = other;
                None
            }
        },
    }
}
