//! IPAM delegation: run another plugin (usually IPAM) from inside a plugin.
//!
//! The delegate is found on `CNI_PATH`, run with this invocation's
//! environment (with `CNI_COMMAND` set for the operation) and the full
//! configuration on stdin. Its result is read and converted to the
//! configuration's version; its error JSON comes back as
//! [`ExecError::Plugin`], which converts into the same [`CniError`] with `?`.
//! A delegate that fails with nothing on stdout has its stderr text as the
//! error's message, as libcni does; stderr text that ends up in no error is
//! copied to ours.
//!
//! ```no_run
//! use overlay_cni::delegate::delegate_add_guarded;
//! use overlay_cni::error::CniError;
//! use overlay_cni::plugin::Request;
//! use overlay_cni::result::CniResult;
//!
//! fn add(req: &Request) -> Result<CniResult, CniError> {
//!     let ipam_type = req.config.ipam.as_ref().map(|i| i.plugin_type.as_str()).unwrap_or("host-local");
//!     // Allocates; runs IPAM DEL automatically if we return early below.
//!     let allocation = delegate_add_guarded(ipam_type, &req.config_bytes, &req.env)?;
//!     // (`overlay_cni::ipam::Delegated` does the same behind the `Ipam` trait.)
//!     // ... create interfaces, assign allocation.result().ips ...
//!     Ok(allocation.commit())
//! }
//! ```

use crate::exec::{ExecError, exec_plugin, find_in_path};
use crate::ipam::Lease;
use crate::plugin::{CniEnv, Command};
use crate::result::CniResult;
use crate::version::Version;

#[cfg(doc)]
use crate::error::CniError;

fn run(
    command: Command,
    plugin_type: &str,
    config: &[u8],
    env: &CniEnv,
) -> Result<(std::path::PathBuf, Vec<u8>), ExecError> {
    let plugin = find_in_path(plugin_type, &env.path_dirs())?;
    let stdout = exec_plugin(&plugin, &env.vars(command), config)?;
    Ok((plugin, stdout))
}

/// The `cniVersion` of a configuration, 0.1.0 when absent or unreadable.
fn config_version(config: &[u8]) -> Version {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "cniVersion", default)]
        cni_version: Option<Version>,
    }
    serde_json::from_slice::<Probe>(config)
        .ok()
        .and_then(|p| p.cni_version)
        .unwrap_or_default()
}

/// Run `ADD` on the delegate and return its result in the configuration's version.
///
/// ```no_run
/// use overlay_cni::plugin::CniEnv;
///
/// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), path: "/usr/lib/cni".into(), ..CniEnv::default() };
/// let config = br#"{"cniVersion":"0.4.0","name":"n","type":"x","ipam":{"type":"host-local","subnet":"198.51.100.0/24"}}"#;
/// let result = overlay_cni::delegate::delegate_add("host-local", config, &env).unwrap();
/// assert_eq!(result.cni_version, overlay_cni::Version::V0_4_0);
/// overlay_cni::delegate::delegate_del("host-local", config, &env).unwrap();
/// ```
pub fn delegate_add(
    plugin_type: &str,
    config: &[u8],
    env: &CniEnv,
) -> Result<CniResult, ExecError> {
    let (plugin, stdout) = run(Command::Add, plugin_type, config, env)?;
    let version = config_version(config);
    CniResult::from_slice_with_default(&stdout, version)
        .and_then(|r| r.convert(version))
        .map_err(|source| ExecError::BadResult { plugin, source })
}

/// Run `DEL` on the delegate.
pub fn delegate_del(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), ExecError> {
    run(Command::Del, plugin_type, config, env).map(drop)
}

/// Run `CHECK` on the delegate.
pub fn delegate_check(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), ExecError> {
    run(Command::Check, plugin_type, config, env).map(drop)
}

/// Run `GC` on the delegate (pass the configuration with its valid attachments).
pub fn delegate_gc(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), ExecError> {
    run(Command::Gc, plugin_type, config, env).map(drop)
}

/// Run `STATUS` on the delegate.
pub fn delegate_status(plugin_type: &str, config: &[u8], env: &CniEnv) -> Result<(), ExecError> {
    run(Command::Status, plugin_type, config, env).map(drop)
}

/// Run `DEL` on the delegate after a failed `ADD`, ignoring its own failure,
/// and hand back the error that made the `ADD` fail.
///
/// ```no_run
/// # use overlay_cni::{delegate::*, plugin::CniEnv, error::*};
/// # let (config, env) = (b"{}".as_slice(), CniEnv::default());
/// let setup_error = CniError::new(ErrorCode::Other(100), "veth creation failed");
/// let err = del_after_failed_add("host-local", config, &env, setup_error);
/// assert_eq!(err.msg, "veth creation failed");
/// ```
pub fn del_after_failed_add<E>(plugin_type: &str, config: &[u8], env: &CniEnv, error: E) -> E {
    // The original error is what the runtime needs to see; a failing DEL
    // leaves the allocation to the runtime's DEL or GC.
    let _ = delegate_del(plugin_type, config, env);
    error
}

/// [`delegate_add`], returning a [`Lease`] that runs the delegate's `DEL`
/// if it is dropped before [`Lease::commit`]: "run DEL after a failed ADD"
/// becomes automatic for every early return.
///
/// ```no_run
/// use overlay_cni::delegate::delegate_add_guarded;
/// use overlay_cni::plugin::CniEnv;
///
/// let env = CniEnv { path: "/usr/lib/cni".into(), ..CniEnv::default() };
/// let config = br#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{"type":"host-local","subnet":"198.51.100.0/24"}}"#;
/// let lease = delegate_add_guarded("host-local", config, &env).unwrap();
/// let address = lease.result().ips[0].address;
/// // If this fails, returning drops `lease`, which releases the address.
/// let result = lease.commit();
/// assert_eq!(result.ips[0].address, address);
/// ```
pub fn delegate_add_guarded(
    plugin_type: &str,
    config: &[u8],
    env: &CniEnv,
) -> Result<Lease, ExecError> {
    let result = delegate_add(plugin_type, config, env)?;
    let (plugin_type, config, env) = (plugin_type.to_owned(), config.to_vec(), env.clone());
    Ok(Lease::new(result, move || {
        let _ = delegate_del(&plugin_type, &config, &env);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_version_defaults_to_0_1_0() {
        assert_eq!(
            config_version(br#"{"cniVersion":"1.0.0"}"#),
            Version::V1_0_0
        );
        assert_eq!(config_version(b"{}"), Version::V0_1_0);
        assert_eq!(config_version(b"not json"), Version::V0_1_0);
    }
}
