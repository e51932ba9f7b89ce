//! The runtime side: load network configurations and run plugin chains, as
//! libcni does.
//!
//! - Loading: [`conf_files`], [`load_conf_list`] and [`load_all`] read a
//!   directory of `.conflist`, `.conf` and `.json` files sorted by file name;
//!   a single `.conf` becomes a one-plugin list ([`ConfList::from_conf_bytes`]).
//! - Running: [`Runtime`] runs `ADD` along the chain, passing each plugin's
//!   result to the next as `prevResult`; `CHECK` (unless `disableCheck`) and
//!   `DEL` with the cached result as `prevResult`, `DEL` in reverse order.
//!   Every plugin gets `name` and `cniVersion` of the list injected, and
//!   `runtimeConfig` holding the capability arguments it declares in
//!   `capabilities` that the caller supplied.
//! - Caching: after `ADD` the final result is stored in libcni's layout
//!   ([`crate::cache`]); `DEL` removes it.
//! - `GC` (unless `disableGC`): `DEL` for every cached attachment of the
//!   network that is not in the valid list, then (1.1.0) `GC` on every plugin
//!   with both `cni.dev/valid-attachments` and `cni.dev/attachments`.
//! - `STATUS` (1.1.0): every plugin in turn; the first failure is returned.
//!
//! ```no_run
//! use overlay_cni::runtime::{load_conf_list, Runtime, RuntimeConf};
//!
//! let list = load_conf_list("/etc/cni/net.d", "pods").unwrap();
//! let cni = Runtime::new(vec!["/usr/lib/cni".into()]).with_cache_dir("/var/lib/cni");
//! let rt = RuntimeConf::new("3f6940ab5ab4", "eth0").with_netns("/run/netns/pod1");
//! let result = cni.add_network_list(&list, &rt).unwrap();
//! println!("{}", String::from_utf8_lossy(&result.to_vec()));
//! cni.check_network_list(&list, &rt).unwrap();
//! cni.del_network_list(&list, &rt).unwrap();
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::cache::{CacheEntry, CacheError, DEFAULT_CACHE_DIR};
use crate::config::{
    ATTACHMENTS_KEY, GcAttachment, NetworkConfig, NetworkConfigList, VALID_ATTACHMENTS_KEY,
};
use crate::error::CniError;
use crate::exec::{ExecError, exec_plugin_with_timeout, find_in_path, version_info_with_timeout};
use crate::plugin::Command;
use crate::result::CniResult;
use crate::validate;
use crate::version::{SUPPORTED_VERSIONS, Version, VersionInfo};

/// Why loading a configuration failed.
///
/// ```
/// use overlay_cni::runtime::{load_conf_list, LoadError};
///
/// let err = load_conf_list("/nonexistent/net.d", "pods").unwrap_err();
/// assert!(matches!(err, LoadError::NotFound { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Reading a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a valid configuration.
    #[error("{}: invalid network configuration: {source}", path.as_deref().map_or_else(|| "<bytes>".into(), |p| p.display().to_string()))]
    Json {
        /// The file, when loaded from one.
        path: Option<PathBuf>,
        /// What was wrong.
        source: serde_json::Error,
    },
    /// The configuration is well-formed JSON but breaks a rule.
    #[error("{}: {reason}", path.as_deref().map_or_else(|| "<bytes>".into(), |p| p.display().to_string()))]
    Invalid {
        /// The file, when loaded from one.
        path: Option<PathBuf>,
        /// The rule broken.
        reason: String,
    },
    /// No configuration with the requested network name.
    #[error("no network configuration named {name:?} in {}", dir.display())]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The network name.
        name: String,
    },
}

/// A conflist together with the bytes it was read from (libcni caches those bytes).
///
/// ```
/// use overlay_cni::runtime::ConfList;
///
/// let bytes = br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}"#.to_vec();
/// let list = ConfList::from_bytes(bytes.clone()).unwrap();
/// assert_eq!(list.name(), "pods");
/// assert_eq!(list.bytes, bytes); // cached verbatim, as libcni does
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConfList {
    /// The parsed list.
    pub config: NetworkConfigList,
    /// The bytes, as stored in the cache's `config`.
    pub bytes: Vec<u8>,
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
}

impl ConfList {
    /// Parse a conflist. It must have a name and at least one plugin, and
    /// every plugin a `type`.
    ///
    /// ```
    /// let list = overlay_cni::runtime::ConfList::from_bytes(
    ///     br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}"#.to_vec(),
    /// ).unwrap();
    /// assert_eq!(list.config.name, "pods");
    /// assert!(overlay_cni::runtime::ConfList::from_bytes(br#"{"name":"x","plugins":[]}"#.to_vec()).is_err());
    /// ```
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, LoadError> {
        let config = NetworkConfigList::from_slice(&bytes)
            .map_err(|source| LoadError::Json { path: None, source })?;
        let invalid = |reason: String| LoadError::Invalid { path: None, reason };
        if config.name.is_empty() {
            return Err(invalid("the list has no name".into()));
        }
        if config.plugins.is_empty() {
            return Err(invalid("no plugins in list".into()));
        }
        if let Some(index) = config.plugins.iter().position(|p| p.plugin_type.is_empty()) {
            return Err(invalid(format!("plugins[{index}] has no type")));
        }
        Ok(ConfList {
            config,
            bytes,
            source: None,
        })
    }

    /// Wrap an in-memory list (its bytes are its JSON serialisation).
    pub fn from_config(config: NetworkConfigList) -> Result<Self, LoadError> {
        // A tree of strings, numbers and maps with string keys always serialises.
        Self::from_bytes(serde_json::to_vec(&config).unwrap_or_default())
    }

    /// Parse a single network configuration (`.conf`) and make it a
    /// one-plugin list with its name and version, as libcni's
    /// `ConfListFromConf` does.
    ///
    /// ```
    /// let list = overlay_cni::runtime::ConfList::from_conf_bytes(
    ///     br#"{"cniVersion":"0.3.1","name":"n","type":"bridge","bridge":"br0"}"#,
    /// ).unwrap();
    /// assert_eq!(list.config.plugins[0].extra["bridge"], "br0");
    /// ```
    pub fn from_conf_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        let raw: Map<String, Value> = serde_json::from_slice(bytes)
            .map_err(|source| LoadError::Json { path: None, source })?;
        let conf = NetworkConfig::from_slice(bytes)
            .map_err(|source| LoadError::Json { path: None, source })?;
        if conf.plugin_type.is_empty() {
            return Err(LoadError::Invalid {
                path: None,
                reason: "the network configuration has no type".into(),
            });
        }
        let mut list = Map::new();
        list.insert("name".into(), Value::from(conf.name.unwrap_or_default()));
        list.insert(
            "cniVersion".into(),
            Value::from(conf.cni_version.map(|v| v.to_string()).unwrap_or_default()),
        );
        if conf.cni_version.is_none() {
            list.remove("cniVersion");
        }
        list.insert("plugins".into(), Value::Array(vec![Value::Object(raw)]));
        Self::from_bytes(serde_json::to_vec(&list).unwrap_or_default())
    }

    /// Load a file: `.conflist` as a list, anything else as a single configuration.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let loaded = if path.extension().is_some_and(|e| e == "conflist") {
            Self::from_bytes(bytes)
        } else {
            Self::from_conf_bytes(&bytes)
        };
        match loaded {
            Ok(mut list) => {
                list.source = Some(path.to_owned());
                Ok(list)
            }
            Err(LoadError::Json { source, .. }) => Err(LoadError::Json {
                path: Some(path.to_owned()),
                source,
            }),
            Err(LoadError::Invalid { reason, .. }) => Err(LoadError::Invalid {
                path: Some(path.to_owned()),
                reason,
            }),
            Err(other) => Err(other),
        }
    }

    /// The list's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// The files in `dir` whose extension is one of `extensions` (without dot),
/// sorted by file name. A missing directory yields no files.
///
/// ```no_run
/// let files = overlay_cni::runtime::conf_files("/etc/cni/net.d", &["conf", "conflist", "json"]).unwrap();
/// ```
pub fn conf_files(dir: impl AsRef<Path>, extensions: &[&str]) -> Result<Vec<PathBuf>, LoadError> {
    let dir = dir.as_ref();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LoadError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Find the network named `name` in `dir` as libcni's `LoadConfList` does:
/// `.conflist` files first (sorted by file name), then single
/// configurations in `.conf` and `.json` files.
pub fn load_conf_list(dir: impl AsRef<Path>, name: &str) -> Result<ConfList, LoadError> {
    let dir = dir.as_ref();
    for exts in [&["conflist"][..], &["conf", "json"][..]] {
        for file in conf_files(dir, exts)? {
            let list = ConfList::from_file(&file)?;
            if list.config.name == name {
                return Ok(list);
            }
        }
    }
    Err(LoadError::NotFound {
        dir: dir.to_owned(),
        name: name.to_owned(),
    })
}

/// Every configuration in `dir` (`.conf`, `.conflist`, `.json`), sorted by
/// file name; the first is the default network of most runtimes.
pub fn load_all(dir: impl AsRef<Path>) -> Result<Vec<ConfList>, LoadError> {
    conf_files(dir, &["conf", "conflist", "json"])?
        .iter()
        .map(ConfList::from_file)
        .collect()
}

/// The per-attachment arguments of a runtime call (libcni's `RuntimeConf`).
///
/// ```
/// use overlay_cni::runtime::RuntimeConf;
///
/// let rt = RuntimeConf::new("3f6940ab5ab4", "eth0")
///     .with_netns("/run/netns/pod1")
///     .with_arg("K8S_POD_NAME", "web-0")
///     .with_capability("portMappings", serde_json::json!([{"hostPort": 8080, "containerPort": 80}]));
/// assert_eq!(rt.args.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RuntimeConf {
    /// The container ID.
    pub container_id: String,
    /// The network namespace path (may be absent for `DEL`).
    pub netns: Option<PathBuf>,
    /// The interface name inside the container.
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `bandwidth`, `mac`, ...); each
    /// plugin receives those it declares in `capabilities` as `runtimeConfig`.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// Arguments for one attachment.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        RuntimeConf {
            container_id: container_id.into(),
            ifname: ifname.into(),
            ..RuntimeConf::default()
        }
    }

    /// Set the namespace path.
    pub fn with_netns(mut self, netns: impl Into<PathBuf>) -> Self {
        self.netns = Some(netns.into());
        self
    }

    /// Add a `CNI_ARGS` pair.
    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.push((key.into(), value.into()));
        self
    }

    /// Add a capability argument.
    pub fn with_capability(mut self, name: impl Into<String>, value: Value) -> Self {
        self.capability_args.insert(name.into(), value);
        self
    }

    fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Why a runtime operation failed.
///
/// ```
/// use overlay_cni::runtime::{ConfList, Runtime, RuntimeConf, RuntimeError};
///
/// let list = ConfList::from_bytes(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"}]}"#.to_vec()).unwrap();
/// let err = Runtime::new(vec![]).add_network_list(&list, &RuntimeConf::new("bad id", "eth0")).unwrap_err();
/// assert!(matches!(err, RuntimeError::Invalid(_)));
/// assert_eq!(err.cni_error().unwrap().code, overlay_cni::ErrorCode::InvalidEnvironmentVariables);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The list has no version this crate supports.
    #[error(
        "network {network:?}: no supported CNI version (cniVersion {version:?}, cniVersions {versions:?})"
    )]
    UnsupportedVersion {
        /// The network.
        network: String,
        /// Its `cniVersion`.
        version: Option<Version>,
        /// Its `cniVersions`.
        versions: Option<Vec<Version>>,
    },
    /// `CHECK` needs version 0.4.0 or later.
    #[error(
        "network {network:?}: configuration version {version} does not support the CHECK command"
    )]
    CheckNotSupported {
        /// The network.
        network: String,
        /// The list's version.
        version: Version,
    },
    /// The network name, container ID or interface name is invalid.
    #[error("invalid runtime arguments: {0}")]
    Invalid(CniError),
    /// A plugin failed or could not be run.
    #[error("plugin type={plugin_type:?} name={network:?} failed ({command}): {source}")]
    Plugin {
        /// The network.
        network: String,
        /// The plugin type.
        plugin_type: String,
        /// The command.
        command: Command,
        /// What went wrong.
        source: Box<ExecError>,
    },
    /// An `ADD` printed no result.
    #[error("plugin type={plugin_type:?} name={network:?} printed no result for ADD")]
    MissingResult {
        /// The network.
        network: String,
        /// The plugin type.
        plugin_type: String,
    },
    /// Reading or writing the result cache failed.
    #[error("network {network:?}: result cache: {source}")]
    Cache {
        /// The network.
        network: String,
        /// What went wrong.
        source: CacheError,
    },
    /// The configuration stored in a cache entry is not a valid conflist.
    #[error("network {network:?}: cached configuration: {source}")]
    CachedConfig {
        /// The network.
        network: String,
        /// What is wrong with it.
        source: Box<LoadError>,
    },
    /// Several failures during `GC` (each stale `DEL` and each plugin's `GC`).
    #[error("GC of network {network:?} failed: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Gc {
        /// The network.
        network: String,
        /// Every failure, in order.
        errors: Vec<RuntimeError>,
    },
}

impl RuntimeError {
    /// The CNI error object behind this failure, if a plugin printed one or
    /// validation produced one (for example code 50 from `STATUS`).
    pub fn cni_error(&self) -> Option<&CniError> {
        match self {
            RuntimeError::Invalid(e) => Some(e),
            RuntimeError::Plugin { source, .. } => source.cni_error(),
            _ => None,
        }
    }
}

/// Runs plugin chains (libcni's `CNIConfig`).
///
/// ```no_run
/// use overlay_cni::config::GcAttachment;
/// use overlay_cni::runtime::{load_all, Runtime, RuntimeConf};
///
/// let cni = Runtime::new(vec!["/opt/cni/bin".into()]).with_cache_dir("/var/lib/cni");
/// for list in load_all("/etc/cni/net.d").unwrap() {
///     cni.status_network_list(&list).unwrap();
///     let valid = [GcAttachment { container_id: "3f6940ab5ab4".into(), ifname: "eth0".into() }];
///     cni.gc_network_list(&list, &valid).unwrap();
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    path: Vec<PathBuf>,
    cache_dir: PathBuf,
    env: Vec<(String, String)>,
    timeout: Option<std::time::Duration>,
}

impl Runtime {
    /// A runtime that finds plugins in `path` and caches in `/var/lib/cni`.
    pub fn new(path: Vec<PathBuf>) -> Self {
        Runtime {
            path,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            env: Vec::new(),
            timeout: None,
        }
    }

    /// Kill a plugin that runs longer than `timeout` and fail the operation
    /// with [`ExecError::Timeout`] (libcni's context deadline). The limit
    /// holds for every plugin this runtime runs, including the `VERSION`
    /// probes of [`Runtime::version_info`] and
    /// [`Runtime::validate_network_list`]. No limit by default.
    ///
    /// ```
    /// let rt = overlay_cni::runtime::Runtime::new(vec![])
    ///     .with_timeout(std::time::Duration::from_secs(30));
    /// assert_eq!(rt.timeout(), Some(std::time::Duration::from_secs(30)));
    /// ```
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The time limit per plugin run, if any.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout
    }

    /// Set an extra environment variable for every plugin this runtime runs
    /// (for example `PATH`, to choose the tools plugins call). Plugins
    /// otherwise inherit this process's environment; the `CNI_*` variables
    /// are always set by the runtime and cannot be overridden here.
    ///
    /// ```
    /// let rt = overlay_cni::runtime::Runtime::new(vec!["/usr/lib/cni".into()])
    ///     .with_env("PATH", "/usr/sbin:/usr/bin");
    /// assert_eq!(rt.env(), &[("PATH".to_owned(), "/usr/sbin:/usr/bin".to_owned())]);
    /// ```
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The extra environment variables set by [`Runtime::with_env`].
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Use another cache directory.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// The plugin directories.
    pub fn path(&self) -> &[PathBuf] {
        &self.path
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The [`Runtime::with_env`] variables, without any `CNI_*` ones.
    fn extra_env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(|(k, _)| !k.starts_with("CNI_"))
            .collect()
    }

    fn version(&self, list: &ConfList) -> Result<Version, RuntimeError> {
        list.config
            .negotiate_version(SUPPORTED_VERSIONS)
            .ok_or_else(|| RuntimeError::UnsupportedVersion {
                network: list.config.name.clone(),
                version: list.config.cni_version,
                versions: list.config.cni_versions.clone(),
            })
    }

    fn cache_err(list: &ConfList) -> impl Fn(CacheError) -> RuntimeError + '_ {
        move |source| RuntimeError::Cache {
            network: list.config.name.clone(),
            source,
        }
    }

    /// Build the configuration a plugin receives: its own keys plus `name`,
    /// `cniVersion`, `prevResult` and `runtimeConfig`.
    ///
    /// ```
    /// use overlay_cni::runtime::{ConfList, Runtime, RuntimeConf};
    /// use overlay_cni::version::Version;
    ///
    /// let list = ConfList::from_bytes(br#"{"cniVersion":"1.0.0","name":"pods","plugins":[
    ///     {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#.to_vec()).unwrap();
    /// let rt = RuntimeConf::new("c1", "eth0")
    ///     .with_capability("portMappings", serde_json::json!([{"hostPort": 8080, "containerPort": 80}]))
    ///     .with_capability("bandwidth", serde_json::json!({"ingressRate": 1000}));
    /// let conf = Runtime::plugin_config(&list.config.plugins[0], "pods", Version::V1_0_0, None, &rt);
    /// assert_eq!(conf["name"], "pods");
    /// assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    /// assert!(conf["runtimeConfig"].get("bandwidth").is_none());
    /// ```
    pub fn plugin_config(
        plugin: &NetworkConfig,
        name: &str,
        version: Version,
        prev_result: Option<&CniResult>,
        rt: &RuntimeConf,
    ) -> Value {
        let mut conf = match serde_json::to_value(plugin) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        conf.insert("name".into(), Value::from(name));
        conf.insert("cniVersion".into(), Value::from(version.to_string()));
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.to_value());
        }
        let runtime_config: Map<String, Value> = plugin
            .capabilities
            .iter()
            .flatten()
            .filter(|(_, enabled)| **enabled)
            .filter_map(|(cap, _)| Some((cap.clone(), rt.capability_args.get(cap)?.clone())))
            .collect();
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        Value::Object(conf)
    }

    fn exec(
        &self,
        list: &ConfList,
        plugin: &NetworkConfig,
        command: Command,
        config: &Value,
        rt: &RuntimeConf,
    ) -> Result<(PathBuf, Vec<u8>), RuntimeError> {
        let err = |source| RuntimeError::Plugin {
            network: list.config.name.clone(),
            plugin_type: plugin.plugin_type.clone(),
            command,
            source: Box::new(source),
        };
        let path = find_in_path(&plugin.plugin_type, &self.path).map_err(err)?;
        let cni_path = self
            .path
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":");
        let netns = rt
            .netns
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args = rt.cni_args();
        let cni_env = [
            ("CNI_COMMAND", command.as_str()),
            ("CNI_CONTAINERID", rt.container_id.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", rt.ifname.as_str()),
            ("CNI_ARGS", args.as_str()),
            ("CNI_PATH", cni_path.as_str()),
        ];
        // Serialising a Value cannot fail.
        let stdin = serde_json::to_vec(config).unwrap_or_default();
        let mut env = self.extra_env();
        env.extend(cni_env);
        let stdout = exec_plugin_with_timeout(&path, &env, &stdin, self.timeout).map_err(err)?;
        Ok((path, stdout))
    }

    fn validate_attachment(list: &ConfList, rt: &RuntimeConf) -> Result<(), RuntimeError> {
        validate::container_id(&rt.container_id).map_err(RuntimeError::Invalid)?;
        validate::network_name(&list.config.name).map_err(RuntimeError::Invalid)?;
        validate::interface_name(&rt.ifname).map_err(RuntimeError::Invalid)
    }

    /// Run `ADD` along the chain and cache the final result.
    pub fn add_network_list(
        &self,
        list: &ConfList,
        rt: &RuntimeConf,
    ) -> Result<CniResult, RuntimeError> {
        let version = self.version(list)?;
        Self::validate_attachment(list, rt)?;
        let name = &list.config.name;
        let mut prev: Option<CniResult> = None;
        for plugin in &list.config.plugins {
            let config = Self::plugin_config(plugin, name, version, prev.as_ref(), rt);
            let (path, stdout) = self.exec(list, plugin, Command::Add, &config, rt)?;
            if stdout.iter().all(u8::is_ascii_whitespace) {
                return Err(RuntimeError::MissingResult {
                    network: name.clone(),
                    plugin_type: plugin.plugin_type.clone(),
                });
            }
            let result = CniResult::from_slice_with_default(&stdout, version)
                .and_then(|r| r.convert(version))
                .map_err(|source| RuntimeError::Plugin {
                    network: name.clone(),
                    plugin_type: plugin.plugin_type.clone(),
                    command: Command::Add,
                    source: Box::new(ExecError::BadResult {
                        plugin: path,
                        source,
                    }),
                })?;
            prev = Some(result);
        }
        // Invariant: from_bytes guarantees at least one plugin, so `prev` is set.
        let result = prev.unwrap_or_else(|| CniResult::new(version));
        let mut entry = CacheEntry::new(name, &rt.container_id, &rt.ifname, list.bytes.clone());
        entry.netns = rt
            .netns
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        entry.cni_args = rt
            .args
            .iter()
            .map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        entry.capability_args = rt.capability_args.clone();
        entry.result = Some(result.to_value());
        entry
            .write(&self.cache_dir)
            .map_err(Self::cache_err(list))?;
        Ok(result)
    }

    /// The cached result of an attachment, converted to the list's version.
    pub fn cached_result(
        &self,
        list: &ConfList,
        rt: &RuntimeConf,
    ) -> Result<Option<CniResult>, RuntimeError> {
        let version = self.version(list)?;
        let entry = CacheEntry::read(
            &self.cache_dir,
            &list.config.name,
            &rt.container_id,
            &rt.ifname,
        )
        .map_err(Self::cache_err(list))?;
        let Some(entry) = entry else { return Ok(None) };
        let path = crate::cache::cache_file_path(
            &self.cache_dir,
            &list.config.name,
            &rt.container_id,
            &rt.ifname,
        )
        .map_err(Self::cache_err(list))?;
        entry
            .result_as(version)
            .transpose()
            .map_err(|source| Self::cache_err(list)(CacheError::Result { path, source }))
    }

    /// The configuration and runtime arguments an attachment was made with,
    /// from the cache (libcni's `GetNetworkListCachedConfig`): the conflist
    /// bytes, and `rt` with its args, capability args and (when `rt` has none)
    /// netns replaced by the cached ones. `Ok(None)` when nothing is cached.
    ///
    /// This lets a runtime delete an attachment whose configuration file has
    /// changed or gone since `ADD`.
    ///
    /// ```no_run
    /// use overlay_cni::runtime::{Runtime, RuntimeConf};
    ///
    /// let cni = Runtime::new(vec!["/opt/cni/bin".into()]);
    /// let rt = RuntimeConf::new("3f6940ab5ab4", "eth0");
    /// if let Some((list, rt)) = cni.cached_config("pods", &rt).unwrap() {
    ///     cni.del_network_list(&list, &rt).unwrap();
    /// }
    /// ```
    pub fn cached_config(
        &self,
        network: &str,
        rt: &RuntimeConf,
    ) -> Result<Option<(ConfList, RuntimeConf)>, RuntimeError> {
        let cache_err = |source| RuntimeError::Cache {
            network: network.to_owned(),
            source,
        };
        let Some(entry) = CacheEntry::read(&self.cache_dir, network, &rt.container_id, &rt.ifname)
            .map_err(cache_err)?
        else {
            return Ok(None);
        };
        if entry.kind != crate::cache::CACHE_KIND_V1 {
            // A legacy entry holds only a result: no configuration to return.
            return Ok(None);
        }
        let list = ConfList::from_bytes(entry.config).map_err(|e| RuntimeError::CachedConfig {
            network: network.to_owned(),
            source: Box::new(e),
        })?;
        let mut cached_rt = rt.clone();
        if !entry.cni_args.is_empty() {
            cached_rt.args = entry.cni_args.into_iter().map(|[k, v]| (k, v)).collect();
        }
        cached_rt.capability_args = entry.capability_args;
        if cached_rt.netns.is_none() && !entry.netns.is_empty() {
            cached_rt.netns = Some(PathBuf::from(entry.netns));
        }
        Ok(Some((list, cached_rt)))
    }

    /// Run `CHECK` along the chain with the cached result as `prevResult`.
    /// Does nothing when the list sets `disableCheck`.
    pub fn check_network_list(
        &self,
        list: &ConfList,
        rt: &RuntimeConf,
    ) -> Result<(), RuntimeError> {
        let version = self.version(list)?;
        if !version.supports_check() {
            return Err(RuntimeError::CheckNotSupported {
                network: list.config.name.clone(),
                version,
            });
        }
        if list.config.disable_check {
            return Ok(());
        }
        let cached = self.cached_result(list, rt)?;
        for plugin in &list.config.plugins {
            let config =
                Self::plugin_config(plugin, &list.config.name, version, cached.as_ref(), rt);
            self.exec(list, plugin, Command::Check, &config, rt)?;
        }
        Ok(())
    }

    /// Run `DEL` along the chain in reverse, with the cached result as
    /// `prevResult` (0.4.0 and later), then remove the cache entry. An
    /// unreadable cache entry is discarded and the plugins get no
    /// `prevResult`, so DEL still runs.
    pub fn del_network_list(&self, list: &ConfList, rt: &RuntimeConf) -> Result<(), RuntimeError> {
        let version = self.version(list)?;
        // A cache entry that cannot be read must not block DEL (it has to
        // succeed); as libcni does, drop the entry and send no prevResult.
        let cached = if version.supports_check() {
            self.cached_result(list, rt).unwrap_or_else(|_| {
                let _ = CacheEntry::remove(
                    &self.cache_dir,
                    &list.config.name,
                    &rt.container_id,
                    &rt.ifname,
                );
                None
            })
        } else {
            None
        };
        for plugin in list.config.plugins.iter().rev() {
            let config =
                Self::plugin_config(plugin, &list.config.name, version, cached.as_ref(), rt);
            self.exec(list, plugin, Command::Del, &config, rt)?;
        }
        // The attachment is gone; a stale cache file would only make GC retry it.
        let _ = CacheEntry::remove(
            &self.cache_dir,
            &list.config.name,
            &rt.container_id,
            &rt.ifname,
        );
        Ok(())
    }

    /// Garbage-collect the network: `DEL` every cached attachment not in
    /// `valid`, then (1.1.0) run `GC` on every plugin. Does nothing when the
    /// list sets `disableGC`. Runs everything and reports all failures.
    pub fn gc_network_list(
        &self,
        list: &ConfList,
        valid: &[GcAttachment],
    ) -> Result<(), RuntimeError> {
        if list.config.disable_gc {
            return Ok(());
        }
        let version = self.version(list)?;
        let name = &list.config.name;
        let keep: HashSet<(&str, &str)> = valid
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        let mut errors = Vec::new();
        let cached = CacheEntry::list(&self.cache_dir).map_err(Self::cache_err(list))?;
        for entry in cached.iter().filter(|e| &e.network_name == name) {
            if keep.contains(&(entry.container_id.as_str(), entry.ifname.as_str())) {
                continue;
            }
            let rt = RuntimeConf {
                container_id: entry.container_id.clone(),
                netns: (!entry.netns.is_empty()).then(|| PathBuf::from(&entry.netns)),
                ifname: entry.ifname.clone(),
                args: entry
                    .cni_args
                    .iter()
                    .map(|[k, v]| (k.clone(), v.clone()))
                    .collect(),
                capability_args: entry.capability_args.clone(),
            };
            if let Err(e) = self.del_network_list(list, &rt) {
                errors.push(e);
            }
        }
        if version.supports_gc_and_status() {
            // Serialising plain strings cannot fail.
            let attachments = serde_json::to_value(valid).unwrap_or(Value::Null);
            for plugin in &list.config.plugins {
                let mut config =
                    Self::plugin_config(plugin, name, version, None, &RuntimeConf::default());
                // As libcni, the plugin's own keys (a static `runtimeConfig`
                // among them) pass through unchanged.
                if let Value::Object(map) = &mut config {
                    map.insert(VALID_ATTACHMENTS_KEY.into(), attachments.clone());
                    map.insert(ATTACHMENTS_KEY.into(), attachments.clone());
                }
                if let Err(e) =
                    self.exec(list, plugin, Command::Gc, &config, &RuntimeConf::default())
                {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Gc {
                network: name.clone(),
                errors,
            })
        }
    }

    /// Run `STATUS` on every plugin (1.1.0; a no-op for older lists) and
    /// return the first failure, whose [`RuntimeError::cni_error`] carries
    /// the plugin's code (50 or 51).
    pub fn status_network_list(&self, list: &ConfList) -> Result<(), RuntimeError> {
        let version = self.version(list)?;
        if !version.supports_gc_and_status() {
            return Ok(());
        }
        for plugin in &list.config.plugins {
            let config = Self::plugin_config(
                plugin,
                &list.config.name,
                version,
                None,
                &RuntimeConf::default(),
            );
            self.exec(
                list,
                plugin,
                Command::Status,
                &config,
                &RuntimeConf::default(),
            )?;
        }
        Ok(())
    }

    /// Ask a plugin which versions it supports, within the runtime's
    /// [timeout](Runtime::with_timeout).
    pub fn version_info(&self, plugin_type: &str) -> Result<VersionInfo, ExecError> {
        version_info_with_timeout(
            &find_in_path(plugin_type, &self.path)?,
            &self.extra_env(),
            self.timeout,
        )
    }

    /// Check that every plugin of the list exists and supports the list's
    /// version; returns the capabilities the chain declares (sorted).
    pub fn validate_network_list(&self, list: &ConfList) -> Result<Vec<String>, RuntimeError> {
        let version = self.version(list)?;
        let mut caps = std::collections::BTreeSet::new();
        for plugin in &list.config.plugins {
            let err = |source| RuntimeError::Plugin {
                network: list.config.name.clone(),
                plugin_type: plugin.plugin_type.clone(),
                command: Command::Version,
                source: Box::new(source),
            };
            let info = self.version_info(&plugin.plugin_type).map_err(err)?;
            if !info.supports(version) {
                return Err(RuntimeError::Invalid(
                    CniError::new(
                        crate::error::ErrorCode::IncompatibleCniVersion,
                        format!(
                            "plugin {} does not support config version {version}",
                            plugin.plugin_type
                        ),
                    )
                    .with_details(format!(
                        "it supports {}",
                        info.supported_versions
                            .iter()
                            .map(Version::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                ));
            }
            caps.extend(
                plugin
                    .capabilities
                    .iter()
                    .flatten()
                    .filter(|(_, on)| **on)
                    .map(|(c, _)| c.clone()),
            );
        }
        Ok(caps.into_iter().collect())
    }

    /// Every attachment in the cache (any network), as libcni's `GetCachedAttachments`.
    pub fn cached_attachments(&self) -> Result<Vec<CacheEntry>, CacheError> {
        CacheEntry::list(&self.cache_dir)
    }
}
