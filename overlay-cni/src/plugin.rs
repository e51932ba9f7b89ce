//! The plugin side: a runner that turns a process invocation into a call on
//! a [`Plugin`] (the equivalent of Go's `skel`).
//!
//! [`run`] reads the `CNI_*` environment and stdin, validates them as libcni's
//! runner does, negotiates the version, calls the plugin, prints the result
//! (converted to the configuration's version) or the error JSON on stdout,
//! and exits with status 0 or 1. [`dispatch`] is the same logic without the
//! process around it, for tests.
//!
//! | check | error code |
//! |-------|------------|
//! | `CNI_COMMAND` or a variable the command needs is missing | 4 |
//! | unknown `CNI_COMMAND` | 4 |
//! | stdin is not a JSON object, or a field has the wrong type | 6 |
//! | network name missing or invalid | 7 |
//! | container ID empty / invalid (ADD, DEL, CHECK) | 3 / 4 |
//! | `CNI_IFNAME` invalid (ADD, DEL, CHECK) | 4 |
//! | `cniVersion` not supported by the plugin | 1 |
//! | `CHECK` below 0.4.0, `GC` or `STATUS` below 1.1.0 | 1 |
//!
//! Variables required per command: `ADD` and `CHECK` need `CNI_CONTAINERID`,
//! `CNI_NETNS`, `CNI_IFNAME` and `CNI_PATH`; `DEL` the same except
//! `CNI_NETNS`; `GC` and `STATUS` need `CNI_PATH`; `VERSION` needs nothing.
//!
//! ```
//! use std::collections::HashMap;
//! use overlay_cni::error::CniError;
//! use overlay_cni::plugin::{dispatch, Plugin, Request};
//! use overlay_cni::result::{CniResult, IpConfig};
//!
//! struct Static;
//! impl Plugin for Static {
//!     fn add(&self, req: &Request) -> Result<CniResult, CniError> {
//!         let mut result = CniResult::new(req.version);
//!         result.ips.push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
//!         Ok(result)
//!     }
//!     fn del(&self, _req: &Request) -> Result<(), CniError> { Ok(()) }
//!     fn check(&self, _req: &Request) -> Result<(), CniError> { Ok(()) }
//! }
//!
//! let env: HashMap<String, String> = [
//!     ("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/p"),
//!     ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/opt/cni/bin"),
//! ].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
//! let out = dispatch(&Static, &env, br#"{"cniVersion":"0.4.0","name":"n","type":"static"}"#);
//! assert_eq!(out.exit_code, 0);
//! let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
//! assert_eq!(json["ips"][0]["version"], "4"); // converted to the config's 0.4.0
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

use crate::config::{GcAttachment, NetworkConfig};
use crate::error::{CniError, ErrorCode};
use crate::result::{CniResult, ResultError};
use crate::validate;
use crate::version::{SUPPORTED_VERSIONS, Version, VersionInfo};

/// A CNI command (`CNI_COMMAND`).
///
/// ```
/// use overlay_cni::plugin::Command;
///
/// assert_eq!("CHECK".parse::<Command>().unwrap(), Command::Check);
/// assert!("check".parse::<Command>().is_err()); // names are upper case
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach a container; must succeed when already detached.
    Del,
    /// Verify an attachment (0.4.0 and later).
    Check,
    /// Report supported versions.
    Version,
    /// Report whether the plugin is ready (1.1.0 and later).
    Status,
    /// Remove resources of attachments not in a valid list (1.1.0 and later).
    Gc,
}

impl Command {
    /// The command as written in `CNI_COMMAND`.
    ///
    /// ```
    /// assert_eq!(overlay_cni::plugin::Command::Gc.as_str(), "GC");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// The `CNI_*` variables (besides `CNI_COMMAND`) this command requires.
    ///
    /// ```
    /// use overlay_cni::plugin::Command;
    /// assert!(!Command::Del.required_vars().contains(&"CNI_NETNS"));
    /// assert_eq!(Command::Status.required_vars(), &["CNI_PATH"]);
    /// ```
    pub fn required_vars(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Status | Command::Gc => &["CNI_PATH"],
            Command::Version => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `CNI_COMMAND` value that is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown CNI_COMMAND: {0}")]
pub struct UnknownCommand(pub String);

impl FromStr for Command {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => return Err(UnknownCommand(other.to_owned())),
        })
    }
}

/// The `CNI_*` variables of an invocation (empty when unset).
///
/// Delegation ([`crate::delegate`]) passes these on to the delegate.
///
/// ```
/// use overlay_cni::plugin::{CniEnv, Command};
///
/// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
/// let vars = env.vars(Command::Del);
/// assert_eq!(vars[0], ("CNI_COMMAND", "DEL"));
/// assert_eq!(vars[1], ("CNI_CONTAINERID", "c1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`.
    pub path: String,
}

impl CniEnv {
    /// Read the variables through `lookup` (for example `std::env::var`).
    ///
    /// ```
    /// let env = overlay_cni::plugin::CniEnv::from_lookup(|k| (k == "CNI_IFNAME").then(|| "eth0".to_owned()));
    /// assert_eq!(env.ifname, "eth0");
    /// assert_eq!(env.netns, "");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).unwrap_or_default();
        CniEnv {
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
        }
    }

    /// The variables as `(name, value)` pairs, with `CNI_COMMAND` set to `command`.
    pub fn vars(&self, command: Command) -> [(&'static str, &str); 6] {
        [
            ("CNI_COMMAND", command.as_str()),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.path),
        ]
    }

    /// The directories of `CNI_PATH`.
    pub fn path_dirs(&self) -> Vec<PathBuf> {
        crate::exec::split_path(&self.path)
    }
}

/// One validated invocation, as given to a [`Plugin`].
///
/// ```
/// use std::collections::HashMap;
/// use overlay_cni::{CniError, CniResult, Plugin, Request};
///
/// struct Echo;
/// impl Plugin for Echo {
///     fn add(&self, req: &Request) -> Result<CniResult, CniError> {
///         assert_eq!(req.ifname(), "eth0");
///         assert_eq!(req.network_name(), "pods");
///         assert_eq!(req.config.plugin_type, "echo");
///         assert!(req.netns().is_some());
///         Ok(CniResult::new(req.version))
///     }
///     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// }
/// let env: HashMap<String, String> = [
///     ("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/p"),
///     ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/opt/cni/bin"),
/// ].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
/// let out = overlay_cni::plugin::dispatch(&Echo, &env, br#"{"cniVersion":"1.0.0","name":"pods","type":"echo"}"#);
/// assert_eq!(out.exit_code, 0);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Request {
    /// The command.
    pub command: Command,
    /// The `CNI_*` variables.
    pub env: CniEnv,
    /// The parsed configuration from stdin.
    pub config: NetworkConfig,
    /// The configuration exactly as read from stdin (pass it to delegates).
    pub config_bytes: Vec<u8>,
    /// The negotiated version (the configuration's `cniVersion`).
    pub version: Version,
}

impl Request {
    /// A request from its parts, without the runner's checks (the runner
    /// builds its requests itself, after validating the environment and
    /// negotiating the version): for tests, and for code that runs a
    /// plugin's logic in-process. The version is the configuration's
    /// `cniVersion` (0.1.0 when absent).
    ///
    /// ```
    /// use overlay_cni::plugin::{CniEnv, Command, Request};
    ///
    /// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
    /// let req = Request::new(Command::Add, env, br#"{"cniVersion":"1.0.0","name":"pods","type":"x"}"#).unwrap();
    /// assert_eq!(req.network_name(), "pods");
    /// assert_eq!(req.version, overlay_cni::Version::V1_0_0);
    /// ```
    pub fn new(
        command: Command,
        env: CniEnv,
        config_bytes: &[u8],
    ) -> Result<Request, serde_json::Error> {
        let config: NetworkConfig = serde_json::from_slice(config_bytes)?;
        Ok(Request {
            command,
            env,
            version: config.cni_version.unwrap_or_default(),
            config,
            config_bytes: config_bytes.to_vec(),
        })
    }

    /// `CNI_CONTAINERID`.
    pub fn container_id(&self) -> &str {
        &self.env.container_id
    }

    /// `CNI_IFNAME`.
    pub fn ifname(&self) -> &str {
        &self.env.ifname
    }

    /// `CNI_NETNS`, or `None` when unset (allowed for `DEL`).
    pub fn netns(&self) -> Option<&Path> {
        (!self.env.netns.is_empty()).then(|| Path::new(&self.env.netns))
    }

    /// The network name.
    pub fn network_name(&self) -> &str {
        self.config.name.as_deref().unwrap_or_default()
    }

    /// The previous result (`prevResult`) converted to [`Request::version`], if any.
    pub fn prev_result(&self) -> Option<Result<CniResult, ResultError>> {
        self.config.prev_result()
    }

    /// A 64-bit hash identifying this attachment: FNV-1a over the network
    /// name, container ID and interface name, each followed by a NUL byte.
    ///
    /// The value is fixed by this definition (it does not change between
    /// builds, platforms or crate versions), so a plugin can derive names of
    /// host-side objects from it (a host veth end, a firewall chain) and find
    /// them again on `DEL` without the container's namespace, even after an
    /// upgrade. The NUL separators keep `("ab", "c")` and `("a", "bc")` apart.
    pub fn attachment_hash(&self) -> u64 {
        attachment_hash(self.network_name(), self.container_id(), self.ifname())
    }

    /// [`host_veth_name`] of this attachment.
    ///
    /// ```
    /// use overlay_cni::plugin::{CniEnv, Command, Request};
    ///
    /// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
    /// let req = Request::new(Command::Del, env, br#"{"cniVersion":"1.0.0","name":"pods","type":"x"}"#).unwrap();
    /// assert_eq!(req.host_veth_name(), "veth143f844a");
    /// ```
    pub fn host_veth_name(&self) -> String {
        host_veth_name(self.attachment_hash())
    }

    /// [`container_mac`] of this attachment.
    ///
    /// ```
    /// use overlay_cni::plugin::{CniEnv, Command, Request};
    ///
    /// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
    /// let req = Request::new(Command::Del, env, br#"{"cniVersion":"1.0.0","name":"pods","type":"x"}"#).unwrap();
    /// assert_eq!(req.container_mac().to_string(), "d6:79:9e:bb:95:fe");
    /// ```
    pub fn container_mac(&self) -> overlay_core::MacAddr {
        container_mac(self.attachment_hash())
    }

    /// `CNI_ARGS`, refused as the reference plugins refuse them when they
    /// hold a key not in `known` without `IgnoreUnknown=1` (code 999, the
    /// reference's message); see [`crate::args`].
    ///
    /// ```
    /// use overlay_cni::plugin::{CniEnv, Command, Request};
    /// # use overlay_cni::{CniError, CniResult, Plugin};
    /// # struct P;
    /// # impl Plugin for P {
    /// #     fn add(&self, req: &Request) -> Result<CniResult, CniError> {
    /// let args = req.load_args(&["MAC"])?;
    /// assert_eq!(args.get("MAC"), Some("02:00:00:00:00:01"));
    /// #         Ok(CniResult::new(req.version))
    /// #     }
    /// #     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
    /// #     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
    /// # }
    /// # let env: std::collections::HashMap<String, String> = [
    /// #     ("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/p"),
    /// #     ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/opt/cni/bin"),
    /// #     ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:01"),
    /// # ].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    /// # let out = overlay_cni::plugin::dispatch(&P, &env, br#"{"cniVersion":"1.0.0","name":"n","type":"p"}"#);
    /// # assert_eq!(out.exit_code, 0);
    /// ```
    pub fn load_args(&self, known: &[&str]) -> Result<crate::args::CniArgs, CniError> {
        Ok(crate::args::CniArgs::load(&self.env.args, known)?)
    }
}

/// The attachment hash of [`Request::attachment_hash`] from its three
/// parts, for a plugin that knows an attachment without a request for it
/// (GC finds stale attachments in its own state): FNV-1a 64 over the
/// network name, container ID and interface name, each followed by a NUL
/// byte.
///
/// ```
/// assert_eq!(
///     overlay_cni::plugin::attachment_hash("pods", "c1", "eth0"),
///     overlay_cni::plugin::attachment_hash("pods", "c1", "eth0"),
/// );
/// assert_ne!(
///     overlay_cni::plugin::attachment_hash("pods", "c1", "eth0"),
///     overlay_cni::plugin::attachment_hash("pods", "c", "1eth0"),
/// );
/// ```
pub fn attachment_hash(network: &str, container_id: &str, ifname: &str) -> u64 {
    let mut hash = overlay_core::hash::Fnv1a64::new();
    for part in [network, container_id, ifname] {
        hash.write(part.as_bytes()).write(&[0]);
    }
    hash.finish()
}

/// The name of an attachment's host-side veth end: `veth` and eight hex
/// digits folded from the [`attachment_hash`] (its upper 32 bits XORed into
/// its lower 32 bits).
///
/// The value is fixed by this definition, so `DEL` and `GC` find the host
/// end without the container's namespace (which may be gone), even after
/// the plugin was upgraded; existing deployments depend on it. The name is
/// 12 bytes, within the kernel's 15.
///
/// ```
/// use overlay_cni::plugin::{attachment_hash, host_veth_name};
///
/// let name = host_veth_name(attachment_hash("pods", "c1", "eth0"));
/// assert_eq!(name, "veth143f844a");
/// ```
pub fn host_veth_name(attachment_hash: u64) -> String {
    // Truncation intended: the fold keeps 32 bits.
    format!(
        "veth{:08x}",
        (attachment_hash ^ (attachment_hash >> 32)) as u32
    )
}

/// The MAC address of an attachment's container interface: locally
/// administered and unicast, from other bits of the [`attachment_hash`]
/// than [`host_veth_name`] uses (the hash rotated left by 29, its first six
/// bytes big-endian, the first byte's multicast bit cleared and its local
/// bit set).
///
/// A repeated `ADD` of the same attachment gets the same address, and the
/// plugin knows it without asking the container's namespace. The value is
/// fixed by this definition.
///
/// ```
/// use overlay_cni::plugin::{attachment_hash, container_mac};
///
/// let mac = container_mac(attachment_hash("pods", "c1", "eth0"));
/// assert_eq!(mac.to_string(), "d6:79:9e:bb:95:fe");
/// assert!(mac.is_unicast());
/// ```
pub fn container_mac(attachment_hash: u64) -> overlay_core::MacAddr {
    let h = attachment_hash.rotate_left(29).to_be_bytes();
    overlay_core::MacAddr::new([(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]])
}

/// A CNI plugin: one method per command.
///
/// A plugin is a short-lived process, so the trait is synchronous. The runner
/// has validated the environment and the configuration before any method is
/// called, and converts [`Plugin::add`]'s result to the configuration's
/// version itself (build it in any version, [`Request::version`] is simplest).
///
/// ```
/// use overlay_cni::{CniError, CniResult, ErrorCode, Plugin, Request, Version};
///
/// /// A plugin that only speaks 1.x and reports itself unavailable.
/// struct Draining;
/// impl Plugin for Draining {
///     fn supported_versions(&self) -> &[Version] { &[Version::V1_0_0, Version::V1_1_0] }
///     fn add(&self, _: &Request) -> Result<CniResult, CniError> {
///         Err(CniError::new(ErrorCode::TryAgainLater, "node is draining"))
///     }
///     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn status(&self, _: &Request) -> Result<(), CniError> {
///         Err(CniError::new(ErrorCode::PluginNotAvailable, "node is draining"))
///     }
/// }
/// let env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")]
///     .into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
/// let out = overlay_cni::plugin::dispatch(&Draining, &env, br#"{"cniVersion":"1.1.0","name":"n","type":"d"}"#);
/// assert_eq!(out.exit_code, 1);
/// assert_eq!(out.cni_error().unwrap().code, ErrorCode::PluginNotAvailable);
/// ```
pub trait Plugin {
    /// The versions this plugin accepts; every version this crate implements by default.
    fn supported_versions(&self) -> &[Version] {
        SUPPORTED_VERSIONS
    }

    /// A one-line description printed on stderr when run without `CNI_COMMAND`.
    /// `None` makes that case an error (code 4).
    fn about(&self) -> Option<&str> {
        None
    }

    /// `ADD`: attach the container and return the result.
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;

    /// `DEL`: detach the container and release its resources.
    ///
    /// **DEL is idempotent by contract**: it must succeed when called twice,
    /// when `ADD` never ran or failed half-way, and when the network namespace
    /// ([`Request::netns`] may be `None`) or the interface is already gone.
    /// Release what can be released and return `Ok`.
    fn del(&self, req: &Request) -> Result<(), CniError>;

    /// `CHECK`: verify the attachment described by `prevResult` (0.4.0 and later).
    fn check(&self, req: &Request) -> Result<(), CniError>;

    /// `STATUS` (1.1.0): `Ok` when ready to serve `ADD`; otherwise an error
    /// with code 50 or 51. Ready by default.
    fn status(&self, req: &Request) -> Result<(), CniError> {
        let _ = req;
        Ok(())
    }

    /// `GC` (1.1.0): release resources of every attachment of this network
    /// that is not in `valid` (read from `cni.dev/valid-attachments` or
    /// `cni.dev/attachments`; empty when the runtime sent neither, as in
    /// libcni). Nothing to collect by default.
    fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let _ = (req, valid);
        Ok(())
    }
}

/// What a plugin invocation produced: the bytes for stdout and stderr and the exit code.
///
/// ```
/// # use overlay_cni::{CniError, CniResult, Plugin, Request};
/// # struct P;
/// # impl Plugin for P {
/// #     fn add(&self, r: &Request) -> Result<CniResult, CniError> { Ok(CniResult::new(r.version)) }
/// #     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// #     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// # }
/// let env = [("CNI_COMMAND", "ADD")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
/// let out = overlay_cni::plugin::dispatch(&P, &env, b"{}");
/// assert_eq!(out.exit_code, 1);
/// assert_eq!(out.cni_error().unwrap().code, overlay_cni::ErrorCode::InvalidEnvironmentVariables);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// Bytes for stdout (result JSON, version JSON or error JSON).
    pub stdout: Vec<u8>,
    /// Bytes for stderr (only the `about` text).
    pub stderr: Vec<u8>,
    /// The process exit code: 0 on success, 1 on error.
    pub exit_code: i32,
}

impl Output {
    fn ok(stdout: Vec<u8>) -> Self {
        Output {
            stdout,
            stderr: Vec::new(),
            exit_code: 0,
        }
    }

    fn error(err: CniError) -> Self {
        Output {
            stdout: err.to_json(),
            stderr: Vec::new(),
            exit_code: 1,
        }
    }

    /// The error object, when this output is a failure.
    pub fn cni_error(&self) -> Option<CniError> {
        (self.exit_code != 0)
            .then(|| serde_json::from_slice(&self.stdout).ok())
            .flatten()
    }
}

/// Run `plugin` for one invocation described by an environment map and stdin.
///
/// This is [`run`] without the process: no environment, stdio or exit is
/// touched, so it can be unit-tested.
pub fn dispatch<P: Plugin + ?Sized>(
    plugin: &P,
    env: &HashMap<String, String>,
    stdin: &[u8],
) -> Output {
    dispatch_with(plugin, |k| env.get(k).cloned(), stdin)
}

/// Like [`dispatch`], reading variables through `lookup`.
///
/// ```
/// # use overlay_cni::{CniError, CniResult, Plugin, Request};
/// # struct P;
/// # impl Plugin for P {
/// #     fn add(&self, r: &Request) -> Result<CniResult, CniError> { Ok(CniResult::new(r.version)) }
/// #     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// #     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// # }
/// let out = overlay_cni::plugin::dispatch_with(&P, |k| (k == "CNI_COMMAND").then(|| "VERSION".to_owned()), b"");
/// let info: overlay_cni::version::VersionInfo = serde_json::from_slice(&out.stdout).unwrap();
/// assert!(info.supports(overlay_cni::Version::V1_1_0));
/// ```
pub fn dispatch_with<P: Plugin + ?Sized>(
    plugin: &P,
    lookup: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Output {
    let highest = plugin
        .supported_versions()
        .iter()
        .max()
        .copied()
        .unwrap_or(Version::LATEST);
    let command = lookup("CNI_COMMAND").unwrap_or_default();
    if command.is_empty()
        && let Some(about) = plugin.about()
    {
        let versions = join_versions(plugin.supported_versions());
        return Output {
            stdout: Vec::new(),
            stderr: format!("{about}\nCNI protocol versions supported: {versions}\n").into_bytes(),
            exit_code: 0,
        };
    }
    match dispatch_inner(plugin, &command, &lookup, stdin) {
        Ok(stdout) => Output::ok(stdout),
        Err((err, version)) => {
            let version = err.cni_version.or(version).unwrap_or(highest);
            Output::error(err.with_version(version))
        }
    }
}

type Failure = (CniError, Option<Version>);

fn join_versions(versions: &[Version]) -> String {
    versions
        .iter()
        .map(Version::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn dispatch_inner<P: Plugin + ?Sized>(
    plugin: &P,
    command: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Vec<u8>, Failure> {
    let fail = |err: CniError| (err, None);
    let parsed = command.parse::<Command>();
    // Missing variables first, as libcni's runner does.
    let mut missing: Vec<&str> = Vec::new();
    if command.is_empty() {
        missing.push("CNI_COMMAND");
    }
    if let Ok(cmd) = parsed {
        missing.extend(
            cmd.required_vars()
                .iter()
                .filter(|var| lookup(var).is_none_or(|v| v.is_empty())),
        );
    }
    if !missing.is_empty() {
        return Err(fail(CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            format!("required env variables [{}] missing", missing.join(",")),
        )));
    }
    let cmd = parsed.map_err(|e| {
        fail(CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            e.to_string(),
        ))
    })?;
    let env = CniEnv::from_lookup(lookup);

    if cmd == Command::Version {
        return Ok(version_answer(plugin, stdin));
    }

    // The configuration: JSON object, name, then the attachment variables.
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        fail(
            CniError::new(
                ErrorCode::DecodingFailure,
                "error unmarshalling network config",
            )
            .with_details(e.to_string()),
        )
    })?;
    let Value::Object(object) = &value else {
        return Err(fail(
            CniError::new(
                ErrorCode::DecodingFailure,
                "error unmarshalling network config",
            )
            .with_details("the network configuration is not a JSON object"),
        ));
    };
    let name = object.get("name").and_then(Value::as_str).unwrap_or("");
    validate::network_name(name).map_err(fail)?;
    if matches!(cmd, Command::Add | Command::Del | Command::Check) {
        validate::container_id(&env.container_id).map_err(fail)?;
        validate::interface_name(&env.ifname).map_err(fail)?;
    }

    // Version negotiation.
    let version = match object.get("cniVersion") {
        None => Ok(Version::V0_1_0),
        Some(Value::String(s)) => s.parse::<Version>().map_err(|_| s.clone()),
        Some(other) => Err(other.to_string()),
    }
    .ok()
    .filter(|v| plugin.supported_versions().contains(v))
    .ok_or_else(|| {
        let written = object
            .get("cniVersion")
            .map_or_else(|| "0.1.0".to_owned(), Value::to_string);
        fail(
            CniError::new(
                ErrorCode::IncompatibleCniVersion,
                "incompatible CNI versions",
            )
            .with_details(format!(
                "config is {written}, plugin supports [{}]",
                join_versions(plugin.supported_versions())
            )),
        )
    })?;
    let with_version = |err: CniError| (err, Some(version));
    let config: NetworkConfig = serde_json::from_value(value).map_err(|e| {
        with_version(
            CniError::new(
                ErrorCode::DecodingFailure,
                "error unmarshalling network config",
            )
            .with_details(e.to_string()),
        )
    })?;
    let needs = |min: Version, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(with_version(
                CniError::new(
                    ErrorCode::IncompatibleCniVersion,
                    format!("config version does not allow {cmd}"),
                )
                .with_details(format!(
                    "{cmd} needs cniVersion {min} or later, config is {version}"
                )),
            ))
        }
    };
    match cmd {
        Command::Check => needs(Version::V0_4_0, version.supports_check())?,
        Command::Gc | Command::Status => needs(Version::V1_1_0, version.supports_gc_and_status())?,
        _ => {}
    }
    let req = Request {
        command: cmd,
        env,
        config,
        config_bytes: stdin.to_vec(),
        version,
    };
    match cmd {
        Command::Add => {
            let result = plugin.add(&req).map_err(with_version)?;
            let converted = result.convert(version).map_err(|e| {
                with_version(
                    CniError::new(ErrorCode::Internal, "cannot convert the plugin's result")
                        .with_details(e.to_string()),
                )
            })?;
            // Only strings and numbers: serialisation cannot fail.
            Ok(serde_json::to_vec_pretty(&converted).unwrap_or_default())
        }
        Command::Del => plugin.del(&req).map(|()| Vec::new()).map_err(with_version),
        Command::Check => plugin
            .check(&req)
            .map(|()| Vec::new())
            .map_err(with_version),
        Command::Status => plugin
            .status(&req)
            .map(|()| Vec::new())
            .map_err(with_version),
        Command::Gc => {
            let valid = req
                .config
                .valid_attachments()
                .map_err(|e| {
                    with_version(
                        CniError::new(
                            ErrorCode::DecodingFailure,
                            "invalid cni.dev/valid-attachments",
                        )
                        .with_details(e.to_string()),
                    )
                })?
                .unwrap_or_default();
            plugin
                .gc(&req, &valid)
                .map(|()| Vec::new())
                .map_err(with_version)
        }
        Command::Version => Ok(version_answer(plugin, stdin)),
    }
}

/// The `VERSION` answer: the plugin's versions, in the version the caller
/// asked for on stdin when the plugin supports it, else the plugin's highest.
fn version_answer<P: Plugin + ?Sized>(plugin: &P, stdin: &[u8]) -> Vec<u8> {
    let supported = plugin.supported_versions();
    let requested = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str()?.parse::<Version>().ok())
        .filter(|v| supported.contains(v));
    let info = VersionInfo {
        cni_version: requested
            .or_else(|| supported.iter().max().copied())
            .unwrap_or(Version::LATEST),
        supported_versions: supported.to_vec(),
    };
    // Only strings: serialisation cannot fail.
    serde_json::to_vec(&info).unwrap_or_default()
}

/// Run `plugin` as this process: read the environment and stdin, write
/// stdout/stderr, and exit with the right status. Never returns.
///
/// For `VERSION`, stdin is not read (like libcni's runner), so the plugin
/// answers even when stdin is a terminal.
///
/// ```no_run
/// # use overlay_cni::{error::CniError, plugin::{Plugin, Request}, result::CniResult};
/// struct Noop;
/// impl Plugin for Noop {
///     fn add(&self, req: &Request) -> Result<CniResult, CniError> { Ok(CniResult::new(req.version)) }
///     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// }
/// fn main() {
///     overlay_cni::plugin::run(&Noop);
/// }
/// ```
pub fn run<P: Plugin + ?Sized>(plugin: &P) -> ! {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut stdin = Vec::new();
    let is_version = lookup("CNI_COMMAND").as_deref() == Some("VERSION");
    let output = if !is_version {
        match std::io::stdin().read_to_end(&mut stdin) {
            Ok(_) => dispatch_with(plugin, lookup, &stdin),
            Err(e) => Output::error(
                CniError::new(ErrorCode::IoFailure, "error reading from stdin")
                    .with_details(e.to_string())
                    .with_version(Version::LATEST),
            ),
        }
    } else {
        dispatch_with(plugin, lookup, &stdin)
    };
    let mut out = std::io::stdout().lock();
    // If stdout is gone, the runtime cannot read anything anyway; the exit
    // status still tells it what happened.
    let _ = out.write_all(&output.stdout).and_then(|()| out.flush());
    let _ = std::io::stderr().write_all(&output.stderr);
    std::process::exit(output.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::IpConfig;
    use serde_json::json;
    use std::cell::RefCell;

    /// Records what it was called with; fails ADD when the config says so.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<(Command, Version)>>,
        gc_valid: RefCell<Vec<GcAttachment>>,
        versions: Option<Vec<Version>>,
    }

    impl Plugin for Recorder {
        fn supported_versions(&self) -> &[Version] {
            self.versions.as_deref().unwrap_or(SUPPORTED_VERSIONS)
        }
        fn about(&self) -> Option<&str> {
            Some("recorder test plugin")
        }
        fn add(&self, req: &Request) -> Result<CniResult, CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            if req.config.extra.contains_key("fail") {
                return Err(CniError::plugin(117, "asked to fail").with_details("fail key"));
            }
            // Built as 1.1.0 on purpose: the runner converts.
            let mut r = CniResult::new(Version::V1_1_0);
            r.ips
                .push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
            Ok(r)
        }
        fn del(&self, req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            Ok(())
        }
        fn check(&self, req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            Ok(())
        }
        fn status(&self, req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            if req.config.extra.contains_key("down") {
                return Err(CniError::new(ErrorCode::PluginNotAvailable, "daemon down"));
            }
            Ok(())
        }
        fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            self.gc_valid.borrow_mut().extend_from_slice(valid);
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn full_env(command: &str) -> HashMap<String, String> {
        env(&[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ])
    }

    fn conf(version: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"cniVersion": version, "name": "net", "type": "recorder"}))
            .unwrap()
    }

    fn expect_error(out: &Output, code: ErrorCode) -> CniError {
        assert_eq!(
            out.exit_code,
            1,
            "stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = out.cni_error().expect("error JSON on stdout");
        assert_eq!(err.code, code, "{err}");
        assert!(
            err.cni_version.is_some(),
            "error JSON always carries cniVersion"
        );
        err
    }

    #[test]
    fn add_prints_result_converted_to_each_config_version() {
        for version in SUPPORTED_VERSIONS {
            let p = Recorder::default();
            let out = dispatch(&p, &full_env("ADD"), &conf(&version.to_string()));
            assert_eq!(out.exit_code, 0);
            let r = CniResult::from_slice(&out.stdout).unwrap();
            assert_eq!(r.cni_version, *version);
            assert_eq!(p.calls.borrow().as_slice(), &[(Command::Add, *version)]);
        }
        let out = dispatch(&Recorder::default(), &full_env("ADD"), &conf("0.3.0"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "0.3.0", "ips": [{"version": "4", "address": "198.51.100.7/24"}]})
        );
    }

    #[test]
    fn plugin_error_is_printed_with_its_code_and_the_config_version() {
        let stdin = serde_json::to_vec(
            &json!({"cniVersion": "0.4.0", "name": "net", "type": "r", "fail": true}),
        )
        .unwrap();
        let out = dispatch(&Recorder::default(), &full_env("ADD"), &stdin);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "0.4.0", "code": 117, "msg": "asked to fail", "details": "fail key"})
        );
        assert_eq!(out.exit_code, 1);
    }

    #[test]
    fn missing_variables_are_code_4_and_listed() {
        let mut e = full_env("ADD");
        e.remove("CNI_NETNS");
        e.remove("CNI_PATH");
        let err = expect_error(
            &dispatch(&Recorder::default(), &e, &conf("1.0.0")),
            ErrorCode::InvalidEnvironmentVariables,
        );
        assert_eq!(
            err.msg,
            "required env variables [CNI_NETNS,CNI_PATH] missing"
        );
        for (cmd, var) in [
            ("ADD", "CNI_CONTAINERID"),
            ("ADD", "CNI_IFNAME"),
            ("CHECK", "CNI_NETNS"),
            ("DEL", "CNI_CONTAINERID"),
            ("DEL", "CNI_IFNAME"),
            ("DEL", "CNI_PATH"),
            ("GC", "CNI_PATH"),
            ("STATUS", "CNI_PATH"),
        ] {
            let mut e = full_env(cmd);
            e.insert(var.to_owned(), String::new());
            let err = expect_error(
                &dispatch(&Recorder::default(), &e, &conf("1.1.0")),
                ErrorCode::InvalidEnvironmentVariables,
            );
            assert!(err.msg.contains(var), "{cmd}: {}", err.msg);
        }
    }

    #[test]
    fn del_does_not_need_netns_and_gc_status_need_only_path() {
        let mut e = full_env("DEL");
        e.remove("CNI_NETNS");
        let p = Recorder::default();
        assert_eq!(dispatch(&p, &e, &conf("1.0.0")).exit_code, 0);
        for cmd in ["GC", "STATUS"] {
            let e = env(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/opt/cni/bin")]);
            let out = dispatch(&p, &e, &conf("1.1.0"));
            assert_eq!(
                out.exit_code,
                0,
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(out.stdout.is_empty());
        }
    }

    #[test]
    fn unknown_command_is_code_4() {
        let err = expect_error(
            &dispatch(&Recorder::default(), &full_env("FROB"), &conf("1.0.0")),
            ErrorCode::InvalidEnvironmentVariables,
        );
        assert_eq!(err.msg, "unknown CNI_COMMAND: FROB");
    }

    #[test]
    fn no_command_prints_about_with_about_text_and_errors_without() {
        let out = dispatch(&Recorder::default(), &env(&[]), b"");
        assert_eq!(out.exit_code, 0);
        let text = String::from_utf8(out.stderr).unwrap();
        assert!(text.starts_with("recorder test plugin\nCNI protocol versions supported: 0.1.0"));

        struct Silent;
        impl Plugin for Silent {
            fn add(&self, r: &Request) -> Result<CniResult, CniError> {
                Ok(CniResult::new(r.version))
            }
            fn del(&self, _: &Request) -> Result<(), CniError> {
                Ok(())
            }
            fn check(&self, _: &Request) -> Result<(), CniError> {
                Ok(())
            }
        }
        let err = expect_error(
            &dispatch(&Silent, &env(&[]), b""),
            ErrorCode::InvalidEnvironmentVariables,
        );
        assert!(err.msg.contains("CNI_COMMAND"));
    }

    #[test]
    fn bad_json_is_code_6() {
        for stdin in [
            &b"{not json"[..],
            b"",
            b"[1,2]",
            br#"{"name":"n","ipam":"x"}"#,
        ] {
            expect_error(
                &dispatch(&Recorder::default(), &full_env("ADD"), stdin),
                ErrorCode::DecodingFailure,
            );
        }
    }

    #[test]
    fn bad_or_missing_network_name_is_code_7() {
        for stdin in [
            json!({"cniVersion": "1.0.0", "type": "r"}),
            json!({"cniVersion": "1.0.0", "name": "-x", "type": "r"}),
            json!({"cniVersion": "1.0.0", "name": "a b", "type": "r"}),
        ] {
            expect_error(
                &dispatch(
                    &Recorder::default(),
                    &full_env("ADD"),
                    &serde_json::to_vec(&stdin).unwrap(),
                ),
                ErrorCode::InvalidNetworkConfig,
            );
        }
    }

    #[test]
    fn bad_container_id_and_ifname_are_rejected_with_libcni_codes() {
        let mut e = full_env("ADD");
        e.insert("CNI_CONTAINERID".into(), "bad/id".into());
        expect_error(
            &dispatch(&Recorder::default(), &e, &conf("1.0.0")),
            ErrorCode::InvalidEnvironmentVariables,
        );
        for ifname in ["sixteen_bytes_ab", ".", "..", "a/b", "a:b", "a b"] {
            let mut e = full_env("DEL");
            e.insert("CNI_IFNAME".into(), ifname.into());
            expect_error(
                &dispatch(&Recorder::default(), &e, &conf("1.0.0")),
                ErrorCode::InvalidEnvironmentVariables,
            );
        }
    }

    #[test]
    fn unsupported_or_malformed_version_is_code_1() {
        for stdin in [
            conf("0.5.0"),
            conf("2.0.0"),
            conf("garbage"),
            serde_json::to_vec(&json!({"cniVersion": 1, "name": "n", "type": "r"})).unwrap(),
        ] {
            let err = expect_error(
                &dispatch(&Recorder::default(), &full_env("ADD"), &stdin),
                ErrorCode::IncompatibleCniVersion,
            );
            assert_eq!(err.msg, "incompatible CNI versions");
        }
        // A plugin that supports only 1.x refuses 0.4.0 configs.
        let p = Recorder {
            versions: Some(vec![Version::V1_0_0, Version::V1_1_0]),
            ..Recorder::default()
        };
        let err = expect_error(
            &dispatch(&p, &full_env("ADD"), &conf("0.4.0")),
            ErrorCode::IncompatibleCniVersion,
        );
        assert_eq!(
            err.details,
            "config is \"0.4.0\", plugin supports [1.0.0, 1.1.0]"
        );
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn check_below_0_4_0_and_gc_status_below_1_1_0_are_code_1() {
        for (cmd, version) in [
            ("CHECK", "0.3.1"),
            ("CHECK", "0.2.0"),
            ("GC", "1.0.0"),
            ("STATUS", "1.0.0"),
            ("STATUS", "0.4.0"),
        ] {
            let p = Recorder::default();
            let err = expect_error(
                &dispatch(&p, &full_env(cmd), &conf(version)),
                ErrorCode::IncompatibleCniVersion,
            );
            assert_eq!(err.msg, format!("config version does not allow {cmd}"));
            assert_eq!(
                err.cni_version.map(|v| v.to_string()).as_deref(),
                Some(version)
            );
            assert!(p.calls.borrow().is_empty());
        }
        let p = Recorder::default();
        assert_eq!(
            dispatch(&p, &full_env("CHECK"), &conf("0.4.0")).exit_code,
            0
        );
    }

    #[test]
    fn gc_accepts_both_attachment_keys() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let p = Recorder::default();
            let stdin = serde_json::to_vec(&json!({
                "cniVersion": "1.1.0", "name": "net", "type": "r",
                key: [{"containerID": "c9", "ifname": "net1"}]
            }))
            .unwrap();
            let e = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]);
            assert_eq!(dispatch(&p, &e, &stdin).exit_code, 0);
            assert_eq!(
                p.gc_valid.borrow().as_slice(),
                &[GcAttachment {
                    container_id: "c9".into(),
                    ifname: "net1".into()
                }]
            );
        }
        let bad = serde_json::to_vec(&json!({
            "cniVersion": "1.1.0", "name": "net", "type": "r",
            "cni.dev/valid-attachments": "nope"
        }))
        .unwrap();
        let e = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]);
        expect_error(
            &dispatch(&Recorder::default(), &e, &bad),
            ErrorCode::DecodingFailure,
        );
    }

    #[test]
    fn status_failure_carries_code_50() {
        let stdin = serde_json::to_vec(
            &json!({"cniVersion": "1.1.0", "name": "net", "type": "r", "down": true}),
        )
        .unwrap();
        let e = env(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")]);
        expect_error(
            &dispatch(&Recorder::default(), &e, &stdin),
            ErrorCode::PluginNotAvailable,
        );
    }

    #[test]
    fn version_lists_supported_versions_in_the_requested_version() {
        let p = Recorder::default();
        let out = dispatch(&p, &env(&[("CNI_COMMAND", "VERSION")]), b"");
        assert_eq!(out.exit_code, 0);
        let info: VersionInfo = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info.cni_version, Version::V1_1_0);
        assert_eq!(info.supported_versions, SUPPORTED_VERSIONS);
        let out = dispatch(
            &p,
            &env(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"0.4.0"}"#,
        );
        let info: VersionInfo = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info.cni_version, Version::V0_4_0);
        // VERSION needs no other variable and ignores a malformed stdin.
        let out = dispatch(&p, &env(&[("CNI_COMMAND", "VERSION")]), b"{{{");
        assert_eq!(out.exit_code, 0);
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn request_exposes_env_and_prev_result() {
        struct Inspect;
        impl Plugin for Inspect {
            fn add(&self, r: &Request) -> Result<CniResult, CniError> {
                assert_eq!(r.container_id(), "c1");
                assert_eq!(r.ifname(), "eth0");
                assert_eq!(r.netns(), Some(Path::new("/run/netns/p")));
                assert_eq!(r.network_name(), "net");
                assert_eq!(r.attachment_hash(), attachment_hash("net", "c1", "eth0"));
                assert_eq!(r.load_args(&["A"])?.get("A"), Some("1"));
                let prev = r
                    .prev_result()
                    .expect("prevResult given")
                    .map_err(|e| CniError::new(ErrorCode::DecodingFailure, e.to_string()))?;
                Ok(prev)
            }
            fn del(&self, r: &Request) -> Result<(), CniError> {
                assert_eq!(r.netns(), None);
                Ok(())
            }
            fn check(&self, _: &Request) -> Result<(), CniError> {
                Ok(())
            }
        }
        let mut e = full_env("ADD");
        e.insert("CNI_ARGS".into(), "A=1".into());
        let stdin = serde_json::to_vec(&json!({
            "cniVersion": "0.4.0", "name": "net", "type": "i",
            "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "198.51.100.9/24"}]}
        }))
        .unwrap();
        let out = dispatch(&Inspect, &e, &stdin);
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
        let mut e = full_env("DEL");
        e.remove("CNI_NETNS");
        assert_eq!(dispatch(&Inspect, &e, &conf("1.0.0")).exit_code, 0);
    }

    #[test]
    fn attachment_hash_is_fnv1a_with_nul_separators_and_separates_fields() {
        // FNV-1a 64 of the empty input is the offset basis; of "\0\0\0" it
        // is three rounds of (xor 0, multiply by the prime).
        let prime: u64 = 0x0100_0000_01b3;
        let basis: u64 = 0xcbf2_9ce4_8422_2325;
        let expected = basis
            .wrapping_mul(prime)
            .wrapping_mul(prime)
            .wrapping_mul(prime);
        assert_eq!(attachment_hash("", "", ""), expected);
        // Published FNV-1a 64 test vector: "a" -> 0xaf63dc4c8601ec8c; the
        // NUL and two empty fields continue from there.
        let a = (basis ^ u64::from(b'a')).wrapping_mul(prime);
        assert_eq!(a, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            attachment_hash("a", "", ""),
            a.wrapping_mul(prime)
                .wrapping_mul(prime)
                .wrapping_mul(prime)
        );
        // Moving bytes between fields changes the hash.
        assert_ne!(
            attachment_hash("ab", "c", "eth0"),
            attachment_hash("a", "bc", "eth0")
        );
        assert_ne!(
            attachment_hash("net", "c1", "eth0"),
            attachment_hash("net", "c1", "eth1")
        );
    }

    #[test]
    fn commands_round_trip_through_their_names() {
        for cmd in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Version,
            Command::Status,
            Command::Gc,
        ] {
            assert_eq!(cmd.as_str().parse::<Command>().unwrap(), cmd);
        }
        assert!("add".parse::<Command>().is_err());
    }
}
