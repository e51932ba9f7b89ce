//! The runtime side and IPAM delegation against small recording plugins
//! (shell scripts in a temporary directory): what each plugin receives on
//! stdin and in its environment, in which order plugins run, the cache, GC
//! and STATUS at 1.1.0, and failure reporting. No network state is touched.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use overlay_cni::cache::CacheEntry;
use overlay_cni::config::GcAttachment;
use overlay_cni::delegate::{
    del_after_failed_add, delegate_add, delegate_add_guarded, delegate_check, delegate_del,
    delegate_gc, delegate_status,
};
use overlay_cni::error::{CniError, ErrorCode};
use overlay_cni::exec::ExecError;
use overlay_cni::plugin::CniEnv;
use overlay_cni::runtime::{
    ConfList, LoadError, Runtime, RuntimeConf, RuntimeError, conf_files, load_all, load_conf_list,
};
use overlay_cni::version::Version;
use serde_json::{Value, json};

/// A plugin that, with `REC_DIR` defaulting to `../rec` next to it, appends "<COMMAND> <name>" to `$REC_DIR/log`, saves its
/// stdin and `CNI_*` environment per command, fails ADD when the config has
/// `"fail"`, prints garbage when it has `"garbage"`, fails with its message
/// on stderr only when it has `"stderrOnly"` (and with an error object on
/// stdout plus text on stderr when it has `"stderrToo"`), hangs when it has
/// `"hang"` or when `$REC_DIR/hang-<COMMAND>` exists, fails STATUS with code
/// 50 when `$REC_DIR/down` exists, and answers ADD with a 0.4.0 result.
const RECORDER: &str = r#"#!/bin/sh
name=$(basename "$0")
REC_DIR=${REC_DIR:-$(dirname "$0")/../rec}
stdin=$(cat)
echo "$CNI_COMMAND $name" >> "$REC_DIR/log"
printf '%s' "$stdin" > "$REC_DIR/$CNI_COMMAND-$name.json"
env | grep '^CNI_' | sort > "$REC_DIR/$CNI_COMMAND-$name.env"
case "$stdin" in *'"fail"'*) echo '{"code":117,"msg":"told to fail","details":"by config"}'; exit 1;; esac
case "$stdin" in *'"hang"'*) exec sleep 30;; esac
if [ -e "$REC_DIR/hang-$CNI_COMMAND" ]; then exec sleep 30; fi
case "$stdin" in *'"stderrOnly"'*) echo "bridge br0 is missing" >&2; exit 1;; esac
case "$stdin" in *'"stderrToo"'*) echo '{"code":117,"msg":"told to fail"}'; echo "noise on stderr" >&2; exit 1;; esac
case "$stdin" in *'"garbage"'*) echo 'this is not json'; exit 0;; esac
case "$CNI_COMMAND" in
  ADD) printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%s"}],"ips":[{"version":"4","address":"198.51.100.%s/24","interface":0}]}' "$name" "${#name}";;
  VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}';;
  STATUS) if [ -e "$REC_DIR/down" ]; then echo '{"code":50,"msg":"daemon down"}'; exit 1; fi;;
esac
exit 0
"#;

struct Fixture {
    tmp: tempfile::TempDir,
    runtime: Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["bin", "rec", "cache", "net.d"] {
            std::fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        for name in ["reca", "recbb"] {
            let path = tmp.path().join("bin").join(name);
            std::fs::write(&path, RECORDER).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let runtime = Runtime::new(vec![tmp.path().join("missing-dir"), tmp.path().join("bin")])
            .with_cache_dir(tmp.path().join("cache"))
            .with_env("REC_DIR", tmp.path().join("rec").to_str().unwrap());
        Fixture { tmp, runtime }
    }

    fn rec(&self) -> PathBuf {
        self.tmp.path().join("rec")
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.rec().join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.rec().join("log"));
    }

    fn stdin_of(&self, command: &str, plugin: &str) -> Value {
        let bytes = std::fs::read(self.rec().join(format!("{command}-{plugin}.json"))).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn env_of(&self, command: &str, plugin: &str) -> Vec<String> {
        std::fs::read_to_string(self.rec().join(format!("{command}-{plugin}.env")))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The process IDs of plugins of this fixture that are still running
    /// (every plugin gets this fixture's `REC_DIR` in its environment, and
    /// keeps it across `exec sleep`).
    fn live_plugins(&self) -> Vec<u32> {
        let marker = format!("REC_DIR={}", self.rec().display());
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                    environ
                        .split(|b| *b == 0)
                        .any(|var| var == marker.as_bytes())
                })
            })
            .collect()
    }

    fn list(&self, version: &str) -> ConfList {
        ConfList::from_bytes(
            serde_json::to_vec(&json!({
                "cniVersion": version,
                "name": "fake",
                "plugins": [
                    {"type": "reca", "capabilities": {"portMappings": true, "bandwidth": false},
                     "vendorSetting": {"keep": [1, 2]}},
                    {"type": "recbb", "runtimeConfig": {"preset": true}}
                ]
            }))
            .unwrap(),
        )
        .unwrap()
    }
}

fn rt(container_id: &str) -> RuntimeConf {
    RuntimeConf::new(container_id, "eth0")
        .with_netns("/run/netns/fake")
        .with_arg("A", "1")
        .with_arg("B", "2")
        .with_capability(
            "portMappings",
            json!([{"hostPort": 8080, "containerPort": 80}]),
        )
        .with_capability("bandwidth", json!({"ingressRate": 1}))
        .with_capability("mac", json!("02:00:00:00:00:01"))
}

#[test]
fn add_injects_name_version_prev_result_and_only_declared_capabilities() {
    let fx = Fixture::new();
    let list = fx.list("1.1.0");
    let result = fx.runtime.add_network_list(&list, &rt("c1")).unwrap();

    assert_eq!(fx.log(), ["ADD reca", "ADD recbb"]);
    let a = fx.stdin_of("ADD", "reca");
    assert_eq!(a["name"], "fake");
    assert_eq!(a["cniVersion"], "1.1.0");
    assert_eq!(
        a["vendorSetting"],
        json!({"keep": [1, 2]}),
        "unknown keys pass through"
    );
    assert_eq!(
        a["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    );
    assert!(a.get("prevResult").is_none());

    let b = fx.stdin_of("ADD", "recbb");
    // reca's 0.4.0 result, converted to the list's 1.1.0: no ips[].version.
    assert_eq!(
        b["prevResult"],
        json!({"cniVersion": "1.1.0", "interfaces": [{"name": "reca"}],
               "ips": [{"address": "198.51.100.4/24", "interface": 0}]})
    );
    assert_eq!(
        b["runtimeConfig"],
        json!({"preset": true}),
        "no capability: left as written"
    );

    let env = fx.env_of("ADD", "reca");
    let bin = fx.tmp.path().join("bin");
    for expected in [
        "CNI_ARGS=A=1;B=2".to_owned(),
        "CNI_COMMAND=ADD".to_owned(),
        "CNI_CONTAINERID=c1".to_owned(),
        "CNI_IFNAME=eth0".to_owned(),
        "CNI_NETNS=/run/netns/fake".to_owned(),
        format!(
            "CNI_PATH={}:{}",
            fx.tmp.path().join("missing-dir").display(),
            bin.display()
        ),
    ] {
        assert!(env.contains(&expected), "{expected} not in {env:?}");
    }

    assert_eq!(result.cni_version, Version::V1_1_0);
    assert_eq!(result.interfaces[0].name, "recbb");
    let cached = CacheEntry::read(fx.runtime.cache_dir(), "fake", "c1", "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(cached.config, list.bytes);
    assert_eq!(cached.result, Some(result.to_value()));
    assert_eq!(
        cached.cni_args,
        vec![["A".to_owned(), "1".to_owned()], ["B".into(), "2".into()]]
    );
    assert_eq!(cached.capability_args.len(), 3);
}

#[test]
fn del_runs_in_reverse_with_the_cached_prev_result_and_removes_the_cache() {
    let fx = Fixture::new();
    let list = fx.list("1.0.0");
    let result = fx.runtime.add_network_list(&list, &rt("c1")).unwrap();
    fx.clear_log();
    fx.runtime.del_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(fx.log(), ["DEL recbb", "DEL reca"]);
    assert_eq!(fx.stdin_of("DEL", "reca")["prevResult"], result.to_value());
    assert!(
        fx.runtime
            .cached_result(&list, &rt("c1"))
            .unwrap()
            .is_none()
    );
    // Again, without a cache: no prevResult, still runs every plugin.
    fx.clear_log();
    fx.runtime.del_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(fx.log(), ["DEL recbb", "DEL reca"]);
    assert!(fx.stdin_of("DEL", "reca").get("prevResult").is_none());
}

#[test]
fn cached_config_returns_the_list_and_arguments_of_the_attachment() {
    let fx = Fixture::new();
    let list = fx.list("1.0.0");
    fx.runtime.add_network_list(&list, &rt("c1")).unwrap();
    let bare = RuntimeConf::new("c1", "eth0");
    let (cached_list, cached_rt) = fx.runtime.cached_config("fake", &bare).unwrap().unwrap();
    assert_eq!(cached_list.bytes, list.bytes);
    assert_eq!(cached_list.config, list.config);
    assert_eq!(cached_rt, rt("c1"));
    // The attachment can be deleted from the cache alone.
    fx.runtime
        .del_network_list(&cached_list, &cached_rt)
        .unwrap();
    assert!(fx.runtime.cached_config("fake", &bare).unwrap().is_none());
}

#[test]
fn del_runs_without_prev_result_when_the_cache_entry_is_corrupt() {
    let fx = Fixture::new();
    let list = fx.list("1.0.0");
    fx.runtime.add_network_list(&list, &rt("c1")).unwrap();
    let path = fx.runtime.cache_dir().join("results/fake-c1-eth0");
    std::fs::write(
        &path,
        br#"{"kind":"cniCacheV1","containerId":"c1","config":"","ifName":"eth0",
             "networkName":"fake","result":{"cniVersion":"7.7.7"}}"#,
    )
    .unwrap();
    assert!(fx.runtime.cached_result(&list, &rt("c1")).is_err());
    fx.clear_log();
    fx.runtime.del_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(fx.log(), ["DEL recbb", "DEL reca"]);
    assert!(fx.stdin_of("DEL", "reca").get("prevResult").is_none());
    assert!(!path.exists());
}

#[test]
fn del_below_0_4_0_sends_no_prev_result() {
    let fx = Fixture::new();
    let list = fx.list("0.3.1");
    let result = fx.runtime.add_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(result.to_value()["ips"][0]["version"], "4");
    fx.runtime.del_network_list(&list, &rt("c1")).unwrap();
    assert!(fx.stdin_of("DEL", "reca").get("prevResult").is_none());
}

#[test]
fn legacy_0_2_0_list_gets_ip4_results() {
    let fx = Fixture::new();
    let list = fx.list("0.2.0");
    let result = fx.runtime.add_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(
        result.to_value(),
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "198.51.100.5/24"}})
    );
    assert_eq!(
        fx.stdin_of("ADD", "recbb")["prevResult"],
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "198.51.100.4/24"}})
    );
}

#[test]
fn check_passes_the_cached_result_and_disable_check_skips_plugins() {
    let fx = Fixture::new();
    let list = fx.list("0.4.0");
    let result = fx.runtime.add_network_list(&list, &rt("c1")).unwrap();
    fx.clear_log();
    fx.runtime.check_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(fx.log(), ["CHECK reca", "CHECK recbb"]);
    assert_eq!(
        fx.stdin_of("CHECK", "recbb")["prevResult"],
        result.to_value()
    );

    let mut disabled = list.clone();
    disabled.config.disable_check = true;
    fx.clear_log();
    fx.runtime.check_network_list(&disabled, &rt("c1")).unwrap();
    assert!(fx.log().is_empty());

    let old = fx.list("0.3.1");
    assert!(matches!(
        fx.runtime.check_network_list(&old, &rt("c1")),
        Err(RuntimeError::CheckNotSupported { .. })
    ));
}

#[test]
fn gc_at_1_1_0_deletes_stale_attachments_then_sends_gc_with_both_keys() {
    let fx = Fixture::new();
    let list = fx.list("1.1.0");
    fx.runtime.add_network_list(&list, &rt("keep")).unwrap();
    fx.runtime.add_network_list(&list, &rt("stale")).unwrap();
    fx.clear_log();
    let valid = [GcAttachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    fx.runtime.gc_network_list(&list, &valid).unwrap();
    assert_eq!(fx.log(), ["DEL recbb", "DEL reca", "GC reca", "GC recbb"]);
    // The stale DEL used the cached attachment's arguments.
    let del_env = fx.env_of("DEL", "reca");
    assert!(del_env.contains(&"CNI_CONTAINERID=stale".to_owned()));
    assert!(del_env.contains(&"CNI_NETNS=/run/netns/fake".to_owned()));
    assert!(del_env.contains(&"CNI_ARGS=A=1;B=2".to_owned()));
    let gc = fx.stdin_of("GC", "reca");
    let expected = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(gc["cni.dev/valid-attachments"], expected);
    assert_eq!(gc["cni.dev/attachments"], expected);
    assert_eq!(gc["cniVersion"], "1.1.0");
    assert!(gc.get("runtimeConfig").is_none());
    let gc_env = fx.env_of("GC", "reca");
    assert!(gc_env.contains(&"CNI_COMMAND=GC".to_owned()));
    assert!(gc_env.contains(&"CNI_CONTAINERID=".to_owned()));
    let left: Vec<String> = fx
        .runtime
        .cached_attachments()
        .unwrap()
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(left, ["keep"]);
}

#[test]
fn gc_below_1_1_0_only_deletes_and_disable_gc_does_nothing() {
    let fx = Fixture::new();
    let list = fx.list("1.0.0");
    fx.runtime.add_network_list(&list, &rt("stale")).unwrap();
    let mut disabled = list.clone();
    disabled.config.disable_gc = true;
    fx.clear_log();
    fx.runtime.gc_network_list(&disabled, &[]).unwrap();
    assert!(fx.log().is_empty());
    fx.runtime.gc_network_list(&list, &[]).unwrap();
    assert_eq!(fx.log(), ["DEL recbb", "DEL reca"]);
    assert!(fx.runtime.cached_attachments().unwrap().is_empty());
}

#[test]
fn gc_reports_every_failure() {
    let fx = Fixture::new();
    let list = fx.list("1.1.0");
    fx.runtime.add_network_list(&list, &rt("stale")).unwrap();
    let mut failing = list.clone();
    failing.config.plugins[0]
        .extra
        .insert("fail".into(), json!(true));
    let err = fx.runtime.gc_network_list(&failing, &[]).unwrap_err();
    let RuntimeError::Gc { errors, .. } = err else {
        panic!("expected a GC error")
    };
    // The stale DEL failed at reca, and reca's GC failed.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.cni_error().map(|c| c.code) == Some(ErrorCode::Other(117)))
    );
}

#[test]
fn status_returns_the_first_failure_with_its_code_and_is_a_no_op_before_1_1_0() {
    let fx = Fixture::new();
    let list = fx.list("1.1.0");
    fx.runtime.status_network_list(&list).unwrap();
    assert_eq!(fx.log(), ["STATUS reca", "STATUS recbb"]);
    std::fs::write(fx.rec().join("down"), b"").unwrap();
    fx.clear_log();
    let err = fx.runtime.status_network_list(&list).unwrap_err();
    assert_eq!(
        err.cni_error().map(|e| e.code),
        Some(ErrorCode::PluginNotAvailable)
    );
    assert_eq!(fx.log(), ["STATUS reca"]);
    fx.clear_log();
    fx.runtime.status_network_list(&fx.list("1.0.0")).unwrap();
    assert!(fx.log().is_empty());
}

#[test]
fn add_failures_are_typed_and_leave_no_cache() {
    let fx = Fixture::new();
    let mut list = fx.list("1.0.0");
    list.config.plugins[1]
        .extra
        .insert("fail".into(), json!(true));
    let err = fx.runtime.add_network_list(&list, &rt("c1")).unwrap_err();
    match &err {
        RuntimeError::Plugin { plugin_type, .. } => assert_eq!(plugin_type, "recbb"),
        other => panic!("unexpected {other}"),
    }
    let cni = err.cni_error().unwrap();
    assert_eq!(
        (cni.code, cni.msg.as_str(), cni.details.as_str()),
        (ErrorCode::Other(117), "told to fail", "by config")
    );
    assert!(fx.runtime.cached_attachments().unwrap().is_empty());

    let mut garbage = fx.list("1.0.0");
    garbage.config.plugins[0]
        .extra
        .insert("garbage".into(), json!(true));
    let err = fx
        .runtime
        .add_network_list(&garbage, &rt("c1"))
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Plugin { source, .. } if matches!(**source, ExecError::BadResult { .. })),
        "{err}"
    );

    let mut missing = fx.list("1.0.0");
    missing.config.plugins[0].plugin_type = "nonexistent".into();
    let err = fx
        .runtime
        .add_network_list(&missing, &rt("c1"))
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Plugin { source, .. } if matches!(**source, ExecError::NotFound { .. })),
        "{err}"
    );

    for bad in [
        RuntimeConf::new("bad/id", "eth0"),
        RuntimeConf::new("c1", "much-too-long-name"),
        RuntimeConf::new("", "eth0"),
    ] {
        assert!(matches!(
            fx.runtime.add_network_list(&fx.list("1.0.0"), &bad),
            Err(RuntimeError::Invalid(_))
        ));
    }
    let unsupported = fx.list("0.9.0");
    assert!(matches!(
        fx.runtime.add_network_list(&unsupported, &rt("c1")),
        Err(RuntimeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn a_hanging_plugin_is_killed_at_the_runtime_timeout() {
    let fx = Fixture::new();
    let runtime = fx
        .runtime
        .clone()
        .with_timeout(std::time::Duration::from_millis(300));
    let mut list = fx.list("1.0.0");
    list.config.plugins[0]
        .extra
        .insert("hang".into(), json!(true));
    let start = std::time::Instant::now();
    let err = runtime.add_network_list(&list, &rt("c1")).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Plugin { source, .. } if matches!(**source, ExecError::Timeout { .. })),
        "{err}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(fx.live_plugins(), Vec::<u32>::new(), "the hung ADD is gone");
    assert!(runtime.cached_attachments().unwrap().is_empty());
    // Without the hang, the same runtime works.
    runtime
        .add_network_list(&fx.list("1.0.0"), &rt("c1"))
        .unwrap();
}

#[test]
fn version_probes_stop_at_the_runtime_timeout_and_kill_the_plugin() {
    let fx = Fixture::new();
    let runtime = fx
        .runtime
        .clone()
        .with_timeout(std::time::Duration::from_millis(300));
    std::fs::write(fx.rec().join("hang-VERSION"), b"").unwrap();

    let err = runtime.version_info("reca").unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    assert_eq!(
        fx.live_plugins(),
        Vec::<u32>::new(),
        "the hung probe is gone"
    );

    let err = runtime
        .validate_network_list(&fx.list("1.1.0"))
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Plugin { source, .. } if matches!(**source, ExecError::Timeout { .. })),
        "{err}"
    );
    assert_eq!(
        fx.live_plugins(),
        Vec::<u32>::new(),
        "the hung probe is gone"
    );
    assert_eq!(fx.log(), ["VERSION reca", "VERSION reca"]);
}

#[test]
fn gc_passes_a_static_runtime_config_through_unchanged() {
    let fx = Fixture::new();
    let list = fx.list("1.1.0");
    fx.runtime.gc_network_list(&list, &[]).unwrap();
    assert_eq!(fx.log(), ["GC reca", "GC recbb"]);
    // As STATUS does, and as libcni's GC (which injects only name,
    // cniVersion and the attachments).
    assert_eq!(
        fx.stdin_of("GC", "recbb")["runtimeConfig"],
        json!({"preset": true})
    );
    fx.runtime.status_network_list(&list).unwrap();
    assert_eq!(
        fx.stdin_of("STATUS", "recbb")["runtimeConfig"],
        json!({"preset": true})
    );
}

#[test]
fn a_failure_reported_only_on_stderr_keeps_the_stderr_text() {
    let fx = Fixture::new();
    let mut list = fx.list("1.0.0");
    list.config.plugins[0]
        .extra
        .insert("stderrOnly".into(), json!(true));
    let err = fx.runtime.add_network_list(&list, &rt("c1")).unwrap_err();
    let RuntimeError::Plugin { source, .. } = &err else {
        panic!("unexpected {err}")
    };
    match &**source {
        ExecError::Failed {
            stdout,
            stderr,
            status,
            ..
        } => {
            assert_eq!(
                (stdout.as_str(), stderr.as_str(), status.code()),
                ("", "bridge br0 is missing\n", Some(1))
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("bridge br0 is missing"), "{err}");
    // Through `?` in a plugin, the text reaches the CNI error object too.
    let cni: CniError = match err {
        RuntimeError::Plugin { source, .. } => (*source).into(),
        other => panic!("unexpected {other}"),
    };
    assert!(cni.msg.contains("bridge br0 is missing"), "{cni:?}");
}

#[test]
fn a_cni_error_on_stdout_wins_over_stderr_text_as_in_libcni() {
    let fx = Fixture::new();
    let mut list = fx.list("1.0.0");
    list.config.plugins[0]
        .extra
        .insert("stderrToo".into(), json!(true));
    let err = fx.runtime.add_network_list(&list, &rt("c1")).unwrap_err();
    // libcni's pluginErr reads stderr only when stdout is empty.
    assert_eq!(
        err.cni_error(),
        Some(&CniError::new(ErrorCode::Other(117), "told to fail"))
    );
    assert!(!err.to_string().contains("noise on stderr"), "{err}");
}

#[test]
fn version_probing_and_validation_report_capabilities() {
    let fx = Fixture::new();
    let info = fx.runtime.version_info("reca").unwrap();
    assert!(info.supports(Version::V1_1_0));
    assert_eq!(
        fx.runtime.validate_network_list(&fx.list("1.1.0")).unwrap(),
        ["portMappings"]
    );
    assert!(fx.runtime.validate_network_list(&fx.list("0.2.0")).is_err());
}

#[test]
fn loading_follows_libcni_file_order_and_fallbacks() {
    let fx = Fixture::new();
    let dir = fx.tmp.path().join("net.d");
    std::fs::write(
        dir.join("20-b.conflist"),
        br#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"reca"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("10-a.conf"),
        br#"{"cniVersion":"0.4.0","name":"a","type":"reca","x":1}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("30-b.json"),
        br#"{"cniVersion":"0.4.0","name":"b","type":"recbb"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("40-ignored.txt"), b"not a config").unwrap();

    let files = conf_files(&dir, &["conf", "conflist", "json"]).unwrap();
    let names: Vec<&str> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, ["10-a.conf", "20-b.conflist", "30-b.json"]);

    // .conflist wins over a .json with the same network name.
    let b = load_conf_list(&dir, "b").unwrap();
    assert_eq!(b.config.plugins[0].plugin_type, "reca");
    assert_eq!(
        b.source.as_deref(),
        Some(dir.join("20-b.conflist").as_path())
    );
    // A single .conf becomes a one-plugin list, keys preserved.
    let a = load_conf_list(&dir, "a").unwrap();
    assert_eq!(a.config.cni_version, Some(Version::V0_4_0));
    assert_eq!(a.config.plugins[0].extra["x"], 1);
    assert!(matches!(
        load_conf_list(&dir, "zzz"),
        Err(LoadError::NotFound { .. })
    ));
    assert_eq!(load_all(&dir).unwrap().len(), 3);

    std::fs::write(dir.join("50-bad.conflist"), b"{").unwrap();
    match load_all(&dir) {
        Err(LoadError::Json { path, .. }) => assert_eq!(path, Some(dir.join("50-bad.conflist"))),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        conf_files(Path::new("/nonexistent/net.d"), &["conf"])
            .unwrap()
            .is_empty()
    );
}

fn delegate_env(fx: &Fixture) -> CniEnv {
    CniEnv {
        container_id: "c7".into(),
        netns: "/run/netns/fake".into(),
        ifname: "eth0".into(),
        args: "K=V".into(),
        path: format!("/nonexistent:{}", fx.tmp.path().join("bin").display()),
    }
}

#[test]
fn delegation_passes_env_and_config_converts_results_and_rolls_back() {
    let fx = Fixture::new();
    let env = delegate_env(&fx);
    let config = br#"{"cniVersion":"1.0.0","name":"n","type":"outer","ipam":{"type":"reca"}}"#;

    let result = delegate_add("reca", config, &env).unwrap();
    assert_eq!(result.cni_version, Version::V1_0_0);
    assert_eq!(
        result.to_value()["ips"][0],
        json!({"address": "198.51.100.4/24", "interface": 0})
    );
    let seen = fx.env_of("ADD", "reca");
    for expected in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=c7",
        "CNI_ARGS=K=V",
        "CNI_IFNAME=eth0",
    ] {
        assert!(
            seen.contains(&expected.to_owned()),
            "{expected} not in {seen:?}"
        );
    }
    assert_eq!(
        std::fs::read(fx.rec().join("ADD-reca.json")).unwrap(),
        config.to_vec(),
        "the full config, byte for byte"
    );

    for (call, command) in [
        (
            delegate_del as fn(&str, &[u8], &CniEnv) -> Result<(), ExecError>,
            "DEL",
        ),
        (delegate_check, "CHECK"),
        (delegate_gc, "GC"),
        (delegate_status, "STATUS"),
    ] {
        fx.clear_log();
        call("reca", config, &env).unwrap();
        assert_eq!(fx.log(), [format!("{command} reca")]);
    }

    // A guard that is dropped runs DEL; a committed one does not.
    fx.clear_log();
    let guard = delegate_add_guarded("reca", config, &env).unwrap();
    assert_eq!(guard.result().ips.len(), 1);
    drop(guard);
    assert_eq!(fx.log(), ["ADD reca", "DEL reca"]);
    fx.clear_log();
    let kept = delegate_add_guarded("reca", config, &env).unwrap().commit();
    assert_eq!(kept.ips.len(), 1);
    assert_eq!(fx.log(), ["ADD reca"]);

    fx.clear_log();
    let original = CniError::plugin(100, "veth failed");
    let back = del_after_failed_add("reca", config, &env, original.clone());
    assert_eq!(back, original);
    assert_eq!(fx.log(), ["DEL reca"]);

    // The delegate's error JSON comes back as the same CniError.
    let failing = br#"{"cniVersion":"1.0.0","name":"n","type":"outer","fail":true}"#;
    let err: CniError = delegate_add("reca", failing, &env).unwrap_err().into();
    assert_eq!(
        (err.code, err.msg.as_str()),
        (ErrorCode::Other(117), "told to fail")
    );
    assert!(matches!(
        delegate_add("nonexistent", config, &env),
        Err(ExecError::NotFound { .. })
    ));
}
