//! Tearing down stale attachments before their addresses are released.
//!
//! An IPAM's `GC` ([`Ipam::gc`]) hands each stale attachment to a teardown
//! and releases its addresses only when the teardown succeeded, so no
//! `ADD` is ever given an address still configured on a live interface.
//! [`teardown_veth`] is the teardown of a veth-based attachment named by
//! `overlay-cni`'s derivations: it deletes the host end (which takes the
//! container's end and its addresses with it) and the attachment's
//! masquerading. [`collect`] runs an IPAM's `GC` with an async teardown.
//!
//! ```no_run
//! # async fn f(req: &overlay_cni::Request, valid: &[overlay_cni::config::GcAttachment]) -> Result<(), overlay_cni::CniError> {
//! use std::sync::Arc;
//! use overlay_plugin::masq::{Masquerade, NftCommand};
//!
//! let host = Arc::new(overlay_plugin::error::host_handle()?);
//! let network = req.network_name().to_owned();
//! let ipam = overlay_plugin::ipam::for_request(req)?;
//! overlay_plugin::gc::collect(ipam, req, valid, move |stale| {
//!     let (host, network) = (host.clone(), network.clone());
//!     async move {
//!         let masq = Masquerade::new(NftCommand::default());
//!         overlay_plugin::gc::teardown_veth(&host, &network, &stale, Some(&masq)).await
//!     }
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use overlay_cni::config::GcAttachment;
use overlay_cni::ipam::{Ipam, StaleAttachment};
use overlay_cni::plugin::{attachment_hash, host_veth_name};
use overlay_cni::{CniError, Request};
use overlay_netlink::Handle;

use crate::error::{CODE_NETLINK, NetlinkResultExt};
use crate::masq::{Masquerade, NftRunner};

/// A stale attachment, owned (see [`StaleAttachment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stale {
    /// The container ID.
    pub container_id: String,
    /// The interface name, when the IPAM recorded one.
    pub ifname: Option<String>,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
}

impl From<&StaleAttachment<'_>> for Stale {
    fn from(s: &StaleAttachment<'_>) -> Stale {
        Stale {
            container_id: s.container_id.to_owned(),
            ifname: s.ifname.map(str::to_owned),
            ips: s.ips.to_vec(),
        }
    }
}

/// Run `ipam`'s `GC` on the blocking pool, with `teardown` (async, run on
/// this runtime) for each stale attachment.
pub async fn collect<T, Fut>(
    ipam: Arc<dyn Ipam>,
    req: &Request,
    valid: &[GcAttachment],
    teardown: T,
) -> Result<(), CniError>
where
    T: Fn(Stale) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), CniError>>,
{
    // The blocking thread waits on futures whose sockets this runtime's
    // driver serves: the caller's `Runtime::block_on` drives it meanwhile.
    let rt = tokio::runtime::Handle::current();
    let (req, valid) = (req.clone(), valid.to_vec());
    crate::ipam::blocking(move || {
        ipam.gc(&req, &valid, &mut |stale| {
            rt.block_on(teardown(Stale::from(stale)))
        })
    })
    .await
}

/// Tear down a stale veth-based attachment of `network`: delete its host
/// veth end (`overlay_cni::plugin::host_veth_name`; absent is success) and
/// its masquerading, when `masq` is given. An attachment recorded without
/// an interface name cannot be found and fails ([`CODE_NETLINK`]), so its
/// addresses stay reserved.
pub async fn teardown_veth<R: NftRunner>(
    host: &Handle,
    network: &str,
    stale: &Stale,
    masq: Option<&Masquerade<R>>,
) -> Result<(), CniError> {
    let Some(ifname) = stale.ifname.as_deref() else {
        return Err(CniError::plugin(
            CODE_NETLINK,
            "reservation recorded without an interface name: its host veth cannot be found",
        ));
    };
    let hash = attachment_hash(network, &stale.container_id, ifname);
    let veth = host_veth_name(hash);
    if let Some(link) = host
        .link()
        .find(veth.as_str())
        .await
        .or_cni(CODE_NETLINK, "look up host veth")?
    {
        match host.link().delete(link.index).await {
            Err(e) if !e.is_not_found() => {
                return Err(crate::error::netlink_error(
                    CODE_NETLINK,
                    "delete host veth",
                    &e,
                ));
            }
            _ => {}
        }
    }
    match masq {
        Some(masq) => masq.del(hash),
        None => Ok(()),
    }
}
