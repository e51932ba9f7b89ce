//! `overlay_ipam::alloc` against simple models: random operation sequences
//! give the same results as a `BTreeMap`/`BTreeSet` model, and allocate-next
//! follows `host-local`'s round-robin order (the order of
//! `RangeSet::candidates`, and the persistent `host_local` store's
//! allocations).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use overlay_ipam::alloc::{AllocError, IpAllocator};
use overlay_ipam::host_local::Config;
use overlay_ipam::range::{Range, RangeSet, RangeSpec};
use proptest::prelude::*;

/// The allocator's behaviour in the simplest terms.
#[derive(Debug, Default)]
struct Model {
    size: u64,
    owners: BTreeMap<u64, u8>,
    reserved: BTreeSet<u64>,
    last: Option<u64>,
}

impl Model {
    fn taken(&self, off: u64) -> bool {
        self.owners.contains_key(&off) || self.reserved.contains(&off)
    }

    fn first_free(&self, from: u64, to_inclusive: u64) -> Option<u64> {
        (from..=to_inclusive).find(|&o| !self.taken(o))
    }

    fn take(&mut self, off: u64, owner: u8) -> u64 {
        self.owners.insert(off, owner);
        self.last = Some(off);
        off
    }

    fn allocate(&mut self, off: u64, owner: u8) -> Result<(), AllocError<u64>> {
        if off >= self.size {
            Err(AllocError::OutOfRange(off))
        } else if self.reserved.contains(&off) {
            Err(AllocError::Reserved(off))
        } else if self.owners.contains_key(&off) {
            Err(AllocError::AlreadyAllocated(off))
        } else {
            self.take(off, owner);
            Ok(())
        }
    }

    fn allocate_in(
        &mut self,
        lo: u64,
        hi: u64,
        start: u64,
        owner: u8,
    ) -> Result<u64, AllocError<u64>> {
        if hi >= self.size {
            return Err(AllocError::OutOfRange(hi));
        }
        if lo > hi {
            return Err(AllocError::Inverted {
                first: lo,
                last: hi,
            });
        }
        if start < lo || start > hi {
            return Err(AllocError::OutOfRange(start));
        }
        let found = self.first_free(start, hi).or_else(|| {
            (start > lo)
                .then(|| self.first_free(lo, start - 1))
                .flatten()
        });
        found
            .map(|off| self.take(off, owner))
            .ok_or(AllocError::Exhausted)
    }

    fn allocate_next(&mut self, owner: u8) -> Result<u64, AllocError<u64>> {
        let start = match self.last {
            Some(l) if l + 1 < self.size => l + 1,
            _ => 0,
        };
        self.allocate_in(0, self.size - 1, start, owner)
    }

    fn allocate_lowest(&mut self, owner: u8) -> Result<u64, AllocError<u64>> {
        self.allocate_in(0, self.size - 1, 0, owner)
    }

    fn release(&mut self, off: u64) -> Result<u8, AllocError<u64>> {
        if off >= self.size {
            Err(AllocError::OutOfRange(off))
        } else if self.reserved.contains(&off) {
            Err(AllocError::Reserved(off))
        } else {
            self.owners
                .remove(&off)
                .ok_or(AllocError::NotAllocated(off))
        }
    }

    fn release_owner(&mut self, owner: u8) -> Vec<u64> {
        let offs: Vec<u64> = self
            .owners
            .iter()
            .filter(|(_, o)| **o == owner)
            .map(|(off, _)| *off)
            .collect();
        for off in &offs {
            self.owners.remove(off);
        }
        offs
    }

    fn reserve(&mut self, off: u64) -> Result<(), AllocError<u64>> {
        if off >= self.size {
            Err(AllocError::OutOfRange(off))
        } else if self.owners.contains_key(&off) {
            Err(AllocError::AlreadyAllocated(off))
        } else {
            self.reserved.insert(off);
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Next(u8),
    Lowest(u8),
    Given(u64, u8),
    In(u64, u64, u64, u8),
    Release(u64),
    ReleaseOwner(u8),
    Reserve(u64),
    Unreserve(u64),
}

fn op(size: u64) -> impl Strategy<Value = Op> {
    // Positions a little past the end, to exercise OutOfRange.
    let at = 0..size + 3;
    let owner = 0u8..6;
    prop_oneof![
        4 => owner.clone().prop_map(Op::Next),
        1 => owner.clone().prop_map(Op::Lowest),
        2 => (at.clone(), owner.clone()).prop_map(|(a, o)| Op::Given(a, o)),
        2 => (at.clone(), at.clone(), at.clone(), owner.clone()).prop_map(|(a, b, c, o)| Op::In(a, b, c, o)),
        4 => at.clone().prop_map(Op::Release),
        1 => owner.prop_map(Op::ReleaseOwner),
        1 => at.clone().prop_map(Op::Reserve),
        1 => at.prop_map(Op::Unreserve),
    ]
}

fn family_base(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xfffe, 0))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0))
    }
}

fn add(base: IpAddr, off: u64) -> IpAddr {
    match base {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) + off as u32)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) + u128::from(off))),
    }
}

/// Run `ops` on an allocator of `size` addresses whose owners are
/// `owner(n)` and on the model (owners `n`), comparing every result.
fn run_against_model<O: Clone + Eq + Hash + std::fmt::Debug>(
    v6: bool,
    size: u64,
    ops: Vec<Op>,
    owner: impl Fn(u8) -> O,
) -> Result<(), TestCaseError> {
    let base = family_base(v6);
    let ip = |off: u64| add(base, off);
    let mut a: IpAllocator<O> = IpAllocator::for_range(base, ip(size - 1)).unwrap();
    let mut m = Model {
        size,
        ..Model::default()
    };
    let to_ip = |e: AllocError<u64>| e.map(ip);
    for op in ops {
        match op {
            Op::Next(o) => prop_assert_eq!(
                a.allocate_next(owner(o)),
                m.allocate_next(o).map(ip).map_err(to_ip)
            ),
            Op::Lowest(o) => prop_assert_eq!(
                a.allocate_lowest(owner(o)),
                m.allocate_lowest(o).map(ip).map_err(to_ip)
            ),
            Op::Given(off, o) => prop_assert_eq!(
                a.allocate(ip(off), owner(o)),
                m.allocate(off, o).map_err(to_ip)
            ),
            Op::In(lo, hi, start, o) => {
                let got = a.allocate_in(ip(lo), ip(hi), ip(start), owner(o));
                // The IP API checks every bound against the range first.
                let want = if let Some(out) = [lo, hi, start].into_iter().find(|&x| x >= size) {
                    Err(AllocError::OutOfRange(out))
                } else {
                    m.allocate_in(lo, hi, start, o)
                };
                prop_assert_eq!(got, want.map(ip).map_err(to_ip));
            }
            Op::Release(off) => prop_assert_eq!(
                a.release(ip(off)),
                m.release(off).map(&owner).map_err(to_ip)
            ),
            Op::ReleaseOwner(o) => prop_assert_eq!(
                a.release_owner(&owner(o)),
                m.release_owner(o).into_iter().map(ip).collect::<Vec<_>>()
            ),
            Op::Reserve(off) => prop_assert_eq!(a.reserve(ip(off)), m.reserve(off).map_err(to_ip)),
            Op::Unreserve(off) => prop_assert_eq!(a.unreserve(ip(off)), m.reserved.remove(&off)),
        }
        prop_assert_eq!(a.used(), m.owners.len() as u64);
        prop_assert_eq!(a.reserved_count(), m.reserved.len() as u64);
        prop_assert_eq!(
            a.free(),
            size - m.owners.len() as u64 - m.reserved.len() as u64
        );
        prop_assert_eq!(a.last_allocated(), m.last.map(ip));
    }
    let got: Vec<(IpAddr, O)> = a.iter().map(|(i, o)| (i, o.clone())).collect();
    let want: Vec<(IpAddr, O)> = m
        .owners
        .iter()
        .map(|(off, o)| (ip(*off), owner(*o)))
        .collect();
    prop_assert_eq!(got, want);
    prop_assert_eq!(
        a.reserved().collect::<Vec<_>>(),
        m.reserved.iter().map(|o| ip(*o)).collect::<Vec<_>>()
    );
    for o in 0u8..6 {
        let want: Vec<IpAddr> = m
            .owners
            .iter()
            .filter(|(_, x)| owner(**x) == owner(o))
            .map(|(off, _)| ip(*off))
            .collect();
        prop_assert_eq!(a.addresses_of(&owner(o)), want);
    }
    prop_assert_eq!(
        a.offsets().owners(),
        m.owners.values().collect::<BTreeSet<_>>().len()
    );
    for off in 0..size {
        prop_assert_eq!(
            a.owner(ip(off)).cloned(),
            m.owners.get(&off).map(|o| owner(*o))
        );
        prop_assert_eq!(a.is_free(ip(off)), !m.taken(off));
    }
    Ok(())
}

fn scenario() -> impl Strategy<Value = (bool, u64, Vec<Op>)> {
    // Sizes around a page (1024) and a summary word (4096) of the bitmap,
    // and small ones where wrapping and exhaustion happen often.
    (
        any::<bool>(),
        prop_oneof![1u64..20, 60u64..70, 1020u64..1030, 4090u64..4100],
    )
        .prop_flat_map(|(v6, size)| {
            (
                Just(v6),
                Just(size),
                proptest::collection::vec(op(size), 1..160),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every operation of `IpAllocator` gives what the model gives, and the
    /// counts, owners and iteration agree after each one.
    #[test]
    fn random_operations_match_the_model((v6, size, ops) in scenario()) {
        run_against_model(v6, size, ops, |o| o)?;
    }

    /// The same with a zero-sized owner (`()`), which keeps no owner pages:
    /// every allocation has the one owner.
    #[test]
    fn random_operations_match_the_model_without_owners((v6, size, ops) in scenario()) {
        let ops = ops.into_iter().map(|op| match op {
            Op::Next(_) => Op::Next(0),
            Op::Lowest(_) => Op::Lowest(0),
            Op::Given(a, _) => Op::Given(a, 0),
            Op::In(a, b, c, _) => Op::In(a, b, c, 0),
            Op::ReleaseOwner(_) => Op::ReleaseOwner(0),
            other => other,
        }).collect();
        run_against_model(v6, size, ops, |_| ())?;
    }

    /// After any set of used addresses and any last reservation, the next
    /// address is the first free candidate in `host-local`'s order
    /// (`RangeSet::candidates`): after the last reserved address, wrapping
    /// past the end, skipping the gateway; from `rangeStart` when the last
    /// reserved address is outside the range.
    #[test]
    fn next_is_host_locals_first_free_candidate(
        prefix in 24u8..=29,
        start_off in 0u32..8,
        len in 0u32..300,
        gw_off in 0u32..300,
        last_off in 0u32..300,
        used in proptest::collection::vec(0u32..300, 0..200),
    ) {
        let subnet = format!("198.51.100.0/{prefix}").parse().unwrap();
        let size = 1u32 << (32 - prefix);
        let base = u32::from(Ipv4Addr::new(198, 51, 100, 0));
        let start = base + 1 + start_off % (size - 2);
        let end = (start + len).min(base + size - 2);
        let gateway = base + 1 + gw_off % (size - 2);
        let v4 = |a: u32| IpAddr::V4(a.into());
        let spec = RangeSpec::new(subnet)
            .range_start(v4(start))
            .range_end(v4(end))
            .gateway(v4(gateway));
        let range = Range::new(&spec).unwrap();
        let set = RangeSet::new(vec![range.clone()]).unwrap();
        let mut a = IpAllocator::from_host_local(&range).unwrap();
        let mut used_set = BTreeSet::new();
        for u in used {
            let ip = v4(base + u % size);
            if a.allocate(ip, ()).is_ok() {
                used_set.insert(ip);
            }
        }
        let last = v4(base + last_off % size);
        a.set_last_allocated(Some(last));
        let want = set.candidates(Some(last)).map(|(ip, _)| ip).find(|ip| !used_set.contains(ip));
        prop_assert_eq!(a.next_free(), want);
        prop_assert_eq!(a.allocate_next(()).ok(), want);
    }
}

/// Cases named by `host-local`'s documented behaviour (its README: "the
/// allocator will allocate IPs round-robin from the range, starting after
/// the last reserved IP", `rangeStart`/`rangeEnd`, gateway excluded).
#[test]
fn round_robin_wraps_skips_reserved_and_starts_after_last() {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let range = Range::new(&RangeSpec::new("198.51.100.0/29".parse().unwrap())).unwrap();
    let mut a = IpAllocator::from_host_local(&range).unwrap();
    // Starts at rangeStart (.1 is the gateway, so .2).
    assert_eq!(a.allocate_next(1), Ok(ip("198.51.100.2")));
    assert_eq!(a.allocate_next(2), Ok(ip("198.51.100.3")));
    a.release(ip("198.51.100.2")).unwrap();
    // Starts after the last reserved address, not at the lowest free one.
    assert_eq!(a.allocate_next(3), Ok(ip("198.51.100.4")));
    assert_eq!(a.allocate_next(4), Ok(ip("198.51.100.5")));
    assert_eq!(a.allocate_next(5), Ok(ip("198.51.100.6")));
    // Wraps past rangeEnd (.6, before the broadcast address) and skips the
    // gateway on the way.
    assert_eq!(a.allocate_next(6), Ok(ip("198.51.100.2")));
    assert_eq!(a.allocate_next(7), Err(AllocError::Exhausted));
    // A restart with the persisted last reservation continues after it.
    a.release(ip("198.51.100.3")).unwrap();
    a.release(ip("198.51.100.5")).unwrap();
    a.set_last_allocated(Some(ip("198.51.100.4")));
    assert_eq!(a.allocate_next(8), Ok(ip("198.51.100.5")));
    assert_eq!(a.allocate_next(9), Ok(ip("198.51.100.3")));
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ovipam-alloc-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The in-memory allocator hands out the same addresses, in the same
    /// order, as the persistent `host_local` store (the reference plugin's
    /// files and `last_reserved_ip`), across allocations and releases.
    #[test]
    fn same_sequence_as_the_persistent_host_local_store(
        v6 in any::<bool>(),
        ops in proptest::collection::vec((any::<bool>(), 0u8..12), 1..40),
    ) {
        let dir = TempDir::new();
        let subnet = if v6 { "2001:db8::/124" } else { "198.51.100.0/28" };
        let net = format!(
            r#"{{"cniVersion":"1.0.0","name":"seq","type":"bridge","ipam":{{"type":"host-local","dataDir":"{}","subnet":"{subnet}"}}}}"#,
            dir.0.display()
        );
        let config = Config::from_network_config(net.as_bytes(), "").unwrap();
        let range = Range::new(&RangeSpec::new(subnet.parse().unwrap())).unwrap();
        let mut a = IpAllocator::from_host_local(&range).unwrap();
        let mut held = BTreeSet::new();
        for (add, pod) in ops {
            let cid = format!("pod-{pod}");
            if add && !held.contains(&pod) {
                let store = config.allocate(&cid, "eth0").map(|r| r.ips[0].address.addr());
                let ours = a.allocate_next(pod);
                prop_assert_eq!(store.ok(), ours.clone().ok());
                if ours.is_ok() {
                    held.insert(pod);
                }
            } else if held.remove(&pod) {
                config.release(&cid, "eth0").unwrap();
                prop_assert_eq!(a.release_owner(&pod).len(), 1);
            }
        }
    }
}
