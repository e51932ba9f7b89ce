//! `overlayd`'s main loop: the crates wired together.
//!
//! One task owns the state machines and the store, so every change is
//! ordered and persisted before anything is answered or sent:
//!
//! - the **gossip** driver (`overlay_gossip::driver`): peers, their underlay
//!   address and VTEP MAC, and the `ipam-ring` channel;
//! - the **IPAM ring** node (`overlay_ipam::ring::Node`): this node's blocks
//!   and its pods' addresses; allocation answers at once from owned space or
//!   fails with a typed reason (code 11 "no space yet", 50 exhausted);
//! - the **store** (`redb`): identity, ring and allocations, one durable
//!   transaction per change, committed before a CNI `ADD` is answered and
//!   before a donation is sent;
//! - the **datapath** (`overlay_netlink::node`): the bridge and the VXLAN
//!   device with the MTU derived from the underlay, reconciled against the
//!   gossiped peers and the ring's owners, rebuilt when deleted.
//!
//! Pods get host addresses (`/32` or `/128`) with the node's bridge address
//! as their on-link gateway; the bridge holds that address with the cluster
//! range's prefix, so the node reaches its pods on the bridge and every
//! remote block through the more specific routes on the VXLAN device.
//!
//! Side tasks serve the CNI plugin's unix socket, the admin socket and the
//! HTTP status API; they talk to the main loop through bounded channels.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use overlay_core::{MacAddr, PeerId, Vni};
use overlay_gossip::driver::{self, Credentials, DriverConfig};
use overlay_gossip::secure::{Psk, PskParams, Security, StaticKeypair};
use overlay_gossip::{ChannelId, Config as GossipConfig, Event, PeerRecord};
use overlay_ipam::agent::{
    AgentError, AgentRequest, AgentResponse, AllocatedIp, Allocation, AttachmentRecord,
    ProtocolError, decode_request, encode_response,
};
use overlay_ipam::ring::{Anomaly, Identity, Message, Node, NodeConfig, Output, Ring, Tombstone};
use overlay_netlink::node::{NodeConfig as DatapathConfig, NodeDatapath};
use overlay_netlink::overlay::RemotePeer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::client::{AdminRequest, AdminResponse};
use super::config::Config;
use super::http::{self, Handler, Response};
use super::metrics::Metrics;
use super::status::{
    BlockStatus, ConnectionStatus, DatapathStatus, Encryption, GossipCounters, IpamStatus,
    PeerStatus, Status,
};
use super::store::{AllocationRecord, AttachmentKey, Change, Store};

/// The gossip channel of the IPAM ring.
const RING_CHANNEL: &str = "ipam-ring";
/// The key under which the node's own bridge address is allocated.
const GATEWAY_NETWORK: &str = "";
/// How often the main loop runs the ring's timers and refreshes status.
const TICK: Duration = Duration::from_millis(250);
/// How often the ring's anti-entropy digest goes to one random peer.
const ANTI_ENTROPY: Duration = Duration::from_secs(3);
/// How often the datapath is reconciled even when nothing was announced.
const RECONCILE: Duration = Duration::from_secs(5);
/// Ring records per gossip message (keeps each under the frame limit).
const RECORDS_PER_MESSAGE: usize = 16;
/// Digest bucket bits for ring anti-entropy (64 buckets, 512 bytes).
const DIGEST_BITS: u8 = 6;
/// How long a genesis seed listens for an existing ring before founding one.
const GENESIS_WAIT: Duration = Duration::from_secs(2);
/// Anomalies kept for status.
const MAX_ANOMALIES: usize = 100;

type PluginCall = (AgentRequest, oneshot::Sender<AgentResponse>);
type AdminCall = (AdminRequest, oneshot::Sender<AdminResponse>);

/// The VTEP MAC of a peer: locally administered, from its id.
fn vtep_mac(id: PeerId) -> MacAddr {
    let b = id.to_bytes();
    MacAddr::new([0x02, b[11], b[12], b[13], b[14], b[15]])
}

/// The next hop of a peer's pod blocks on the VXLAN device: its underlay
/// address over IPv4; over IPv6 the EUI-64 link-local address of its VTEP
/// MAC, because the kernel refuses an on-link IPv6 gateway that a route on
/// another device (the underlay's subnet) covers ("Nexthop has invalid
/// gateway or device mismatch") and accepts any link-local one.
fn vtep_ip(underlay: IpAddr, mac: MacAddr) -> IpAddr {
    match underlay {
        IpAddr::V4(_) => underlay,
        IpAddr::V6(_) => {
            let m = mac.octets();
            IpAddr::V6(std::net::Ipv6Addr::from([
                0xfe,
                0x80,
                0,
                0,
                0,
                0,
                0,
                0,
                m[0] ^ 0x02,
                m[1],
                m[2],
                0xff,
                0xfe,
                m[3],
                m[4],
                m[5],
            ]))
        }
    }
}

fn gateway_key() -> AttachmentKey {
    AttachmentKey::new(GATEWAY_NETWORK, "gateway", "bridge")
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// Everything the main loop owns.
struct Agent {
    config: Config,
    started: tokio::time::Instant,
    rng: StdRng,
    store: Store,
    peer_id: PeerId,
    incarnation: u64,
    gossip: driver::Handle,
    channel: ChannelId,
    security: Security,
    /// `None` until this node knows the ring (a joiner waits for the
    /// genesis seed's record).
    node: Option<Node<AttachmentKey>>,
    /// Allocations restored from the store before the ring is known.
    restored: Vec<(IpAddr, AttachmentKey)>,
    allocations: BTreeMap<AttachmentKey, AllocationRecord>,
    gateway: Option<IpAddr>,
    ring_bytes: Vec<u8>,
    datapath: NodeDatapath,
    peers: BTreeMap<PeerId, PeerRecord>,
    down: BTreeSet<PeerId>,
    datapath_dirty: bool,
    reconciles: u64,
    last_reconcile_error: String,
    programmed: (usize, usize),
    anomalies: Vec<String>,
    published_blocks: Vec<IpNet>,
    status: Arc<RwLock<Status>>,
    genesis_deadline: Option<Duration>,
}

impl Agent {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn universe_prefix(&self) -> u8 {
        self.config.range.prefix_len()
    }

    fn genesis_addr(&self) -> Result<IpAddr> {
        if let Some(g) = self.config.genesis {
            return Ok(g);
        }
        let seeds = self.config.seed_addrs().map_err(anyhow::Error::msg)?;
        Ok(seeds
            .iter()
            .map(SocketAddr::ip)
            .chain(std::iter::once(self.config.node_ip))
            .min()
            .unwrap_or(self.config.node_ip))
    }

    /// Create the ring node once the genesis peer is known: from the store,
    /// by founding the ring (the genesis seed), or from the genesis seed's
    /// record in gossip.
    fn ensure_node(&mut self) -> Result<()> {
        if self.node.is_some() {
            return Ok(());
        }
        let genesis_addr = self.genesis_addr()?;
        let genesis_peer = if genesis_addr == self.config.node_ip {
            match self.genesis_deadline {
                Some(deadline) if self.now() >= deadline => Some(self.peer_id),
                Some(_) => None,
                None => {
                    self.genesis_deadline = Some(self.now() + GENESIS_WAIT);
                    None
                }
            }
        } else {
            self.peers
                .values()
                .find(|r| r.underlay.first().map(SocketAddr::ip) == Some(genesis_addr))
                .map(|r| r.id)
        };
        let Some(genesis_peer) = genesis_peer else {
            return Ok(());
        };
        let ring = Ring::from_seeds(
            self.config.range,
            self.config.block_prefix(),
            &[genesis_peer],
        )
        .context("ring genesis")?;
        self.start_node(ring)
    }

    fn start_node(&mut self, ring: Ring) -> Result<()> {
        let now = self.now();
        let identity = Identity::new(self.peer_id, self.incarnation);
        let restored = std::mem::take(&mut self.restored);
        info!(genesis = ?ring.genesis().id(), restored = restored.len(), "IPAM ring ready");
        self.node = Some(Node::restore(
            identity,
            ring,
            restored,
            NodeConfig::default(),
            now,
        ));
        self.persist_ring()?;
        Ok(())
    }

    /// Commit the ring when it changed (before any donation goes out).
    fn persist_ring(&mut self) -> Result<()> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        let bytes = node.ring().encode();
        if bytes != self.ring_bytes {
            self.store.commit(&Change {
                ring: Some(bytes.clone()),
                ..Change::default()
            })?;
            self.ring_bytes = bytes;
        }
        Ok(())
    }

    /// Send what the ring node asks for; persist first.
    async fn flush(&mut self) -> Result<()> {
        self.persist_ring()?;
        let mut outputs = Vec::new();
        if let Some(node) = &mut self.node {
            while let Some(out) = node.poll_output() {
                outputs.push(out);
            }
        }
        for out in outputs {
            match out {
                Output::Broadcast(delta) => {
                    for part in delta.split(RECORDS_PER_MESSAGE) {
                        let bytes = Message::Delta(part).encode();
                        if let Err(e) = self.gossip.broadcast(self.channel, bytes).await {
                            warn!(error = %e, "ring broadcast");
                        }
                    }
                }
                Output::Send { to, message } => self.send(to, message).await,
                Output::Anomaly(a) => self.anomaly(&a),
                Output::Reidentified { old, new } => {
                    warn!(old = %old.peer, new = %new.peer, "this node was tombstoned: it takes a new identity");
                    self.store.commit(&Change {
                        identity: Some((new.peer, new.incarnation)),
                        ..Change::default()
                    })?;
                    self.peer_id = new.peer;
                    self.incarnation = new.incarnation;
                }
                other => debug!(output = ?other, "ring output"),
            }
        }
        Ok(())
    }

    async fn send(&mut self, to: PeerId, message: Message) {
        let parts = match message {
            Message::Delta(delta) => delta
                .split(RECORDS_PER_MESSAGE)
                .into_iter()
                .map(Message::Delta)
                .collect(),
            other => vec![other],
        };
        for m in parts {
            if let Err(e) = self.gossip.unicast(self.channel, to, m.encode()).await {
                debug!(peer = %to, error = %e, "ring unicast");
            }
        }
    }

    fn anomaly(&mut self, a: &Anomaly) {
        warn!(anomaly = ?a, "IPAM ring anomaly");
        if self.anomalies.len() >= MAX_ANOMALIES {
            self.anomalies.remove(0);
        }
        self.anomalies.push(format!("{a:?}"));
    }

    /// The bridge address: allocated once from the node's own space.
    async fn ensure_gateway(&mut self) -> Result<()> {
        if self.gateway.is_some() {
            return Ok(());
        }
        let now = self.now();
        let Some(node) = &mut self.node else {
            return Ok(());
        };
        let key = gateway_key();
        let ip = match self.allocations.get(&key).and_then(|r| r.ips.last()) {
            Some(net) => net.addr(),
            None => match node.allocate(now, key.clone()) {
                Ok(first) => {
                    // Never the range's network address: held too, and the
                    // next one is the bridge's.
                    let mut ips = vec![host_net(first)];
                    if first == self.config.range.network() {
                        match node.allocate(now, key.clone()) {
                            Ok(next) => ips.push(host_net(next)),
                            Err(_) => {
                                node.release(now, &key);
                                return Ok(());
                            }
                        }
                    }
                    let ip = ips.last().map(IpNet::addr).unwrap_or(first);
                    let record = AllocationRecord {
                        gateways: vec![None; ips.len()],
                        ips,
                    };
                    self.store.commit(&Change {
                        ring: Some(node.ring().encode()),
                        put: vec![(key.clone(), record.clone())],
                        ..Change::default()
                    })?;
                    self.ring_bytes = node.ring().encode();
                    self.allocations.insert(key, record);
                    ip
                }
                Err(_) => return Ok(()),
            },
        };
        let gw = IpNet::new(ip, self.universe_prefix()).context("gateway prefix")?;
        self.datapath
            .set_gateways(&[gw])
            .await
            .context("bridge address")?;
        info!(gateway = %gw, "node bridge address");
        self.gateway = Some(ip);
        Ok(())
    }

    fn mtu(&self) -> Option<u32> {
        self.datapath.mtu()
    }

    /// One CNI plugin request.
    fn handle_plugin(&mut self, request: AgentRequest) -> AgentResponse {
        let now = self.now();
        let error = |code: u32, msg: String| AgentResponse::Error(AgentError::new(code, msg));
        let not_ready = |what: &str| error(11, format!("no space yet: {what}"));
        match request {
            AgentRequest::Allocate(a) => {
                let key = AttachmentKey::new(&a.network, &a.container_id, &a.ifname);
                let (Some(node), Some(gateway)) = (&mut self.node, self.gateway) else {
                    return not_ready("this node has not joined the address ring yet");
                };
                if let Some(existing) = self.allocations.get(&key) {
                    return AgentResponse::Allocated(self.allocation_of(existing, gateway));
                }
                match node.allocate(now, key.clone()) {
                    Ok(ip) => {
                        let record = AllocationRecord {
                            ips: vec![host_net(ip)],
                            gateways: vec![Some(gateway)],
                        };
                        let ring = node.ring().encode();
                        let change = Change {
                            ring: Some(ring.clone()),
                            put: vec![(key.clone(), record.clone())],
                            ..Change::default()
                        };
                        // Durable before the answer: a crash after this
                        // never hands the address out again.
                        if let Err(e) = self.store.commit(&change) {
                            node.release(now, &key);
                            return error(11, format!("store: {e}"));
                        }
                        self.ring_bytes = ring;
                        self.allocations.insert(key, record.clone());
                        AgentResponse::Allocated(self.allocation_of(&record, gateway))
                    }
                    Err(f) => error(f.cni_code(), f.to_string()),
                }
            }
            AgentRequest::Release(a) => {
                let key = AttachmentKey::new(&a.network, &a.container_id, &a.ifname);
                if !self.allocations.contains_key(&key) {
                    return AgentResponse::Done;
                }
                if let Some(node) = &mut self.node {
                    node.release(now, &key);
                }
                let ring = self.node.as_ref().map(|n| n.ring().encode());
                if let Err(e) = self.store.commit(&Change {
                    ring: ring.clone(),
                    remove: vec![key.clone()],
                    ..Change::default()
                }) {
                    return error(11, format!("store: {e}"));
                }
                if let Some(ring) = ring {
                    self.ring_bytes = ring;
                }
                self.allocations.remove(&key);
                AgentResponse::Done
            }
            AgentRequest::Check(a) => {
                let key = AttachmentKey::new(&a.network, &a.container_id, &a.ifname);
                match self.allocations.contains_key(&key) {
                    true => AgentResponse::Done,
                    false => error(
                        3,
                        format!("no address is allocated to {}/{}", a.container_id, a.ifname),
                    ),
                }
            }
            AgentRequest::Status(_) => match (&self.node, self.gateway) {
                (None, _) => not_ready("this node has not joined the address ring yet"),
                (Some(_), None) => not_ready("waiting for a block from a peer"),
                (Some(node), Some(_)) if node.usable_free(now) == 0 => {
                    not_ready("this node's blocks are full; more space has been requested")
                }
                _ => AgentResponse::Done,
            },
            AgentRequest::List(n) => AgentResponse::Attachments {
                attachments: self
                    .allocations
                    .iter()
                    .filter(|(k, _)| k.network == n.network)
                    .map(|(k, r)| {
                        AttachmentRecord::new(
                            k.container_id.clone(),
                            k.ifname.clone(),
                            r.ips.iter().map(IpNet::addr).collect(),
                        )
                    })
                    .collect(),
            },
            other => error(4, format!("unsupported request {other:?}")),
        }
    }

    fn allocation_of(&self, record: &AllocationRecord, gateway: IpAddr) -> Allocation {
        let mut allocation = Allocation::new(
            record
                .ips
                .iter()
                .map(|ip| AllocatedIp::new(*ip).with_gateway(gateway))
                .collect(),
        );
        allocation.mtu = self.mtu();
        allocation
    }

    /// One admin request.
    async fn handle_admin(&mut self, request: AdminRequest) -> AdminResponse {
        let now = self.now();
        match request {
            AdminRequest::Rmpeer { peer } => {
                let Some(node) = &mut self.node else {
                    return AdminResponse::Error {
                        msg: "this node has not joined the address ring yet".into(),
                    };
                };
                let found = self
                    .peers
                    .values()
                    .find(|r| r.name == peer || r.id.to_string() == peer)
                    .map(|r| (r.id, r.incarnation))
                    .or_else(|| peer.parse::<PeerId>().ok().map(|id| (id, u64::MAX)));
                let Some((dead, incarnation)) = found else {
                    return AdminResponse::Error {
                        msg: format!("no peer named {peer:?}"),
                    };
                };
                if dead == self.peer_id {
                    return AdminResponse::Error {
                        msg: "a node cannot reclaim itself".into(),
                    };
                }
                if self.peers.contains_key(&dead) && !self.down.contains(&dead) {
                    return AdminResponse::Error {
                        msg: format!("{peer} is alive; stop it before declaring it dead"),
                    };
                }
                let blocks: Vec<String> = node
                    .ring()
                    .entries_of(dead)
                    .iter()
                    .map(|e| e.block.to_string())
                    .collect();
                let tombstone = Tombstone {
                    peer: dead,
                    up_to_incarnation: incarnation,
                    heir: self.peer_id,
                };
                if let Err(e) = node.reclaim(now, tombstone) {
                    return AdminResponse::Error { msg: e.to_string() };
                }
                info!(peer = %dead, blocks = blocks.len(), "reclaimed a dead peer's blocks");
                if let Err(e) = self.flush().await {
                    return AdminResponse::Error { msg: e.to_string() };
                }
                self.datapath_dirty = true;
                AdminResponse::Done {
                    reclaimed: blocks,
                    heir: self.peer_id.to_string(),
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::PeerUp(r) | Event::PeerChanged(r) => {
                if let Some(node) = &mut self.node {
                    node.observe_peer(now, Identity::new(r.id, r.incarnation));
                }
                self.down.remove(&r.id);
                self.peers.insert(r.id, r);
                self.datapath_dirty = true;
            }
            Event::PeerDown(id) => {
                self.down.insert(id);
                self.datapath_dirty = true;
            }
            Event::ChannelMessage {
                channel,
                from,
                bytes,
            } if channel == self.channel => match Message::decode(&bytes) {
                Ok(message) => self.ring_message(from, message),
                Err(e) => debug!(peer = %from, error = %e, "undecodable ring message"),
            },
            other => debug!(event = ?other, "gossip event"),
        }
    }

    fn ring_message(&mut self, from: PeerId, message: Message) {
        let now = self.now();
        // Before the ring is known (a joiner waits for the genesis seed's
        // record, see `ensure_node`) there is nothing to apply a message to;
        // anti-entropy repairs whatever was missed once it is.
        let Some(node) = &mut self.node else {
            return;
        };
        match message {
            Message::Delta(delta) => {
                node.handle_delta(now, &delta);
            }
            other => node.handle_message(now, from, other),
        }
        self.datapath_dirty = true;
    }

    async fn tick(&mut self, anti_entropy: bool) -> Result<()> {
        self.ensure_node()?;
        let now = self.now();
        if let Some(node) = &mut self.node {
            node.handle_timeout(now, &mut self.rng);
            if anti_entropy {
                let alive: Vec<PeerId> = self
                    .peers
                    .keys()
                    .filter(|id| **id != self.peer_id && !self.down.contains(id))
                    .copied()
                    .collect();
                if !alive.is_empty() {
                    let to = alive[self.rng.random_range(0..alive.len())];
                    let digest = node.digest_message(DIGEST_BITS);
                    self.send(to, digest).await;
                }
            }
        }
        self.flush().await?;
        self.ensure_gateway().await?;
        self.publish_blocks().await;
        Ok(())
    }

    /// Keep the local gossip record's pod blocks equal to the ring's.
    async fn publish_blocks(&mut self) {
        let Some(node) = &self.node else { return };
        let mut blocks = node.owned_blocks();
        blocks.truncate(overlay_gossip::record::MAX_POD_BLOCKS);
        if blocks != self.published_blocks {
            let b = blocks.clone();
            match self.gossip.update_local(move |r| r.pod_blocks = b).await {
                Ok(()) => self.published_blocks = blocks,
                Err(e) => warn!(error = %e, "publish pod blocks"),
            }
        }
    }

    /// Program every live remote peer: neighbour and FDB entry for its
    /// VTEP, a route per block the ring says it owns.
    async fn reconcile(&mut self) {
        let Some(node) = &self.node else { return };
        let ring = node.ring();
        let family_v4 = self.config.node_ip.is_ipv4();
        let mut desired = Vec::new();
        let mut routes = 0;
        for r in self.peers.values() {
            if r.id == self.peer_id || self.down.contains(&r.id) || r.is_leaving() {
                continue;
            }
            let Some(underlay) = r.underlay.first().map(SocketAddr::ip) else {
                continue;
            };
            if underlay.is_ipv4() != family_v4 {
                continue;
            }
            let mut peer = RemotePeer::new(underlay, r.vtep_mac, vtep_ip(underlay, r.vtep_mac));
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
        let now = self.now();
        let Ok(gossip) = self.gossip.status().await else {
            return;
        };
        let own_name = gossip.local.name.clone();
        let own_id = self.peer_id;
        let name_of = |id: PeerId, peers: &BTreeMap<PeerId, PeerRecord>| match id == own_id {
            true => own_name.clone(),
            false => peers
                .get(&id)
                .map_or_else(|| id.to_string(), |r| r.name.clone()),
        };
        let ring_blocks = |id: PeerId| -> Vec<String> {
            self.node
                .as_ref()
                .map(|n| {
                    n.ring()
                        .entries_of(id)
                        .iter()
                        .map(|e| e.block.to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let peer_status = |r: &PeerRecord, state: &str| PeerStatus {
            id: r.id.to_string(),
            name: r.name.clone(),
            incarnation: r.incarnation,
            underlay: r
                .underlay
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            vtep_mac: r.vtep_mac.to_string(),
            blocks: ring_blocks(r.id),
            state: state.to_owned(),
            unreachable: r.unreachable.iter().map(ToString::to_string).collect(),
        };
        let local = gossip.local.clone();
        let mut peers = Vec::new();
        let mut connections = Vec::new();
        for r in self.peers.values().filter(|r| r.id != self.peer_id) {
            let state = if self.down.contains(&r.id) {
                "down"
            } else {
                "alive"
            };
            peers.push(peer_status(r, state));
            connections.push(ConnectionStatus {
                peer: r.id.to_string(),
                address: r
                    .underlay
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                state: if state == "alive" {
                    "established".into()
                } else {
                    "failed".into()
                },
                last_seen_ms: None,
            });
        }
        let mut ipam = IpamStatus {
            range: self.config.range.to_string(),
            anomalies: self.anomalies.clone(),
            ..IpamStatus::default()
        };
        match &self.node {
            None => {
                ipam.state = "no-space-yet".into();
                ipam.reason = "waiting for the ring's genesis seed".into();
            }
            Some(node) => {
                ipam.genesis = format!("{:?}", node.ring().genesis().id());
                let used_by_block = |block: &IpNet| {
                    self.allocations
                        .values()
                        .flat_map(|r| r.ips.iter())
                        .filter(|ip| block.contains(&ip.addr()))
                        .count() as u64
                };
                let mut used = 0;
                let mut free = 0;
                for e in node.ring().entries_of(self.peer_id) {
                    let u = used_by_block(&e.block);
                    let size = u64::try_from(e.size()).unwrap_or(u64::MAX);
                    used += u;
                    free += size.saturating_sub(u);
                    ipam.blocks.push(BlockStatus {
                        cidr: e.block.to_string(),
                        used: u,
                        free: size.saturating_sub(u),
                        quarantined: e.is_adopted(),
                    });
                }
                ipam.used = used;
                ipam.free = free;
                for e in node.ring().entries() {
                    *ipam
                        .owners
                        .entry(name_of(e.owner, &self.peers))
                        .or_default() += u64::try_from(e.size()).unwrap_or(u64::MAX);
                }
                let usable = node.usable_free(now);
                (ipam.state, ipam.reason) = match (self.gateway, usable) {
                    (None, _) => (
                        "no-space-yet".into(),
                        "waiting for a block from a peer".into(),
                    ),
                    (Some(_), 0) => (
                        "no-space-yet".into(),
                        "blocks full; more space requested".into(),
                    ),
                    _ => ("ready".into(), String::new()),
                };
            }
        }
        let mut rejected = BTreeMap::new();
        let s = &gossip.secure.rejected;
        for (k, v) in [
            ("malformed", s.malformed),
            ("security_mismatch", s.security_mismatch),
            ("unknown_session", s.unknown_session),
            ("replayed", s.replayed),
            ("too_old", s.too_old),
            ("bad_mac", s.bad_mac),
            ("handshake_failed", s.handshake_failed),
            ("rate_limited", s.rate_limited),
        ] {
            rejected.insert(k.to_owned(), v);
        }
        let status = Status {
            version: env!("CARGO_PKG_VERSION").into(),
            node: PeerStatus {
                id: self.peer_id.to_string(),
                name: local.name.clone(),
                incarnation: self.incarnation,
                underlay: gossip.local_addr.to_string(),
                vtep_mac: local.vtep_mac.to_string(),
                blocks: ring_blocks(self.peer_id),
                state: "alive".into(),
                unreachable: vec![],
            },
            encryption: match self.security {
                Security::Unencrypted => Encryption::Unencrypted,
                _ => Encryption::Encrypted,
            },
            peers,
            connections,
            ipam,
            datapath: DatapathStatus {
                bridge: self.config.bridge.clone(),
                vxlan: self.config.vxlan.clone(),
                mtu: self.mtu().unwrap_or(0),
                peers_programmed: self.programmed.0,
                routes: self.programmed.1,
                reconciles: self.reconciles,
                last_error: self.last_reconcile_error.clone(),
            },
            gossip: GossipCounters {
                bytes_sent: gossip.gossip.bytes_out,
                bytes_received: gossip.gossip.bytes_in,
                rejected,
            },
        };
        if let Ok(mut s) = self.status.write() {
            *s = status;
        }
    }
}

/// Bind a unix socket at `path`, mode 0600 (a stale socket file is
/// replaced).
fn bind_private(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove stale {}", path.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    Ok(listener)
}

/// Serve a unix socket of one request line per connection: each request
/// decoded by `decode` (or answered at once with its error), handed to the
/// main loop through `calls`, and its answer written back by `encode`. A
/// client gets `limit` bytes and `timeout` to send its line.
async fn serve_lines<Req, Resp>(
    listener: UnixListener,
    calls: mpsc::Sender<(Req, oneshot::Sender<Resp>)>,
    limit: u64,
    timeout: Duration,
    decode: fn(&[u8]) -> Result<Req, Resp>,
    encode: fn(&Resp) -> Vec<u8>,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = Vec::new();
            let mut reader = BufReader::new(read.take(limit));
            match tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let response = match decode(&line) {
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if calls.send((request, tx)).await.is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(response) => response,
                        Err(_) => return,
                    }
                }
                Err(refusal) => refusal,
            };
            let _ = write.write_all(&encode(&response)).await;
        });
    }
}

fn decode_plugin(line: &[u8]) -> Result<AgentRequest, AgentResponse> {
    if line.last() != Some(&b'\n') {
        return Err(ProtocolError::TooLarge.to_response());
    }
    decode_request(line).map_err(|e| e.to_response())
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

/// The status API's handler.
fn status_handler(status: Arc<RwLock<Status>>, metrics: Arc<Metrics>) -> Handler {
    Arc::new(move |path: &str| {
        let Ok(s) = status.read() else {
            return Response::text(500, "status unavailable\n");
        };
        match path {
            "/status" => Response::json(serde_json::to_vec(&*s).unwrap_or_default()),
            "/healthz" => Response::text(200, "ok\n"),
            "/ready" => match s.ipam.state.as_str() {
                "ready" => Response::text(200, "ready\n"),
                other => Response::text(503, format!("{other}: {}\n", s.ipam.reason)),
            },
            "/metrics" => {
                metrics.observe(&s);
                Response {
                    status: 200,
                    content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body: metrics.encode().into_bytes(),
                }
            }
            _ => Response::text(404, "not found\n"),
        }
    })
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
    .port(config.vxlan_port);
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
    let channel = gossip.register_channel(RING_CHANNEL).await?;
    let seeds = config.seed_addrs().map_err(anyhow::Error::msg)?;
    for seed in seeds.iter().filter(|s| **s != gossip_addr) {
        gossip.join(*seed).await?;
    }

    let restored: Vec<(IpAddr, AttachmentKey)> = snapshot
        .allocations
        .iter()
        .flat_map(|(k, r)| r.ips.iter().map(move |ip| (ip.addr(), k.clone())))
        .collect();
    let status = Arc::new(RwLock::new(Status::default()));
    let mut agent = Agent {
        rng,
        store,
        peer_id: identity.peer_id,
        incarnation: identity.incarnation,
        gossip: gossip.clone(),
        channel,
        security,
        node: None,
        restored,
        allocations: snapshot.allocations.clone(),
        gateway: None,
        ring_bytes: Vec::new(),
        datapath,
        peers: BTreeMap::new(),
        down: BTreeSet::new(),
        datapath_dirty: true,
        reconciles: 0,
        last_reconcile_error: String::new(),
        programmed: (0, 0),
        anomalies: Vec::new(),
        published_blocks: Vec::new(),
        status: status.clone(),
        genesis_deadline: None,
        started: tokio::time::Instant::now(),
        config: config.clone(),
    };
    if let Some(bytes) = &snapshot.ring {
        match Ring::decode(bytes) {
            Ok(ring) => agent.start_node(ring)?,
            Err(e) => bail!("the stored ring is unreadable: {e}"),
        }
    }

    // Side tasks.
    let (plugin_tx, mut plugin_rx) = mpsc::channel::<PluginCall>(64);
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminCall>(8);
    let plugin_listener = bind_private(&config.socket)?;
    let admin_listener = bind_private(&config.admin_socket)?;
    let metrics = Arc::new(Metrics::new());
    let http_listener = tokio::net::TcpListener::bind(config.status_addr)
        .await
        .with_context(|| format!("bind the status API on {}", config.status_addr))?;
    let tasks = [
        tokio::spawn(serve_lines(
            plugin_listener,
            plugin_tx,
            overlay_ipam::agent::MAX_MESSAGE as u64,
            Duration::from_secs(2),
            decode_plugin,
            encode_response,
        )),
        tokio::spawn(serve_lines(
            admin_listener,
            admin_tx,
            64 * 1024,
            Duration::from_secs(5),
            decode_admin,
            encode_admin,
        )),
        tokio::spawn(http::serve(http_listener, status_handler(status, metrics))),
    ];
    info!(socket = %config.socket.display(), status = %config.status_addr, "serving");

    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_anti_entropy = Duration::ZERO;
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
                let now = agent.now();
                let anti_entropy = now.saturating_sub(last_anti_entropy) >= ANTI_ENTROPY;
                if anti_entropy {
                    last_anti_entropy = now;
                }
                if let Err(e) = agent.tick(anti_entropy).await {
                    warn!(error = %e, "tick");
                }
                if agent.datapath_dirty || now.saturating_sub(last_reconcile) >= RECONCILE {
                    last_reconcile = now;
                    agent.reconcile().await;
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
