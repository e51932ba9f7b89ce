//! IPv4 and IPv6 addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};

use crate::error::{AddressFamilyExt, IpFamily, Result};
use crate::handle::Handle;

/// An address on a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Address {
    /// The link's index.
    pub index: u32,
    /// The address and its prefix length.
    pub addr: IpNet,
    /// Skip duplicate address detection (IPv6; `IFA_F_NODAD`).
    pub nodad: bool,
    /// Scope reported by the kernel (0 universe, 253 link, 254 host).
    pub scope: u8,
}

impl Address {
    /// An address to add to link `index`.
    pub fn new(index: u32, addr: IpNet) -> Self {
        Address {
            index,
            addr,
            nodad: false,
            scope: 0,
        }
    }

    /// Skip duplicate address detection (IPv6), so the address is usable at once.
    pub fn nodad(mut self) -> Self {
        self.nodad = true;
        self
    }

    pub(crate) fn message(&self) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = if self.addr.addr().is_ipv4() {
            netlink_packet_route::AddressFamily::Inet
        } else {
            netlink_packet_route::AddressFamily::Inet6
        };
        msg.header.prefix_len = self.addr.prefix_len();
        msg.header.index = self.index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes
            .push(AddressAttribute::Local(self.addr.addr()));
        msg.attributes
            .push(AddressAttribute::Address(self.addr.addr()));
        if self.nodad {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        msg
    }

    fn from_message(msg: &AddressMessage) -> Option<Address> {
        let mut local = None;
        let mut address = None;
        let mut flags = AddressFlags::empty();
        for a in &msg.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        let ip: IpAddr = local.or(address)?;
        Some(Address {
            index: msg.header.index,
            addr: IpNet::new(ip, msg.header.prefix_len).ok()?,
            nodad: flags.contains(AddressFlags::Nodad),
            scope: u8::from(msg.header.scope),
        })
    }
}

impl From<(u32, IpNet)> for Address {
    fn from((index, addr): (u32, IpNet)) -> Self {
        Address::new(index, addr)
    }
}

/// Address operations; see [`Handle::address`].
///
/// ```no_run
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// use overlay_netlink::Address;
/// let eth0 = handle.link().get("eth0").await?;
/// handle.address().add((eth0.index, "10.244.1.5/24".parse().unwrap())).await?;
/// handle.address().replace(Address::new(eth0.index, "2001:db8::5/64".parse().unwrap()).nodad()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AddressOps<'h> {
    handle: &'h Handle,
}

impl<'h> AddressOps<'h> {
    pub(crate) fn new(handle: &'h Handle) -> Self {
        AddressOps { handle }
    }

    async fn send(
        &self,
        operation: &'static str,
        address: Address,
        flags: u16,
        delete: bool,
    ) -> Result<()> {
        let msg = address.message();
        let message = if delete {
            RouteNetlinkMessage::DelAddress(msg)
        } else {
            RouteNetlinkMessage::NewAddress(msg)
        };
        let object = format!("{} on link index {}", address.addr, address.index);
        self.handle
            .request(operation, &object, message, flags)
            .await
            .map(drop)
    }

    /// Add an address; `AlreadyExists` if it is there.
    pub async fn add(&self, address: impl Into<Address>) -> Result<()> {
        self.send(
            "add address",
            address.into(),
            NLM_F_CREATE | NLM_F_EXCL,
            false,
        )
        .await
    }

    /// Add an address, or update it if it is there.
    pub async fn replace(&self, address: impl Into<Address>) -> Result<()> {
        self.send(
            "replace address",
            address.into(),
            NLM_F_CREATE | NLM_F_REPLACE,
            false,
        )
        .await
    }

    /// Delete an address; `NotFound` if it is not there.
    pub async fn delete(&self, address: impl Into<Address>) -> Result<()> {
        self.send("delete address", address.into(), 0, true).await
    }

    /// Addresses of one family (or both), optionally of one link only.
    pub async fn list(&self, family: Option<IpFamily>, index: Option<u32>) -> Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        if let Some(f) = family {
            msg.header.family = netlink_packet_route::AddressFamily::from(f.af());
        }
        let object = index
            .map(|i| format!("of link index {i}"))
            .unwrap_or_default();
        let replies = self
            .handle
            .dump(
                "list addresses",
                &object,
                RouteNetlinkMessage::GetAddress(msg),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Address::from_message(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .filter(|a| family.is_none_or(|f| IpFamily::of(a.addr.addr()) == f))
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
    async fn add_replace_delete_use_the_documented_flags_and_attributes() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let v4: IpNet = "192.0.2.5/24".parse().unwrap();
        let v6: IpNet = "2001:db8::5/64".parse().unwrap();
        handle.address().add((3, v4)).await.unwrap();
        handle
            .address()
            .replace(Address::new(3, v6).nodad())
            .await
            .unwrap();
        handle.address().delete((3, v4)).await.unwrap();
        let reqs = fake.requests();
        assert_eq!(reqs[0].flags, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
        assert_eq!(reqs[1].flags, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
        assert_eq!(reqs[2].flags, NLM_F_ACK);
        let RouteNetlinkMessage::NewAddress(a) = &reqs[0].message else {
            panic!()
        };
        assert_eq!(a.header.family, netlink_packet_route::AddressFamily::Inet);
        assert_eq!((a.header.prefix_len, a.header.index), (24, 3));
        assert!(a.attributes.contains(&AddressAttribute::Local(v4.addr())));
        let RouteNetlinkMessage::NewAddress(b) = &reqs[1].message else {
            panic!()
        };
        assert_eq!(b.header.family, netlink_packet_route::AddressFamily::Inet6);
        assert!(
            b.attributes
                .contains(&AddressAttribute::Flags(AddressFlags::Nodad))
        );
        assert!(matches!(
            reqs[2].message,
            RouteNetlinkMessage::DelAddress(_)
        ));
    }
}
