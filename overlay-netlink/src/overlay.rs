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
//! set of peers, with one batched round trip for the changes, and reports
//! what it changed.
//!
//! Reconcile compares the desired peers with a mirror of the device's
//! kernel state, filled by one full read (five dumps in one round trip) and
//! kept current by the kernel's netlink notifications, in the way of the
//! informers of cluster agents: a reconcile with nothing to change reads no
//! dump. The mirror is read again whenever it cannot follow the kernel
//! (lost notifications, link and address changes on the device) and after
//! [`Overlay::resync`]; see [`Overlay::reconcile`].
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
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;

use crate::error::{Error, ErrorKind, InvalidInput, IpFamily, KernelError, Result};
use crate::events::{
    self, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK, RTMGRP_NEIGH,
};
use crate::fdb::FdbEntry;
use crate::handle::Handle;
use crate::neighbour::Neighbour;
use crate::route::{Route, TABLE_MAIN};
use crate::transport::{
    RawReply, Reply, Request, raw_messages, recv_buffer, recv_queued, split_message,
};
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
                let mut h = overlay_core::hash::Fnv1a32::new();
                match destination.network() {
                    IpAddr::V4(a) => h.write(&a.octets()),
                    IpAddr::V6(a) => h.write(&a.octets()),
                };
                let h = h.write(&[destination.prefix_len()]).finish();
                base.saturating_add(h % span.max(1))
            }
        }
    }
}

/// The per-peer state on one VXLAN device; see the [module docs](self).
///
/// Clones share one mirror of the kernel state (see
/// [`reconcile`](Overlay::reconcile)), and their reconciles run one after
/// the other.
///
/// With a kernel socket, the first [`reconcile`](Overlay::reconcile) opens a
/// netlink socket subscribed to the neighbour, route, link and address
/// notifications of the overlay's namespace, which stays open. When the
/// handle is bound to a namespace ([`Netns::handle`](crate::Netns::handle)),
/// it also starts one worker thread with a second netlink socket in that
/// namespace, so that reconciles that read the kernel state with dumps read
/// them on two CPUs at once. The sockets and the thread end when the last
/// clone of the `Overlay` is dropped; drop it when the namespace should go
/// away (an open socket keeps a namespace alive).
#[derive(Debug, Clone)]
pub struct Overlay {
    handle: Handle,
    vxlan: u32,
    metric: RouteMetric,
    /// Further sockets for parallel dumps, started on first use.
    dumps: Arc<OnceLock<Vec<DumpWorker>>>,
    /// The kernel state, kept current by notifications.
    mirror: Arc<tokio::sync::Mutex<Mirror>>,
    /// Set by [`Overlay::resync`].
    resync: Arc<AtomicBool>,
    /// See [`Overlay::full_dumps`].
    full_dumps: Arc<AtomicU64>,
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
    /// MAC -> destinations of `self` entries with a destination, in the
    /// kernel's order.
    fdb: HashMap<MacAddr, Vec<(IpAddr, bool)>>,
    /// Main-table routes with a gateway on the device, by destination (one
    /// per metric: the kernel's key is destination and metric).
    routes: HashMap<IpNet, Vec<RouteSeen>>,
}

impl Current {
    fn with_capacity(n: usize) -> Self {
        Current {
            neighbours: HashMap::with_capacity(n),
            fdb: HashMap::with_capacity(n),
            routes: HashMap::with_capacity(n),
        }
    }
}

/// The fields of an installed route that reconcile compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RouteSeen {
    gateway: Option<IpAddr>,
    onlink: bool,
    metric: Option<u32>,
}

impl RouteSeen {
    /// The metric as the kernel keys routes (IPv4 omits a metric of 0).
    fn key(&self) -> u32 {
        self.metric.unwrap_or(0)
    }
}

/// Where a message taken into [`Current`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A dump: lists every entry once.
    Dump,
    /// A multicast notification of one change, with its `NLM_F_*` flags.
    Notification { flags: u16 },
}

/// The multicast groups the mirror follows: neighbours and FDB entries,
/// routes, and links and addresses (to notice the changes the kernel makes
/// without notifying them, such as flushing IPv4 routes on link down).
const MIRROR_GROUPS: u32 = RTMGRP_LINK
    | RTMGRP_NEIGH
    | RTMGRP_IPV4_IFADDR
    | RTMGRP_IPV6_IFADDR
    | RTMGRP_IPV4_ROUTE
    | RTMGRP_IPV6_ROUTE;

/// The overlay's copy of the kernel state of its VXLAN device, kept current
/// by the notifications of a subscription; shared by the clones of an
/// [`Overlay`] under a lock, which also serialises their reconciles.
struct Mirror {
    watch: Watch,
    /// The kernel state, while notifications keep it exact.
    state: Option<Current>,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watch = match self.watch {
            Watch::Off => "off",
            Watch::Idle => "idle",
            Watch::Opening(_) => "opening",
            Watch::Open(_) => "open",
        };
        f.debug_struct("Mirror")
            .field("watch", &watch)
            .field("valid", &self.state.is_some())
            .finish()
    }
}

/// The mirror's subscription.
enum Watch {
    /// The handle's transport is not a kernel socket: no mirror, every
    /// reconcile dumps.
    Off,
    /// Not subscribed; the next reconcile subscribes.
    Idle,
    /// The socket is being opened in the overlay's namespace on a thread.
    Opening(tokio::sync::oneshot::Receiver<Result<Socket>>),
    /// Subscribed.
    Open(Monitor),
}

/// A socket subscribed to [`MIRROR_GROUPS`] in the overlay's namespace,
/// read without waiting.
struct Monitor {
    socket: Socket,
    buf: Vec<u8>,
}

impl Monitor {
    fn new(socket: Socket) -> Self {
        Monitor {
            socket,
            buf: recv_buffer(),
        }
    }

    /// Read every queued notification without waiting and pass each
    /// message (type, flags, payload) to `each`. An error of kind
    /// `InvalidData` means a datagram did not parse (it is consumed);
    /// `ENOBUFS` that notifications were lost; in both cases the rest is
    /// still queued.
    fn drain(&mut self, mut each: impl FnMut(u16, u16, &[u8])) -> io::Result<()> {
        loop {
            let len = match recv_queued(self.socket.as_fd(), &mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut rest = &self.buf[..len];
            while let Some((header, payload, _, next)) = split_message(rest) {
                each(header.message_type, header.flags, payload);
                rest = next;
            }
            if !rest.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a notification ends in an incomplete netlink message",
                ));
            }
        }
    }
}

/// What reconcile wants, as sets (built while validating the input).
struct Wanted {
    ips: HashSet<IpAddr>,
    macs: HashSet<MacAddr>,
    cidrs: HashSet<IpNet>,
}

/// The outcome of comparing desired peers with the kernel state: the
/// report so far and the changes to make, in order.
struct Plan {
    report: ReconcileReport,
    changes: Vec<(Change, Request)>,
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
            mirror: Arc::new(tokio::sync::Mutex::new(Mirror {
                watch: if handle.is_kernel_socket() {
                    Watch::Idle
                } else {
                    Watch::Off
                },
                state: None,
            })),
            resync: Arc::new(AtomicBool::new(false)),
            full_dumps: Arc::new(AtomicU64::new(0)),
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
        self.full_dumps.fetch_add(1, Ordering::Relaxed);
        let mut current = Current::with_capacity(expected);
        for reply in replies {
            let raw = reply.map_err(|source| Error::Kernel {
                operation: OP,
                object: format!("on link index {}", self.vxlan),
                source,
            })?;
            for (message_type, payload) in raw_messages(&raw) {
                self.absorb(&mut current, Source::Dump, message_type, payload);
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

    fn delete_route(&self, destination: IpNet, seen: &RouteSeen) -> (Change, Request) {
        let mut del = Route::new(destination).dev(self.vxlan).table(TABLE_MAIN);
        del.metric = seen.metric;
        (
            Change::DeleteRoute { destination },
            Request::new(RouteNetlinkMessage::DelRoute(del.message(true)), 0),
        )
    }

    /// Take one message into `current`: an entry of a dump, or a
    /// notification of a change. The dumps of a reconcile hold thousands of
    /// entries of which a few fields matter, so messages are read straight
    /// from the bytes (see [`lean`]) instead of being parsed whole.
    ///
    /// Returns `false` when a notification leaves `current` unable to
    /// follow the kernel, so that the state must be dumped again: a link or
    /// address change on the device (the kernel flushes IPv4 routes on link
    /// down and on some address changes without notifying them), a message
    /// that does not parse, an FDB notification for a MAC with other
    /// destinations (the kernel sends the same one whether `replace`
    /// changed the first destination or `append` added one), or a route
    /// notification that adds a second route under the key (destination and
    /// metric) of one held.
    fn absorb(
        &self,
        current: &mut Current,
        source: Source,
        message_type: u16,
        payload: &[u8],
    ) -> bool {
        let notified = matches!(source, Source::Notification { .. });
        match message_type {
            lean::RTM_NEWNEIGH | lean::RTM_DELNEIGH => {
                let Some(n) = lean::neighbour(payload) else {
                    return !notified;
                };
                if n.ifindex != self.vxlan || n.flags & lean::NTF_PROXY != 0 {
                    return true;
                }
                let new = message_type == lean::RTM_NEWNEIGH;
                let permanent = n.state == lean::NUD_PERMANENT;
                if n.family == lean::AF_BRIDGE {
                    let (Some(mac), Some(dst)) = (n.mac, n.dst) else {
                        return true;
                    };
                    if n.flags & lean::NTF_SELF == 0 || mac == MacAddr::ZERO {
                        return true;
                    }
                    if !new {
                        if let Some(dsts) = current.fdb.get_mut(&mac) {
                            dsts.retain(|(d, _)| *d != dst);
                            if dsts.is_empty() {
                                current.fdb.remove(&mac);
                            }
                        }
                        return true;
                    }
                    let dsts = current.fdb.entry(mac).or_default();
                    if !notified || dsts.is_empty() {
                        dsts.push((dst, permanent));
                    } else if let Some(seen) = dsts.iter_mut().find(|(d, _)| *d == dst) {
                        seen.1 = permanent;
                    } else {
                        return false;
                    }
                } else if let Some(ip) = n.dst {
                    if new {
                        current.neighbours.insert(ip, (n.mac, permanent));
                    } else {
                        current.neighbours.remove(&ip);
                    }
                }
                true
            }
            lean::RTM_NEWROUTE | lean::RTM_DELROUTE => {
                let Some(r) = lean::route(payload) else {
                    return !notified;
                };
                let Ok(destination) = IpNet::new(r.dst, r.dst_len) else {
                    return !notified;
                };
                if r.table != TABLE_MAIN || r.cloned {
                    return true;
                }
                let ours = r.oif == Some(self.vxlan) && r.gateway.is_some();
                let seen = RouteSeen {
                    gateway: r.gateway,
                    onlink: r.onlink,
                    metric: r.metric,
                };
                let Source::Notification { flags } = source else {
                    // A dump lists each route once.
                    if ours {
                        current.routes.entry(destination).or_default().push(seen);
                    }
                    return true;
                };
                let held = current.routes.entry(destination).or_default();
                let same_key = held.iter().position(|s| s.key() == seen.key());
                let new = message_type == lean::RTM_NEWROUTE;
                let keep = match (new, same_key) {
                    // A deleted route: ours goes; one without a single
                    // device (multipath) under our key cannot be placed.
                    (false, Some(i)) => match r.oif {
                        Some(oif) if oif == self.vxlan => {
                            held.remove(i);
                            true
                        }
                        Some(_) => true,
                        None => false,
                    },
                    (false, None) => true,
                    // A replacing route takes the key, ours or not.
                    (true, i) if flags & NLM_F_REPLACE != 0 => {
                        match (i, ours) {
                            (Some(i), true) => held[i] = seen,
                            (Some(i), false) => {
                                held.remove(i);
                            }
                            (None, true) => held.push(seen),
                            (None, false) => {}
                        }
                        true
                    }
                    // A created route: new under its key, or the one held
                    // again (a notification replayed after a dump). Anything
                    // else adds a second route under a key held (prepend,
                    // append, multipath), which one entry per key cannot
                    // follow.
                    (true, None) => {
                        if ours {
                            held.push(seen);
                        }
                        true
                    }
                    (true, Some(i)) => ours && held[i] == seen,
                };
                if held.is_empty() {
                    current.routes.remove(&destination);
                }
                keep
            }
            lean::RTM_NEWLINK | lean::RTM_DELLINK | lean::RTM_NEWADDR | lean::RTM_DELADDR => {
                lean::ifindex(payload).is_some_and(|index| index != self.vxlan)
            }
            _ => true,
        }
    }

    /// Read the queued notifications into `state` (or drop them when it is
    /// `None`). Returns whether `state` still follows the kernel: `false`
    /// without a subscription, when a notification could not be followed
    /// (see [`Overlay::absorb`]), when notifications were lost (`ENOBUFS`)
    /// or did not parse, and when the socket failed (the subscription then
    /// closes, and the next reconcile subscribes again).
    fn follow(&self, watch: &mut Watch, mut state: Option<&mut Current>) -> bool {
        let Watch::Open(monitor) = watch else {
            return false;
        };
        let mut exact = state.is_some();
        loop {
            let drained = monitor.drain(|message_type, flags, payload| {
                if let Some(current) = state.as_deref_mut() {
                    exact &= self.absorb(
                        current,
                        Source::Notification { flags },
                        message_type,
                        payload,
                    );
                }
            });
            match drained {
                Ok(()) => return exact,
                // Lost or unreadable notifications; the rest is still queued.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == io::ErrorKind::InvalidData =>
                {
                    exact = false;
                }
                Err(_) => {
                    *watch = Watch::Idle;
                    return false;
                }
            }
        }
    }

    /// Advance the subscription: start it when there is none (in the
    /// background when the socket must be opened in another namespace),
    /// or take the socket whose opening the previous reconcile started.
    async fn watch(&self, watch: &mut Watch) {
        const OP: &str = "subscribe to overlay state changes";
        match watch {
            Watch::Idle => {
                *watch = match self.handle.netns().cloned() {
                    // Opening a socket in the calling thread's namespace is
                    // cheap: subscribe now.
                    None => match events::subscribe(None, MIRROR_GROUPS, OP) {
                        Ok(socket) => Watch::Open(Monitor::new(socket)),
                        Err(_) => Watch::Idle,
                    },
                    // In another namespace it takes a thread: open the
                    // socket beside this reconcile, and use it from the next.
                    Some(netns) => {
                        let (opened, socket) = tokio::sync::oneshot::channel();
                        let spawned = std::thread::Builder::new()
                            .name("overlay-watch".into())
                            .spawn(move || {
                                let _ =
                                    opened.send(events::subscribe(Some(&netns), MIRROR_GROUPS, OP));
                            });
                        match spawned {
                            Ok(_) => Watch::Opening(socket),
                            Err(_) => Watch::Idle,
                        }
                    }
                };
            }
            Watch::Opening(socket) => {
                let opened = socket.await;
                *watch = match opened {
                    Ok(Ok(socket)) => Watch::Open(Monitor::new(socket)),
                    // Could not subscribe: dump, and try again next time.
                    Ok(Err(_)) | Err(_) => Watch::Idle,
                };
            }
            Watch::Off | Watch::Open(_) => {}
        }
    }

    /// Make the next [`reconcile`](Overlay::reconcile) (of any clone) read
    /// the kernel state with full dumps instead of trusting the mirror.
    ///
    /// The mirror already invalidates itself on every event it cannot
    /// follow (a lost notification, a link or address change on the
    /// device, ...), so this is the belt-and-braces call: an agent may make
    /// it periodically, for example every few minutes, to bound the damage
    /// of a kernel change that was never notified. Costs one reconcile with
    /// dumps; does nothing with a transport that has no mirror (which
    /// dumps every time anyway).
    pub fn resync(&self) {
        self.resync.store(true, Ordering::Release);
    }

    /// How many times the kernel state of this overlay (all clones
    /// together) was read with full dumps: once per reconcile without a
    /// valid mirror. Agents can export it as a metric: a count that grows
    /// with every reconcile means the mirror keeps being invalidated.
    pub fn full_dumps(&self) -> u64 {
        self.full_dumps.load(Ordering::Relaxed)
    }

    /// Make the VXLAN device hold exactly the `desired` peers: install what is
    /// missing or wrong, remove what no desired peer explains, leave the rest
    /// alone. Idempotent; a second call with the same input changes nothing.
    ///
    /// All input is validated first. The changes go out in one batch of
    /// requests (removals first, then neighbours, FDB entries and routes, in
    /// that order). If the kernel refuses some changes, the others are still
    /// applied and [`Error::Reconcile`] carries the report.
    ///
    /// The kernel state is compared from a mirror: the first reconcile of
    /// an overlay subscribes to the kernel's neighbour, FDB, route, link and
    /// address notifications in the overlay's namespace, the first full
    /// read after the subscription (five dumps in one round trip: neighbours
    /// and routes per family, and the FDB) fills the mirror, and every
    /// reconcile first applies the notifications queued since the last one.
    /// A reconcile with a valid mirror reads no dump, so one with nothing to
    /// change costs a few system calls and the comparison in memory. The
    /// mirror is read again with dumps after anything it cannot follow: lost
    /// notifications (`ENOBUFS`), a link or address change on the VXLAN
    /// device (the kernel flushes IPv4 routes on link down without
    /// notifying it), a notification that does not say what it replaced (a
    /// new destination for an FDB MAC that has one: `replace` and `append`
    /// are announced alike; a second route under the destination and metric
    /// of one held), an unreadable notification, a failed subscription, and
    /// [`resync`](Overlay::resync). With a handle opened in a namespace
    /// ([`Netns::handle`](crate::Netns::handle)), the subscription socket is
    /// opened on a thread beside the first reconcile, which therefore dumps
    /// without a mirror; the second fills it. For a handle without a
    /// namespace ([`Handle::new`]) the subscription is opened at once, in
    /// the namespace of the thread that runs the first reconcile (as
    /// [`Handle::link_events`] does). Handles whose transport is not
    /// a kernel socket ([`Transport::is_kernel_socket`](crate::Transport::is_kernel_socket),
    /// for example a [`FakeTransport`](crate::FakeTransport)) have no mirror:
    /// every reconcile dumps.
    ///
    /// Concurrent reconciles on clones of one overlay run one after the
    /// other.
    pub async fn reconcile(&self, desired: &[RemotePeer]) -> Result<ReconcileReport> {
        const OP: &str = "reconcile overlay peers";
        let mut wanted = Wanted {
            ips: HashSet::with_capacity(desired.len()),
            macs: HashSet::with_capacity(desired.len()),
            cidrs: HashSet::with_capacity(desired.len()),
        };
        for peer in desired {
            peer.validate(OP)?;
            let duplicate = if !wanted.ips.insert(peer.vtep_ip) {
                Some(("VTEP address", peer.vtep_ip.to_string()))
            } else if !wanted.macs.insert(peer.vtep_mac) {
                Some(("VTEP MAC", peer.vtep_mac.to_string()))
            } else {
                peer.pod_cidrs
                    .iter()
                    .find(|c| !wanted.cidrs.insert(**c))
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

        let mut mirror = self.mirror.lock().await;
        let Mirror { watch, state } = &mut *mirror;
        if self.resync.swap(false, Ordering::AcqRel) {
            *state = None;
        }
        self.watch(watch).await;
        // What changed since the last reconcile.
        if state.is_some() && !self.follow(watch, state.as_mut()) {
            *state = None;
        }
        let plan = match state.as_ref() {
            Some(current) => self.plan(desired, &wanted, current),
            None => {
                // Notifications queued until now are older than the dumps.
                self.follow(watch, None);
                let mut current = self.current(desired.len()).await?;
                // Changes made while the dumps were read.
                let exact = self.follow(watch, Some(&mut current));
                let plan = self.plan(desired, &wanted, &current);
                if exact {
                    *state = Some(current);
                }
                plan
            }
        };
        // The lock is held until the changes are made, so that a concurrent
        // reconcile sees their notifications.
        let report = self.apply(plan).await;
        drop(mirror);
        report
    }

    /// Compare `desired` with `current`: what is present, what to install,
    /// what to remove.
    fn plan(&self, desired: &[RemotePeer], wanted: &Wanted, current: &Current) -> Plan {
        let mut report = ReconcileReport::default();
        let mut removals: Vec<(Change, Request)> = Vec::new();
        let mut neigh_reqs = Vec::new();
        let mut fdb_reqs = Vec::new();
        let mut route_reqs = Vec::new();

        for peer in desired {
            let mut present = 0usize;
            let mut missing = 0usize;

            match current.neighbours.get(&peer.vtep_ip) {
                Some((mac, true)) if *mac == Some(peer.vtep_mac) => present += 1,
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
            let dsts = current
                .fdb
                .get(&peer.vtep_mac)
                .map_or(&[][..], Vec::as_slice);
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
                let held = current.routes.get(cidr).map_or(&[][..], Vec::as_slice);
                // A route with another metric is another route: remove it,
                // or both would stay.
                let mut other_metric = false;
                for seen in held.iter().filter(|s| s.key() != metric) {
                    other_metric = true;
                    removals.push(self.delete_route(*cidr, seen));
                }
                let right = held
                    .iter()
                    .any(|r| r.gateway == Some(peer.vtep_ip) && r.onlink && r.key() == metric);
                if right && !other_metric {
                    present += 1;
                } else {
                    present += usize::from(!held.is_empty());
                    missing += 1;
                }
                if !right {
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
            if missing == 0 {
                report.unchanged.push(peer.underlay);
            } else if present == 0 {
                report.added.push(peer.underlay);
            } else {
                report.updated.push(peer.underlay);
            }
        }

        // What no desired peer claims, removed in reverse order of
        // installation: routes, FDB entries, neighbour entries.
        let mut stale_routes: Vec<(&IpNet, &RouteSeen)> = current
            .routes
            .iter()
            .filter(|(dst, _)| !wanted.cidrs.contains(*dst))
            .flat_map(|(dst, held)| held.iter().map(move |seen| (dst, seen)))
            .collect();
        stale_routes.sort_by_key(|(dst, seen)| (**dst, seen.key()));
        for (dst, seen) in stale_routes {
            removals.push(self.delete_route(*dst, seen));
        }
        let mut stale_fdb: Vec<(&MacAddr, &Vec<(IpAddr, bool)>)> = current
            .fdb
            .iter()
            .filter(|(mac, _)| !wanted.macs.contains(*mac))
            .collect();
        stale_fdb.sort_by_key(|(mac, _)| **mac);
        report.removed_peers = stale_fdb.len();
        for (mac, dsts) in stale_fdb {
            for (dst, _) in dsts {
                removals.push(self.delete_fdb(*mac, *dst));
            }
        }
        let mut stale_neigh: Vec<IpAddr> = current
            .neighbours
            .iter()
            .filter(|(ip, (_, permanent))| *permanent && !wanted.ips.contains(*ip))
            .map(|(ip, _)| *ip)
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

        let mut changes = removals;
        changes.extend(neigh_reqs);
        changes.extend(fdb_reqs);
        changes.extend(route_reqs);
        Plan { report, changes }
    }

    /// Make the planned changes in one batch and complete the report.
    async fn apply(&self, plan: Plan) -> Result<ReconcileReport> {
        const OP: &str = "reconcile overlay peers";
        let Plan {
            mut report,
            changes,
        } = plan;
        if changes.is_empty() {
            return Ok(report);
        }
        let (changes, requests): (Vec<Change>, Vec<Request>) = changes.into_iter().unzip();
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
        ov.resync();
        assert!(ov.reconcile(&peers).await.unwrap().is_noop());
        // A moved peer's FDB entry, read there too, is replaced.
        ov.resync();
        let mut moved = peer(3);
        moved.underlay = IpAddr::from([198, 51, 100, 33]);
        let report = ov.reconcile(&[peer(2), moved.clone()]).await.unwrap();
        assert_eq!(report.updated, vec![moved.underlay]);
        assert!(ov.reconcile(&[peer(2), moved]).await.unwrap().is_noop());
    }

    fn emitted(message: &impl netlink_packet_core::Emitable) -> Vec<u8> {
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    fn fake_overlay() -> Overlay {
        Overlay::new(&Handle::with_transport(Arc::new(FakeTransport::new())), 5)
    }

    const NOTIFIED: Source = Source::Notification {
        flags: NLM_F_CREATE,
    };
    const REPLACED: Source = Source::Notification {
        flags: NLM_F_REPLACE,
    };

    #[test]
    fn notifications_add_and_remove_entries_and_replays_change_nothing() {
        let ov = fake_overlay();
        let p = peer(1);
        let cidr = p.pod_cidrs[0];
        let neigh = emitted(&ov.neighbour(&p).message());
        let fdb = emitted(&ov.fdb(&p).message());
        let route = emitted(&ov.route(cidr, p.vtep_ip).message(false));
        let mut c = Current::default();
        for _ in 0..2 {
            assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_NEWNEIGH, &neigh));
            assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_NEWNEIGH, &fdb));
            assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_NEWROUTE, &route));
        }
        assert_eq!(c.neighbours[&p.vtep_ip], (Some(p.vtep_mac), true));
        assert_eq!(c.fdb[&p.vtep_mac], vec![(p.underlay, true)]);
        assert_eq!(c.routes[&cidr].len(), 1);
        assert_eq!(c.routes[&cidr][0].gateway, Some(p.vtep_ip));
        // The same message as a deletion removes each entry.
        assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_DELNEIGH, &neigh));
        assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_DELNEIGH, &fdb));
        assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_DELROUTE, &route));
        assert!(c.neighbours.is_empty() && c.fdb.is_empty() && c.routes.is_empty());
        // Entries of other devices are not the overlay's.
        let other = Overlay::new(&Handle::with_transport(Arc::new(FakeTransport::new())), 6);
        assert!(other.absorb(&mut c, NOTIFIED, lean::RTM_NEWNEIGH, &neigh));
        assert!(other.absorb(&mut c, NOTIFIED, lean::RTM_NEWROUTE, &route));
        assert!(c.neighbours.is_empty() && c.routes.is_empty());
    }

    #[test]
    fn a_route_replaced_by_one_on_another_device_leaves_the_mirror() {
        let ov = fake_overlay();
        let p = peer(1);
        let cidr = p.pod_cidrs[0];
        let ours = ov.route(cidr, p.vtep_ip);
        let mut c = Current::default();
        assert!(ov.absorb(
            &mut c,
            NOTIFIED,
            lean::RTM_NEWROUTE,
            &emitted(&ours.message(false))
        ));
        let mut elsewhere = ours.clone();
        elsewhere.dev = Some(9);
        let elsewhere = emitted(&elsewhere.message(false));
        assert!(ov.absorb(&mut c, REPLACED, lean::RTM_NEWROUTE, &elsewhere));
        assert!(c.routes.is_empty());
        // Its deletion concerns no route of the overlay.
        assert!(ov.absorb(&mut c, NOTIFIED, lean::RTM_DELROUTE, &elsewhere));
    }

    #[test]
    fn notifications_the_mirror_cannot_follow_invalidate_it() {
        let ov = fake_overlay();
        let p = peer(1);
        let mut c = Current::default();
        assert!(ov.absorb(
            &mut c,
            NOTIFIED,
            lean::RTM_NEWNEIGH,
            &emitted(&ov.fdb(&p).message())
        ));
        // Another destination for the MAC: `replace` of the first one or
        // `append`, the kernel sends the same notification.
        let mut moved = p.clone();
        moved.underlay = IpAddr::from([198, 51, 100, 77]);
        let moved = emitted(&ov.fdb(&moved).message());
        assert!(!ov.absorb(&mut c, NOTIFIED, lean::RTM_NEWNEIGH, &moved));
        // In a dump it is simply a second destination.
        assert!(ov.absorb(&mut c, Source::Dump, lean::RTM_NEWNEIGH, &moved));
        assert_eq!(c.fdb[&p.vtep_mac].len(), 2);

        // A second route under the key of one held (prepend, append).
        let cidr = p.pod_cidrs[0];
        let route = ov.route(cidr, p.vtep_ip);
        assert!(ov.absorb(
            &mut c,
            NOTIFIED,
            lean::RTM_NEWROUTE,
            &emitted(&route.message(false))
        ));
        let mut second = route.clone();
        second.gateway = Some(IpAddr::from([10, 244, 1, 9]));
        let second = emitted(&second.message(false));
        assert!(!ov.absorb(&mut c, NOTIFIED, lean::RTM_NEWROUTE, &second));
        // Replacing it is fine.
        assert!(ov.absorb(&mut c, REPLACED, lean::RTM_NEWROUTE, &second));
        assert_eq!(
            c.routes[&cidr][0].gateway,
            Some(IpAddr::from([10, 244, 1, 9]))
        );

        // Link and address changes of the device; not of another one.
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.header.index = 5;
        let link_5 = emitted(&link);
        link.header.index = 6;
        let link_6 = emitted(&link);
        for kind in [lean::RTM_NEWLINK, lean::RTM_DELLINK] {
            assert!(!ov.absorb(&mut c, NOTIFIED, kind, &link_5));
            assert!(ov.absorb(&mut c, NOTIFIED, kind, &link_6));
        }
        let mut addr = netlink_packet_route::address::AddressMessage::default();
        addr.header.index = 5;
        for kind in [lean::RTM_NEWADDR, lean::RTM_DELADDR] {
            assert!(!ov.absorb(&mut c, NOTIFIED, kind, &emitted(&addr)));
        }
        // A notification too short to read.
        for kind in [lean::RTM_NEWNEIGH, lean::RTM_DELROUTE, lean::RTM_NEWLINK] {
            assert!(!ov.absorb(&mut c, NOTIFIED, kind, &[0; 3]));
        }
    }

    #[tokio::test]
    async fn reconcile_with_a_fake_transport_dumps_every_time() {
        let fake = kernel_with_peers_1_and_9();
        let overlay = Overlay::new(&Handle::with_transport(fake.clone()), 5);
        for _ in 0..3 {
            overlay.reconcile(&[peer(1), peer(9)]).await.unwrap();
        }
        assert_eq!(overlay.full_dumps(), 3);
        assert_eq!(fake.requests().iter().filter(|r| r.is_dump()).count(), 15);
        // resync changes nothing for a transport without a mirror.
        overlay.resync();
        overlay.reconcile(&[peer(1), peer(9)]).await.unwrap();
        assert_eq!(overlay.full_dumps(), 4);
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

    pub(super) const RTM_NEWLINK: u16 = 16;
    pub(super) const RTM_DELLINK: u16 = 17;
    pub(super) const RTM_NEWADDR: u16 = 20;
    pub(super) const RTM_DELADDR: u16 = 21;
    pub(super) const RTM_NEWROUTE: u16 = 24;
    pub(super) const RTM_DELROUTE: u16 = 25;
    pub(super) const RTM_NEWNEIGH: u16 = 28;
    pub(super) const RTM_DELNEIGH: u16 = 29;
    pub(super) const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
    pub(super) const NTF_SELF: u8 = 0x02;
    pub(super) const NTF_PROXY: u8 = 0x08;
    /// `RTM_F_CLONED` in `rtm_flags`: a cached (exception) route.
    const RTM_F_CLONED: u32 = 0x200;
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

    /// The interface index of a link (`ifinfomsg`) or address
    /// (`ifaddrmsg`) message: both hold it at offset 4.
    pub(super) fn ifindex(payload: &[u8]) -> Option<u32> {
        u32_of(payload.get(4..8)?)
    }

    pub(super) struct Rt {
        pub(super) dst: IpAddr,
        pub(super) dst_len: u8,
        pub(super) table: u32,
        pub(super) onlink: bool,
        pub(super) cloned: bool,
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
            cloned: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]) & RTM_F_CLONED != 0,
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
