//! The `host-local` IPAM configuration: parsed from the whole network
//! configuration (as every IPAM plugin receives it) and `CNI_ARGS`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use overlay_cni::args::{ArgsError, CniArgs};

use crate::range::{RangeError, RangeSet, RangeSpec};

/// The data directory `host-local` uses when `dataDir` is not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// Why a `host-local` configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The network configuration is not valid JSON of the expected shape.
    #[error("invalid network configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// The configuration has no `ipam` object.
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    /// Neither `ranges`, the legacy `subnet` nor `runtimeConfig.ipRanges` is set.
    #[error("no IP ranges specified")]
    NoRanges,
    /// A range set is invalid.
    #[error("invalid range set {index}: {source}")]
    InvalidRangeSet {
        /// The index of the range set (after the legacy and runtime ones were prepended).
        index: usize,
        /// What is wrong with it.
        source: RangeError,
    },
    /// Two range sets share addresses.
    #[error("range set {first} overlaps with {second}")]
    RangeSetsOverlap {
        /// The first set's index.
        first: usize,
        /// The second set's index.
        second: usize,
    },
    /// More than one range set of a family with a `cniVersion` below 0.3.0.
    #[error("CNI version {0:?} does not support more than 1 address per family")]
    TooManyAddressesForVersion(String),
    /// `CNI_ARGS` is malformed, or holds keys `host-local` does not know
    /// without `IgnoreUnknown=1` (the reference plugins' rules and
    /// messages, [`overlay_cni::args`]).
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// A value in `CNI_ARGS` is not valid for its key.
    #[error("CNI_ARGS: invalid value {value:?} for {key}")]
    InvalidArgsValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// The network name cannot name a directory of the store.
    #[error("network name {0:?} cannot be used as a directory name")]
    InvalidNetworkName(String),
}

/// A route handed to the container as configured (`ipam.routes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouteSpec {
    /// The destination.
    pub dst: IpNet,
    /// The next hop; the interface's gateway when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

impl RouteSpec {
    /// A route to `dst`.
    pub fn new(dst: IpNet) -> Self {
        RouteSpec { dst, gw: None }
    }

    /// Set the next hop.
    pub fn gw(mut self, gw: IpAddr) -> Self {
        self.gw = Some(gw);
        self
    }
}

/// A parsed `host-local` configuration.
///
/// ```
/// use overlay_ipam::host_local::Config;
///
/// let conf = br#"{"cniVersion":"1.0.0","name":"pods","type":"bridge",
///   "ipam":{"type":"host-local","dataDir":"/run/ipam",
///           "ranges":[[{"subnet":"198.51.100.0/24"}],[{"subnet":"2001:db8::/64"}]],
///           "routes":[{"dst":"0.0.0.0/0"}]}}"#;
/// let config = Config::from_network_config(conf, "IgnoreUnknown=1;K8S_POD_NAME=web").unwrap();
/// assert_eq!(config.network, "pods");
/// assert_eq!(config.ranges.len(), 2);
/// assert_eq!(config.data_dir, std::path::Path::new("/run/ipam"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The network name (`name`), the store's subdirectory.
    pub network: String,
    /// The configuration's `cniVersion`.
    pub cni_version: String,
    /// `ipam.dataDir`, or [`DEFAULT_DATA_DIR`].
    pub data_dir: PathBuf,
    /// The range sets: `runtimeConfig.ipRanges`, then the legacy
    /// `ipam.subnet` range, then `ipam.ranges`. One address is allocated
    /// from each; set `i` remembers its last address in `last_reserved_ip.i`.
    pub ranges: Vec<RangeSet>,
    /// `ipam.routes`.
    pub routes: Vec<RouteSpec>,
    /// `ipam.resolvConf`: a `resolv.conf` whose settings become the result's DNS.
    pub resolv_conf: Option<PathBuf>,
    /// Addresses requested through `CNI_ARGS` (`IP=`), `args.cni.ips` and
    /// `runtimeConfig.ips`, in that order, without duplicates.
    pub requested_ips: Vec<IpAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNet {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cni_version: String,
    ipam: Option<RawIpam>,
    #[serde(default)]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: Option<RawArgs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    ip_ranges: Vec<Vec<RangeSpec>>,
    #[serde(default)]
    ips: Vec<IpOrCidr>,
}

#[derive(Deserialize)]
struct RawArgs {
    #[serde(default)]
    cni: Option<RawCniArgs>,
}

#[derive(Deserialize)]
struct RawCniArgs {
    #[serde(default)]
    ips: Vec<IpAddr>,
}

/// `runtimeConfig.ips` entries are addresses or addresses with a prefix.
#[derive(Deserialize)]
#[serde(untagged)]
enum IpOrCidr {
    Ip(IpAddr),
    Cidr(IpNet),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(default)]
    subnet: Option<IpNet>,
    #[serde(default)]
    range_start: Option<IpAddr>,
    #[serde(default)]
    range_end: Option<IpAddr>,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    data_dir: String,
    #[serde(default)]
    resolv_conf: String,
    #[serde(default)]
    ranges: Vec<Vec<RangeSpec>>,
}

/// Whether `version` (`major.minor.patch`) is at least 0.3.0.
fn at_least_0_3_0(version: &str) -> bool {
    let parts: Vec<Option<u64>> = version.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(major), Some(minor), Some(_)] => (*major, *minor) >= (0, 3),
        _ => false,
    }
}

/// The `IP=` address of `CNI_ARGS`, with `host-local`'s rules (the
/// reference plugins' `types.LoadArgs`, [`CniArgs::load`]): keys other
/// than `IP` and `IgnoreUnknown` are an error unless `IgnoreUnknown` is `1`
/// or `true`.
fn ip_from_cni_args(args: &str) -> Result<Option<IpAddr>, ConfigError> {
    let args = CniArgs::load(args, &["IP"])?;
    args.get("IP")
        .map(|value| {
            value
                .parse::<IpAddr>()
                .map_err(|_| ConfigError::InvalidArgsValue {
                    key: "IP".to_owned(),
                    value: value.to_owned(),
                })
        })
        .transpose()
}

impl Config {
    /// Parse the network configuration an IPAM plugin receives on stdin
    /// and the `CNI_ARGS` it receives in its environment, with
    /// `host-local`'s rules and error cases.
    pub fn from_network_config(config: &[u8], cni_args: &str) -> Result<Config, ConfigError> {
        let net: RawNet = serde_json::from_slice(config)?;
        let ipam = net.ipam.ok_or(ConfigError::MissingIpam)?;
        if net.name.is_empty()
            || net.name == "."
            || net.name == ".."
            || net.name.contains(['/', '\0'])
        {
            return Err(ConfigError::InvalidNetworkName(net.name));
        }

        let mut requested_ips = Vec::new();
        let mut request = |ip: IpAddr| {
            if !requested_ips.contains(&ip) {
                requested_ips.push(ip);
            }
        };
        if let Some(ip) = ip_from_cni_args(cni_args)? {
            request(ip);
        }
        for ip in net
            .args
            .and_then(|a| a.cni)
            .map(|c| c.ips)
            .unwrap_or_default()
        {
            request(ip);
        }
        for ip in net.runtime_config.ips {
            request(match ip {
                IpOrCidr::Ip(ip) => ip,
                IpOrCidr::Cidr(net) => net.addr(),
            });
        }

        let mut specs = net.runtime_config.ip_ranges;
        if let Some(subnet) = ipam.subnet {
            specs.push(vec![RangeSpec {
                subnet,
                range_start: ipam.range_start,
                range_end: ipam.range_end,
                gateway: ipam.gateway,
            }]);
        }
        specs.extend(ipam.ranges);
        if specs.is_empty() {
            return Err(ConfigError::NoRanges);
        }
        let ranges = specs
            .iter()
            .enumerate()
            .map(|(index, set)| {
                RangeSet::from_specs(set)
                    .map_err(|source| ConfigError::InvalidRangeSet { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
        if (v4 > 1 || ranges.len() - v4 > 1) && !at_least_0_3_0(&net.cni_version) {
            return Err(ConfigError::TooManyAddressesForVersion(net.cni_version));
        }
        for (first, a) in ranges.iter().enumerate() {
            if let Some(second) = ranges
                .iter()
                .enumerate()
                .skip(first + 1)
                .find_map(|(j, b)| a.overlaps(b).then_some(j))
            {
                return Err(ConfigError::RangeSetsOverlap { first, second });
            }
        }

        let data_dir = if ipam.data_dir.is_empty() {
            PathBuf::from(DEFAULT_DATA_DIR)
        } else {
            PathBuf::from(ipam.data_dir)
        };
        Ok(Config {
            network: net.name,
            cni_version: net.cni_version,
            data_dir,
            ranges,
            routes: ipam.routes,
            resolv_conf: (!ipam.resolv_conf.is_empty()).then(|| PathBuf::from(ipam.resolv_conf)),
            requested_ips,
        })
    }

    /// The directory of this network's reservations: `<dataDir>/<name>`.
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join(&self.network)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, args: &str) -> Result<Config, ConfigError> {
        Config::from_network_config(json.as_bytes(), args)
    }

    #[test]
    fn legacy_subnet_comes_before_ranges_and_after_runtime_ranges() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ipRanges":[[{"subnet":"192.0.2.0/24"}]]},
               "ipam":{"subnet":"198.51.100.0/24","gateway":"198.51.100.254",
                       "ranges":[[{"subnet":"2001:db8::/64"}]]}}"#,
            "",
        )
        .unwrap();
        let firsts: Vec<String> = c
            .ranges
            .iter()
            .map(|s| s.ranges()[0].subnet().to_string())
            .collect();
        assert_eq!(firsts, ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/64"]);
        assert_eq!(
            c.ranges[1].ranges()[0].gateway().to_string(),
            "198.51.100.254"
        );
        assert_eq!(c.data_dir, Path::new(DEFAULT_DATA_DIR));
    }

    #[test]
    fn requested_ips_come_from_cni_args_args_and_runtime_config() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","args":{"cni":{"ips":["198.51.100.7"]}},
               "runtimeConfig":{"ips":["2001:db8::9/64","198.51.100.7"]},
               "ipam":{"ranges":[[{"subnet":"198.51.100.0/24"}],[{"subnet":"2001:db8::/64"}]]}}"#,
            "IP=198.51.100.5",
        )
        .unwrap();
        let want: Vec<IpAddr> = ["198.51.100.5", "198.51.100.7", "2001:db8::9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.requested_ips, want);
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        let base = |ipam: &str| format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#);
        assert!(matches!(
            parse(r#"{"name":"n"}"#, ""),
            Err(ConfigError::MissingIpam)
        ));
        assert!(matches!(parse(&base("{}"), ""), Err(ConfigError::NoRanges)));
        assert!(matches!(
            parse(&base(r#"{"subnet":"198.51.100.5/24"}"#), ""),
            Err(ConfigError::InvalidRangeSet {
                index: 0,
                source: RangeError::HostBitsSet { .. }
            })
        ));
        assert!(matches!(
            parse(
                &base(
                    r#"{"ranges":[[{"subnet":"198.51.100.0/24"}],[{"subnet":"198.51.100.0/25"}]]}"#
                ),
                ""
            ),
            Err(ConfigError::RangeSetsOverlap {
                first: 0,
                second: 1
            })
        ));
        assert!(matches!(
            parse(
                r#"{"cniVersion":"0.2.0","name":"n","ipam":{"ranges":[[{"subnet":"198.51.100.0/24"}],[{"subnet":"203.0.113.0/24"}]]}}"#,
                ""
            ),
            Err(ConfigError::TooManyAddressesForVersion(_))
        ));
        assert!(matches!(
            parse(r#"{"name":"../x","ipam":{"subnet":"198.51.100.0/24"}}"#, ""),
            Err(ConfigError::InvalidNetworkName(_))
        ));
    }

    #[test]
    fn cni_args_follow_the_ignore_unknown_rule() {
        assert!(matches!(
            ip_from_cni_args("K8S_POD_NAME=a"),
            Err(ConfigError::Args(ArgsError::Unknown(pairs))) if pairs == ["K8S_POD_NAME=a"]
        ));
        assert_eq!(
            ip_from_cni_args("IgnoreUnknown=1;K8S_POD_NAME=a;IP=2001:db8::4").unwrap(),
            Some("2001:db8::4".parse().unwrap())
        );
        assert!(matches!(
            ip_from_cni_args("IP"),
            Err(ConfigError::Args(ArgsError::InvalidPair(_)))
        ));
        // As the reference's types.LoadArgs: an empty pair is invalid.
        assert!(matches!(
            ip_from_cni_args("IP=192.0.2.9;"),
            Err(ConfigError::Args(ArgsError::InvalidPair(p))) if p.is_empty()
        ));
        assert!(matches!(
            ip_from_cni_args("IP=nope"),
            Err(ConfigError::InvalidArgsValue { .. })
        ));
        assert_eq!(ip_from_cni_args("").unwrap(), None);
    }
}
