//! The node bridge of a bridge-type plugin: created on first use, removed
//! again only when the failed `ADD` that created it leaves it unused.
//!
//! A bridge is created with a fixed MAC address ([`mac_of`] its name, or
//! one given to [`ensure_with_mac`]), in the creating request. Without one
//! the kernel gives a bridge the lowest MAC among its ports, which changes
//! as pods come and go; pods that cached the old one for their gateway
//! then lose their traffic until their ARP entry is probed again (seconds).
//! The node agent's bridge is kept the same way
//! ([`NodeConfig::bridge_mac`](overlay_netlink::node::NodeConfig::bridge_mac)).
//!
//! ```no_run
//! # async fn f() -> Result<(), overlay_cni::CniError> {
//! let host = overlay_plugin::error::host_handle()?;
//! let (bridge, created) = overlay_plugin::bridge::ensure(&host, "cni0", Some(1450)).await?;
//! // ... attach a veth; on failure:
//! if created {
//!     let _ = overlay_plugin::bridge::remove_if_unused(&host, bridge.index, None).await;
//! }
//! # Ok(()) }
//! ```

use ipnet::IpNet;
use overlay_cni::result::IpConfig;
use overlay_cni::{CniError, ErrorCode};
use overlay_core::hash::Fnv1a64;
use overlay_netlink::node::NodeConfig;
use overlay_netlink::{Address, BridgeConfig, Handle, Link, LinkKind, MacAddr};

use crate::error::{CODE_NETLINK, NetlinkResultExt};

/// The MAC address [`ensure`] gives the bridge `name`: the node agent's
/// bridge rule ([`NodeConfig::bridge_mac_of`]: locally administered,
/// unicast) applied to the first six bytes (big-endian) of the FNV-1a 64
/// hash of the name. The value is fixed by this definition, so a bridge
/// that is deleted and created again (by any version of the plugin) gets
/// the same address and the pods' cached gateway entries stay valid.
///
/// ```
/// let mac = overlay_plugin::bridge::mac_of("cni0");
/// assert_eq!(mac.to_string(), "02:eb:17:91:15:fa");
/// assert!(mac.is_unicast() && mac.is_locally_administered());
/// assert_ne!(mac, overlay_plugin::bridge::mac_of("cni1"));
/// ```
pub fn mac_of(name: &str) -> MacAddr {
    let h = Fnv1a64::new().write(name.as_bytes()).finish().to_be_bytes();
    NodeConfig::bridge_mac_of(MacAddr::new([h[0], h[1], h[2], h[3], h[4], h[5]]))
}

/// The bridge `name`, created (with `mtu`, when given, and the MAC
/// [`mac_of`] its name) when missing, and whether this call created it;
/// [`ensure_with_mac`] with that MAC.
pub async fn ensure(host: &Handle, name: &str, mtu: Option<u32>) -> Result<(Link, bool), CniError> {
    ensure_with_mac(host, name, mtu, mac_of(name)).await
}

/// The bridge `name`, created when missing with the MAC `mac` (set in the
/// creating request) and `mtu` (when given), and whether this call created
/// it. A bridge that exists already is returned as it is: one look-up, no
/// change. A concurrent creation is not an error. A link of that name that
/// is no bridge is code 7; kernel failures are [`CODE_NETLINK`]. A bridge
/// this call created and could not configure is deleted again.
///
/// ```no_run
/// # async fn f(host: &overlay_netlink::Handle) -> Result<(), overlay_cni::CniError> {
/// let mac = "02:00:00:00:00:01".parse().unwrap();
/// let (bridge, _) = overlay_plugin::bridge::ensure_with_mac(host, "cni0", None, mac).await?;
/// # Ok(()) }
/// ```
pub async fn ensure_with_mac(
    host: &Handle,
    name: &str,
    mtu: Option<u32>,
    mac: MacAddr,
) -> Result<(Link, bool), CniError> {
    let bridge_or_error = |b: Link| match b.kind {
        Some(LinkKind::Bridge) => Ok((b, false)),
        _ => Err(CniError::new(
            ErrorCode::InvalidNetworkConfig,
            format!("{name} already exists but is not a bridge"),
        )),
    };
    if let Some(b) = host
        .link()
        .find(name)
        .await
        .or_cni(CODE_NETLINK, "find bridge")?
    {
        return bridge_or_error(b);
    }
    let config = BridgeConfig::new(name).mac(mac);
    let b = match host.link().add_bridge_with(&config).await {
        Ok(b) => b,
        // Created by a concurrent ADD in the meantime.
        Err(e) if e.is_already_exists() => {
            let b = host
                .link()
                .get(name)
                .await
                .or_cni(CODE_NETLINK, "find bridge")?;
            return bridge_or_error(b);
        }
        Err(e) => {
            return Err(crate::error::netlink_error(
                CODE_NETLINK,
                "create bridge",
                &e,
            ));
        }
    };
    // The MTU is set after the creation, not in it: only an MTU set on the
    // bridge (not one it was created with) stops the kernel from lowering
    // it to its ports' as they are attached.
    if let Some(mtu) = mtu
        && let Err(e) = host.link().set_mtu(b.index, mtu).await
    {
        let _ = host.link().delete(b.index).await;
        return Err(crate::error::netlink_error(
            CODE_NETLINK,
            "set bridge MTU",
            &e,
        ));
    }
    Ok((b, true))
}

/// Delete the bridge `index` unless a port other than `leaving` is
/// attached to it (another attachment uses it then). Returns whether it
/// was deleted (or was gone).
pub async fn remove_if_unused(
    host: &Handle,
    index: u32,
    leaving: Option<u32>,
) -> Result<bool, overlay_netlink::Error> {
    if in_use(host, index, leaving).await? {
        return Ok(false);
    }
    match host.link().delete(index).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(true),
    }
}

/// Whether a port other than `leaving` is attached to the bridge `index`.
pub async fn in_use(
    host: &Handle,
    index: u32,
    leaving: Option<u32>,
) -> Result<bool, overlay_netlink::Error> {
    let links = host.link().list().await?;
    Ok(links
        .iter()
        .any(|l| l.master == Some(index) && Some(l.index) != leaving))
}

/// Make the bridge `bridge` the gateway of `ips`: put each address's
/// gateway on it (with the address's prefix length; one that is there
/// already is fine) and enable forwarding for its family. The addresses
/// this call added are pushed to `added`, also on failure, so that a failed
/// `ADD` can remove them again.
///
/// ```no_run
/// # async fn f(host: &overlay_netlink::Handle, ips: &[overlay_cni::result::IpConfig]) -> Result<(), overlay_cni::CniError> {
/// let mut added = Vec::new();
/// overlay_plugin::bridge::add_gateways(host, 4, ips, &mut added).await?;
/// # Ok(()) }
/// ```
pub async fn add_gateways(
    host: &Handle,
    bridge: u32,
    ips: &[IpConfig],
    added: &mut Vec<IpNet>,
) -> Result<(), CniError> {
    for ip in ips {
        let Some(gw) = ip.gateway else { continue };
        // The prefix length comes from an address of the same family.
        let gw_net = IpNet::new(gw, ip.address.prefix_len()).unwrap_or(ip.address);
        match host.address().add(Address::new(bridge, gw_net)).await {
            Ok(()) => added.push(gw_net),
            Err(e) if !e.is_already_exists() => {
                return Err(crate::error::netlink_error(
                    CODE_NETLINK,
                    "add gateway address to bridge",
                    &e,
                ));
            }
            Err(_) => {}
        }
        enable_forwarding(gw.is_ipv4())?;
    }
    Ok(())
}

/// Enable forwarding of the family of `v4` in the plugin's namespace
/// (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`), as a gateway
/// bridge needs; code 5 on failure. Skips the write when already on.
///
/// ```no_run
/// overlay_plugin::bridge::enable_forwarding(true).unwrap();
/// ```
pub fn enable_forwarding(v4: bool) -> Result<(), CniError> {
    let key = if v4 {
        "net/ipv4/ip_forward"
    } else {
        "net/ipv6/conf/all/forwarding"
    };
    let path = format!("/proc/sys/{key}");
    if std::fs::read(&path).is_ok_and(|v| v.starts_with(b"1")) {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(|e| {
        CniError::new(
            ErrorCode::IoFailure,
            format!("enable forwarding ({key}): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
    use overlay_netlink::transport::Request;
    use overlay_netlink::{FakeTransport, KernelError};

    use super::*;

    /// A fake kernel whose look-ups find the bridge `br0` (index 7) when
    /// `exists`, and no such device (`ENODEV`) otherwise.
    fn kernel(exists: bool) -> Arc<FakeTransport> {
        Arc::new(FakeTransport::with_responder(move |r: &Request| {
            match &r.message {
                RouteNetlinkMessage::GetLink(_) if exists => {
                    let mut msg = LinkMessage::default();
                    msg.header.index = 7;
                    msg.attributes.push(LinkAttribute::IfName("br0".into()));
                    msg.attributes
                        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                            InfoKind::Bridge,
                        )]));
                    Ok(vec![RouteNetlinkMessage::NewLink(msg)])
                }
                // ENODEV (19): what the kernel answers for a missing link.
                RouteNetlinkMessage::GetLink(_) => Err(KernelError::new(19)),
                _ => Ok(Vec::new()),
            }
        }))
    }

    fn kinds(fake: &FakeTransport) -> Vec<&'static str> {
        fake.requests()
            .iter()
            .map(|r| match r.message {
                RouteNetlinkMessage::GetLink(_) => "get",
                RouteNetlinkMessage::NewLink(_) => "new",
                RouteNetlinkMessage::SetLink(_) => "set",
                RouteNetlinkMessage::DelLink(_) => "del",
                _ => "other",
            })
            .collect()
    }

    #[tokio::test]
    async fn an_existing_bridge_costs_one_look_up_and_is_left_alone() {
        let fake = kernel(true);
        let host = Handle::with_transport(fake.clone());
        let (bridge, created) = ensure(&host, "br0", Some(1450)).await.unwrap();
        assert_eq!((bridge.index, created), (7, false));
        assert_eq!(kinds(&fake), ["get"]);
    }

    #[tokio::test]
    async fn a_new_bridge_gets_its_mac_in_the_creating_request() {
        let fake = kernel(false);
        let host = Handle::with_transport(fake.clone());
        // The fake's look-up after the creation finds nothing, so the call
        // fails; what matters is what it asked the kernel to create.
        let _ = ensure(&host, "br0", None).await;
        let requests = fake.requests();
        assert_eq!(kinds(&fake)[..2], ["get", "new"]);
        let RouteNetlinkMessage::NewLink(created) = &requests[1].message else {
            panic!("{:?}", kinds(&fake));
        };
        let mac = mac_of("br0").octets().to_vec();
        assert!(
            created.attributes.contains(&LinkAttribute::Address(mac)),
            "{created:?}"
        );
    }
}
