//! A thin tokio driver: one UDP socket, the gossip core and the secure layer.
//!
//! [`spawn`] starts a task that owns the three and moves datagrams between
//! them: received datagrams are opened by the [`SecureLayer`] and handed to
//! the [`Gossip`] core with the sender's authenticated static key; the core's
//! transmits are sealed and sent; both state machines' timers run at their
//! `poll_timeout`. The application talks to the task through a [`Handle`] and
//! receives [`Event`]s (peer up, changed, down; channel messages) on a bounded
//! channel.
//!
//! # Bounded resources
//! * One datagram is processed at a time; nothing is buffered per peer except
//!   the secure layer's bounded handshake queue
//!   ([`SecureConfig::max_queued_per_peer`]) and its bounded peer table.
//! * Handshake responses are rate limited per source and globally
//!   ([`SecureConfig::handshake_rate_per_source`]).
//! * Events go to a channel of [`DriverConfig::event_capacity`]; when the
//!   application does not keep up, events are dropped and counted
//!   ([`DriverCounters::events_dropped`]) rather than stalling gossip. The
//!   current view is always available from [`Handle::peers`].
//! * Commands go through a channel of [`DriverConfig::command_capacity`].
//!
//! # Example
//! ```no_run
//! use overlay_core::PeerId;
//! use overlay_gossip::driver::{self, Credentials, DriverConfig};
//! use overlay_gossip::secure::{Psk, PskParams, StaticKeypair};
//! use overlay_gossip::{Config, PeerRecord};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let socket = std::net::UdpSocket::bind("192.0.2.1:7946")?;
//! let mut record = PeerRecord::new(PeerId::from_u128(1));
//! record.underlay = vec![socket.local_addr()?];
//! let psk = Psk::from_password("cluster password", "cluster-1", PskParams::default())?;
//! let keypair = StaticKeypair::generate(&mut rand::rng());
//! let config = DriverConfig::new(Config::new(record), Credentials::Encrypted { psk, keypair });
//! let (handle, mut events) = driver::spawn(config, socket)?;
//! handle.join("192.0.2.2:7946".parse()?).await?;
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! handle.shutdown(true).await?;
//! # Ok(())
//! # }
//! ```

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use overlay_core::PeerId;
use rand::{SeedableRng, rngs::StdRng};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    ChannelError, ChannelId, Config, Counters, Event, Gossip, PeerRecord, RecordError,
    secure::{Datagram, Psk, SecureConfig, SecureLayer, SecureStats, Security, StaticKeypair},
};

/// The largest datagram the driver reads; longer ones are truncated by the
/// kernel and then refused by the secure layer.
const RECV_BUFFER: usize = 65_536;

/// How the driver protects gossip.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// Noise with the cluster key and this node's static key. The driver
    /// writes the public key into the local record's `noise_static`.
    Encrypted {
        /// The cluster key.
        psk: Psk,
        /// This node's identity.
        keypair: StaticKeypair,
    },
    /// No password configured: plain-text gossip, reported as
    /// [`Security::Unencrypted`].
    Unencrypted,
}

/// Configuration of [`spawn`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverConfig {
    /// The core's configuration, the local record included.
    pub gossip: Config,
    /// Encryption keys, or the explicit unencrypted mode.
    pub credentials: Credentials,
    /// Timers and bounds of the secure layer.
    pub secure: SecureConfig,
    /// Capacity of the event channel to the application.
    pub event_capacity: usize,
    /// Capacity of the command channel from [`Handle`]s.
    pub command_capacity: usize,
    /// How long [`Handle::shutdown`] with `leave` keeps running so the leave
    /// announcement (and the handshakes it may need) get through.
    pub leave_grace: Duration,
    /// Seed of the core's and the secure layer's RNG; `None` draws one from
    /// the operating system.
    pub seed: Option<[u8; 32]>,
}

impl DriverConfig {
    /// A configuration with default bounds.
    pub fn new(gossip: Config, credentials: Credentials) -> Self {
        Self {
            gossip,
            credentials,
            secure: SecureConfig::default(),
            event_capacity: 1024,
            command_capacity: 64,
            leave_grace: Duration::from_millis(500),
            seed: None,
        }
    }

    /// Sets the secure layer's configuration.
    pub fn with_secure(mut self, secure: SecureConfig) -> Self {
        self.secure = secure;
        self
    }

    /// Sets the event channel's capacity (at least 1).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Sets the leave grace period of [`Handle::shutdown`].
    pub fn with_leave_grace(mut self, grace: Duration) -> Self {
        self.leave_grace = grace;
        self
    }

    /// Seeds the RNG (tests).
    pub fn with_seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// Errors of [`Handle`] calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The driver task has stopped.
    #[error("the gossip driver has stopped")]
    Stopped,
    /// The core refused a channel operation.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The core refused a record change.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Counters of the driver itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverCounters {
    /// Events dropped because the application's channel was full.
    pub events_dropped: u64,
    /// `send_to` failures (unreachable network, full socket buffer).
    pub send_errors: u64,
    /// `recv_from` failures.
    pub recv_errors: u64,
}

/// A snapshot of the driver's state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// Whether gossip is encrypted.
    pub security: Security,
    /// The socket's address.
    pub local_addr: SocketAddr,
    /// This node's current record.
    pub local: PeerRecord,
    /// Peers in the view, this node included.
    pub peers: usize,
    /// Addresses with a confirmed Noise session.
    pub sessions: usize,
    /// The core's counters (frames, merges, rejected frames).
    pub gossip: Counters,
    /// The secure layer's counters (handshakes, rejected datagrams by
    /// reason).
    pub secure: SecureStats,
    /// The driver's own counters.
    pub driver: DriverCounters,
}

type Reply<T> = oneshot::Sender<T>;
type RecordEdit = Box<dyn FnOnce(&mut PeerRecord) + Send>;

enum Command {
    Join(SocketAddr),
    RegisterChannel(String, Reply<Result<ChannelId, ChannelError>>),
    Broadcast(ChannelId, Vec<u8>, Reply<Result<(), ChannelError>>),
    Unicast(ChannelId, PeerId, Vec<u8>, Reply<Result<(), ChannelError>>),
    UpdateLocal(RecordEdit, Reply<Result<(), RecordError>>),
    Status(Reply<Status>),
    Peers(Reply<Vec<PeerRecord>>),
    Shutdown { leave: bool },
}

/// The application's side of a running driver. Cloning gives another handle
/// to the same task.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    task: std::sync::Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Handle {
    async fn send(&self, command: Command) -> Result<(), DriverError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| DriverError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Joins the cluster through a seed address (retried by the core until a
    /// peer answers).
    ///
    /// # Errors
    /// [`DriverError::Stopped`].
    pub async fn join(&self, seed: SocketAddr) -> Result<(), DriverError> {
        self.send(Command::Join(seed)).await
    }

    /// Registers a named channel.
    ///
    /// # Errors
    /// [`DriverError::Channel`] for a bad name, [`DriverError::Stopped`].
    pub async fn register_channel(&self, name: &str) -> Result<ChannelId, DriverError> {
        let name = name.to_owned();
        Ok(self.ask(|r| Command::RegisterChannel(name, r)).await??)
    }

    /// Broadcasts `bytes` on `channel` to every peer (best-effort).
    ///
    /// # Errors
    /// [`DriverError::Channel`], [`DriverError::Stopped`].
    pub async fn broadcast(&self, channel: ChannelId, bytes: Vec<u8>) -> Result<(), DriverError> {
        Ok(self
            .ask(|r| Command::Broadcast(channel, bytes, r))
            .await??)
    }

    /// Sends `bytes` on `channel` to one peer.
    ///
    /// # Errors
    /// [`DriverError::Channel`], [`DriverError::Stopped`].
    pub async fn unicast(
        &self,
        channel: ChannelId,
        peer: PeerId,
        bytes: Vec<u8>,
    ) -> Result<(), DriverError> {
        Ok(self
            .ask(|r| Command::Unicast(channel, peer, bytes, r))
            .await??)
    }

    /// Changes the local record; the change is disseminated.
    ///
    /// # Errors
    /// [`DriverError::Record`] when the record breaks a limit,
    /// [`DriverError::Stopped`].
    pub async fn update_local(
        &self,
        edit: impl FnOnce(&mut PeerRecord) + Send + 'static,
    ) -> Result<(), DriverError> {
        Ok(self
            .ask(|r| Command::UpdateLocal(Box::new(edit), r))
            .await??)
    }

    /// A snapshot of the driver's state and counters.
    ///
    /// # Errors
    /// [`DriverError::Stopped`].
    pub async fn status(&self) -> Result<Status, DriverError> {
        self.ask(Command::Status).await
    }

    /// The current view (this node's record included).
    ///
    /// # Errors
    /// [`DriverError::Stopped`].
    pub async fn peers(&self) -> Result<Vec<PeerRecord>, DriverError> {
        self.ask(Command::Peers).await
    }

    /// Stops the driver and waits for its task. With `leave`, the node first
    /// announces that it leaves and keeps running for
    /// [`DriverConfig::leave_grace`] so the announcement gets through.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the task had already stopped.
    pub async fn shutdown(&self, leave: bool) -> Result<(), DriverError> {
        let sent = self.send(Command::Shutdown { leave }).await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        sent
    }

    /// Stops the task at once, as a crash would: no leave announcement, the
    /// socket is closed. Waits until the task is gone.
    pub async fn abort(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Starts the driver on `socket` (which may have been bound in another
/// network namespace). Must be called within a tokio runtime.
///
/// Returns the handle and the event channel.
///
/// # Errors
/// When the socket cannot be registered with tokio.
pub fn spawn(
    mut config: DriverConfig,
    socket: std::net::UdpSocket,
) -> io::Result<(Handle, mpsc::Receiver<Event>)> {
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket)?;
    let local_addr = socket.local_addr()?;
    let mut rng = match config.seed {
        Some(seed) => StdRng::from_seed(seed),
        None => rand::make_rng::<StdRng>(),
    };
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut secure_config = config.secure.clone();
    secure_config.wall_clock_at_zero = wall;
    let secure = match &config.credentials {
        Credentials::Encrypted { psk, keypair } => {
            config.gossip.record.noise_static = *keypair.public();
            SecureLayer::encrypted(psk.clone(), keypair.clone(), secure_config, &mut rng)
        }
        Credentials::Unencrypted => SecureLayer::unencrypted(secure_config, &mut rng),
    };
    let gossip = Gossip::new(config.gossip.clone(), &mut rng);
    let (commands_tx, commands) = mpsc::channel(config.command_capacity.max(1));
    let (events, events_rx) = mpsc::channel(config.event_capacity.max(1));
    let driver = Driver {
        socket,
        local_addr,
        gossip,
        secure,
        commands,
        events,
        start: Instant::now(),
        counters: DriverCounters::default(),
        peer_addrs: HashMap::new(),
        leave_grace: config.leave_grace,
        pending: Vec::new(),
    };
    let task = tokio::spawn(driver.run());
    let handle = Handle {
        commands: commands_tx,
        task: std::sync::Arc::new(std::sync::Mutex::new(Some(task))),
    };
    Ok((handle, events_rx))
}

struct Driver {
    socket: UdpSocket,
    local_addr: SocketAddr,
    gossip: Gossip,
    secure: SecureLayer,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    start: Instant,
    counters: DriverCounters,
    /// Where each known peer receives gossip, to forget its sessions when it
    /// goes down.
    peer_addrs: HashMap<PeerId, SocketAddr>,
    leave_grace: Duration,
    /// Secure-layer replies waiting for the next flush.
    pending: Vec<Datagram>,
}

impl Driver {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn deadline(&self) -> Option<Instant> {
        let core = self.gossip.poll_timeout();
        let secure = self.secure.poll_timeout();
        let at = match (core, secure) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.start + at)
    }

    async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut stop_at: Option<Instant> = None;
        loop {
            let deadline = self.deadline();
            let until = match (deadline, stop_at) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let sleep = async {
                match until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // `biased`: commands, then due timers, then the socket.
            tokio::select! {
                biased;
                command = self.commands.recv(), if stop_at.is_none() => match command {
                    Some(Command::Shutdown { leave: true }) => {
                        let now = self.now();
                        self.gossip.leave(now);
                        stop_at = Some(Instant::now() + self.leave_grace);
                    }
                    // Every handle dropped, or a shutdown without leave.
                    None | Some(Command::Shutdown { leave: false }) => break,
                    Some(command) => self.command(command),
                },
                // Timers before the socket: a flood of datagrams must not
                // starve SWIM's probes and the handshake retries.
                () = sleep => {
                    if stop_at.is_some_and(|s| Instant::now() >= s) {
                        break;
                    }
                    let now = self.now();
                    self.gossip.handle_timeout(now);
                    let out = self.secure.handle_timeout(now);
                    self.send_all(out).await;
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.datagram(from, buf.get(..n).unwrap_or_default()),
                    Err(_) => self.counters.recv_errors += 1,
                },
            }
            self.flush().await;
        }
        self.flush().await;
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Join(seed) => self.gossip.join(now, seed),
            Command::RegisterChannel(name, reply) => {
                let _ = reply.send(self.gossip.register_channel(&name));
            }
            Command::Broadcast(channel, bytes, reply) => {
                let _ = reply.send(self.gossip.broadcast(now, channel, &bytes));
            }
            Command::Unicast(channel, peer, bytes, reply) => {
                let _ = reply.send(self.gossip.unicast(now, channel, peer, &bytes));
            }
            Command::UpdateLocal(edit, reply) => {
                let _ = reply.send(self.gossip.update_local(now, edit));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.gossip.peers().cloned().collect());
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn status(&self) -> Status {
        Status {
            security: self.secure.security(),
            local_addr: self.local_addr,
            local: self.gossip.local().clone(),
            peers: self.gossip.len(),
            sessions: self.secure.session_count(),
            gossip: self.gossip.counters().clone(),
            secure: *self.secure.stats(),
            driver: self.counters,
        }
    }

    fn datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = self.now();
        // Rejections are counted by the secure layer.
        let Ok(opened) = self.secure.open(now, from, bytes) else {
            return;
        };
        if let Some(plaintext) = &opened.plaintext {
            self.gossip
                .handle_datagram(now, from, opened.remote_static, plaintext);
        }
        // Replies are sent by the next flush, in order, before the core's
        // transmits.
        self.pending.extend(opened.replies);
    }

    /// Seals and sends what the core wants to send, hands its events to the
    /// application and keeps the secure layer's key table in step with the
    /// view.
    async fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.send_all(pending).await;
        while let Some(transmit) = self.gossip.poll_transmit() {
            let now = self.now();
            if let Ok(out) = self.secure.seal(now, transmit.dst, &transmit.payload) {
                self.send_all(out).await;
            }
        }
        while let Some(event) = self.gossip.poll_event() {
            self.observe(&event);
            if self.events.try_send(event).is_err() {
                self.counters.events_dropped += 1;
            }
        }
    }

    fn observe(&mut self, event: &Event) {
        match event {
            Event::PeerUp(record) | Event::PeerChanged(record) => {
                if let Some(addr) = record.gossip_addr().filter(|a| *a != self.local_addr) {
                    // A known key makes the next handshake a one-round-trip
                    // IKpsk2; an all-zero key is an unencrypted peer's.
                    if self.secure.security() == Security::Encrypted
                        && record.noise_static != [0; 32]
                    {
                        self.secure.learn_static(addr, record.noise_static);
                    }
                    self.peer_addrs.insert(record.id, addr);
                }
            }
            Event::PeerDown(id) => {
                if let Some(addr) = self.peer_addrs.remove(id) {
                    self.secure.forget(addr);
                }
            }
            _ => {}
        }
    }

    async fn send_all(&mut self, datagrams: Vec<Datagram>) {
        for d in datagrams {
            if self.socket.send_to(&d.bytes, d.dst).await.is_err() {
                self.counters.send_errors += 1;
            }
        }
    }
}
