//! One invocation: the command, the `CNI_*` environment and the parsed
//! configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[cfg(doc)]
use super::Plugin;
use super::{attachment_hash, container_mac, host_veth_name};
use crate::config::NetworkConfig;
use crate::error::CniError;
use crate::result::{CniResult, ResultError};
use crate::version::Version;

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

#[cfg(test)]
mod tests {
    use super::*;

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
