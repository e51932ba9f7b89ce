//! Choosing a plugin's IPAM and running it beside the kernel work.
//!
//! `"ipam": {"type": "host-local", ...}` runs in-process
//! ([`overlay_ipam::host_local::HostLocalIpam`]: the same files and lock as
//! the reference plugin, without its process, about 5 ms of an ADD); any
//! other type, or `"delegate": true` in the `ipam` object, runs the plugin
//! found on `CNI_PATH` ([`overlay_cni::ipam::Delegated`]). Both are an
//! [`Ipam`] and their calls block. [`add`] and [`del`] run a delegate (a
//! process, milliseconds) on the runtime's blocking pool, so that the
//! plugin builds links meanwhile, and in-process `host-local` (a handful
//! of file operations, about 0.1 ms) on the calling thread: starting the
//! blocking pool's thread for it would cost more (about 0.3 ms of CPU in
//! a plugin process, measured with `benches/benches/cni_latency.rs`) than
//! the overlap saves.
//!
//! ```
//! use overlay_cni::plugin::{CniEnv, Command, Request};
//!
//! let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{"type":"dhcp"}}"#;
//! let req = Request::new(Command::Add, CniEnv::default(), conf).unwrap();
//! let ipam = overlay_plugin::ipam::for_request(&req).unwrap();
//! assert!(!ipam.has_ipv6_range()); // a delegate's ranges are unknown before its ADD
//! ```

use std::sync::Arc;

use overlay_cni::ipam::{Delegated, Ipam, Lease};
use overlay_cni::{CniError, ErrorCode, Request};
use overlay_ipam::host_local::HostLocalIpam;

/// The request's IPAM: in-process `host-local` unless `ipam.delegate` is
/// `true`, a delegate otherwise. Code 7 when `ipam.type` is missing,
/// `ipam.delegate` is not a boolean, or the `host-local` configuration is
/// one the reference plugin refuses.
///
/// ```
/// use overlay_cni::plugin::{CniEnv, Command, Request};
///
/// let req = |ipam: &str| {
///     let conf = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{ipam}}}"#);
///     Request::new(Command::Add, CniEnv::default(), conf.as_bytes()).unwrap()
/// };
/// let local = overlay_plugin::ipam::for_request(&req(r#"{"type":"host-local","subnet":"2001:db8::/64"}"#)).unwrap();
/// assert!(local.has_ipv6_range());
/// let forced = overlay_plugin::ipam::for_request(&req(r#"{"type":"host-local","delegate":true,"subnet":"2001:db8::/64"}"#)).unwrap();
/// assert!(!forced.has_ipv6_range());
/// let err = overlay_plugin::ipam::for_request(&req(r#"{"type":"host-local","delegate":"yes"}"#)).err().unwrap();
/// assert_eq!(err.code, overlay_cni::ErrorCode::InvalidNetworkConfig);
/// ```
pub fn for_request(req: &Request) -> Result<Arc<dyn Ipam>, CniError> {
    match delegate_of(req)? {
        Some(plugin_type) => Ok(Arc::new(Delegated::new(plugin_type.to_owned()))),
        None => Ok(Arc::new(HostLocalIpam::from_request(req)?)),
    }
}

/// The plugin type to delegate the request's IPAM to, or `None` for
/// in-process `host-local` (the one place that decides, for
/// [`for_request`], [`add`] and [`del`]).
fn delegate_of(req: &Request) -> Result<Option<&str>, CniError> {
    let ipam = req
        .config
        .ipam
        .as_ref()
        .filter(|i| !i.plugin_type.is_empty())
        .ok_or_else(|| CniError::new(ErrorCode::InvalidNetworkConfig, "ipam.type is required"))?;
    let delegate = match ipam.extra.get("delegate") {
        None => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => {
            return Err(CniError::new(
                ErrorCode::InvalidNetworkConfig,
                format!("ipam.delegate must be true or false, not {other}"),
            ));
        }
    };
    Ok((ipam.plugin_type != "host-local" || delegate).then_some(ipam.plugin_type.as_str()))
}

/// Whether `ipam` (the request's, from [`for_request`]) runs in-process.
fn in_process(req: &Request) -> bool {
    matches!(delegate_of(req), Ok(None))
}

/// Run blocking `f` on the runtime's blocking pool and wait for it; a panic
/// in `f` is code 999.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let n = overlay_plugin::ipam::blocking(|| Ok(40 + 2)).await.unwrap();
/// assert_eq!(n, 42);
/// # }
/// ```
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(CniError::new(ErrorCode::Internal, "IPAM thread panicked")))
}

/// [`Ipam::add`]: a delegate on the blocking pool, so the caller's kernel
/// work runs meanwhile (join the two futures); in-process `host-local` on
/// this thread, when the future is first polled (see the [module
/// docs](self)).
///
/// ```no_run
/// # async fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// let ipam = overlay_plugin::ipam::for_request(req)?;
/// let (lease, links) = tokio::join!(overlay_plugin::ipam::add(ipam, req), async {
///     // ... create the links ...
///     Ok::<_, overlay_cni::CniError>(())
/// });
/// # Ok(()) }
/// ```
pub async fn add(ipam: Arc<dyn Ipam>, req: &Request) -> Result<Lease, CniError> {
    if in_process(req) {
        return ipam.add(req);
    }
    let req = req.clone();
    blocking(move || ipam.add(&req)).await
}

/// [`Ipam::del`]: a delegate on the blocking pool, in-process `host-local`
/// on this thread (as [`add`]).
pub async fn del(ipam: Arc<dyn Ipam>, req: &Request) -> Result<(), CniError> {
    if in_process(req) {
        return ipam.del(req);
    }
    let req = req.clone();
    blocking(move || ipam.del(&req)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_cni::plugin::{CniEnv, Command};

    #[tokio::test(flavor = "current_thread")]
    async fn host_local_runs_in_process_and_a_failed_add_releases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{{"type":"host-local","dataDir":"{}","subnet":"198.51.100.0/24"}}}}"#,
            dir.path().display()
        );
        let env = CniEnv {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            ..CniEnv::default()
        };
        let req = Request::new(Command::Add, env, conf.as_bytes()).expect("valid");
        let ipam = for_request(&req).expect("host-local");
        let lease = add(ipam.clone(), &req).await.expect("allocates");
        assert_eq!(lease.result().ips[0].address.to_string(), "198.51.100.2/24");
        assert!(dir.path().join("n/198.51.100.2").exists());
        drop(lease);
        assert!(!dir.path().join("n/198.51.100.2").exists());
        del(ipam, &req).await.expect("absent is success");
    }

    #[test]
    fn only_host_local_without_delegate_runs_on_the_calling_thread() {
        let req = |ipam: &str| {
            let conf = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{ipam}}}"#);
            Request::new(Command::Add, CniEnv::default(), conf.as_bytes()).expect("valid")
        };
        assert!(in_process(&req(r#"{"type":"host-local"}"#)));
        assert!(!in_process(&req(
            r#"{"type":"host-local","delegate":true}"#
        )));
        assert!(!in_process(&req(r#"{"type":"dhcp"}"#)));
        assert!(!in_process(&req(r#"{"type":"host-local","delegate":1}"#)));
    }

    #[test]
    fn missing_ipam_type_is_code_7() {
        let req = Request::new(
            Command::Add,
            CniEnv::default(),
            br#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{}}"#,
        )
        .expect("valid");
        let err = for_request(&req).err().expect("refused");
        assert_eq!(err.code, ErrorCode::InvalidNetworkConfig);
        assert_eq!(err.msg, "ipam.type is required");
    }
}
