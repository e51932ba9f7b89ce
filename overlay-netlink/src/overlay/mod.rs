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

//!
//! # Layout
//!
//! * `peer`: the peer types ([`RemotePeer`], [`Change`], [`Failure`],
//!   [`ReconcileReport`], [`RouteMetric`]);
//! * `plan`: the pure planner, desired peers against the kernel state to a
//!   list of changes;
//! * `mirror`: the copy of the kernel state kept current by notifications;
//! * `dump_reader`: the fields of dumped messages, read from their bytes;
//! * `dump_worker`: the second dump socket on a thread;
//! * this module: [`Overlay`], the driver that sends the dumps and the
//!   changes.

pub(crate) mod dump_reader;
mod dump_worker;
mod mirror;
mod peer;
mod plan;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{AddressFamilyExt, Error, ErrorKind, IpFamily, Result};
use crate::handle::Handle;
use crate::transport::{Reply, Request, raw_messages};
use dump_worker::{DUMP_WORKERS, DumpWorker};
use mirror::{Mirror, Source, Watch, absorb};
pub use peer::{Change, Failure, ReconcileReport, RemotePeer, RouteMetric};
use plan::{Current, Plan, Planner, Wanted};

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

const DUMP_RETRIES: usize = 5;

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

    /// The objects of this overlay and the comparison with the kernel.
    fn planner(&self) -> Planner {
        Planner {
            vxlan: self.vxlan,
            metric: self.metric,
        }
    }

    /// Install one peer: neighbour entry, then FDB entry, then one on-link
    /// route per pod range. If a step fails, what this call installed is
    /// removed again and the error of the failed step is returned.
    pub async fn add_peer(&self, peer: &RemotePeer) -> Result<()> {
        peer.validate("add overlay peer")?;
        let h = &self.handle;
        let p = self.planner();
        h.neighbour().replace(&p.neighbour(peer)).await?;
        if let Err(e) = h.fdb().replace(&p.fdb(peer)).await {
            let _ = h.neighbour().delete(self.vxlan, peer.vtep_ip).await;
            return Err(e);
        }
        for (i, cidr) in peer.pod_cidrs.iter().enumerate() {
            if let Err(e) = h.route().replace(&p.route(*cidr, peer.vtep_ip)).await {
                for done in &peer.pod_cidrs[..i] {
                    let _ = h.route().delete(&p.route(*done, peer.vtep_ip)).await;
                }
                let _ = h.fdb().delete(&p.fdb(peer)).await;
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
        let p = self.planner();
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
            note(h.route().delete(&p.route(*cidr, peer.vtep_ip)).await);
        }
        note(h.fdb().delete(&p.fdb(peer)).await);
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
                absorb(
                    self.vxlan,
                    &mut current,
                    Source::Dump,
                    message_type,
                    payload,
                );
            }
        }
        Ok(current)
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
        let wanted = Wanted::new(OP, desired)?;

        let mut mirror = self.mirror.lock().await;
        let Mirror { watch, state } = &mut *mirror;
        if self.resync.swap(false, Ordering::AcqRel) {
            *state = None;
        }
        watch.advance(&self.handle).await;
        // What changed since the last reconcile.
        if state.is_some() && !watch.follow(self.vxlan, state.as_mut()) {
            *state = None;
        }
        let plan = match state.as_ref() {
            Some(current) => self.planner().plan(desired, &wanted, current),
            None => {
                // Notifications queued until now are older than the dumps.
                watch.follow(self.vxlan, None);
                let mut current = self.current(desired.len()).await?;
                // Changes made while the dumps were read.
                let exact = watch.follow(self.vxlan, Some(&mut current));
                let plan = self.planner().plan(desired, &wanted, &current);
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
                Err(e) if e.kind() == ErrorKind::NotFound && peer::is_delete(&change) => {
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use ipnet::IpNet;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};
    use netlink_packet_route::neighbour::NeighbourState as RawState;
    use overlay_core::MacAddr;

    use super::*;
    use crate::error::{InvalidInput, KernelError};
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
                        out.push(RouteNetlinkMessage::NewNeighbour(
                            ov.planner().fdb(&p).message(),
                        ));
                    }
                }
                RouteNetlinkMessage::GetNeighbour(m) if m.header.family == AddressFamily::Inet => {
                    for p in [peer(1), peer(9)] {
                        out.push(RouteNetlinkMessage::NewNeighbour(
                            ov.planner().neighbour(&p).message(),
                        ));
                    }
                }
                RouteNetlinkMessage::GetRoute(m)
                    if m.header.address_family == AddressFamily::Inet =>
                {
                    for p in [peer(1), peer(9)] {
                        out.push(RouteNetlinkMessage::NewRoute(
                            ov.planner().route(p.pod_cidrs[0], p.vtep_ip).message(false),
                        ));
                    }
                }
                _ => {}
            }
            Ok(out)
        }))
    }

    #[tokio::test]
    async fn reconcile_reads_the_fdb_on_the_dump_worker_once_its_socket_is_open() {
        overlay_testsupport::privileged_test!();
        let t = overlay_testsupport::TestNetns::new().unwrap();
        let h = crate::Netns::open_path(t.path()).unwrap().handle().unwrap();
        let (vx, _) = h
            .link()
            .ensure_vxlan(
                &crate::VxlanConfig::new("flannel.1", crate::Vni::new(1).unwrap())
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
                    vec![RouteNetlinkMessage::NewNeighbour(
                        old.planner().fdb(&p).message(),
                    )]
                }
                RouteNetlinkMessage::GetNeighbour(m) if m.header.family == AddressFamily::Inet => {
                    vec![RouteNetlinkMessage::NewNeighbour(
                        old.planner().neighbour(&p).message(),
                    )]
                }
                RouteNetlinkMessage::GetRoute(m)
                    if m.header.address_family == AddressFamily::Inet =>
                {
                    vec![RouteNetlinkMessage::NewRoute(
                        old.planner()
                            .route(p.pod_cidrs[0], p.vtep_ip)
                            .message(false),
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
