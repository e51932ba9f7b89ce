//! The node bridge of a bridge-type plugin: created on first use, removed
//! again only when the failed `ADD` that created it leaves it unused.
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
use overlay_netlink::{Address, Handle, Link, LinkKind};

use crate::error::{CODE_NETLINK, NetlinkResultExt};

/// The bridge `name`, created (with `mtu`, when given) when missing, and
/// whether this call created it. A concurrent creation is not an error. A
/// link of that name that is no bridge is code 7; kernel failures are
/// [`CODE_NETLINK`]. A bridge this call created and could not configure is
/// deleted again.
pub async fn ensure(host: &Handle, name: &str, mtu: Option<u32>) -> Result<(Link, bool), CniError> {
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
    let b = match host.link().add_bridge(name).await {
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
