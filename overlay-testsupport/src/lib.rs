//! Test support for overlay's privileged tests.
//!
//! Real-kernel tests in this workspace follow three rules, and this crate makes
//! them easy to keep:
//!
//! 1. **Own namespaces only.** [`TestNetns::new`] creates a network namespace
//!    with a unique `ovt-` name (bind-mounted under `/run/netns`, as
//!    `ip netns add` does). Tests put every link, address and process they
//!    make inside such namespaces.
//! 2. **Clean up, also on panic.** Dropping a [`TestNetns`] kills the processes
//!    left in it and deletes it, which destroys every link inside it. Because
//!    this happens in `Drop`, it also happens while a failing test unwinds.
//! 3. **Skip visibly, fail in CI.** [`require_privileged`] (or the
//!    [`privileged_test!`] macro) prints `skipped: needs root (CAP_NET_ADMIN)`
//!    and lets the test pass when the process lacks `CAP_NET_ADMIN`, unless
//!    `OVERLAY_REQUIRE_PRIVILEGED=1` is set, in which case it panics. The test
//!    command sets that variable, so CI never silently skips.
//!
//! ```no_run
//! use overlay_testsupport::{privileged_test, veth_between, TestNetns};
//!
//! privileged_test!();
//! let a = TestNetns::new().unwrap();
//! let b = TestNetns::new().unwrap();
//! veth_between(&a, "198.51.100.1/24".parse().unwrap(), &b, "198.51.100.2/24".parse().unwrap())
//!     .unwrap();
//! let out = a.exec(["ping", "-c1", "-W1", "198.51.100.2"]).unwrap();
//! assert!(out.status.success());
//! // `a` and `b` are deleted here, with the veth pair between them.
//! ```
//!
//! The same guard serves programs that build throwaway namespaces outside a
//! test, such as the workspace's `overlay-demo`: [`TestNetns::named`] takes a
//! name with the program's own prefix, and [`TestNetns::keep`] leaves a
//! namespace in place for a look.
//!
//! This crate shells out to `ip` from iproute2 on purpose: it must not depend on
//! the code under test (`overlay-netlink`) to set up and tear down fixtures.
//!
//! It is published so that the published crates' tests build from their
//! `.crate` files; it is a dev-dependency, with no stability promise beyond
//! the workspace's own tests.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

/// The prefix of every namespace and link name that tests create.
pub const PREFIX: &str = "ovt-";

/// The directory where named network namespaces are bind-mounted.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The environment variable that turns a skipped privileged test into a failure.
pub const REQUIRE_PRIVILEGED_ENV: &str = "OVERLAY_REQUIRE_PRIVILEGED";

/// The message printed when a privileged test is skipped.
pub const SKIP_MESSAGE: &str = "skipped: needs root (CAP_NET_ADMIN)";

/// Bit number of `CAP_NET_ADMIN` in the capability sets (see `capabilities(7)`).
pub const CAP_NET_ADMIN: u32 = 12;

/// Bit number of `CAP_SYS_ADMIN` in the capability sets (see `capabilities(7)`).
pub const CAP_SYS_ADMIN: u32 = 21;

/// Errors from setting up or tearing down test fixtures.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A command could not be started (for example `ip` is not installed).
    Spawn {
        /// The command line that failed to start.
        command: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A command ran but exited unsuccessfully.
    Command {
        /// The command line.
        command: String,
        /// Its exit status, as printed.
        status: String,
        /// What it wrote to standard error.
        stderr: String,
    },
    /// An operating system call failed.
    Os {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { command, source } => write!(f, "cannot run `{command}`: {source}"),
            Error::Command {
                command,
                status,
                stderr,
            } => write!(f, "`{command}` failed ({status}): {}", stderr.trim()),
            Error::Os { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } | Error::Os { source, .. } => Some(source),
            Error::Command { .. } => None,
        }
    }
}

/// A result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// This process's effective capability set (`CapEff` in `/proc/self/status`)
/// as a bit mask indexed by capability number, or `None` if it cannot be read.
///
/// ```
/// use overlay_testsupport::{effective_capabilities, CAP_NET_ADMIN, CAP_SYS_ADMIN};
/// let may_build_namespaces = effective_capabilities()
///     .map(|caps| [CAP_NET_ADMIN, CAP_SYS_ADMIN].iter().all(|bit| caps & (1 << bit) != 0));
/// let _ = may_build_namespaces;
/// ```
pub fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Whether this process holds `CAP_NET_ADMIN` in its effective set.
///
/// ```
/// let _ = overlay_testsupport::has_net_admin();
/// ```
pub fn has_net_admin() -> bool {
    effective_capabilities().is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Whether `OVERLAY_REQUIRE_PRIVILEGED` asks for privileged tests to be mandatory.
///
/// ```
/// let _ = overlay_testsupport::privileged_required();
/// ```
pub fn privileged_required() -> bool {
    std::env::var(REQUIRE_PRIVILEGED_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Decide whether a privileged test can run.
///
/// Returns `true` when the process has `CAP_NET_ADMIN`. Otherwise prints
/// [`SKIP_MESSAGE`] and returns `false`, or panics when
/// `OVERLAY_REQUIRE_PRIVILEGED=1` is set, so that CI never skips silently.
///
/// ```
/// if !overlay_testsupport::require_privileged() {
///     return; // the message was printed
/// }
/// ```
pub fn require_privileged() -> bool {
    decide_privileged(has_net_admin(), privileged_required())
}

fn decide_privileged(has_cap: bool, required: bool) -> bool {
    if has_cap {
        return true;
    }
    if required {
        panic!("{SKIP_MESSAGE}, and {REQUIRE_PRIVILEGED_ENV}=1 makes privileged tests mandatory");
    }
    eprintln!("{SKIP_MESSAGE}");
    println!("{SKIP_MESSAGE}");
    false
}

/// Return early from the enclosing test when it cannot run privileged.
///
/// See [`require_privileged`].
///
/// ```
/// fn my_test() {
///     overlay_testsupport::privileged_test!();
///     // ... privileged body ...
/// }
/// my_test();
/// ```
#[macro_export]
macro_rules! privileged_test {
    () => {
        if !$crate::require_privileged() {
            return;
        }
    };
}

/// Make a name with the `ovt-` prefix that no other guard in any process on
/// this machine uses at the same time.
///
/// The name packs the process id (22 bits, Linux's largest `pid_max`) and a
/// per-process counter (18 bits) into 8 base-32 digits, so two live processes,
/// or two calls in one process, never get the same name: the mapping from
/// (pid, counter) to name is one-to-one. Only a name left behind by a process
/// that died without cleaning up, and whose pid a new process now has, can be
/// taken; [`TestNetns::with_kind`] steps over such a name. The counter wraps
/// after 262,144 names in one process.
///
/// The result is at most 15 bytes when `kind` is at most 3 bytes, so it can
/// also serve as an interface name.
///
/// ```
/// let a = overlay_testsupport::unique_name("n");
/// let b = overlay_testsupport::unique_name("n");
/// assert!(a.starts_with("ovt-") && a != b);
/// assert!(a.len() <= 15);
/// ```
pub fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    name_for(kind, std::process::id(), n)
}

/// The name [`unique_name`] gives to call `n` of process `pid`.
fn name_for(kind: &str, pid: u32, n: u64) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    const COUNTER_BITS: u32 = 18;
    let packed =
        (u64::from(pid) & ((1 << 22) - 1)) << COUNTER_BITS | (n & ((1 << COUNTER_BITS) - 1));
    let digits: String = (0..8)
        .rev()
        .map(|i| char::from(DIGITS[((packed >> (5 * i)) & 31) as usize]))
        .collect();
    format!("{PREFIX}{kind}{digits}")
}

/// Render a command line for error messages.
fn render<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Run a command to completion and fail unless it succeeds.
///
/// ```
/// let out = overlay_testsupport::run("true", [] as [&str; 0]).unwrap();
/// assert!(out.status.success());
/// ```
pub fn run<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S> + Clone,
    S: AsRef<OsStr>,
{
    let command = render(program, args.clone());
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// A network namespace created for one test (or one run of a program) and
/// deleted when dropped.
///
/// Dropping it kills every process still inside (other than this one), then
/// deletes the namespace; the kernel destroys the links inside with it (the
/// peer end of a veth pair in another namespace goes too). A process left
/// inside would otherwise keep the namespace, and its links, alive after the
/// name is gone. Drop also runs while a panicking test unwinds, so a failing
/// test leaves nothing behind. [`TestNetns::keep`] opts out.
///
/// ```no_run
/// let ns = overlay_testsupport::TestNetns::new().unwrap();
/// let out = ns.exec(["ip", "link", "show", "lo"]).unwrap();
/// assert!(out.status.success());
/// ```
#[derive(Debug)]
pub struct TestNetns {
    name: String,
    path: PathBuf,
}

impl TestNetns {
    /// Create a namespace with a unique `ovt-` name and bring its loopback up.
    pub fn new() -> Result<Self> {
        Self::with_kind("ns")
    }

    /// Like [`TestNetns::new`], with a short tag (at most 3 bytes is best) in
    /// the name to tell namespaces apart in `ip netns list`.
    ///
    /// A name that a crashed earlier process left in `/run/netns` (possible
    /// only when the pid has been reused) is stepped over: the next name is
    /// tried, a few times at most.
    pub fn with_kind(kind: &str) -> Result<Self> {
        let mut attempt = 0;
        loop {
            let name = unique_name(kind);
            match Self::named(name) {
                Err(Error::Command { stderr, .. })
                    if attempt < 8 && stderr.contains("File exists") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Create a namespace with exactly this name and bring its loopback up.
    ///
    /// For programs other than tests, which name their namespaces with a
    /// prefix of their own (`overlay-demo` uses `ovd-<pid>-<role>`). The
    /// caller makes the name unique; `ip netns add` fails on a name in use.
    ///
    /// ```no_run
    /// let ns = overlay_testsupport::TestNetns::named(format!("ovd-{}-node1", std::process::id()))
    ///     .unwrap();
    /// assert!(ns.path().ends_with(ns.name()));
    /// ```
    pub fn named(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        run("ip", ["netns", "add", name.as_str()])?;
        let ns = TestNetns {
            path: Path::new(NETNS_RUN_DIR).join(&name),
            name,
        };
        // From here on, Drop cleans up even if the next step fails.
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as in `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leave the namespace, and whatever runs in it, in place instead of
    /// deleting it, and return its name (delete it later with
    /// `ip netns del NAME`).
    pub fn keep(self) -> String {
        let mut this = std::mem::ManuallyDrop::new(self);
        let _path = std::mem::take(&mut this.path);
        std::mem::take(&mut this.name)
    }

    /// The bind-mount path of the namespace, `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `ip -n <name> <args>` and fail unless it succeeds.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let mut full: Vec<std::ffi::OsString> = vec!["-n".into(), self.name.clone().into()];
        full.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        run("ip", full)
    }

    /// Names of the links in the namespace, as `ip -o link show [type KIND]`
    /// lists them (a veth's `@peer` suffix removed), optionally only those of
    /// one `kind` (`"veth"`, `"bridge"`, ...).
    pub fn link_names(&self, kind: Option<&str>) -> Result<Vec<String>> {
        let mut args = vec!["-o", "link", "show"];
        if let Some(kind) = kind {
            args.extend(["type", kind]);
        }
        let out = self.ip(args)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
            .collect())
    }

    /// Run a program inside the namespace (`ip netns exec`) and return its
    /// output, whether or not it succeeded.
    pub fn exec<I, S>(&self, argv: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv: Vec<std::ffi::OsString> = argv
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let command = render(
            "ip netns exec",
            std::iter::once(self.name.as_str().as_ref()).chain(argv.iter().map(|a| a.as_os_str())),
        );
        Command::new("ip")
            .args(["netns", "exec", self.name.as_str()])
            .args(&argv)
            .output()
            .map_err(|source| Error::Spawn { command, source })
    }

    /// Run `f` on a dedicated thread that has entered this namespace, and
    /// return its result. A panic in `f` is propagated to the caller.
    ///
    /// The calling thread never changes namespace, so this is safe to use from
    /// any thread, including async runtimes' worker threads.
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in_netns_path(&self.path, f)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Kill whatever a test left running inside (servers, pings).
        kill_processes_in(&self.name);
        let deleted = Command::new("ip")
            .args(["netns", "del", self.name.as_str()])
            .output();
        match deleted {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "overlay-testsupport: cannot delete netns {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!(
                "overlay-testsupport: cannot delete netns {}: {e}",
                self.name
            ),
        }
    }
}

/// Kill (SIGKILL) every process in the named namespace, as `ip netns pids`
/// lists them, except this process.
fn kill_processes_in(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        match pid.parse::<libc::pid_t>() {
            Ok(pid) if pid > 0 && u32::try_from(pid).ok() != Some(std::process::id()) => {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            _ => {}
        }
    }
}

/// Run `f` on a new thread that has entered the network namespace at `path`
/// (a bind mount such as `/run/netns/NAME`, or `/proc/PID/ns/net`).
///
/// ```no_run
/// let ns = overlay_testsupport::TestNetns::new().unwrap();
/// let links = overlay_testsupport::run_in_netns_path(ns.path(), || {
///     std::fs::read_dir("/sys/class/net").map(|d| d.count()).unwrap_or(0)
/// })
/// .unwrap();
/// assert!(links >= 1);
/// ```
pub fn run_in_netns_path<F, T>(path: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let file = File::open(path).map_err(|source| Error::Os {
        context: format!("open {}", path.display()),
        source,
    })?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || -> Result<T> {
            // SAFETY: setns(2) on a valid, open namespace fd; it affects only
            // this freshly spawned thread, which ends when the closure returns.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(Error::Os {
                    context: format!("setns into {}", path.display()),
                    source: io::Error::last_os_error(),
                });
            }
            drop(file);
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A veth pair joining two test namespaces, as made by [`veth_between`].
///
/// The links live inside the namespaces and go away with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethLink {
    /// Interface name in the first namespace.
    pub a_name: String,
    /// Address given to the first end.
    pub a_addr: IpNet,
    /// Interface name in the second namespace.
    pub b_name: String,
    /// Address given to the second end.
    pub b_addr: IpNet,
}

/// Join two test namespaces with a veth pair, give each end an address and
/// bring both up.
///
/// The ends get unique `ovt-` names. IPv6 addresses are added with `nodad` so
/// they are usable at once.
///
/// ```no_run
/// use overlay_testsupport::{veth_between, TestNetns};
/// let a = TestNetns::new().unwrap();
/// let b = TestNetns::new().unwrap();
/// let link = veth_between(&a, "2001:db8::1/64".parse().unwrap(), &b, "2001:db8::2/64".parse().unwrap())
///     .unwrap();
/// assert!(link.a_name.starts_with("ovt-"));
/// ```
pub fn veth_between(
    a: &TestNetns,
    a_addr: IpNet,
    b: &TestNetns,
    b_addr: IpNet,
) -> Result<VethLink> {
    let a_name = unique_name("va");
    let b_name = unique_name("vb");
    a.ip([
        "link",
        "add",
        a_name.as_str(),
        "type",
        "veth",
        "peer",
        "name",
        b_name.as_str(),
        "netns",
        b.name(),
    ])?;
    for (ns, name, addr) in [(a, &a_name, a_addr), (b, &b_name, b_addr)] {
        let addr_s = addr.to_string();
        let mut args = vec!["addr", "add", addr_s.as_str(), "dev", name.as_str()];
        if addr.addr().is_ipv6() {
            args.push("nodad");
        }
        ns.ip(args)?;
        ns.ip(["link", "set", name.as_str(), "up"])?;
    }
    Ok(VethLink {
        a_name,
        a_addr,
        b_name,
        b_addr,
    })
}

/// The `ovt-` namespaces that exist now, by name.
///
/// The test command uses this (through `ip netns list`) to prove that no test
/// left one behind.
///
/// ```
/// let leftovers = overlay_testsupport::list_test_netns();
/// let _ = leftovers.len();
/// ```
pub fn list_test_netns() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_distinct_and_short() {
        let names: std::collections::HashSet<String> =
            (0..1000).map(|_| unique_name("ns")).collect();
        assert_eq!(names.len(), 1000);
        assert!(names.iter().all(|n| n.starts_with(PREFIX) && n.len() <= 15));
    }

    #[test]
    fn names_are_one_to_one_in_pid_and_counter() {
        // Every counter value of one process, with clocks and timing out of
        // the picture: the scheme this replaced mixed in clock bits that could
        // cancel the counter's and gave two namespaces of one test one name.
        let mut seen = std::collections::HashSet::new();
        for n in 0..(1 << 18) {
            assert!(seen.insert(name_for("pod", 4_194_303, n)), "counter {n}");
        }
        // Across processes: pids that differ in any bit, same counter.
        let names: std::collections::HashSet<String> = [1u32, 2, 3, 1 << 12, 4_194_303]
            .iter()
            .flat_map(|&pid| (0..64).map(move |n| name_for("pod", pid, n)))
            .collect();
        assert_eq!(names.len(), 5 * 64);
        let longest = name_for("pod", 4_194_303, (1 << 18) - 1);
        assert_eq!(longest, "ovt-podvvvvvvvv");
        assert!(longest.len() <= 15);
    }

    #[test]
    fn unprivileged_skip_passes_and_prints() {
        assert!(!decide_privileged(false, false));
        assert!(decide_privileged(true, false));
        assert!(decide_privileged(true, true));
    }

    #[test]
    #[should_panic(expected = "skipped: needs root")]
    fn unprivileged_run_fails_when_privilege_is_mandatory() {
        decide_privileged(false, true);
    }
}
