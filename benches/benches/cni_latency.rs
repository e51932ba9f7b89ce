//! ADD and DEL latency of the `overlay-bridge` example plugin against
//! Debian's reference `bridge` + `host-local` plugins with the same config
//! shape (bridge with gateway address, default route, hairpin, MTU, host-local
//! IPAM), measured in the same run.
//!
//! Both plugins run as processes spawned from a thread inside a test
//! namespace acting as the node; each iteration gets a fresh pod namespace,
//! created outside the timed part (criterion `iter_custom`). The timed part
//! is exactly one plugin process: spawn, CNI command, exit.
//!
//! # Every command starts on a quiet kernel
//!
//! Two kinds of kernel work outlive the command that started them, and
//! would otherwise land in whichever command is timed next:
//!
//! - `overlay-bridge`'s DEL returns once the kernel has unlisted the veth
//!   pair and leaves the device's deferred teardown (an RCU barrier and the
//!   draining of references, 10 to 25 ms) to a detached helper process
//!   (`LinkOps::delete_detached`); the reference plugin's DEL waits for it.
//! - Deleting a namespace queues the kernel's `cleanup_net` (50 to 150 ms
//!   here, mostly RCU grace periods, taking the RTNL lock to unregister the
//!   namespace's devices).
//!
//! Left alone, the next ADD shares the RTNL lock and the RCU machinery with
//! that work; which subject pays depends only on the order of the run (in
//! the criterion groups our ADD follows our own DEL, in the paired run each
//! subject follows the other's). So the bench waits, outside the timed
//! part and for both subjects the same way: this process is the child
//! subreaper of everything it spawns, and after each DEL it reaps every
//! process left (a detached teardown helper ends when the kernel has
//! finished the device, so the link is gone and its RTNL work done); pod
//! namespaces are deleted only after a batch of iterations (a criterion
//! sample, a few paired iterations), followed by a pause of
//! [`NETNS_SETTLE`] in which the kernel finishes their cleanup.
//!
//! Targets: our ADD median at most 0.2x of the reference's, our DEL median
//! at most 0.7x. Besides criterion's groups (one subject after the other),
//! a paired run alternates the subjects every iteration and prints the
//! median ratios, which load changes on a shared machine do not skew. Needs
//! root; without `CAP_NET_ADMIN` it prints why and exits.
//!
//! Other work on the machine slows the reference (a multi-threaded Go
//! process that also runs `host-local`) more than `overlay-bridge`, so a
//! loaded machine flatters the ratio. For figures comparable across runs,
//! run the built bench under a real-time policy, which both plugins and
//! everything they spawn inherit:
//! `chrt -f 10 target/release/deps/cni_latency-<hash> --bench`.
//!
//! The example plugin is built as it ships, by `scripts/build-plugin.sh`
//! (the `dist` profile, statically linked like the reference plugins), into
//! the same target directory; `OVERLAY_BRIDGE_BIN=<path>` measures that
//! binary instead (to compare builds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use overlay_testsupport::{TestNetns, has_net_admin, unique_name};

/// Debian's reference plugins.
const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

/// One plugin under test and its network config.
struct Subject {
    label: &'static str,
    program: PathBuf,
    config: String,
}

/// Build the example plugin as it ships (`scripts/build-plugin.sh`: the
/// `dist` profile, statically linked) into this bench's target directory and
/// return its path.
fn build_overlay_bridge() -> PathBuf {
    // This bench runs from <target>/release/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    let target_dir = exe
        .ancestors()
        .nth(3)
        .expect("bench binary lives in <target>/release/deps");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-plugin.sh");
    let out = Command::new(&script)
        .env("CARGO_TARGET_DIR", target_dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "building overlay-bridge failed");
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

/// A config in the reference `bridge` plugin's shape.
fn config(plugin: &str, bridge: &str, subnet: &str, data_dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"bench-{plugin}","type":"{plugin}","bridge":"{bridge}",
"isGateway":true,"isDefaultGateway":true,"hairpinMode":true,"mtu":1400,
"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]]}}}}"#,
        data_dir.display()
    )
}

/// Iterations of the paired (alternating) measurement.
const PAIRED_ITERATIONS: usize = 60;

/// Paired iterations whose pod namespaces are deleted together.
const PAIRED_BATCH: usize = 10;

/// The pause after deleting a batch of pod namespaces, in which the
/// kernel's `cleanup_net` finishes (it took 50 to 150 ms for one to sixty
/// namespaces here, traced with `workqueue:workqueue_execute_start/end`).
const NETNS_SETTLE: Duration = Duration::from_millis(250);

/// Make this process the child subreaper of everything it spawns, so that
/// a plugin's detached helper processes become its children when their
/// parent exits, and [`reap_children`] can wait for them.
fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        std::io::Error::last_os_error()
    );
}

/// Wait for every child process still running: the helpers a plugin left
/// behind (`overlay-bridge`'s DEL leaves one that carries the kernel's
/// teardown of the veth pair). Called only while no plugin runs.
fn reap_children() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ECHILD) => return,
                Some(libc::EINTR) => continue,
                _ => panic!("waitpid: {err}"),
            }
        }
    }
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
fn invoke(
    label: &str,
    program: &Path,
    config: &str,
    command: &str,
    cni_path: &str,
    netns: &Path,
    cid: &str,
) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(program)
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
            .write_all(config.as_bytes())
            .expect("write plugin stdin");
    }
    let out = child.wait_with_output().expect("wait for plugin");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{label} {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn bench_cni(c: &mut Criterion) {
    if !has_net_admin() {
        eprintln!("cni_latency: skipped, needs root (CAP_NET_ADMIN)");
        return;
    }
    let ours = match std::env::var_os("OVERLAY_BRIDGE_BIN") {
        Some(bin) => std::fs::canonicalize(&bin)
            .unwrap_or_else(|e| panic!("OVERLAY_BRIDGE_BIN={}: {e}", Path::new(&bin).display())),
        None => build_overlay_bridge(),
    };
    become_subreaper();
    let host = TestNetns::with_kind("hst").expect("host netns");
    let dir = std::env::temp_dir().join(unique_name("cnib"));
    std::fs::create_dir_all(dir.join("bin")).expect("bench dir");
    std::os::unix::fs::symlink(&ours, dir.join("bin/overlay-bridge")).expect("symlink");
    let cni_path = format!("{}:{DEBIAN_PLUGINS}", dir.join("bin").display());
    let subjects = [
        Subject {
            label: "overlay-bridge",
            program: ours,
            config: config(
                "overlay-bridge",
                &unique_name("bo"),
                "198.18.64.0/20",
                &dir.join("ipam"),
            ),
        },
        Subject {
            label: "reference bridge+host-local",
            program: Path::new(DEBIAN_PLUGINS).join("bridge"),
            config: config(
                "bridge",
                &unique_name("br"),
                "198.18.80.0/20",
                &dir.join("ipam"),
            ),
        },
    ];

    // Plugin processes are spawned by a worker thread inside `host`, so that
    // they (and the iptables, sysctl and netlink calls they make) never touch
    // the root namespace; the timing is taken around the process on that thread.
    let (jobs, job_rx) = mpsc::channel::<Job>();
    let (done_tx, done) = mpsc::channel::<Duration>();
    let worker = {
        let subjects: Vec<(String, PathBuf, String)> = subjects
            .iter()
            .map(|s| (s.label.to_string(), s.program.clone(), s.config.clone()))
            .collect();
        let cni_path = cni_path.clone();
        let host_path = host.path().to_path_buf();
        std::thread::spawn(move || {
            overlay_testsupport::run_in_netns_path(&host_path, move || {
                for job in job_rx {
                    let (label, program, config) = &subjects[job.subject];
                    let took = invoke(
                        label,
                        program,
                        config,
                        job.command,
                        &cni_path,
                        &job.netns,
                        &job.cid,
                    );
                    if done_tx.send(took).is_err() {
                        break;
                    }
                }
            })
            .expect("enter host netns");
        })
    };
    let run = |subject: usize, command: &'static str, pod: &TestNetns, cid: &str| -> Duration {
        jobs.send(Job {
            subject,
            command,
            netns: pod.path().to_path_buf(),
            cid: cid.to_string(),
        })
        .expect("worker alive");
        done.recv().expect("worker alive")
    };

    // One ADD and DEL of a subject on a fresh pod (kept until `retire`),
    // then whatever the DEL left running reaped: (ADD, DEL) durations.
    let attach_detach = |subject: usize, cid: &str, pods: &mut Vec<TestNetns>| {
        let pod = TestNetns::with_kind("pod").expect("pod netns");
        let add = run(subject, "ADD", &pod, cid);
        let del = run(subject, "DEL", &pod, cid);
        reap_children();
        pods.push(pod);
        (add, del)
    };

    let mut pods = Vec::new();
    for (name, timed) in [("cni_add", "ADD"), ("cni_del", "DEL")] {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(8));
        for (index, subject) in subjects.iter().enumerate() {
            group.bench_function(subject.label, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let (add, del) = attach_detach(index, &format!("{name}-{i}"), &mut pods);
                        total += if timed == "ADD" { add } else { del };
                    }
                    retire(&mut pods);
                    total
                });
            });
        }
        group.finish();
    }

    // Criterion measures one subject after the other, so load that changes
    // between them (this machine is shared) skews their ratio. The paired
    // run alternates the subjects every iteration and reports median ratios.
    let mut samples: [[Vec<Duration>; 2]; 2] = Default::default();
    for i in 0..PAIRED_ITERATIONS {
        for (index, per_subject) in samples.iter_mut().enumerate() {
            let (add, del) = attach_detach(index, &format!("paired-{i}"), &mut pods);
            per_subject[0].push(add);
            per_subject[1].push(del);
        }
        if (i + 1) % PAIRED_BATCH == 0 {
            retire(&mut pods);
        }
    }
    retire(&mut pods);
    for (command, column) in [("ADD", 0), ("DEL", 1)] {
        let ours = median(&mut samples[0][column]);
        let theirs = median(&mut samples[1][column]);
        println!(
            "cni_latency paired ({PAIRED_ITERATIONS} alternating iterations): {command} median \
             {} {ours:.2?}, {} {theirs:.2?}, ratio {:.2}",
            subjects[0].label,
            subjects[1].label,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
    drop(jobs);
    worker.join().expect("worker thread");
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_cni);
criterion_main!(benches);
