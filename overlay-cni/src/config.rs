//! Network configurations (`.conf`) and configuration lists (`.conflist`).
//!
//! [`NetworkConfig`] is one plugin's configuration: an element of a list's
//! `plugins`, and also what a plugin receives on stdin (then with `name`,
//! `cniVersion`, maybe `runtimeConfig` and `prevResult` injected by the
//! runtime). [`NetworkConfigList`] is a conflist. Every field of spec 1.1.0
//! has a typed member; any other key is kept in `extra`, so reading and
//! writing a configuration never loses plugin-specific settings.
//!
//! ```
//! use overlay_cni::config::NetworkConfigList;
//! use overlay_cni::version::Version;
//!
//! let list: NetworkConfigList = serde_json::from_str(r#"{
//!     "cniVersion": "1.0.0",
//!     "cniVersions": ["0.4.0", "1.0.0", "1.1.0"],
//!     "name": "pods",
//!     "plugins": [
//!         {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "198.51.100.0/24"}},
//!         {"type": "portmap", "capabilities": {"portMappings": true}}
//!     ]
//! }"#).unwrap();
//! assert_eq!(list.plugins[0].plugin_type, "bridge");
//! assert_eq!(list.plugins[0].extra["bridge"], "cni0");
//! assert_eq!(list.negotiate_version(overlay_cni::version::SUPPORTED_VERSIONS), Some(Version::V1_1_0));
//! let again: NetworkConfigList = serde_json::from_value(serde_json::to_value(&list).unwrap()).unwrap();
//! assert_eq!(again, list);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::result::{CniResult, ResultError};
use crate::version::Version;

/// The key under which libcni and spec 1.1.0 runtimes pass the valid attachments to `GC`.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The key named in the spec's text for the same list; runtimes send both.
pub const ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// DNS settings, in configurations and in results.
///
/// ```
/// let dns: overlay_cni::config::Dns =
///     serde_json::from_str(r#"{"nameservers":["192.0.2.53","2001:db8::53"],"search":["svc"]}"#).unwrap();
/// assert_eq!(dns.nameservers.len(), 2);
/// assert!(dns.domain.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Dns {
    /// Name server addresses, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain used for short host-name lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether no field is set.
    ///
    /// ```
    /// assert!(overlay_cni::config::Dns::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The `ipam` section: the IPAM plugin to delegate to and its settings.
///
/// ```
/// let ipam: overlay_cni::config::IpamConfig =
///     serde_json::from_str(r#"{"type":"host-local","subnet":"198.51.100.0/24"}"#).unwrap();
/// assert_eq!(ipam.plugin_type, "host-local");
/// assert_eq!(ipam.extra["subnet"], "198.51.100.0/24");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IpamConfig {
    /// The IPAM plugin's executable name (`type`).
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// Every other key, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One attachment named in a `GC` request's valid-attachments list.
///
/// ```
/// let a: overlay_cni::config::GcAttachment =
///     serde_json::from_str(r#"{"containerID":"c1","ifname":"eth0"}"#).unwrap();
/// assert_eq!(a.container_id, "c1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GcAttachment {
    /// The container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name inside the container.
    #[serde(rename = "ifname")]
    pub ifname: String,
}

/// One plugin's network configuration.
///
/// Required by the spec: `type` (and, on a plugin's stdin, `name` and
/// `cniVersion`, which runtimes inject from the list). Everything else is
/// optional; keys this type does not name are kept in [`NetworkConfig::extra`].
///
/// ```
/// use overlay_cni::config::NetworkConfig;
///
/// let conf = NetworkConfig::from_slice(
///     br#"{"cniVersion":"0.4.0","name":"pods","type":"bridge","ipMasq":true,"mtu":1450}"#,
/// )
/// .unwrap();
/// assert_eq!(conf.ip_masq, Some(true));
/// assert_eq!(conf.extra["mtu"], 1450);
/// assert_eq!(conf.version(), overlay_cni::version::Version::V0_4_0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// `cniVersion`: the spec version of this configuration (absent means 0.1.0).
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_version: Option<Version>,
    /// `name`: the network name (see [`crate::validate::network_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `type`: the plugin's executable name.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// `capabilities`: which runtime-supplied capabilities the plugin accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<BTreeMap<String, bool>>,
    /// `runtimeConfig`: capability data injected by the runtime.
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<Map<String, Value>>,
    /// `args`: extra arguments from the runtime (conventions, such as `cni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// `ipMasq`: whether to set up IP masquerade on the host for this network.
    #[serde(rename = "ipMasq", default, skip_serializing_if = "Option::is_none")]
    pub ip_masq: Option<bool>,
    /// `ipam`: the IPAM plugin and its settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamConfig>,
    /// `dns`: DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// `prevResult`: the previous plugin's result, injected by the runtime
    /// (kept raw; see [`NetworkConfig::prev_result`]).
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    /// Every other key, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetworkConfig {
    /// A configuration with only `type` set.
    ///
    /// ```
    /// let conf = overlay_cni::config::NetworkConfig::new("tuning");
    /// assert_eq!(serde_json::to_string(&conf).unwrap(), r#"{"type":"tuning"}"#);
    /// ```
    pub fn new(plugin_type: impl Into<String>) -> Self {
        NetworkConfig {
            plugin_type: plugin_type.into(),
            ..NetworkConfig::default()
        }
    }

    /// Parse a configuration from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The configuration as JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        // A tree of strings, numbers and maps with string keys always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The spec version: `cniVersion`, or 0.1.0 when absent (as in libcni).
    pub fn version(&self) -> Version {
        self.cni_version.unwrap_or_default()
    }

    /// Whether `capabilities` declares `name` as `true`.
    ///
    /// ```
    /// let conf: overlay_cni::config::NetworkConfig =
    ///     serde_json::from_str(r#"{"type":"portmap","capabilities":{"portMappings":true}}"#).unwrap();
    /// assert!(conf.has_capability("portMappings"));
    /// assert!(!conf.has_capability("bandwidth"));
    /// ```
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .as_ref()
            .and_then(|caps| caps.get(name))
            .copied()
            .unwrap_or(false)
    }

    /// The parsed `prevResult`, converted to this configuration's version.
    ///
    /// A `prevResult` without `cniVersion` is read as this configuration's
    /// version, as libcni does. Returns `None` when there is no `prevResult`.
    ///
    /// ```
    /// let conf = overlay_cni::config::NetworkConfig::from_slice(br#"{
    ///     "cniVersion": "1.0.0", "name": "n", "type": "tuning",
    ///     "prevResult": {"ips": [{"address": "198.51.100.7/24"}]}
    /// }"#).unwrap();
    /// let prev = conf.prev_result().unwrap().unwrap();
    /// assert_eq!(prev.ips[0].address.to_string(), "198.51.100.7/24");
    /// ```
    pub fn prev_result(&self) -> Option<Result<CniResult, ResultError>> {
        let raw = self.prev_result.as_ref()?;
        Some(
            CniResult::from_value_with_default(raw.clone(), self.version())
                .and_then(|r| r.convert(self.version())),
        )
    }

    /// The valid attachments of a `GC` request, read from
    /// `cni.dev/valid-attachments` or else `cni.dev/attachments`.
    ///
    /// Returns `Ok(None)` when neither key is present.
    ///
    /// ```
    /// let conf = overlay_cni::config::NetworkConfig::from_slice(br#"{
    ///     "cniVersion": "1.1.0", "name": "n", "type": "bridge",
    ///     "cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}]
    /// }"#).unwrap();
    /// assert_eq!(conf.valid_attachments().unwrap().unwrap()[0].ifname, "eth0");
    /// ```
    pub fn valid_attachments(&self) -> Result<Option<Vec<GcAttachment>>, serde_json::Error> {
        let raw = self
            .extra
            .get(VALID_ATTACHMENTS_KEY)
            .or_else(|| self.extra.get(ATTACHMENTS_KEY));
        raw.map(Vec::<GcAttachment>::deserialize).transpose()
    }
}

/// A network configuration list (conflist).
///
/// ```
/// use overlay_cni::config::{NetworkConfig, NetworkConfigList};
/// use overlay_cni::version::Version;
///
/// let list = NetworkConfigList::new("pods", Version::V1_0_0)
///     .with_plugin(NetworkConfig::new("bridge"))
///     .with_plugin(NetworkConfig::new("tuning"));
/// let json = serde_json::to_string(&list).unwrap();
/// assert_eq!(
///     json,
///     r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"tuning"}]}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkConfigList {
    /// `cniVersion`: the list's spec version.
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_version: Option<Version>,
    /// `cniVersions` (1.1.0): every version the list is valid for.
    #[serde(
        rename = "cniVersions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_versions: Option<Vec<Version>>,
    /// `name`: the network name.
    #[serde(default)]
    pub name: String,
    /// `disableCheck`: runtimes must not run `CHECK` for this network.
    #[serde(
        rename = "disableCheck",
        default,
        deserialize_with = "bool_or_string",
        skip_serializing_if = "is_false"
    )]
    pub disable_check: bool,
    /// `disableGC` (1.1.0): runtimes must not run `GC` for this network.
    #[serde(
        rename = "disableGC",
        default,
        deserialize_with = "bool_or_string",
        skip_serializing_if = "is_false"
    )]
    pub disable_gc: bool,
    /// `plugins`: the chain, run in order for `ADD` and in reverse for `DEL`.
    #[serde(default)]
    pub plugins: Vec<NetworkConfig>,
    /// Every other key, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// libcni accepts `"disableCheck": "true"` as well as a JSON boolean.
fn bool_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        String(String),
    }
    match BoolOrString::deserialize(deserializer)? {
        BoolOrString::Bool(b) => Ok(b),
        BoolOrString::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected a boolean or \"true\"/\"false\", found {s:?}"
            ))),
        },
    }
}

impl NetworkConfigList {
    /// An empty list with a name and a version.
    pub fn new(name: impl Into<String>, version: Version) -> Self {
        NetworkConfigList {
            cni_version: Some(version),
            name: name.into(),
            ..NetworkConfigList::default()
        }
    }

    /// Append a plugin to the chain.
    pub fn with_plugin(mut self, plugin: NetworkConfig) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Parse a conflist from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Make a one-plugin list from a single configuration (a `.conf` file),
    /// taking its name and version, as libcni's `ConfListFromConf` does.
    ///
    /// ```
    /// use overlay_cni::config::{NetworkConfig, NetworkConfigList};
    /// let conf = NetworkConfig::from_slice(br#"{"cniVersion":"0.3.1","name":"n","type":"bridge"}"#).unwrap();
    /// let list = NetworkConfigList::from_single(conf);
    /// assert_eq!(list.name, "n");
    /// assert_eq!(list.plugins.len(), 1);
    /// ```
    pub fn from_single(conf: NetworkConfig) -> Self {
        NetworkConfigList {
            cni_version: conf.cni_version,
            name: conf.name.clone().unwrap_or_default(),
            plugins: vec![conf],
            ..NetworkConfigList::default()
        }
    }

    /// The version to run this list at, given the versions a runtime supports.
    ///
    /// With `cniVersions` (1.1.0), the highest version present in both;
    /// otherwise `cniVersion` (or 0.1.0 when absent) if supported. `None`
    /// when there is no common version.
    pub fn negotiate_version(&self, supported: &[Version]) -> Option<Version> {
        match &self.cni_versions {
            Some(versions) if !versions.is_empty() => versions
                .iter()
                .filter(|v| supported.contains(v))
                .max()
                .copied(),
            _ => Some(self.cni_version.unwrap_or_default()).filter(|v| supported.contains(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip_at_every_level() {
        let text = r#"{
            "cniVersion": "1.1.0", "name": "n", "vendorKey": {"a": [1, 2]},
            "plugins": [{"type": "bridge", "hairpinMode": true,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.51.100.0/24"}]]},
                         "dns": {"nameservers": ["192.0.2.53"]},
                         "args": {"cni": {"ips": ["198.51.100.9"]}},
                         "runtimeConfig": {"mac": "02:00:00:00:00:01"}}]
        }"#;
        let original: Value = serde_json::from_str(text).unwrap();
        let list: NetworkConfigList = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&list).unwrap(), original);
    }

    #[test]
    fn disable_flags_accept_booleans_and_strings() {
        let list: NetworkConfigList = serde_json::from_str(
            r#"{"name":"n","disableCheck":"true","disableGC":true,"plugins":[]}"#,
        )
        .unwrap();
        assert!(list.disable_check && list.disable_gc);
        let bad = serde_json::from_str::<NetworkConfigList>(r#"{"name":"n","disableCheck":"yes"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn negotiation_picks_highest_common_version() {
        let list: NetworkConfigList = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","cniVersions":["0.3.1","1.0.0","9.9.9"],"name":"n"}"#,
        )
        .unwrap();
        assert_eq!(
            list.negotiate_version(&[Version::V0_3_1, Version::V1_0_0]),
            Some(Version::V1_0_0)
        );
        assert_eq!(list.negotiate_version(&[Version::V0_4_0]), None);
        let plain = NetworkConfigList::new("n", Version::V0_4_0);
        assert_eq!(
            plain.negotiate_version(crate::version::SUPPORTED_VERSIONS),
            Some(Version::V0_4_0)
        );
    }

    #[test]
    fn valid_attachments_prefers_the_libcni_key() {
        let conf = NetworkConfig::from_slice(
            br#"{"type":"x","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],
                 "cni.dev/attachments":[{"containerID":"b","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            conf.valid_attachments().unwrap().unwrap()[0].container_id,
            "a"
        );
        assert_eq!(NetworkConfig::new("x").valid_attachments().unwrap(), None);
    }

    #[test]
    fn missing_version_means_0_1_0() {
        assert_eq!(NetworkConfig::new("x").version(), Version::V0_1_0);
    }
}
