//! `overlay_ipam::k8s` against the behaviour Kubernetes and MetalLB
//! document. Each row names its source:
//!
//! - [K8S-CIP]: Kubernetes documentation, "Service ClusterIP allocation"
//!   (kubernetes.io/docs/concepts/services-networking/cluster-ip-allocation),
//!   its examples for 10.96.0.0/24, /20 and /16, and "dynamic allocation
//!   uses the upper band first, then the lower band".
//! - [K8S-KEP3070]: KEP-3070 and Kubernetes' `calculateRangeOffset` table
//!   (`pkg/registry/core/service/ipallocator`): the offset per prefix
//!   length, 0 for CIDRs of 16 addresses or fewer; the network address
//!   never used, the IPv4 broadcast address never used, the IPv6 last
//!   address used.
//! - [K8S-NP]: Kubernetes blog "Kubernetes 1.27: Avoid Collisions Assigning
//!   Ports to NodePort Services" (KEP-3668), its example table for the
//!   ranges 30000-32767, 30000-30015, 30000-30127, 30000-34095 and
//!   30000-38191, and "when the port range is less than 16 [ports] the
//!   size of static port range will be set to 0".
//! - [METALLB]: MetalLB documentation, "Advanced AddressPool configuration"
//!   and the `IPAddressPool` reference: addresses as CIDRs or
//!   `first-last` ranges, several per pool, IPv6 too, a single address as
//!   a `/32`; `avoidBuggyIPs` "ensures IP addresses ending .0 and .255 are
//!   not allocated from the pool"; overlapping CIDRs are refused.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::collections::BTreeSet;
use std::net::IpAddr;

use overlay_core::IpFamily;
use overlay_ipam::alloc::AllocError;
use overlay_ipam::k8s::{
    AddressPool, NodePortAllocator, PoolError, PoolRange, PoolRangeError, PortRange,
    PortRangeError, ServiceIpAllocator, node_port_band_offset, service_band_offset,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn s(ip: IpAddr) -> String {
    ip.to_string()
}

#[test]
fn service_cidr_examples_of_the_kubernetes_docs() {
    // [K8S-CIP] (cidr, range size, band offset, static band start, static
    // band end, range end).
    let rows = [
        (
            "10.96.0.0/24",
            254,
            16,
            "10.96.0.1",
            "10.96.0.16",
            "10.96.0.254",
        ),
        (
            "10.96.0.0/20",
            4094,
            256,
            "10.96.0.1",
            "10.96.1.0",
            "10.96.15.254",
        ),
        (
            "10.96.0.0/16",
            65534,
            256,
            "10.96.0.1",
            "10.96.1.0",
            "10.96.255.254",
        ),
    ];
    for (cidr, size, offset, start, end, last) in rows {
        let a = ServiceIpAllocator::<()>::new(cidr.parse().unwrap()).unwrap();
        assert_eq!(a.free(), size, "{cidr}");
        assert_eq!(a.band_offset(), offset, "{cidr}");
        assert_eq!(
            a.static_band().map(|(x, y)| (s(x), s(y))),
            Some((start.into(), end.into())),
            "{cidr}"
        );
        assert_eq!(s(a.dynamic_band().1), last, "{cidr}");
    }
}

#[test]
fn band_offsets_of_kubernetes_range_offset_table() {
    // [K8S-KEP3070] (prefix, offset).
    let rows = [
        ("192.168.1.1/32", 0),
        ("fd00::1/128", 0),
        ("192.168.1.1/30", 0),
        ("fd00::1/126", 0),
        ("192.168.1.1/28", 0),
        ("192.168.1.1/27", 16),
        ("fd00::1/124", 0),
        ("fd00::1/122", 16),
        ("192.168.1.1/22", 64),
        ("fd00::1/118", 64),
        ("192.168.1.1/8", 256),
        ("fd00::1/12", 256),
    ];
    for (cidr, want) in rows {
        let net: ipnet::IpNet = cidr.parse().unwrap();
        let host_bits = net.max_prefix_len() - net.prefix_len();
        assert_eq!(service_band_offset(1u128 << host_bits), want, "{cidr}");
        if let Ok(a) = ServiceIpAllocator::<()>::new(net) {
            // Host bits are ignored, as Kubernetes' ParseCIDR does.
            assert_eq!(a.cidr(), net.trunc());
            if host_bits <= 24 {
                assert_eq!(a.band_offset(), want, "{cidr}");
            }
        }
    }
    // A CIDR without usable addresses is refused.
    for cidr in ["192.168.1.1/32", "192.168.1.0/31", "fd00::1/128"] {
        assert!(
            matches!(
                ServiceIpAllocator::<()>::new(cidr.parse().unwrap()),
                Err(AllocError::Empty)
            ),
            "{cidr}"
        );
    }
}

#[test]
fn service_network_and_ipv4_broadcast_are_never_used_ipv6_last_is() {
    // [K8S-KEP3070]
    let mut v4 = ServiceIpAllocator::new("10.0.0.0/28".parse().unwrap()).unwrap();
    assert_eq!(
        v4.allocate_static(ip("10.0.0.0"), ()),
        Err(AllocError::OutOfRange(ip("10.0.0.0")))
    );
    assert_eq!(
        v4.allocate_static(ip("10.0.0.15"), ()),
        Err(AllocError::OutOfRange(ip("10.0.0.15")))
    );
    assert_eq!(v4.allocate_static(ip("10.0.0.14"), ()), Ok(()));
    let mut v6 = ServiceIpAllocator::new("fd00::/124".parse().unwrap()).unwrap();
    assert_eq!(
        v6.allocate_static(ip("fd00::"), ()),
        Err(AllocError::OutOfRange(ip("fd00::")))
    );
    assert_eq!(v6.allocate_static(ip("fd00::f"), ()), Ok(()));
    assert_eq!(v6.free(), 14);
}

#[test]
fn dynamic_takes_the_upper_band_first_then_the_lower_one() {
    // [K8S-CIP] "dynamic IP assignment uses the upper band by default,
    // once this has been exhausted it will use the lower range".
    let mut rng = StdRng::seed_from_u64(11);
    let mut a = ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
    // A user picked the DNS address in the static band.
    a.allocate_static(ip("10.96.0.10"), "kube-dns").unwrap();
    let mut got = Vec::new();
    while let Ok(ip) = a.allocate_dynamic(&mut rng, "svc") {
        got.push(ip);
    }
    assert_eq!(got.len(), 253);
    assert!(got[..238].iter().all(|ip| !a.is_static(*ip)));
    assert!(got[238..].iter().all(|ip| a.is_static(*ip)));
    assert!(!got.contains(&ip("10.96.0.10")));
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 253);
    // Random, not sequential: the first allocation is not the band's first
    // address, and the order is not ascending.
    assert_ne!(got[0], a.dynamic_band().0);
    assert!(got.windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn dynamic_start_is_random_over_the_upper_band() {
    // [K8S-CIP] a random start within the band: over many seeds the first
    // allocation of a fresh /24 lands all over 10.96.0.17-10.96.0.254.
    let mut firsts = BTreeSet::new();
    for seed in 0..400 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut a = ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
        let got = a.allocate_dynamic(&mut rng, ()).unwrap();
        assert!(!a.is_static(got));
        firsts.insert(got);
    }
    assert!(
        firsts.len() > 150,
        "{} distinct first addresses",
        firsts.len()
    );
}

#[test]
fn a_small_cidr_has_no_static_band() {
    // [K8S-KEP3070] /28: offset 0, every address dynamic.
    let mut rng = StdRng::seed_from_u64(2);
    let mut a = ServiceIpAllocator::new("10.0.0.0/28".parse().unwrap()).unwrap();
    assert_eq!(a.static_band(), None);
    assert_eq!(a.dynamic_band(), (ip("10.0.0.1"), ip("10.0.0.14")));
    for _ in 0..14 {
        a.allocate_dynamic(&mut rng, ()).unwrap();
    }
    assert_eq!(a.allocate_dynamic(&mut rng, ()), Err(AllocError::Exhausted));
}

#[test]
fn node_port_examples_of_the_kubernetes_blog() {
    // [K8S-NP] (range, offset, static band, dynamic band).
    let rows = [
        ("30000-32767", 86, Some((30000, 30085)), (30086, 32767)),
        ("30000-30015", 0, None, (30000, 30015)),
        ("30000-30127", 16, Some((30000, 30015)), (30016, 30127)),
        ("30000-34095", 128, Some((30000, 30127)), (30128, 34095)),
        ("30000-38191", 128, Some((30000, 30127)), (30128, 38191)),
    ];
    for (range, offset, static_band, dynamic_band) in rows {
        let r: PortRange = range.parse().unwrap();
        assert_eq!(
            node_port_band_offset(u64::from(r.size())),
            offset,
            "{range}"
        );
        let a = NodePortAllocator::<()>::new(r);
        assert_eq!(a.band_offset(), offset, "{range}");
        assert_eq!(a.static_band(), static_band, "{range}");
        assert_eq!(a.dynamic_band(), dynamic_band, "{range}");
    }
    assert_eq!(PortRange::default().to_string(), "30000-32767");
}

#[test]
fn node_ports_fill_the_dynamic_band_before_the_static_one() {
    // [K8S-NP] "Dynamic port assignment will use the upper band by default,
    // once this has been exhausted it will use the lower range."
    let mut rng = StdRng::seed_from_u64(4);
    let mut a = NodePortAllocator::new("30000-30127".parse().unwrap());
    a.allocate(30003, "static").unwrap();
    let mut got = Vec::new();
    while let Ok(p) = a.allocate_dynamic(&mut rng, "dyn") {
        got.push(p);
    }
    assert_eq!(got.len(), 127);
    assert!(got[..112].iter().all(|p| *p >= 30016));
    assert!(got[112..].iter().all(|p| *p < 30016));
    assert_eq!(a.owner(30003), Some(&"static"));
    assert_eq!(a.release_owner(&"static"), [30003]);
    assert_eq!(a.allocate_dynamic(&mut rng, "dyn"), Ok(30003));
}

#[test]
fn port_range_text() {
    // Kubernetes' ParsePortRange forms: "a-b", "a+n", "a".
    assert_eq!("30000-32767".parse::<PortRange>(), Ok(PortRange::default()));
    assert_eq!("30000+2767".parse::<PortRange>(), Ok(PortRange::default()));
    assert_eq!(
        " 8080 ".parse::<PortRange>().unwrap().to_string(),
        "8080-8080"
    );
    assert!(matches!(
        "".parse::<PortRange>(),
        Err(PortRangeError::InvalidPort(_))
    ));
    assert!(matches!(
        "1-x".parse::<PortRange>(),
        Err(PortRangeError::InvalidPort(_))
    ));
    assert!(matches!(
        "65536".parse::<PortRange>(),
        Err(PortRangeError::InvalidPort(_))
    ));
    assert!(matches!(
        "-1".parse::<PortRange>(),
        Err(PortRangeError::InvalidPort(_))
    ));
    assert_eq!(
        "2-1".parse::<PortRange>(),
        Err(PortRangeError::Inverted { first: 2, last: 1 })
    );
    assert_eq!(
        "65000+1000".parse::<PortRange>(),
        Err(PortRangeError::TooLong {
            base: 65000,
            offset: 1000
        })
    );
}

#[test]
fn metallb_pool_examples() {
    // [METALLB] the documentation's pool: a CIDR, a range and an IPv6 CIDR.
    let mut pool = AddressPool::parse(
        [
            "192.168.10.0/24",
            "192.168.9.1-192.168.9.5",
            "fc00:f853:0ccd:e799::/124",
        ],
        false,
    )
    .unwrap();
    assert_eq!(pool.capacity(), 256 + 5 + 16);
    // First fit in the order given: the /24 first, from its first address
    // (a pool has no network address to skip).
    assert_eq!(pool.allocate(IpFamily::V4, 1), Ok(ip("192.168.10.0")));
    assert_eq!(
        pool.allocate(IpFamily::V6, 2),
        Ok(ip("fc00:f853:ccd:e799::"))
    );
    for n in 1..256 {
        assert_eq!(
            pool.allocate(IpFamily::V4, 3),
            Ok(ip(&format!("192.168.10.{n}")))
        );
    }
    // The /24 is full: on to the range.
    assert_eq!(pool.allocate(IpFamily::V4, 4), Ok(ip("192.168.9.1")));
    // A released address is the first fit again.
    assert_eq!(pool.release(ip("192.168.10.7")), Ok(3));
    assert_eq!(pool.allocate(IpFamily::V4, 5), Ok(ip("192.168.10.7")));
    // [METALLB] a single address as a /32.
    let mut single = AddressPool::parse(["42.176.25.64/32"], false).unwrap();
    assert_eq!(single.allocate(IpFamily::V4, ()), Ok(ip("42.176.25.64")));
    assert_eq!(
        single.allocate(IpFamily::V4, ()),
        Err(AllocError::Exhausted)
    );
    assert_eq!(
        single.allocate(IpFamily::V6, ()),
        Err(AllocError::Exhausted)
    );
}

#[test]
fn metallb_avoid_buggy_ips() {
    // [METALLB] avoidBuggyIPs: no address ending in .0 or .255, neither
    // first fit nor on request; IPv6 unaffected; the capacity leaves them
    // out (2 per /24).
    let mut pool = AddressPool::parse(["192.168.10.0/23", "fc00::/127"], true).unwrap();
    assert_eq!(pool.capacity(), 512 - 4 + 2);
    assert_eq!(pool.allocate(IpFamily::V4, ()), Ok(ip("192.168.10.1")));
    assert_eq!(
        pool.allocate_ip(ip("192.168.10.255"), ()),
        Err(AllocError::Reserved(ip("192.168.10.255")))
    );
    assert_eq!(
        pool.allocate_ip(ip("192.168.11.0"), ()),
        Err(AllocError::Reserved(ip("192.168.11.0")))
    );
    let mut all = vec![ip("192.168.10.1")];
    while let Ok(a) = pool.allocate(IpFamily::V4, ()) {
        all.push(a);
    }
    assert_eq!(all.len(), 508);
    assert!(
        all.iter()
            .all(|a| !matches!(a, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255)))
    );
    assert_eq!(pool.allocate(IpFamily::V6, ()), Ok(ip("fc00::")));
    // Without the option .0 and .255 are ordinary addresses.
    let mut plain = AddressPool::parse(["192.168.10.255-192.168.11.0"], false).unwrap();
    assert_eq!(plain.allocate(IpFamily::V4, ()), Ok(ip("192.168.10.255")));
    assert_eq!(plain.allocate(IpFamily::V4, ()), Ok(ip("192.168.11.0")));
}

#[test]
fn metallb_range_text() {
    // [METALLB] CIDR (host bits ignored, as Go's net.ParseCIDR) or
    // first-last, spaces around the addresses allowed.
    let r: PoolRange = "192.168.1.5/24".parse().unwrap();
    assert_eq!(
        (s(r.first()), s(r.last())),
        ("192.168.1.0".into(), "192.168.1.255".into())
    );
    let r: PoolRange = " 192.168.9.1 -192.168.9.5".parse().unwrap();
    assert_eq!(r.size(), 5);
    assert_eq!(
        "fc00::1-fc00::ff".parse::<PoolRange>().unwrap().family(),
        IpFamily::V6
    );
    type Check = fn(&PoolRangeError) -> bool;
    let rows: [(&str, Check); 6] = [
        ("192.168.9.5-192.168.9.1", |e| {
            matches!(e, PoolRangeError::StartAfterEnd { .. })
        }),
        ("192.168.9.1-fc00::1", |e| {
            matches!(e, PoolRangeError::MixedFamilies { .. })
        }),
        ("192.168.9.1-", |e| {
            matches!(e, PoolRangeError::InvalidAddress(_))
        }),
        ("192.168.9.1", |e| {
            matches!(e, PoolRangeError::InvalidCidr(_))
        }),
        ("192.168.9.0/33", |e| {
            matches!(e, PoolRangeError::InvalidCidr(_))
        }),
        ("", |e| matches!(e, PoolRangeError::InvalidCidr(_))),
    ];
    for (text, want) in rows {
        let err = text.parse::<PoolRange>().unwrap_err();
        assert!(want(&err), "{text}: {err:?}");
    }
    // [METALLB] overlapping ranges are refused; an empty pool too.
    assert!(matches!(
        AddressPool::<()>::parse(["192.168.10.0/24", "192.168.10.128/25"], false),
        Err(PoolError::Overlap { .. })
    ));
    assert!(matches!(
        AddressPool::<()>::parse(Vec::<&str>::new(), false),
        Err(PoolError::Empty)
    ));
}

#[test]
fn a_huge_ipv6_pool_is_used_from_its_start() {
    // MetalLB accepts IPv6 pools as wide as a /64; first fit only ever
    // reaches their first addresses, which are all we allocate from.
    let mut pool = AddressPool::parse(["2001:db8::/64"], false).unwrap();
    assert_eq!(pool.capacity(), 1 << 64);
    assert_eq!(pool.allocate(IpFamily::V6, ()), Ok(ip("2001:db8::")));
    let far = ip("2001:db8::ffff:ffff:ffff:ffff");
    assert_eq!(pool.allocate_ip(far, ()), Err(AllocError::OutOfRange(far)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// First fit over random pools of IPv4 ranges, with random requests and
    /// releases, gives the lowest free allowed address of the first range
    /// with one, as a set model computes it.
    #[test]
    fn pool_first_fit_matches_a_model(
        starts in proptest::collection::vec((0u32..4, 0u32..300, 1u32..40), 1..4),
        avoid in any::<bool>(),
        ops in proptest::collection::vec((0u8..3, 0u32..1200), 1..120),
    ) {
        // Disjoint ranges: range i lives in 198.18.i.x .. the next /22.
        let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
        let ranges: Vec<(u32, u32)> = starts.iter().enumerate().map(|(i, (_, off, len))| {
            let first = base + (i as u32) * 1024 + off;
            (first, first + len - 1)
        }).collect();
        let texts: Vec<String> = ranges.iter().map(|(a, b)| format!("{}-{}", std::net::Ipv4Addr::from(*a), std::net::Ipv4Addr::from(*b))).collect();
        let mut pool = AddressPool::parse(&texts, avoid).unwrap();
        let allowed = |a: u32| !(avoid && matches!(a & 0xff, 0 | 255));
        let order: Vec<u32> = ranges.iter().flat_map(|(a, b)| *a..=*b).filter(|a| allowed(*a)).collect();
        let mut used = BTreeSet::new();
        for (op, at) in ops {
            let v4 = |a: u32| IpAddr::from(std::net::Ipv4Addr::from(a));
            match op {
                0 => {
                    let want = order.iter().find(|a| !used.contains(*a)).copied();
                    let got = pool.allocate(IpFamily::V4, ());
                    prop_assert_eq!(got.clone().ok(), want.map(v4));
                    if let Some(w) = want { used.insert(w); } else { prop_assert_eq!(got, Err(AllocError::Exhausted)); }
                }
                1 => {
                    let a = base + at;
                    let got = pool.allocate_ip(v4(a), ());
                    let inside = ranges.iter().any(|(x, y)| (*x..=*y).contains(&a));
                    if !inside {
                        prop_assert_eq!(got, Err(AllocError::OutOfRange(v4(a))));
                    } else if !allowed(a) {
                        prop_assert_eq!(got, Err(AllocError::Reserved(v4(a))));
                    } else if used.insert(a) {
                        prop_assert_eq!(got, Ok(()));
                    } else {
                        prop_assert_eq!(got, Err(AllocError::AlreadyAllocated(v4(a))));
                    }
                }
                _ => {
                    if let Some(a) = used.iter().nth(at as usize % (used.len() + 1)).copied() {
                        prop_assert_eq!(pool.release(v4(a)), Ok(()));
                        used.remove(&a);
                    }
                }
            }
            prop_assert_eq!(pool.used(), used.len() as u64);
        }
    }

    /// Whatever the range and the seed, dynamic allocation hands out every
    /// usable port exactly once, the dynamic band's before the static
    /// band's.
    #[test]
    fn node_ports_dynamic_is_total_and_banded(first in 1000u16..2000, len in 0u16..600, seed in any::<u64>()) {
        let range = PortRange::new(first, first + len).unwrap();
        let mut a = NodePortAllocator::new(range);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut got = Vec::new();
        while let Ok(p) = a.allocate_dynamic(&mut rng, ()) {
            got.push(p);
        }
        prop_assert_eq!(got.len() as u32, range.size());
        prop_assert_eq!(got.iter().collect::<BTreeSet<_>>().len() as u32, range.size());
        let dynamic = (range.size() as u64 - a.band_offset()) as usize;
        let lo = a.dynamic_band().0;
        prop_assert!(got[..dynamic].iter().all(|p| *p >= lo));
        prop_assert!(got[dynamic..].iter().all(|p| *p < lo));
    }
}

proptest! {
    /// The range parsers never panic on any text, and what they accept
    /// prints back to text they read as the same range.
    #[test]
    fn range_texts_never_panic_and_round_trip(text in "\\PC{0,40}") {
        if let Ok(r) = text.parse::<PoolRange>() {
            prop_assert_eq!(r.to_string().parse::<PoolRange>(), Ok(r));
        }
        if let Ok(p) = text.parse::<PortRange>() {
            prop_assert_eq!(p.to_string().parse::<PortRange>(), Ok(p));
        }
    }

    /// Every valid range, printed, reads back as itself.
    #[test]
    fn pool_and_port_ranges_round_trip(a in any::<u32>(), b in any::<u32>(), c in any::<u128>(), d in any::<u128>(), p in any::<u16>(), q in any::<u16>()) {
        let v4 = PoolRange::new(IpAddr::from(a.min(b).to_be_bytes()), IpAddr::from(a.max(b).to_be_bytes())).unwrap();
        let v6 = PoolRange::new(IpAddr::from(c.min(d).to_be_bytes()), IpAddr::from(c.max(d).to_be_bytes())).unwrap();
        for r in [v4, v6] {
            prop_assert_eq!(r.to_string().parse::<PoolRange>(), Ok(r));
        }
        let ports = PortRange::new(p.min(q), p.max(q)).unwrap();
        prop_assert_eq!(ports.to_string().parse::<PortRange>(), Ok(ports));
    }
}

#[test]
fn extreme_ranges_are_refused_or_capped_never_overflow() {
    let top = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    // A pool of the very last IPv6 address.
    let mut pool = AddressPool::parse([format!("{top}/128")], false).unwrap();
    assert_eq!(pool.allocate(IpFamily::V6, ()), Ok(ip(top)));
    let mut pool = AddressPool::parse([format!("ffff::-{top}")], false).unwrap();
    assert_eq!(pool.allocate(IpFamily::V6, ()), Ok(ip("ffff::")));
    // The whole IPv6 space as a pool range.
    let all: PoolRange = "::/0".parse().unwrap();
    assert_eq!(all.size(), u128::MAX);
    assert!(matches!(
        ServiceIpAllocator::<()>::new(format!("{top}/128").parse().unwrap()),
        Err(AllocError::Empty)
    ));
    let mut s = ServiceIpAllocator::<()>::new("ffff::/16".parse().unwrap()).unwrap();
    assert_eq!(s.band_offset(), 256);
    assert_eq!(s.lowest_free(), Some(ip("ffff::1")));
    let mut rng = StdRng::seed_from_u64(9);
    assert!(s.allocate_dynamic(&mut rng, ()).is_ok());
    assert!(matches!(
        overlay_ipam::alloc::IpAllocator::<()>::for_range(ip("::"), ip(top)),
        Err(AllocError::TooLarge { size: u128::MAX })
    ));
    let all_v4 = ServiceIpAllocator::<()>::new("0.0.0.0/0".parse().unwrap()).unwrap();
    assert_eq!(all_v4.free(), (1 << 32) - 2);
}
