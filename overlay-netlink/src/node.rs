//! A node's side of a flannel-style VXLAN overlay: its devices and their
//! MTU, its gateway addresses, and the per-peer entries kept in step with
//! the cluster, also when the devices are deleted from under it.
//!
//! [`NodeDatapath`] owns three things on the node:
//!
//! 1. the **VXLAN device** (`local` = the node's underlay address, learning
//!    off, the node's VTEP MAC), with the overlay MTU: the underlay's MTU
//!    (the device holding the underlay address, lowered by a route MTU on
//!    the route the kernel uses from it) minus VXLAN's overhead for the
//!    underlay's family ([`overlay_core::mtu::overlay_mtu`]); Weave's
//!    fixed default MTU was wrong on every cloud with a smaller underlay;
//! 2. the **bridge** the pods attach to, with the same MTU and the gateway
//!    addresses it is given ([`NodeDatapath::set_gateways`]): a node agent
//!    that hands pods host addresses (`/32`, `/128`) gives the bridge one
//!    address with the cluster range's prefix, so the node reaches its own
//!    pods on the bridge and every remote block through the more specific
//!    routes on the VXLAN device; one that hands out per-block subnets
//!    gives it each block's first host ([`NodeDatapath::gateway_of`]).
//!    ICMP redirects are off on the bridge: pods on the same bridge that
//!    talk through their gateway are routed, not redirected. Its MAC is
//!    set ([`NodeConfig::bridge_mac`]), so it does not follow the lowest
//!    port MAC as pods come and go (pods cache it for their gateway);
//! 3. the **remote peers** on the VXLAN device ([`Overlay::reconcile`]):
//!    for each peer a neighbour and an FDB entry for its VTEP, and one
//!    on-link route per block it owns. Over IPv4 the peer's VTEP address
//!    can be its underlay address (so the VXLAN device needs no address of
//!    its own); over IPv6 it must be a link-local address (such as the
//!    EUI-64 address of its VTEP MAC; [`RemotePeer::on_underlay`] picks
//!    either), because the kernel refuses an
//!    on-link IPv6 gateway that a route on another device, the underlay's
//!    subnet, covers. A pod block must be of the underlay's family.
//!
//! Every method is idempotent and converges: [`NodeDatapath::reconcile`]
//! recreates the devices when they were deleted (by an operator, or another
//! agent) and programs the peers again, so a datapath that is torn down
//! heals at the next reconcile.
//!
//! ```no_run
//! use overlay_netlink::node::{NodeConfig, NodeDatapath};
//! use overlay_netlink::overlay::RemotePeer;
//! use overlay_core::Vni;
//!
//! # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
//! let config = NodeConfig::new(
//!     "overlay0",
//!     "vxlan.overlay",
//!     Vni::new(42).unwrap(),
//!     "192.0.2.1".parse().unwrap(),
//!     "02:00:00:00:00:01".parse().unwrap(),
//! );
//! let mut node = NodeDatapath::new(handle, config);
//! node.ensure().await?;
//! node.set_gateways(&["10.32.0.1/12".parse().unwrap()]).await?;
//! let peer = RemotePeer::new(
//!     "192.0.2.2".parse().unwrap(),
//!     "02:00:00:00:00:02".parse().unwrap(),
//!     "192.0.2.2".parse().unwrap(),
//! )
//! .pod_cidr("10.32.0.64/26".parse().unwrap());
//! let report = node.reconcile(&[peer]).await?;
//! println!("{} changes, MTU {}", report.changes.len(), node.mtu().unwrap_or(0));
//! # Ok(()) }
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use overlay_core::encap::VxlanEncap;
use overlay_core::mtu::{IpFamily as MtuFamily, overlay_mtu};
use overlay_core::{MacAddr, Vni};

use crate::error::{Error, InvalidInput, IpFamily, Result};
use crate::handle::Handle;
use crate::link::{Link, VxlanConfig};
use crate::overlay::{Overlay, ReconcileReport, RemotePeer};
use crate::{Address, TABLE_MAIN};

/// The IANA VXLAN port, the default of [`NodeConfig`].
pub const VXLAN_PORT: u16 = 4789;

/// What a node's datapath is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The pods' bridge.
    pub bridge: String,
    /// The VXLAN device.
    pub vxlan: String,
    /// The VXLAN network identifier.
    pub vni: Vni,
    /// The UDP port of VXLAN on the underlay.
    pub port: u16,
    /// The node's underlay address (the VXLAN source, and its VTEP address
    /// for the other nodes).
    pub underlay: IpAddr,
    /// The VXLAN device's MAC address, which the other nodes program.
    pub vtep_mac: MacAddr,
    /// A fixed overlay MTU instead of the derived one.
    pub mtu: Option<u32>,
    /// The hairpin mode given to the bridge ports that
    /// [`NodeDatapath::reconcile`] attaches again to a bridge it had to
    /// create again (the plugin's `hairpinMode`).
    pub hairpin: bool,
    /// The bridge's MAC address, set explicitly so that it stays the same
    /// as pods come and go and when the bridge is rebuilt: pods cache it
    /// for their gateway. Default: [`NodeConfig::bridge_mac_of`] the VTEP
    /// MAC.
    pub bridge_mac: MacAddr,
}

impl NodeConfig {
    /// A configuration with the IANA port and a derived MTU.
    pub fn new(
        bridge: impl Into<String>,
        vxlan: impl Into<String>,
        vni: Vni,
        underlay: IpAddr,
        vtep_mac: MacAddr,
    ) -> Self {
        NodeConfig {
            bridge: bridge.into(),
            vxlan: vxlan.into(),
            vni,
            port: VXLAN_PORT,
            underlay,
            vtep_mac,
            mtu: None,
            hairpin: false,
            bridge_mac: Self::bridge_mac_of(vtep_mac),
        }
    }

    /// Give re-attached bridge ports this hairpin mode (see
    /// [`NodeConfig::hairpin`]).
    pub fn hairpin(mut self, on: bool) -> Self {
        self.hairpin = on;
        self
    }

    /// The default bridge MAC for a VTEP MAC: the same octets, locally
    /// administered and unicast, with bit 2 of the first octet flipped so it
    /// differs from the VTEP's.
    ///
    /// ```
    /// use overlay_netlink::MacAddr;
    /// use overlay_netlink::node::NodeConfig;
    ///
    /// let vtep = MacAddr::new([0x02, 1, 2, 3, 4, 5]);
    /// let bridge = NodeConfig::bridge_mac_of(vtep);
    /// assert_eq!(bridge, MacAddr::new([0x06, 1, 2, 3, 4, 5]));
    /// assert!(bridge.is_unicast() && bridge.is_locally_administered());
    /// ```
    pub fn bridge_mac_of(vtep_mac: MacAddr) -> MacAddr {
        let mut o = vtep_mac.octets();
        o[0] = ((o[0] ^ 0x04) & !0x01) | 0x02;
        MacAddr::new(o)
    }

    /// Use `mac` for the bridge.
    pub fn bridge_mac(mut self, mac: MacAddr) -> Self {
        self.bridge_mac = mac;
        self
    }

    /// Use `port` for VXLAN.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Use a fixed overlay MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

/// The devices as [`NodeDatapath::ensure`] left them.
#[derive(Debug)]
struct Devices {
    bridge: Link,
    vxlan: Link,
    overlay: Overlay,
}

/// A node's datapath (see the [module docs](self)).
#[derive(Debug)]
pub struct NodeDatapath {
    handle: Handle,
    config: NodeConfig,
    devices: Option<Devices>,
    mtu: Option<u32>,
    gateways: Vec<IpNet>,
    recreated: u64,
    /// The bridge's ports as the last reconcile saw them (interface
    /// indexes): what a rebuilt bridge takes back.
    ports: Vec<u32>,
}

/// The underlay's MTU for `underlay` (an address of this node): the MTU of
/// the device that holds it, lowered by the route MTU of the kernel's route
/// from that device, if any.
///
/// ```no_run
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// let mtu = overlay_netlink::node::underlay_mtu(&handle, "192.0.2.1".parse().unwrap()).await?;
/// # Ok(()) }
/// ```
pub async fn underlay_mtu(handle: &Handle, underlay: IpAddr) -> Result<u32> {
    let family = IpFamily::of(underlay);
    let index = underlay_index(handle, underlay).await?;
    let link = handle.link().get(index).await?;
    let device_mtu = link.mtu.ok_or_else(|| Error::UnexpectedReply {
        operation: "find underlay",
        object: link.name.clone(),
        detail: "the link has no MTU",
    })?;
    // The smallest route MTU of a main-table route out of the device.
    let routes = handle.route().list(family).await?;
    let route_mtu = routes
        .iter()
        .filter(|r| r.table == TABLE_MAIN && r.dev == Some(index))
        .filter_map(|r| r.mtu)
        .min();
    Ok(route_mtu.map_or(device_mtu, |r| r.min(device_mtu)))
}

/// Whether `e` says the VXLAN device is gone (`ENODEV` from the kernel,
/// for the whole request or for the changes of a reconcile).
fn device_gone(e: &Error) -> bool {
    match e {
        Error::Reconcile { report } => report
            .failures
            .iter()
            .any(|f| f.error.errno == libc::ENODEV),
        other => other.errno() == Some(libc::ENODEV),
    }
}

/// The index of the device that holds `underlay`.
async fn underlay_index(handle: &Handle, underlay: IpAddr) -> Result<u32> {
    let addresses = handle
        .address()
        .list(Some(IpFamily::of(underlay)), None)
        .await?;
    addresses
        .iter()
        .find(|a| a.addr.addr() == underlay)
        .map(|a| a.index)
        .ok_or_else(|| Error::InvalidInput {
            operation: "find underlay",
            object: underlay.to_string(),
            source: InvalidInput::AddressNotLocal { addr: underlay },
        })
}

impl NodeDatapath {
    /// A datapath that creates nothing until [`ensure`](Self::ensure).
    pub fn new(handle: Handle, config: NodeConfig) -> Self {
        NodeDatapath {
            handle,
            config,
            devices: None,
            mtu: None,
            gateways: Vec::new(),
            recreated: 0,
            ports: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The overlay MTU, once [`ensure`](Self::ensure) computed it.
    pub fn mtu(&self) -> Option<u32> {
        self.mtu
    }

    /// The VXLAN device's and the bridge's interface indexes, once ensured.
    pub fn indexes(&self) -> Option<(u32, u32)> {
        self.devices
            .as_ref()
            .map(|d| (d.vxlan.index, d.bridge.index))
    }

    /// How many times [`reconcile`](Self::reconcile) found the devices gone
    /// and created them again.
    pub fn recreated(&self) -> u64 {
        self.recreated
    }

    /// The overlay MTU for the configuration: the fixed one, else derived
    /// from the underlay.
    pub async fn derive_mtu(&self) -> Result<u32> {
        if let Some(mtu) = self.config.mtu {
            return Ok(mtu);
        }
        let underlay = underlay_mtu(&self.handle, self.config.underlay).await?;
        let family = match self.config.underlay {
            IpAddr::V4(_) => MtuFamily::V4,
            IpAddr::V6(_) => MtuFamily::V6,
        };
        overlay_mtu(underlay, family, family, &VxlanEncap::new(self.config.vni)).map_err(|e| {
            Error::InvalidInput {
                operation: "derive overlay MTU",
                object: self.config.vxlan.clone(),
                source: InvalidInput::Mtu(e),
            }
        })
    }

    /// Create (or adopt) the VXLAN device and the bridge, with the overlay
    /// MTU, both up, and forwarding on.
    pub async fn ensure(&mut self) -> Result<()> {
        let mtu = self.derive_mtu().await?;
        let link = self.handle.link();
        let vx = VxlanConfig::new(self.config.vxlan.clone(), self.config.vni)
            .local(self.config.underlay)
            .underlay(underlay_index(&self.handle, self.config.underlay).await?)
            .port(self.config.port)
            .learning(false)
            .mtu(mtu)
            .mac(self.config.vtep_mac);
        let (vxlan, _) = link.ensure_vxlan(&vx).await?;
        let bridge = link.ensure_bridge(&self.config.bridge).await?;
        // Set the bridge's MAC: a bridge whose address was never set takes
        // the lowest MAC among its ports, so it changes as pods come and
        // go, and pods that cached the old one for their gateway lose
        // their traffic (the bridge drops frames to it) until their ARP
        // entry is probed again, five seconds or more. An address set once
        // (even to its current value) is kept by the kernel; the same one
        // after a rebuild keeps the pods' caches valid.
        link.set_mac(bridge.index, self.config.bridge_mac).await?;
        if bridge.mtu != Some(mtu) {
            link.set_mtu(bridge.index, mtu).await?;
        }
        if !vxlan.up {
            link.set_up(vxlan.index).await?;
        }
        if !bridge.up {
            link.set_up(bridge.index).await?;
        }
        let forwarding = match self.config.underlay {
            IpAddr::V4(_) => "net.ipv4.ip_forward",
            IpAddr::V6(_) => "net.ipv6.conf.all.forwarding",
        };
        let redirects = format!("net/ipv4/conf/{}/send_redirects", self.config.bridge);
        let current;
        let netns = match self.handle.netns() {
            Some(ns) => ns,
            None => {
                current = crate::Netns::current()?;
                &current
            }
        };
        netns.sysctl_set(forwarding, "1")?;
        netns.sysctl_set(&redirects, "0")?;
        let overlay = Overlay::new(&self.handle, vxlan.index);
        self.devices = Some(Devices {
            bridge,
            vxlan,
            overlay,
        });
        self.mtu = Some(mtu);
        // A recreated bridge lost its gateway addresses.
        let gateways = std::mem::take(&mut self.gateways);
        self.set_gateways(&gateways).await
    }

    /// The gateway address of `block`: its first host, with the block's
    /// prefix length.
    ///
    /// ```
    /// use overlay_netlink::node::NodeDatapath;
    /// assert_eq!(
    ///     NodeDatapath::gateway_of(&"10.32.0.64/26".parse().unwrap()).to_string(),
    ///     "10.32.0.65/26"
    /// );
    /// ```
    pub fn gateway_of(block: &IpNet) -> IpNet {
        let first = match block.network() {
            IpAddr::V4(a) => IpAddr::V4(u32::from(a).saturating_add(1).into()),
            IpAddr::V6(a) => IpAddr::V6(u128::from(a).saturating_add(1).into()),
        };
        IpNet::new(first, block.prefix_len()).unwrap_or(*block)
    }

    /// Make the bridge hold exactly the gateway addresses `gateways` (each
    /// with its prefix length) of those this datapath manages: new ones are
    /// added, ones given before and not now removed; addresses it never
    /// added are left alone.
    pub async fn set_gateways(&mut self, gateways: &[IpNet]) -> Result<()> {
        let wanted: Vec<IpNet> = gateways.to_vec();
        let Some(devices) = &self.devices else {
            self.gateways = wanted;
            return Ok(());
        };
        let bridge = devices.bridge.index;
        let address = self.handle.address();
        for gw in self.gateways.iter().filter(|g| !wanted.contains(g)) {
            match address.delete(Address::new(bridge, *gw)).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        for gw in &wanted {
            address.replace(Address::new(bridge, *gw).nodad()).await?;
        }
        self.gateways = wanted;
        Ok(())
    }

    /// Make the VXLAN device hold exactly `peers`; when the devices are
    /// gone, create them again (with the gateways) first.
    ///
    /// The bridge is looked up every time: when it was deleted, it is
    /// created again with its gateway addresses, and the ports it had at
    /// the previous reconcile (the pods' host veths, which outlive their
    /// bridge) are attached to it again, with the configured hairpin mode.
    pub async fn reconcile(&mut self, peers: &[RemotePeer]) -> Result<ReconcileReport> {
        if self.devices.is_none() {
            self.ensure().await?;
        }
        if !self.bridge_ports_current().await? {
            self.rebuild().await?;
        }
        if let Some(devices) = &self.devices {
            match devices.overlay.reconcile(peers).await {
                Err(e) if device_gone(&e) => {}
                other => return other,
            }
        }
        // The device went away under us: start again.
        self.rebuild().await?;
        match &self.devices {
            Some(devices) => devices.overlay.reconcile(peers).await,
            None => Err(Error::UnexpectedReply {
                operation: "reconcile",
                object: self.config.vxlan.clone(),
                detail: "the devices were not created",
            }),
        }
    }

    /// The bridge ports as the last reconcile saw them (interface indexes).
    pub fn bridge_ports(&self) -> &[u32] {
        &self.ports
    }

    /// Record the bridge's ports; `false` when the bridge is gone.
    async fn bridge_ports_current(&mut self) -> Result<bool> {
        let Some(devices) = &self.devices else {
            return Ok(false);
        };
        let bridge = devices.bridge.index;
        let links = self.handle.link().list().await?;
        if !links.iter().any(|l| l.index == bridge) {
            return Ok(false);
        }
        self.ports = links
            .iter()
            .filter(|l| l.master == Some(bridge))
            .map(|l| l.index)
            .collect();
        Ok(true)
    }

    /// Create the devices again and give the new bridge the ports the old
    /// one had that still exist and have no other master.
    async fn rebuild(&mut self) -> Result<()> {
        self.devices = None;
        self.recreated += 1;
        self.ensure().await?;
        let Some(bridge) = self.devices.as_ref().map(|d| d.bridge.index) else {
            return Ok(());
        };
        let link = self.handle.link();
        let mut attached = Vec::new();
        for index in std::mem::take(&mut self.ports) {
            match link.find(index).await? {
                Some(port) if port.master.is_none() || port.master == Some(bridge) => {
                    if port.master.is_none() {
                        link.set_master(index, bridge).await?;
                    }
                    if self.config.hairpin {
                        link.set_hairpin(index, true).await?;
                    }
                    attached.push(index);
                }
                _ => {}
            }
        }
        self.ports = attached;
        Ok(())
    }

    /// Whether the devices are still there (a link lookup of each).
    pub async fn devices_present(&self) -> Result<bool> {
        let Some(devices) = &self.devices else {
            return Ok(false);
        };
        let link = self.handle.link();
        Ok(link.find(devices.vxlan.index).await?.is_some()
            && link.find(devices.bridge.index).await?.is_some())
    }
}
