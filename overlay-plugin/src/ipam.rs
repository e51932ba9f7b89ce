//! Choosing a plugin's IPAM and running it beside the kernel work.
//!
//! `"ipam": {"type": "host-local", ...}` runs in-process
//! ([`overlay_ipam::host_local::HostLocalIpam`]: the same files and lock as
//! the reference plugin, without its process, about 5 ms of an ADD); any
//! other type, or `"delegate": true` in the `ipam` object, runs the plugin
//! found on `CNI_PATH` ([`overlay_cni::ipam::Delegated`]). Both are an
//! [`Ipam`] and their calls block.
//!
//! [`add`] starts the IPAM call at once on a thread of its own (a small
//! stack, no runtime: tens of microseconds to start, where the runtime's
//! blocking pool costs about 0.3 ms of CPU in a plugin process) and
//! returns a future of its answer, so that the plugin creates its links
//! meanwhile: `host-local`'s file operations (locking, creating the
//! reservation file on the file system, some 0.1-0.2 ms) or a delegate's
//! process (milliseconds) run on the second CPU while this thread waits
//! for the kernel. [`add_with`] first runs other work that can wait for
//! the lease on that thread (opening the container namespace's socket).
//! [`del`] runs a delegate on the blocking pool and
//! in-process `host-local` on the calling thread (a DEL's kernel work
//! is short).
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

/// [`Ipam::add`], started now on a thread of its own (see the [module
/// docs](self)); await the returned [`IpamTask`] for the lease. When no
/// thread can be started, the call runs on this thread instead, before
/// `add` returns. A panic in the IPAM code is code 999.
///
/// ```no_run
/// # async fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// let ipam = overlay_plugin::ipam::for_request(req)?;
/// // Started here: the allocation runs while the links are built.
/// let lease = overlay_plugin::ipam::add(ipam, req);
/// // ... create the links ...
/// let lease = lease.await?;
/// # Ok(()) }
/// ```
pub fn add(ipam: Arc<dyn Ipam>, req: &Request) -> IpamTask<Lease> {
    let req = req.clone();
    spawn(move || ipam.add(&req))
}

/// [`add`], with `prepare` run first on the same thread: work the plugin
/// needs only once the lease is there, taken off the thread that waits
/// for the kernel (opening the container namespace's socket with
/// [`pod_socket`](crate::error::pod_socket), for one). When `prepare`
/// fails, IPAM is not called and its error is the answer; a panic in either
/// is code 999.
///
/// ```no_run
/// # async fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// use overlay_plugin::error::{open_netns, pod_handle_from, pod_socket};
/// let ipam = overlay_plugin::ipam::for_request(req)?;
/// let netns = open_netns(req)?;
/// let on_side = netns.clone();
/// let task = overlay_plugin::ipam::add_with(ipam, req, move || pod_socket(&on_side));
/// // ... create the links ...
/// let (socket, lease) = task.await?;
/// let pod = pod_handle_from(socket)?;
/// # Ok(()) }
/// ```
pub fn add_with<P: Send + 'static>(
    ipam: Arc<dyn Ipam>,
    req: &Request,
    prepare: impl FnOnce() -> Result<P, CniError> + Send + 'static,
) -> IpamTask<(P, Lease)> {
    let req = req.clone();
    spawn(move || {
        let prepared = prepare()?;
        Ok((prepared, ipam.add(&req)?))
    })
}

/// Run `call` on a thread of its own (see the [module docs](self)), or on
/// this one when no thread can be started.
fn spawn<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> IpamTask<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Shared so that it can still run here when no thread starts (the
    // failed spawn drops its closure).
    let call = Arc::new(std::sync::Mutex::new(Some(call)));
    let on_thread = call.clone();
    let spawned = std::thread::Builder::new()
        .name("ipam".into())
        .stack_size(IPAM_STACK)
        .spawn(move || {
            let call = on_thread.lock().ok().and_then(|mut c| c.take());
            if let Some(call) = call {
                // The receiver may be gone (the ADD failed first); dropping
                // the answer then releases the allocation.
                let _ = tx.send(call());
            }
        });
    match spawned {
        Ok(thread) => IpamTask {
            rx: Some(rx),
            thread: Some(thread),
            early: None,
        },
        // No thread (a process or memory limit): the call runs here.
        Err(_) => {
            let call = call.lock().ok().and_then(|mut c| c.take());
            IpamTask {
                rx: None,
                thread: None,
                early: Some(call.map_or_else(
                    || Err(CniError::new(ErrorCode::Internal, "IPAM call lost")),
                    |call| call(),
                )),
            }
        }
    }
}

/// Stack of the thread [`add`] starts: IPAM code parses small JSON
/// documents and walks a directory; only the pages it touches are mapped.
const IPAM_STACK: usize = 512 * 1024;

/// The answer of an IPAM call running on its own thread ([`add`]).
///
/// Dropping a task that has not answered yet waits for its thread, whose
/// lease is then released (dropped unanswered): a plugin that gives up
/// early still leaves no allocation behind when its process exits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use overlay_cni::plugin::{CniEnv, Command, Request};
///
/// let dir = std::env::temp_dir().join(format!("ipam-task-doc-{}", std::process::id()));
/// let conf = format!(
///     r#"{{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{{"type":"host-local","dataDir":"{}","subnet":"198.51.100.0/24"}}}}"#,
///     dir.display()
/// );
/// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
/// let req = Request::new(Command::Add, env, conf.as_bytes()).unwrap();
/// let ipam = overlay_plugin::ipam::for_request(&req).unwrap();
/// let lease = overlay_plugin::ipam::add(ipam, &req).await.unwrap();
/// assert_eq!(lease.result().ips[0].address.to_string(), "198.51.100.2/24");
/// drop(lease); // not committed: released
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the IPAM call's answer (a lease not awaited is released when its thread finishes)"]
pub struct IpamTask<T> {
    rx: Option<tokio::sync::oneshot::Receiver<Result<T, CniError>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    early: Option<Result<T, CniError>>,
}

impl<T> Drop for IpamTask<T> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            // The thread's answer, if already sent, is dropped here (a
            // lease releases); else its send fails and it drops it itself.
            rx.close();
            drop(rx.try_recv());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// The answer is only ever moved out, never pinned in place.
impl<T> Unpin for IpamTask<T> {}

impl<T> std::future::Future for IpamTask<T> {
    type Output = Result<T, CniError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let Some(answer) = self.early.take() {
            return std::task::Poll::Ready(answer);
        }
        let Some(rx) = self.rx.as_mut() else {
            return std::task::Poll::Ready(Err(CniError::new(
                ErrorCode::Internal,
                "IPAM answer already taken",
            )));
        };
        let answer = std::task::ready!(std::pin::Pin::new(rx).poll(cx));
        // Answered: the thread only exits now; nothing to wait for.
        self.rx = None;
        self.thread = None;
        std::task::Poll::Ready(
            answer.unwrap_or_else(|_| {
                Err(CniError::new(ErrorCode::Internal, "IPAM thread panicked"))
            }),
        )
    }
}

/// [`Ipam::del`]: a delegate on the blocking pool, in-process `host-local`
/// on this thread (see the [module docs](self)).
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

    /// An ADD of `c1`/`eth0` on network `n` with host-local in `dir`.
    fn host_local_add(dir: &std::path::Path) -> Request {
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{{"type":"host-local","dataDir":"{}","subnet":"198.51.100.0/24"}}}}"#,
            dir.display()
        );
        let env = CniEnv {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            ..CniEnv::default()
        };
        Request::new(Command::Add, env, conf.as_bytes()).expect("valid")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn host_local_runs_in_process_and_a_failed_add_releases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let req = host_local_add(dir.path());
        let ipam = for_request(&req).expect("host-local");
        let lease = add(ipam.clone(), &req).await.expect("allocates");
        assert_eq!(lease.result().ips[0].address.to_string(), "198.51.100.2/24");
        assert!(dir.path().join("n/198.51.100.2").exists());
        drop(lease);
        assert!(!dir.path().join("n/198.51.100.2").exists());
        del(ipam, &req).await.expect("absent is success");
    }

    /// The addresses reserved in host-local's directory of network `n`.
    fn reserved(dir: &std::path::Path) -> Vec<std::net::IpAddr> {
        std::fs::read_dir(dir.join("n"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_task_dropped_unawaited_leaves_no_allocation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let req = host_local_add(dir.path());
        for _ in 0..20 {
            // Dropped at once (before or after the thread allocated): the
            // drop waits for the thread, and the lease is released.
            drop(add(for_request(&req).expect("host-local"), &req));
            assert_eq!(reserved(dir.path()), Vec::<std::net::IpAddr>::new());
        }
        // Dropped after answering, unread: released as well.
        let task = add(for_request(&req).expect("host-local"), &req);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while reserved(dir.path()).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread never allocated"
            );
            std::thread::yield_now();
        }
        drop(task);
        assert_eq!(reserved(dir.path()), Vec::<std::net::IpAddr>::new());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn add_with_prepares_on_the_ipam_thread_and_a_failed_preparation_allocates_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let req = host_local_add(dir.path());
        let here = std::thread::current().id();
        let task = add_with(for_request(&req).expect("host-local"), &req, move || {
            // Nothing is allocated yet when the preparation runs.
            Ok(std::thread::current().id())
        });
        let (prepared_on, lease) = task.await.expect("lease");
        assert_ne!(prepared_on, here, "prepared on the IPAM thread");
        assert_eq!(reserved(dir.path()).len(), 1);
        drop(lease);
        assert!(reserved(dir.path()).is_empty(), "released");

        let failed = add_with(for_request(&req).expect("host-local"), &req, || {
            Err::<(), _>(CniError::new(
                ErrorCode::InvalidEnvironmentVariables,
                "no netns",
            ))
        });
        let err = failed.await.expect_err("the preparation's error");
        assert_eq!(err.code, ErrorCode::InvalidEnvironmentVariables);
        assert!(reserved(dir.path()).is_empty(), "IPAM never ran");
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
