//! Links: look-up, listing, configuration, creation (bridge, veth, VXLAN,
//! dummy) and deletion.

mod config;
mod detached;

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVxlan, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};

pub use config::{BridgeConfig, VXLAN_PORT, VethConfig, VxlanConfig};

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::netns::Netns;
use crate::overlay::dump_reader;
use crate::transport::raw_messages;
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

    /// The kind of the driver the kernel names `name` (`IFLA_INFO_KIND`).
    pub(crate) fn from_name(name: &str) -> LinkKind {
        match name {
            "bridge" => LinkKind::Bridge,
            "veth" => LinkKind::Veth,
            "vxlan" => LinkKind::Vxlan,
            "dummy" => LinkKind::Dummy,
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

impl VxlanInfo {
    /// Parameters before any attribute is read: VNI 0, no addresses, port
    /// 0, learning and GBP off.
    pub(crate) fn unset() -> VxlanInfo {
        VxlanInfo {
            vni: Vni::default(),
            local: None,
            remote: None,
            underlay: None,
            port: 0,
            learning: false,
            gbp: false,
        }
    }
}

fn vxlan_info(attrs: &[InfoVxlan]) -> VxlanInfo {
    let mut info = VxlanInfo::unset();
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
pub(crate) fn addressed(id: &LinkId) -> LinkMessage {
    let mut msg = LinkMessage::default();
    match id {
        LinkId::Index(i) => msg.header.index = *i,
        LinkId::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.clone())),
    }
    msg
}

/// An `RTM_GETLINK` for `id` ([`addressed`]) without the link's
/// statistics ([`without_stats`]).
fn lookup(id: &LinkId) -> LinkMessage {
    without_stats(addressed(id))
}

/// `msg` asking the kernel to leave the statistics out of its answer
/// (`IFLA_EXT_MASK` with `RTEXT_FILTER_SKIP_STATS`, Linux 4.20; older
/// kernels ignore the bit). [`Link`] carries no counters, and the two
/// statistics attributes are a fifth of a link message the kernel must
/// fill and this crate parse, on every look-up and for every link of a dump.
fn without_stats(mut msg: LinkMessage) -> LinkMessage {
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    msg
}

/// The links of a raw reply (its `RTM_NEWLINK` messages, read by the dump
/// reader).
fn links(raw: &[u8]) -> impl Iterator<Item = Link> + '_ {
    raw_messages(raw)
        .filter(|(kind, _)| *kind == dump_reader::RTM_NEWLINK)
        .filter_map(|(_, payload)| dump_reader::link(payload))
}

/// The link `name` as the kernel echoed its creation (the last
/// `RTM_NEWLINK` of that name in `raw`), if it did.
fn echoed(raw: &[u8], name: &str) -> Option<Link> {
    links(raw).filter(|link| link.name == name).last()
}

pub(crate) fn check_id(operation: &'static str, id: &LinkId) -> Result<()> {
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
        let raw = self
            .handle
            .request_raw(OP, &object, RouteNetlinkMessage::GetLink(lookup(&id)), 0)
            .await?;
        links(&raw).next().ok_or(Error::UnexpectedReply {
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
        let raw = self
            .handle
            .dump_raw(
                "list links",
                "",
                RouteNetlinkMessage::GetLink(without_stats(LinkMessage::default())),
            )
            .await?;
        Ok(links(&raw).collect())
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
}

impl<'h> LinkOps<'h> {
    /// Create a link from `msg` (`NLM_F_CREATE | NLM_F_EXCL`), then return it
    /// as the kernel reports it.
    ///
    /// The request asks for an echo (`NLM_F_ECHO`): since Linux 6.3 the
    /// kernel answers a creation with the new link's `RTM_NEWLINK` before
    /// the ACK, which saves a look-up (another RTNL round trip). The echo
    /// is built before the kernel enslaves the link (`IFLA_MASTER` is set
    /// last, and a failure there undoes the whole creation), so a requested
    /// master is taken from `msg`. Older kernels ignore the flag; then the
    /// link is looked up by name, and deleted again if that look-up fails.
    async fn create(&self, operation: &'static str, name: &str, msg: LinkMessage) -> Result<Link> {
        let master = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(m) if *m != 0 => Some(*m),
            _ => None,
        });
        let raw = self
            .handle
            .request_raw(
                operation,
                name,
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            )
            .await?;
        if let Some(mut link) = echoed(&raw, name) {
            link.master = link.master.or(master);
            return Ok(link);
        }
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
        self.add_bridge_with(&BridgeConfig::new(name)).await
    }

    /// Create a bridge as described (one request, MAC included). Fails with
    /// `AlreadyExists` if the name is taken.
    ///
    /// ```no_run
    /// use overlay_netlink::{BridgeConfig, MacAddr};
    /// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
    /// let mac = MacAddr::new([0x02, 0, 0, 0, 0, 1]);
    /// let br = handle.link().add_bridge_with(&BridgeConfig::new("cni0").mac(mac)).await?;
    /// // Kept as ports with lower MACs come and go.
    /// assert_eq!(br.mac, Some(mac));
    /// # Ok(()) }
    /// ```
    pub async fn add_bridge_with(&self, config: &BridgeConfig) -> Result<Link> {
        const OP: &str = "create bridge";
        validate::ifname(OP, &config.name)?;
        self.create(OP, &config.name, config.message()).await
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
    use netlink_packet_route::link::InfoVeth;

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
                assert_eq!(*flags, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO | NLM_F_ACK);
                m.clone()
            }
            other => panic!("expected RTM_NEWLINK, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn look_ups_and_dumps_ask_the_kernel_to_leave_statistics_out() {
        let fake = fake(InfoKind::Bridge);
        let handle = Handle::with_transport(fake.clone());
        handle.link().get("br0").await.unwrap();
        handle.link().find(7).await.unwrap();
        handle.link().list().await.unwrap();
        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        for r in requests {
            let RouteNetlinkMessage::GetLink(m) = &r.message else {
                panic!("expected RTM_GETLINK, got {:?}", r.message)
            };
            assert!(
                m.attributes
                    .contains(&LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])),
                "{m:?}"
            );
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
        // The fake does not echo (as kernels before 6.3): then the look-up
        // by name.
        assert!(matches!(
            fake.requests()[1].message,
            RouteNetlinkMessage::GetLink(_)
        ));
    }

    #[tokio::test]
    async fn an_echoed_creation_needs_no_look_up_and_keeps_the_requested_master() {
        // A kernel that echoes the creation (6.3 and later), before it
        // enslaves the link: the echo has no IFLA_MASTER.
        let fake = Arc::new(FakeTransport::with_responder(|r: &Request| {
            match &r.message {
                RouteNetlinkMessage::NewLink(_) if r.flags & NLM_F_ECHO != 0 => {
                    let mut echo = new_link_reply(9, "veth0", InfoKind::Veth);
                    if let RouteNetlinkMessage::NewLink(m) = &mut echo {
                        m.attributes.push(LinkAttribute::Mtu(1400));
                        m.attributes.push(LinkAttribute::Link(3));
                    }
                    // Another link's announcement first: only `veth0` counts.
                    Ok(vec![new_link_reply(8, "other", InfoKind::Veth), echo])
                }
                _ => Ok(Vec::new()),
            }
        }));
        let handle = Handle::with_transport(fake.clone());
        let cfg = VethConfig::new("veth0", "eth0").master(4).mtu(1400);
        let link = handle.link().add_veth(&cfg).await.unwrap();
        assert_eq!(
            (link.index, link.name.as_str(), link.kind, link.mtu),
            (9, "veth0", Some(LinkKind::Veth), Some(1400))
        );
        assert_eq!((link.master, link.parent), (Some(4), Some(3)));
        // One request: the creation.
        assert_eq!(fake.requests().len(), 1);
        // Without a master in the request, none is made up.
        let link = handle
            .link()
            .add_veth(&VethConfig::new("veth0", "eth0"))
            .await
            .unwrap();
        assert_eq!(link.master, None);
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
    async fn add_bridge_with_a_mac_sets_it_in_the_creating_request() {
        let fake = fake(InfoKind::Bridge);
        let handle = Handle::with_transport(fake.clone());
        let mac = MacAddr::new([0x06, 1, 2, 3, 4, 5]);
        let cfg = BridgeConfig::new("br0").mac(mac);
        let link = handle.link().add_bridge_with(&cfg).await.unwrap();
        assert_eq!(link.kind, Some(LinkKind::Bridge));
        let msg = created(&fake);
        assert_eq!(
            msg.attributes,
            [
                LinkAttribute::IfName("br0".into()),
                LinkAttribute::Address(mac.octets().to_vec()),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
            ]
        );
        // Without a MAC the request is the plain one `add_bridge` sends.
        let plain = Arc::new(FakeTransport::with_responder(|_: &Request| Ok(Vec::new())));
        let handle = Handle::with_transport(plain.clone());
        let _ = handle.link().add_bridge("br0").await;
        assert_eq!(
            created(&plain).attributes,
            [
                LinkAttribute::IfName("br0".into()),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
            ]
        );
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
