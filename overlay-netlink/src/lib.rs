//! Async Linux netlink for overlay datapaths.
//!
//! `overlay-netlink` programs the kernel for the overlay SDK: links (bridge,
//! veth, VXLAN, dummy), addresses, routes, neighbours, bridge FDB entries,
//! sysctls and network namespaces, plus an [`overlay`] helper that installs
//! and reconciles the per-peer state of a flannel-style VXLAN datapath, and
//! [`node`], a node's whole side of it (the VXLAN device and bridge with the
//! MTU derived from the underlay, gateway addresses, self-healing
//! reconcile).
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! It is built directly on `netlink-packet-route` and `netlink-sys` behind a
//! small [`Transport`] trait: [`SocketTransport`] is the real socket (batched
//! requests, sequence numbers, multipart dumps, ACKs, extended-ACK messages,
//! a receive buffer that grows so that no dump is truncated), and
//! [`FakeTransport`] records requests for unit tests that need no root.
//!
//! # Namespaces
//!
//! A netlink socket belongs to the namespace it was opened in.
//! [`Netns::handle`] opens the socket on a short-lived thread that entered
//! the namespace, so `setns` never runs on a tokio worker thread.
//! [`Netns::run`] runs a closure inside a namespace (for `/proc/sys`).
//!
//! # Errors
//!
//! Every operation returns [`Error`], which names the operation and the
//! object; kernel errors carry an [`ErrorKind`] (`AlreadyExists`,
//! `NotFound`, ...), the errno and the kernel's extended-ACK message. Input
//! is validated before anything is sent (interface names, VNIs, address
//! families), so bad input never leaves half-created objects behind.
//!
//! # Example
//!
//! Create a namespace with a bridge and a VXLAN device enslaved to it
//! (needs `CAP_NET_ADMIN`):
//!
//! ```no_run
//! use overlay_netlink::{Netns, Vni, VxlanConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> overlay_netlink::Result<()> {
//! let ns = Netns::create("node1")?;
//! let handle = ns.handle()?;
//! let br = handle.link().ensure_bridge("cni0").await?;
//! let (vx, _) = handle
//!     .link()
//!     .ensure_vxlan(&VxlanConfig::new("vxlan.1", Vni::new(1).unwrap()).port(8472).mtu(1450))
//!     .await?;
//! handle.link().set_master(vx.index, br.index).await?;
//! handle.link().set_up(vx.index).await?;
//! handle.address().add((br.index, "10.244.1.1/24".parse().unwrap())).await?;
//! ns.sysctl_set("net.ipv4.ip_forward", "1")?;
//! drop(handle);
//! ns.delete()?;
//! # Ok(()) }
//! ```
//!
//! Unit tests use the fake transport:
//!
//! ```
//! use std::sync::Arc;
//! use overlay_netlink::{FakeTransport, Handle, Route};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let fake = Arc::new(FakeTransport::new());
//! let handle = Handle::with_transport(fake.clone());
//! handle.route().replace(&Route::new("10.244.2.0/24".parse().unwrap()).dev(3)).await.unwrap();
//! assert_eq!(fake.requests().len(), 1);
//! # });
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod address;
mod batch;
mod error;
mod events;
mod fdb;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod link;
mod mac;
mod neighbour;
mod netns;
pub mod node;
pub mod overlay;
mod route;
pub mod transport;
mod validate;

pub use address::{Address, AddressOps};
pub use batch::Batch;
pub use error::{Error, ErrorKind, InvalidInput, IpFamily, KernelError, Result, TransportError};
pub use events::{LinkEvent, LinkEvents};
pub use fdb::{FdbEntry, FdbOps};
pub use handle::Handle;
pub use link::{
    BridgeConfig, Ensured, Link, LinkId, LinkKind, LinkOps, VXLAN_PORT, VethConfig, VxlanConfig,
    VxlanInfo,
};
pub use neighbour::{Neighbour, NeighbourOps, NeighbourState};
pub use netns::{NETNS_RUN_DIR, Netns, RequestSocket};
pub use overlay_core::{MacAddr, ParseMacAddrError, Vni, VniError};
pub use route::{
    Route, RouteFilter, RouteKind, RouteOps, RouteProtocol, Scope, TABLE_LOCAL, TABLE_MAIN,
};
pub use transport::{FakeTransport, SocketTransport, Transport};
pub use validate::{MAX_IFNAME_LEN, validate_ifname};
