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
//! Every command starts on a quiet kernel, and a paired run alternates
//! the subjects: see the shared harness (`common`).
//!
//! Targets: our ADD median at most 0.2x of the reference's, our DEL median
//! at most 0.7x. Besides criterion's groups (one subject after the other),
//! a paired run alternates the subjects every iteration and prints the
//! median ratios, which load changes on a shared machine do not skew. Needs
//! root; without `CAP_NET_ADMIN` it prints why and exits.
//!
//! For figures comparable across runs, run the built bench under a
//! real-time policy, which both plugins and everything they spawn inherit:
//! `chrt -f 10 target/release/deps/cni_latency-<hash> --bench`.
//!
//! The example plugin is built as it ships, by `scripts/build-plugin.sh`
//! (the `dist` profile, statically linked like the reference plugins), into
//! the same target directory; `OVERLAY_BRIDGE_BIN=<path>` measures that
//! binary instead (to compare builds).

mod common;

use common::{Harness, Subject};
use criterion::{Criterion, criterion_group, criterion_main};
use overlay_testsupport::{TestNetns, has_net_admin, unique_name};

fn bench_cni(c: &mut Criterion) {
    if !has_net_admin() {
        eprintln!("cni_latency: skipped, needs root (CAP_NET_ADMIN)");
        return;
    }
    let ours = common::binary_from_env("OVERLAY_BRIDGE_BIN", || {
        common::build_plugins(&["overlay-bridge"]).remove(0)
    });
    common::become_subreaper();
    let host = TestNetns::with_kind("hst").expect("host netns");
    let dir = std::env::temp_dir().join(unique_name("cnib"));
    std::fs::create_dir_all(dir.join("bin")).expect("bench dir");
    std::os::unix::fs::symlink(&ours, dir.join("bin/overlay-bridge")).expect("symlink");
    let cni_path = format!("{}:{}", dir.join("bin").display(), common::DEBIAN_PLUGINS);
    let subjects = vec![
        Subject {
            label: "overlay-bridge",
            program: ours,
            config: common::bridge_config(
                "overlay-bridge",
                &unique_name("bo"),
                "198.18.64.0/20",
                &dir.join("ipam"),
            ),
        },
        common::reference(&unique_name("br"), &dir.join("ipam")),
    ];
    let harness = Harness::start(&host, subjects, cni_path, Vec::new());
    harness.bench(c, "cni", "cni_latency");
    harness.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_cni);
criterion_main!(benches);
