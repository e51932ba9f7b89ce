//! The node allocator's policies: what a donor gives, whom a requester
//! asks, when the reserve asks, and the order blocks are used in.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failing test

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use overlay_core::PeerId;
use overlay_ipam::ring::{Identity, Message, Node, NodeConfig, Output, Ring, Tombstone};
use rand::SeedableRng;
use rand::rngs::StdRng;

const T0: Duration = Duration::ZERO;

fn id(n: u128) -> PeerId {
    PeerId::from_u128(n)
}

fn donation(donor: &mut Node<u32>, to: PeerId) -> Option<IpNet> {
    donor.handle_message(T0, to, Message::SpaceRequest);
    let mut got = None;
    while let Some(out) = donor.poll_output() {
        if let Output::Send {
            message: Message::Delta(d),
            ..
        } = out
        {
            got = Some(d.records[0].block);
        }
    }
    got
}

#[test]
fn a_donor_gives_its_largest_free_aligned_block_of_at_most_half_its_free_space() {
    let (a, b) = (id(1), id(2));
    let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a]).unwrap();
    let mut donor = Node::<u32>::new(Identity::new(a, 1), ring, NodeConfig::default());
    // Use .0-.99 and .200: free are .100-.199 and .201-.255 (155).
    for k in 0..100 {
        donor
            .allocate_given(T0, format!("198.18.0.{k}").parse().unwrap(), k)
            .unwrap();
    }
    donor
        .allocate_given(T0, "198.18.0.200".parse().unwrap(), 200)
        .unwrap();
    // Half of 155 is 77: the largest free aligned blocks are /26s
    // (.128/26 is free; .192/26 holds .200), so .128/26 goes.
    assert_eq!(
        donation(&mut donor, b),
        Some("198.18.0.128/26".parse().unwrap())
    );
    // 91 free left, half is 45: a /27 fits at .224 (the highest), not a /26.
    assert_eq!(
        donation(&mut donor, b),
        Some("198.18.0.224/27".parse().unwrap())
    );
    // 59 free left, half is 29: a /28, the highest of .112/28 and .208/28.
    assert_eq!(
        donation(&mut donor, b),
        Some("198.18.0.208/28".parse().unwrap())
    );
    // Never below the minimum block (/28): with 43 free, half is 21, .112/28.
    assert_eq!(
        donation(&mut donor, b),
        Some("198.18.0.112/28".parse().unwrap())
    );
    // 27 free, half is 13: nothing of a minimum block fits.
    donor.handle_message(T0, b, Message::SpaceRequest);
    assert_eq!(
        donor.poll_output(),
        Some(Output::Send {
            to: b,
            message: Message::SpaceDenied
        })
    );
    // The donor's pods never moved.
    assert_eq!(donor.allocations().len(), 101);
}

#[test]
fn a_donor_with_nothing_to_spare_denies() {
    let (a, b) = (id(1), id(2));
    let ring = Ring::from_seeds("198.18.0.0/28".parse().unwrap(), 28, &[a]).unwrap();
    let mut donor = Node::<u32>::new(Identity::new(a, 1), ring, NodeConfig::default());
    donor.handle_message(T0, b, Message::SpaceRequest);
    assert_eq!(
        donor.poll_output(),
        Some(Output::Send {
            to: b,
            message: Message::SpaceDenied
        })
    );
}

#[test]
fn requesters_choose_donors_weighted_by_advertised_free_space() {
    let (a, b, c) = (id(1), id(2), id(3));
    // a owns 3/4 of the universe, b 1/4 (b donates a quarter of a's half).
    let mut ring = Ring::from_seeds("198.18.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
    ring.write(b, "198.18.128.0/17".parse().unwrap(), b, 16384)
        .unwrap();
    ring.write(b, "198.18.192.0/18".parse().unwrap(), a, 16384)
        .unwrap();
    let free = ring.free_by_owner();
    assert_eq!((free[&a], free[&b]), (32768 + 16384, 16384));
    let mut asked: BTreeMap<PeerId, u32> = BTreeMap::new();
    for seed in 0..400 {
        let mut n = Node::<u32>::new(Identity::new(c, 1), ring.clone(), NodeConfig::default());
        n.handle_timeout(T0, &mut StdRng::seed_from_u64(seed));
        let Some(Output::Send {
            to,
            message: Message::SpaceRequest,
        }) = n.poll_output()
        else {
            panic!("no request")
        };
        *asked.entry(to).or_default() += 1;
    }
    // Expected 300 : 100.
    assert!((260..=340).contains(&asked[&a]), "{asked:?}");
    assert_eq!(asked[&a] + asked[&b], 400);
}

#[test]
fn the_reserve_asks_below_the_low_water_mark_and_not_above() {
    let (a, b) = (id(1), id(2));
    let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a, b]).unwrap();
    let cfg = NodeConfig::default().low_water(100);
    let mut n = Node::<u32>::new(Identity::new(a, 1), ring, cfg);
    let mut rng = StdRng::seed_from_u64(1);
    n.handle_timeout(T0, &mut rng);
    assert_eq!(n.poll_output(), None, "128 free, above the mark");
    for k in 0..30 {
        n.allocate(T0, k).unwrap();
    }
    n.handle_timeout(T0, &mut rng);
    let outs: Vec<_> = std::iter::from_fn(|| n.poll_output()).collect();
    assert!(
        outs.contains(&Output::Send {
            to: b,
            message: Message::SpaceRequest
        }),
        "{outs:?}"
    );
}

#[test]
fn adopted_blocks_wait_for_the_quarantine_and_are_used_last() {
    let (dead, heir) = (id(1), id(2));
    let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[dead, heir]).unwrap();
    let q = Duration::from_secs(30);
    let mut n = Node::<u32>::new(
        Identity::new(heir, 1),
        ring,
        NodeConfig::default().quarantine(q),
    );
    let t = Duration::from_secs(5);
    n.reclaim(
        t,
        Tombstone {
            peer: dead,
            up_to_incarnation: 1,
            heir,
        },
    )
    .unwrap();
    assert_eq!(n.usable_free(t), 128);
    // Inside the quarantine only the heir's own block is used.
    for k in 0..128 {
        let ip = n.allocate(t, k).unwrap();
        assert!("198.18.0.128/25".parse::<IpNet>().unwrap().contains(&ip));
    }
    assert!(n.allocate(t, 500).is_err());
    // After it, the adopted block is usable.
    let ip = n.allocate(t + q, 501).unwrap();
    assert!("198.18.0.0/25".parse::<IpNet>().unwrap().contains(&ip));
}
