//! A plugin's IPAM, whichever way it runs: one trait, one release guard.
//!
//! A main plugin (a bridge, a VXLAN plugin) gets its addresses from an IPAM
//! and must give them back when its own `ADD` fails after the IPAM's
//! succeeded. [`Ipam`] is what such a plugin calls for each command;
//! [`Lease`] is the allocation of an `ADD`, released when dropped unless
//! [`Lease::commit`] is called, so every early return of a failed `ADD`
//! releases it.
//!
//! Implementations:
//!
//! - [`Delegated`]: the IPAM plugin found on `CNI_PATH`, run as a process
//!   (see [`crate::delegate`]);
//! - `overlay_ipam::host_local::HostLocalIpam`: the reference `host-local`,
//!   in-process, on the same files;
//! - the cluster allocator of the node agent (later), over its socket.
//!
//! ```no_run
//! use overlay_cni::ipam::{Delegated, Ipam};
//! use overlay_cni::{CniError, CniResult, Request};
//!
//! fn add(req: &Request) -> Result<CniResult, CniError> {
//!     let ipam = Delegated::new("host-local");
//!     let lease = ipam.add(req)?;
//!     let address = lease.result().ips[0].address;
//!     // ... configure `address`; returning an error here drops `lease`,
//!     // which runs the IPAM's DEL ...
//!     # let _ = address;
//!     Ok(lease.commit())
//! }
//! ```

use std::fmt;
use std::net::IpAddr;

use crate::config::GcAttachment;
use crate::delegate;
use crate::error::CniError;
use crate::plugin::Request;
use crate::result::CniResult;

/// A stale attachment that an IPAM's GC found in its own state: what it
/// knows of the attachment and the addresses it would release.
///
/// ```
/// use overlay_cni::ipam::StaleAttachment;
///
/// let ips = ["192.0.2.7".parse().unwrap()];
/// let stale = StaleAttachment::new("c1", Some("eth0"), &ips);
/// assert_eq!(stale.ifname, Some("eth0"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StaleAttachment<'a> {
    /// The container ID.
    pub container_id: &'a str,
    /// The interface name, when the IPAM recorded one (`host-local` before
    /// 0.4.0 did not).
    pub ifname: Option<&'a str>,
    /// Its addresses.
    pub ips: &'a [IpAddr],
}

impl<'a> StaleAttachment<'a> {
    /// A stale attachment from its parts.
    pub fn new(container_id: &'a str, ifname: Option<&'a str>, ips: &'a [IpAddr]) -> Self {
        StaleAttachment {
            container_id,
            ifname,
            ips,
        }
    }
}

/// What `GC` calls for each stale attachment before its addresses are
/// released: remove what else the attachment holds (its interfaces, its
/// firewall rules). An error keeps the addresses reserved.
pub type Teardown<'a> = dyn FnMut(&StaleAttachment<'_>) -> Result<(), CniError> + 'a;

/// A plugin's IPAM: one method per CNI command, called with the plugin's
/// own request (its configuration holds the `ipam` object).
///
/// ```
/// use std::sync::Mutex;
/// use overlay_cni::ipam::{Ipam, Lease, Teardown};
/// use overlay_cni::config::GcAttachment;
/// use overlay_cni::plugin::{CniEnv, Command};
/// use overlay_cni::result::IpConfig;
/// use overlay_cni::{CniError, CniResult, Request};
///
/// /// Hands out one fixed address, for tests.
/// struct Fixed(Mutex<bool>);
///
/// impl Ipam for Fixed {
///     fn add(&self, req: &Request) -> Result<Lease, CniError> {
///         *self.0.lock().unwrap() = true;
///         let mut result = CniResult::new(req.version);
///         result.ips.push(IpConfig::new("192.0.2.7/24".parse().unwrap()));
///         Ok(Lease::new(result, || {}))
///     }
///     fn del(&self, _: &Request) -> Result<(), CniError> {
///         *self.0.lock().unwrap() = false;
///         Ok(())
///     }
///     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn gc(&self, _: &Request, _: &[GcAttachment], _: &mut Teardown<'_>) -> Result<(), CniError> { Ok(()) }
///     fn status(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// }
///
/// let req = Request::new(Command::Add, CniEnv::default(), br#"{"cniVersion":"1.0.0","name":"n","type":"x"}"#).unwrap();
/// let ipam = Fixed(Mutex::new(false));
/// let result = ipam.add(&req).unwrap().commit();
/// assert_eq!(result.ips[0].address.to_string(), "192.0.2.7/24");
/// ```
pub trait Ipam: Send + Sync {
    /// `ADD`: allocate for the request's attachment. The lease releases the
    /// allocation when dropped before [`Lease::commit`].
    fn add(&self, req: &Request) -> Result<Lease, CniError>;

    /// `DEL`: release the attachment's addresses; absent is success.
    fn del(&self, req: &Request) -> Result<(), CniError>;

    /// `CHECK`: the attachment still holds its addresses.
    fn check(&self, req: &Request) -> Result<(), CniError>;

    /// `GC`: release every attachment not in `valid`. An IPAM that knows its
    /// stale attachments calls `teardown` for each and releases it only when
    /// that succeeded; one that cannot (a delegated plugin) does its own GC
    /// and never calls `teardown`.
    fn gc(
        &self,
        req: &Request,
        valid: &[GcAttachment],
        teardown: &mut Teardown<'_>,
    ) -> Result<(), CniError>;

    /// `STATUS`: whether an `ADD` can succeed now (code 50 when not).
    fn status(&self, req: &Request) -> Result<(), CniError>;

    /// Whether the configuration is known, before any `ADD`, to hand out
    /// IPv6 addresses (a plugin checks its MTU against IPv6's minimum then).
    /// `false` when it cannot be known before the `ADD` (a delegated plugin).
    fn has_ipv6_range(&self) -> bool {
        false
    }
}

/// The allocation of an `ADD`, released when dropped unless committed.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use overlay_cni::ipam::Lease;
/// use overlay_cni::{CniResult, Version};
///
/// let released = Arc::new(AtomicBool::new(false));
/// let flag = released.clone();
/// let lease = Lease::new(CniResult::new(Version::V1_0_0), move || flag.store(true, Ordering::SeqCst));
/// drop(lease); // a failed ADD
/// assert!(released.load(Ordering::SeqCst));
///
/// let lease = Lease::new(CniResult::new(Version::V1_0_0), || panic!("committed leases are kept"));
/// let _result = lease.commit();
/// ```
#[must_use = "dropping the lease releases the allocation"]
pub struct Lease {
    result: CniResult,
    /// Some until committed or released.
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Lease {
    /// A lease of `result`; `release` runs when it is dropped uncommitted
    /// (its own failure is ignored: the original error is what the runtime
    /// needs to see, and a runtime's `DEL` or `GC` releases what is left).
    pub fn new(result: CniResult, release: impl FnOnce() + Send + 'static) -> Self {
        Lease {
            result,
            release: Some(Box::new(release)),
        }
    }

    /// The IPAM's result.
    pub fn result(&self) -> &CniResult {
        &self.result
    }

    /// Keep the allocation and return the result.
    pub fn commit(mut self) -> CniResult {
        self.release = None;
        std::mem::replace(
            &mut self.result,
            CniResult::new(crate::version::Version::default()),
        )
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("result", &self.result)
            .field("armed", &self.release.is_some())
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// IPAM by delegation: the plugin `plugin_type` on `CNI_PATH`, run with the
/// request's environment and configuration for every command (see
/// [`crate::delegate`]).
///
/// ```
/// use overlay_cni::ipam::{Delegated, Ipam};
///
/// let ipam = Delegated::new("dhcp");
/// assert_eq!(ipam.plugin_type(), "dhcp");
/// assert!(!ipam.has_ipv6_range());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegated {
    plugin_type: String,
}

impl Delegated {
    /// Delegate to the plugin named `plugin_type` (the `ipam.type`).
    pub fn new(plugin_type: impl Into<String>) -> Self {
        Delegated {
            plugin_type: plugin_type.into(),
        }
    }

    /// The delegate's executable name.
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }
}

impl Ipam for Delegated {
    fn add(&self, req: &Request) -> Result<Lease, CniError> {
        Ok(delegate::delegate_add_guarded(
            &self.plugin_type,
            &req.config_bytes,
            &req.env,
        )?)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        Ok(delegate::delegate_del(
            &self.plugin_type,
            &req.config_bytes,
            &req.env,
        )?)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        Ok(delegate::delegate_check(
            &self.plugin_type,
            &req.config_bytes,
            &req.env,
        )?)
    }

    /// The delegate does its own GC from the same configuration (which
    /// carries the valid attachments); `teardown` is not called.
    fn gc(
        &self,
        req: &Request,
        _valid: &[GcAttachment],
        _teardown: &mut Teardown<'_>,
    ) -> Result<(), CniError> {
        Ok(delegate::delegate_gc(
            &self.plugin_type,
            &req.config_bytes,
            &req.env,
        )?)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        Ok(delegate::delegate_status(
            &self.plugin_type,
            &req.config_bytes,
            &req.env,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn lease_releases_once_when_dropped_and_never_when_committed() {
        let released = Arc::new(AtomicUsize::new(0));
        let counter = released.clone();
        drop(Lease::new(CniResult::new(Version::V1_0_0), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(released.load(Ordering::SeqCst), 1);
        let counter = released.clone();
        let mut result = CniResult::new(Version::V0_4_0);
        result.ips.push(crate::result::IpConfig::new(
            "192.0.2.9/24".parse().expect("valid"),
        ));
        let lease = Lease::new(result.clone(), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(lease.result(), &result);
        assert_eq!(lease.commit(), result);
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delegated_add_of_a_missing_plugin_fails_with_code_999() {
        let env = crate::plugin::CniEnv {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            path: "/nonexistent-cni-path".into(),
            ..Default::default()
        };
        let req = Request::new(
            crate::plugin::Command::Add,
            env,
            br#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{"type":"nope"}}"#,
        )
        .expect("valid config");
        let err = Delegated::new("nope").add(&req).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::Internal, "{err:?}");
    }
}
