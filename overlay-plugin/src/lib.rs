//! Building blocks for CNI plugins that need both CNI and the kernel.
//!
//! `overlay-cni` speaks CNI and knows nothing of netlink; `overlay-netlink`
//! drives the kernel and knows nothing of CNI; `overlay-ipam` allocates.
//! What a plugin needs from two of them at once lives here, one crate
//! above all three, so the arrows stay one-way:
//!
//! ```text
//! examples -> overlay-plugin -> { overlay-cni, overlay-netlink, overlay-ipam } -> overlay-core
//! ```
//!
//! - [`runner`]: [`AsyncPlugin`] and [`run_async`], the plugin runner for
//!   async plugins (a current-thread tokio runtime around `overlay-cni`'s);
//! - [`error`]: kernel errors as CNI errors ([`NetlinkResultExt::or_cni`]),
//!   the plugin-specific codes, opening `CNI_NETNS`;
//! - [`ipam`]: in-process `host-local` or delegation behind one trait;
//! - [`iface`]: a container interface configured from a CNI result;
//! - [`masq`]: masquerading through nftables, one transaction per change;
//! - [`bridge`]: the node bridge of bridge-type plugins;
//! - [`veth`]: an attachment's veth pair, named and addressed from it;
//! - [`gc`]: tearing down a stale attachment before its addresses go;
//! - [`alloc`]: a global allocator for one-shot plugin processes.
//!
//! A minimal plugin that puts the IPAM's addresses on an existing interface:
//!
//! ```no_run
//! use overlay_cni::{CniError, CniResult, Request};
//! use overlay_plugin::error::{CODE_NETLINK, NetlinkResultExt, open_netns, pod_handle};
//! use overlay_plugin::{AsyncPlugin, iface, ipam};
//!
//! struct Static;
//!
//! impl AsyncPlugin for Static {
//!     async fn add(&self, req: &Request) -> Result<CniResult, CniError> {
//!         let ipam = ipam::for_request(req)?;
//!         let lease = ipam::add(ipam, req).await?;
//!         let netns = open_netns(req)?;
//!         let pod = pod_handle(&netns)?;
//!         let link = pod.link().get(req.ifname()).await.or_cni(CODE_NETLINK, "find interface")?;
//!         let plan = iface::Plan::with_ifname(lease.result(), link.index, 0, false, Some(req.ifname()));
//!         plan.apply(&pod, Some(&netns)).await?;
//!         let mut result = lease.commit();
//!         result.ips = plan.ips;
//!         Ok(result)
//!     }
//!     async fn del(&self, req: &Request) -> Result<(), CniError> {
//!         ipam::for_request(req)?.del(req)
//!     }
//!     async fn check(&self, req: &Request) -> Result<(), CniError> {
//!         ipam::for_request(req)?.check(req)
//!     }
//! }
//!
//! fn main() {
//!     overlay_plugin::run_async(&Static)
//! }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod alloc;
pub mod bridge;
pub mod error;
pub mod gc;
pub mod iface;
pub mod ipam;
pub mod masq;
pub mod runner;
pub mod veth;

pub use error::NetlinkResultExt;
pub use runner::{AsyncPlugin, dispatch_async, run_async};
