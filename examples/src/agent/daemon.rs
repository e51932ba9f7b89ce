//! `overlayd`'s main loop: the crates wired together.
//!
//! One task owns the state machines and the store, so every change is
//! ordered and persisted before anything is answered or sent:
//!
//! - the **gossip** driver (`overlay_gossip::driver`): peers, their underlay
//!   address and VTEP MAC, and the `ipam-ring` channel;
//! - the **IPAM ring** (`overlay_ipam::ring::agent::RingAgent` around a
//!   `ring::Node`): genesis discovery, the ring's messages on the gossip
//!   channel, anti-entropy, the ring committed before anything is sent;
//! - the **IPAM service** (`overlay_ipam::agent::service::NodeIpam`): the
//!   plugin's requests answered at once from owned space or with a typed
//!   reason (code 11 "no space yet", 50 exhausted), and the bridge address;
//! - the **store** (`redb`, `super::store`): identity, ring and
//!   allocations, one durable transaction per change, committed before a
//!   CNI `ADD` is answered and before a donation is sent;
//! - the **datapath** (`overlay_netlink::node`): the bridge and the VXLAN
//!   device with the MTU derived from the underlay, reconciled against the
//!   gossiped peers and the ring's owners, rebuilt when deleted.
//!
//! Pods get host addresses (`/32` or `/128`) with the node's bridge address
//! as their on-link gateway; the bridge holds that address with the cluster
//! range's prefix, so the node reaches its pods on the bridge and every
//! remote block through the more specific routes on the VXLAN device.
//!
//! Side tasks serve the CNI plugin's unix socket (`overlay_ipam::agent::server`),
//! the admin socket and the HTTP status API (`super::report`); they talk to
//! the main loop through bounded channels.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use overlay_core::{MacAddr, PeerId, Vni};
use overlay_gossip::driver::{self, Credentials, DriverConfig};
use overlay_gossip::secure::{Psk, PskParams, Security, StaticKeypair};
use overlay_gossip::{ChannelId, Config as GossipConfig, Event, PeerRecord};
use overlay_ipam::agent::server::{self, LineLimits, Server};
use overlay_ipam::agent::service::{AttachmentKey, NodeIpam};
use overlay_ipam::agent::{AgentRequest, AgentResponse, Attachment, ReleaseJournal};
use overlay_ipam::ring::agent::{
    self as ring_agent, Destination, ReclaimRefused, RingAgent, RingAgentConfig, RingEvent,
};
use overlay_ipam::ring::{Identity, Ring};
use overlay_netlink::node::{NodeConfig as DatapathConfig, NodeDatapath};
use overlay_netlink::overlay::RemotePeer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::client::{AdminRequest, AdminResponse};
use super::config::Config;
use super::http;
use super::metrics::Metrics;
use super::report;
use super::status::{DatapathStatus, Status};
use super::store::Store;

/// How often the main loop runs the ring's timers and refreshes status.
const TICK: Duration = Duration::from_millis(250);
/// How often the datapath is reconciled even when nothing was announced.
const RECONCILE: Duration = Duration::from_secs(5);

type AdminCall = (AdminRequest, oneshot::Sender<AdminResponse>);

/// The VTEP MAC of a peer: locally administered, from its id.
fn vtep_mac(id: PeerId) -> MacAddr {
    let b = id.to_bytes();
    MacAddr::new([0x02, b[11], b[12], b[13], b[14], b[15]])
}

/// Everything the main loop owns.
struct Agent {
    config: Config,
    started: tokio::time::Instant,
    rng: StdRng,
    store: Store,
    gossip: driver::Handle,
    channel: ChannelId,
    security: Security,
    /// The IPAM ring over gossip: genesis, traffic, anti-entropy.
    ring: RingAgent<AttachmentKey>,
    /// The plugin's requests: allocations and the bridge address.
    ipam: NodeIpam,
    /// Releases the plugin recorded while this agent was down.
    journal: ReleaseJournal,
    datapath: NodeDatapath,
    peers: BTreeMap<PeerId, PeerRecord>,
    down: BTreeSet<PeerId>,
    datapath_dirty: bool,
    reconciles: u64,
    last_reconcile_error: String,
    programmed: (usize, usize),
    status: Arc<RwLock<Status>>,
}

impl Agent {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn peer_id(&self) -> PeerId {
        self.ring.identity().peer
    }

    /// Commit the ring when it changed, then send what it asks for.
    async fn flush(&mut self) -> Result<()> {
        let result = self.ring.flush(&mut self.store);
        self.send().await;
        Ok(result?)
    }

    /// Hand the ring's messages to gossip and log its events.
    async fn send(&mut self) {
        while let Some(event) = self.ring.poll_event() {
            match event {
                RingEvent::Ready { genesis, restored } => {
                    info!(genesis = ?genesis, restored, "IPAM ring ready")
                }
                RingEvent::Anomaly(a) => warn!(anomaly = ?a, "IPAM ring anomaly"),
                RingEvent::Reidentified { old, new } => {
                    warn!(old = %old.peer, new = %new.peer, "this node was tombstoned: it takes a new identity")
                }
                other => debug!(event = ?other, "ring event"),
            }
        }
        while let Some(t) = self.ring.poll_transmit() {
            match t.to {
                Destination::All => {
                    if let Err(e) = self.gossip.broadcast(self.channel, t.bytes).await {
                        warn!(error = %e, "ring broadcast");
                    }
                }
                Destination::Peer(to) => {
                    if let Err(e) = self.gossip.unicast(self.channel, to, t.bytes).await {
                        debug!(peer = %to, error = %e, "ring unicast");
                    }
                }
            }
        }
    }

    /// The bridge address: allocated once from the node's own space.
    async fn ensure_gateway(&mut self) -> Result<()> {
        let now = self.now();
        let Some(gw) = self
            .ipam
            .gateway_to_program(now, &mut self.ring, &mut self.store)?
        else {
            return Ok(());
        };
        self.datapath
            .set_gateways(&[gw])
            .await
            .context("bridge address")?;
        info!(gateway = %gw, "node bridge address");
        self.ipam.gateway_programmed(gw);
        Ok(())
    }

    /// One CNI plugin request. An allocation for an attachment whose
    /// release the plugin journaled (a DEL while this agent was down, then
    /// the runtime's retried ADD with the same container id) applies that
    /// release first, so the journal never frees the new allocation.
    fn handle_plugin(&mut self, request: AgentRequest) -> AgentResponse {
        if let AgentRequest::Allocate(a) = &request
            && self.journal.contains(a)
        {
            self.apply_release(a.clone());
        }
        let now = self.now();
        self.ipam.set_mtu(self.datapath.mtu());
        self.ipam
            .handle(now, &mut self.ring, &mut self.store, request)
    }

    /// Apply one journaled release (committed by the IPAM service) and
    /// forget it; kept when the release failed, to be tried again.
    fn apply_release(&mut self, attachment: Attachment) {
        let now = self.now();
        let request = AgentRequest::Release(attachment.clone());
        match self
            .ipam
            .handle(now, &mut self.ring, &mut self.store, request)
        {
            AgentResponse::Done => {
                info!(container = %attachment.container_id, ifname = %attachment.ifname,
                    "applied a release journaled while the agent was down");
                if let Err(e) = self.journal.remove(&attachment) {
                    warn!(error = %e, "cannot remove a journaled release");
                }
            }
            other => warn!(response = ?other, "a journaled release failed; kept"),
        }
    }

    /// Apply every journaled release ([`ReleaseJournal`]); how many.
    fn apply_journal(&mut self) -> usize {
        let pending = match self.journal.pending() {
            Ok(pending) => pending,
            Err(e) => {
                warn!(error = %e, dir = %self.journal.dir().display(), "cannot read the release journal");
                return 0;
            }
        };
        for path in &pending.unreadable {
            warn!(entry = %path.display(), "unreadable entry in the release journal");
        }
        let count = pending.attachments.len();
        for attachment in pending.attachments {
            self.apply_release(attachment);
        }
        count
    }

    /// One admin request.
    async fn handle_admin(&mut self, request: AdminRequest) -> AdminResponse {
        let now = self.now();
        match request {
            AdminRequest::Rmpeer { peer } => {
                let error = |msg: String| AdminResponse::Error { msg };
                if !self.ring.is_ready() {
                    return error(ReclaimRefused::NotJoined.to_string());
                }
                let found = self
                    .peers
                    .values()
                    .find(|r| r.name == peer || r.id.to_string() == peer)
                    .map(|r| (r.id, r.incarnation))
                    .or_else(|| peer.parse::<PeerId>().ok().map(|id| (id, u64::MAX)));
                let Some((dead, incarnation)) = found else {
                    return error(format!("no peer named {peer:?}"));
                };
                let blocks = match self.ring.reclaim_peer(now, dead, incarnation) {
                    Ok(blocks) => blocks,
                    Err(ReclaimRefused::Alive(_)) => {
                        return error(format!("{peer} is alive; stop it before declaring it dead"));
                    }
                    Err(e) => return error(e.to_string()),
                };
                info!(peer = %dead, blocks = blocks.len(), "reclaimed a dead peer's blocks");
                if let Err(e) = self.flush().await {
                    return error(e.to_string());
                }
                self.datapath_dirty = true;
                AdminResponse::Done {
                    reclaimed: blocks.iter().map(ToString::to_string).collect(),
                    heir: self.peer_id().to_string(),
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::PeerUp(r) | Event::PeerChanged(r) => {
                let addr = r.underlay.first().map(SocketAddr::ip);
                self.ring.peer_up(now, r.id, r.incarnation, addr);
                self.down.remove(&r.id);
                self.peers.insert(r.id, r);
                self.datapath_dirty = true;
            }
            Event::PeerDown(id) => {
                self.ring.peer_down(id);
                self.down.insert(id);
                self.datapath_dirty = true;
            }
            Event::ChannelMessage {
                channel,
                from,
                bytes,
            } if channel == self.channel => match self.ring.handle_bytes(now, from, &bytes) {
                Ok(applied) => self.datapath_dirty |= applied,
                Err(e) => debug!(peer = %from, error = %e, "undecodable ring message"),
            },
            other => debug!(event = ?other, "gossip event"),
        }
    }

    async fn tick(&mut self) -> Result<()> {
        let now = self.now();
        let result = self
            .ring
            .handle_timeout(now, &mut self.rng, &mut self.store);
        self.send().await;
        result?;
        self.ensure_gateway().await?;
        self.publish_blocks().await;
        Ok(())
    }

    /// Keep the local gossip record's pod blocks equal to the ring's.
    async fn publish_blocks(&mut self) {
        let max = overlay_gossip::record::MAX_POD_BLOCKS;
        let Some(blocks) = self.ring.blocks_to_publish(max) else {
            return;
        };
        let b = blocks.clone();
        match self.gossip.update_local(move |r| r.pod_blocks = b).await {
            Ok(()) => self.ring.blocks_published(blocks),
            Err(e) => warn!(error = %e, "publish pod blocks"),
        }
    }

    /// Program every live remote peer: neighbour and FDB entry for its
    /// VTEP, a route per block the ring says it owns.
    async fn reconcile(&mut self) {
        let Some(node) = self.ring.node() else { return };
        let ring = node.ring();
        let me = self.ring.identity().peer;
        let family_v4 = self.config.node_ip.is_ipv4();
        let mut desired = Vec::new();
        let mut routes = 0;
        for r in self.peers.values() {
            if r.id == me || self.down.contains(&r.id) || r.is_leaving() {
                continue;
            }
            let Some(underlay) = r.underlay.first().map(SocketAddr::ip) else {
                continue;
            };
            if underlay.is_ipv4() != family_v4 {
                continue;
            }
            let mut peer = RemotePeer::on_underlay(underlay, r.vtep_mac);
            for e in ring.entries_of(r.id) {
                if e.block.addr().is_ipv4() == family_v4 {
                    peer = peer.pod_cidr(e.block);
                    routes += 1;
                }
            }
            desired.push(peer);
        }
        self.reconciles += 1;
        match self.datapath.reconcile(&desired).await {
            Ok(report) => {
                if !report.is_noop() {
                    info!(
                        changes = report.changes.len(),
                        peers = desired.len(),
                        "datapath reconciled"
                    );
                }
                self.last_reconcile_error.clear();
                self.programmed = (desired.len(), routes);
                self.datapath_dirty = false;
            }
            Err(e) => {
                warn!(error = %e, "datapath reconcile");
                self.last_reconcile_error = e.to_string();
            }
        }
    }

    async fn refresh_status(&mut self) {
        let Ok(gossip) = self.gossip.status().await else {
            return;
        };
        let status = report::status(&report::Inputs {
            now: self.now(),
            config: &self.config,
            gossip: &gossip,
            encrypted: !matches!(self.security, Security::Unencrypted),
            peers: &self.peers,
            down: &self.down,
            ring: &self.ring,
            ipam: &self.ipam,
            datapath: DatapathStatus {
                bridge: self.config.bridge.clone(),
                vxlan: self.config.vxlan.clone(),
                mtu: self.datapath.mtu().unwrap_or(0),
                peers_programmed: self.programmed.0,
                routes: self.programmed.1,
                reconciles: self.reconciles,
                last_error: self.last_reconcile_error.clone(),
            },
        });
        if let Ok(mut s) = self.status.write() {
            *s = status;
        }
    }
}

fn decode_admin(line: &[u8]) -> Result<AdminRequest, AdminResponse> {
    serde_json::from_slice(line).map_err(|e| AdminResponse::Error {
        msg: format!("bad request: {e}"),
    })
}

fn encode_admin(response: &AdminResponse) -> Vec<u8> {
    let mut out = serde_json::to_vec(response).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Run the agent until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("create {}", config.state_dir.display()))?;
    let store_path = config.state_dir.join("overlayd.redb");
    let new_id = PeerId::from_u128(rng.random());
    let (store, identity) = Store::open(&store_path, || new_id).context("open the store")?;
    let keypair = match identity.static_private {
        Some(secret) => StaticKeypair::from_secret(secret),
        None => {
            let k = StaticKeypair::generate(&mut rng);
            store.set_static_private(k.secret_bytes())?;
            k
        }
    };
    info!(peer = %identity.peer_id, incarnation = identity.incarnation, "identity");
    let snapshot = store.snapshot()?;

    // The datapath first: an MTU or underlay problem is reported before
    // the node joins anything.
    let handle = overlay_netlink::Handle::new().context("netlink")?;
    let vni = Vni::new(config.vni).context("VNI")?;
    let mut dp_config = DatapathConfig::new(
        config.bridge.clone(),
        config.vxlan.clone(),
        vni,
        config.node_ip,
        vtep_mac(identity.peer_id),
    )
    .port(config.vxlan_port)
    // Pods re-attached to a rebuilt bridge get the hairpin mode the
    // deploy/ conflist gives them.
    .hairpin(true);
    if let Some(mtu) = config.fixed_mtu() {
        dp_config = dp_config.mtu(mtu);
    }
    let mut datapath = NodeDatapath::new(handle, dp_config);
    datapath
        .ensure()
        .await
        .context("create the bridge and the VXLAN device")?;
    info!(mtu = datapath.mtu().unwrap_or(0), bridge = %config.bridge, vxlan = %config.vxlan, "datapath");

    // Gossip.
    let gossip_addr = SocketAddr::new(config.node_ip, config.gossip_port);
    let socket =
        std::net::UdpSocket::bind(gossip_addr).with_context(|| format!("bind {gossip_addr}"))?;
    let mut record = PeerRecord::new(identity.peer_id);
    record.incarnation = identity.incarnation;
    record.name = config
        .node_name
        .clone()
        .unwrap_or_else(|| config.node_ip.to_string());
    record.underlay = vec![gossip_addr];
    record.vtep_mac = vtep_mac(identity.peer_id);
    let (credentials, security) = match config.password()? {
        Some(password) => {
            let psk = Psk::from_password(password, config.range.to_string(), PskParams::default())
                .context("derive the cluster key")?;
            (Credentials::Encrypted { psk, keypair }, Security::Encrypted)
        }
        None => {
            warn!("no cluster password: gossip is not encrypted");
            (Credentials::Unencrypted, Security::Unencrypted)
        }
    };
    let (gossip, mut events) = driver::spawn(
        DriverConfig::new(GossipConfig::new(record), credentials),
        socket,
    )
    .context("start gossip")?;
    let channel = gossip.register_channel(ring_agent::CHANNEL).await?;
    let seeds = config.seed_addrs().map_err(anyhow::Error::msg)?;
    for seed in seeds.iter().filter(|s| **s != gossip_addr) {
        gossip.join(*seed).await?;
    }

    // The ring and the IPAM service, from the store.
    let ipam = NodeIpam::new(config.range, snapshot.allocations);
    let genesis = match config.genesis {
        Some(g) => g,
        None => ring_agent::lowest_address(seeds.iter().map(SocketAddr::ip), config.node_ip),
    };
    let mut ring_config =
        RingAgentConfig::new(config.range, config.block_prefix(), config.node_ip, genesis);
    ring_config.node.quarantine = Duration::from_secs(config.quarantine);
    let ring = RingAgent::new(
        ring_config,
        Identity::new(identity.peer_id, identity.incarnation),
        ipam.restored(),
    );
    let status = Arc::new(RwLock::new(Status::default()));
    let mut agent = Agent {
        rng,
        store,
        gossip: gossip.clone(),
        channel,
        security,
        ring,
        ipam,
        journal: ReleaseJournal::beside(&config.socket),
        datapath,
        peers: BTreeMap::new(),
        down: BTreeSet::new(),
        datapath_dirty: true,
        reconciles: 0,
        last_reconcile_error: String::new(),
        programmed: (0, 0),
        status: status.clone(),
        started: tokio::time::Instant::now(),
        config: config.clone(),
    };
    if let Some(bytes) = &snapshot.ring {
        match Ring::decode(bytes) {
            Ok(ring) => {
                let now = agent.now();
                agent.ring.start(now, ring, &mut agent.store)?;
                agent.send().await;
            }
            Err(e) => bail!("the stored ring is unreadable: {e}"),
        }
    }
    // Releases the plugin journaled while no agent ran, before the socket
    // serves any allocation.
    if agent.apply_journal() > 0 {
        agent.flush().await?;
    }

    // Side tasks.
    let (plugin_tx, mut plugin_rx) = mpsc::channel::<server::Call>(64);
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminCall>(8);
    let plugin_server = Server::bind(&config.socket)?;
    let admin_listener = server::bind_private(&config.admin_socket)?;
    let metrics = Arc::new(Metrics::new());
    let http_listener = tokio::net::TcpListener::bind(config.status_addr)
        .await
        .with_context(|| format!("bind the status API on {}", config.status_addr))?;
    let tasks = [
        tokio::spawn(plugin_server.serve(plugin_tx)),
        tokio::spawn(server::serve_lines(
            admin_listener,
            admin_tx,
            LineLimits::new(64 * 1024, Duration::from_secs(5)),
            decode_admin,
            encode_admin,
        )),
        tokio::spawn(http::serve(http_listener, report::handler(status, metrics))),
    ];
    info!(socket = %config.socket.display(), status = %config.status_addr, "serving");

    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reconcile = Duration::ZERO;
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            Some((request, reply)) = plugin_rx.recv() => {
                let response = agent.handle_plugin(request);
                if let Err(e) = agent.flush().await {
                    warn!(error = %e, "after a plugin request");
                }
                let _ = reply.send(response);
                // The status API shows the change at once.
                agent.refresh_status().await;
            }
            Some((request, reply)) = admin_rx.recv() => {
                let response = agent.handle_admin(request).await;
                let _ = reply.send(response);
                agent.refresh_status().await;
            }
            event = events.recv() => match event {
                Some(event) => agent.handle_event(event),
                None => break Err(anyhow::anyhow!("the gossip driver stopped")),
            },
            _ = tick.tick() => {
                if let Err(e) = agent.tick().await {
                    warn!(error = %e, "tick");
                }
                let now = agent.now();
                if agent.datapath_dirty || now.saturating_sub(last_reconcile) >= RECONCILE {
                    last_reconcile = now;
                    agent.reconcile().await;
                    // Journaled by a plugin that found the socket gone
                    // while this agent restarted.
                    if agent.apply_journal() > 0
                        && let Err(e) = agent.flush().await
                    {
                        warn!(error = %e, "after the journaled releases");
                    }
                }
                agent.refresh_status().await;
            }
        }
    };
    info!("shutting down: leaving the mesh");
    for t in tasks {
        t.abort();
    }
    let _ = gossip.shutdown(true).await;
    let _ = std::fs::remove_file(&config.socket);
    let _ = std::fs::remove_file(&config.admin_socket);
    result
}
