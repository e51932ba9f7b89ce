//! In-process `host-local` IPAM, interchangeable with the reference plugin.
//!
//! [`Config`] parses the network configuration `host-local` receives;
//! [`Config::allocate`], [`Config::release`], [`Config::check`],
//! [`Config::gc`] and [`Config::status`] do what the plugin's commands do,
//! on the same files ([`Store`]) under the same `flock`, so processes of the
//! reference plugin and users of this module can share one data directory
//! on a node. Allocation follows `host-local`'s order: one address per range
//! set, round-robin from the address after the set's last reservation,
//! never a gateway, a network or an IPv4 broadcast address.
//!
//! ```
//! use overlay_ipam::host_local::Config;
//!
//! let data_dir = std::env::temp_dir().join(format!("ipam-mod-doc-{}", std::process::id()));
//! let net = format!(
//!     r#"{{"cniVersion":"1.0.0","name":"pods","ipam":{{"type":"host-local","dataDir":"{}",
//!          "ranges":[[{{"subnet":"198.51.100.0/24"}}],[{{"subnet":"2001:db8::/64"}}]]}}}}"#,
//!     data_dir.display()
//! );
//! let config = Config::from_network_config(net.as_bytes(), "").unwrap();
//!
//! let a = config.allocate("container-a", "eth0").unwrap();
//! assert_eq!(a.ips[0].address.to_string(), "198.51.100.2/24");
//! assert_eq!(a.ips[0].gateway.to_string(), "198.51.100.1");
//! assert_eq!(a.ips[1].address.to_string(), "2001:db8::2/64");
//! assert!(config.check("container-a", "eth0").unwrap());
//!
//! let b = config.allocate("container-b", "eth0").unwrap();
//! assert_eq!(b.ips[0].address.to_string(), "198.51.100.3/24");
//!
//! // GC keeps only the attachments still in use.
//! let released = config.gc(&[("container-b", "eth0")]).unwrap();
//! assert_eq!(released.len(), 2);
//! config.release("container-b", "eth0").unwrap();
//! # std::fs::remove_dir_all(&data_dir).unwrap();
//! ```

mod config;
mod ipam;
mod store;

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

pub use config::{Config, ConfigError, DEFAULT_DATA_DIR, RouteSpec};
pub use ipam::{ALLOC_ERROR_CODE, HostLocalIpam};
/// The result's DNS settings (one definition, `overlay-cni`'s).
pub use overlay_cni::config::Dns;
pub use store::{LockedStore, Owner, Reservation, Store, StoreError};

/// Why an allocation failed. Nothing stays reserved after a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `resolvConf` cannot be read.
    #[error("cannot read resolvConf {path}: {source}")]
    ResolvConf {
        /// The configured path.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// Every address of a range set is taken.
    #[error(
        "failed to allocate for range {index}: no IP addresses available in range set: {range_set}"
    )]
    Exhausted {
        /// The range set's index.
        index: usize,
        /// The range set (`start-end,...`).
        range_set: String,
    },
    /// The attachment already holds an address of a range set.
    #[error(
        "failed to allocate for range {index}: {ip} has been allocated to {container_id}, duplicate allocation is not allowed"
    )]
    Duplicate {
        /// The range set's index.
        index: usize,
        /// The address it holds.
        ip: IpAddr,
        /// The container ID.
        container_id: String,
    },
    /// A requested address is a range's gateway.
    #[error("failed to allocate for range {index}: requested ip {ip} is subnet's gateway")]
    RequestedGateway {
        /// The range set's index.
        index: usize,
        /// The address.
        ip: IpAddr,
    },
    /// A requested address is taken.
    #[error(
        "failed to allocate for range {index}: requested IP address {ip} is not available in range set {range_set}"
    )]
    RequestedTaken {
        /// The range set's index.
        index: usize,
        /// The address.
        ip: IpAddr,
        /// The range set (`start-end,...`).
        range_set: String,
    },
    /// Requested addresses lie in no range set.
    #[error("failed to allocate all requested IPs: {}", display_ips(.0))]
    RequestedOutside(Vec<IpAddr>),
}

fn display_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllocatedIp {
    /// The address with its subnet's prefix length.
    pub address: IpNet,
    /// The gateway of its range.
    pub gateway: IpAddr,
}

/// Parse a `resolv.conf` into the result's DNS settings as `host-local`
/// does: comments (`#`, `;`) and lines of fewer than two words are skipped;
/// `nameserver` lines in order, the last `domain`, the words of `search`
/// and `options` lines.
///
/// ```
/// let dns = overlay_ipam::host_local::parse_resolv_conf(
///     "# comment\nnameserver 192.0.2.53\nsearch a.example b.example\noptions ndots:5\ndomain example\n",
/// );
/// assert_eq!(dns.nameservers, ["192.0.2.53"]);
/// assert_eq!(dns.search, ["a.example", "b.example"]);
/// assert_eq!(dns.options, ["ndots:5"]);
/// assert_eq!(dns.domain.as_deref(), Some("example"));
/// ```
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with(['#', ';']) {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [key, first, rest @ ..] = fields.as_slice() else {
            continue;
        };
        let words = || std::iter::once(first).chain(rest).map(|w| w.to_string());
        match *key {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = Some(first.to_string()),
            "search" => dns.search.extend(words()),
            "options" => dns.options.extend(words()),
            _ => {}
        }
    }
    dns
}

/// What [`Config::gc_with`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct GcOutcome<E> {
    /// The addresses released (their attachments were torn down).
    pub released: Vec<IpAddr>,
    /// The stale attachments whose teardown failed, with their addresses,
    /// which stay reserved, and the teardown's error.
    pub kept: Vec<(Owner, Vec<IpAddr>, E)>,
}

/// The result of [`Config::allocate`]: what `host-local` prints for `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Allocation {
    /// One address per range set, in the order of the sets.
    pub ips: Vec<AllocatedIp>,
    /// The configured routes.
    pub routes: Vec<RouteSpec>,
    /// DNS settings from `resolvConf` (empty without it).
    pub dns: Dns,
}

impl Config {
    fn open_store(&self) -> Result<Store, StoreError> {
        Store::open(&self.data_dir, &self.network)
    }

    /// `ADD`: reserve one address per range set for the attachment, under
    /// the store's lock. Requested addresses ([`Config::requested_ips`]) are
    /// taken from the set that holds them. On any failure, the addresses
    /// reserved by this call are released.
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<Allocation, AllocError> {
        let dns = match &self.resolv_conf {
            Some(path) => parse_resolv_conf(&std::fs::read_to_string(path).map_err(|source| {
                AllocError::ResolvConf {
                    path: path.clone(),
                    source,
                }
            })?),
            None => Dns::default(),
        };
        let store = self.open_store()?;
        let locked = store.lock()?;
        let mut reserved: Vec<IpAddr> = Vec::new();
        let result = self.allocate_locked(&locked, container_id, ifname, &mut reserved);
        if result.is_err() {
            for ip in reserved {
                let _ = locked.remove(ip);
            }
        }
        Ok(Allocation {
            ips: result?,
            routes: self.routes.clone(),
            dns,
        })
    }

    fn allocate_locked(
        &self,
        store: &LockedStore<'_>,
        container_id: &str,
        ifname: &str,
        reserved: &mut Vec<IpAddr>,
    ) -> Result<Vec<AllocatedIp>, AllocError> {
        let mut requested = self.requested_ips.clone();
        let mut ips = Vec::with_capacity(self.ranges.len());
        let held = store.get_by_id(container_id, ifname)?;
        for (index, set) in self.ranges.iter().enumerate() {
            let wanted = requested.iter().position(|ip| set.contains(*ip));
            if let Some(ip) = wanted.map(|i| requested.remove(i)) {
                // `wanted` was found by `set.contains`.
                let Some(range) = set.range_for(ip) else {
                    continue;
                };
                if ip == range.gateway() {
                    return Err(AllocError::RequestedGateway { index, ip });
                }
                if !store.reserve(container_id, ifname, ip, index)? {
                    return Err(AllocError::RequestedTaken {
                        index,
                        ip,
                        range_set: set.to_string(),
                    });
                }
                reserved.push(ip);
                ips.push(AllocatedIp {
                    address: range.with_prefix(ip),
                    gateway: range.gateway(),
                });
                continue;
            }
            if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
                return Err(AllocError::Duplicate {
                    index,
                    ip: *ip,
                    container_id: container_id.to_owned(),
                });
            }
            let last = store.last_reserved_ip(index)?;
            let mut got = None;
            for (ip, range) in set.candidates(last) {
                if store.reserve(container_id, ifname, ip, index)? {
                    got = Some(AllocatedIp {
                        address: range.with_prefix(ip),
                        gateway: range.gateway(),
                    });
                    reserved.push(ip);
                    break;
                }
            }
            ips.push(got.ok_or_else(|| AllocError::Exhausted {
                index,
                range_set: set.to_string(),
            })?);
        }
        if !requested.is_empty() {
            return Err(AllocError::RequestedOutside(requested));
        }
        Ok(ips)
    }

    /// `DEL`: release the attachment's addresses (see [`LockedStore::release`])
    /// and return them. Releasing nothing is success.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        let store = self.open_store()?;
        let locked = store.lock()?;
        locked.release(container_id, ifname)
    }

    /// `CHECK`: whether the attachment holds an address of this network.
    pub fn check(&self, container_id: &str, ifname: &str) -> Result<bool, StoreError> {
        let store = self.open_store()?;
        let locked = store.lock()?;
        Ok(!locked.get_by_id(container_id, ifname)?.is_empty())
    }

    /// `GC`: release every reservation whose owner is not one of the
    /// `valid` attachments (container ID, interface name) and return the
    /// released addresses. Files of old versions (container ID only) stay
    /// while a valid attachment has that container ID.
    pub fn gc<C: AsRef<str>, I: AsRef<str>>(
        &self,
        valid: &[(C, I)],
    ) -> Result<Vec<IpAddr>, StoreError> {
        let outcome = self.gc_with(valid, |_, _| Ok::<(), std::convert::Infallible>(()))?;
        Ok(outcome.released)
    }

    /// `GC` that releases each stale attachment whole or not at all.
    ///
    /// Under the store's lock, every attachment holding a reservation but
    /// missing from `valid` (matched as in [`Config::gc`]) is handed to
    /// `teardown`, once, with its addresses, so the caller can remove what
    /// else the attachment holds (its links, its firewall rules) first.
    /// Only when `teardown` succeeds are its reservations removed; when it
    /// fails, they stay (an address still configured on a live interface
    /// must not be handed out again) and the failure is reported in
    /// [`GcOutcome::kept`]. The lock is held throughout, so no allocation
    /// can take an address between the teardown and the release.
    ///
    /// ```
    /// use overlay_ipam::host_local::Config;
    ///
    /// let data_dir = std::env::temp_dir().join(format!("ipam-gcwith-doc-{}", std::process::id()));
    /// let net = format!(
    ///     r#"{{"cniVersion":"1.1.0","name":"pods","ipam":{{"dataDir":"{}","subnet":"198.51.100.0/24"}}}}"#,
    ///     data_dir.display()
    /// );
    /// let config = Config::from_network_config(net.as_bytes(), "").unwrap();
    /// for cid in ["live", "gone", "stuck"] {
    ///     config.allocate(cid, "eth0").unwrap();
    /// }
    /// let outcome = config
    ///     .gc_with(&[("live", "eth0")], |owner, _ips| match owner.container_id.as_str() {
    ///         "stuck" => Err("its veth cannot be deleted"),
    ///         _ => Ok(()),
    ///     })
    ///     .unwrap();
    /// assert_eq!(outcome.released.len(), 1); // gone's address
    /// assert_eq!(outcome.kept.len(), 1); // stuck's address stays reserved
    /// assert!(config.check("stuck", "eth0").unwrap());
    /// assert!(!config.check("gone", "eth0").unwrap());
    /// # std::fs::remove_dir_all(&data_dir).unwrap();
    /// ```
    pub fn gc_with<C, I, E, F>(
        &self,
        valid: &[(C, I)],
        mut teardown: F,
    ) -> Result<GcOutcome<E>, StoreError>
    where
        C: AsRef<str>,
        I: AsRef<str>,
        F: FnMut(&Owner, &[IpAddr]) -> Result<(), E>,
    {
        let store = self.open_store()?;
        let locked = store.lock()?;
        // Stale reservations grouped by owner, in a stable order.
        let mut stale: Vec<(Owner, Vec<IpAddr>)> = Vec::new();
        for r in locked.reservations()? {
            let keep = valid.iter().any(|(cid, ifname)| {
                r.owner.container_id == cid.as_ref().trim()
                    && r.owner
                        .ifname
                        .as_deref()
                        .is_none_or(|i| i == ifname.as_ref())
            });
            if keep {
                continue;
            }
            match stale.iter_mut().find(|(owner, _)| *owner == r.owner) {
                Some((_, ips)) => ips.push(r.ip),
                None => stale.push((r.owner, vec![r.ip])),
            }
        }
        stale.sort_by(|a, b| {
            (&a.0.container_id, &a.0.ifname).cmp(&(&b.0.container_id, &b.0.ifname))
        });
        let mut outcome = GcOutcome {
            released: Vec::new(),
            kept: Vec::new(),
        };
        for (owner, mut ips) in stale {
            ips.sort();
            match teardown(&owner, &ips) {
                Ok(()) => {
                    for ip in &ips {
                        locked.remove(*ip)?;
                    }
                    outcome.released.extend(ips);
                }
                Err(error) => outcome.kept.push((owner, ips, error)),
            }
        }
        Ok(outcome)
    }

    /// Whether an `ADD` could get an address now: the index of the first
    /// range set in which every allocatable address (every address
    /// [`RangeSet::candidates`](crate::range::RangeSet::candidates) yields)
    /// is reserved, or `None` when each set has a free address. Since
    /// [`Config::allocate`] takes one address from every set, one full set
    /// is enough to make it fail with [`AllocError::Exhausted`]. Requested
    /// addresses ([`Config::requested_ips`]) are not considered. The answer
    /// is read under the store's lock and may be stale as soon as it is
    /// returned.
    ///
    /// ```
    /// use overlay_ipam::host_local::Config;
    ///
    /// let data_dir = std::env::temp_dir().join(format!("ipam-full-doc-{}", std::process::id()));
    /// // 198.51.100.0/30: .1 is the gateway, .2 the only address to give.
    /// let net = format!(
    ///     r#"{{"cniVersion":"1.1.0","name":"pods","ipam":{{"dataDir":"{}",
    ///          "ranges":[[{{"subnet":"2001:db8::/64"}}],[{{"subnet":"198.51.100.0/30"}}]]}}}}"#,
    ///     data_dir.display()
    /// );
    /// let config = Config::from_network_config(net.as_bytes(), "").unwrap();
    /// assert_eq!(config.full_range_set().unwrap(), None);
    /// config.allocate("a", "eth0").unwrap();
    /// assert_eq!(config.full_range_set().unwrap(), Some(1));
    /// config.release("a", "eth0").unwrap();
    /// assert_eq!(config.full_range_set().unwrap(), None);
    /// # std::fs::remove_dir_all(&data_dir).unwrap();
    /// ```
    pub fn full_range_set(&self) -> Result<Option<usize>, StoreError> {
        let store = self.open_store()?;
        let locked = store.lock()?;
        let reserved: HashSet<IpAddr> = locked.reservations()?.into_iter().map(|r| r.ip).collect();
        for (index, set) in self.ranges.iter().enumerate() {
            let last = locked.last_reserved_ip(index)?;
            if set.candidates(last).all(|(ip, _)| reserved.contains(&ip)) {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }

    /// `STATUS`: the store can be opened and its directory is writable.
    pub fn status(&self) -> Result<(), StoreError> {
        let store = self.open_store()?;
        if store.is_writable() {
            Ok(())
        } else {
            Err(StoreError::Io {
                op: "write to",
                path: store.dir().to_path_buf(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// A data directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ovipam-hl-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(dir: &Path, ipam: &str) -> Config {
        let json = format!(
            r#"{{"cniVersion":"1.0.0","name":"net","ipam":{{"type":"host-local","dataDir":"{}",{ipam}}}}}"#,
            dir.display()
        );
        Config::from_network_config(json.as_bytes(), "").unwrap()
    }

    fn addr(a: &Allocation) -> String {
        a.ips[0].address.addr().to_string()
    }

    #[test]
    fn allocation_is_round_robin_after_release() {
        let dir = TempDir::new();
        let c = config(&dir.0, r#""subnet":"198.51.100.0/29""#);
        assert_eq!(addr(&c.allocate("a", "eth0").unwrap()), "198.51.100.2");
        assert_eq!(addr(&c.allocate("b", "eth0").unwrap()), "198.51.100.3");
        c.release("a", "eth0").unwrap();
        // .2 is free again, but allocation continues after the last one.
        assert_eq!(addr(&c.allocate("c", "eth0").unwrap()), "198.51.100.4");
    }

    #[test]
    fn a_full_range_reports_exhaustion_and_keeps_nothing() {
        let dir = TempDir::new();
        let c = config(
            &dir.0,
            r#""ranges":[[{"subnet":"2001:db8::/126"}],[{"subnet":"198.51.100.0/30"}]]"#,
        );
        c.allocate("a", "eth0").unwrap();
        // The IPv6 set has ::2 and ::3; the IPv4 set only .2.
        let err = c.allocate("b", "eth0").unwrap_err();
        assert!(
            matches!(err, AllocError::Exhausted { index: 1, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "failed to allocate for range 1: no IP addresses available in range set: 198.51.100.1-198.51.100.2"
        );
        assert!(
            !c.check("b", "eth0").unwrap(),
            "the IPv6 address was rolled back"
        );
    }

    #[test]
    fn a_second_add_of_the_same_attachment_is_refused() {
        let dir = TempDir::new();
        let c = config(&dir.0, r#""subnet":"198.51.100.0/24""#);
        c.allocate("a", "eth0").unwrap();
        assert!(matches!(
            c.allocate("a", "eth0"),
            Err(AllocError::Duplicate { index: 0, .. })
        ));
        // Another interface of the same container is another attachment.
        assert_eq!(addr(&c.allocate("a", "eth1").unwrap()), "198.51.100.3");
    }

    #[test]
    fn requested_addresses_are_honoured_or_refused_with_the_reason() {
        let dir = TempDir::new();
        let base = format!(
            r#"{{"cniVersion":"1.0.0","name":"net","ipam":{{"dataDir":"{}","subnet":"198.51.100.0/24"}}}}"#,
            dir.0.display()
        );
        let with_args = |args: &str| Config::from_network_config(base.as_bytes(), args).unwrap();
        let got = with_args("IP=198.51.100.77").allocate("a", "eth0").unwrap();
        assert_eq!(addr(&got), "198.51.100.77");
        assert!(matches!(
            with_args("IP=198.51.100.77").allocate("b", "eth0"),
            Err(AllocError::RequestedTaken { .. })
        ));
        assert!(matches!(
            with_args("IP=198.51.100.1").allocate("b", "eth0"),
            Err(AllocError::RequestedGateway { .. })
        ));
        assert!(matches!(
            with_args("IP=203.0.113.5").allocate("b", "eth0"),
            Err(AllocError::RequestedOutside(ips)) if ips.len() == 1
        ));
        assert!(!with_args("").check("b", "eth0").unwrap());
    }

    #[test]
    fn gc_keeps_valid_attachments_only() {
        let dir = TempDir::new();
        let c = config(&dir.0, r#""subnet":"198.51.100.0/24""#);
        for cid in ["a", "b", "c"] {
            c.allocate(cid, "eth0").unwrap();
        }
        let released = c.gc(&[("b", "eth0"), ("c", "eth9")]).unwrap();
        assert_eq!(released.len(), 2);
        assert!(c.check("b", "eth0").unwrap());
        assert!(!c.check("a", "eth0").unwrap());
        c.status().unwrap();
    }

    #[test]
    fn gc_with_releases_an_attachment_only_after_its_teardown_succeeds() {
        let dir = TempDir::new();
        let c = config(
            &dir.0,
            r#""ranges":[[{"subnet":"198.51.100.0/24"}],[{"subnet":"2001:db8::/64"}]]"#,
        );
        for cid in ["keep", "gone", "stuck"] {
            c.allocate(cid, "eth0").unwrap();
        }
        let mut seen = Vec::new();
        let outcome = c
            .gc_with(&[("keep", "eth0")], |owner, ips| {
                seen.push((owner.container_id.clone(), ips.len()));
                match owner.container_id.as_str() {
                    "stuck" => Err("busy"),
                    _ => Ok(()),
                }
            })
            .unwrap();
        // One call per attachment, with both of its addresses.
        assert_eq!(seen, [("gone".to_owned(), 2), ("stuck".to_owned(), 2)]);
        assert_eq!(outcome.released.len(), 2);
        assert_eq!(outcome.kept.len(), 1);
        let (owner, ips, error) = &outcome.kept[0];
        assert_eq!(owner.container_id, "stuck");
        assert_eq!((ips.len(), *error), (2, "busy"));
        assert!(c.check("keep", "eth0").unwrap());
        assert!(c.check("stuck", "eth0").unwrap(), "kept whole");
        assert!(!c.check("gone", "eth0").unwrap());
        // A failed teardown is tried again by the next GC.
        let again = c
            .gc_with(&[("keep", "eth0")], |_, _| Ok::<(), ()>(()))
            .unwrap();
        assert_eq!(again.released.len(), 2);
        assert!(!c.check("stuck", "eth0").unwrap());
    }

    #[test]
    fn full_range_set_names_the_first_set_without_a_free_address() {
        let dir = TempDir::new();
        // Set 0: 198.51.100.2 and .3 (.1 is the gateway); set 1: only ::2.
        let c = config(
            &dir.0,
            r#""ranges":[[{"subnet":"198.51.100.0/29","rangeEnd":"198.51.100.3"}],
                         [{"subnet":"2001:db8::/64","rangeEnd":"2001:db8::2"}]]"#,
        );
        assert_eq!(c.full_range_set().unwrap(), None);
        c.allocate("a", "eth0").unwrap();
        assert_eq!(c.full_range_set().unwrap(), Some(1));
        assert!(matches!(
            c.allocate("b", "eth0"),
            Err(AllocError::Exhausted { index: 1, .. })
        ));
        c.release("a", "eth0").unwrap();
        assert_eq!(c.full_range_set().unwrap(), None);
        // A reservation outside every range (another writer's) frees nothing.
        let store = Store::open(&dir.0, "net").unwrap();
        store
            .lock()
            .unwrap()
            .reserve("x", "eth0", "203.0.113.9".parse().unwrap(), 7)
            .unwrap();
        assert_eq!(c.full_range_set().unwrap(), None);
    }

    #[test]
    fn resolv_conf_fills_dns_and_a_missing_file_is_an_error() {
        let dir = TempDir::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        let resolv = dir.0.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 192.0.2.53\nsearch example\n").unwrap();
        let c = config(
            &dir.0,
            &format!(
                r#""subnet":"198.51.100.0/24","resolvConf":"{}""#,
                resolv.display()
            ),
        );
        let a = c.allocate("a", "eth0").unwrap();
        assert_eq!(a.dns.nameservers, ["192.0.2.53"]);
        std::fs::remove_file(&resolv).unwrap();
        assert!(matches!(
            c.allocate("b", "eth0"),
            Err(AllocError::ResolvConf { .. })
        ));
    }

    #[test]
    fn concurrent_allocations_through_separate_stores_never_collide() {
        let dir = TempDir::new();
        let c = config(&dir.0, r#""subnet":"198.51.100.0/26""#);
        let ips: Vec<IpAddr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let c = c.clone();
                    s.spawn(move || {
                        c.allocate(&format!("c{i}"), "eth0").unwrap().ips[0]
                            .address
                            .addr()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: HashSet<IpAddr> = ips.iter().copied().collect();
        assert_eq!(distinct.len(), ips.len(), "{ips:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Against a model: no address is ever held twice, releases free
        /// addresses for reuse, and allocation fails only when every
        /// allocatable address is held.
        #[test]
        fn allocations_are_unique_reusable_and_total(
            ops in proptest::collection::vec((any::<bool>(), 0usize..12), 1..60),
        ) {
            let dir = TempDir::new();
            // 198.51.100.1-.6 minus the gateway .1: five addresses.
            let c = config(&dir.0, r#""subnet":"198.51.100.0/29""#);
            let mut held: std::collections::HashMap<usize, IpAddr> = Default::default();
            for (add, who) in ops {
                let cid = format!("c{who}");
                if add {
                    match c.allocate(&cid, "eth0") {
                        Ok(a) => {
                            prop_assert!(!held.contains_key(&who), "duplicate allowed");
                            let ip = a.ips[0].address.addr();
                            prop_assert!(!held.values().any(|h| *h == ip), "{ip} given twice");
                            held.insert(who, ip);
                        }
                        Err(AllocError::Duplicate { .. }) => prop_assert!(held.contains_key(&who)),
                        Err(AllocError::Exhausted { .. }) => prop_assert_eq!(held.len(), 5),
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                } else {
                    let released: HashSet<IpAddr> =
                        c.release(&cid, "eth0").unwrap().into_iter().collect();
                    let expected: HashSet<IpAddr> = held.remove(&who).into_iter().collect();
                    prop_assert_eq!(released, expected);
                }
            }
        }
    }
}
