//! The agent's answers to the [plugin protocol](super), sans-IO: pod
//! addresses from the node's share of the [ring](crate::ring), made durable
//! before they are handed out.
//!
//! [`NodeIpam`] answers each [`AgentRequest`] from a
//! [`RingAgent`]'s node and the
//! allocation records it keeps:
//!
//! - **Allocate** is idempotent: an attachment that holds addresses gets the
//!   same ones again (a runtime retrying an `ADD` must not leak one). A new
//!   address is committed through the caller's [`AllocationStore`],
//!   together with the ring, *before* the answer: a crash after the answer
//!   never hands the address out twice. If the commit fails the address is
//!   released again and the plugin gets code 11.
//! - Every pod gets a host address (`/32`, `/128`) with the node's bridge
//!   address as its gateway. That address is allocated once from the
//!   node's own space under [`AttachmentKey::gateway`]
//!   ([`gateway_to_program`](NodeIpam::gateway_to_program)), never the
//!   cluster range's network address (which is then held too), and pods are
//!   refused with code 11 until the caller has put it on the bridge.
//! - Failures are typed ([`ServiceError`]) with their CNI codes: 11 while
//!   the node has no usable space yet (with the reason), 50 when the ring
//!   is exhausted, 3 for `CHECK` of an attachment that holds nothing.
//!
//! Time is passed in; the service never reads a clock. The caller runs it
//! on the one task that owns the ring and the store, then calls
//! [`RingAgent::flush`](crate::ring::agent::RingAgent::flush) (an
//! allocation can ask peers for more space) and sends the answer.
//!
//! ```
//! use overlay_core::PeerId;
//! use overlay_ipam::agent::service::{AllocationStore, Commit, NodeIpam};
//! use overlay_ipam::agent::{AgentRequest, AgentResponse, Attachment};
//! use overlay_ipam::ring::agent::{RingAgent, RingAgentConfig, RingStore};
//! use overlay_ipam::ring::{Identity, Ring};
//! use std::time::Duration;
//!
//! /// Counts commits; a real agent writes one fsynced transaction each.
//! #[derive(Default)]
//! struct Disk(usize);
//! impl AllocationStore for Disk {
//!     type Error = std::convert::Infallible;
//!     fn commit(&mut self, _: &Commit<'_>) -> Result<(), Self::Error> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//! impl RingStore for Disk {
//!     type Error = std::convert::Infallible;
//!     fn save_ring(&mut self, _: &[u8]) -> Result<(), Self::Error> { Ok(()) }
//!     fn save_identity(&mut self, _: Identity) -> Result<(), Self::Error> { Ok(()) }
//! }
//!
//! let me = PeerId::from_u128(1);
//! let (universe, ip) = ("10.32.0.0/16".parse().unwrap(), "192.0.2.1".parse().unwrap());
//! let mut ring = RingAgent::new(RingAgentConfig::new(universe, 24, ip, ip), Identity::new(me, 1), []);
//! let mut disk = Disk::default();
//! ring.start(Duration::ZERO, Ring::from_seeds(universe, 24, &[me]).unwrap(), &mut disk).unwrap();
//!
//! let mut ipam = NodeIpam::new(universe, Default::default());
//! let t = Duration::ZERO;
//! let pod = AgentRequest::Allocate(Attachment::new("pods", "c1", "eth0"));
//! // No bridge address yet: try again later.
//! let AgentResponse::Error(e) = ipam.handle(t, &mut ring, &mut disk, pod.clone()) else { panic!() };
//! assert_eq!(e.code, 11);
//! // The bridge gets 10.32.0.1/16 (never the network address 10.32.0.0).
//! let gw = ipam.gateway_to_program(t, &mut ring, &mut disk).unwrap().unwrap();
//! assert_eq!(gw.to_string(), "10.32.0.1/16");
//! ipam.gateway_programmed(gw);
//! let AgentResponse::Allocated(a) = ipam.handle(t, &mut ring, &mut disk, pod.clone()) else { panic!() };
//! assert_eq!(a.ips[0].address.to_string(), "10.32.0.2/32");
//! assert_eq!(a.ips[0].gateway, Some(gw.addr()));
//! // The same attachment again: the same address, nothing new committed.
//! let commits = disk.0;
//! assert_eq!(ipam.handle(t, &mut ring, &mut disk, pod), AgentResponse::Allocated(a));
//! assert_eq!(disk.0, commits);
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    AgentError, AgentRequest, AgentResponse, AllocatedIp, Allocation, Attachment, AttachmentRecord,
};
use crate::ring::AllocFailure;
use crate::ring::agent::RingAgent;

/// The key of one attachment: what the ring's node allocates to and the
/// store keys its record by.
///
/// ```
/// use overlay_ipam::agent::Attachment;
/// use overlay_ipam::agent::service::AttachmentKey;
///
/// let key = AttachmentKey::from(&Attachment::new("pods", "c1", "eth0"));
/// assert_eq!(key, AttachmentKey::new("pods", "c1", "eth0"));
/// assert!(!key.is_gateway() && AttachmentKey::gateway().is_gateway());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct AttachmentKey {
    /// The CNI network (empty for the node's own [`gateway`](Self::gateway)).
    pub network: String,
    /// The container ID.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

impl AttachmentKey {
    /// A key from its parts.
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Self {
        AttachmentKey {
            network: network.to_owned(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        }
    }

    /// The key the node's bridge address is allocated under: network `""`
    /// (no CNI network has an empty name), container `gateway`, interface
    /// `bridge`.
    pub fn gateway() -> Self {
        AttachmentKey::new("", "gateway", "bridge")
    }

    /// Whether this is the [`gateway`](Self::gateway) key.
    pub fn is_gateway(&self) -> bool {
        *self == AttachmentKey::gateway()
    }
}

impl From<&Attachment> for AttachmentKey {
    fn from(a: &Attachment) -> Self {
        AttachmentKey::new(&a.network, &a.container_id, &a.ifname)
    }
}

/// The addresses of one attachment, as the store keeps them.
///
/// ```
/// use overlay_ipam::agent::service::AllocationRecord;
///
/// let r = AllocationRecord::new(vec!["10.32.0.2/32".parse().unwrap()], vec![Some("10.32.0.1".parse().unwrap())]);
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"ips":["10.32.0.2/32"],"gateways":["10.32.0.1"]}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllocationRecord {
    /// The addresses, with the prefix length handed out.
    pub ips: Vec<IpNet>,
    /// The gateway of each address, in the same order.
    #[serde(default)]
    pub gateways: Vec<Option<IpAddr>>,
}

impl AllocationRecord {
    /// A record from its parts.
    pub fn new(ips: Vec<IpNet>, gateways: Vec<Option<IpAddr>>) -> Self {
        AllocationRecord { ips, gateways }
    }
}

/// One atomic change for the store: all of it lands, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit<'a> {
    /// The ring's encoded form, when the ring is known.
    pub ring: Option<&'a [u8]>,
    /// A record to write.
    pub put: Option<(&'a AttachmentKey, &'a AllocationRecord)>,
    /// A record to delete.
    pub remove: Option<&'a AttachmentKey>,
}

/// Where the service makes allocations durable. [`commit`](Self::commit)
/// must return only once the change is on stable storage: the service
/// answers right after.
pub trait AllocationStore {
    /// Why a commit failed (its text goes to the plugin).
    type Error: std::fmt::Display;
    /// Commit one change atomically.
    fn commit(&mut self, commit: &Commit<'_>) -> Result<(), Self::Error>;
}

/// Why a request failed, with its CNI code
/// ([`cni_code`](Self::cni_code)).
///
/// ```
/// use overlay_ipam::agent::service::ServiceError;
/// use overlay_ipam::ring::AllocFailure;
///
/// assert_eq!(ServiceError::WaitingForBlock.cni_code(), 11);
/// assert_eq!(ServiceError::Alloc(AllocFailure::Exhausted).cni_code(), 50);
/// assert_eq!(ServiceError::WaitingForBlock.to_string(), "no space yet: waiting for a block from a peer");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The ring is not known yet, or the bridge address is not in place
    /// (11).
    #[error("no space yet: this node has not joined the address ring yet")]
    NotJoined,
    /// The node owns no block yet and has asked its peers (11).
    #[error("no space yet: waiting for a block from a peer")]
    WaitingForBlock,
    /// The node's blocks are full; it has asked for more (11).
    #[error("no space yet: this node's blocks are full; more space has been requested")]
    BlocksFull,
    /// The node allocator refused ([`AllocFailure::cni_code`]: 11 or 50).
    #[error(transparent)]
    Alloc(#[from] AllocFailure),
    /// The store refused the commit; nothing was handed out (11).
    #[error("store: {0}")]
    Store(String),
    /// `CHECK` of an attachment that holds no address (3).
    #[error("no address is allocated to {container_id}/{ifname}")]
    UnknownAttachment {
        /// The container ID.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
}

impl ServiceError {
    /// The CNI error code.
    pub fn cni_code(&self) -> u32 {
        match self {
            ServiceError::Alloc(f) => f.cni_code(),
            ServiceError::UnknownAttachment { .. } => 3,
            ServiceError::NotJoined
            | ServiceError::WaitingForBlock
            | ServiceError::BlocksFull
            | ServiceError::Store(_) => 11,
        }
    }

    /// The protocol's error response.
    pub fn to_response(&self) -> AgentResponse {
        AgentResponse::Error(AgentError::new(self.cni_code(), self.to_string()))
    }
}

/// One block this node owns, and how much of it is used (for status and
/// metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockUsage {
    /// The block.
    pub block: IpNet,
    /// Recorded addresses in it (the gateway's included).
    pub used: u64,
    /// The rest of it.
    pub free: u64,
    /// Whether it was adopted from a dead peer (quarantined for a while).
    pub adopted: bool,
}

/// A node agent's IPAM service (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct NodeIpam {
    universe: IpNet,
    records: BTreeMap<AttachmentKey, AllocationRecord>,
    gateway: Option<IpAddr>,
    mtu: Option<u32>,
}

impl NodeIpam {
    /// The service for the cluster range `universe`, with the records the
    /// store holds (the gateway's among them, if it was allocated before).
    pub fn new(universe: IpNet, records: BTreeMap<AttachmentKey, AllocationRecord>) -> Self {
        NodeIpam {
            universe,
            records,
            gateway: None,
            mtu: None,
        }
    }

    /// Every address the records hold, with its key: what
    /// [`RingAgent::new`] restores into the node once the ring is known.
    pub fn restored(&self) -> Vec<(IpAddr, AttachmentKey)> {
        self.records
            .iter()
            .flat_map(|(k, r)| r.ips.iter().map(move |ip| (ip.addr(), k.clone())))
            .collect()
    }

    /// The allocation records, the gateway's included.
    pub fn records(&self) -> &BTreeMap<AttachmentKey, AllocationRecord> {
        &self.records
    }

    /// How many recorded addresses fall in `block`.
    pub fn used_in(&self, block: &IpNet) -> u64 {
        self.records
            .values()
            .flat_map(|r| r.ips.iter())
            .filter(|ip| block.contains(&ip.addr()))
            .count() as u64
    }

    /// The blocks this node owns with their use, empty before the ring is
    /// known.
    pub fn blocks(&self, ring: &RingAgent<AttachmentKey>) -> Vec<BlockUsage> {
        let Some(node) = ring.node() else {
            return Vec::new();
        };
        node.ring()
            .entries_of(ring.identity().peer)
            .iter()
            .map(|e| {
                let used = self.used_in(&e.block);
                let size = u64::try_from(e.size()).unwrap_or(u64::MAX);
                BlockUsage {
                    block: e.block,
                    used,
                    free: size.saturating_sub(used),
                    adopted: e.is_adopted(),
                }
            })
            .collect()
    }

    /// Whether an allocation can succeed now (what a `STATUS` request
    /// answers): the ring known, the bridge address programmed, usable
    /// free space.
    pub fn readiness(
        &self,
        now: Duration,
        ring: &RingAgent<AttachmentKey>,
    ) -> Result<(), ServiceError> {
        match (ring.node(), self.gateway) {
            (None, _) => Err(ServiceError::NotJoined),
            (Some(_), None) => Err(ServiceError::WaitingForBlock),
            (Some(node), Some(_)) if node.usable_free(now) == 0 => Err(ServiceError::BlocksFull),
            _ => Ok(()),
        }
    }

    /// The node's bridge address, once programmed.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    /// The MTU handed out with each allocation (the overlay's).
    pub fn set_mtu(&mut self, mtu: Option<u32>) {
        self.mtu = mtu;
    }

    /// The bridge address to program, with the cluster range's prefix,
    /// while it is not [programmed](Self::gateway_programmed): the recorded
    /// one, or one allocated (and committed) now. `Ok(None)` when the node
    /// has no usable space yet (retry on the next tick).
    pub fn gateway_to_program<S: AllocationStore>(
        &mut self,
        now: Duration,
        ring: &mut RingAgent<AttachmentKey>,
        store: &mut S,
    ) -> Result<Option<IpNet>, S::Error> {
        if self.gateway.is_some() {
            return Ok(None);
        }
        let key = AttachmentKey::gateway();
        let ip = match self.records.get(&key).and_then(|r| r.ips.last()) {
            Some(net) => net.addr(),
            None => {
                let Some(node) = ring.node_mut() else {
                    return Ok(None);
                };
                let Ok(first) = node.allocate(now, key.clone()) else {
                    return Ok(None);
                };
                // Never the range's network address: held too, and the
                // next one is the bridge's.
                let mut ips = vec![IpNet::from(first)];
                if first == self.universe.network() {
                    match node.allocate(now, key.clone()) {
                        Ok(next) => ips.push(IpNet::from(next)),
                        Err(_) => {
                            node.release(now, &key);
                            return Ok(None);
                        }
                    }
                }
                let ip = ips.last().map_or(first, IpNet::addr);
                let gateways = vec![None; ips.len()];
                let record = AllocationRecord::new(ips, gateways);
                commit_put(now, ring, store, &key, &record)?;
                self.records.insert(key, record);
                ip
            }
        };
        Ok(IpNet::new(ip, self.universe.prefix_len()).ok())
    }

    /// The bridge now holds `gateway` (from
    /// [`gateway_to_program`](Self::gateway_to_program)): pods get it as
    /// their gateway from now on.
    pub fn gateway_programmed(&mut self, gateway: IpNet) {
        self.gateway = Some(gateway.addr());
    }

    /// Answer one request (see [`serve`](Self::serve)), a failure as its
    /// error response.
    pub fn handle<S: AllocationStore>(
        &mut self,
        now: Duration,
        ring: &mut RingAgent<AttachmentKey>,
        store: &mut S,
        request: AgentRequest,
    ) -> AgentResponse {
        self.serve(now, ring, store, request)
            .unwrap_or_else(|e| e.to_response())
    }

    /// Answer one request: allocations and releases are committed before
    /// this returns. Call [`RingAgent::flush`] afterwards.
    pub fn serve<S: AllocationStore>(
        &mut self,
        now: Duration,
        ring: &mut RingAgent<AttachmentKey>,
        store: &mut S,
        request: AgentRequest,
    ) -> Result<AgentResponse, ServiceError> {
        match request {
            AgentRequest::Allocate(a) => self.allocate(now, ring, store, AttachmentKey::from(&a)),
            AgentRequest::Release(a) => self.release(now, ring, store, AttachmentKey::from(&a)),
            AgentRequest::Check(a) => match self.records.contains_key(&AttachmentKey::from(&a)) {
                true => Ok(AgentResponse::Done),
                false => Err(ServiceError::UnknownAttachment {
                    container_id: a.container_id,
                    ifname: a.ifname,
                }),
            },
            AgentRequest::Status(_) => self.readiness(now, ring).map(|()| AgentResponse::Done),
            AgentRequest::List(n) => Ok(AgentResponse::Attachments {
                attachments: self
                    .records
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
            }),
        }
    }

    fn allocate<S: AllocationStore>(
        &mut self,
        now: Duration,
        ring: &mut RingAgent<AttachmentKey>,
        store: &mut S,
        key: AttachmentKey,
    ) -> Result<AgentResponse, ServiceError> {
        let (Some(node), Some(gateway)) = (ring.node_mut(), self.gateway) else {
            return Err(ServiceError::NotJoined);
        };
        if let Some(existing) = self.records.get(&key) {
            return Ok(AgentResponse::Allocated(
                self.allocation_of(existing, gateway),
            ));
        }
        let ip = node.allocate(now, key.clone())?;
        let record = AllocationRecord::new(vec![IpNet::from(ip)], vec![Some(gateway)]);
        // Durable before the answer: a crash after this never hands the
        // address out again.
        commit_put(now, ring, store, &key, &record)
            .map_err(|e| ServiceError::Store(e.to_string()))?;
        let allocation = self.allocation_of(&record, gateway);
        self.records.insert(key, record);
        Ok(AgentResponse::Allocated(allocation))
    }

    fn release<S: AllocationStore>(
        &mut self,
        now: Duration,
        ring: &mut RingAgent<AttachmentKey>,
        store: &mut S,
        key: AttachmentKey,
    ) -> Result<AgentResponse, ServiceError> {
        if !self.records.contains_key(&key) {
            return Ok(AgentResponse::Done);
        }
        if let Some(node) = ring.node_mut() {
            node.release(now, &key);
        }
        ring.commit_with(|ring| {
            store.commit(&Commit {
                ring,
                put: None,
                remove: Some(&key),
            })
        })
        .map_err(|e| ServiceError::Store(e.to_string()))?;
        self.records.remove(&key);
        Ok(AgentResponse::Done)
    }

    fn allocation_of(&self, record: &AllocationRecord, gateway: IpAddr) -> Allocation {
        let mut allocation = Allocation::new(
            record
                .ips
                .iter()
                .map(|ip| AllocatedIp::new(*ip).with_gateway(gateway))
                .collect(),
        );
        allocation.mtu = self.mtu;
        allocation
    }
}

/// Commit `record` for `key` with the ring; when the store refuses, the
/// node gives back what it allocated for `key`, so nothing is handed out
/// that is not durable.
fn commit_put<S: AllocationStore>(
    now: Duration,
    ring: &mut RingAgent<AttachmentKey>,
    store: &mut S,
    key: &AttachmentKey,
    record: &AllocationRecord,
) -> Result<(), S::Error> {
    let committed = ring.commit_with(|ring| {
        store.commit(&Commit {
            ring,
            put: Some((key, record)),
            remove: None,
        })
    });
    if committed.is_err()
        && let Some(node) = ring.node_mut()
    {
        node.release(now, key);
    }
    committed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Network;
    use crate::ring::agent::{RingAgentConfig, RingStore};
    use crate::ring::{Identity, Ring};
    use overlay_core::PeerId;

    /// The store's state in memory, applying commits as a store would.
    #[derive(Default)]
    struct Memory {
        ring: Option<Vec<u8>>,
        records: BTreeMap<AttachmentKey, AllocationRecord>,
        commits: usize,
        fail: bool,
    }

    impl AllocationStore for Memory {
        type Error = &'static str;
        fn commit(&mut self, c: &Commit<'_>) -> Result<(), Self::Error> {
            if self.fail {
                return Err("disk full");
            }
            self.commits += 1;
            if let Some(r) = c.ring {
                self.ring = Some(r.to_vec());
            }
            if let Some((k, r)) = c.put {
                self.records.insert(k.clone(), r.clone());
            }
            if let Some(k) = c.remove {
                self.records.remove(k);
            }
            Ok(())
        }
    }

    impl RingStore for Memory {
        type Error = &'static str;
        fn save_ring(&mut self, ring: &[u8]) -> Result<(), Self::Error> {
            self.ring = Some(ring.to_vec());
            Ok(())
        }
        fn save_identity(&mut self, _: Identity) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    const T: Duration = Duration::ZERO;

    /// A node that owns all of `universe`, its bridge address programmed.
    fn ready(universe: &str) -> (NodeIpam, RingAgent<AttachmentKey>, Memory) {
        let universe: IpNet = universe.parse().expect("net");
        let me = PeerId::from_u128(1);
        let ip = IpAddr::from([192, 0, 2, 1]);
        let config = RingAgentConfig::new(universe, universe.prefix_len(), ip, ip);
        let mut ring = RingAgent::new(config, Identity::new(me, 1), []);
        let mut store = Memory::default();
        let founded = Ring::from_seeds(universe, universe.prefix_len(), &[me]).expect("ring");
        ring.start(T, founded, &mut store).expect("start");
        let mut ipam = NodeIpam::new(universe, BTreeMap::new());
        let gw = ipam
            .gateway_to_program(T, &mut ring, &mut store)
            .expect("store")
            .expect("space");
        ipam.gateway_programmed(gw);
        (ipam, ring, store)
    }

    fn pod(c: &str) -> Attachment {
        Attachment::new("pods", c, "eth0")
    }

    fn code(r: AgentResponse) -> u32 {
        match r {
            AgentResponse::Error(e) => e.code,
            other => panic!("an error, got {other:?}"),
        }
    }

    #[test]
    fn the_gateway_is_never_the_network_address_and_survives_a_restart() {
        let (ipam, mut ring, mut store) = ready("198.18.0.0/28");
        assert_eq!(ipam.gateway(), Some(IpAddr::from([198, 18, 0, 1])));
        let gw = &store.records[&AttachmentKey::gateway()];
        assert_eq!(gw.ips.len(), 2, "the network address is held too");
        assert_eq!(gw.gateways, [None, None]);
        // Restarted from the store: the same gateway, nothing allocated.
        let mut again = NodeIpam::new(ipam.universe, store.records.clone());
        let commits = store.commits;
        let gw = again
            .gateway_to_program(T, &mut ring, &mut store)
            .expect("store")
            .expect("recorded");
        assert_eq!(gw.to_string(), "198.18.0.1/28");
        assert_eq!(store.commits, commits);
        again.gateway_programmed(gw);
        assert_eq!(again.gateway_to_program(T, &mut ring, &mut store), Ok(None));
        assert_eq!(again.restored().len(), 2);
    }

    #[test]
    fn allocate_is_durable_idempotent_and_released() {
        let (mut ipam, mut ring, mut store) = ready("198.18.0.0/24");
        ipam.set_mtu(Some(1450));
        let a = ipam.handle(T, &mut ring, &mut store, AgentRequest::Allocate(pod("c1")));
        let AgentResponse::Allocated(alloc) = a.clone() else {
            panic!("allocated, got {a:?}")
        };
        assert_eq!(alloc.ips[0].address.to_string(), "198.18.0.2/32");
        assert_eq!(alloc.mtu, Some(1450));
        // On disk with the ring that holds it.
        let key = AttachmentKey::from(&pod("c1"));
        assert_eq!(store.records[&key].ips, [alloc.ips[0].address]);
        let stored = Ring::decode(store.ring.as_deref().expect("ring")).expect("decodes");
        assert_eq!(&stored, ring.node().expect("ready").ring());
        assert_eq!(
            ipam.handle(T, &mut ring, &mut store, AgentRequest::Allocate(pod("c1"))),
            a
        );
        assert_eq!(
            ipam.handle(T, &mut ring, &mut store, AgentRequest::Check(pod("c1"))),
            AgentResponse::Done
        );
        let listed = ipam.handle(
            T,
            &mut ring,
            &mut store,
            AgentRequest::List(Network::new("pods")),
        );
        assert_eq!(
            listed,
            AgentResponse::Attachments {
                attachments: vec![AttachmentRecord::new(
                    "c1",
                    "eth0",
                    vec![alloc.ips[0].address.addr()]
                )]
            }
        );
        assert_eq!(ipam.used_in(&"198.18.0.0/24".parse().expect("net")), 3);
        let blocks = ipam.blocks(&ring);
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            (blocks[0].used, blocks[0].free, blocks[0].adopted),
            (3, 253, false)
        );
        let free = ring.node().expect("ready").usable_free(T);
        for _ in 0..2 {
            assert_eq!(
                ipam.handle(T, &mut ring, &mut store, AgentRequest::Release(pod("c1"))),
                AgentResponse::Done
            );
        }
        assert!(!store.records.contains_key(&key));
        assert_eq!(
            code(ipam.handle(T, &mut ring, &mut store, AgentRequest::Check(pod("c1")))),
            3
        );
        // The address is free again.
        assert_eq!(ring.node().expect("ready").usable_free(T), free + 1);
    }

    #[test]
    fn a_failed_commit_hands_nothing_out() {
        let (mut ipam, mut ring, mut store) = ready("198.18.0.0/24");
        store.fail = true;
        let r = ipam.serve(T, &mut ring, &mut store, AgentRequest::Allocate(pod("c1")));
        assert_eq!(r, Err(ServiceError::Store("disk full".into())));
        assert_eq!(r.expect_err("failed").cni_code(), 11);
        assert!(ipam.records().keys().all(AttachmentKey::is_gateway));
        assert_eq!(
            ring.node().expect("ready").allocations().len(),
            2,
            "only the gateway's addresses are held"
        );
    }

    #[test]
    fn typed_errors_carry_their_cni_codes() {
        // Before the ring is known.
        let universe: IpNet = "198.18.0.0/28".parse().expect("net");
        let ip = IpAddr::from([192, 0, 2, 2]);
        let config = RingAgentConfig::new(universe, 28, ip, IpAddr::from([192, 0, 2, 1]));
        let mut joiner = RingAgent::new(config, Identity::new(PeerId::from_u128(2), 1), []);
        let mut store = Memory::default();
        let mut ipam = NodeIpam::new(universe, BTreeMap::new());
        let status = AgentRequest::Status(Network::new("pods"));
        assert_eq!(
            ipam.serve(T, &mut joiner, &mut store, status.clone()),
            Err(ServiceError::NotJoined)
        );
        assert_eq!(
            code(ipam.handle(T, &mut joiner, &mut store, AgentRequest::Allocate(pod("c")))),
            11
        );
        assert_eq!(
            ipam.gateway_to_program(T, &mut joiner, &mut store),
            Ok(None)
        );
        // The ring is known but this node owns nothing: waiting.
        let founded = Ring::from_seeds(universe, 28, &[PeerId::from_u128(1)]).expect("ring");
        joiner.start(T, founded, &mut store).expect("start");
        assert_eq!(
            ipam.gateway_to_program(T, &mut joiner, &mut store),
            Ok(None)
        );
        assert_eq!(
            ipam.serve(T, &mut joiner, &mut store, status.clone()),
            Err(ServiceError::WaitingForBlock)
        );
        // A full /28 of one owner: 14 pods after the two gateway addresses,
        // then exhausted (50); status says the blocks are full.
        let (mut ipam, mut ring, mut store) = ready("198.18.0.0/28");
        assert_eq!(
            ipam.handle(T, &mut ring, &mut store, status.clone()),
            AgentResponse::Done
        );
        for c in 0..14 {
            let r = ipam.handle(
                T,
                &mut ring,
                &mut store,
                AgentRequest::Allocate(pod(&c.to_string())),
            );
            assert!(matches!(r, AgentResponse::Allocated(_)), "{r:?}");
        }
        let r = ipam.serve(
            T,
            &mut ring,
            &mut store,
            AgentRequest::Allocate(pod("one-more")),
        );
        assert_eq!(r, Err(ServiceError::Alloc(AllocFailure::Exhausted)));
        assert_eq!(code(r.expect_err("full").to_response()), 50);
        assert_eq!(
            ipam.serve(T, &mut ring, &mut store, status),
            Err(ServiceError::BlocksFull)
        );
    }
}
