//! The plugin runner for async plugins.
//!
//! A plugin that talks netlink is async (`overlay-netlink` is), while
//! `overlay-cni`'s runner calls a synchronous [`Plugin`]. [`run_async`]
//! builds a current-thread tokio runtime (a plugin is one short-lived
//! process per command; one thread, no worker pool) and runs each of the
//! [`AsyncPlugin`]'s methods to completion on it. An ADD's IPAM call runs
//! on a thread of its own while the plugin builds its links
//! ([`crate::ipam::add`]); other blocking work that takes long (a DEL's
//! delegated IPAM plugin, GC) goes to the runtime's blocking pool.
//! `VERSION` and the runner's own validation errors never create the
//! runtime.
//!
//! ```
//! use overlay_cni::{CniError, CniResult, Request};
//! use overlay_plugin::AsyncPlugin;
//!
//! struct Nothing;
//!
//! impl AsyncPlugin for Nothing {
//!     async fn add(&self, req: &Request) -> Result<CniResult, CniError> {
//!         tokio::task::yield_now().await;
//!         Ok(CniResult::new(req.version))
//!     }
//!     async fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
//!     async fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
//! }
//!
//! // In a binary: `fn main() { overlay_plugin::run_async(&Nothing) }`.
//! let env = [
//!     ("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/p"),
//!     ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/opt/cni/bin"),
//! ].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
//! let out = overlay_plugin::dispatch_async(&Nothing, &env, br#"{"cniVersion":"1.0.0","name":"n","type":"x"}"#);
//! assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
//! ```

use std::collections::HashMap;
use std::future::Future;

use overlay_cni::config::GcAttachment;
use overlay_cni::plugin::{Output, Plugin};
use overlay_cni::{CniError, CniResult, ErrorCode, Request, Version};

/// A CNI plugin whose commands are async; see the [module docs](self).
///
/// The futures run on a current-thread runtime, so they need not be `Send`.
// `async fn` in a public trait: callers cannot add a `Send` bound, which
// the current-thread runner does not need.
#[allow(async_fn_in_trait)]
pub trait AsyncPlugin {
    /// The versions this plugin accepts (as [`Plugin::supported_versions`]).
    fn supported_versions(&self) -> &[Version] {
        overlay_cni::version::SUPPORTED_VERSIONS
    }

    /// The description printed without `CNI_COMMAND` (as [`Plugin::about`]).
    fn about(&self) -> Option<&str> {
        None
    }

    /// `ADD`.
    async fn add(&self, req: &Request) -> Result<CniResult, CniError>;

    /// `DEL`: idempotent; succeeds when the namespace or interface is gone.
    async fn del(&self, req: &Request) -> Result<(), CniError>;

    /// `CHECK`.
    async fn check(&self, req: &Request) -> Result<(), CniError>;

    /// `GC` (spec 1.1.0); nothing to collect by default.
    async fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let _ = (req, valid);
        Ok(())
    }

    /// `STATUS` (spec 1.1.0); ready by default.
    async fn status(&self, req: &Request) -> Result<(), CniError> {
        let _ = req;
        Ok(())
    }
}

/// An [`AsyncPlugin`] as a [`Plugin`]: each command runs on a fresh
/// current-thread runtime.
#[derive(Debug)]
struct Driver<'p, P: ?Sized>(&'p P);

/// Run `future` to completion on a new current-thread runtime (I/O and
/// time enabled); code 5 when the runtime cannot be built. Callers box the
/// command's future: a plugin's state machine is tens of KiB, which
/// `block_on` would otherwise copy across fresh stack pages.
fn block_on<T>(future: impl Future<Output = Result<T, CniError>>) -> Result<T, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(ErrorCode::IoFailure, format!("tokio runtime: {e}")))?
        .block_on(future)
}

impl<P: AsyncPlugin + ?Sized> Plugin for Driver<'_, P> {
    fn supported_versions(&self) -> &[Version] {
        self.0.supported_versions()
    }
    fn about(&self) -> Option<&str> {
        self.0.about()
    }
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        block_on(Box::pin(self.0.add(req)))
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        block_on(Box::pin(self.0.del(req)))
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        block_on(Box::pin(self.0.check(req)))
    }
    fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        block_on(Box::pin(self.0.gc(req, valid)))
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        block_on(Box::pin(self.0.status(req)))
    }
}

/// Run `plugin` as this process: read the environment and stdin, run the
/// command on a current-thread runtime, print the result or error, exit
/// (`overlay_cni::plugin::run` for an [`AsyncPlugin`]).
pub fn run_async<P: AsyncPlugin + ?Sized>(plugin: &P) -> ! {
    overlay_cni::plugin::run(&Driver(plugin))
}

/// [`run_async`] without the process, for tests: the environment is a map,
/// stdin a slice, and the output is returned (`overlay_cni::plugin::dispatch`
/// for an [`AsyncPlugin`]).
pub fn dispatch_async<P: AsyncPlugin + ?Sized>(
    plugin: &P,
    env: &HashMap<String, String>,
    stdin: &[u8],
) -> Output {
    overlay_cni::plugin::dispatch(&Driver(plugin), env, stdin)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Timed;

    impl AsyncPlugin for Timed {
        fn about(&self) -> Option<&str> {
            Some("timed test plugin")
        }
        async fn add(&self, req: &Request) -> Result<CniResult, CniError> {
            // Timers work: the runtime has time enabled.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            Ok(CniResult::new(req.version))
        }
        async fn del(&self, _: &Request) -> Result<(), CniError> {
            Err(CniError::plugin(120, "del failed"))
        }
        async fn check(&self, _: &Request) -> Result<(), CniError> {
            Ok(())
        }
    }

    fn env(command: &str) -> HashMap<String, String> {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    const CONF: &[u8] = br#"{"cniVersion":"1.1.0","name":"n","type":"x"}"#;

    #[test]
    fn each_command_runs_to_completion_and_errors_keep_their_code() {
        assert_eq!(dispatch_async(&Timed, &env("ADD"), CONF).exit_code, 0);
        let del = dispatch_async(&Timed, &env("DEL"), CONF);
        assert_eq!(
            del.cni_error().expect("error JSON").code,
            ErrorCode::Other(120)
        );
        assert_eq!(dispatch_async(&Timed, &env("STATUS"), CONF).exit_code, 0);
        assert_eq!(dispatch_async(&Timed, &env("VERSION"), CONF).exit_code, 0);
    }
}
