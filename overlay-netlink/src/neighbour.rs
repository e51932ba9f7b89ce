//! Neighbour (ARP / NDP) entries.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
    NeighbourState as RawState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{AddressFamilyExt, IpFamily, Result};
use crate::handle::Handle;
use overlay_core::MacAddr;

/// The state of a neighbour entry (`NUD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NeighbourState {
    /// Resolution in progress.
    Incomplete,
    /// Confirmed reachable.
    Reachable,
    /// Valid but unconfirmed.
    Stale,
    /// Waiting before probing.
    Delay,
    /// Probing.
    Probe,
    /// Resolution failed.
    Failed,
    /// Valid, never re-resolved.
    Noarp,
    /// Set by an administrator, never expires.
    Permanent,
    /// No state.
    None,
    /// Any other (combined) value.
    Other(u16),
}

// Conversions to and from netlink-packet-route's type stay inside the crate
// (no public `From` impls), so that the pinned netlink-packet-* types do not
// appear in this crate's public API.
impl NeighbourState {
    pub(crate) fn from_raw(s: RawState) -> Self {
        match s {
            RawState::Incomplete => NeighbourState::Incomplete,
            RawState::Reachable => NeighbourState::Reachable,
            RawState::Stale => NeighbourState::Stale,
            RawState::Delay => NeighbourState::Delay,
            RawState::Probe => NeighbourState::Probe,
            RawState::Failed => NeighbourState::Failed,
            RawState::Noarp => NeighbourState::Noarp,
            RawState::Permanent => NeighbourState::Permanent,
            RawState::None => NeighbourState::None,
            other => NeighbourState::Other(u16::from(other)),
        }
    }

    pub(crate) fn to_raw(self) -> RawState {
        match self {
            NeighbourState::Incomplete => RawState::Incomplete,
            NeighbourState::Reachable => RawState::Reachable,
            NeighbourState::Stale => RawState::Stale,
            NeighbourState::Delay => RawState::Delay,
            NeighbourState::Probe => RawState::Probe,
            NeighbourState::Failed => RawState::Failed,
            NeighbourState::Noarp => RawState::Noarp,
            NeighbourState::Permanent => RawState::Permanent,
            NeighbourState::None => RawState::None,
            NeighbourState::Other(v) => RawState::from(v),
        }
    }
}

/// A neighbour entry: an IP address resolved to a MAC address on a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Neighbour {
    /// The link's index.
    pub index: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its MAC address (absent while incomplete).
    pub mac: Option<MacAddr>,
    /// The entry's state.
    pub state: NeighbourState,
}

impl Neighbour {
    /// A permanent entry `ip -> mac` on link `index`, as
    /// `ip neigh replace IP lladdr MAC dev DEV nud permanent`.
    pub fn permanent(index: u32, ip: IpAddr, mac: MacAddr) -> Self {
        Neighbour {
            index,
            ip,
            mac: Some(mac),
            state: NeighbourState::Permanent,
        }
    }

    /// Use another state (for example [`NeighbourState::Reachable`]).
    pub fn with_state(mut self, state: NeighbourState) -> Self {
        self.state = state;
        self
    }

    pub(crate) fn message(&self) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::from(IpFamily::of(self.ip).af());
        msg.header.ifindex = self.index;
        msg.header.state = self.state.to_raw();
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(
                self.ip,
            )));
        if let Some(mac) = self.mac {
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
        }
        msg
    }

    pub(crate) fn from_message(msg: &NeighbourMessage) -> Option<Neighbour> {
        let mut ip = None;
        let mut mac = None;
        for a in &msg.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                    ip = Some(IpAddr::V4(*v))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                    ip = Some(IpAddr::V6(*v))
                }
                NeighbourAttribute::LinkLayerAddress(m) => mac = crate::mac::exact(m),
                _ => {}
            }
        }
        Some(Neighbour {
            index: msg.header.ifindex,
            ip: ip?,
            mac,
            state: NeighbourState::from_raw(msg.header.state),
        })
    }

    pub(crate) fn delete_message(index: u32, ip: IpAddr) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::from(IpFamily::of(ip).af());
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::empty();
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
        msg
    }
}

/// Neighbour operations; see [`Handle::neighbour`].
///
/// ```no_run
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// use overlay_netlink::Neighbour;
/// let vx = handle.link().get("vxlan.1").await?;
/// let entry = Neighbour::permanent(vx.index, "10.244.2.0".parse().unwrap(), "02:00:00:00:02:00".parse().unwrap());
/// handle.neighbour().replace(&entry).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NeighbourOps<'h> {
    handle: &'h Handle,
}

impl<'h> NeighbourOps<'h> {
    pub(crate) fn new(handle: &'h Handle) -> Self {
        NeighbourOps { handle }
    }

    /// Add or update an entry (`NLM_F_CREATE | NLM_F_REPLACE`).
    pub async fn replace(&self, entry: &Neighbour) -> Result<()> {
        let object = format!("{} on link index {}", entry.ip, entry.index);
        self.handle
            .request(
                "replace neighbour",
                &object,
                RouteNetlinkMessage::NewNeighbour(entry.message()),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map(drop)
    }

    /// Delete the entry for `ip` on link `index`.
    pub async fn delete(&self, index: u32, ip: IpAddr) -> Result<()> {
        let object = format!("{ip} on link index {index}");
        self.handle
            .request(
                "delete neighbour",
                &object,
                RouteNetlinkMessage::DelNeighbour(Neighbour::delete_message(index, ip)),
                0,
            )
            .await
            .map(drop)
    }

    /// Entries of one family (or both), optionally on one link only.
    pub async fn list(
        &self,
        family: Option<IpFamily>,
        index: Option<u32>,
    ) -> Result<Vec<Neighbour>> {
        let families = match family {
            Some(f) => vec![f],
            None => vec![IpFamily::V4, IpFamily::V6],
        };
        let mut out = Vec::new();
        for f in families {
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::from(f.af());
            let replies = self
                .handle
                .dump(
                    "list neighbours",
                    &f.to_string(),
                    RouteNetlinkMessage::GetNeighbour(msg),
                )
                .await?;
            out.extend(
                replies
                    .iter()
                    .filter_map(|m| match m {
                        RouteNetlinkMessage::NewNeighbour(n) => Neighbour::from_message(n),
                        _ => None,
                    })
                    .filter(|n| index.is_none_or(|i| n.index == i)),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_ACK;
    use std::sync::Arc;

    use super::*;
    use crate::transport::FakeTransport;

    #[tokio::test]
    async fn replace_sends_a_permanent_entry_with_destination_and_lladdr() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let mac: MacAddr = "02:00:00:00:00:09".parse().unwrap();
        handle
            .neighbour()
            .replace(&Neighbour::permanent(
                4,
                "2001:db8::9".parse().unwrap(),
                mac,
            ))
            .await
            .unwrap();
        handle
            .neighbour()
            .delete(4, "2001:db8::9".parse().unwrap())
            .await
            .unwrap();
        let reqs = fake.requests();
        assert_eq!(reqs[0].flags, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
        let RouteNetlinkMessage::NewNeighbour(m) = &reqs[0].message else {
            panic!()
        };
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.header.state, RawState::Permanent);
        assert_eq!(m.header.ifindex, 4);
        assert!(
            m.attributes
                .contains(&NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()))
        );
        let RouteNetlinkMessage::DelNeighbour(d) = &reqs[1].message else {
            panic!()
        };
        assert_eq!(d.header.ifindex, 4);
        assert_eq!(Neighbour::from_message(m).unwrap().mac, Some(mac));
    }
}
