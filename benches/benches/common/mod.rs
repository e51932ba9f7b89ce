//! The fair CNI latency harness shared by the `cni_latency` and
//! `cni_overlay_latency` benches: plugin processes timed one command at a
//! time from a worker thread inside a node test namespace, against Debian's
//! reference `bridge` + `host-local` in the same run.
//!
//! Each iteration gets a fresh pod namespace, created outside the timed
//! part (criterion `iter_custom`). The timed part is exactly one plugin
//! process: spawn, CNI command, exit.
//!
//! # Every command starts on a quiet kernel
//!
//! Two kinds of kernel work outlive the command that started them, and
//! would otherwise land in whichever command is timed next:
//!
//! - our plugins' DEL returns once the kernel has unlisted the veth pair
//!   and leaves the device's deferred teardown (an RCU barrier and the
//!   draining of references, 10 to 25 ms) to a detached helper process
//!   (`LinkOps::delete_detached`); the reference plugin's DEL waits for it.
//! - Deleting a namespace queues the kernel's `cleanup_net` (50 to 150 ms
//!   here, mostly RCU grace periods, taking the RTNL lock to unregister the
//!   namespace's devices).
//!
//! Left alone, the next ADD shares the RTNL lock and the RCU machinery with
//! that work; which subject pays depends only on the order of the run (in
//! the criterion groups our ADD follows our own DEL, in the paired run each
//! subject follows the other's). So the harness waits, outside the timed
//! part and for both subjects the same way: the bench process is the child
//! subreaper of everything it spawns ([`become_subreaper`]), and after each
//! DEL it reaps every process left (a detached teardown helper ends when
//! the kernel has finished the device, so the link is gone and its RTNL
//! work done); pod namespaces are deleted only after a batch of iterations
//! (a criterion sample, a few paired iterations), followed by a pause of
//! [`NETNS_SETTLE`] in which the kernel finishes their cleanup.
//!
//! Besides criterion's groups (one subject after the other), a paired run
//! alternates the subjects every iteration and prints the median ratios,
//! which load changes on a shared machine do not skew.
//!
//! Other work on the machine slows the reference (a multi-threaded Go
//! process that also runs `host-local`) more than our plugins, so a loaded
//! machine flatters the ratio. For figures comparable across runs, run the
//! built bench under a real-time policy, which the plugins and everything
//! they spawn inherit: `chrt -f 10 target/release/deps/<bench>-<hash> --bench`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::Criterion;
use overlay_testsupport::TestNetns;

/// Debian's reference plugins.
pub(crate) const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

/// One plugin under test and its network config.
pub(crate) struct Subject {
    /// The name in criterion's groups and the paired line.
    pub(crate) label: &'static str,
    /// The plugin executable.
    pub(crate) program: PathBuf,
    /// The network configuration on its stdin.
    pub(crate) config: String,
}

/// The reference subject: Debian's `bridge` with `host-local` IPAM, in the
/// shape of [`bridge_config`], on a bridge and subnet of its own.
pub(crate) fn reference(bridge: &str, data_dir: &Path) -> Subject {
    Subject {
        label: "reference bridge+host-local",
        program: Path::new(DEBIAN_PLUGINS).join("bridge"),
        config: bridge_config("bridge", bridge, "198.18.80.0/20", data_dir),
    }
}

/// A config in the reference `bridge` plugin's shape (bridge with gateway
/// address, default route, hairpin, MTU, host-local IPAM).
pub(crate) fn bridge_config(plugin: &str, bridge: &str, subnet: &str, data_dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"bench-{plugin}","type":"{plugin}","bridge":"{bridge}",
"isGateway":true,"isDefaultGateway":true,"hairpinMode":true,"mtu":1400,
"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]]}}}}"#,
        data_dir.display()
    )
}

/// The target directory this bench runs from (`<target>/release/deps/`).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("bench binary lives in <target>/release/deps")
        .to_path_buf()
}

/// Build example plugins as they ship (`scripts/build-plugin.sh`: the
/// `dist` profile, statically linked) into this bench's target directory
/// and return their paths, in the order of `bins`.
pub(crate) fn build_plugins(bins: &[&str]) -> Vec<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-plugin.sh");
    let out = Command::new(&script)
        .args(bins)
        .env("CARGO_TARGET_DIR", target_dir())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "building {bins:?} failed");
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(paths.len(), bins.len(), "one path per plugin");
    for bin in &paths {
        assert!(bin.exists(), "{} missing after build", bin.display());
    }
    paths
}

/// The binary named by the environment variable `var` (canonicalised), or
/// `default()` when it is unset.
pub(crate) fn binary_from_env(var: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    match std::env::var_os(var) {
        Some(bin) => std::fs::canonicalize(&bin)
            .unwrap_or_else(|e| panic!("{var}={}: {e}", Path::new(&bin).display())),
        None => default(),
    }
}

/// Whether criterion runs in test mode (`cargo bench -- --test`): every
/// benchmark once, and the paired run cut to a smoke size.
pub(crate) fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// Iterations of the paired (alternating) measurement.
const PAIRED_ITERATIONS: usize = 60;

/// Paired iterations whose pod namespaces are deleted together.
const PAIRED_BATCH: usize = 10;

/// The pause after deleting a batch of pod namespaces, in which the
/// kernel's `cleanup_net` finishes (it took 50 to 150 ms for one to sixty
/// namespaces here, traced with `workqueue:workqueue_execute_start/end`).
pub(crate) const NETNS_SETTLE: Duration = Duration::from_millis(250);

/// Make this process the child subreaper of everything it spawns, so that
/// a plugin's detached helper processes become its children when their
/// parent exits, and [`reap_children`] can wait for them.
pub(crate) fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        std::io::Error::last_os_error()
    );
}

/// Wait for every child process still running but those in `keep` (a
/// node agent the bench started): the helpers a plugin left behind (our
/// DEL leaves one that carries the kernel's teardown of the veth pair).
/// Called only while no plugin runs.
fn reap_children(keep: &[u32]) {
    if keep.is_empty() {
        while let Some(()) = wait_child(-1) {}
        return;
    }
    loop {
        let left: Vec<u32> = children()
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect();
        if left.is_empty() {
            return;
        }
        for pid in left {
            let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
            wait_child(pid);
        }
    }
}

/// Wait for the child `pid` (any child for -1) to end; `None` when there
/// is no such child.
fn wait_child(pid: libc::pid_t) -> Option<()> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } >= 0 {
            return Some(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ECHILD) => return None,
            Some(libc::EINTR) => continue,
            _ => panic!("waitpid: {err}"),
        }
    }
}

/// The pids of this process's children, from every thread's
/// `/proc/self/task/<tid>/children` (orphans adopted by this subreaper
/// included).
fn children() -> Vec<u32> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children"))
            .expect("/proc/self/task/<tid>/children (CONFIG_PROC_CHILDREN)");
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

/// Delete the pod namespaces of a finished batch and give the kernel
/// [`NETNS_SETTLE`] to clean them up before anything is timed again.
fn retire(pods: &mut Vec<TestNetns>) {
    if pods.is_empty() {
        return;
    }
    pods.clear();
    std::thread::sleep(NETNS_SETTLE);
}

/// The median of some durations.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// One plugin run requested from the worker thread.
struct Job {
    subject: usize,
    command: &'static str,
    netns: PathBuf,
    cid: String,
}

/// Run one CNI command; return how long the plugin process took.
fn invoke(subject: &Subject, command: &str, cni_path: &str, netns: &Path, cid: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(&subject.program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(subject.config.as_bytes())
            .expect("write plugin stdin");
    }
    let out = child.wait_with_output().expect("wait for plugin");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{} {command} failed: {}{}",
        subject.label,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// The subjects under test (ours first, the reference second) and the
/// worker thread, inside the node namespace, that runs their processes.
pub(crate) struct Harness {
    labels: Vec<&'static str>,
    /// Children that outlive the commands (a node agent), never reaped.
    keep: Vec<u32>,
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Duration>,
    worker: JoinHandle<()>,
}

impl Harness {
    /// Start the worker thread in `host` (the node namespace). `cni_path`
    /// is the plugins' `CNI_PATH`; `keep` lists child processes the bench
    /// started that outlive every command (a node agent), which reaping
    /// after each DEL must not wait for.
    ///
    /// Plugin processes are spawned by a worker thread inside `host`, so
    /// that they (and the iptables, sysctl and netlink calls they make)
    /// never touch the root namespace; the timing is taken around the
    /// process on that thread.
    pub(crate) fn start(
        host: &TestNetns,
        subjects: Vec<Subject>,
        cni_path: String,
        keep: Vec<u32>,
    ) -> Harness {
        let labels = subjects.iter().map(|s| s.label).collect();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Duration>();
        let host_path = host.path().to_path_buf();
        let worker = std::thread::spawn(move || {
            overlay_testsupport::run_in_netns_path(&host_path, move || {
                for job in job_rx {
                    let subject = &subjects[job.subject];
                    let took = invoke(subject, job.command, &cni_path, &job.netns, &job.cid);
                    if done_tx.send(took).is_err() {
                        break;
                    }
                }
            })
            .expect("enter host netns");
        });
        Harness {
            labels,
            keep,
            jobs,
            done,
            worker,
        }
    }

    fn run(&self, subject: usize, command: &'static str, pod: &TestNetns, cid: &str) -> Duration {
        self.jobs
            .send(Job {
                subject,
                command,
                netns: pod.path().to_path_buf(),
                cid: cid.to_string(),
            })
            .expect("worker alive");
        self.done.recv().expect("worker alive")
    }

    /// One ADD and DEL of a subject on a fresh pod (kept in `pods` until
    /// retired), then whatever the DEL left running reaped: (ADD, DEL).
    fn attach_detach(
        &self,
        subject: usize,
        cid: &str,
        pods: &mut Vec<TestNetns>,
    ) -> (Duration, Duration) {
        let pod = TestNetns::with_kind("pod").expect("pod netns");
        let add = self.run(subject, "ADD", &pod, cid);
        let del = self.run(subject, "DEL", &pod, cid);
        reap_children(&self.keep);
        pods.push(pod);
        (add, del)
    }

    /// Criterion groups `<prefix>_add` and `<prefix>_del`, one benchmark
    /// per subject, then the paired run, whose lines start with `name`.
    pub(crate) fn bench(&self, c: &mut Criterion, prefix: &str, name: &str) {
        let mut pods = Vec::new();
        for timed in ["ADD", "DEL"] {
            let group_name = format!("{prefix}_{}", timed.to_lowercase());
            let mut group = c.benchmark_group(&group_name);
            group
                .sample_size(30)
                .measurement_time(Duration::from_secs(8));
            for (index, label) in self.labels.iter().enumerate() {
                group.bench_function(*label, |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            let cid = format!("{group_name}-{i}");
                            let (add, del) = self.attach_detach(index, &cid, &mut pods);
                            total += if timed == "ADD" { add } else { del };
                        }
                        retire(&mut pods);
                        total
                    });
                });
            }
            group.finish();
        }
        self.paired(name, &mut pods);
    }

    /// Criterion measures one subject after the other, so load that changes
    /// between them (this machine is shared) skews their ratio. The paired
    /// run alternates the subjects every iteration and reports median ratios.
    fn paired(&self, name: &str, pods: &mut Vec<TestNetns>) {
        let iterations = if test_mode() { 2 } else { PAIRED_ITERATIONS };
        let mut samples: [[Vec<Duration>; 2]; 2] = Default::default();
        for i in 0..iterations {
            for (index, per_subject) in samples.iter_mut().enumerate() {
                let (add, del) = self.attach_detach(index, &format!("paired-{i}"), pods);
                per_subject[0].push(add);
                per_subject[1].push(del);
            }
            if (i + 1) % PAIRED_BATCH == 0 {
                retire(pods);
            }
        }
        retire(pods);
        for (command, column) in [("ADD", 0), ("DEL", 1)] {
            let ours = median(&mut samples[0][column]);
            let theirs = median(&mut samples[1][column]);
            println!(
                "{name} paired ({iterations} alternating iterations): {command} median \
                 {} {ours:.2?}, {} {theirs:.2?}, ratio {:.2}",
                self.labels[0],
                self.labels[1],
                ours.as_secs_f64() / theirs.as_secs_f64()
            );
        }
    }

    /// Stop the worker thread.
    pub(crate) fn finish(self) {
        drop(self.jobs);
        self.worker.join().expect("worker thread");
    }
}
