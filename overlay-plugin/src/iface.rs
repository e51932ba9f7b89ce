//! A container interface configured from a CNI result: Go's
//! `ipam.ConfigureIface`.
//!
//! [`Plan::new`] works out, without I/O, what a result means for one
//! interface: its addresses (IPv6 without duplicate address detection, as
//! the reference plugins do), a default route through each address's
//! gateway when asked for one, the IPAM's routes (through the gateway of
//! the same family when they name none), and the result's `ips` and
//! `routes` as the plugin reports them. [`Plan::apply`] installs it:
//! IPv6 enabled first where a sysctl disables it, then in one netlink
//! exchange the interface up (when asked, [`Plan::link_up`]), the
//! addresses, and the routes (which need them). [`check_addresses`] is `CHECK`'s half:
//! the interface exists and holds the result's addresses.
//!
//! ```
//! use overlay_cni::result::{CniResult, IpConfig, Route};
//! use overlay_cni::Version;
//! use overlay_plugin::iface::Plan;
//!
//! let mut ipam = CniResult::new(Version::V1_0_0);
//! ipam.ips.push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
//! ipam.routes.push(Route::new("203.0.113.0/24".parse().unwrap()));
//! // Interface index 9 in the pod; the result's interface entry 2; a default route.
//! let plan = Plan::new(&ipam, 9, 2, true);
//! assert_eq!(plan.ips[0].gateway, Some("198.51.100.1".parse().unwrap()));
//! assert_eq!(plan.ips[0].interface, Some(2));
//! assert_eq!(plan.routes.len(), 2); // the IPAM's route and the default route
//! assert_eq!(plan.kernel_routes[0].1.gateway, Some("198.51.100.1".parse().unwrap()));
//! assert!(plan.sysctls.is_empty()); // IPv4 only
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use overlay_cni::CniError;
use overlay_cni::result::{CniResult, IpConfig, Route};
use overlay_netlink::{Address, Handle, Netns};

use crate::error::{CODE_NETLINK, NetlinkResultExt};

/// What to install on one interface, and what to report; see the
/// [module docs](self).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Plan {
    /// The result's `ips`: the IPAM's, with `interface` set and the gateway
    /// filled in (the IPAM's, or the subnet's first host).
    pub ips: Vec<IpConfig>,
    /// The result's `routes`: the IPAM's, then the default routes added.
    pub routes: Vec<Route>,
    /// The addresses to add, in order.
    pub addresses: Vec<Address>,
    /// The routes to add after the addresses, each with the step's name
    /// for error messages.
    pub kernel_routes: Vec<(&'static str, overlay_netlink::Route)>,
    /// Sysctls (relative to `/proc/sys`) to set to `"0"` inside the
    /// namespace before the addresses, when present and not already `"0"`:
    /// `disable_ipv6` of `lo` and the interface when an IPv6 address is
    /// configured.
    pub sysctls: Vec<String>,
    /// Whether [`Plan::apply`] also brings the interface up, in the same
    /// exchange as its addresses and routes (see [`Plan::link_up`]).
    pub up: bool,
    /// The interface's kernel index in the container's namespace.
    pub index: u32,
}

impl Plan {
    /// The plan for the interface with kernel index `index` (in the
    /// container's namespace), entry `interface` of the result's
    /// `interfaces`, from the IPAM's result. With `default_route`, each
    /// address family without a default route among the IPAM's routes gets
    /// one through the address's gateway.
    pub fn new(ipam: &CniResult, index: u32, interface: usize, default_route: bool) -> Plan {
        Self::with_ifname(ipam, index, interface, default_route, None)
    }

    /// [`Plan::new`] for the interface named `ifname`, whose IPv6 sysctls
    /// are known by name ([`Plan::sysctls`]).
    ///
    /// ```
    /// use overlay_cni::result::{CniResult, IpConfig};
    /// use overlay_plugin::iface::Plan;
    ///
    /// let mut ipam = CniResult::new(overlay_cni::Version::V1_0_0);
    /// ipam.ips.push(IpConfig::new("2001:db8::7/64".parse().unwrap()));
    /// let plan = Plan::with_ifname(&ipam, 9, 2, false, Some("eth0"));
    /// assert_eq!(plan.sysctls, ["net/ipv6/conf/lo/disable_ipv6", "net/ipv6/conf/eth0/disable_ipv6"]);
    /// assert!(plan.addresses[0].nodad);
    /// ```
    pub fn with_ifname(
        ipam: &CniResult,
        index: u32,
        interface: usize,
        default_route: bool,
        ifname: Option<&str>,
    ) -> Plan {
        let mut plan = Plan {
            ips: Vec::new(),
            routes: ipam.routes.clone(),
            addresses: Vec::new(),
            kernel_routes: Vec::new(),
            sysctls: Vec::new(),
            up: false,
            index,
        };
        for ip in &ipam.ips {
            let gateway = ip.gateway_or_first_host();
            plan.addresses.push(match ip.address {
                IpNet::V6(_) => Address::new(index, ip.address).nodad(),
                IpNet::V4(_) => Address::new(index, ip.address),
            });
            let has_default = |gw: &IpAddr| {
                ipam.routes
                    .iter()
                    .any(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4() == gw.is_ipv4())
            };
            if let (true, Some(gw)) = (default_route, gateway.filter(|gw| !has_default(gw))) {
                let default = if gw.is_ipv4() {
                    IpNet::V4(Default::default())
                } else {
                    IpNet::V6(Default::default())
                };
                plan.kernel_routes.push((
                    "add default route",
                    overlay_netlink::Route::new(default).gateway(gw).dev(index),
                ));
                plan.routes.push(Route::new(default).with_gw(gw));
            }
            let mut ip = ip.clone();
            ip.interface = Some(interface);
            ip.gateway = gateway;
            plan.ips.push(ip);
        }
        for route in &ipam.routes {
            let mut r = overlay_netlink::Route::new(route.dst).dev(index);
            let same_family =
                |ip: &&IpConfig| ip.address.addr().is_ipv4() == route.dst.addr().is_ipv4();
            if let Some(gw) = route
                .gw
                .or_else(|| plan.ips.iter().find(same_family).and_then(|ip| ip.gateway))
            {
                r = r.gateway(gw);
            }
            plan.kernel_routes.push(("add IPAM route", r));
        }
        if let Some(ifname) =
            ifname.filter(|_| ipam.ips.iter().any(|ip| ip.address.addr().is_ipv6()))
        {
            for dev in ["lo", ifname] {
                plan.sysctls
                    .push(format!("net/ipv6/conf/{dev}/disable_ipv6"));
            }
        }
        plan
    }

    /// The same plan with every route whose gateway lies outside all of
    /// the interface's subnets installed on-link: for host addresses (`/32`,
    /// `/128`) behind a node's bridge, as a routed overlay hands them out.
    /// Without it the kernel refuses such a gateway ("Nexthop has invalid
    /// gateway"), as it does for the reference plugins.
    ///
    /// ```
    /// use overlay_cni::result::{CniResult, IpConfig};
    /// use overlay_plugin::iface::Plan;
    ///
    /// let mut ipam = CniResult::new(overlay_cni::Version::V1_0_0);
    /// ipam.ips.push(IpConfig::new("10.32.0.5/32".parse().unwrap()).with_gateway("10.32.0.1".parse().unwrap()));
    /// let plan = Plan::new(&ipam, 9, 2, true);
    /// assert!(!plan.kernel_routes[0].1.onlink);
    /// assert!(plan.gateways_on_link().kernel_routes[0].1.onlink);
    /// ```
    pub fn gateways_on_link(mut self) -> Plan {
        let subnets: Vec<IpNet> = self.addresses.iter().map(|a| a.addr.trunc()).collect();
        for (_, route) in &mut self.kernel_routes {
            if let Some(gw) = route.gateway
                && !subnets.iter().any(|net| net.contains(&gw))
            {
                route.onlink = true;
            }
        }
        self
    }

    /// The same plan bringing the interface up as well, before its
    /// addresses, in the one exchange [`Plan::apply`] makes: for an
    /// interface created down (`veth::Port::defer_pod_up`), one netlink
    /// round trip instead of two.
    ///
    /// ```
    /// use overlay_cni::result::CniResult;
    /// use overlay_plugin::iface::Plan;
    ///
    /// let plan = Plan::new(&CniResult::new(overlay_cni::Version::V1_0_0), 9, 2, true).link_up();
    /// assert!(plan.up && plan.index == 9);
    /// ```
    pub fn link_up(mut self) -> Plan {
        self.up = true;
        self
    }

    /// Install the plan through `pod` (a handle in the container's
    /// namespace); `netns` is that namespace, for [`Plan::sysctls`] (set
    /// with `Netns::sysctl_set`; a sysctl that is absent is skipped, as Go
    /// does). Then the interface up (with [`Plan::link_up`]), the addresses
    /// and the routes go to the kernel in one exchange
    /// ([`Handle::batch`]), in that order. Kernel failures are
    /// [`CODE_NETLINK`] naming the first step that failed (the kernel still
    /// makes the later ones; a failed `ADD` deletes the interface, which
    /// takes them with it).
    pub async fn apply(&self, pod: &Handle, netns: Option<&Netns>) -> Result<(), CniError> {
        if let Some(netns) = netns {
            for key in &self.sysctls {
                match netns.sysctl_get(key) {
                    Ok(value) if value != "0" => netns
                        .sysctl_set(key, "0")
                        .or_cni(CODE_NETLINK, "enable IPv6")?,
                    _ => {}
                }
            }
        }
        let mut batch = pod.batch();
        let mut steps = Vec::new();
        if self.up {
            batch = batch.set_up(self.index);
            steps.push("set container veth up");
        }
        for address in &self.addresses {
            batch = batch.add_address(address.clone());
            steps.push("add address to container interface");
        }
        for (what, route) in &self.kernel_routes {
            batch = batch.add_route(route);
            steps.push(what);
        }
        let outcomes = batch.send_each().await;
        let outcomes = outcomes.or_cni(CODE_NETLINK, "configure container interface")?;
        for (outcome, what) in outcomes.into_iter().zip(steps) {
            outcome.or_cni(CODE_NETLINK, what)?;
        }
        Ok(())
    }
}

/// `CHECK` of a container interface: `ifname` exists in `pod`'s namespace
/// and holds every address `prev` gives it. Returns its index. Failures are
/// [`CODE_NETLINK`] with what is missing.
///
/// ```no_run
/// # async fn f(pod: &overlay_netlink::Handle, prev: &overlay_cni::CniResult) -> Result<(), overlay_cni::CniError> {
/// let index = overlay_plugin::iface::check_addresses(pod, "eth0", prev).await?;
/// # Ok(()) }
/// ```
pub async fn check_addresses(
    pod: &Handle,
    ifname: &str,
    prev: &CniResult,
) -> Result<u32, CniError> {
    let link = pod
        .link()
        .find(ifname)
        .await
        .or_cni(CODE_NETLINK, "look up CNI_IFNAME")?
        .ok_or_else(|| {
            let ns = pod
                .netns()
                .map(|n| n.path().display().to_string())
                .unwrap_or_default();
            CniError::plugin(
                CODE_NETLINK,
                format!("interface {ifname} not found in {ns}"),
            )
        })?;
    let have = pod
        .address()
        .list(None, Some(link.index))
        .await
        .or_cni(CODE_NETLINK, "list addresses")?;
    for ip in prev.container_ips(ifname) {
        if !have.iter().any(|a| a.addr == ip.address) {
            return Err(CniError::plugin(
                CODE_NETLINK,
                format!("address {} missing on {ifname}", ip.address),
            ));
        }
    }
    Ok(link.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_cni::Version;

    fn ip(s: &str) -> IpConfig {
        IpConfig::new(s.parse().expect("valid"))
    }

    #[test]
    fn dual_stack_plan_matches_the_reference_bridge_layout() {
        let mut ipam = CniResult::new(Version::V1_0_0);
        ipam.ips.push(ip("198.51.100.7/24"));
        ipam.ips
            .push(ip("2001:db8::7/64").with_gateway("2001:db8::fe".parse().expect("valid")));
        ipam.routes
            .push(Route::new("0.0.0.0/0".parse().expect("valid")));
        let plan = Plan::with_ifname(&ipam, 5, 2, true, Some("eth0"));
        // IPv4 already has a default route from IPAM: only IPv6 gets one.
        let defaults: Vec<_> = plan
            .kernel_routes
            .iter()
            .filter(|(what, _)| *what == "add default route")
            .map(|(_, r)| r.gateway)
            .collect();
        assert_eq!(defaults, [Some("2001:db8::fe".parse().expect("valid"))]);
        // The IPAM route goes through the IPv4 address's first host.
        let (_, ipam_route) = plan.kernel_routes.last().expect("IPAM route");
        assert_eq!(
            ipam_route.gateway,
            Some("198.51.100.1".parse().expect("valid"))
        );
        assert_eq!(plan.routes.len(), 2);
        assert!(!plan.addresses[0].nodad && plan.addresses[1].nodad);
        assert_eq!(plan.sysctls.len(), 2);
        assert!(plan.ips.iter().all(|ip| ip.interface == Some(2)));
    }

    #[test]
    fn without_default_route_only_ipam_routes_are_added() {
        let mut ipam = CniResult::new(Version::V1_0_0);
        ipam.ips.push(ip("198.51.100.7/24"));
        let plan = Plan::new(&ipam, 5, 0, false);
        assert!(plan.kernel_routes.is_empty());
        assert!(plan.routes.is_empty());
    }
}
