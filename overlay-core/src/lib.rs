//! Shared types, traits and zero-copy encapsulation codecs for overlay networks.
//!
//! `overlay-core` sits at the bottom of the dependency graph of the overlay SDK:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! It does no I/O. It holds what every other crate shares: peer identities, MAC
//! addresses, IP networks (through [`ipnet`]), and the wire codecs for the outer
//! headers of an overlay packet (Ethernet, IPv4, IPv6, UDP) and for the
//! encapsulations themselves (VXLAN, Geneve), written as zero-copy views over
//! caller-owned buffers.
//!
//! * [`PeerId`]: the stable 128-bit identity of a node.
//! * [`MacAddr`]: Ethernet addresses.
//! * [`wire`]: `Packet` views and validated `Repr`s for Ethernet, IPv4,
//!   IPv6, UDP, VXLAN and Geneve, plus the Internet checksum. Parsing never
//!   panics on untrusted input.
//! * [`mtu`]: the overlay MTU from the underlay MTU
//!   ([`overlay_mtu`](mtu::overlay_mtu)).
//! * [`encap`]: the [`Encapsulation`](encap::Encapsulation) trait with
//!   [`VxlanEncap`](encap::VxlanEncap) and [`GeneveEncap`](encap::GeneveEncap),
//!   which write outer headers in place in front of an inner frame.
//!
//! Addresses are [`std::net::IpAddr`] and networks [`ipnet::IpNet`]
//! everywhere: IPv4 and IPv6 are equally supported.
//!
//! # Example: encapsulate and decapsulate in place
//!
//! ```
//! use std::net::Ipv4Addr;
//! use overlay_core::{MacAddr, PeerId};
//! use overlay_core::encap::{Encapsulation, OuterParams, TunnelHeader, VxlanEncap};
//! use overlay_core::wire::Vni;
//!
//! // Who we are (from /etc/machine-id) and our pod network.
//! let me = PeerId::from_machine_id("4f1c6b1e9d2a4c3b8e7f60a1b2c3d4e5").unwrap();
//! let pods: ipnet::IpNet = "10.32.0.0/12".parse().unwrap();
//! assert!(pods.contains(&"10.32.1.7".parse::<std::net::IpAddr>().unwrap()));
//!
//! let vxlan = VxlanEncap::new(Vni::new(4242).unwrap());
//! let outer = OuterParams::new(
//!     "02:00:00:00:00:01".parse().unwrap(),
//!     "02:00:00:00:00:02".parse().unwrap(),
//!     Ipv4Addr::new(198, 51, 100, 1).into(),
//!     Ipv4Addr::new(198, 51, 100, 2).into(),
//! );
//!
//! // An inner Ethernet frame received into a buffer that leaves headroom.
//! let headroom = vxlan.headroom(&outer);
//! let mut buf = vec![0u8; headroom + 64];
//! buf[headroom..headroom + 12].copy_from_slice(&[0x0a, 0, 0, 0, 0, 2, 0x0a, 0, 0, 0, 0, 1]);
//! buf[headroom + 12..headroom + 14].copy_from_slice(&[0x08, 0x00]);
//!
//! // Write Ethernet/IPv4/UDP/VXLAN in front of it; the frame is not copied.
//! let packet = vxlan.encapsulate(&mut buf, headroom, 64, &outer).unwrap();
//! let wire_bytes = &buf[packet];
//!
//! // The receiving peer gets the inner frame back as a sub-slice.
//! let decap = vxlan.decapsulate(wire_bytes).unwrap();
//! assert_eq!(decap.inner(), &wire_bytes[headroom..]);
//! assert_eq!(decap.vni(), Vni::new(4242).unwrap());
//! assert_eq!(decap.ip().src_addr(), outer.src_ip);
//! assert!((49152..=65535).contains(&decap.udp().src_port));
//! # let _ = me;
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

/// Implements serde for a type through its `Display` and `FromStr` forms.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

pub mod encap;
mod family;
pub mod hash;
pub mod ifname;
mod mac;
pub mod mtu;
mod peer;
pub mod wire;

pub use family::IpFamily;
pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use mac::{MacAddr, ParseMacAddrError};
pub use peer::{ParsePeerIdError, PeerId};
pub use wire::{ParseVniError, Vni, VniError};
