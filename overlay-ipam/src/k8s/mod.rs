//! Kubernetes-style allocators on top of [`crate::alloc`]: Service
//! ClusterIPs, NodePorts and MetalLB-style LoadBalancer address pools.
//!
//! - [`ServiceIpAllocator`]: a Service CIDR split into a **static band**
//!   (its first [`service_band_offset`] addresses, for addresses users pick)
//!   and a **dynamic band** (the rest). Dynamic allocation starts at a
//!   random address of the upper band and falls back to the lower band
//!   only when the upper one is full, as kube-apiserver does since
//!   KEP-3070 (Kubernetes 1.24); the network and (IPv4) broadcast
//!   addresses are never used.
//! - [`NodePortAllocator`]: the same split over a [`PortRange`]
//!   (default `30000-32767`) with [`node_port_band_offset`], as since
//!   KEP-3668 (Kubernetes 1.27).
//! - [`AddressPool`]: a MetalLB `IPAddressPool`: ranges written as CIDRs or
//!   `first-last` ([`PoolRange`]), first fit in the order given, optionally
//!   never handing out IPv4 addresses ending in `.0` or `.255`
//!   (`avoidBuggyIPs`).
//!
//! Randomness is passed in (`&mut impl rand::Rng`); nothing here reads a
//! clock or does I/O. Owners are any small key, as in [`crate::alloc`]
//! (a Service's namespace and name, or an id).
//!
//! ```
//! use overlay_ipam::k8s::{NodePortAllocator, PortRange, ServiceIpAllocator};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let mut services = ServiceIpAllocator::new("10.96.0.0/16".parse().unwrap()).unwrap();
//! // The cluster DNS Service picks a well-known address in the static band.
//! services.allocate_static("10.96.0.10".parse().unwrap(), "kube-dns").unwrap();
//! let ip = services.allocate_dynamic(&mut rng, "web").unwrap();
//! let (first, last) = services.dynamic_band();
//! assert!((first..=last).contains(&ip));
//! assert_eq!(first.to_string(), "10.96.1.1");
//!
//! let mut ports = NodePortAllocator::new(PortRange::default());
//! let port = ports.allocate_dynamic(&mut rng, "web").unwrap();
//! assert!((30086..=32767).contains(&port));
//! ```

mod node_port;
mod pool;
mod service;

pub use node_port::{NodePortAllocator, PortRange, PortRangeError};
pub use pool::{AddressPool, PoolError, PoolRange, PoolRangeError};
pub use service::ServiceIpAllocator;

use std::hash::Hash;

use rand::{Rng, RngExt};

use crate::alloc::{AllocError, OffsetAllocator};

/// The size of the static band of a Service CIDR of `cidr_size` addresses
/// (all of them, network and broadcast included), as Kubernetes computes
/// it: `min(max(16, cidr_size / 16), 256)`, and 0 (no static band) for a
/// CIDR of 16 addresses or fewer.
///
/// ```
/// use overlay_ipam::k8s::service_band_offset;
///
/// // The examples of the Kubernetes documentation ("Service ClusterIP
/// // allocation"): 10.96.0.0/24, /20 and /16.
/// assert_eq!(service_band_offset(1 << 8), 16);
/// assert_eq!(service_band_offset(1 << 12), 256);
/// assert_eq!(service_band_offset(1 << 16), 256);
/// assert_eq!(service_band_offset(16), 0);
/// ```
pub fn service_band_offset(cidr_size: u128) -> u64 {
    band_offset(cidr_size, 16, 256)
}

/// The size of the static band of a NodePort range of `range_size` ports,
/// as Kubernetes computes it: `min(max(16, range_size / 32), 128)`, and 0
/// (no static band) for a range of 16 ports or fewer.
///
/// ```
/// use overlay_ipam::k8s::node_port_band_offset;
///
/// // The default range 30000-32767 reserves 30000-30085 (Kubernetes blog,
/// // "Avoid Collisions Assigning Ports to NodePort Services").
/// assert_eq!(node_port_band_offset(2768), 86);
/// assert_eq!(node_port_band_offset(16), 0);
/// assert_eq!(node_port_band_offset(128), 16);
/// assert_eq!(node_port_band_offset(8192), 128);
/// ```
pub fn node_port_band_offset(range_size: u64) -> u64 {
    band_offset(u128::from(range_size), 32, 128)
}

/// `min(max(16, size / step), max)`, 0 for `size <= 16`.
fn band_offset(size: u128, step: u128, max: u64) -> u64 {
    const MIN: u64 = 16;
    if size <= u128::from(MIN) {
        return 0;
    }
    u64::try_from(size / step).map_or(max, |o| o.clamp(MIN, max))
}

/// Kubernetes' dynamic allocation over positions `0..size` split at
/// `offset`: the first free position from a random start in the upper band
/// `offset..size` (wrapping within it), else from a random start in the
/// lower band `0..offset`.
fn allocate_banded<O, R>(
    alloc: &mut OffsetAllocator<O>,
    offset: u64,
    rng: &mut R,
    owner: O,
) -> Result<u64, AllocError<u64>>
where
    O: Clone + Eq + Hash,
    R: Rng + ?Sized,
{
    let size = alloc.size();
    let offset = offset.min(size);
    let mut found = None;
    if offset < size {
        let start = rng.random_range(offset..size);
        found = alloc.next_free_in(offset, size - 1, start)?;
    }
    if found.is_none() && offset > 0 {
        let start = rng.random_range(0..offset);
        found = alloc.next_free_in(0, offset - 1, start)?;
    }
    let off = found.ok_or(AllocError::Exhausted)?;
    alloc.allocate(off, owner)?;
    Ok(off)
}
