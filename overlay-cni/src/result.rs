//! Plugin results for every spec version, and conversion between versions.
//!
//! [`CniResult`] holds a result in one shape for all versions and reads and
//! writes each version's JSON form:
//!
//! | version        | JSON form                                                        |
//! |----------------|------------------------------------------------------------------|
//! | 0.1.0, 0.2.0   | `ip4` / `ip6` objects with `ip`, `gateway`, `routes`; no interfaces |
//! | 0.3.0 to 0.4.0 | `interfaces`, `ips[]` with `version` (`"4"`/`"6"`) and `interface` index, `routes`, `dns` |
//! | 1.0.0, 1.1.0   | as 0.4.0 without `ips[].version`; 1.1.0 adds interface `mtu`, `socketPath`, `pciID` and route `mtu`, `advmss`, `priority`, `table`, `scope` |
//!
//! `cniVersion` is always written. [`CniResult::convert`] applies libcni's
//! rules: to 0.3.x/0.4.0 the `ips[].version` field appears (it is derived from
//! the address), to 1.x it disappears; to 0.1.0/0.2.0 only the first IPv4 and
//! the first IPv6 address survive, with the routes of their families, and
//! conversion fails when there is no address at all. Fields a target version
//! does not define (the 1.1.0 additions, below 1.1.0) are dropped.
//!
//! ```
//! use overlay_cni::result::CniResult;
//! use overlay_cni::version::Version;
//!
//! let r = CniResult::from_slice(br#"{
//!     "cniVersion": "1.0.0",
//!     "interfaces": [{"name": "eth0", "sandbox": "/run/netns/pod"}],
//!     "ips": [{"address": "198.51.100.7/24", "gateway": "198.51.100.1", "interface": 0},
//!             {"address": "2001:db8::7/64", "interface": 0}],
//!     "routes": [{"dst": "0.0.0.0/0"}]
//! }"#).unwrap();
//! let old = r.convert(Version::V0_3_1).unwrap();
//! let json: serde_json::Value = serde_json::from_slice(&old.to_vec()).unwrap();
//! assert_eq!(json["cniVersion"], "0.3.1");
//! assert_eq!(json["ips"][0]["version"], "4");
//! assert_eq!(json["ips"][1]["version"], "6");
//! let legacy = serde_json::to_value(r.convert(Version::V0_2_0).unwrap()).unwrap();
//! assert_eq!(legacy["ip4"]["ip"], "198.51.100.7/24");
//! assert_eq!(legacy["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::config::Dns;
use crate::version::Version;

/// Why a result could not be read or converted.
///
/// ```
/// use overlay_cni::result::{CniResult, ResultError};
///
/// let err = CniResult::from_slice(br#"{"ips":[]}"#).unwrap_err();
/// assert!(matches!(err, ResultError::MissingVersion));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The bytes are not a result object of the expected shape.
    #[error("invalid CNI result JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The result carries no `cniVersion` and no default was given.
    #[error("CNI result has no cniVersion")]
    MissingVersion,
    /// The result's (or the requested) version is not one this crate implements.
    #[error("unsupported CNI result version {0}")]
    UnsupportedVersion(Version),
    /// An `ips[].version` disagrees with the address family of `address`.
    #[error("ips[{index}]: version {version:?} does not match address {address}")]
    IpVersionMismatch {
        /// Index in `ips`.
        index: usize,
        /// The `version` field as written.
        version: String,
        /// The address.
        address: IpNet,
    },
    /// Converting to 0.1.0/0.2.0 needs at least one address.
    #[error("cannot convert result to {to}: it has no IP address")]
    NoAddressForLegacy {
        /// The requested version.
        to: Version,
    },
}

/// An interface created or used by a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, when L2 addresses are meaningful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The sandbox (netns path) for container interfaces; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Socket path of a vhost-user or similar interface (1.1.0).
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    /// PCI ID of the device (1.1.0).
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

impl Interface {
    /// An interface with only a name.
    ///
    /// ```
    /// let i = overlay_cni::result::Interface::new("eth0");
    /// assert_eq!(serde_json::to_string(&i).unwrap(), r#"{"name":"eth0"}"#);
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Interface {
            name: name.into(),
            ..Interface::default()
        }
    }

    /// The interface with a hardware address.
    ///
    /// ```
    /// let i = overlay_cni::result::Interface::new("eth0")
    ///     .with_mac("02:00:00:00:00:01")
    ///     .with_sandbox("/run/netns/pod");
    /// assert_eq!(i.sandbox.as_deref(), Some("/run/netns/pod"));
    /// ```
    pub fn with_mac(mut self, mac: impl Into<String>) -> Self {
        self.mac = Some(mac.into());
        self
    }

    /// The interface inside a sandbox (network namespace path).
    pub fn with_sandbox(mut self, sandbox: impl Into<String>) -> Self {
        self.sandbox = Some(sandbox.into());
        self
    }
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpConfig {
    /// Index into the result's `interfaces`; IPAM plugins leave it unset.
    pub interface: Option<usize>,
    /// The address with its prefix length (host bits kept, as `198.51.100.7/24`).
    pub address: IpNet,
    /// The default gateway for this subnet, if any.
    pub gateway: Option<IpAddr>,
}

impl IpConfig {
    /// An address without interface index or gateway.
    ///
    /// ```
    /// let ip = overlay_cni::result::IpConfig::new("2001:db8::7/64".parse().unwrap());
    /// assert!(ip.address.addr().is_ipv6());
    /// ```
    pub fn new(address: IpNet) -> Self {
        IpConfig {
            interface: None,
            address,
            gateway: None,
        }
    }

    /// The address with a gateway.
    ///
    /// ```
    /// let ip = overlay_cni::result::IpConfig::new("198.51.100.7/24".parse().unwrap())
    ///     .with_gateway("198.51.100.1".parse().unwrap())
    ///     .with_interface(1);
    /// assert_eq!(ip.interface, Some(1));
    /// ```
    pub fn with_gateway(mut self, gateway: IpAddr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// The address on the interface at `index` in the result's `interfaces`.
    pub fn with_interface(mut self, index: usize) -> Self {
        self.interface = Some(index);
        self
    }

    /// `"4"` or `"6"`, the 0.3.x/0.4.0 `version` field for this address.
    pub fn ip_version(&self) -> &'static str {
        match self.address {
            IpNet::V4(_) => "4",
            IpNet::V6(_) => "6",
        }
    }

    /// The gateway a plugin should give the container for this address: the
    /// IPAM plugin's [`gateway`](IpConfig::gateway) if it named one, else the
    /// subnet's first host (the reference plugins' default).
    ///
    /// `None` only when the subnet has no first host, i.e. for the
    /// all-ones network of a `/32` or `/128` prefix.
    ///
    /// ```
    /// use overlay_cni::result::IpConfig;
    /// let ip = IpConfig::new("198.51.100.7/24".parse().unwrap());
    /// assert_eq!(ip.gateway_or_first_host(), Some("198.51.100.1".parse().unwrap()));
    /// let ip = ip.with_gateway("198.51.100.254".parse().unwrap());
    /// assert_eq!(ip.gateway_or_first_host(), Some("198.51.100.254".parse().unwrap()));
    /// ```
    pub fn gateway_or_first_host(&self) -> Option<IpAddr> {
        self.gateway.or_else(|| match self.address.trunc() {
            IpNet::V4(n) => u32::from(n.network())
                .checked_add(1)
                .map(|a| IpAddr::V4(a.into())),
            IpNet::V6(n) => u128::from(n.network())
                .checked_add(1)
                .map(|a| IpAddr::V6(a.into())),
        })
    }
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop; absent means the plugin's default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority / metric (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    /// A route to `dst` with no gateway and no 1.1.0 attributes.
    ///
    /// ```
    /// let r = overlay_cni::result::Route::new("0.0.0.0/0".parse().unwrap());
    /// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"dst":"0.0.0.0/0"}"#);
    /// ```
    pub fn new(dst: IpNet) -> Self {
        Route {
            dst,
            gw: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    /// The route with a gateway.
    pub fn with_gw(mut self, gw: IpAddr) -> Self {
        self.gw = Some(gw);
        self
    }

    fn strip_1_1(&mut self) {
        self.mtu = None;
        self.advmss = None;
        self.priority = None;
        self.table = None;
        self.scope = None;
    }
}

/// A plugin's result, in any supported version (see the [module docs](self)).
///
/// ```
/// use overlay_cni::result::{CniResult, Interface, IpConfig, Route};
/// use overlay_cni::Version;
///
/// let mut r = CniResult::new(Version::V1_0_0);
/// r.interfaces.push(Interface::new("eth0").with_sandbox("/run/netns/p"));
/// r.ips.push(IpConfig::new("2001:db8::7/64".parse().unwrap()).with_interface(0));
/// r.routes.push(Route::new("::/0".parse().unwrap()).with_gw("2001:db8::1".parse().unwrap()));
/// let back = CniResult::from_slice(&r.to_vec()).unwrap();
/// assert_eq!(back, r);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CniResult {
    /// The version whose JSON form this result is written in.
    pub cni_version: Version,
    /// Interfaces (empty for IPAM plugins and 0.1.0/0.2.0 results).
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

impl CniResult {
    /// An empty result of `version`.
    ///
    /// ```
    /// use overlay_cni::{result::CniResult, version::Version};
    /// let r = CniResult::new(Version::V1_1_0);
    /// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"cniVersion":"1.1.0"}"#);
    /// ```
    pub fn new(version: Version) -> Self {
        CniResult {
            cni_version: version,
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Dns::default(),
        }
    }

    /// Read a result; its `cniVersion` selects the JSON form and is required.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ResultError> {
        let wire: WireResult = serde_json::from_slice(bytes)?;
        wire.into_result(None)
    }

    /// Read a result, taking `default` as its version when it has no
    /// `cniVersion` (libcni does this for plugins that omit it).
    pub fn from_slice_with_default(bytes: &[u8], default: Version) -> Result<Self, ResultError> {
        let wire: WireResult = serde_json::from_slice(bytes)?;
        wire.into_result(Some(default))
    }

    /// Like [`CniResult::from_slice_with_default`], from a JSON value.
    pub fn from_value_with_default(value: Value, default: Version) -> Result<Self, ResultError> {
        let wire: WireResult = serde_json::from_value(value)?;
        wire.into_result(Some(default))
    }

    /// The result as compact JSON in its version's form.
    pub fn to_vec(&self) -> Vec<u8> {
        // Only strings, numbers and lists: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The result as a JSON value in its version's form.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The addresses a plugin's `CHECK` should find on its container
    /// interface `ifname`: those whose [`interface`](IpConfig::interface)
    /// index names the interface called `ifname` that has a `sandbox`, and
    /// those without an index (as IPAM plugins return them).
    ///
    /// A host-side interface of the same name (no `sandbox`) does not count.
    ///
    /// ```
    /// use overlay_cni::result::{CniResult, Interface, IpConfig};
    /// use overlay_cni::Version;
    ///
    /// let mut r = CniResult::new(Version::V1_0_0);
    /// r.interfaces.push(Interface::new("cni0"));
    /// r.interfaces.push(Interface::new("eth0").with_sandbox("/run/netns/p"));
    /// r.ips.push(IpConfig::new("198.51.100.1/24".parse().unwrap()).with_interface(0));
    /// r.ips.push(IpConfig::new("198.51.100.7/24".parse().unwrap()).with_interface(1));
    /// let on_eth0: Vec<_> = r.container_ips("eth0").map(|ip| ip.address).collect();
    /// assert_eq!(on_eth0, ["198.51.100.7/24".parse().unwrap()]);
    /// ```
    pub fn container_ips<'a>(
        &'a self,
        ifname: &str,
    ) -> impl Iterator<Item = &'a IpConfig> + use<'a> {
        let index = self
            .interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.is_some());
        self.ips
            .iter()
            .filter(move |ip| ip.interface.is_none() || ip.interface == index)
    }

    /// Convert to another version with libcni's rules (see the [module docs](self)).
    ///
    /// ```
    /// use overlay_cni::result::{CniResult, IpConfig};
    /// use overlay_cni::version::Version;
    ///
    /// let empty = CniResult::new(Version::V1_0_0);
    /// assert!(empty.convert(Version::V0_2_0).is_err()); // 0.2.0 needs an address
    /// assert!(empty.convert(Version::V0_4_0).is_ok());
    /// ```
    pub fn convert(&self, to: Version) -> Result<CniResult, ResultError> {
        if !to.is_supported() {
            return Err(ResultError::UnsupportedVersion(to));
        }
        let mut out = self.clone();
        out.cni_version = to;
        if to == self.cni_version {
            return Ok(out);
        }
        if to.is_legacy() {
            let v4 = self.ips.iter().find(|ip| ip.address.addr().is_ipv4());
            let v6 = self.ips.iter().find(|ip| ip.address.addr().is_ipv6());
            if v4.is_none() && v6.is_none() {
                return Err(ResultError::NoAddressForLegacy { to });
            }
            out.interfaces.clear();
            out.ips = [v4, v6]
                .into_iter()
                .flatten()
                .map(|ip| IpConfig {
                    interface: None,
                    ..ip.clone()
                })
                .collect();
            // Order routes as the legacy form stores them: IPv4 first.
            out.routes = self
                .routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv4() && v4.is_some())
                .chain(
                    self.routes
                        .iter()
                        .filter(|r| r.dst.addr().is_ipv6() && v6.is_some()),
                )
                .cloned()
                .collect();
        }
        if to < Version::V1_1_0 {
            for iface in &mut out.interfaces {
                iface.mtu = None;
                iface.socket_path = None;
                iface.pci_id = None;
            }
            out.routes.iter_mut().for_each(Route::strip_1_1);
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct WireResult {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<Version>,
    #[serde(default)]
    interfaces: Option<Vec<Interface>>,
    #[serde(default)]
    ips: Option<Vec<WireIp>>,
    #[serde(default)]
    routes: Option<Vec<Route>>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    ip4: Option<WireLegacyIp>,
    #[serde(default)]
    ip6: Option<WireLegacyIp>,
}

#[derive(Serialize, Deserialize)]
struct WireIp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct WireLegacyIp {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

impl WireResult {
    fn into_result(self, default: Option<Version>) -> Result<CniResult, ResultError> {
        let version = self
            .cni_version
            .or(default)
            .ok_or(ResultError::MissingVersion)?;
        if !version.is_supported() {
            return Err(ResultError::UnsupportedVersion(version));
        }
        let mut result = CniResult::new(version);
        result.dns = self.dns.unwrap_or_default();
        if version.is_legacy() {
            for legacy in [self.ip4, self.ip6].into_iter().flatten() {
                result.ips.push(IpConfig {
                    interface: None,
                    address: legacy.ip,
                    gateway: legacy.gateway,
                });
                result.routes.extend(legacy.routes);
            }
            return Ok(result);
        }
        result.interfaces = self.interfaces.unwrap_or_default();
        result.routes = self.routes.unwrap_or_default();
        for (index, ip) in self.ips.unwrap_or_default().into_iter().enumerate() {
            let config = IpConfig {
                interface: ip.interface,
                address: ip.address,
                gateway: ip.gateway,
            };
            if let Some(v) = ip.version
                && v != config.ip_version()
            {
                return Err(ResultError::IpVersionMismatch {
                    index,
                    version: v,
                    address: ip.address,
                });
            }
            result.ips.push(config);
        }
        Ok(result)
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: Version,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    interfaces: &'a [Interface],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<WireIp>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [Route],
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<WireLegacyIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<WireLegacyIp>,
    #[serde(skip_serializing_if = "Dns::is_empty")]
    dns: &'a Dns,
}

impl Serialize for CniResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let version = self.cni_version;
        let mut out = WireOut {
            cni_version: version,
            interfaces: &[],
            ips: Vec::new(),
            routes: &[],
            ip4: None,
            ip6: None,
            dns: &self.dns,
        };
        if version.is_legacy() {
            let legacy = |v4: bool| {
                self.ips
                    .iter()
                    .find(|ip| ip.address.addr().is_ipv4() == v4)
                    .map(|ip| WireLegacyIp {
                        ip: ip.address,
                        gateway: ip.gateway,
                        routes: self
                            .routes
                            .iter()
                            .filter(|r| r.dst.addr().is_ipv4() == v4)
                            .cloned()
                            .collect(),
                    })
            };
            out.ip4 = legacy(true);
            out.ip6 = legacy(false);
        } else {
            out.interfaces = &self.interfaces;
            out.routes = &self.routes;
            out.ips = self
                .ips
                .iter()
                .map(|ip| WireIp {
                    version: version
                        .has_ip_version_field()
                        .then(|| ip.ip_version().to_owned()),
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect();
        }
        out.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CniResult {
    /// Reads a result whose `cniVersion` is present (see [`CniResult::from_slice`]).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WireResult::deserialize(deserializer)?
            .into_result(None)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_ips_are_those_of_the_sandboxed_interface_and_those_without_index() {
        let mut r = CniResult::new(Version::V1_0_0);
        // A host interface with the same name must not be picked.
        r.interfaces.push(Interface::new("eth0"));
        r.interfaces
            .push(Interface::new("eth0").with_sandbox("/run/netns/p"));
        r.interfaces
            .push(Interface::new("eth1").with_sandbox("/run/netns/p"));
        let host: IpNet = "198.51.100.1/24".parse().unwrap();
        let pod: IpNet = "198.51.100.7/24".parse().unwrap();
        let other: IpNet = "203.0.113.7/24".parse().unwrap();
        let unindexed: IpNet = "2001:db8::7/64".parse().unwrap();
        r.ips.push(IpConfig::new(host).with_interface(0));
        r.ips.push(IpConfig::new(pod).with_interface(1));
        r.ips.push(IpConfig::new(other).with_interface(2));
        r.ips.push(IpConfig::new(unindexed));
        let addrs =
            |name: &str| -> Vec<IpNet> { r.container_ips(name).map(|ip| ip.address).collect() };
        assert_eq!(addrs("eth0"), [pod, unindexed]);
        assert_eq!(addrs("eth1"), [other, unindexed]);
        // No such container interface: only the unindexed address applies.
        assert_eq!(addrs("eth9"), [unindexed]);
    }

    #[test]
    fn gateway_or_first_host_prefers_the_ipam_gateway_then_the_subnets_first_host() {
        let v4 = IpConfig::new("198.51.100.77/25".parse().unwrap());
        assert_eq!(
            v4.gateway_or_first_host(),
            Some("198.51.100.1".parse().unwrap())
        );
        let v4_upper = IpConfig::new("198.51.100.200/25".parse().unwrap());
        assert_eq!(
            v4_upper.gateway_or_first_host(),
            Some("198.51.100.129".parse().unwrap())
        );
        let v6 = IpConfig::new("2001:db8:0:1::42/64".parse().unwrap());
        assert_eq!(
            v6.gateway_or_first_host(),
            Some("2001:db8:0:1::1".parse().unwrap())
        );
        let given = v6.with_gateway("2001:db8:0:1::fe".parse().unwrap());
        assert_eq!(
            given.gateway_or_first_host(),
            Some("2001:db8:0:1::fe".parse().unwrap())
        );
        // The all-ones network has no first host.
        let last = IpConfig::new("255.255.255.255/32".parse().unwrap());
        assert_eq!(last.gateway_or_first_host(), None);
        let last6 = IpConfig::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
                .parse()
                .unwrap(),
        );
        assert_eq!(last6.gateway_or_first_host(), None);
    }

    fn sample(version: Version) -> CniResult {
        CniResult {
            cni_version: version,
            interfaces: vec![
                Interface {
                    mac: Some("02:00:00:00:00:01".into()),
                    ..Interface::new("cni0")
                },
                Interface {
                    sandbox: Some("/run/netns/p".into()),
                    mtu: Some(1450),
                    ..Interface::new("eth0")
                },
            ],
            ips: vec![
                IpConfig {
                    interface: Some(1),
                    address: "198.51.100.7/24".parse().unwrap(),
                    gateway: Some("198.51.100.1".parse().unwrap()),
                },
                IpConfig {
                    interface: Some(1),
                    address: "198.51.100.8/24".parse().unwrap(),
                    gateway: None,
                },
                IpConfig {
                    interface: Some(1),
                    address: "2001:db8::7/64".parse().unwrap(),
                    gateway: Some("2001:db8::1".parse().unwrap()),
                },
            ],
            routes: vec![
                Route {
                    table: Some(100),
                    ..Route::new("0.0.0.0/0".parse().unwrap())
                },
                Route::new("::/0".parse().unwrap()).with_gw("2001:db8::1".parse().unwrap()),
            ],
            dns: Dns {
                nameservers: vec!["192.0.2.53".into()],
                ..Dns::default()
            },
        }
    }

    #[test]
    fn v1_result_golden_json_has_no_ip_version() {
        let r = sample(Version::V1_1_0);
        assert_eq!(
            r.to_value(),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cni0", "mac": "02:00:00:00:00:01"},
                    {"name": "eth0", "sandbox": "/run/netns/p", "mtu": 1450}
                ],
                "ips": [
                    {"interface": 1, "address": "198.51.100.7/24", "gateway": "198.51.100.1"},
                    {"interface": 1, "address": "198.51.100.8/24"},
                    {"interface": 1, "address": "2001:db8::7/64", "gateway": "2001:db8::1"}
                ],
                "routes": [{"dst": "0.0.0.0/0", "table": 100}, {"dst": "::/0", "gw": "2001:db8::1"}],
                "dns": {"nameservers": ["192.0.2.53"]}
            })
        );
    }

    #[test]
    fn converting_1x_to_040_adds_ip_version_and_drops_1_1_fields() {
        let r = sample(Version::V1_1_0).convert(Version::V0_4_0).unwrap();
        assert_eq!(
            r.to_value(),
            json!({
                "cniVersion": "0.4.0",
                "interfaces": [
                    {"name": "cni0", "mac": "02:00:00:00:00:01"},
                    {"name": "eth0", "sandbox": "/run/netns/p"}
                ],
                "ips": [
                    {"version": "4", "interface": 1, "address": "198.51.100.7/24", "gateway": "198.51.100.1"},
                    {"version": "4", "interface": 1, "address": "198.51.100.8/24"},
                    {"version": "6", "interface": 1, "address": "2001:db8::7/64", "gateway": "2001:db8::1"}
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "2001:db8::1"}],
                "dns": {"nameservers": ["192.0.2.53"]}
            })
        );
    }

    #[test]
    fn converting_03x_to_1x_drops_ip_version() {
        let text = json!({
            "cniVersion": "0.3.0",
            "ips": [{"version": "6", "address": "2001:db8::7/64"}]
        });
        let r = CniResult::from_value_with_default(text, Version::V0_3_0).unwrap();
        let v1 = r.convert(Version::V1_0_0).unwrap().to_value();
        assert_eq!(
            v1,
            json!({"cniVersion": "1.0.0", "ips": [{"address": "2001:db8::7/64"}]})
        );
    }

    #[test]
    fn converting_to_020_keeps_first_address_per_family_and_their_routes() {
        let r = sample(Version::V1_0_0).convert(Version::V0_2_0).unwrap();
        assert_eq!(
            r.to_value(),
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "198.51.100.7/24", "gateway": "198.51.100.1", "routes": [{"dst": "0.0.0.0/0"}]},
                "ip6": {"ip": "2001:db8::7/64", "gateway": "2001:db8::1",
                        "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
                "dns": {"nameservers": ["192.0.2.53"]}
            })
        );
    }

    #[test]
    fn converting_to_020_drops_routes_of_a_family_without_address() {
        let mut r = CniResult::new(Version::V1_0_0);
        r.ips
            .push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
        r.routes.push(Route::new("::/0".parse().unwrap()));
        let legacy = r.convert(Version::V0_1_0).unwrap();
        assert!(legacy.routes.is_empty());
        assert_eq!(
            legacy.to_value(),
            json!({"cniVersion": "0.1.0", "ip4": {"ip": "198.51.100.7/24"}})
        );
    }

    #[test]
    fn converting_to_020_without_addresses_fails() {
        let err = CniResult::new(Version::V0_4_0)
            .convert(Version::V0_2_0)
            .unwrap_err();
        assert!(matches!(err, ResultError::NoAddressForLegacy { to } if to == Version::V0_2_0));
    }

    #[test]
    fn legacy_results_read_into_ips_and_routes_then_convert_up() {
        let r = CniResult::from_slice(
            br#"{"cniVersion":"0.2.0",
                 "ip4":{"ip":"198.51.100.7/24","gateway":"198.51.100.1","routes":[{"dst":"0.0.0.0/0"}]},
                 "ip6":{"ip":"2001:db8::7/64","routes":[{"dst":"::/0"}]}}"#,
        )
        .unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.routes.len(), 2);
        let up = r.convert(Version::V0_4_0).unwrap().to_value();
        assert_eq!(
            up,
            json!({"cniVersion": "0.4.0",
                   "ips": [{"version": "4", "address": "198.51.100.7/24", "gateway": "198.51.100.1"},
                           {"version": "6", "address": "2001:db8::7/64"}],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]})
        );
    }

    #[test]
    fn conversion_to_same_version_is_identity() {
        let r = sample(Version::V1_1_0);
        assert_eq!(r.convert(Version::V1_1_0).unwrap(), r);
    }

    #[test]
    fn conversion_to_unsupported_version_fails() {
        assert!(matches!(
            sample(Version::V1_0_0).convert(Version::new(2, 0, 0)),
            Err(ResultError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn reading_rejects_missing_unsupported_and_inconsistent_versions() {
        assert!(matches!(
            CniResult::from_slice(br#"{"ips":[]}"#),
            Err(ResultError::MissingVersion)
        ));
        assert!(matches!(
            CniResult::from_slice(br#"{"cniVersion":"0.5.0"}"#),
            Err(ResultError::UnsupportedVersion(_))
        ));
        assert!(matches!(
            CniResult::from_slice(
                br#"{"cniVersion":"0.4.0","ips":[{"version":"6","address":"198.51.100.7/24"}]}"#
            ),
            Err(ResultError::IpVersionMismatch { index: 0, .. })
        ));
        assert!(matches!(
            CniResult::from_slice(br#"{"cniVersion":"1.0.0","ips":[{"address":"not-an-ip"}]}"#),
            Err(ResultError::Json(_))
        ));
    }

    #[test]
    fn host_bits_of_addresses_are_kept() {
        let r = CniResult::from_slice(
            br#"{"cniVersion":"1.0.0","ips":[{"address":"198.51.100.7/24"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.ips[0].address.addr(),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn every_version_pair_converts_when_addresses_exist() {
        use crate::version::SUPPORTED_VERSIONS;
        for from in SUPPORTED_VERSIONS {
            let start = sample(Version::V1_1_0).convert(*from).unwrap();
            for to in SUPPORTED_VERSIONS {
                let converted = start.convert(*to).unwrap();
                let reread = CniResult::from_slice(&converted.to_vec()).unwrap();
                assert_eq!(reread, converted, "{from} -> {to}");
            }
        }
    }
}
