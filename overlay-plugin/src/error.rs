//! Kernel errors as CNI errors, the plugin-specific codes, and `CNI_NETNS`.
//!
//! A plugin reports a failed kernel step with its own code (100 and up are
//! plugin-specific) and a message that names the step and the kernel's
//! reason. [`NetlinkResultExt::or_cni`] does that conversion (the orphan
//! rule keeps a `From<overlay_netlink::Error> for CniError` out of this
//! crate, and it would not know the step anyway).
//!
//! ```
//! use overlay_plugin::error::{CODE_NETLINK, NetlinkResultExt};
//!
//! let failed: overlay_netlink::Result<()> = Err(overlay_netlink::Error::NamespaceNotFound {
//!     path: "/run/netns/gone".into(),
//! });
//! let err = failed.or_cni(CODE_NETLINK, "create veth pair").unwrap_err();
//! assert_eq!(err.code, overlay_cni::ErrorCode::Other(100));
//! assert_eq!(err.msg, "create veth pair: network namespace /run/netns/gone does not exist");
//! ```

use overlay_cni::{CniError, ErrorCode, Request};
use overlay_netlink::{Handle, Netns, RequestSocket};

/// A kernel (netlink) operation failed: creating or deleting links, setting
/// them up, adding addresses and routes.
pub const CODE_NETLINK: u32 = 100;
/// The container interface name (`CNI_IFNAME`) already exists in the
/// container's namespace.
pub const CODE_IFNAME_TAKEN: u32 = 101;
/// A firewall (nftables) transaction failed.
pub const CODE_FIREWALL: u32 = 102;
/// In-process IPAM could not allocate, or found no address for `CHECK`
/// (the same value as `overlay_ipam::host_local::ALLOC_ERROR_CODE`).
pub const CODE_IPAM: u32 = overlay_ipam::host_local::ALLOC_ERROR_CODE;

/// `overlay_netlink::Error` to [`CniError`] with a plugin-specific code.
///
/// ```
/// use overlay_plugin::error::netlink_error;
///
/// let e = overlay_netlink::Error::NamespaceNotFound { path: "/run/netns/x".into() };
/// let cni = netlink_error(100, "open pod namespace", &e);
/// assert_eq!(cni.msg, "open pod namespace: network namespace /run/netns/x does not exist");
/// ```
pub fn netlink_error(code: u32, what: &str, e: &overlay_netlink::Error) -> CniError {
    CniError::plugin(code, format!("{what}: {e}"))
}

/// Conversion of `overlay_netlink` results into CNI results.
pub trait NetlinkResultExt<T> {
    /// The error as a [`CniError`] with `code` and the message
    /// `"{what}: {error}"` (see [`netlink_error`]).
    fn or_cni(self, code: u32, what: &str) -> Result<T, CniError>;
}

impl<T> NetlinkResultExt<T> for overlay_netlink::Result<T> {
    fn or_cni(self, code: u32, what: &str) -> Result<T, CniError> {
        self.map_err(|e| netlink_error(code, what, &e))
    }
}

/// Open `CNI_NETNS`: code 4 when it is not set or names no network
/// namespace (a regular file, a directory: [`Netns::verify`]), code 3
/// (unknown container) when it cannot be opened, with the operating
/// system's reason.
///
/// ```
/// use overlay_cni::plugin::{CniEnv, Command, Request};
///
/// let env = CniEnv { netns: "/run/netns/ovt-does-not-exist".into(), ..CniEnv::default() };
/// let req = Request::new(Command::Add, env, br#"{"name":"n","type":"x"}"#).unwrap();
/// let err = overlay_plugin::error::open_netns(&req).unwrap_err();
/// assert_eq!(err.code, overlay_cni::ErrorCode::UnknownContainer);
/// ```
pub fn open_netns(req: &Request) -> Result<Netns, CniError> {
    let path = req.netns().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            "CNI_NETNS is required",
        )
    })?;
    let netns = Netns::open_path(path).map_err(|e| {
        CniError::new(
            ErrorCode::UnknownContainer,
            format!("cannot open CNI_NETNS: {e}"),
        )
    })?;
    netns.verify().map_err(pod_error)?;
    Ok(netns)
}

/// A netlink handle in the container's namespace, opened on the calling
/// thread (call it inside the runtime's context, before tasks run; see
/// `Netns::handle_on_current_thread`). A `CNI_NETNS` that names no network
/// namespace (a regular file, a directory) fails here with code 4 and the
/// operating system's reason; other failures are [`CODE_NETLINK`].
///
/// ```no_run
/// # fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// let netns = overlay_plugin::error::open_netns(req)?;
/// let pod = overlay_plugin::error::pod_handle(&netns)?;
/// # Ok(()) }
/// ```
pub fn pod_handle(netns: &Netns) -> Result<Handle, CniError> {
    netns.handle_on_current_thread().map_err(pod_error)
}

/// [`pod_handle`] in two steps: the socket, opened on the calling thread
/// (any thread that runs no tokio tasks, such as the one
/// [`ipam::add_with`](crate::ipam::add_with) starts), and later, inside the
/// runtime, [`pod_handle_from`]. The errors are [`pod_handle`]'s.
///
/// ```no_run
/// # async fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// use overlay_plugin::error::{open_netns, pod_handle_from, pod_socket};
/// let netns = open_netns(req)?;
/// let socket = std::thread::spawn(move || pod_socket(&netns)).join().unwrap()?;
/// let pod = pod_handle_from(socket)?;
/// # Ok(()) }
/// ```
pub fn pod_socket(netns: &Netns) -> Result<RequestSocket, CniError> {
    netns.socket_on_current_thread().map_err(pod_error)
}

/// The [`Handle`] over a socket from [`pod_socket`]; call it inside the
/// runtime's context.
pub fn pod_handle_from(socket: RequestSocket) -> Result<Handle, CniError> {
    socket.into_handle().map_err(pod_error)
}

/// A failure to open a handle in `CNI_NETNS` as a CNI error.
fn pod_error(e: overlay_netlink::Error) -> CniError {
    match e {
        overlay_netlink::Error::Namespace { .. } => CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            format!("CNI_NETNS is not a usable network namespace: {e}"),
        ),
        e => netlink_error(CODE_NETLINK, "netlink socket in CNI_NETNS", &e),
    }
}

/// A netlink handle in the plugin's own namespace ([`CODE_NETLINK`] on failure).
///
/// ```no_run
/// let host = overlay_plugin::error::host_handle().unwrap();
/// ```
pub fn host_handle() -> Result<Handle, CniError> {
    Handle::new().or_cni(CODE_NETLINK, "netlink socket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_cni_keeps_the_code_the_step_and_the_reason() {
        let err: overlay_netlink::Result<()> = Err(overlay_netlink::Error::Sysctl {
            operation: "write",
            key: "net.ipv4.ip_forward".into(),
            source: std::io::Error::from_raw_os_error(libc_eacces()),
        });
        let cni = err.or_cni(CODE_FIREWALL, "enable forwarding").unwrap_err();
        assert_eq!(cni.code, ErrorCode::Other(102));
        assert!(
            cni.msg
                .starts_with("enable forwarding: write sysctl net.ipv4.ip_forward: "),
            "{cni:?}"
        );
        assert_eq!(CODE_IPAM, 103);
    }

    /// `EACCES`, without a libc dependency.
    fn libc_eacces() -> i32 {
        13
    }

    #[test]
    fn a_cni_netns_that_is_no_network_namespace_is_code_4() {
        let env = overlay_cni::plugin::CniEnv {
            netns: "/proc/self/ns/uts".into(),
            ..Default::default()
        };
        let req = Request::new(
            overlay_cni::plugin::Command::Add,
            env,
            br#"{"name":"n","type":"x"}"#,
        )
        .expect("valid config");
        let err = open_netns(&req).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironmentVariables);
        assert!(
            err.msg.contains("not a usable network namespace"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_cni_netns_is_code_4() {
        let req = Request::new(
            overlay_cni::plugin::Command::Add,
            overlay_cni::plugin::CniEnv::default(),
            br#"{"name":"n","type":"x"}"#,
        )
        .expect("valid config");
        let err = open_netns(&req).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironmentVariables);
    }
}
