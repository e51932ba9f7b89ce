//! Links: look-up, listing, configuration, creation (bridge, veth, VXLAN,
//! dummy) and deletion.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

use crate::error::{Error, IpFamily, Result};
use crate::handle::Handle;
use crate::netns::Netns;
use crate::validate;
use overlay_core::{MacAddr, Vni};

/// Names a link: by index, or by name (resolved by the kernel).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkId {
    /// The interface index.
    Index(u32),
    /// The interface name.
    Name(String),
}

impl From<u32> for LinkId {
    fn from(index: u32) -> Self {
        LinkId::Index(index)
    }
}

impl From<&str> for LinkId {
    fn from(name: &str) -> Self {
        LinkId::Name(name.to_string())
    }
}

impl From<String> for LinkId {
    fn from(name: String) -> Self {
        LinkId::Name(name)
    }
}

impl From<&String> for LinkId {
    fn from(name: &String) -> Self {
        LinkId::Name(name.clone())
    }
}

impl From<&Link> for LinkId {
    fn from(link: &Link) -> Self {
        LinkId::Index(link.index)
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkId::Index(i) => write!(f, "link index {i}"),
            LinkId::Name(n) => f.write_str(n),
        }
    }
}

/// The driver of a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge,
    /// One end of a veth pair.
    Veth,
    /// A VXLAN device.
    Vxlan,
    /// A dummy device.
    Dummy,
    /// Any other driver, by its `IFLA_INFO_KIND` name.
    Other(String),
}

impl LinkKind {
    fn from_info(kind: &InfoKind) -> LinkKind {
        match kind {
            InfoKind::Bridge => LinkKind::Bridge,
            InfoKind::Veth => LinkKind::Veth,
            InfoKind::Vxlan => LinkKind::Vxlan,
            InfoKind::Dummy => LinkKind::Dummy,
            other => LinkKind::Other(other.to_string()),
        }
    }
}

/// VXLAN parameters of an existing device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VxlanInfo {
    /// The VXLAN network identifier.
    pub vni: Vni,
    /// The local (source) address.
    pub local: Option<IpAddr>,
    /// The default remote or multicast group.
    pub remote: Option<IpAddr>,
    /// The underlay device index.
    pub underlay: Option<u32>,
    /// The UDP destination port.
    pub port: u16,
    /// Whether source MAC learning is on.
    pub learning: bool,
    /// Whether the group-based policy extension is on.
    pub gbp: bool,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Driver, when the kernel reports one (`None` for loopback, for example).
    pub kind: Option<LinkKind>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address, when it is an Ethernet address.
    pub mac: Option<MacAddr>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// Index of the master device (a bridge), if enslaved.
    pub master: Option<u32>,
    /// `IFLA_LINK`: the parent, or a veth's peer index (possibly in another
    /// namespace).
    pub parent: Option<u32>,
    /// VXLAN parameters, for VXLAN devices.
    pub vxlan: Option<VxlanInfo>,
}

impl Link {
    pub(crate) fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: None,
            mac: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
            master: None,
            parent: None,
            vxlan: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::Address(a) => link.mac = crate::mac::exact(a),
                LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
                LinkAttribute::Link(p) if *p != 0 => link.parent = Some(*p),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(LinkKind::from_info(k)),
                            LinkInfo::Data(InfoData::Vxlan(v)) => link.vxlan = Some(vxlan_info(v)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn vxlan_info(attrs: &[InfoVxlan]) -> VxlanInfo {
    let mut info = VxlanInfo {
        vni: Vni::default(),
        local: None,
        remote: None,
        underlay: None,
        port: 0,
        learning: false,
        gbp: false,
    };
    for a in attrs {
        match a {
            // IFLA_VXLAN_ID: the kernel holds 24 bits.
            InfoVxlan::Id(v) => info.vni = Vni::from_u24_masked(*v),
            InfoVxlan::Local(a) if !a.is_unspecified() => info.local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) if !a.is_unspecified() => info.local = Some(IpAddr::V6(*a)),
            InfoVxlan::Group(a) if !a.is_unspecified() => info.remote = Some(IpAddr::V4(*a)),
            InfoVxlan::Group6(a) if !a.is_unspecified() => info.remote = Some(IpAddr::V6(*a)),
            InfoVxlan::Link(l) if *l != 0 => info.underlay = Some(*l),
            InfoVxlan::Port(p) => info.port = *p,
            InfoVxlan::Learning(l) => info.learning = *l,
            InfoVxlan::Gbp => info.gbp = true,
            _ => {}
        }
    }
    info
}

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

    fn validate(&self) -> Result<()> {
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

    fn message(&self) -> LinkMessage {
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
        }
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

    fn message(&self) -> LinkMessage {
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

/// What [`LinkOps::ensure_vxlan`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ensured {
    /// No device had the name; it was created.
    Created,
    /// A compatible device existed and was left alone.
    Unchanged,
    /// A compatible device existed; its MTU or MAC was changed in place.
    Updated,
    /// An incompatible device (or one of another kind) had the name; it was
    /// deleted and created anew.
    Recreated,
}

/// Link operations; see [`Handle::link`].
#[derive(Debug, Clone, Copy)]
pub struct LinkOps<'h> {
    handle: &'h Handle,
}

/// A link message addressed to `id` (by index, or by name with index 0).
fn addressed(id: &LinkId) -> LinkMessage {
    let mut msg = LinkMessage::default();
    match id {
        LinkId::Index(i) => msg.header.index = *i,
        LinkId::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.clone())),
    }
    msg
}

fn check_id(operation: &'static str, id: &LinkId) -> Result<()> {
    match id {
        LinkId::Name(n) => validate::ifname(operation, n),
        LinkId::Index(_) => Ok(()),
    }
}

impl<'h> LinkOps<'h> {
    pub(crate) fn new(handle: &'h Handle) -> Self {
        LinkOps { handle }
    }

    /// Get one link by index or name. A missing link is an error whose
    /// [`Error::is_not_found`] is true.
    pub async fn get(&self, id: impl Into<LinkId>) -> Result<Link> {
        const OP: &str = "get link";
        let id = id.into();
        check_id(OP, &id)?;
        let object = id.to_string();
        let replies = self
            .handle
            .request(OP, &object, RouteNetlinkMessage::GetLink(addressed(&id)), 0)
            .await?;
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .ok_or(Error::UnexpectedReply {
                operation: OP,
                object,
                detail: "no link in the reply",
            })
    }

    /// Get one link, or `None` when it does not exist.
    pub async fn find(&self, id: impl Into<LinkId>) -> Result<Option<Link>> {
        match self.get(id).await {
            Ok(link) => Ok(Some(link)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All links of the namespace.
    pub async fn list(&self) -> Result<Vec<Link>> {
        let replies = self
            .handle
            .dump(
                "list links",
                "",
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    async fn set(&self, operation: &'static str, id: LinkId, msg: LinkMessage) -> Result<()> {
        self.handle
            .request(
                operation,
                &id.to_string(),
                RouteNetlinkMessage::SetLink(msg),
                0,
            )
            .await
            .map(drop)
    }

    async fn set_flags(&self, operation: &'static str, id: LinkId, up: bool) -> Result<()> {
        check_id(operation, &id)?;
        let mut msg = addressed(&id);
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        self.set(operation, id, msg).await
    }

    /// Bring a link up.
    pub async fn set_up(&self, id: impl Into<LinkId>) -> Result<()> {
        self.set_flags("set link up", id.into(), true).await
    }

    /// Bring a link down.
    pub async fn set_down(&self, id: impl Into<LinkId>) -> Result<()> {
        self.set_flags("set link down", id.into(), false).await
    }

    /// Set a link's MTU.
    pub async fn set_mtu(&self, id: impl Into<LinkId>, mtu: u32) -> Result<()> {
        const OP: &str = "set link mtu";
        let id = id.into();
        check_id(OP, &id)?;
        let mut msg = addressed(&id);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set(OP, id, msg).await
    }

    /// Set a link's MAC address.
    pub async fn set_mac(&self, id: impl Into<LinkId>, mac: MacAddr) -> Result<()> {
        const OP: &str = "set link mac";
        let id = id.into();
        check_id(OP, &id)?;
        let mut msg = addressed(&id);
        msg.attributes
            .push(LinkAttribute::Address(mac.octets().to_vec()));
        self.set(OP, id, msg).await
    }

    /// Enslave a link to a master device (a bridge), by the master's index.
    pub async fn set_master(&self, id: impl Into<LinkId>, master: u32) -> Result<()> {
        const OP: &str = "set link master";
        let id = id.into();
        check_id(OP, &id)?;
        let mut msg = addressed(&id);
        msg.attributes.push(LinkAttribute::Controller(master));
        self.set(OP, id, msg).await
    }

    /// Release a link from its master.
    pub async fn set_nomaster(&self, id: impl Into<LinkId>) -> Result<()> {
        const OP: &str = "set link nomaster";
        let id = id.into();
        check_id(OP, &id)?;
        let mut msg = addressed(&id);
        msg.attributes.push(LinkAttribute::Controller(0));
        self.set(OP, id, msg).await
    }

    /// Turn hairpin mode of a bridge port on or off (traffic may leave the
    /// port it came in on, so a pod can reach itself through a service IP).
    pub async fn set_hairpin(&self, id: impl Into<LinkId>, on: bool) -> Result<()> {
        const OP: &str = "set bridge port hairpin";
        let id = id.into();
        check_id(OP, &id)?;
        let mut msg = addressed(&id);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        self.handle
            .request(OP, &id.to_string(), RouteNetlinkMessage::NewLink(msg), 0)
            .await
            .map(drop)
    }

    /// Rename a link (it must be down).
    pub async fn rename(&self, id: impl Into<LinkId>, new_name: &str) -> Result<()> {
        const OP: &str = "rename link";
        let id = id.into();
        check_id(OP, &id)?;
        validate::ifname(OP, new_name)?;
        let index = match &id {
            LinkId::Index(i) => *i,
            LinkId::Name(_) => self.get(id.clone()).await?.index,
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfName(new_name.to_string()));
        self.set(OP, id, msg).await
    }

    /// Move a link into another namespace (it keeps its name there).
    pub async fn move_to_netns(&self, id: impl Into<LinkId>, netns: &Netns) -> Result<()> {
        const OP: &str = "move link to namespace";
        let id = id.into();
        check_id(OP, &id)?;
        let mut msg = addressed(&id);
        msg.attributes
            .push(LinkAttribute::NetNsFd(netns.as_fd().as_raw_fd()));
        self.set(OP, id, msg).await
    }

    /// Delete a link (for a veth, both ends go).
    pub async fn delete(&self, id: impl Into<LinkId>) -> Result<()> {
        const OP: &str = "delete link";
        let id = id.into();
        check_id(OP, &id)?;
        self.handle
            .request(
                OP,
                &id.to_string(),
                RouteNetlinkMessage::DelLink(addressed(&id)),
                0,
            )
            .await
            .map(drop)
    }

    /// Delete a link and return as soon as the kernel has announced it
    /// deleted, without waiting for the kernel's deferred teardown.
    ///
    /// Deleting a link (a veth pair most of all) blocks the deleting task in
    /// the kernel until the device's deferred teardown has run (an RCU
    /// barrier and the draining of device references: 10 to 25 ms on a test
    /// machine), although the link is unlisted, its name and addresses free,
    /// and its deletion announced on `RTMGRP_LINK` within the first
    /// millisecond. This call subscribes to link events, forks a helper
    /// process that sends the `RTM_DELLINK` request on its own socket and
    /// carries the wait in the kernel, and returns when the announcement
    /// arrives. When the announcement cannot be seen (the event socket
    /// overflowed), it waits for the kernel's answer, which the helper
    /// passes back. A short-lived process (a CNI plugin) can so exit while
    /// the kernel finishes; the helper is detached (its own session, stdio
    /// on `/dev/null`, reparented at once, so nobody has to reap it).
    ///
    /// Returns `false` when the link did not exist (or was deleted by
    /// someone else in the meantime). The handle needs a real socket (not
    /// [`crate::FakeTransport`]). The helper runs only async-signal-safe
    /// code, so this may be called from a multi-threaded process.
    ///
    /// ```no_run
    /// # async fn f() -> overlay_netlink::Result<()> {
    /// let h = overlay_netlink::Handle::new()?;
    /// if h.link().delete_detached("veth0a1b2c3d").await? {
    ///     // gone from the link list; the kernel may still be tearing it down
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn delete_detached(&self, id: impl Into<LinkId>) -> Result<bool> {
        const OP: &str = "delete link (detached)";
        let id = id.into();
        check_id(OP, &id)?;
        // Subscribe first, so that the announcement cannot be missed.
        let mut events = self.handle.link_events().await?;
        let Some(link) = self.find(id).await? else {
            return Ok(false);
        };
        let object = link.name.clone();
        use netlink_packet_core::{
            NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
        };
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(addressed(&LinkId::Index(
                link.index,
            )))),
        );
        message.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        message.header.sequence_number = 1;
        message.finalize();
        let mut request = vec![0; message.buffer_len()];
        message.serialize(&mut request);
        let socket = crate::events::subscribe(self.handle.netns(), 0, OP)?;
        // The helper blocks in send and recv.
        socket
            .set_non_blocking(false)
            .map_err(|source| detached_io_error(OP, &object, "fcntl", source))?;
        let mut pair = [0; 2];
        // SAFETY: socketpair(2) writes two descriptors into `pair`.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        } != 0
        {
            let source = std::io::Error::last_os_error();
            return Err(detached_io_error(OP, &object, "socketpair", source));
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (ours, theirs) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::os::fd::OwnedFd::from_raw_fd(pair[0]),
                std::os::fd::OwnedFd::from_raw_fd(pair[1]),
            )
        };
        // SAFETY: the child runs only async-signal-safe functions on memory
        // allocated before the fork (`detached_helper`) and never returns.
        let child = match unsafe { libc::fork() } {
            -1 => {
                let source = std::io::Error::last_os_error();
                return Err(detached_io_error(OP, &object, "fork", source));
            }
            0 => detached_helper(socket.as_raw_fd(), theirs.as_raw_fd(), &request),
            child => child,
        };
        drop((socket, theirs));
        let mut status = 0;
        // SAFETY: waitpid on our own child (which forks the helper and
        // exits at once), with a valid status pointer.
        unsafe { libc::waitpid(child, &mut status, 0) };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Transport {
                operation: OP,
                object,
                source: crate::error::TransportError::NoRuntime,
            });
        }
        // `AsyncFd::new` is deprecated from tokio 1.53 in favour of the
        // unsafe `register`, which tokio 1.47 (the workspace's minimum)
        // lacks. Sound: `OwnedFd` closes its fd only when dropped, after the
        // `AsyncFd` deregistered it.
        #[allow(deprecated)]
        let answer = tokio::io::unix::AsyncFd::new(ours)
            .map_err(|source| detached_io_error(OP, &object, "register", source))?;
        let outcome = |bytes: std::io::Result<Vec<u8>>| -> Result<bool> {
            let unexpected = |detail| Error::UnexpectedReply {
                operation: OP,
                object: link.name.clone(),
                detail,
            };
            let bytes =
                bytes.map_err(|source| detached_io_error(OP, &link.name, "recv", source))?;
            if bytes.is_empty() {
                return Err(unexpected(
                    "the deletion helper exited without the kernel's answer",
                ));
            }
            use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::Error(e),
                    ..
                }) => match e.code {
                    None => Ok(true),
                    Some(code) if -code.get() == libc::ENODEV => Ok(false),
                    Some(code) => Err(Error::Kernel {
                        operation: OP,
                        object: link.name.clone(),
                        source: crate::error::KernelError::new(-code.get()),
                    }),
                },
                Ok(_) => Err(unexpected("no acknowledgement for RTM_DELLINK")),
                Err(_) => Err(unexpected("malformed answer to RTM_DELLINK")),
            }
        };
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Ok(crate::LinkEvent::Deleted(gone)) if gone.index == link.index => return Ok(true),
                    Ok(_) => {}
                    // Overflowed: the kernel's answer tells.
                    Err(_) => return outcome(recv_answer(&answer).await),
                },
                bytes = recv_answer(&answer) => return outcome(bytes),
            }
        }
    }
}

fn detached_io_error(
    operation: &'static str,
    object: &str,
    step: &'static str,
    source: std::io::Error,
) -> Error {
    Error::Transport {
        operation,
        object: object.to_owned(),
        source: crate::error::TransportError::Io {
            operation: step,
            source,
        },
    }
}

/// The helper process of [`LinkOps::delete_detached`]: fork again (so the
/// helper is reparented and nobody has to reap it), detach from the
/// caller's output and session, send `request` on `netlink`, and pass the
/// kernel's answer to `report`. Only async-signal-safe functions, on memory
/// allocated before the fork.
fn detached_helper(netlink: libc::c_int, report: libc::c_int, request: &[u8]) -> ! {
    // SAFETY: fork, open, dup2, setsid, send, recv and _exit are
    // async-signal-safe; `request` was allocated before the fork; the
    // buffer below is on this stack.
    unsafe {
        // In the first child: exit at once, the grandchild does the work
        // (or this child, when the second fork fails).
        if libc::fork() > 0 {
            libc::_exit(0);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
        }
        libc::setsid();
        let mut answer = [0u8; 4096];
        if libc::send(netlink, request.as_ptr().cast(), request.len(), 0) >= 0 {
            let len = libc::recv(netlink, answer.as_mut_ptr().cast(), answer.len(), 0);
            if len > 0 {
                libc::send(
                    report,
                    answer.as_ptr().cast(),
                    len as usize,
                    libc::MSG_NOSIGNAL,
                );
            }
        }
        libc::_exit(0)
    }
}

/// One datagram from the helper of [`LinkOps::delete_detached`]; empty
/// when it exited without sending.
async fn recv_answer(
    fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut guard = fd.readable().await?;
        // SAFETY: recv(2) into `buf`, at most its length.
        let len = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(len) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(e);
                }
                guard.clear_ready();
            }
        }
    }
}

#[cfg(test)]
mod delete_detached_tests {
    // Test helpers: a failed unwrap is a failing test.
    #![allow(clippy::unwrap_used)]
    use crate::{Handle, Netns, VethConfig};
    use overlay_testsupport::{TestNetns, privileged_test};

    #[tokio::test]
    async fn delete_detached_returns_once_the_veth_pair_is_gone_and_then_reports_absent() {
        privileged_test!();
        let t = TestNetns::new().unwrap();
        let h: Handle = Netns::open_path(t.path()).unwrap().handle().unwrap();
        h.link()
            .add_veth(&VethConfig::new("ovt-dd0", "ovt-dd1"))
            .await
            .unwrap();
        assert!(h.link().delete_detached("ovt-dd0").await.unwrap());
        // Both ends are unlisted when it returns.
        assert!(h.link().find("ovt-dd0").await.unwrap().is_none());
        assert!(h.link().find("ovt-dd1").await.unwrap().is_none());
        assert!(!h.link().delete_detached("ovt-dd0").await.unwrap());
        // The name is free again at once.
        h.link()
            .add_veth(&VethConfig::new("ovt-dd0", "ovt-dd1"))
            .await
            .unwrap();
        assert!(h.link().delete_detached("ovt-dd1").await.unwrap());
    }

    #[tokio::test]
    async fn delete_detached_refuses_an_invalid_name_before_any_request() {
        let h = Handle::with_transport(std::sync::Arc::new(crate::FakeTransport::new()));
        let err = h.link().delete_detached("a/b").await.unwrap_err();
        assert!(matches!(err, crate::Error::InvalidInput { .. }), "{err:?}");
    }
}

impl<'h> LinkOps<'h> {
    /// Create a link from `msg` (`NLM_F_CREATE | NLM_F_EXCL`), then return it
    /// as the kernel reports it. If the look-up fails, the new link is deleted.
    async fn create(&self, operation: &'static str, name: &str, msg: LinkMessage) -> Result<Link> {
        self.handle
            .request(
                operation,
                name,
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await?;
        match self.get(name).await {
            Ok(link) => Ok(link),
            Err(e) => {
                let _ = self.delete(name).await;
                Err(e)
            }
        }
    }

    fn kind_message(name: &str, kind: InfoKind) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        msg
    }

    /// Create a bridge. Fails with `AlreadyExists` if the name is taken.
    pub async fn add_bridge(&self, name: &str) -> Result<Link> {
        const OP: &str = "create bridge";
        validate::ifname(OP, name)?;
        self.create(OP, name, Self::kind_message(name, InfoKind::Bridge))
            .await
    }

    /// Return the bridge `name`, creating it if it does not exist. A link of
    /// another kind with that name is an `AlreadyExists` error.
    pub async fn ensure_bridge(&self, name: &str) -> Result<Link> {
        match self.add_bridge(name).await {
            Err(e) if e.is_already_exists() => {
                let link = self.get(name).await?;
                if link.kind == Some(LinkKind::Bridge) {
                    Ok(link)
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Create a dummy device (needs the `dummy` kernel module).
    pub async fn add_dummy(&self, name: &str) -> Result<Link> {
        const OP: &str = "create dummy";
        validate::ifname(OP, name)?;
        self.create(OP, name, Self::kind_message(name, InfoKind::Dummy))
            .await
    }

    /// Create a veth pair; the peer end is created directly in
    /// [`VethConfig::peer_netns`] when set (one atomic request: nothing is
    /// left behind if it fails). Returns the end in this namespace.
    pub async fn add_veth(&self, config: &VethConfig) -> Result<Link> {
        const OP: &str = "create veth";
        validate::ifname(OP, &config.name)?;
        validate::ifname(OP, &config.peer_name)?;
        self.create(OP, &config.name, config.message()).await
    }

    /// Create a VXLAN device (one atomic request, MTU and MAC included).
    pub async fn add_vxlan(&self, config: &VxlanConfig) -> Result<Link> {
        config.validate()?;
        self.create("create vxlan", &config.name, config.message())
            .await
    }

    /// Make sure a VXLAN device as described exists: create it if missing,
    /// leave a compatible one alone (adjusting MTU and MAC in place), and
    /// delete and recreate an incompatible one (see
    /// [`VxlanConfig::is_compatible`]).
    pub async fn ensure_vxlan(&self, config: &VxlanConfig) -> Result<(Link, Ensured)> {
        config.validate()?;
        let Some(existing) = self.find(config.name.as_str()).await? else {
            return Ok((self.add_vxlan(config).await?, Ensured::Created));
        };
        if !config.is_compatible(&existing) {
            self.delete(existing.index).await?;
            return Ok((self.add_vxlan(config).await?, Ensured::Recreated));
        }
        let mut outcome = Ensured::Unchanged;
        if let Some(mtu) = config.mtu.filter(|m| existing.mtu != Some(*m)) {
            self.set_mtu(existing.index, mtu).await?;
            outcome = Ensured::Updated;
        }
        if let Some(mac) = config.mac.filter(|m| existing.mac != Some(*m)) {
            self.set_mac(existing.index, mac).await?;
            outcome = Ensured::Updated;
        }
        let link = if outcome == Ensured::Unchanged {
            existing
        } else {
            self.get(existing.index).await?
        };
        Ok((link, outcome))
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_ACK;
    use std::sync::Arc;

    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};

    use super::*;
    use crate::error::InvalidInput;
    use crate::transport::{FakeTransport, Request};

    fn new_link_reply(index: u32, name: &str, kind: InfoKind) -> RouteNetlinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        RouteNetlinkMessage::NewLink(msg)
    }

    /// A fake kernel that acknowledges creations and answers every look-up
    /// with link 7 of the given kind.
    fn fake(kind: InfoKind) -> Arc<FakeTransport> {
        Arc::new(FakeTransport::with_responder(move |r: &Request| {
            match &r.message {
                RouteNetlinkMessage::GetLink(m) => {
                    let name = m
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            LinkAttribute::IfName(n) => Some(n.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    Ok(vec![new_link_reply(7, &name, kind.clone())])
                }
                _ => Ok(Vec::new()),
            }
        }))
    }

    fn created(fake: &FakeTransport) -> LinkMessage {
        match &fake.requests()[0] {
            Request {
                flags,
                message: RouteNetlinkMessage::NewLink(m),
            } => {
                assert_eq!(*flags, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
                m.clone()
            }
            other => panic!("expected RTM_NEWLINK, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn add_vxlan_sends_one_create_excl_with_all_parameters() {
        let fake = fake(InfoKind::Vxlan);
        let handle = Handle::with_transport(fake.clone());
        let cfg = VxlanConfig::new("vx0", Vni::new(42).unwrap())
            .local("192.0.2.1".parse().unwrap())
            .underlay(3)
            .port(8472)
            .gbp(true)
            .mtu(1450)
            .mac("02:00:00:00:00:01".parse().unwrap());
        let link = handle.link().add_vxlan(&cfg).await.unwrap();
        assert_eq!((link.index, link.name.as_str()), (7, "vx0"));
        let msg = created(&fake);
        assert!(
            msg.attributes
                .contains(&LinkAttribute::IfName("vx0".into()))
        );
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1450)));
        assert!(
            msg.attributes
                .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]))
        );
        let data = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(data[0], LinkInfo::Kind(InfoKind::Vxlan));
        let LinkInfo::Data(InfoData::Vxlan(v)) = &data[1] else {
            panic!("{data:?}")
        };
        for expected in [
            InfoVxlan::Id(42),
            InfoVxlan::Local("192.0.2.1".parse().unwrap()),
            InfoVxlan::Link(3),
            InfoVxlan::Port(8472),
            InfoVxlan::Learning(false),
            InfoVxlan::Gbp,
        ] {
            assert!(v.contains(&expected), "{expected:?} missing in {v:?}");
        }
        // Then the look-up by name.
        assert!(matches!(
            fake.requests()[1].message,
            RouteNetlinkMessage::GetLink(_)
        ));
    }

    #[tokio::test]
    async fn bad_vxlan_input_is_rejected_before_any_request() {
        let fake = fake(InfoKind::Vxlan);
        let handle = Handle::with_transport(fake.clone());
        // A VNI over 24 bits cannot be built: `Vni::new` refuses it.
        assert!(Vni::new(1 << 24).is_err());
        let long = handle
            .link()
            .add_vxlan(&VxlanConfig::new("a-very-long-name", Vni::new(1).unwrap()))
            .await;
        assert!(matches!(
            long,
            Err(Error::InvalidInput {
                source: InvalidInput::NameTooLong { .. },
                ..
            })
        ));
        let mixed = VxlanConfig::new("vx0", Vni::new(1).unwrap())
            .local("192.0.2.1".parse().unwrap())
            .remote("2001:db8::1".parse().unwrap());
        assert!(matches!(
            handle.link().add_vxlan(&mixed).await,
            Err(Error::InvalidInput {
                source: InvalidInput::FamilyMismatch { .. },
                ..
            })
        ));
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn veth_peer_carries_name_and_namespace_fd() {
        let fake = fake(InfoKind::Veth);
        let handle = Handle::with_transport(fake.clone());
        let ns = Netns::current().unwrap();
        let cfg = VethConfig::new("veth0", "eth0").peer_netns(&ns).mtu(1400);
        handle.link().add_veth(&cfg).await.unwrap();
        let msg = created(&fake);
        let info = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
            panic!("{info:?}")
        };
        assert!(
            peer.attributes
                .contains(&LinkAttribute::IfName("eth0".into()))
        );
        assert!(
            peer.attributes
                .contains(&LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()))
        );
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(1400)));
    }

    #[tokio::test]
    async fn set_up_by_name_sends_setlink_with_up_flag_and_mask() {
        let fake = fake(InfoKind::Bridge);
        let handle = Handle::with_transport(fake.clone());
        handle.link().set_up("br0").await.unwrap();
        handle.link().set_down(5).await.unwrap();
        let reqs = fake.requests();
        let RouteNetlinkMessage::SetLink(up) = &reqs[0].message else {
            panic!()
        };
        assert_eq!(up.header.index, 0);
        assert_eq!(up.header.flags, LinkFlags::Up);
        assert_eq!(up.header.change_mask, LinkFlags::Up);
        assert!(up.attributes.contains(&LinkAttribute::IfName("br0".into())));
        let RouteNetlinkMessage::SetLink(down) = &reqs[1].message else {
            panic!()
        };
        assert_eq!(down.header.index, 5);
        assert!(down.header.flags.is_empty());
        assert_eq!(down.header.change_mask, LinkFlags::Up);
    }

    #[tokio::test]
    async fn dummy_creation_sends_kind_dummy() {
        let fake = fake(InfoKind::Dummy);
        let handle = Handle::with_transport(fake.clone());
        let link = handle.link().add_dummy("dum0").await.unwrap();
        assert_eq!(link.kind, Some(LinkKind::Dummy));
        let msg = created(&fake);
        assert!(
            msg.attributes
                .contains(&LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Dummy
                )]))
        );
    }

    #[tokio::test]
    async fn ensure_vxlan_recreates_a_device_of_another_kind() {
        let fake = fake(InfoKind::Bridge);
        let handle = Handle::with_transport(fake.clone());
        // The fake always reports a bridge, so the final look-up also sees a
        // bridge; what matters here is the sequence of requests.
        let (_, outcome) = handle
            .link()
            .ensure_vxlan(&VxlanConfig::new("vx0", Vni::new(1).unwrap()))
            .await
            .unwrap();
        assert_eq!(outcome, Ensured::Recreated);
        let kinds: Vec<&str> = fake
            .requests()
            .iter()
            .map(|r| match r.message {
                RouteNetlinkMessage::GetLink(_) => "get",
                RouteNetlinkMessage::DelLink(_) => "del",
                RouteNetlinkMessage::NewLink(_) => "new",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["get", "del", "new", "get"]);
    }
}
