//! Per-peer state of a flannel-style VXLAN overlay.
//!
//! For each remote peer the node holds, on its VXLAN device:
//!
//! 1. a permanent neighbour entry: the peer's VTEP address -> the peer's VTEP
//!    MAC (`ip neigh replace 10.244.2.0 lladdr MAC dev vxlan.1 nud permanent`);
//! 2. a permanent FDB entry in the device's own table: the peer's VTEP MAC ->
//!    the peer's underlay address (`bridge fdb replace MAC dev vxlan.1 dst
//!    192.0.2.2 self permanent`);
//! 3. an on-link route to each of the peer's pod ranges via its VTEP address
//!    (`ip route replace 10.244.2.0/24 via 10.244.2.0 dev vxlan.1 onlink`).
//!
//! [`Overlay::add_peer`] installs them in that order and rolls back what it
//! installed when a step fails; [`Overlay::remove_peer`] removes them
//! best-effort; [`Overlay::reconcile`] makes the kernel hold exactly a desired
//! set of peers, with one batched round trip for the dumps and one for the
//! changes, and reports what it changed.
//!
//! The overlay owns the neighbour entries, FDB entries with a destination,
//! and routes with a gateway on its VXLAN device: `reconcile` removes those
//! that no desired peer explains.
//!
//! ```no_run
//! use overlay_netlink::overlay::{Overlay, RemotePeer};
//!
//! # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
//! let vx = handle.link().get("vxlan.1").await?;
//! let overlay = Overlay::new(&handle, vx.index);
//! let peer = RemotePeer::new(
//!     "192.0.2.2".parse().unwrap(),
//!     "02:00:00:00:02:00".parse().unwrap(),
//!     "10.244.2.0".parse().unwrap(),
//! )
//! .pod_cidr("10.244.2.0/24".parse().unwrap());
//! let report = overlay.reconcile(&[peer]).await?;
//! println!("added {} updated {} removed {}", report.added.len(), report.updated.len(), report.removed_peers);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, ErrorKind, InvalidInput, IpFamily, KernelError, Result};
use crate::fdb::FdbEntry;
use crate::handle::Handle;
use crate::neighbour::Neighbour;
use crate::route::{Route, TABLE_MAIN};
use crate::transport::{RawReply, Reply, Request, raw_messages};
use crate::validate;
use overlay_core::MacAddr;

/// A remote node of the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RemotePeer {
    /// The peer's underlay address (where its VXLAN packets go).
    pub underlay: IpAddr,
    /// The MAC address of the peer's VXLAN device.
    pub vtep_mac: MacAddr,
    /// The address of the peer's VXLAN device: the gateway of its pod ranges
    /// (flannel uses the network address of the peer's subnet).
    pub vtep_ip: IpAddr,
    /// The peer's pod ranges, routed via `vtep_ip`.
    pub pod_cidrs: Vec<IpNet>,
}

impl RemotePeer {
    /// A peer without pod ranges yet; add them with [`RemotePeer::pod_cidr`].
    pub fn new(underlay: IpAddr, vtep_mac: MacAddr, vtep_ip: IpAddr) -> Self {
        RemotePeer {
            underlay,
            vtep_mac,
            vtep_ip,
            pod_cidrs: Vec::new(),
        }
    }

    /// Add a pod range.
    pub fn pod_cidr(mut self, cidr: IpNet) -> Self {
        self.pod_cidrs.push(cidr);
        self
    }

    fn validate(&self, operation: &'static str) -> Result<()> {
        let object = self.underlay;
        if !self.vtep_mac.is_unicast() || self.vtep_mac == MacAddr::ZERO {
            return Err(Error::invalid(
                operation,
                object,
                InvalidInput::MacNotUnicast {
                    mac: self.vtep_mac.to_string(),
                },
            ));
        }
        for cidr in &self.pod_cidrs {
            validate::prefix(operation, *cidr)?;
            validate::family(
                operation,
                &object,
                "VTEP address",
                self.vtep_ip,
                IpFamily::of(cidr.addr()),
            )?;
        }
        Ok(())
    }
}

/// One change made (or attempted) on the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// Installed or updated a neighbour entry.
    ReplaceNeighbour {
        /// VTEP address.
        ip: IpAddr,
        /// VTEP MAC.
        mac: MacAddr,
    },
    /// Installed or updated an FDB entry.
    ReplaceFdb {
        /// VTEP MAC.
        mac: MacAddr,
        /// Underlay destination.
        dst: IpAddr,
    },
    /// Installed or updated a route.
    ReplaceRoute {
        /// Pod range.
        destination: IpNet,
        /// VTEP address.
        gateway: IpAddr,
    },
    /// Deleted a neighbour entry.
    DeleteNeighbour {
        /// Its address.
        ip: IpAddr,
    },
    /// Deleted an FDB entry.
    DeleteFdb {
        /// Its MAC.
        mac: MacAddr,
        /// Its destination.
        dst: IpAddr,
    },
    /// Deleted a route.
    DeleteRoute {
        /// Its destination.
        destination: IpNet,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ReplaceNeighbour { ip, mac } => {
                write!(f, "replace neighbour {ip} lladdr {mac}")
            }
            Change::ReplaceFdb { mac, dst } => write!(f, "replace fdb {mac} dst {dst}"),
            Change::ReplaceRoute {
                destination,
                gateway,
            } => {
                write!(f, "replace route {destination} via {gateway}")
            }
            Change::DeleteNeighbour { ip } => write!(f, "delete neighbour {ip}"),
            Change::DeleteFdb { mac, dst } => write!(f, "delete fdb {mac} dst {dst}"),
            Change::DeleteRoute { destination } => write!(f, "delete route {destination}"),
        }
    }
}

/// A change the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The change.
    pub change: Change,
    /// The kernel's error.
    pub error: KernelError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.change, self.error)
    }
}

/// What [`Overlay::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Underlay addresses of desired peers of which nothing was installed.
    pub added: Vec<IpAddr>,
    /// Underlay addresses of desired peers that were partly or wrongly installed.
    pub updated: Vec<IpAddr>,
    /// Underlay addresses of desired peers that were already fully installed.
    pub unchanged: Vec<IpAddr>,
    /// Number of peers removed (distinct VTEP MACs of removed FDB entries).
    pub removed_peers: usize,
    /// Every change applied successfully, in order.
    pub changes: Vec<Change>,
    /// Changes the kernel refused.
    pub failures: Vec<Failure>,
}

impl ReconcileReport {
    /// Whether the kernel holds the desired state (nothing failed).
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether nothing had to change.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.failures.is_empty()
    }
}

/// How [`Overlay`] chooses the metric of the routes to peers' pod ranges.
///
/// The default, [`RouteMetric::Spread`], matters at scale. The IPv4 FIB
/// shares route attributes (`fib_info`) between routes, and looks for one to
/// share in a hash table keyed by protocol, scope, preferred source, metric
/// and device, but not by gateway. An overlay has one gateway (VTEP address)
/// per peer on one device, so with a single metric every route lands in the
/// same bucket and each insertion scans all earlier ones: programming N peers
/// costs O(N^2) in the kernel. Spreading the metric over a range, as a pure
/// function of the destination, keeps the buckets short while every
/// destination keeps exactly one route (so `replace` still replaces, and
/// forwarding is unchanged: no two overlay routes share a destination).
///
/// ```
/// use overlay_netlink::overlay::RouteMetric;
/// let cidr = "10.244.7.0/24".parse().unwrap();
/// let m = RouteMetric::default().metric_for(&cidr);
/// assert_eq!(m, RouteMetric::default().metric_for(&cidr)); // stable
/// assert_eq!(RouteMetric::Fixed(0).metric_for(&cidr), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteMetric {
    /// Every route gets this metric (flannel's behaviour with 0).
    Fixed(u32),
    /// `base + hash(destination) % span`: stable per destination.
    Spread {
        /// The lowest metric used.
        base: u32,
        /// How many distinct metrics are used (at least 1).
        span: u32,
    },
}

impl Default for RouteMetric {
    fn default() -> Self {
        RouteMetric::Spread {
            base: 1024,
            span: 4096,
        }
    }
}

impl RouteMetric {
    /// The metric of the route to `destination`.
    pub fn metric_for(&self, destination: &IpNet) -> u32 {
        match *self {
            RouteMetric::Fixed(m) => m,
            RouteMetric::Spread { base, span } => {
                // FNV-1a over the prefix bytes and length: stable across
                // processes and versions, unlike std's RandomState.
                let mut h: u32 = 0x811c_9dc5;
                let (v4, v6);
                let bytes: &[u8] = match destination.network() {
                    IpAddr::V4(a) => {
                        v4 = a.octets();
                        &v4
                    }
                    IpAddr::V6(a) => {
                        v6 = a.octets();
                        &v6
                    }
                };
                for b in bytes
                    .iter()
                    .chain(std::iter::once(&destination.prefix_len()))
                {
                    h ^= u32::from(*b);
                    h = h.wrapping_mul(0x0100_0193);
                }
                base.saturating_add(h % span.max(1))
            }
        }
    }
}

/// The per-peer state on one VXLAN device; see the [module docs](self).
///
/// When the handle is bound to a namespace ([`Netns::handle`](crate::Netns::handle)),
/// the first [`reconcile`](Overlay::reconcile) starts one worker thread with
/// a second netlink socket in that namespace, so that later reconciles read
/// their dumps on two CPUs at once. The thread and its socket end when the
/// last clone of the `Overlay` is dropped; drop it when the namespace should
/// go away (an open socket keeps a namespace alive).
#[derive(Debug, Clone)]
pub struct Overlay {
    handle: Handle,
    vxlan: u32,
    metric: RouteMetric,
    /// Further sockets for parallel dumps, started on first use.
    dumps: Arc<OnceLock<Vec<DumpWorker>>>,
}

/// A job for the [`DumpWorker`]: dump requests and where to send the replies.
type DumpJob = (
    Vec<Request>,
    tokio::sync::oneshot::Sender<Result<Vec<RawReply>>>,
);

/// A second netlink socket in the overlay's namespace, served by a thread of
/// its own, so that the kernel fills the dumps of a reconcile on two CPUs at
/// once (a socket runs one dump at a time, and the kernel fills a dump in
/// the context of the thread that reads it). The thread ends when the last
/// clone of the [`Overlay`] is dropped.
#[derive(Debug)]
struct DumpWorker {
    jobs: std::sync::mpsc::Sender<DumpJob>,
    ready: Arc<AtomicBool>,
}

impl DumpWorker {
    /// Start the worker for a handle bound to a namespace, without waiting
    /// for its socket: `None` when there is no namespace to open a second
    /// socket in or no thread could be spawned. Until the worker's socket is
    /// open (see [`DumpWorker::ready`]) dumps share the caller's socket, so
    /// a first reconcile never waits for the worker.
    fn start(handle: &Handle, vxlan: u32) -> Option<DumpWorker> {
        let netns = handle.netns()?.clone();
        let (jobs, queue) = std::sync::mpsc::channel::<DumpJob>();
        let ready = Arc::new(AtomicBool::new(false));
        let ready_flag = ready.clone();
        std::thread::Builder::new()
            .name("overlay-dumps".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    return;
                };
                let opened = {
                    let _enter = rt.enter();
                    netns.handle()
                };
                // Without a socket the queue is dropped and callers fall back
                // to their own socket.
                let Ok(second) = opened else {
                    return;
                };
                ready_flag.store(true, Ordering::Release);
                while let Ok((requests, reply)) = queue.recv() {
                    let replies = rt.block_on(second.exchange_raw(
                        "read overlay state",
                        || format!("on link index {vxlan}"),
                        requests,
                    ));
                    let _ = reply.send(replies);
                }
            })
            .ok()?;
        Some(DumpWorker { jobs, ready })
    }

    /// Start `n` workers for VXLAN device `vxlan` (none when the handle has
    /// no namespace).
    fn start_pool(handle: &Handle, vxlan: u32, n: usize) -> Vec<DumpWorker> {
        (0..n)
            .filter_map(|_| DumpWorker::start(handle, vxlan))
            .collect()
    }

    /// Whether the worker's socket is open.
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Queue dump requests; the replies arrive on the returned receiver.
    fn submit(
        &self,
        requests: Vec<Request>,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<Vec<RawReply>>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send((requests, tx)).ok()?;
        Some(rx)
    }
}

/// What the kernel holds on the VXLAN device.
#[derive(Debug, Default)]
struct Current {
    /// Permanent or not: address -> (MAC, permanent).
    neighbours: HashMap<IpAddr, (Option<MacAddr>, bool)>,
    /// MAC -> destinations of `self` entries with a destination.
    fdb: HashMap<MacAddr, Vec<(IpAddr, bool)>>,
    /// Main-table routes with a gateway on the device.
    routes: HashMap<IpNet, RouteSeen>,
}

/// The fields of an installed route that reconcile compares.
#[derive(Debug)]
struct RouteSeen {
    gateway: Option<IpAddr>,
    onlink: bool,
    metric: Option<u32>,
}

const DUMP_RETRIES: usize = 5;
/// Dump workers per overlay. With one, the FDB dump runs on the worker's
/// socket while the neighbour and route dumps run on the caller's. (A second
/// worker for the routes measured slower on two CPUs: three threads competing
/// for two cores.)
const DUMP_WORKERS: usize = 1;

impl Overlay {
    /// The overlay on VXLAN device `vxlan_index`, programmed through `handle`.
    pub fn new(handle: &Handle, vxlan_index: u32) -> Self {
        Overlay {
            handle: handle.clone(),
            vxlan: vxlan_index,
            metric: RouteMetric::default(),
            dumps: Arc::new(OnceLock::new()),
        }
    }

    /// Use `metric` for the routes to pod ranges (default:
    /// [`RouteMetric::Spread`]; see there why).
    pub fn with_route_metric(mut self, metric: RouteMetric) -> Self {
        self.metric = metric;
        self
    }

    /// The route metric policy.
    pub fn route_metric(&self) -> RouteMetric {
        self.metric
    }

    /// The VXLAN device index.
    pub fn vxlan_index(&self) -> u32 {
        self.vxlan
    }

    fn neighbour(&self, peer: &RemotePeer) -> Neighbour {
        Neighbour::permanent(self.vxlan, peer.vtep_ip, peer.vtep_mac)
    }

    fn fdb(&self, peer: &RemotePeer) -> FdbEntry {
        FdbEntry::new(self.vxlan, peer.vtep_mac).dst(peer.underlay)
    }

    fn route(&self, cidr: IpNet, gateway: IpAddr) -> Route {
        Route::new(cidr)
            .gateway(gateway)
            .dev(self.vxlan)
            .onlink()
            .metric(self.metric.metric_for(&cidr))
    }

    /// Install one peer: neighbour entry, then FDB entry, then one on-link
    /// route per pod range. If a step fails, what this call installed is
    /// removed again and the error of the failed step is returned.
    pub async fn add_peer(&self, peer: &RemotePeer) -> Result<()> {
        peer.validate("add overlay peer")?;
        let h = &self.handle;
        h.neighbour().replace(&self.neighbour(peer)).await?;
        if let Err(e) = h.fdb().replace(&self.fdb(peer)).await {
            let _ = h.neighbour().delete(self.vxlan, peer.vtep_ip).await;
            return Err(e);
        }
        for (i, cidr) in peer.pod_cidrs.iter().enumerate() {
            if let Err(e) = h.route().replace(&self.route(*cidr, peer.vtep_ip)).await {
                for done in &peer.pod_cidrs[..i] {
                    let _ = h.route().delete(&self.route(*done, peer.vtep_ip)).await;
                }
                let _ = h.fdb().delete(&self.fdb(peer)).await;
                let _ = h.neighbour().delete(self.vxlan, peer.vtep_ip).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Remove one peer best-effort: routes, then FDB entry, then neighbour
    /// entry. Entries that are already gone are fine; every step is tried,
    /// and the first other error is returned.
    pub async fn remove_peer(&self, peer: &RemotePeer) -> Result<()> {
        let h = &self.handle;
        let mut first: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r
                && !e.is_not_found()
                && first.is_none()
            {
                first = Some(e);
            }
        };
        for cidr in &peer.pod_cidrs {
            note(h.route().delete(&self.route(*cidr, peer.vtep_ip)).await);
        }
        note(h.fdb().delete(&self.fdb(peer)).await);
        note(h.neighbour().delete(self.vxlan, peer.vtep_ip).await);
        first.map_or(Ok(()), Err)
    }

    /// Read the overlay state of the VXLAN device: five dumps (neighbours
    /// per family, FDB, routes per family) in one round trip.
    async fn current(&self, expected: usize) -> Result<Current> {
        const OP: &str = "read overlay state";
        let mut attempt = 0;
        let replies = loop {
            // Three groups of about equal kernel work for an overlay:
            // neighbours (both families), FDB, routes (both families).
            let mut neighbours = Vec::with_capacity(2);
            for fam in [IpFamily::V4, IpFamily::V6] {
                let mut n = NeighbourMessage::default();
                n.header.family = AddressFamily::from(fam.af());
                neighbours.push(Request::new(
                    RouteNetlinkMessage::GetNeighbour(n),
                    NLM_F_DUMP,
                ));
            }
            let mut b = NeighbourMessage::default();
            b.header.family = AddressFamily::Bridge;
            let fdb = vec![Request::new(
                RouteNetlinkMessage::GetNeighbour(b),
                NLM_F_DUMP,
            )];
            let mut routes = Vec::with_capacity(2);
            for fam in [IpFamily::V4, IpFamily::V6] {
                let mut r = RouteMessage::default();
                r.header.address_family = AddressFamily::from(fam.af());
                routes.push(Request::new(RouteNetlinkMessage::GetRoute(r), NLM_F_DUMP));
            }
            // The FDB and route groups go to the dump workers whose sockets
            // are open, the rest is read here at the same time.
            let workers = self
                .dumps
                .get_or_init(|| DumpWorker::start_pool(&self.handle, self.vxlan, DUMP_WORKERS));
            let mut local = neighbours;
            let mut pending = Vec::with_capacity(DUMP_WORKERS);
            for (i, group) in [fdb, routes].into_iter().enumerate() {
                let sent = workers
                    .get(i)
                    .filter(|w| w.ready())
                    .and_then(|w| w.submit(group.clone()));
                match sent {
                    Some(rx) => pending.push((rx, group)),
                    None => local.extend(group),
                }
            }
            let object = || format!("on link index {}", self.vxlan);
            let mut replies = self.handle.exchange_raw(OP, object, local).await?;
            for (rx, group) in pending {
                let expected_replies = group.len();
                let got = match rx.await {
                    Ok(result) => result?,
                    // The worker is gone: read the group here.
                    Err(_) => self.handle.exchange_raw(OP, object, group).await?,
                };
                if got.len() != expected_replies {
                    return Err(Error::UnexpectedReply {
                        operation: OP,
                        object: object(),
                        detail: "a dump socket returned a different number of replies",
                    });
                }
                replies.extend(got);
            }
            let interrupted = replies
                .iter()
                .any(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Interrupted));
            if interrupted && attempt < DUMP_RETRIES {
                attempt += 1;
                continue;
            }
            break replies;
        };
        let mut current = Current {
            neighbours: HashMap::with_capacity(expected),
            fdb: HashMap::with_capacity(expected),
            routes: HashMap::with_capacity(expected),
        };
        for reply in replies {
            let raw = reply.map_err(|source| Error::Kernel {
                operation: OP,
                object: format!("on link index {}", self.vxlan),
                source,
            })?;
            for (message_type, payload) in raw_messages(&raw) {
                self.absorb(&mut current, message_type, payload);
            }
        }
        Ok(current)
    }

    fn delete_fdb(&self, mac: MacAddr, dst: IpAddr) -> (Change, Request) {
        let entry = FdbEntry::new(self.vxlan, mac).dst(dst);
        (
            Change::DeleteFdb { mac, dst },
            Request::new(RouteNetlinkMessage::DelNeighbour(entry.message()), 0),
        )
    }

    /// Take one dumped message into `current`. The dumps of a reconcile hold
    /// thousands of entries of which a few fields matter, so they are read
    /// straight from the bytes (see [`lean`]) instead of being parsed whole.
    fn absorb(&self, current: &mut Current, message_type: u16, payload: &[u8]) {
        match message_type {
            lean::RTM_NEWNEIGH => {
                let Some(n) = lean::neighbour(payload) else {
                    return;
                };
                if n.ifindex != self.vxlan {
                    return;
                }
                if n.family == lean::AF_BRIDGE {
                    if n.flags & lean::NTF_SELF != 0
                        && let (Some(mac), Some(dst)) = (n.mac, n.dst)
                        && mac != MacAddr::ZERO
                    {
                        current
                            .fdb
                            .entry(mac)
                            .or_default()
                            .push((dst, n.state == lean::NUD_PERMANENT));
                    }
                } else if let Some(ip) = n.dst {
                    current
                        .neighbours
                        .insert(ip, (n.mac, n.state == lean::NUD_PERMANENT));
                }
            }
            lean::RTM_NEWROUTE => {
                if let Some(r) = lean::route(payload)
                    && r.oif == Some(self.vxlan)
                    && r.table == TABLE_MAIN
                    && r.gateway.is_some()
                    && let Ok(destination) = IpNet::new(r.dst, r.dst_len)
                {
                    current.routes.insert(
                        destination,
                        RouteSeen {
                            gateway: r.gateway,
                            onlink: r.onlink,
                            metric: r.metric,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// Make the VXLAN device hold exactly the `desired` peers: install what is
    /// missing or wrong, remove what no desired peer explains, leave the rest
    /// alone. Idempotent; a second call with the same input changes nothing.
    ///
    /// All input is validated first. The state is read with one batched
    /// round trip of dumps and changed with one batch of requests (removals
    /// first, then neighbours, FDB entries and routes, in that order). If the
    /// kernel refuses some changes, the others are still applied and
    /// [`Error::Reconcile`] carries the report.
    pub async fn reconcile(&self, desired: &[RemotePeer]) -> Result<ReconcileReport> {
        const OP: &str = "reconcile overlay peers";
        let mut ips = HashSet::with_capacity(desired.len());
        let mut macs = HashSet::with_capacity(desired.len());
        let mut cidrs = HashSet::with_capacity(desired.len());
        for peer in desired {
            peer.validate(OP)?;
            let duplicate = if !ips.insert(peer.vtep_ip) {
                Some(("VTEP address", peer.vtep_ip.to_string()))
            } else if !macs.insert(peer.vtep_mac) {
                Some(("VTEP MAC", peer.vtep_mac.to_string()))
            } else {
                peer.pod_cidrs
                    .iter()
                    .find(|c| !cidrs.insert(**c))
                    .map(|c| ("pod range", c.to_string()))
            };
            if let Some((what, value)) = duplicate {
                return Err(Error::invalid(
                    OP,
                    peer.underlay,
                    InvalidInput::DuplicatePeerItem { what, value },
                ));
            }
        }
        // Every desired item found in `current` is taken out of it; what is
        // left afterwards is stale.
        let mut current = self.current(desired.len()).await?;
        let mut report = ReconcileReport::default();
        let mut installs: Vec<(Change, Request)> = Vec::new();
        let mut removals: Vec<(Change, Request)> = Vec::new();
        let mut neigh_reqs = Vec::new();
        let mut fdb_reqs = Vec::new();
        let mut route_reqs = Vec::new();

        for peer in desired {
            let mut present = 0usize;
            let mut missing = 0usize;

            match current.neighbours.remove(&peer.vtep_ip) {
                Some((mac, true)) if mac == Some(peer.vtep_mac) => present += 1,
                found => {
                    present += usize::from(found.is_some());
                    missing += 1;
                    neigh_reqs.push((
                        Change::ReplaceNeighbour {
                            ip: peer.vtep_ip,
                            mac: peer.vtep_mac,
                        },
                        Request::new(
                            RouteNetlinkMessage::NewNeighbour(self.neighbour(peer).message()),
                            NLM_F_CREATE | NLM_F_REPLACE,
                        ),
                    ));
                }
            }
            let dsts = current.fdb.remove(&peer.vtep_mac).unwrap_or_default();
            for (dst, _) in dsts.iter().filter(|(dst, _)| *dst != peer.underlay) {
                removals.push(self.delete_fdb(peer.vtep_mac, *dst));
            }
            if dsts.contains(&(peer.underlay, true)) {
                present += 1;
            } else {
                present += usize::from(!dsts.is_empty());
                missing += 1;
                fdb_reqs.push((
                    Change::ReplaceFdb {
                        mac: peer.vtep_mac,
                        dst: peer.underlay,
                    },
                    Request::new(
                        RouteNetlinkMessage::NewNeighbour(self.fdb(peer).message()),
                        NLM_F_CREATE | NLM_F_REPLACE,
                    ),
                ));
            }
            for cidr in &peer.pod_cidrs {
                // The kernel stores metric 0 of an IPv6 route as 1024.
                let metric = match (self.metric.metric_for(cidr), cidr) {
                    (0, IpNet::V6(_)) => 1024,
                    (m, _) => m,
                };
                match current.routes.remove(cidr) {
                    Some(r)
                        if r.gateway == Some(peer.vtep_ip)
                            && r.onlink
                            && r.metric.unwrap_or(0) == metric =>
                    {
                        present += 1
                    }
                    found => {
                        // A route with another metric is another route:
                        // remove it, or both would stay.
                        if let Some(seen) = &found
                            && seen.metric.unwrap_or(0) != metric
                        {
                            let mut del = Route::new(*cidr).dev(self.vxlan).table(TABLE_MAIN);
                            del.metric = seen.metric;
                            removals.push((
                                Change::DeleteRoute { destination: *cidr },
                                Request::new(RouteNetlinkMessage::DelRoute(del.message(true)), 0),
                            ));
                        }
                        present += usize::from(found.is_some());
                        missing += 1;
                        route_reqs.push((
                            Change::ReplaceRoute {
                                destination: *cidr,
                                gateway: peer.vtep_ip,
                            },
                            Request::new(
                                RouteNetlinkMessage::NewRoute(
                                    self.route(*cidr, peer.vtep_ip).message(false),
                                ),
                                NLM_F_CREATE | NLM_F_REPLACE,
                            ),
                        ));
                    }
                }
            }
            if missing == 0 {
                report.unchanged.push(peer.underlay);
            } else if present == 0 {
                report.added.push(peer.underlay);
            } else {
                report.updated.push(peer.underlay);
            }
        }

        // What no desired peer claimed, removed in reverse order of
        // installation: routes, FDB entries, neighbour entries.
        let mut stale_routes: Vec<_> = current.routes.into_iter().collect();
        stale_routes.sort_by_key(|(dst, _)| *dst);
        for (dst, seen) in stale_routes {
            let mut del = Route::new(dst).dev(self.vxlan).table(TABLE_MAIN);
            del.metric = seen.metric;
            removals.push((
                Change::DeleteRoute { destination: dst },
                Request::new(RouteNetlinkMessage::DelRoute(del.message(true)), 0),
            ));
        }
        let mut stale_fdb: Vec<_> = current.fdb.into_iter().collect();
        stale_fdb.sort_by_key(|(mac, _)| *mac);
        report.removed_peers = stale_fdb.len();
        for (mac, dsts) in stale_fdb {
            for (dst, _) in dsts {
                removals.push(self.delete_fdb(mac, dst));
            }
        }
        let mut stale_neigh: Vec<IpAddr> = current
            .neighbours
            .into_iter()
            .filter(|(_, (_, permanent))| *permanent)
            .map(|(ip, _)| ip)
            .collect();
        stale_neigh.sort();
        for ip in stale_neigh {
            removals.push((
                Change::DeleteNeighbour { ip },
                Request::new(
                    RouteNetlinkMessage::DelNeighbour(Neighbour::delete_message(self.vxlan, ip)),
                    0,
                ),
            ));
        }

        installs.extend(removals);
        installs.extend(neigh_reqs);
        installs.extend(fdb_reqs);
        installs.extend(route_reqs);
        if installs.is_empty() {
            return Ok(report);
        }
        let (changes, requests): (Vec<Change>, Vec<Request>) = installs.into_iter().unzip();
        let replies: Vec<Reply> = self
            .handle
            .exchange(OP, || format!("on link index {}", self.vxlan), requests)
            .await?;
        for (change, reply) in changes.into_iter().zip(replies) {
            match reply {
                Ok(_) => report.changes.push(change),
                // Already gone: the removal's goal holds.
                Err(e) if e.kind() == ErrorKind::NotFound && is_delete(&change) => {
                    report.changes.push(change)
                }
                Err(error) => report.failures.push(Failure { change, error }),
            }
        }
        if report.failures.is_empty() {
            Ok(report)
        } else {
            Err(Error::Reconcile {
                report: Box::new(report),
            })
        }
    }
}

fn is_delete(change: &Change) -> bool {
    matches!(
        change,
        Change::DeleteNeighbour { .. } | Change::DeleteFdb { .. } | Change::DeleteRoute { .. }
    )
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_ACK;
    use std::sync::Arc;

    use netlink_packet_route::neighbour::NeighbourState as RawState;

    use super::*;
    use crate::transport::FakeTransport;

    fn peer(n: u8) -> RemotePeer {
        RemotePeer::new(
            IpAddr::from([198, 51, 100, n]),
            MacAddr::new([2, 0, 0, 0, 0, n]),
            IpAddr::from([10, 244, n, 0]),
        )
        .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
    }

    /// A fake kernel holding peer 1 fully and peer 9 (no longer desired).
    fn kernel_with_peers_1_and_9() -> Arc<FakeTransport> {
        Arc::new(FakeTransport::with_responder(|r: &Request| {
            if !r.is_dump() {
                return Ok(Vec::new());
            }
            let ov = Overlay::new(&Handle::with_transport(Arc::new(FakeTransport::new())), 5);
            let mut out = Vec::new();
            match &r.message {
                RouteNetlinkMessage::GetNeighbour(m)
                    if m.header.family == AddressFamily::Bridge =>
                {
                    for p in [peer(1), peer(9)] {
                        out.push(RouteNetlinkMessage::NewNeighbour(ov.fdb(&p).message()));
                    }
                }
                RouteNetlinkMessage::GetNeighbour(m) if m.header.family == AddressFamily::Inet => {
                    for p in [peer(1), peer(9)] {
                        out.push(RouteNetlinkMessage::NewNeighbour(
                            ov.neighbour(&p).message(),
                        ));
                    }
                }
                RouteNetlinkMessage::GetRoute(m)
                    if m.header.address_family == AddressFamily::Inet =>
                {
                    for p in [peer(1), peer(9)] {
                        out.push(RouteNetlinkMessage::NewRoute(
                            ov.route(p.pod_cidrs[0], p.vtep_ip).message(false),
                        ));
                    }
                }
                _ => {}
            }
            Ok(out)
        }))
    }

    #[test]
    fn spread_metrics_are_stable_and_within_their_range() {
        let m = RouteMetric::Spread {
            base: 100,
            span: 16,
        };
        let mut seen = HashSet::new();
        for n in 0..=255u8 {
            let cidr: IpNet = format!("10.244.{n}.0/24").parse().unwrap();
            let v = m.metric_for(&cidr);
            assert!((100..116).contains(&v));
            assert_eq!(v, m.metric_for(&cidr));
            seen.insert(v);
        }
        // 256 destinations over 16 metrics use (nearly) all of them.
        assert!(seen.len() >= 14, "{seen:?}");
        let zero_span = RouteMetric::Spread { base: 7, span: 0 };
        assert_eq!(zero_span.metric_for(&"10.0.0.0/8".parse().unwrap()), 7);
    }

    #[test]
    fn default_metrics_are_fnv1a_of_the_prefix_bytes_and_length_for_both_families() {
        // Pinned values (FNV-1a computed independently): a change to the hash
        // would move every installed route on upgrade.
        let m = RouteMetric::default();
        assert_eq!(m.metric_for(&"10.244.7.0/24".parse().unwrap()), 2460);
        assert_eq!(m.metric_for(&"2001:db8:4::/64".parse().unwrap()), 1281);
        // The prefix length is part of the key.
        assert_ne!(
            m.metric_for(&"10.244.7.0/24".parse().unwrap()),
            m.metric_for(&"10.244.7.0/25".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn reconcile_reads_the_fdb_on_the_dump_worker_once_its_socket_is_open() {
        overlay_testsupport::privileged_test!();
        let t = overlay_testsupport::TestNetns::new().unwrap();
        let h = crate::Netns::open_path(t.path()).unwrap().handle().unwrap();
        let (vx, _) = h
            .link()
            .ensure_vxlan(
                &crate::VxlanConfig::new("flannel.1", 1)
                    .local("192.0.2.1".parse().unwrap())
                    .port(8472),
            )
            .await
            .unwrap();
        h.link().set_up(vx.index).await.unwrap();
        let ov = Overlay::new(&h, vx.index);
        let peers = [peer(2), peer(3)];
        assert_eq!(ov.reconcile(&peers).await.unwrap().added.len(), 2);
        let workers = ov.dumps.get().unwrap();
        assert_eq!(workers.len(), DUMP_WORKERS);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !workers[0].ready() {
            assert!(std::time::Instant::now() < deadline, "worker never opened");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The FDB entries are now read on the worker's socket: were its dump
        // lost or misread, reconcile would add them again.
        assert!(ov.reconcile(&peers).await.unwrap().is_noop());
        // A moved peer's FDB entry, read there too, is replaced.
        let mut moved = peer(3);
        moved.underlay = IpAddr::from([198, 51, 100, 33]);
        let report = ov.reconcile(&[peer(2), moved.clone()]).await.unwrap();
        assert_eq!(report.updated, vec![moved.underlay]);
        assert!(ov.reconcile(&[peer(2), moved]).await.unwrap().is_noop());
    }

    #[test]
    fn no_dump_worker_starts_for_a_handle_without_a_namespace() {
        let handle = Handle::with_transport(Arc::new(FakeTransport::new()));
        assert!(DumpWorker::start(&handle, 5).is_none());
        assert!(DumpWorker::start_pool(&handle, 5, DUMP_WORKERS).is_empty());
    }

    #[tokio::test]
    async fn reconcile_replaces_a_route_installed_with_another_metric() {
        // The kernel holds peer 1 as an overlay with metric 0 installed it.
        let fake = Arc::new(FakeTransport::with_responder(|r: &Request| {
            if !r.is_dump() {
                return Ok(Vec::new());
            }
            let old = Overlay::new(&Handle::with_transport(Arc::new(FakeTransport::new())), 5)
                .with_route_metric(RouteMetric::Fixed(0));
            let p = peer(1);
            Ok(match &r.message {
                RouteNetlinkMessage::GetNeighbour(m)
                    if m.header.family == AddressFamily::Bridge =>
                {
                    vec![RouteNetlinkMessage::NewNeighbour(old.fdb(&p).message())]
                }
                RouteNetlinkMessage::GetNeighbour(m) if m.header.family == AddressFamily::Inet => {
                    vec![RouteNetlinkMessage::NewNeighbour(
                        old.neighbour(&p).message(),
                    )]
                }
                RouteNetlinkMessage::GetRoute(m)
                    if m.header.address_family == AddressFamily::Inet =>
                {
                    vec![RouteNetlinkMessage::NewRoute(
                        old.route(p.pod_cidrs[0], p.vtep_ip).message(false),
                    )]
                }
                _ => Vec::new(),
            })
        }));
        let ov = Overlay::new(&Handle::with_transport(fake.clone()), 5);
        let report = ov.reconcile(&[peer(1)]).await.unwrap();
        let cidr: IpNet = "10.244.1.0/24".parse().unwrap();
        assert_eq!(report.updated, vec![peer(1).underlay]);
        assert!(
            report
                .changes
                .contains(&Change::DeleteRoute { destination: cidr })
        );
        assert!(report.changes.contains(&Change::ReplaceRoute {
            destination: cidr,
            gateway: peer(1).vtep_ip,
        }));
        assert_eq!(report.changes.len(), 2, "{:?}", report.changes);
    }

    #[tokio::test]
    async fn reconcile_adds_missing_removes_stale_and_leaves_present_alone() {
        let fake = kernel_with_peers_1_and_9();
        let handle = Handle::with_transport(fake.clone());
        let overlay = Overlay::new(&handle, 5);
        let report = overlay.reconcile(&[peer(1), peer(2)]).await.unwrap();
        assert_eq!(report.unchanged, vec![peer(1).underlay]);
        assert_eq!(report.added, vec![peer(2).underlay]);
        assert!(report.updated.is_empty());
        assert_eq!(report.removed_peers, 1);
        let reqs = fake.requests();
        // 5 dumps in one batch, then the changes: 3 deletions, 3 installs.
        assert_eq!(reqs.iter().filter(|r| r.is_dump()).count(), 5);
        let changes: Vec<&Request> = reqs.iter().filter(|r| !r.is_dump()).collect();
        assert_eq!(changes.len(), 6);
        assert!(matches!(
            changes[0].message,
            RouteNetlinkMessage::DelRoute(_)
        ));
        assert!(matches!(
            changes[1].message,
            RouteNetlinkMessage::DelNeighbour(_)
        ));
        assert!(matches!(
            changes[2].message,
            RouteNetlinkMessage::DelNeighbour(_)
        ));
        let RouteNetlinkMessage::NewNeighbour(n) = &changes[3].message else {
            panic!()
        };
        assert_eq!(
            (n.header.family, n.header.state),
            (AddressFamily::Inet, RawState::Permanent)
        );
        let RouteNetlinkMessage::NewNeighbour(f) = &changes[4].message else {
            panic!()
        };
        assert_eq!(f.header.family, AddressFamily::Bridge);
        assert_eq!(changes[4].flags, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
        assert!(matches!(
            changes[5].message,
            RouteNetlinkMessage::NewRoute(_)
        ));
        assert_eq!(report.changes.len(), 6);
    }

    #[tokio::test]
    async fn add_peer_rolls_back_neighbour_and_fdb_when_the_route_fails() {
        let fake = Arc::new(FakeTransport::with_responder(|r: &Request| {
            match r.message {
                RouteNetlinkMessage::NewRoute(_) => Err(KernelError::new(libc::ENETUNREACH)),
                _ => Ok(Vec::new()),
            }
        }));
        let handle = Handle::with_transport(fake.clone());
        let err = Overlay::new(&handle, 5)
            .add_peer(&peer(3))
            .await
            .unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENETUNREACH));
        let kinds: Vec<&str> = fake
            .requests()
            .iter()
            .map(|r| match &r.message {
                RouteNetlinkMessage::NewNeighbour(m)
                    if m.header.family == AddressFamily::Bridge =>
                {
                    "fdb+"
                }
                RouteNetlinkMessage::NewNeighbour(_) => "neigh+",
                RouteNetlinkMessage::NewRoute(_) => "route+",
                RouteNetlinkMessage::DelNeighbour(m)
                    if m.header.family == AddressFamily::Bridge =>
                {
                    "fdb-"
                }
                RouteNetlinkMessage::DelNeighbour(_) => "neigh-",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["neigh+", "fdb+", "route+", "fdb-", "neigh-"]);
    }

    #[tokio::test]
    async fn reconcile_rejects_a_peer_with_mixed_families_before_any_request() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let bad = peer(1).pod_cidr("2001:db8:1::/64".parse().unwrap());
        let err = Overlay::new(&handle, 5)
            .reconcile(&[peer(2), bad])
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidInput {
                source: InvalidInput::FamilyMismatch { .. },
                ..
            }
        ));
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn reconcile_rejects_two_peers_claiming_the_same_pod_range() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let mut clash = peer(3);
        clash.pod_cidrs = peer(2).pod_cidrs.clone();
        let err = Overlay::new(&handle, 5)
            .reconcile(&[peer(2), clash])
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidInput {
                source: InvalidInput::DuplicatePeerItem {
                    what: "pod range",
                    ..
                },
                ..
            }
        ));
        let same_mac = RemotePeer::new(
            IpAddr::from([198, 51, 100, 9]),
            peer(2).vtep_mac,
            IpAddr::from([10, 244, 9, 0]),
        );
        let err = Overlay::new(&handle, 5)
            .reconcile(&[peer(2), same_mac])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("VTEP MAC"), "{err}");
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn reconcile_reports_kernel_refusals_with_the_changes_that_worked() {
        let fake = Arc::new(FakeTransport::with_responder(|r: &Request| {
            match r.message {
                RouteNetlinkMessage::NewRoute(_) => Err(KernelError::new(libc::EINVAL)),
                _ => Ok(Vec::new()),
            }
        }));
        let handle = Handle::with_transport(fake.clone());
        let err = Overlay::new(&handle, 5)
            .reconcile(&[peer(4)])
            .await
            .unwrap_err();
        let Error::Reconcile { report } = err else {
            panic!("{err}")
        };
        assert_eq!(report.changes.len(), 2);
        assert_eq!(report.failures.len(), 1);
        assert!(matches!(
            report.failures[0].change,
            Change::ReplaceRoute { .. }
        ));
    }
}

/// Reading neighbour and route dump messages straight from their bytes.
///
/// Layouts from `linux/neighbour.h` and `linux/rtnetlink.h`; every access is
/// bounds-checked, and a message too short for its header is skipped.
mod lean {
    use std::net::IpAddr;

    use overlay_core::MacAddr;

    pub(super) const RTM_NEWROUTE: u16 = 24;
    pub(super) const RTM_NEWNEIGH: u16 = 28;
    pub(super) const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
    pub(super) const NTF_SELF: u8 = 0x02;
    pub(super) const NUD_PERMANENT: u16 = 0x80;
    const NDA_DST: u16 = 1;
    const NDA_LLADDR: u16 = 2;
    const RTA_DST: u16 = 1;
    const RTA_OIF: u16 = 4;
    const RTA_GATEWAY: u16 = 5;
    const RTA_PRIORITY: u16 = 6;
    const RTA_TABLE: u16 = 15;
    const RTNH_F_ONLINK: u32 = 4;
    /// `sizeof(struct ndmsg)` and `sizeof(struct rtmsg)`.
    const HEADER: usize = 12;

    /// The attributes (type, value) of a message body.
    fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
        std::iter::from_fn(move || {
            let len = usize::from(u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]));
            let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & 0x3fff;
            if len < 4 || len > buf.len() {
                return None;
            }
            let value = &buf[4..len];
            buf = buf.get(((len + 3) & !3).min(buf.len())..).unwrap_or(&[]);
            Some((kind, value))
        })
    }

    fn ip(value: &[u8]) -> Option<IpAddr> {
        match value.len() {
            4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
            _ => None,
        }
    }

    fn u32_of(value: &[u8]) -> Option<u32> {
        <[u8; 4]>::try_from(value).ok().map(u32::from_ne_bytes)
    }

    pub(super) struct Neigh {
        pub(super) family: u8,
        pub(super) ifindex: u32,
        pub(super) state: u16,
        pub(super) flags: u8,
        pub(super) dst: Option<IpAddr>,
        pub(super) mac: Option<MacAddr>,
    }

    pub(super) fn neighbour(payload: &[u8]) -> Option<Neigh> {
        let h = payload.get(..HEADER)?;
        let mut n = Neigh {
            family: h[0],
            ifindex: u32::from_ne_bytes([h[4], h[5], h[6], h[7]]),
            state: u16::from_ne_bytes([h[8], h[9]]),
            flags: h[10],
            dst: None,
            mac: None,
        };
        for (kind, value) in attributes(&payload[HEADER..]) {
            match kind {
                NDA_DST => n.dst = ip(value),
                NDA_LLADDR => n.mac = crate::mac::exact(value),
                _ => {}
            }
        }
        Some(n)
    }

    pub(super) struct Rt {
        pub(super) dst: IpAddr,
        pub(super) dst_len: u8,
        pub(super) table: u32,
        pub(super) onlink: bool,
        pub(super) oif: Option<u32>,
        pub(super) gateway: Option<IpAddr>,
        pub(super) metric: Option<u32>,
    }

    pub(super) fn route(payload: &[u8]) -> Option<Rt> {
        let h = payload.get(..HEADER)?;
        let unspecified = match i32::from(h[0]) {
            libc::AF_INET => IpAddr::from([0u8; 4]),
            libc::AF_INET6 => IpAddr::from([0u8; 16]),
            _ => return None,
        };
        let mut r = Rt {
            dst: unspecified,
            dst_len: h[1],
            table: u32::from(h[4]),
            onlink: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]) & RTNH_F_ONLINK != 0,
            oif: None,
            gateway: None,
            metric: None,
        };
        for (kind, value) in attributes(&payload[HEADER..]) {
            match kind {
                RTA_DST => r.dst = ip(value)?,
                RTA_OIF => r.oif = u32_of(value),
                RTA_GATEWAY => r.gateway = ip(value),
                RTA_PRIORITY => r.metric = u32_of(value),
                RTA_TABLE => r.table = u32_of(value)?,
                _ => {}
            }
        }
        Some(r)
    }

    #[cfg(test)]
    mod tests {
        use netlink_packet_core::Emitable;

        use super::*;
        use crate::fdb::FdbEntry;
        use crate::neighbour::Neighbour;
        use crate::route::Route;

        fn bytes(e: &impl Emitable) -> Vec<u8> {
            let mut b = vec![0; e.buffer_len()];
            e.emit(&mut b);
            b
        }

        #[test]
        fn lean_readers_agree_with_netlink_packet_route() {
            let mac = MacAddr::new([2, 0, 0, 0, 0, 7]);
            let n = bytes(&Neighbour::permanent(9, "192.0.2.7".parse().unwrap(), mac).message());
            let got = neighbour(&n).unwrap();
            assert_eq!(
                (got.ifindex, got.state, got.mac),
                (9, NUD_PERMANENT, Some(mac))
            );
            assert_eq!(got.dst, Some("192.0.2.7".parse().unwrap()));

            let f = bytes(
                &FdbEntry::new(9, mac)
                    .dst("2001:db8::2".parse().unwrap())
                    .message(),
            );
            let got = neighbour(&f).unwrap();
            assert_eq!((got.family, got.flags & NTF_SELF), (AF_BRIDGE, NTF_SELF));
            assert_eq!(got.dst, Some("2001:db8::2".parse().unwrap()));

            let route = Route::new("10.244.2.0/24".parse().unwrap())
                .gateway("10.244.2.0".parse().unwrap())
                .dev(9)
                .onlink()
                .metric(5)
                .table(1000);
            let got = super::route(&bytes(&route.message(false))).unwrap();
            assert_eq!(
                (got.dst_len, got.table, got.oif, got.metric),
                (24, 1000, Some(9), Some(5))
            );
            assert!(got.onlink);
            assert_eq!(got.gateway, route.gateway);
        }

        #[test]
        fn lean_readers_reject_short_or_malformed_input_without_panicking() {
            assert!(neighbour(&[0; 11]).is_none());
            assert!(route(&[0; 5]).is_none());
            // A header, then an attribute claiming more bytes than exist.
            let mut bad = vec![0u8; 12];
            bad[0] = libc::AF_INET as u8;
            bad.extend_from_slice(&[200, 0, 1, 0, 1, 2]);
            assert!(route(&bad).is_some_and(|r| r.gateway.is_none()));
            for len in 0..bad.len() {
                let _ = neighbour(&bad[..len]);
                let _ = route(&bad[..len]);
            }
        }
    }
}
