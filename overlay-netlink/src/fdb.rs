//! Bridge forwarding database (FDB) entries, including the per-remote entries
//! of a VXLAN device (`bridge fdb ... dev vxlan0 dst 192.0.2.2 self`).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
    NeighbourState as RawState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::handle::Handle;
use overlay_core::{MacAddr, Vni};

/// A forwarding database entry.
///
/// ```
/// use overlay_netlink::FdbEntry;
/// // bridge fdb append 02:00:00:00:02:00 dev vxlan0 dst 192.0.2.2 self permanent
/// let e = FdbEntry::new(4, "02:00:00:00:02:00".parse().unwrap()).dst("192.0.2.2".parse().unwrap());
/// assert!(e.on_self && !e.on_master && e.permanent);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FdbEntry {
    /// The device the entry belongs to (a bridge port, or a VXLAN device).
    pub index: u32,
    /// The MAC address.
    pub mac: MacAddr,
    /// The remote underlay address (VXLAN).
    pub dst: Option<IpAddr>,
    /// The remote VNI (VXLAN).
    pub vni: Option<Vni>,
    /// The remote UDP port (VXLAN).
    pub port: Option<u16>,
    /// The VLAN.
    pub vlan: Option<u16>,
    /// Entry in the device's own table (`self`, `NTF_SELF`).
    pub on_self: bool,
    /// Entry in the master bridge's table (`master`, `NTF_MASTER`).
    pub on_master: bool,
    /// `permanent` (else `static`).
    pub permanent: bool,
    /// The master bridge index, as reported.
    pub master_index: Option<u32>,
}

impl FdbEntry {
    /// A permanent `self` entry for `mac` on device `index`.
    pub fn new(index: u32, mac: MacAddr) -> Self {
        FdbEntry {
            index,
            mac,
            dst: None,
            vni: None,
            port: None,
            vlan: None,
            on_self: true,
            on_master: false,
            permanent: true,
            master_index: None,
        }
    }

    /// Set the remote underlay address.
    pub fn dst(mut self, dst: IpAddr) -> Self {
        self.dst = Some(dst);
        self
    }

    /// Set the remote VNI.
    pub fn vni(mut self, vni: Vni) -> Self {
        self.vni = Some(vni);
        self
    }

    /// Set the remote UDP port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Set the VLAN.
    pub fn vlan(mut self, vlan: u16) -> Self {
        self.vlan = Some(vlan);
        self
    }

    /// Put the entry in the device's own table (`self`) or not.
    pub fn on_self(mut self, on: bool) -> Self {
        self.on_self = on;
        self
    }

    /// Put the entry in the master bridge's table (`master`) or not.
    pub fn on_master(mut self, on: bool) -> Self {
        self.on_master = on;
        self
    }

    /// `permanent` (true) or `static` (false).
    pub fn permanent(mut self, on: bool) -> Self {
        self.permanent = on;
        self
    }

    pub(crate) fn message(&self) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = self.index;
        msg.header.state = if self.permanent {
            RawState::Permanent
        } else {
            RawState::Noarp
        };
        let mut flags = NeighbourFlags::empty();
        if self.on_self {
            flags |= NeighbourFlags::Own;
        }
        if self.on_master {
            flags |= NeighbourFlags::Controller;
        }
        msg.header.flags = flags;
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(
            self.mac.octets().to_vec(),
        ));
        if let Some(dst) = self.dst {
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
        }
        if let Some(vlan) = self.vlan {
            msg.attributes.push(NeighbourAttribute::Vlan(vlan));
        }
        if let Some(port) = self.port {
            msg.attributes.push(NeighbourAttribute::Port(port));
        }
        if let Some(vni) = self.vni {
            msg.attributes.push(NeighbourAttribute::Vni(vni.get()));
        }
        msg
    }

    pub(crate) fn from_message(msg: &NeighbourMessage) -> Option<FdbEntry> {
        let h = &msg.header;
        let mut entry = FdbEntry::new(h.ifindex, MacAddr::ZERO);
        entry.on_self = h.flags.contains(NeighbourFlags::Own);
        entry.on_master = h.flags.contains(NeighbourFlags::Controller);
        entry.permanent = h.state == RawState::Permanent;
        let mut mac = None;
        for a in &msg.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(m) => mac = crate::mac::exact(m),
                NeighbourAttribute::Destination(d) => entry.dst = neighbour_ip(d),
                // NDA_VNI: the kernel holds 24 bits.
                NeighbourAttribute::Vni(v) => entry.vni = Vni::new(*v).ok(),
                NeighbourAttribute::Port(p) => entry.port = Some(*p),
                NeighbourAttribute::Vlan(v) => entry.vlan = Some(*v),
                NeighbourAttribute::Controller(m) => entry.master_index = Some(*m),
                _ => {}
            }
        }
        entry.mac = mac?;
        Some(entry)
    }
}

fn neighbour_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v) => Some(IpAddr::V4(*v)),
        NeighbourAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        NeighbourAddress::Other(b) => {
            if let Ok(v4) = <[u8; 4]>::try_from(b.as_slice()) {
                Some(IpAddr::from(v4))
            } else if let Ok(v6) = <[u8; 16]>::try_from(b.as_slice()) {
                Some(IpAddr::from(v6))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// FDB operations; see [`Handle::fdb`].
///
/// ```no_run
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// use overlay_netlink::FdbEntry;
/// let vx = handle.link().get("vxlan.1").await?;
/// let entry = FdbEntry::new(vx.index, "02:00:00:00:02:00".parse().unwrap())
///     .dst("192.0.2.2".parse().unwrap());
/// handle.fdb().replace(&entry).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FdbOps<'h> {
    handle: &'h Handle,
}

impl<'h> FdbOps<'h> {
    pub(crate) fn new(handle: &'h Handle) -> Self {
        FdbOps { handle }
    }

    async fn send(
        &self,
        operation: &'static str,
        entry: &FdbEntry,
        flags: u16,
        delete: bool,
    ) -> Result<()> {
        let msg = entry.message();
        let message = if delete {
            RouteNetlinkMessage::DelNeighbour(msg)
        } else {
            RouteNetlinkMessage::NewNeighbour(msg)
        };
        let object = format!("{} on link index {}", entry.mac, entry.index);
        self.handle
            .request(operation, &object, message, flags)
            .await
            .map(drop)
    }

    /// Add or update the entry for this MAC (`bridge fdb replace`). On a
    /// VXLAN device this replaces the remote of the MAC's first destination.
    pub async fn replace(&self, entry: &FdbEntry) -> Result<()> {
        self.send(
            "replace fdb entry",
            entry,
            NLM_F_CREATE | NLM_F_REPLACE,
            false,
        )
        .await
    }

    /// Add one more remote for this MAC (`bridge fdb append`; VXLAN only).
    pub async fn append(&self, entry: &FdbEntry) -> Result<()> {
        self.send(
            "append fdb entry",
            entry,
            NLM_F_CREATE | NLM_F_APPEND,
            false,
        )
        .await
    }

    /// Delete the entry (with [`FdbEntry::dst`] set, only that remote).
    pub async fn delete(&self, entry: &FdbEntry) -> Result<()> {
        self.send("delete fdb entry", entry, 0, true).await
    }

    /// All entries, optionally of one device only (a VXLAN device, a bridge
    /// port, or a bridge itself).
    pub async fn list(&self, index: Option<u32>) -> Result<Vec<FdbEntry>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        let replies = self
            .handle
            .dump(
                "list fdb entries",
                "",
                RouteNetlinkMessage::GetNeighbour(msg),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n)
                    if n.header.family == AddressFamily::Bridge =>
                {
                    FdbEntry::from_message(n)
                }
                _ => None,
            })
            .filter(|e| index.is_none_or(|i| e.index == i))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_ACK;
    use std::sync::Arc;

    use super::*;
    use crate::transport::FakeTransport;

    #[tokio::test]
    async fn append_and_replace_send_bridge_family_self_permanent_with_dst_vni_port() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let mac: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
        let e = FdbEntry::new(6, mac)
            .dst("198.51.100.2".parse().unwrap())
            .vni(Vni::new(100).unwrap())
            .port(8472);
        handle.fdb().append(&e).await.unwrap();
        handle
            .fdb()
            .replace(&e.clone().on_self(false).on_master(true))
            .await
            .unwrap();
        let reqs = fake.requests();
        assert_eq!(reqs[0].flags, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK);
        assert_eq!(reqs[1].flags, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
        let RouteNetlinkMessage::NewNeighbour(m) = &reqs[0].message else {
            panic!()
        };
        assert_eq!(m.header.family, AddressFamily::Bridge);
        assert_eq!(m.header.flags, NeighbourFlags::Own);
        assert_eq!(m.header.state, RawState::Permanent);
        for a in [
            NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(
                "198.51.100.2".parse().unwrap(),
            )),
            NeighbourAttribute::Vni(100),
            NeighbourAttribute::Port(8472),
        ] {
            assert!(m.attributes.contains(&a), "{a:?}");
        }
        let RouteNetlinkMessage::NewNeighbour(m2) = &reqs[1].message else {
            panic!()
        };
        assert_eq!(m2.header.flags, NeighbourFlags::Controller);
        assert_eq!(FdbEntry::from_message(m).unwrap(), e);
    }

    #[test]
    fn a_reported_vni_over_24_bits_is_dropped_not_truncated() {
        let mut m = FdbEntry::new(6, MacAddr::new([2, 0, 0, 0, 0, 1])).message();
        m.attributes.push(NeighbourAttribute::Vni(1 << 24));
        assert_eq!(FdbEntry::from_message(&m).unwrap().vni, None);
        // And one cannot be built: `Vni::new` refuses it.
        assert!(Vni::new(1 << 24).is_err());
    }
}
