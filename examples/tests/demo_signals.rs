//! `overlay-demo` cleans up when it is interrupted, and says that it needs
//! root when it is not run as root.
//!
//! Each interrupt test starts the demo binary, waits until it is mid-run
//! (it announced the ping matrix, `overlayd` runs in every node namespace,
//! `ping` in a pod namespace and `tcpdump` in the underlay switch's), sends
//! the signal, and then checks that nothing is left: no `ovd-<pid>-*`
//! namespace, no process that ran in one, and no reference to its
//! namespaces (no process in one, no mount of one), so the kernel has
//! destroyed them together with every link inside.
//!
//! The demo runs in the root namespace and creates `ovd-` namespaces of its
//! own (it is the program under test); a guard kills it and deletes its
//! namespaces if a test fails half-way. Waits poll for a condition with a
//! deadline and fail with the demo's output on timeout.

// Test code: a failed unwrap is a failing test, with the panic message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use overlay_testsupport::{SKIP_MESSAGE, has_net_admin, privileged_required, privileged_test};

const DEMO: &str = env!("CARGO_BIN_EXE_overlay-demo");

/// The node namespaces of a default run (three nodes), as `ovd-<pid>-<role>`;
/// the underlay switch is `sw`, pods are `n<k>p<j>`.
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const SWITCH: &str = "sw";

/// What the demo prints right before the pods start pinging.
const PING_LINE: &str = "ping matrix:";
/// The demo's `--pings` in the interrupt tests: 25 echoes 0.2 s apart keep
/// each pair's ping running for about five seconds.
const MID_RUN_PINGS: &str = "25";

/// Link names the demo gives inside its namespaces (the pods' bridge, the
/// VXLAN device, the underlay switch); none may show up in the root
/// namespace, nor may the underlay veths (`ovtu<i>`, `ovtd<i>`).
const DEMO_LINKS: [&str; 3] = ["ovdbr0", "ovdvx0", "ovtsw0"];

fn is_demo_link(name: &str) -> bool {
    DEMO_LINKS.contains(&name)
        || ["ovtu", "ovtd"].iter().any(|p| {
            name.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// How long the demo may take to reach a step (a debug build on a busy machine).
const STEP_DEADLINE: Duration = Duration::from_secs(90);

/// How long the demo may take to exit and clean up after a signal.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(20);

/// Poll `check` until it returns `Some`, or panic with `what` and `context()`
/// once `limit` has passed.
fn poll<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Process ids in the named namespace (`ip netns pids`); empty if it is gone.
fn netns_pids(name: &str) -> Vec<u32> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The command name of a process, `None` once it is gone.
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// Network namespaces (by inode) that a process is in or that are mounted
/// in this mount namespace. A namespace in neither is destroyed by the kernel
/// with every link in it.
fn held_net_namespaces() -> BTreeSet<u64> {
    let mut held = BTreeSet::new();
    let parse =
        |s: &str| -> Option<u64> { s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok() };
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Ok(link) = std::fs::read_link(entry.path().join("ns/net"))
                && let Some(ino) = link.to_str().and_then(parse)
            {
                held.insert(ino);
            }
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        // Field 4 is the root of the mount; for a namespace bind mount it
        // reads `net:[INODE]`.
        held.extend(
            mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .filter_map(parse),
        );
    }
    held
}

/// Who holds the network namespace with inode `ino`: processes in it
/// (pid, command line) and this mount namespace's mounts of it.
fn holders(ino: u64) -> Vec<String> {
    let want = format!("net:[{ino}]");
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if std::fs::read_link(entry.path().join("ns/net"))
                .is_ok_and(|l| l.to_str() == Some(want.as_str()))
            {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                out.push(format!(
                    "process {}: {}",
                    entry.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        out.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&want))
                .map(|l| format!("mount: {l}")),
        );
    }
    out
}

/// Names of the links in the root network namespace.
fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .collect()
}

/// A running demo: its output collected by reader threads, killed and its
/// namespaces deleted on drop if a test gives up on it.
struct DemoRun {
    child: Child,
    pid: u32,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl DemoRun {
    /// Start the demo; in a process group of its own when `own_group`, as a
    /// shell starts a foreground job (Ctrl-C signals that whole group).
    fn start(args: &[&str], own_group: bool) -> DemoRun {
        let mut cmd = Command::new(DEMO);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if own_group {
            cmd.process_group(0);
        }
        // The demo keeps a signal ignored when it starts ignored, as a
        // shell's background job must; a test run as a background job of a
        // non-interactive shell (a CI runner's `cmd &`) inherits SIGINT and
        // SIGQUIT ignored. The demo under test starts as a foreground
        // program does: both at their default action.
        // SAFETY: the closure runs between fork and exec and only calls
        // signal(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [libc::SIGINT, libc::SIGQUIT] {
                    if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        DemoRun {
            child,
            pid,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    fn netns(&self, role: &str) -> String {
        format!("ovd-{}-{role}", self.pid)
    }

    /// The demo's namespaces that exist now.
    fn namespaces(&self) -> Vec<String> {
        let prefix = format!("ovd-{}-", self.pid);
        let mut names: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Wait until the demo printed a line containing `needle`.
    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stdout.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!(
                    "demo never printed {needle:?} ({e}); its output so far:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    /// Wait until the demo exited, and return its status and standard error.
    fn wait_for_exit(&mut self) -> (ExitStatus, String) {
        let status = poll(
            CLEANUP_DEADLINE,
            "the demo to exit after the signal",
            || self.child.try_wait().unwrap(),
            || format!("stdout so far:\n{}", self.stdout.join("\n")),
        );
        self.stdout.extend(self.lines.try_iter());
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        (status, stderr.join().unwrap_or_default())
    }
}

impl Drop for DemoRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for name in self.namespaces() {
            eprintln!("demo_signals: removing leftover namespace {name}");
            for pid in netns_pids(&name) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// How a test delivers the signal.
#[derive(Clone, Copy)]
enum Target {
    /// To the demo's process only (`kill -INT <pid>`): its children do not
    /// get it, so the demo must stop them.
    Process,
    /// To the demo's process group, as Ctrl-C in a terminal does: the demo,
    /// `overlayd`, `ping` and `tcpdump` all get it.
    Group,
}

/// Start the demo, interrupt it with `sig` while `ping` and `tcpdump` run,
/// and check that it exits with 128 + `sig` and leaves nothing behind.
fn interrupt_mid_run_and_check_cleanup(sig: libc::c_int, target: Target, args: &[&str]) {
    // A ping matrix of a few seconds (its default takes well under one when
    // the routes are there at once): the signal must find it running, on a
    // loaded machine too.
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--pings", MID_RUN_PINGS])
        .collect();
    let mut demo = DemoRun::start(&args, matches!(target, Target::Group));
    demo.wait_for_line(PING_LINE);

    // Mid-run: overlayd runs in every node, ping in a pod, tcpdump in the
    // underlay switch.
    let children = poll(
        STEP_DEADLINE,
        "overlayd in every node, ping in a pod and tcpdump in the switch",
        || {
            let running: Vec<(String, Vec<u32>)> = demo
                .namespaces()
                .into_iter()
                .map(|ns| {
                    let pids = netns_pids(&ns);
                    (ns, pids)
                })
                .collect();
            let runs = |ns: &str, name: &str| {
                running.iter().any(|(n, pids)| {
                    n == ns && pids.iter().any(|&p| comm(p).as_deref() == Some(name))
                })
            };
            let ping = running.iter().any(|(n, pids)| {
                n.rsplit('-').next().is_some_and(|role| role.contains('p'))
                    && pids.iter().any(|&p| comm(p).as_deref() == Some("ping"))
            });
            let agents = NODES.iter().all(|n| runs(&demo.netns(n), "overlayd"));
            (agents && ping && runs(&demo.netns(SWITCH), "tcpdump"))
                .then(|| running.into_iter().flat_map(|(_, p)| p).collect::<Vec<_>>())
        },
        || format!("demo output:\n{}", demo.stdout.join("\n")),
    );
    let children: Vec<(u32, String)> = children
        .into_iter()
        .filter_map(|p| Some((p, comm(p)?)))
        .collect();
    let inodes: Vec<(String, u64)> = demo
        .namespaces()
        .into_iter()
        .map(|name| {
            let ino = std::fs::metadata(Path::new("/run/netns").join(&name))
                .unwrap_or_else(|e| panic!("namespace {name} missing mid-run: {e}"))
                .ino();
            (name, ino)
        })
        .collect();
    assert!(
        inodes.len() >= 1 + NODES.len() + 2 * NODES.len(),
        "the switch, three nodes and six pods: {inodes:?}"
    );

    let to = match target {
        Target::Process => demo.pid as libc::pid_t,
        Target::Group => -(demo.pid as libc::pid_t),
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(to, sig) }, 0, "kill({to}, {sig})");

    let (status, stderr) = demo.wait_for_exit();
    let output = format!("stdout:\n{}\nstderr:\n{stderr}", demo.stdout.join("\n"));
    assert_eq!(
        status.code(),
        Some(128 + sig),
        "demo should exit with 128 + signal ({status})\n{output}"
    );
    assert!(!stderr.contains("panicked"), "demo panicked\n{output}");

    poll(
        CLEANUP_DEADLINE,
        "the demo's namespaces, processes and links to be gone",
        || {
            let names_left = inodes
                .iter()
                .any(|(name, _)| Path::new("/run/netns").join(name).exists());
            let children_left = children
                .iter()
                .any(|(pid, name)| comm(*pid).as_ref() == Some(name));
            let held = held_net_namespaces();
            let namespaces_held = inodes.iter().any(|(_, ino)| held.contains(ino));
            let stray_names = !demo.namespaces().is_empty();
            (!names_left && !stray_names && !children_left && !namespaces_held).then_some(())
        },
        || {
            let held = held_net_namespaces();
            format!(
                "namespaces still named: {:?}\nchildren still running: {:?}\nnamespaces still held: {:?}\n{output}",
                inodes
                    .iter()
                    .filter(|(n, _)| Path::new("/run/netns").join(n).exists())
                    .collect::<Vec<_>>(),
                children
                    .iter()
                    .filter(|(p, n)| comm(*p).as_ref() == Some(n))
                    .collect::<Vec<_>>(),
                inodes
                    .iter()
                    .filter(|(_, i)| held.contains(i))
                    .map(|(n, i)| (n, holders(*i)))
                    .collect::<Vec<_>>(),
            )
        },
    );
    let stray: Vec<String> = root_links()
        .into_iter()
        .filter(|l| is_demo_link(l))
        .collect();
    assert!(
        stray.is_empty(),
        "demo links in the root namespace: {stray:?}"
    );
}

#[test]
fn sigint_mid_run_removes_namespaces_links_and_child_processes() {
    privileged_test!();
    interrupt_mid_run_and_check_cleanup(libc::SIGINT, Target::Process, &[]);
}

#[test]
fn sigterm_mid_run_removes_namespaces_links_and_child_processes() {
    privileged_test!();
    interrupt_mid_run_and_check_cleanup(libc::SIGTERM, Target::Process, &[]);
}

#[test]
fn ctrl_c_to_the_process_group_mid_run_removes_everything() {
    privileged_test!();
    interrupt_mid_run_and_check_cleanup(libc::SIGINT, Target::Group, &[]);
}

#[test]
fn sigint_with_keep_still_removes_everything() {
    privileged_test!();
    interrupt_mid_run_and_check_cleanup(libc::SIGINT, Target::Process, &["--keep"]);
}

/// A copy of the demo binary in a world-readable temporary directory, so
/// that an unprivileged user can run it wherever the checkout lives.
struct PublicCopy(PathBuf);

impl PublicCopy {
    fn new() -> PublicCopy {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ovd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("overlay-demo");
        std::fs::copy(DEMO, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        PublicCopy(dir)
    }
}

impl Drop for PublicCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unprivileged_run_says_it_needs_root_and_exits_1_without_panic() {
    let copy;
    let out = if has_net_admin() {
        // Root: run it as nobody. setpriv is in util-linux.
        if Command::new("setpriv").arg("--version").output().is_err() {
            assert!(
                !privileged_required(),
                "setpriv (util-linux) is needed to run the demo as nobody"
            );
            println!("{SKIP_MESSAGE}: setpriv missing");
            return;
        }
        copy = PublicCopy::new();
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(copy.0.join("overlay-demo"))
            .output()
            .unwrap()
    } else {
        Command::new(DEMO).output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{out:?}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        stderr.contains("needs root"),
        "no 'needs root' message: {all}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{all}"
    );
    assert!(out.stdout.is_empty(), "it started the demo: {all}");
}
