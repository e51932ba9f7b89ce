//! Errors: kernel errors mapped to a kind, input validation errors, and the
//! top-level [`Error`] that names the operation and the object it was about.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// What went wrong, in the terms callers branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object already exists (`EEXIST`).
    AlreadyExists,
    /// The object, or one it refers to, does not exist (`ENOENT`, `ENODEV`,
    /// `ESRCH`, `EADDRNOTAVAIL`, `ENXIO`).
    NotFound,
    /// The caller lacks a capability (`EPERM`, `EACCES`).
    PermissionDenied,
    /// The object is in use (`EBUSY`).
    Busy,
    /// The kernel rejected an argument (`EINVAL`, `ERANGE`, `ENETUNREACH`).
    InvalidArgument,
    /// The kernel does not support the request, for example a missing link
    /// driver (`EOPNOTSUPP`, `EAFNOSUPPORT`, `EPROTONOSUPPORT`).
    NotSupported,
    /// A dump changed while it was read (`EINTR`, `NLM_F_DUMP_INTR`).
    Interrupted,
    /// Any other errno.
    Other,
}

impl ErrorKind {
    /// Classify a positive errno value.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EEXIST => ErrorKind::AlreadyExists,
            libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENXIO => {
                ErrorKind::NotFound
            }
            libc::EPERM | libc::EACCES => ErrorKind::PermissionDenied,
            libc::EBUSY => ErrorKind::Busy,
            libc::EINVAL | libc::ERANGE | libc::ENETUNREACH => ErrorKind::InvalidArgument,
            libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => {
                ErrorKind::NotSupported
            }
            libc::EINTR => ErrorKind::Interrupted,
            _ => ErrorKind::Other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Busy => "busy",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotSupported => "not supported",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Other => "failed",
        })
    }
}

/// An error the kernel returned in an `NLMSG_ERROR` (or `NLMSG_DONE`) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The positive errno value.
    pub errno: i32,
    /// The extended-ACK message the kernel attached, if any
    /// (for example `"Unknown device type"`).
    pub message: Option<String>,
}

impl KernelError {
    /// An error for a positive errno value, without a message.
    pub fn new(errno: i32) -> Self {
        KernelError {
            errno,
            message: None,
        }
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_errno(self.errno)
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        write!(f, "{} (errno {}: {os})", self.kind(), self.errno)?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

pub use overlay_core::IpFamily;

/// The netlink address family (`AF_INET`/`AF_INET6`) of an [`IpFamily`].
pub(crate) trait AddressFamilyExt {
    /// `AF_INET` or `AF_INET6`.
    fn af(self) -> u8;
}

impl AddressFamilyExt for IpFamily {
    fn af(self) -> u8 {
        match self {
            IpFamily::V4 => libc::AF_INET as u8,
            IpFamily::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// Input rejected before anything was sent to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// An interface name longer than 15 bytes (`IFNAMSIZ - 1`).
    #[error("interface name {name:?} is {len} bytes long, the limit is 15")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// An empty interface name, or `.` or `..`.
    #[error("interface name {name:?} is not allowed")]
    NameReserved {
        /// The name.
        name: String,
    },
    /// An interface name with `/`, whitespace, `:` or a control character.
    #[error("interface name {name:?} contains the forbidden character {ch:?}")]
    NameCharacter {
        /// The name.
        name: String,
        /// The first forbidden character.
        ch: char,
    },
    /// A VXLAN network identifier that does not fit in 24 bits. No longer
    /// produced: VNIs are [`Vni`](overlay_core::Vni)s, which always fit.
    #[error("VNI {vni} does not fit in 24 bits (maximum 16777215)")]
    VniOutOfRange {
        /// The VNI.
        vni: u32,
    },
    /// An address of the wrong family, for example an IPv6 gateway for an
    /// IPv4 route.
    #[error("{what} {addr} is {}, expected {expected}", IpFamily::of(*addr))]
    FamilyMismatch {
        /// What the address is (for example `"gateway"`).
        what: &'static str,
        /// The address.
        addr: IpAddr,
        /// The family it should have had.
        expected: IpFamily,
    },
    /// A route destination with bits set beyond its prefix length.
    #[error("destination {net} has host bits set (did you mean {}?)", net.trunc())]
    HostBits {
        /// The destination.
        net: IpNet,
    },
    /// A namespace name that cannot be a file name under `/run/netns`.
    #[error("namespace name {name:?} is empty, `.`, `..` or contains `/`")]
    NamespaceName {
        /// The name.
        name: String,
    },
    /// A sysctl key that is empty or escapes `/proc/sys`.
    #[error("sysctl key {key:?} is not a valid key under /proc/sys")]
    SysctlKey {
        /// The key.
        key: String,
    },
    /// Two desired overlay peers claim the same VTEP address, VTEP MAC or pod
    /// range; programming both would make them overwrite each other.
    #[error("{what} {value} belongs to more than one peer")]
    DuplicatePeerItem {
        /// `"VTEP address"`, `"VTEP MAC"` or `"pod range"`.
        what: &'static str,
        /// The duplicated value, formatted.
        value: String,
    },
    /// A MAC address that is all zeros or multicast where a unicast address is needed.
    #[error("MAC address {mac} is not a unicast address")]
    MacNotUnicast {
        /// The address, formatted.
        mac: String,
    },
    /// An address that should be one of this namespace's is on no device.
    #[error("no device in this network namespace has the address {addr}")]
    AddressNotLocal {
        /// The address.
        addr: IpAddr,
    },
    /// The underlay's MTU leaves too little room for the overlay.
    #[error(transparent)]
    Mtu(#[from] overlay_core::mtu::MtuError),
}

/// A failure of the netlink socket itself (not an error reply).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A system call on the socket failed.
    #[error("{operation} on the netlink socket")]
    Io {
        /// The system call or step (`"send"`, `"recv"`, `"open"`).
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel sent bytes that do not parse as a netlink message. The
    /// source is the decoder's error (its type is not part of this crate's
    /// API).
    #[error("malformed netlink message from the kernel")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The transport was asked to run outside a tokio runtime.
    #[error("the netlink socket needs a tokio runtime with I/O enabled")]
    NoRuntime,
}

/// The error type of this crate: what failed, on which object, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused the request.
    #[error("{operation} {object}: {source}")]
    Kernel {
        /// The operation, for example `"create vxlan"`.
        operation: &'static str,
        /// The object, for example the interface name.
        object: String,
        /// The kernel's error.
        #[source]
        source: KernelError,
    },
    /// The input was rejected before anything was sent to the kernel.
    #[error("{operation} {object}: {source}")]
    InvalidInput {
        /// The operation.
        operation: &'static str,
        /// The object.
        object: String,
        /// What is wrong with the input.
        #[source]
        source: InvalidInput,
    },
    /// The netlink socket failed.
    #[error("{operation} {object}: {source}")]
    Transport {
        /// The operation.
        operation: &'static str,
        /// The object.
        object: String,
        /// The socket failure.
        #[source]
        source: TransportError,
    },
    /// The kernel answered with something this crate did not expect.
    #[error("{operation} {object}: unexpected reply from the kernel: {detail}")]
    UnexpectedReply {
        /// The operation.
        operation: &'static str,
        /// The object.
        object: String,
        /// What was unexpected.
        detail: &'static str,
    },
    /// A network namespace does not exist.
    #[error("network namespace {} does not exist", path.display())]
    NamespaceNotFound {
        /// Its path (`/run/netns/NAME` for a named namespace).
        path: PathBuf,
    },
    /// A step of creating, opening, entering or deleting a namespace failed;
    /// the message ends with the operating system's reason.
    #[error("{operation} network namespace {}: {source}", path.display())]
    Namespace {
        /// The step, for example `"bind-mount"`.
        operation: &'static str,
        /// The namespace path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A reconcile applied what it could, but the kernel refused some
    /// changes; the report says what changed and what failed.
    #[error("reconcile overlay peers: {} of {} changes failed; first: {}", report.failures.len(), report.failures.len() + report.changes.len(), report.failures.first().map(|f| f.to_string()).unwrap_or_default())]
    Reconcile {
        /// What was changed and what failed.
        report: Box<crate::overlay::ReconcileReport>,
    },
    /// Reading or writing a sysctl failed; the message ends with the
    /// operating system's reason.
    #[error("{operation} sysctl {key}: {source}")]
    Sysctl {
        /// `"read"` or `"write"`.
        operation: &'static str,
        /// The key.
        key: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The kind of a kernel error, `NotFound` for a missing namespace, and
    /// `None` for errors that did not come from the kernel.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Kernel { source, .. } => Some(source.kind()),
            Error::NamespaceNotFound { .. } => Some(ErrorKind::NotFound),
            _ => None,
        }
    }

    /// Whether the object (or the namespace) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(ErrorKind::NotFound)
    }

    /// Whether the object already exists.
    pub fn is_already_exists(&self) -> bool {
        self.kind() == Some(ErrorKind::AlreadyExists)
    }

    /// The errno of a kernel error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } => Some(source.errno),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        operation: &'static str,
        object: impl fmt::Display,
        source: InvalidInput,
    ) -> Self {
        Error::InvalidInput {
            operation,
            object: object.to_string(),
            source,
        }
    }
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_map_to_kinds() {
        assert_eq!(
            ErrorKind::from_errno(libc::EEXIST),
            ErrorKind::AlreadyExists
        );
        assert_eq!(ErrorKind::from_errno(libc::ENODEV), ErrorKind::NotFound);
        assert_eq!(
            ErrorKind::from_errno(libc::EPERM),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            ErrorKind::from_errno(libc::EOPNOTSUPP),
            ErrorKind::NotSupported
        );
        assert_eq!(ErrorKind::from_errno(libc::EIO), ErrorKind::Other);
    }

    #[test]
    fn kernel_error_display_names_operation_object_and_errno() {
        let e = Error::Kernel {
            operation: "create bridge",
            object: "br0".into(),
            source: KernelError {
                errno: libc::EEXIST,
                message: Some("exists".into()),
            },
        };
        let text = e.to_string();
        assert!(
            text.starts_with("create bridge br0: already exists (errno 17"),
            "{text}"
        );
        assert!(text.ends_with(": exists"), "{text}");
        assert!(e.is_already_exists());
        assert_eq!(e.errno(), Some(libc::EEXIST));
    }

    #[test]
    fn namespace_and_sysctl_errors_end_with_the_operating_systems_reason() {
        let e = Error::Namespace {
            operation: "enter",
            path: PathBuf::from("/tmp/not-a-netns"),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        let os = io::Error::from_raw_os_error(libc::EINVAL).to_string();
        assert_eq!(
            e.to_string(),
            format!("enter network namespace /tmp/not-a-netns: {os}")
        );
        let e = Error::Sysctl {
            operation: "write",
            key: "net.ipv4.ip_forward".into(),
            source: io::Error::from_raw_os_error(libc::EROFS),
        };
        assert!(
            e.to_string()
                .starts_with("write sysctl net.ipv4.ip_forward: Read-only"),
            "{e}"
        );
    }
}
