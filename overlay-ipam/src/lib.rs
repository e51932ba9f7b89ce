//! IP address management for overlay networks.
//!
//! `overlay-ipam` hands out pod addresses. It depends on `overlay-core`, and
//! on `overlay-cni` only through its default features `host-local` and `agent` (the
//! `host_local` module speaks CNI: its configuration, `CNI_ARGS`, results
//! and the [`overlay_cni::ipam::Ipam`] trait plugins call). It does no I/O
//! except through its store, the agent client's socket and (feature
//! `agent-server`) the agent's socket server, and never depends on
//! `overlay-netlink` or `overlay-gossip`:
//!
//! ```text
//! examples -> overlay-plugin -> { overlay-cni, overlay-netlink, overlay-ipam } -> overlay-core
//!                                 overlay-ipam -> overlay-cni  (features host-local, agent)
//!                                 overlay-ipam -> tokio        (feature agent-server)
//! ```
//!
//! - [`alloc`]: in-memory allocators of addresses (IPv4 and IPv6) and
//!   positions to owners: round-robin as `host-local`, lowest free, given,
//!   or within a band; a bitmap with summary words keeps a `/12` at 128 KiB
//!   and every operation fast when nearly full.
//! - [`k8s`]: Kubernetes-style allocators on top of [`alloc`]: Service
//!   ClusterIPs and NodePorts with Kubernetes' static and dynamic bands, and
//!   MetalLB-style LoadBalancer address pools.
//! - [`ring`]: the cluster-wide ring of CIDR-aligned address blocks, a CRDT
//!   whose merge never fails (conflicts are reported as anomalies), with
//!   genesis without consensus, owner-initiated donation, fencing reclaim
//!   by tombstone, a node-level allocator on top of [`alloc`] that never
//!   waits on the network, compact delta/digest/store encodings, and a
//!   deterministic cluster simulator, and [`ring::agent`], the node
//!   agent's sans-IO driver of a ring over any gossip layer (genesis
//!   discovery, frame-sized messages, anti-entropy, the ring durable before
//!   anything is sent). Pure state machines: time and randomness are passed
//!   in.
//! - [`range`]: validated address ranges and range sets with the reference
//!   `host-local` plugin's rules and round-robin allocation order, IPv4 and
//!   IPv6 alike.
//! - [`host_local`]: `host-local` in-process: its configuration, its on-disk
//!   store (`<dataDir>/<network>/<ip>` files, `last_reserved_ip.<i>`, a
//!   `flock`ed `lock` file) and its `ADD`/`DEL`/`CHECK` behaviour, plus `GC`
//!   and `STATUS`. A CNI plugin can allocate without spawning `host-local`
//!   and still share the data directory with it safely, through
//!   [`host_local::HostLocalIpam`] (feature `host-local`, on by default).
//! - [`agent`]: addresses served by a node agent (a cluster allocator)
//!   over a unix socket: the protocol the agent speaks and the plugin's
//!   client [`agent::AgentIpam`], which never waits past its deadline
//!   (feature `agent`, on by default); the agent's side of it,
//!   [`agent::service::NodeIpam`] (answers from the ring, durable before
//!   the answer, sans-IO), and the socket server `agent::server` (feature
//!   `agent-server`, on tokio).
//!
//! ```
//! # #[cfg(feature = "host-local")] {
//! use overlay_ipam::host_local::Config;
//!
//! let data_dir = std::env::temp_dir().join(format!("ipam-crate-doc-{}", std::process::id()));
//! let net = format!(
//!     r#"{{"cniVersion":"1.0.0","name":"pods","type":"bridge",
//!          "ipam":{{"type":"host-local","dataDir":"{}","subnet":"198.51.100.0/24",
//!                   "routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
//!     data_dir.display()
//! );
//! let config = Config::from_network_config(net.as_bytes(), "").unwrap();
//! let allocation = config.allocate("container-1", "eth0").unwrap();
//! assert_eq!(allocation.ips[0].address.to_string(), "198.51.100.2/24");
//! // The same file the reference plugin would have written.
//! let file = data_dir.join("pods/198.51.100.2");
//! assert_eq!(std::fs::read(&file).unwrap(), b"container-1\r\neth0");
//! config.release("container-1", "eth0").unwrap();
//! assert!(!file.exists());
//! # std::fs::remove_dir_all(&data_dir).unwrap();
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(feature = "agent")]
#[cfg_attr(docsrs, doc(cfg(feature = "agent")))]
pub mod agent;
pub mod alloc;
#[cfg(feature = "host-local")]
#[cfg_attr(docsrs, doc(cfg(feature = "host-local")))]
pub mod host_local;
pub mod k8s;
pub mod range;
pub mod ring;
