//! The planner: desired peers against the kernel state of the VXLAN device,
//! to the list of changes that makes the kernel hold exactly the desired
//! peers. Pure: [`Planner::plan`] reads a [`Current`] (filled from dumps or
//! notifications by the [mirror](super::mirror)) and returns requests
//! without sending them, so tests drive it without a socket.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use overlay_core::MacAddr;

use super::peer::{Change, ReconcileReport, RemotePeer, RouteMetric};
use crate::error::{Error, InvalidInput, Result};
use crate::fdb::FdbEntry;
use crate::neighbour::Neighbour;
use crate::route::{Route, TABLE_MAIN};
use crate::transport::Request;

/// What the kernel holds on the VXLAN device.
#[derive(Debug, Default)]
pub(super) struct Current {
    /// Permanent or not: address -> (MAC, permanent).
    pub(super) neighbours: HashMap<IpAddr, (Option<MacAddr>, bool)>,
    /// MAC -> destinations of `self` entries with a destination, in the
    /// kernel's order.
    pub(super) fdb: HashMap<MacAddr, Vec<(IpAddr, bool)>>,
    /// Main-table routes with a gateway on the device, by destination (one
    /// per metric: the kernel's key is destination and metric).
    pub(super) routes: HashMap<IpNet, Vec<RouteSeen>>,
}

impl Current {
    /// Empty, with room for about `n` peers.
    pub(super) fn with_capacity(n: usize) -> Self {
        Current {
            neighbours: HashMap::with_capacity(n),
            fdb: HashMap::with_capacity(n),
            routes: HashMap::with_capacity(n),
        }
    }
}

/// The fields of an installed route that reconcile compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RouteSeen {
    pub(super) gateway: Option<IpAddr>,
    pub(super) onlink: bool,
    pub(super) metric: Option<u32>,
}

impl RouteSeen {
    /// The metric as the kernel keys routes (IPv4 omits a metric of 0).
    pub(super) fn key(&self) -> u32 {
        self.metric.unwrap_or(0)
    }
}

/// What reconcile wants, as sets (built while validating the input).
#[derive(Debug)]
pub(super) struct Wanted {
    ips: HashSet<IpAddr>,
    macs: HashSet<MacAddr>,
    cidrs: HashSet<IpNet>,
}

impl Wanted {
    /// Validate `desired` (each peer, and no VTEP address, VTEP MAC or pod
    /// range claimed twice) and collect what it claims.
    pub(super) fn new(operation: &'static str, desired: &[RemotePeer]) -> Result<Self> {
        let mut wanted = Wanted {
            ips: HashSet::with_capacity(desired.len()),
            macs: HashSet::with_capacity(desired.len()),
            cidrs: HashSet::with_capacity(desired.len()),
        };
        for peer in desired {
            peer.validate(operation)?;
            let duplicate = if !wanted.ips.insert(peer.vtep_ip) {
                Some(("VTEP address", peer.vtep_ip.to_string()))
            } else if !wanted.macs.insert(peer.vtep_mac) {
                Some(("VTEP MAC", peer.vtep_mac.to_string()))
            } else {
                peer.pod_cidrs
                    .iter()
                    .find(|c| !wanted.cidrs.insert(**c))
                    .map(|c| ("pod range", c.to_string()))
            };
            if let Some((what, value)) = duplicate {
                return Err(Error::invalid(
                    operation,
                    peer.underlay,
                    InvalidInput::DuplicatePeerItem { what, value },
                ));
            }
        }
        Ok(wanted)
    }
}

/// The outcome of comparing desired peers with the kernel state: the
/// report so far and the changes to make, in order.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) report: ReconcileReport,
    pub(super) changes: Vec<(Change, Request)>,
}

/// The overlay's objects on one VXLAN device, and the comparison of desired
/// peers with what the kernel holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planner {
    /// The VXLAN device index.
    pub(super) vxlan: u32,
    /// The metric policy of the routes to pod ranges.
    pub(super) metric: RouteMetric,
}

impl Planner {
    /// The permanent neighbour entry of `peer`'s VTEP.
    pub(super) fn neighbour(&self, peer: &RemotePeer) -> Neighbour {
        Neighbour::permanent(self.vxlan, peer.vtep_ip, peer.vtep_mac)
    }

    /// The FDB entry of `peer`'s VTEP MAC towards its underlay address.
    pub(super) fn fdb(&self, peer: &RemotePeer) -> FdbEntry {
        FdbEntry::new(self.vxlan, peer.vtep_mac).dst(peer.underlay)
    }

    /// The on-link route to `cidr` via `gateway`.
    pub(super) fn route(&self, cidr: IpNet, gateway: IpAddr) -> Route {
        Route::new(cidr)
            .gateway(gateway)
            .dev(self.vxlan)
            .onlink()
            .metric(self.metric.metric_for(&cidr))
    }

    /// The removal of the FDB entry `mac` -> `dst`.
    pub(super) fn delete_fdb(&self, mac: MacAddr, dst: IpAddr) -> (Change, Request) {
        let entry = FdbEntry::new(self.vxlan, mac).dst(dst);
        (
            Change::DeleteFdb { mac, dst },
            Request::new(RouteNetlinkMessage::DelNeighbour(entry.message()), 0),
        )
    }

    /// The removal of the route to `destination` held as `seen`.
    pub(super) fn delete_route(&self, destination: IpNet, seen: &RouteSeen) -> (Change, Request) {
        let mut del = Route::new(destination).dev(self.vxlan).table(TABLE_MAIN);
        del.metric = seen.metric;
        (
            Change::DeleteRoute { destination },
            Request::new(RouteNetlinkMessage::DelRoute(del.message(true)), 0),
        )
    }

    /// Compare `desired` with `current`: what is present, what to install,
    /// what to remove.
    pub(super) fn plan(&self, desired: &[RemotePeer], wanted: &Wanted, current: &Current) -> Plan {
        let mut report = ReconcileReport::default();
        let mut removals: Vec<(Change, Request)> = Vec::new();
        let mut neigh_reqs = Vec::new();
        let mut fdb_reqs = Vec::new();
        let mut route_reqs = Vec::new();

        for peer in desired {
            let mut present = 0usize;
            let mut missing = 0usize;

            match current.neighbours.get(&peer.vtep_ip) {
                Some((mac, true)) if *mac == Some(peer.vtep_mac) => present += 1,
                found => {
                    present += usize::from(found.is_some());
                    missing += 1;
                    neigh_reqs.push((
                        Change::ReplaceNeighbour {
                            ip: peer.vtep_ip,
                            mac: peer.vtep_mac,
                        },
                        Request::new(
                            RouteNetlinkMessage::NewNeighbour(self.neighbour(peer).message()),
                            NLM_F_CREATE | NLM_F_REPLACE,
                        ),
                    ));
                }
            }
            let dsts = current
                .fdb
                .get(&peer.vtep_mac)
                .map_or(&[][..], Vec::as_slice);
            for (dst, _) in dsts.iter().filter(|(dst, _)| *dst != peer.underlay) {
                removals.push(self.delete_fdb(peer.vtep_mac, *dst));
            }
            if dsts.contains(&(peer.underlay, true)) {
                present += 1;
            } else {
                present += usize::from(!dsts.is_empty());
                missing += 1;
                fdb_reqs.push((
                    Change::ReplaceFdb {
                        mac: peer.vtep_mac,
                        dst: peer.underlay,
                    },
                    Request::new(
                        RouteNetlinkMessage::NewNeighbour(self.fdb(peer).message()),
                        NLM_F_CREATE | NLM_F_REPLACE,
                    ),
                ));
            }
            for cidr in &peer.pod_cidrs {
                // The kernel stores metric 0 of an IPv6 route as 1024.
                let metric = match (self.metric.metric_for(cidr), cidr) {
                    (0, IpNet::V6(_)) => 1024,
                    (m, _) => m,
                };
                let held = current.routes.get(cidr).map_or(&[][..], Vec::as_slice);
                // A route with another metric is another route: remove it,
                // or both would stay.
                let mut other_metric = false;
                for seen in held.iter().filter(|s| s.key() != metric) {
                    other_metric = true;
                    removals.push(self.delete_route(*cidr, seen));
                }
                let right = held
                    .iter()
                    .any(|r| r.gateway == Some(peer.vtep_ip) && r.onlink && r.key() == metric);
                if right && !other_metric {
                    present += 1;
                } else {
                    present += usize::from(!held.is_empty());
                    missing += 1;
                }
                if !right {
                    route_reqs.push((
                        Change::ReplaceRoute {
                            destination: *cidr,
                            gateway: peer.vtep_ip,
                        },
                        Request::new(
                            RouteNetlinkMessage::NewRoute(
                                self.route(*cidr, peer.vtep_ip).message(false),
                            ),
                            NLM_F_CREATE | NLM_F_REPLACE,
                        ),
                    ));
                }
            }
            if missing == 0 {
                report.unchanged.push(peer.underlay);
            } else if present == 0 {
                report.added.push(peer.underlay);
            } else {
                report.updated.push(peer.underlay);
            }
        }

        // What no desired peer claims, removed in reverse order of
        // installation: routes, FDB entries, neighbour entries.
        let mut stale_routes: Vec<(&IpNet, &RouteSeen)> = current
            .routes
            .iter()
            .filter(|(dst, _)| !wanted.cidrs.contains(*dst))
            .flat_map(|(dst, held)| held.iter().map(move |seen| (dst, seen)))
            .collect();
        stale_routes.sort_by_key(|(dst, seen)| (**dst, seen.key()));
        for (dst, seen) in stale_routes {
            removals.push(self.delete_route(*dst, seen));
        }
        let mut stale_fdb: Vec<(&MacAddr, &Vec<(IpAddr, bool)>)> = current
            .fdb
            .iter()
            .filter(|(mac, _)| !wanted.macs.contains(*mac))
            .collect();
        stale_fdb.sort_by_key(|(mac, _)| **mac);
        report.removed_peers = stale_fdb.len();
        for (mac, dsts) in stale_fdb {
            for (dst, _) in dsts {
                removals.push(self.delete_fdb(*mac, *dst));
            }
        }
        let mut stale_neigh: Vec<IpAddr> = current
            .neighbours
            .iter()
            .filter(|(ip, (_, permanent))| *permanent && !wanted.ips.contains(*ip))
            .map(|(ip, _)| *ip)
            .collect();
        stale_neigh.sort();
        for ip in stale_neigh {
            removals.push((
                Change::DeleteNeighbour { ip },
                Request::new(
                    RouteNetlinkMessage::DelNeighbour(Neighbour::delete_message(self.vxlan, ip)),
                    0,
                ),
            ));
        }

        let mut changes = removals;
        changes.extend(neigh_reqs);
        changes.extend(fdb_reqs);
        changes.extend(route_reqs);
        Plan { report, changes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANNER: Planner = Planner {
        vxlan: 5,
        metric: RouteMetric::Fixed(7),
    };

    fn peer(n: u8) -> RemotePeer {
        RemotePeer::new(
            IpAddr::from([198, 51, 100, n]),
            MacAddr::new([2, 0, 0, 0, 0, n]),
            IpAddr::from([10, 244, n, 0]),
        )
        .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
    }

    /// The kernel state holding `peers` as the planner installs them.
    fn holding(peers: &[RemotePeer]) -> Current {
        let mut c = Current::default();
        for p in peers {
            c.neighbours.insert(p.vtep_ip, (Some(p.vtep_mac), true));
            c.fdb.insert(p.vtep_mac, vec![(p.underlay, true)]);
            for cidr in &p.pod_cidrs {
                c.routes.insert(
                    *cidr,
                    vec![RouteSeen {
                        gateway: Some(p.vtep_ip),
                        onlink: true,
                        metric: Some(7),
                    }],
                );
            }
        }
        c
    }

    fn plan(desired: &[RemotePeer], current: &Current) -> Plan {
        let wanted = Wanted::new("test", desired).unwrap();
        PLANNER.plan(desired, &wanted, current)
    }

    fn changes(plan: &Plan) -> Vec<Change> {
        plan.changes.iter().map(|(c, _)| c.clone()).collect()
    }

    #[test]
    fn a_peer_missing_from_the_kernel_gets_neighbour_fdb_and_route_in_that_order() {
        let p = peer(1);
        let plan = plan(std::slice::from_ref(&p), &Current::default());
        assert_eq!(plan.report.added, vec![p.underlay]);
        assert_eq!(
            changes(&plan),
            [
                Change::ReplaceNeighbour {
                    ip: p.vtep_ip,
                    mac: p.vtep_mac
                },
                Change::ReplaceFdb {
                    mac: p.vtep_mac,
                    dst: p.underlay
                },
                Change::ReplaceRoute {
                    destination: p.pod_cidrs[0],
                    gateway: p.vtep_ip
                },
            ]
        );
        let RouteNetlinkMessage::NewRoute(route) = &plan.changes[2].1.message else {
            panic!("{:?}", plan.changes[2].1)
        };
        assert_eq!(plan.changes[2].1.flags, NLM_F_CREATE | NLM_F_REPLACE);
        assert_eq!(
            route,
            &PLANNER.route(p.pod_cidrs[0], p.vtep_ip).message(false)
        );
    }

    #[test]
    fn a_kernel_holding_exactly_the_desired_peers_needs_no_change() {
        let desired = [peer(1), peer(2)];
        let plan = plan(&desired, &holding(&desired));
        assert!(plan.changes.is_empty(), "{:?}", changes(&plan));
        assert_eq!(
            plan.report.unchanged,
            vec![peer(1).underlay, peer(2).underlay]
        );
    }

    #[test]
    fn stale_peers_are_removed_routes_first_then_fdb_then_neighbours() {
        let plan = plan(&[peer(1)], &holding(&[peer(1), peer(9)]));
        let p = peer(9);
        assert_eq!(plan.report.removed_peers, 1);
        assert_eq!(
            changes(&plan),
            [
                Change::DeleteRoute {
                    destination: p.pod_cidrs[0]
                },
                Change::DeleteFdb {
                    mac: p.vtep_mac,
                    dst: p.underlay
                },
                Change::DeleteNeighbour { ip: p.vtep_ip },
            ]
        );
    }

    #[test]
    fn a_moved_peer_loses_its_old_fdb_destination_and_gets_the_new_one() {
        let mut moved = peer(1);
        let current = holding(std::slice::from_ref(&moved));
        moved.underlay = IpAddr::from([198, 51, 100, 101]);
        let plan = plan(std::slice::from_ref(&moved), &current);
        assert_eq!(plan.report.updated, vec![moved.underlay]);
        assert_eq!(
            changes(&plan),
            [
                Change::DeleteFdb {
                    mac: moved.vtep_mac,
                    dst: IpAddr::from([198, 51, 100, 1])
                },
                Change::ReplaceFdb {
                    mac: moved.vtep_mac,
                    dst: moved.underlay
                },
            ]
        );
    }

    #[test]
    fn duplicate_claims_are_refused_before_planning() {
        let mut clash = peer(2);
        clash.vtep_ip = peer(1).vtep_ip;
        let err = Wanted::new("test", &[peer(1), clash]).unwrap_err();
        assert!(err.to_string().contains("VTEP address"), "{err}");
    }
}
