//! How to create a link: the builders of bridges, VXLAN devices and veth
//! pairs.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

#[cfg(doc)]
use super::LinkOps;
use super::{Link, LinkKind};
use crate::error::{IpFamily, Result};
use crate::netns::Netns;
use crate::validate;
use overlay_core::{MacAddr, Vni};

/// The default VXLAN UDP port assigned by IANA (4789), the default of
/// [`VxlanConfig::port`].
///
/// The one definition is overlay-core's
/// [`overlay_core::wire::vxlan::DEFAULT_PORT`], the port its codec and
/// encapsulation use; this is the same constant under the name this crate
/// always had.
///
/// ```
/// assert_eq!(overlay_netlink::VXLAN_PORT, overlay_core::wire::vxlan::DEFAULT_PORT);
/// ```
pub const VXLAN_PORT: u16 = overlay_core::wire::vxlan::DEFAULT_PORT;

/// How to create a bridge.
///
/// A bridge created without a MAC address takes the lowest MAC among its
/// ports, so its address changes as ports come and go, and hosts that
/// cached it (pods, for their gateway) lose their traffic until their ARP
/// or neighbour entry is probed again. One created with [`mac`](Self::mac)
/// keeps that address whatever its ports, and it costs no request beyond
/// the creating one.
///
/// ```
/// use overlay_netlink::{BridgeConfig, MacAddr};
/// let cfg = BridgeConfig::new("cni0").mac(MacAddr::new([0x02, 0, 0, 0, 0, 1]));
/// assert_eq!(cfg.mac, Some(MacAddr::new([0x02, 0, 0, 0, 0, 1])));
/// assert_eq!(BridgeConfig::new("cni0").mac, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// MAC address (default: none, so the kernel's choice: the lowest MAC
    /// among the ports).
    pub mac: Option<MacAddr>,
}

impl BridgeConfig {
    /// A bridge named `name`, with the kernel's MAC.
    pub fn new(name: impl Into<String>) -> Self {
        BridgeConfig {
            name: name.into(),
            mac: None,
        }
    }

    /// Set the MAC address in the creating request.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    pub(super) fn message(&self) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(self.name.clone()));
        if let Some(mac) = self.mac {
            msg.attributes
                .push(LinkAttribute::Address(mac.octets().to_vec()));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        msg
    }
}

/// How to create a VXLAN device.
///
/// ```
/// use overlay_netlink::{Vni, VxlanConfig};
/// let cfg = VxlanConfig::new("vxlan.1", Vni::new(1).unwrap())
///     .local("192.0.2.10".parse().unwrap())
///     .underlay(2)
///     .mtu(1450);
/// assert_eq!(cfg.port, 4789);
/// assert!(!cfg.learning);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VxlanConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// VXLAN network identifier (24 bits, checked by [`Vni::new`]).
    pub vni: Vni,
    /// Local (source) address of encapsulated packets.
    pub local: Option<IpAddr>,
    /// Default remote (or multicast group); usually `None` with per-peer FDB entries.
    pub remote: Option<IpAddr>,
    /// Underlay device index.
    pub underlay: Option<u32>,
    /// UDP destination port (default 4789).
    pub port: u16,
    /// Source MAC learning (default off, as flannel).
    pub learning: bool,
    /// Group-based policy extension (default off).
    pub gbp: bool,
    /// MTU (default: the kernel's choice from the underlay).
    pub mtu: Option<u32>,
    /// MAC address (default: random).
    pub mac: Option<MacAddr>,
}

impl VxlanConfig {
    /// A VXLAN device named `name` with network identifier `vni`, port 4789,
    /// learning off.
    pub fn new(name: impl Into<String>, vni: Vni) -> Self {
        VxlanConfig {
            name: name.into(),
            vni,
            local: None,
            remote: None,
            underlay: None,
            port: VXLAN_PORT,
            learning: false,
            gbp: false,
            mtu: None,
            mac: None,
        }
    }

    /// Set the local address.
    pub fn local(mut self, addr: IpAddr) -> Self {
        self.local = Some(addr);
        self
    }

    /// Set the default remote (or multicast group).
    pub fn remote(mut self, addr: IpAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    /// Set the underlay device index.
    pub fn underlay(mut self, index: u32) -> Self {
        self.underlay = Some(index);
        self
    }

    /// Set the UDP destination port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Turn source MAC learning on or off.
    pub fn learning(mut self, on: bool) -> Self {
        self.learning = on;
        self
    }

    /// Turn the group-based policy extension on or off.
    pub fn gbp(mut self, on: bool) -> Self {
        self.gbp = on;
        self
    }

    /// Set the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Set the MAC address.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        const OP: &str = "create vxlan";
        validate::ifname(OP, &self.name)?;
        if let (Some(local), Some(remote)) = (self.local, self.remote) {
            validate::family(OP, &self.name, "local address", local, IpFamily::of(remote))?;
        }
        Ok(())
    }

    /// Whether an existing device can be kept for this configuration (MTU and
    /// MAC are adjusted in place; everything else needs a new device).
    pub fn is_compatible(&self, link: &Link) -> bool {
        let Some(info) = link.vxlan.as_ref() else {
            return false;
        };
        link.kind == Some(LinkKind::Vxlan)
            && info.vni == self.vni
            && info.local == self.local
            && info.remote == self.remote
            && (self.underlay.is_none() || info.underlay == self.underlay)
            && info.port == self.port
            && info.learning == self.learning
            && info.gbp == self.gbp
    }

    pub(super) fn message(&self) -> LinkMessage {
        let mut data = vec![InfoVxlan::Id(self.vni.get())];
        match self.local {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
            None => {}
        }
        match self.remote {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Group(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Group6(a)),
            None => {}
        }
        if let Some(l) = self.underlay {
            data.push(InfoVxlan::Link(l));
        }
        data.push(InfoVxlan::Port(self.port));
        data.push(InfoVxlan::Learning(self.learning));
        if self.gbp {
            data.push(InfoVxlan::Gbp);
        }
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(self.name.clone()));
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = self.mac {
            msg.attributes
                .push(LinkAttribute::Address(mac.octets().to_vec()));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]));
        msg
    }
}

/// How to create a veth pair.
///
/// ```no_run
/// use overlay_netlink::{Netns, VethConfig};
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// let pod = Netns::open("pod1")?;
/// // Host end "veth1234" here, container end "eth0" created directly in pod1.
/// let host_end = handle
///     .link()
///     .add_veth(&VethConfig::new("veth1234", "eth0").peer_netns(&pod).mtu(1450))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VethConfig {
    /// Name of the end created in the handle's namespace.
    pub name: String,
    /// Name of the peer end.
    pub peer_name: String,
    /// Namespace to create the peer end in (default: the handle's namespace).
    pub peer_netns: Option<Netns>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// MAC address of this end.
    pub mac: Option<MacAddr>,
    /// MAC address of the peer end.
    pub peer_mac: Option<MacAddr>,
    /// Bridge (or other master) to attach this end to at creation.
    pub master: Option<u32>,
    /// Bring this end up at creation.
    pub up: bool,
    /// Number of transmit and receive queues of both ends (default: the
    /// kernel's, one per possible CPU).
    pub queues: Option<u32>,
}

impl VethConfig {
    /// A veth pair `name` <-> `peer_name`, both in the handle's namespace.
    pub fn new(name: impl Into<String>, peer_name: impl Into<String>) -> Self {
        VethConfig {
            name: name.into(),
            peer_name: peer_name.into(),
            peer_netns: None,
            mtu: None,
            mac: None,
            peer_mac: None,
            master: None,
            up: false,
            queues: None,
        }
    }

    /// Create both ends with `n` transmit and `n` receive queues
    /// (`IFLA_NUM_TX_QUEUES`/`IFLA_NUM_RX_QUEUES`, `ip link add ...
    /// numtxqueues n numrxqueues n`).
    ///
    /// By default the kernel gives a veth one queue per possible CPU and
    /// then cuts the number in use back to one, which costs two expedited
    /// RCU grace periods per pair; a pod's veth that never uses more than
    /// one queue (the usual case: no XDP, no `ethtool -L`) is created
    /// faster with `queues(1)`. The numbers in use can never be raised
    /// above `n` later.
    ///
    /// ```
    /// let cfg = overlay_netlink::VethConfig::new("veth1", "eth0").queues(1);
    /// assert_eq!(cfg.queues, Some(1));
    /// ```
    pub fn queues(mut self, n: u32) -> Self {
        self.queues = Some(n);
        self
    }

    /// Attach this end to master `index` (a bridge) in the creating request,
    /// saving the separate [`LinkOps::set_master`] round trip.
    ///
    /// ```
    /// let cfg = overlay_netlink::VethConfig::new("veth1", "eth0").master(4).up();
    /// assert_eq!((cfg.master, cfg.up), (Some(4), true));
    /// ```
    pub fn master(mut self, index: u32) -> Self {
        self.master = Some(index);
        self
    }

    /// Bring this end up in the creating request, saving a
    /// [`LinkOps::set_up`] round trip. The peer end cannot be: the kernel
    /// configures it before the two ends are joined, and a veth without its
    /// peer refuses to go up (`ENOTCONN`).
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }

    /// Create the peer end directly in `netns`.
    pub fn peer_netns(mut self, netns: &Netns) -> Self {
        self.peer_netns = Some(netns.clone());
        self
    }

    /// Set the MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Set the MAC address of this end.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Set the MAC address of the peer end.
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.peer_mac = Some(mac);
        self
    }

    pub(super) fn message(&self) -> LinkMessage {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(self.peer_name.clone()));
        if let Some(ns) = &self.peer_netns {
            peer.attributes
                .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        }
        if let Some(m) = self.mtu {
            peer.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = self.peer_mac {
            peer.attributes
                .push(LinkAttribute::Address(mac.octets().to_vec()));
        }
        let mut msg = LinkMessage::default();
        if let Some(n) = self.queues {
            for m in [&mut peer, &mut msg] {
                m.attributes.push(LinkAttribute::NumTxQueues(n));
                m.attributes.push(LinkAttribute::NumRxQueues(n));
            }
        }
        msg.attributes
            .push(LinkAttribute::IfName(self.name.clone()));
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = self.mac {
            msg.attributes
                .push(LinkAttribute::Address(mac.octets().to_vec()));
        }
        if let Some(master) = self.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        if self.up {
            // Applied when the kernel configures the new device
            // (rtnl_configure_link), after the peer is joined.
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        msg
    }
}
