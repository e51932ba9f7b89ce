//! Routes.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol as RawProtocol, RouteScope, RouteType,
};

use crate::error::{AddressFamilyExt, IpFamily, Result};
use crate::handle::Handle;
use crate::validate;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// The local routing table.
pub const TABLE_LOCAL: u32 = 255;

/// Route scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Global (`universe`).
    Universe,
    /// Site (IPv6).
    Site,
    /// Directly attached (`link`).
    Link,
    /// This host (`host`).
    Host,
    /// No destination (`nowhere`).
    Nowhere,
    /// Any other value.
    Other(u8),
}

impl From<u8> for Scope {
    fn from(v: u8) -> Self {
        match v {
            0 => Scope::Universe,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            o => Scope::Other(o),
        }
    }
}

impl From<Scope> for u8 {
    fn from(s: Scope) -> u8 {
        match s {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(o) => o,
        }
    }
}

/// Route type (`rtm_type`): what the kernel does with a packet that
/// matches.
///
/// Values without a variant of their own read as [`RouteKind::Other`]
/// (`From<u8>` never produces `Other` for a value that has a variant), and
/// every value converts back to the same byte.
///
/// ```
/// use overlay_netlink::RouteKind;
/// assert_eq!(RouteKind::from(6), RouteKind::Blackhole);
/// assert_eq!(u8::from(RouteKind::Unicast), 1);
/// assert_eq!(RouteKind::from(200), RouteKind::Other(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteKind {
    /// Unknown type (0; requests that match any).
    Unspec,
    /// A gateway or direct route (1).
    Unicast,
    /// Accept locally (2).
    Local,
    /// Accept locally as broadcast, send as broadcast (3).
    Broadcast,
    /// Accept locally as broadcast, send as unicast (4).
    Anycast,
    /// A multicast route (5).
    Multicast,
    /// Drop silently (6).
    Blackhole,
    /// Destination unreachable: ICMP host/net unreachable (7).
    Unreachable,
    /// Administratively prohibited (8).
    Prohibit,
    /// Continue the lookup in another table (9).
    Throw,
    /// Translate this address (10).
    Nat,
    /// Use an external resolver (11).
    ExternalResolve,
    /// Any other value.
    Other(u8),
}

impl From<u8> for RouteKind {
    fn from(v: u8) -> Self {
        match v {
            0 => RouteKind::Unspec,
            1 => RouteKind::Unicast,
            2 => RouteKind::Local,
            3 => RouteKind::Broadcast,
            4 => RouteKind::Anycast,
            5 => RouteKind::Multicast,
            6 => RouteKind::Blackhole,
            7 => RouteKind::Unreachable,
            8 => RouteKind::Prohibit,
            9 => RouteKind::Throw,
            10 => RouteKind::Nat,
            11 => RouteKind::ExternalResolve,
            o => RouteKind::Other(o),
        }
    }
}

impl From<RouteKind> for u8 {
    fn from(k: RouteKind) -> u8 {
        match k {
            RouteKind::Unspec => 0,
            RouteKind::Unicast => 1,
            RouteKind::Local => 2,
            RouteKind::Broadcast => 3,
            RouteKind::Anycast => 4,
            RouteKind::Multicast => 5,
            RouteKind::Blackhole => 6,
            RouteKind::Unreachable => 7,
            RouteKind::Prohibit => 8,
            RouteKind::Throw => 9,
            RouteKind::Nat => 10,
            RouteKind::ExternalResolve => 11,
            RouteKind::Other(o) => o,
        }
    }
}

/// Route protocol (`rtm_protocol`): who installed the route.
///
/// The kernel does not interpret it beyond the first few values; routing
/// daemons use their own numbers (`/etc/iproute2/rt_protos`: 16 dhcp, 186
/// bgp, ...), which read as [`RouteProtocol::Other`]. `From<u8>` never
/// produces `Other` for a value that has a variant.
///
/// ```
/// use overlay_netlink::RouteProtocol;
/// assert_eq!(RouteProtocol::from(2), RouteProtocol::Kernel);
/// assert_eq!(RouteProtocol::from(16), RouteProtocol::Other(16));
/// assert_eq!(u8::from(RouteProtocol::Static), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteProtocol {
    /// Unknown (0).
    Unspec,
    /// Installed by an ICMP redirect (1).
    Redirect,
    /// Installed by the kernel (2): connected, local and broadcast routes.
    Kernel,
    /// Installed during boot (3): `ip route add` without `proto`.
    Boot,
    /// Installed by the administrator (4); this crate installs with it.
    Static,
    /// Any other value.
    Other(u8),
}

impl From<u8> for RouteProtocol {
    fn from(v: u8) -> Self {
        match v {
            0 => RouteProtocol::Unspec,
            1 => RouteProtocol::Redirect,
            2 => RouteProtocol::Kernel,
            3 => RouteProtocol::Boot,
            4 => RouteProtocol::Static,
            o => RouteProtocol::Other(o),
        }
    }
}

impl From<RouteProtocol> for u8 {
    fn from(p: RouteProtocol) -> u8 {
        match p {
            RouteProtocol::Unspec => 0,
            RouteProtocol::Redirect => 1,
            RouteProtocol::Kernel => 2,
            RouteProtocol::Boot => 3,
            RouteProtocol::Static => 4,
            RouteProtocol::Other(o) => o,
        }
    }
}

/// Which routes [`RouteOps::list`] returns: one address family, and
/// optionally one table, kind and protocol (unset: any).
///
/// An [`IpFamily`] converts into the filter of all routes of that family,
/// so `list(IpFamily::V4)` lists every IPv4 route of every table.
///
/// ```
/// use overlay_netlink::{IpFamily, RouteFilter, RouteKind, RouteProtocol, TABLE_MAIN};
/// let main_static = RouteFilter::new(IpFamily::V4)
///     .table(TABLE_MAIN)
///     .kind(RouteKind::Unicast)
///     .protocol(RouteProtocol::Static);
/// assert_eq!(main_static.family, IpFamily::V4);
/// assert_eq!(RouteFilter::from(IpFamily::V6).table, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RouteFilter {
    /// The address family.
    pub family: IpFamily,
    /// Only routes of this table (for example [`TABLE_MAIN`]).
    pub table: Option<u32>,
    /// Only routes of this kind.
    pub kind: Option<RouteKind>,
    /// Only routes of this protocol.
    pub protocol: Option<RouteProtocol>,
}

impl RouteFilter {
    /// All routes of `family`, in every table.
    pub fn new(family: IpFamily) -> Self {
        RouteFilter {
            family,
            table: None,
            kind: None,
            protocol: None,
        }
    }

    /// Only routes of `table`.
    pub fn table(mut self, table: u32) -> Self {
        self.table = Some(table);
        self
    }

    /// Only routes of `kind`.
    pub fn kind(mut self, kind: RouteKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only routes installed by `protocol`.
    pub fn protocol(mut self, protocol: RouteProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Whether `route` passes the filter (its family is the caller's
    /// concern: a dump of one family holds only that family).
    pub fn matches(&self, route: &Route) -> bool {
        IpFamily::of(route.destination.addr()) == self.family
            && self.table.is_none_or(|t| t == route.table)
            && self.kind.is_none_or(|k| k == route.kind)
            && self.protocol.is_none_or(|p| p == route.protocol)
    }
}

impl From<IpFamily> for RouteFilter {
    fn from(family: IpFamily) -> Self {
        RouteFilter::new(family)
    }
}

/// A route: what to install, or what the kernel reported.
///
/// ```
/// use overlay_netlink::{Route, Scope};
/// let r = Route::new("10.244.2.0/24".parse().unwrap())
///     .gateway("10.244.2.0".parse().unwrap())
///     .dev(4)
///     .onlink();
/// assert_eq!(r.effective_scope(), Scope::Universe);
/// assert_eq!(Route::new("10.0.0.0/8".parse().unwrap()).dev(4).effective_scope(), Scope::Link);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Route {
    /// Destination prefix (host bits must be clear).
    pub destination: IpNet,
    /// Next-hop gateway.
    pub gateway: Option<IpAddr>,
    /// Output device index.
    pub dev: Option<u32>,
    /// Routing table (default main, 254).
    pub table: u32,
    /// Metric (priority).
    pub metric: Option<u32>,
    /// Scope; by default `link` without a gateway and `universe` with one.
    pub scope: Option<Scope>,
    /// Pretend the gateway is directly attached (`onlink`).
    pub onlink: bool,
    /// Preferred source address.
    pub source: Option<IpAddr>,
    /// Path MTU of the route (`ip route ... mtu N`, the `RTAX_MTU` metric);
    /// `None`: the output device's MTU applies.
    pub mtu: Option<u32>,
    /// Route type (default [`RouteKind::Unicast`]).
    pub kind: RouteKind,
    /// Protocol that installed the route (default, and what this crate
    /// installs with unless told otherwise: [`RouteProtocol::Static`]).
    pub protocol: RouteProtocol,
}

impl Route {
    /// A unicast route to `destination` in the main table.
    pub fn new(destination: IpNet) -> Self {
        Route {
            destination,
            gateway: None,
            dev: None,
            table: TABLE_MAIN,
            metric: None,
            scope: None,
            onlink: false,
            source: None,
            mtu: None,
            kind: RouteKind::Unicast,
            protocol: RouteProtocol::Static,
        }
    }

    /// Set the gateway.
    pub fn gateway(mut self, gateway: IpAddr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Set the output device.
    pub fn dev(mut self, index: u32) -> Self {
        self.dev = Some(index);
        self
    }

    /// Set the table.
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Set the metric.
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    /// Set the scope explicitly.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Mark the gateway as on-link.
    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    /// Set the route type, for example [`RouteKind::Blackhole`] (which
    /// takes no gateway and no device).
    pub fn kind(mut self, kind: RouteKind) -> Self {
        self.kind = kind;
        self
    }

    /// Set the protocol recorded with the route.
    pub fn protocol(mut self, protocol: RouteProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Set the preferred source address.
    pub fn source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Set the route's path MTU (`ip route ... mtu N`).
    ///
    /// ```
    /// use overlay_netlink::Route;
    /// let r = Route::new("203.0.113.0/24".parse().unwrap()).dev(2).mtu(1400);
    /// assert_eq!(r.mtu, Some(1400));
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The scope used when installing: the explicit one, else what `ip
    /// route` chooses for the kind: `host` for local and NAT routes, `link`
    /// for broadcast, multicast and anycast routes, `universe` for blackhole,
    /// unreachable, prohibit and throw routes, and for unicast routes `link`
    /// without a gateway and `universe` with one.
    pub fn effective_scope(&self) -> Scope {
        self.scope.unwrap_or(match self.kind {
            RouteKind::Local | RouteKind::Nat => Scope::Host,
            RouteKind::Broadcast | RouteKind::Multicast | RouteKind::Anycast => Scope::Link,
            RouteKind::Unicast | RouteKind::Unspec if self.gateway.is_none() => Scope::Link,
            _ => Scope::Universe,
        })
    }

    pub(crate) fn validate(&self, operation: &'static str) -> Result<()> {
        validate::prefix(operation, self.destination)?;
        let fam = IpFamily::of(self.destination.addr());
        if let Some(gw) = self.gateway {
            validate::family(operation, &self.destination, "gateway", gw, fam)?;
        }
        if let Some(src) = self.source {
            validate::family(operation, &self.destination, "source", src, fam)?;
        }
        Ok(())
    }

    pub(crate) fn message(&self, delete: bool) -> RouteMessage {
        let mut msg = RouteMessage::default();
        let fam = IpFamily::of(self.destination.addr());
        msg.header.address_family = netlink_packet_route::AddressFamily::from(fam.af());
        msg.header.destination_prefix_length = self.destination.prefix_len();
        msg.header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        if delete {
            msg.header.scope = self.scope.map(route_scope).unwrap_or(RouteScope::NoWhere);
            msg.header.kind = RouteType::Unspec;
            msg.header.protocol = RawProtocol::Unspec;
        } else {
            msg.header.scope = route_scope(self.effective_scope());
            msg.header.kind = RouteType::from(u8::from(self.kind));
            msg.header.protocol = RawProtocol::from(u8::from(self.protocol));
        }
        if self.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        msg.attributes.push(RouteAttribute::Destination(route_addr(
            self.destination.addr(),
        )));
        if let Some(gw) = self.gateway {
            msg.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
        }
        if let Some(src) = self.source {
            msg.attributes
                .push(RouteAttribute::PrefSource(route_addr(src)));
        }
        if let Some(dev) = self.dev {
            msg.attributes.push(RouteAttribute::Oif(dev));
        }
        if let Some(m) = self.metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        if let Some(mtu) = self.mtu {
            msg.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        msg.attributes.push(RouteAttribute::Table(self.table));
        msg
    }

    pub(crate) fn from_message(msg: &RouteMessage) -> Option<Route> {
        let h = &msg.header;
        let mut dst = None;
        let mut route = Route::new(IpNet::default());
        route.table = u32::from(h.table);
        route.scope = Some(Scope::from(u8::from(h.scope)));
        route.onlink = h.flags.contains(RouteFlags::Onlink);
        route.kind = RouteKind::from(u8::from(h.kind));
        route.protocol = RouteProtocol::from(u8::from(h.protocol));
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = ip_of(d),
                RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                RouteAttribute::PrefSource(s) => route.source = ip_of(s),
                RouteAttribute::Oif(o) => route.dev = Some(*o),
                RouteAttribute::Priority(p) => route.metric = Some(*p),
                RouteAttribute::Table(t) => route.table = *t,
                RouteAttribute::Metrics(metrics) => {
                    for m in metrics {
                        if let RouteMetric::Mtu(mtu) = m {
                            route.mtu = Some(*mtu);
                        }
                    }
                }
                _ => {}
            }
        }
        let unspecified = match u8::from(h.address_family) {
            f if f == IpFamily::V4.af() => IpAddr::from([0u8; 4]),
            f if f == IpFamily::V6.af() => IpAddr::from([0u8; 16]),
            _ => return None,
        };
        route.destination =
            IpNet::new(dst.unwrap_or(unspecified), h.destination_prefix_length).ok()?;
        Some(route)
    }
}

fn route_scope(s: Scope) -> RouteScope {
    RouteScope::from(u8::from(s))
}

pub(crate) fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// Route operations; see [`Handle::route`].
///
/// ```no_run
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// use overlay_netlink::Route;
/// let vx = handle.link().get("vxlan.1").await?;
/// let route = Route::new("10.244.2.0/24".parse().unwrap())
///     .gateway("10.244.2.0".parse().unwrap())
///     .dev(vx.index)
///     .onlink();
/// handle.route().replace(&route).await?;
/// handle.route().delete(&route).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RouteOps<'h> {
    handle: &'h Handle,
}

impl<'h> RouteOps<'h> {
    pub(crate) fn new(handle: &'h Handle) -> Self {
        RouteOps { handle }
    }

    async fn install(&self, operation: &'static str, route: &Route, flags: u16) -> Result<()> {
        route.validate(operation)?;
        let object = format!("to {}", route.destination);
        self.handle
            .request(
                operation,
                &object,
                RouteNetlinkMessage::NewRoute(route.message(false)),
                flags,
            )
            .await
            .map(drop)
    }

    /// Add the route, or replace one with the same destination, table and metric.
    pub async fn replace(&self, route: &Route) -> Result<()> {
        self.install("replace route", route, NLM_F_CREATE | NLM_F_REPLACE)
            .await
    }

    /// Add the route; `AlreadyExists` if an identical one is installed.
    pub async fn add(&self, route: &Route) -> Result<()> {
        self.install("add route", route, NLM_F_CREATE | NLM_F_EXCL)
            .await
    }

    /// Delete the route matching the given fields (unset fields match anything).
    pub async fn delete(&self, route: &Route) -> Result<()> {
        const OP: &str = "delete route";
        route.validate(OP)?;
        let object = format!("to {}", route.destination);
        self.handle
            .request(
                OP,
                &object,
                RouteNetlinkMessage::DelRoute(route.message(true)),
                0,
            )
            .await
            .map(drop)
    }

    /// The route the kernel would use to reach `destination`, as `ip route
    /// get` shows it: its output device, gateway, preferred source and
    /// path MTU (when the route sets one, or the kernel learned one for
    /// this destination). `NotFound`-like kernel errors (`ENETUNREACH`)
    /// when no route matches.
    ///
    /// ```no_run
    /// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
    /// let r = handle.route().get("198.51.100.7".parse().unwrap()).await?;
    /// println!("via dev {:?} mtu {:?}", r.dev, r.mtu);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, destination: IpAddr) -> Result<Route> {
        const OP: &str = "get route";
        let object = format!("to {destination}");
        let family = IpFamily::of(destination);
        let mut msg = RouteMessage::default();
        msg.header.address_family = netlink_packet_route::AddressFamily::from(family.af());
        msg.header.destination_prefix_length = match family {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        };
        msg.attributes
            .push(RouteAttribute::Destination(route_addr(destination)));
        let replies = self
            .handle
            .request(OP, &object, RouteNetlinkMessage::GetRoute(msg), 0)
            .await?;
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_message(r),
                _ => None,
            })
            .ok_or(crate::error::Error::UnexpectedReply {
                operation: OP,
                object,
                detail: "no route in the reply",
            })
    }

    /// The routes that pass `filter`: an [`IpFamily`] for every route of
    /// that family in every table, or a [`RouteFilter`] for one table,
    /// kind or protocol.
    ///
    /// The kernel dumps every route of the family; the filter is applied
    /// here, so filtering costs no more than listing.
    ///
    /// ```no_run
    /// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
    /// use overlay_netlink::{IpFamily, RouteFilter, RouteProtocol, TABLE_MAIN};
    /// let all_v6 = handle.route().list(IpFamily::V6).await?;
    /// let ours = handle
    ///     .route()
    ///     .list(RouteFilter::new(IpFamily::V4).table(TABLE_MAIN).protocol(RouteProtocol::Static))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, filter: impl Into<RouteFilter>) -> Result<Vec<Route>> {
        let filter = filter.into();
        let family = filter.family;
        let mut msg = RouteMessage::default();
        msg.header.address_family = netlink_packet_route::AddressFamily::from(family.af());
        let replies = self
            .handle
            .dump(
                "list routes",
                &family.to_string(),
                RouteNetlinkMessage::GetRoute(msg),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_message(r),
                _ => None,
            })
            .filter(|r| filter.matches(r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_ACK;
    use std::sync::Arc;

    use super::*;
    use crate::error::{Error, InvalidInput};
    use crate::transport::FakeTransport;

    #[tokio::test]
    async fn replace_sends_create_replace_with_gateway_onlink_dev_table_and_metric() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let route = Route::new("10.244.2.0/24".parse().unwrap())
            .gateway("10.244.2.0".parse().unwrap())
            .dev(9)
            .onlink()
            .table(1000)
            .metric(7);
        handle.route().replace(&route).await.unwrap();
        let req = &fake.requests()[0];
        assert_eq!(req.flags, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
        let RouteNetlinkMessage::NewRoute(m) = &req.message else {
            panic!()
        };
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.flags, RouteFlags::Onlink);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert_eq!(m.header.kind, RouteType::Unicast);
        assert_eq!(m.header.table, RouteHeader::RT_TABLE_UNSPEC); // 1000 > 255
        for a in [
            RouteAttribute::Gateway(RouteAddress::Inet("10.244.2.0".parse().unwrap())),
            RouteAttribute::Oif(9),
            RouteAttribute::Table(1000),
            RouteAttribute::Priority(7),
        ] {
            assert!(m.attributes.contains(&a), "{a:?}");
        }
    }

    #[tokio::test]
    async fn wrong_family_gateway_and_host_bits_are_rejected_without_a_request() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let v6gw =
            Route::new("10.0.0.0/8".parse().unwrap()).gateway("2001:db8::1".parse().unwrap());
        assert!(matches!(
            handle.route().replace(&v6gw).await,
            Err(Error::InvalidInput {
                source: InvalidInput::FamilyMismatch {
                    what: "gateway",
                    ..
                },
                ..
            })
        ));
        let host_bits = Route::new("10.0.0.1/8".parse().unwrap());
        assert!(matches!(
            handle.route().replace(&host_bits).await,
            Err(Error::InvalidInput {
                source: InvalidInput::HostBits { .. },
                ..
            })
        ));
        assert!(fake.requests().is_empty());
    }

    #[test]
    fn a_route_survives_message_round_trip() {
        let route = Route::new("2001:db8:1::/64".parse().unwrap())
            .gateway("2001:db8::1".parse().unwrap())
            .dev(3)
            .metric(100);
        let back = Route::from_message(&route.message(false)).unwrap();
        assert_eq!(back.destination, route.destination);
        assert_eq!(back.gateway, route.gateway);
        assert_eq!(
            (back.dev, back.metric, back.table),
            (Some(3), Some(100), TABLE_MAIN)
        );
        assert_eq!(back.scope, Some(Scope::Universe));
    }

    /// A fake kernel answering route dumps with the golden kernel dumps.
    fn kernel_with_golden_routes() -> Handle {
        use crate::overlay::dump_reader::fixtures;
        let parse = |bytes: &[u8]| -> Vec<RouteNetlinkMessage> {
            crate::transport::raw_messages(bytes)
                .filter(|(t, _)| *t == 24)
                .map(|(_, payload)| {
                    RouteNetlinkMessage::NewRoute(
                        netlink_packet_core::Parseable::parse(payload).unwrap(),
                    )
                })
                .collect()
        };
        let v4 = parse(fixtures::ROUTE_INET);
        let v6 = parse(fixtures::ROUTE_INET6);
        Handle::with_transport(Arc::new(FakeTransport::with_responder(move |r| {
            match &r.message {
                RouteNetlinkMessage::GetRoute(m)
                    if m.header.address_family == netlink_packet_route::AddressFamily::Inet =>
                {
                    Ok(v4.clone())
                }
                RouteNetlinkMessage::GetRoute(_) => Ok(v6.clone()),
                _ => Ok(Vec::new()),
            }
        })))
    }

    #[tokio::test]
    async fn list_filters_kernel_routes_by_table_kind_and_protocol() {
        let h = kernel_with_golden_routes();
        let v4 = IpFamily::V4;
        assert_eq!(h.route().list(v4).await.unwrap().len(), 9);
        let main = h
            .route()
            .list(RouteFilter::new(v4).table(TABLE_MAIN))
            .await
            .unwrap();
        // Three on-link routes to peers and a blackhole.
        assert_eq!(main.len(), 4);
        let ours = h
            .route()
            .list(
                RouteFilter::new(v4)
                    .table(TABLE_MAIN)
                    .kind(RouteKind::Unicast)
                    .protocol(RouteProtocol::Static),
            )
            .await
            .unwrap();
        assert_eq!(ours.len(), 3);
        assert!(ours.iter().all(|r| r.onlink && r.gateway.is_some()));
        let blackhole = h
            .route()
            .list(RouteFilter::new(v4).kind(RouteKind::Blackhole))
            .await
            .unwrap();
        assert_eq!(
            (blackhole.len(), blackhole[0].protocol),
            (1, RouteProtocol::Boot)
        );
        assert_eq!(blackhole[0].destination, "203.0.113.0/24".parse().unwrap());
        let in_100 = h
            .route()
            .list(RouteFilter::new(v4).table(100))
            .await
            .unwrap();
        assert_eq!(in_100.len(), 1);
        assert_eq!(in_100[0].kind, RouteKind::Prohibit);
        let local = h
            .route()
            .list(
                RouteFilter::new(v4)
                    .table(TABLE_LOCAL)
                    .protocol(RouteProtocol::Kernel),
            )
            .await
            .unwrap();
        let kinds: Vec<RouteKind> = local.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RouteKind::Local,
                RouteKind::Local,
                RouteKind::Local,
                RouteKind::Broadcast
            ]
        );

        let v6 = IpFamily::V6;
        let multicast = h
            .route()
            .list(RouteFilter::new(v6).kind(RouteKind::Multicast))
            .await
            .unwrap();
        assert_eq!(multicast.len(), 2);
        assert!(multicast.iter().all(|r| r.table == TABLE_LOCAL));
        let unreachable = h
            .route()
            .list(RouteFilter::new(v6).kind(RouteKind::Unreachable))
            .await
            .unwrap();
        assert_eq!(unreachable.len(), 1);
        assert_eq!(unreachable[0].protocol, RouteProtocol::Static);
    }

    #[test]
    fn kinds_and_protocols_round_trip_every_byte() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(RouteKind::from(v)), v);
            assert_eq!(u8::from(RouteProtocol::from(v)), v);
            // Named values never read as `Other`.
            if v <= 11 {
                assert!(!matches!(RouteKind::from(v), RouteKind::Other(_)));
            }
        }
    }

    #[tokio::test]
    async fn a_blackhole_route_is_sent_with_its_kind_and_universe_scope() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let route = Route::new("203.0.113.0/24".parse().unwrap())
            .kind(RouteKind::Blackhole)
            .protocol(RouteProtocol::Other(99));
        handle.route().replace(&route).await.unwrap();
        let RouteNetlinkMessage::NewRoute(m) = &fake.requests()[0].message else {
            panic!()
        };
        assert_eq!(m.header.kind, RouteType::BlackHole);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert_eq!(u8::from(m.header.protocol), 99);
        let back = Route::from_message(m).unwrap();
        assert_eq!(
            (back.kind, back.protocol),
            (RouteKind::Blackhole, RouteProtocol::Other(99))
        );
    }
}
