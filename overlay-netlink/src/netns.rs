//! Network namespaces: create, open, delete, enter for one closure, and
//! netlink handles bound to a namespace.
//!
//! A netlink socket belongs to the namespace of the thread that opened it.
//! [`Netns::handle`] opens its socket on a short-lived thread that entered the
//! namespace, so no `setns` ever runs on a caller's (tokio worker) thread.
//! [`Netns::handle_on_current_thread`] saves that thread where no task runs
//! yet (a CNI plugin's main thread): it enters and leaves the namespace
//! around the one `socket` call, and called from a task it does what
//! `handle` does.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, InvalidInput, Result};
use crate::handle::Handle;
use crate::transport::{SocketTransport, open_socket};

/// The directory where named network namespaces are bind-mounted, as by
/// `ip netns add`.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace.
///
/// Holding a `Netns` keeps the namespace alive (it holds a file descriptor),
/// as does every [`Handle`] opened from it.
///
/// ```no_run
/// use overlay_netlink::Netns;
///
/// # async fn demo() -> overlay_netlink::Result<()> {
/// let ns = Netns::create("blue")?; // like `ip netns add blue`
/// let handle = ns.handle()?;
/// let lo = handle.link().get("lo").await?;
/// handle.link().set_up(lo.index).await?;
/// ns.sysctl_set("net.ipv4.ip_forward", "1")?;
/// drop(handle);
/// ns.delete()?; // like `ip netns del blue`
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Netns {
    path: PathBuf,
    name: Option<String>,
    fd: Arc<OwnedFd>,
}

fn ns_error<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound {
            Error::NamespaceNotFound {
                path: path.to_path_buf(),
            }
        } else {
            Error::Namespace {
                operation,
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

fn validate_ns_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::invalid(
            "open namespace",
            name,
            InvalidInput::NamespaceName { name: name.into() },
        ));
    }
    Ok(())
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn mount(src: &Path, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let src = cstring(src)?;
    let target = cstring(target)?;
    let none = c"none";
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            none.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Make `/run/netns` a shared mount point, as `ip netns add` does, so that
/// namespaces mounted under it propagate to other mount namespaces.
fn make_run_dir_shared(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let empty = Path::new("");
    match mount(empty, dir, libc::MS_SHARED | libc::MS_REC) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then retry.
            mount(dir, dir, libc::MS_BIND | libc::MS_REC)?;
            mount(empty, dir, libc::MS_SHARED | libc::MS_REC)
        }
        Err(e) => Err(e),
    }
}

/// The operation named by errors of opening a namespace's request socket.
const OPEN_SOCKET: &str = "open netlink socket in";

/// `ioctl(NS_GET_NSTYPE)`: the `CLONE_NEW*` type of a namespace file.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// What a file that `setns` refused is, when it can tell why: `setns`
/// answers `EINVAL` alike for a regular file, a directory and a namespace
/// of another type.
fn not_a_netns(fd: BorrowedFd<'_>) -> Option<String> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat(2) on a valid fd, into a buffer of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded and filled the buffer.
    let st = unsafe { st.assume_init() };
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs(2) on a valid fd, into a buffer of the right type.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), fs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstatfs succeeded and filled the buffer.
    let magic = unsafe { fs.assume_init() }.f_type as u64;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => "a directory",
        libc::S_IFREG => "a regular file",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        libc::S_IFIFO => "a pipe",
        libc::S_IFSOCK => "a socket",
        _ => "a file",
    };
    if magic != libc::NSFS_MAGIC as u64 {
        return Some(format!(
            "it is {kind} (file system magic {magic:#x}), not a namespace file (nsfs, {:#x})",
            libc::NSFS_MAGIC
        ));
    }
    // SAFETY: an argument-less ioctl on a valid fd.
    let ty = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    (ty > 0 && ty != libc::CLONE_NEWNET)
        .then(|| "it is a namespace of another type than network".to_owned())
}

/// The error of a failed `setns` into `fd`: the operating system's reason,
/// followed, where `setns` only says "invalid argument", by what the file
/// is instead of a network namespace.
fn enter_error(fd: BorrowedFd<'_>, path: &Path, os: io::Error) -> Error {
    let source = match (os.raw_os_error(), not_a_netns(fd)) {
        (Some(libc::EINVAL), Some(what)) => io::Error::new(os.kind(), format!("{os}: {what}")),
        _ => os,
    };
    Error::Namespace {
        operation: "enter",
        path: path.to_path_buf(),
        source,
    }
}

/// Run `f` on a new thread that entered the namespace `fd`; the calling thread
/// never changes namespace.
fn on_thread_in<F, T>(fd: BorrowedFd<'_>, path: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let joined = scope
            .spawn(move || -> Result<T> {
                // SAFETY: setns(2) on a valid namespace fd; it changes only this
                // thread, which ends when the closure returns.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(enter_error(fd, path, io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join();
        match joined {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A `NETLINK_ROUTE` request socket opened in a namespace and not yet
/// registered with a runtime; see [`Netns::socket_on_current_thread`].
/// Dropping it closes the socket.
pub struct RequestSocket {
    socket: netlink_sys::Socket,
    netns: Netns,
}

impl RequestSocket {
    /// The namespace the socket was opened in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// A [`Handle`] over this socket. Must be called inside a tokio runtime
    /// context.
    pub fn into_handle(self) -> Result<Handle> {
        self.netns.handle_over(self.socket)
    }
}

impl std::fmt::Debug for RequestSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSocket")
            .field("netns", &self.netns.path())
            .finish_non_exhaustive()
    }
}

/// Run `f` on the calling thread inside the namespace `fd`, then return the
/// thread to the namespace it was in. `f` must not block: the thread is in
/// the other namespace until it returns.
fn on_current_thread_in<F, T>(fd: BorrowedFd<'_>, path: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> T,
{
    /// Returns the thread to its own namespace, also while unwinding.
    struct Return(File);
    impl Drop for Return {
        fn drop(&mut self) {
            // SAFETY: setns(2) on the fd of the namespace this thread was in.
            if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                // A thread left in another namespace would go on to open
                // sockets, devices and routes there, silently: stop instead.
                eprintln!(
                    "overlay-netlink: cannot return a thread to its network namespace: {}",
                    io::Error::last_os_error()
                );
                std::process::abort();
            }
        }
    }
    const OWN: &str = "/proc/thread-self/ns/net";
    let own = File::open(OWN).map_err(|source| Error::Namespace {
        operation: "open the calling thread's",
        path: PathBuf::from(OWN),
        source,
    })?;
    // SAFETY: setns(2) on a valid namespace fd; `Return` undoes it.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(enter_error(fd, path, io::Error::last_os_error()));
    }
    let back = Return(own);
    let result = f();
    drop(back);
    Ok(result)
}

impl Netns {
    /// Create a named namespace bind-mounted at `/run/netns/NAME`, exactly as
    /// `ip netns add NAME` does. Fails with an `AlreadyExists` I/O error if
    /// the name is taken.
    pub fn create(name: &str) -> Result<Netns> {
        Self::create_in(Path::new(NETNS_RUN_DIR), name)
    }

    /// Like [`Netns::create`], under another directory than `/run/netns`.
    pub fn create_in(dir: &Path, name: &str) -> Result<Netns> {
        validate_ns_name(name)?;
        let path = dir.join(name);
        make_run_dir_shared(dir).map_err(ns_error("share mount", dir))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
            .map_err(ns_error("create mount point for", &path))?;
        let target = path.clone();
        let mounted = std::thread::spawn(move || -> io::Result<()> {
            // SAFETY: unshare(2) affects only this short-lived thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            mount(
                Path::new("/proc/thread-self/ns/net"),
                &target,
                libc::MS_BIND,
            )
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
        if let Err(source) = mounted {
            let _ = fs::remove_file(&path);
            return Err(Error::Namespace {
                operation: "bind-mount",
                path,
                source,
            });
        }
        let mut ns = Self::open_path(&path)?;
        ns.name = Some(name.to_string());
        Ok(ns)
    }

    /// Open the named namespace `/run/netns/NAME`.
    pub fn open(name: &str) -> Result<Netns> {
        validate_ns_name(name)?;
        let mut ns = Self::open_path(Path::new(NETNS_RUN_DIR).join(name))?;
        ns.name = Some(name.to_string());
        Ok(ns)
    }

    /// Open a namespace by path: a bind mount such as `/run/netns/NAME`, or
    /// `/proc/PID/ns/net`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let file = File::open(path).map_err(ns_error("open", path))?;
        Ok(Netns {
            path: path.to_path_buf(),
            name: None,
            fd: Arc::new(OwnedFd::from(file)),
        })
    }

    /// Check that the file is a network namespace, without entering it
    /// (one `ioctl`, `NS_GET_NSTYPE`). [`open_path`](Self::open_path)
    /// opens any file; entering or passing a file that is no network
    /// namespace to the kernel fails later with a bare "invalid argument".
    /// The error says what the file is instead.
    ///
    /// ```
    /// let ns = overlay_netlink::Netns::current().unwrap();
    /// ns.verify().unwrap();
    /// let file = overlay_netlink::Netns::open_path("/proc/self/ns/uts").unwrap();
    /// assert!(file.verify().unwrap_err().to_string().contains("another type"));
    /// ```
    pub fn verify(&self) -> Result<()> {
        let fd = self.fd.as_fd();
        // SAFETY: an argument-less ioctl on a valid fd.
        let ty = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
        if ty == libc::CLONE_NEWNET {
            return Ok(());
        }
        // What the kernel answers when handed this file as a network
        // namespace (`setns`, `IFLA_NET_NS_FD`), and what the file is.
        let os = io::Error::from_raw_os_error(libc::EINVAL);
        let source = match not_a_netns(fd) {
            Some(what) => io::Error::new(os.kind(), format!("{os}: {what}")),
            None => os,
        };
        Err(Error::Namespace {
            operation: "use",
            path: self.path.clone(),
            source,
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Netns> {
        Self::open_path("/proc/thread-self/ns/net")
    }

    /// Delete the named namespace `/run/netns/NAME` (unmount and remove the
    /// mount point), as `ip netns del NAME` does. The kernel destroys the
    /// namespace, and the links in it, once nothing holds it open any more.
    pub fn remove(name: &str) -> Result<()> {
        validate_ns_name(name)?;
        remove_path(&Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Delete this namespace's bind mount (see [`Netns::remove`]).
    pub fn delete(self) -> Result<()> {
        remove_path(&self.path)
    }

    /// The name, when opened or created by name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The path the namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open a netlink [`Handle`] bound to this namespace.
    ///
    /// The socket is opened on a short-lived thread that entered the
    /// namespace. Must be called inside a tokio runtime. Dropping the last
    /// clone of the handle closes the socket (an open socket keeps the
    /// namespace alive).
    pub fn handle(&self) -> Result<Handle> {
        let socket = self.open_socket(0, OPEN_SOCKET)?;
        self.handle_over(socket)
    }

    /// A [`Handle`] over a request socket opened in this namespace.
    fn handle_over(&self, socket: netlink_sys::Socket) -> Result<Handle> {
        let transport =
            SocketTransport::from_socket(socket).map_err(|source| Error::Transport {
                operation: OPEN_SOCKET,
                object: self.path.display().to_string(),
                source,
            })?;
        Ok(Handle::from_parts(Arc::new(transport), Some(self.clone())))
    }

    /// Open a netlink [`Handle`] bound to this namespace without a helper
    /// thread: the calling thread enters the namespace, opens the socket and
    /// returns to its own namespace before this returns (no await, no
    /// blocking call in between).
    ///
    /// The same handle as [`handle`](Self::handle) at a fraction of the
    /// cost (two `setns` and one `socket` call, some 15 µs, against
    /// starting and joining a thread), for short-lived programs such as CNI
    /// plugins that open their sockets before they run any task. Must be
    /// called inside a tokio runtime context (`Runtime::enter`). Called from
    /// a tokio task, it does what [`handle`](Self::handle) does: `setns`
    /// never runs on a thread that runs tasks. Should the return to the
    /// original namespace ever fail, the process aborts rather than let the
    /// thread go on in the wrong namespace.
    ///
    /// ```no_run
    /// # async fn example() -> overlay_netlink::Result<()> {
    /// use overlay_netlink::Netns;
    /// let pod = Netns::open_path("/run/netns/pod-1")?;
    /// let handle = pod.handle_on_current_thread()?;
    /// let links = handle.link().list().await?;
    /// assert!(links.iter().any(|l| l.name == "lo"));
    /// # Ok(()) }
    /// ```
    pub fn handle_on_current_thread(&self) -> Result<Handle> {
        self.socket_on_current_thread()?.into_handle()
    }

    /// Open a request socket in this namespace on the calling thread, as
    /// [`handle_on_current_thread`](Self::handle_on_current_thread) does,
    /// without registering it with a runtime: any thread can open it (one
    /// with spare time while another waits for the kernel, say), and
    /// [`RequestSocket::into_handle`] turns it into a [`Handle`] later,
    /// inside the runtime. Called from a tokio task, it opens the socket on
    /// a helper thread, as [`handle`](Self::handle) does: `setns` never
    /// runs on a thread that runs tasks.
    ///
    /// ```no_run
    /// # fn example() -> overlay_netlink::Result<()> {
    /// use overlay_netlink::Netns;
    /// let pod = Netns::open_path("/run/netns/pod-1")?;
    /// let socket = std::thread::spawn(move || pod.socket_on_current_thread())
    ///     .join()
    ///     .expect("thread")?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// runtime.block_on(async {
    ///     let handle = socket.into_handle()?;
    ///     assert!(handle.link().get("lo").await.is_ok());
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn socket_on_current_thread(&self) -> Result<RequestSocket> {
        let socket = if tokio::task::try_id().is_some() {
            self.open_socket(0, OPEN_SOCKET)?
        } else {
            on_current_thread_in(self.fd.as_fd(), &self.path, || open_socket(0))?
                .map_err(ns_error(OPEN_SOCKET, &self.path))?
        };
        Ok(RequestSocket {
            socket,
            netns: self.clone(),
        })
    }

    pub(crate) fn open_socket(
        &self,
        groups: u32,
        operation: &'static str,
    ) -> Result<netlink_sys::Socket> {
        self.run(|| open_socket(groups))?
            .map_err(|source| Error::Namespace {
                operation,
                path: self.path.clone(),
                source,
            })
    }

    /// Run `f` on a short-lived thread inside this namespace and return its
    /// result. Use it for `/proc/sys/net` sysctls and other per-namespace
    /// files; the calling thread never changes namespace. A panic in `f` is
    /// propagated.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        on_thread_in(self.fd.as_fd(), &self.path, f)
    }

    /// Read a sysctl in this namespace, for example
    /// `net.ipv4.conf.all.forwarding` (dots or slashes), trimmed.
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        self.run(|| fs::read_to_string(&path))?
            .map(|s| s.trim_end().to_string())
            .map_err(|source| Error::Sysctl {
                operation: "read",
                key: key.to_string(),
                source,
            })
    }

    /// Write a sysctl in this namespace.
    pub fn sysctl_set(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        self.run(|| fs::write(&path, value))?
            .map_err(|source| Error::Sysctl {
                operation: "write",
                key: key.to_string(),
                source,
            })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn remove_path(path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::NamespaceNotFound {
            path: path.to_path_buf(),
        });
    }
    let c = cstring(path).map_err(ns_error("unmount", path))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (a stale file); remove it anyway.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(ns_error("unmount", path)(e));
        }
    }
    fs::remove_file(path).map_err(ns_error("remove", path))
}

/// Map a sysctl key (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`) to its
/// path under `/proc/sys`. With dots, a key such as
/// `net.ipv4.conf.eth0.forwarding` maps every dot to `/`; use slashes for
/// interface names that contain dots.
pub(crate) fn sysctl_path(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || rel.contains('\0');
    if bad {
        return Err(Error::invalid(
            "access sysctl",
            key,
            InvalidInput::SysctlKey { key: key.into() },
        ));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_map_to_proc_sys_and_reject_escapes() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        for bad in ["", "../etc", "net/../../etc", "/etc/passwd", "net..x"] {
            assert!(
                matches!(
                    sysctl_path(bad),
                    Err(Error::InvalidInput {
                        source: InvalidInput::SysctlKey { .. },
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn namespace_names_with_slashes_are_rejected_before_any_file_access() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(matches!(
                Netns::open(bad),
                Err(Error::InvalidInput {
                    source: InvalidInput::NamespaceName { .. },
                    ..
                })
            ));
        }
    }

    #[test]
    fn entering_a_directory_or_a_regular_file_says_why_it_failed() {
        let dir = std::env::temp_dir().join(format!("ovt-netns-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        fs::write(&file, "").unwrap();
        let einval = io::Error::from_raw_os_error(libc::EINVAL).to_string();
        for (path, kind) in [(&dir, "a directory"), (&file, "a regular file")] {
            let ns = Netns::open_path(path).unwrap();
            // `run` enters on a helper thread: this thread never moves.
            let text = ns.run(|| ()).unwrap_err().to_string();
            assert!(text.starts_with("enter network namespace "), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&einval), "the OS's reason: {text}");
            assert!(text.contains(kind), "{text}");
        }
        for (path, kind) in [(&dir, "a directory"), (&file, "a regular file")] {
            let text = Netns::open_path(path)
                .unwrap()
                .verify()
                .unwrap_err()
                .to_string();
            assert!(text.starts_with("use network namespace "), "{text}");
            assert!(text.contains(kind), "{text}");
        }
        Netns::current().unwrap().verify().unwrap();
        // A namespace of another type.
        let mnt = Netns::open_path("/proc/self/ns/uts").unwrap();
        assert!(mnt.verify().is_err());
        let text = mnt.run(|| ()).unwrap_err().to_string();
        assert!(text.contains("another type"), "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opening_a_missing_namespace_is_not_found() {
        let e = Netns::open_path("/nonexistent/ovt-missing").unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }
}
