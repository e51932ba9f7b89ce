//! Routes.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};

use crate::error::{IpFamily, Result};
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
    /// Route type as reported (1 unicast, 2 local, 3 broadcast, ...).
    pub kind: u8,
    /// Protocol that installed the route (reported; this crate installs with
    /// `static`, 4).
    pub protocol: u8,
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
            kind: u8::from(RouteType::Unicast),
            protocol: u8::from(RouteProtocol::Static),
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

    /// Set the preferred source address.
    pub fn source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// The scope used when installing: the explicit one, else `link` without
    /// a gateway and `universe` with one (as `ip route` does).
    pub fn effective_scope(&self) -> Scope {
        self.scope.unwrap_or(if self.gateway.is_some() {
            Scope::Universe
        } else {
            Scope::Link
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
            msg.header.protocol = RouteProtocol::Unspec;
        } else {
            msg.header.scope = route_scope(self.effective_scope());
            msg.header.kind = RouteType::from(self.kind);
            msg.header.protocol = RouteProtocol::from(self.protocol);
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
        route.kind = u8::from(h.kind);
        route.protocol = u8::from(h.protocol);
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = ip_of(d),
                RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                RouteAttribute::PrefSource(s) => route.source = ip_of(s),
                RouteAttribute::Oif(o) => route.dev = Some(*o),
                RouteAttribute::Priority(p) => route.metric = Some(*p),
                RouteAttribute::Table(t) => route.table = *t,
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

    /// Routes of one family, all tables (filter on [`Route::table`] for one).
    pub async fn list(&self, family: IpFamily) -> Result<Vec<Route>> {
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
}
