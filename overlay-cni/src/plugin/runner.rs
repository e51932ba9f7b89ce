//! The runner: environment and stdin checks, version negotiation, the call
//! on the [`Plugin`] and the output, with ([`run`]) or without ([`dispatch`])
//! the process around it.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde_json::Value;

use super::{CniEnv, Command, Plugin, Request};
use crate::config::NetworkConfig;
use crate::error::{CniError, ErrorCode};
use crate::validate;
use crate::version::{Version, VersionInfo};

/// What a plugin invocation produced: the bytes for stdout and stderr and the exit code.
///
/// ```
/// # use overlay_cni::{CniError, CniResult, Plugin, Request};
/// # struct P;
/// # impl Plugin for P {
/// #     fn add(&self, r: &Request) -> Result<CniResult, CniError> { Ok(CniResult::new(r.version)) }
/// #     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// #     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// # }
/// let env = [("CNI_COMMAND", "ADD")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
/// let out = overlay_cni::plugin::dispatch(&P, &env, b"{}");
/// assert_eq!(out.exit_code, 1);
/// assert_eq!(out.cni_error().unwrap().code, overlay_cni::ErrorCode::InvalidEnvironmentVariables);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// Bytes for stdout (result JSON, version JSON or error JSON).
    pub stdout: Vec<u8>,
    /// Bytes for stderr (only the `about` text).
    pub stderr: Vec<u8>,
    /// The process exit code: 0 on success, 1 on error.
    pub exit_code: i32,
}

impl Output {
    fn ok(stdout: Vec<u8>) -> Self {
        Output {
            stdout,
            stderr: Vec::new(),
            exit_code: 0,
        }
    }

    fn error(err: CniError) -> Self {
        Output {
            stdout: err.to_json(),
            stderr: Vec::new(),
            exit_code: 1,
        }
    }

    /// The error object, when this output is a failure.
    pub fn cni_error(&self) -> Option<CniError> {
        (self.exit_code != 0)
            .then(|| serde_json::from_slice(&self.stdout).ok())
            .flatten()
    }
}

/// Run `plugin` for one invocation described by an environment map and stdin.
///
/// This is [`run`] without the process: no environment, stdio or exit is
/// touched, so it can be unit-tested.
pub fn dispatch<P: Plugin + ?Sized>(
    plugin: &P,
    env: &HashMap<String, String>,
    stdin: &[u8],
) -> Output {
    dispatch_with(plugin, |k| env.get(k).cloned(), stdin)
}

/// Like [`dispatch`], reading variables through `lookup`.
///
/// ```
/// # use overlay_cni::{CniError, CniResult, Plugin, Request};
/// # struct P;
/// # impl Plugin for P {
/// #     fn add(&self, r: &Request) -> Result<CniResult, CniError> { Ok(CniResult::new(r.version)) }
/// #     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// #     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// # }
/// let out = overlay_cni::plugin::dispatch_with(&P, |k| (k == "CNI_COMMAND").then(|| "VERSION".to_owned()), b"");
/// let info: overlay_cni::version::VersionInfo = serde_json::from_slice(&out.stdout).unwrap();
/// assert!(info.supports(overlay_cni::Version::V1_1_0));
/// ```
pub fn dispatch_with<P: Plugin + ?Sized>(
    plugin: &P,
    lookup: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Output {
    let highest = plugin
        .supported_versions()
        .iter()
        .max()
        .copied()
        .unwrap_or(Version::LATEST);
    let command = lookup("CNI_COMMAND").unwrap_or_default();
    if command.is_empty()
        && let Some(about) = plugin.about()
    {
        let versions = join_versions(plugin.supported_versions());
        return Output {
            stdout: Vec::new(),
            stderr: format!("{about}\nCNI protocol versions supported: {versions}\n").into_bytes(),
            exit_code: 0,
        };
    }
    match dispatch_inner(plugin, &command, &lookup, stdin) {
        Ok(stdout) => Output::ok(stdout),
        Err((err, version)) => {
            let version = err.cni_version.or(version).unwrap_or(highest);
            Output::error(err.with_version(version))
        }
    }
}

type Failure = (CniError, Option<Version>);

fn join_versions(versions: &[Version]) -> String {
    versions
        .iter()
        .map(Version::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn dispatch_inner<P: Plugin + ?Sized>(
    plugin: &P,
    command: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Vec<u8>, Failure> {
    let fail = |err: CniError| (err, None);
    let parsed = command.parse::<Command>();
    // Missing variables first, as libcni's runner does.
    let mut missing: Vec<&str> = Vec::new();
    if command.is_empty() {
        missing.push("CNI_COMMAND");
    }
    if let Ok(cmd) = parsed {
        missing.extend(
            cmd.required_vars()
                .iter()
                .filter(|var| lookup(var).is_none_or(|v| v.is_empty())),
        );
    }
    if !missing.is_empty() {
        return Err(fail(CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            format!("required env variables [{}] missing", missing.join(",")),
        )));
    }
    let cmd = parsed.map_err(|e| {
        fail(CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            e.to_string(),
        ))
    })?;
    let env = CniEnv::from_lookup(lookup);

    if cmd == Command::Version {
        return Ok(version_answer(plugin, stdin));
    }

    // The configuration: JSON object, name, then the attachment variables.
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        fail(
            CniError::new(
                ErrorCode::DecodingFailure,
                "error unmarshalling network config",
            )
            .with_details(e.to_string()),
        )
    })?;
    let Value::Object(object) = &value else {
        return Err(fail(
            CniError::new(
                ErrorCode::DecodingFailure,
                "error unmarshalling network config",
            )
            .with_details("the network configuration is not a JSON object"),
        ));
    };
    let name = object.get("name").and_then(Value::as_str).unwrap_or("");
    validate::network_name(name).map_err(fail)?;
    if matches!(cmd, Command::Add | Command::Del | Command::Check) {
        validate::container_id(&env.container_id).map_err(fail)?;
        validate::interface_name(&env.ifname).map_err(fail)?;
    }

    // Version negotiation.
    let version = match object.get("cniVersion") {
        None => Ok(Version::V0_1_0),
        Some(Value::String(s)) => s.parse::<Version>().map_err(|_| s.clone()),
        Some(other) => Err(other.to_string()),
    }
    .ok()
    .filter(|v| plugin.supported_versions().contains(v))
    .ok_or_else(|| {
        let written = object
            .get("cniVersion")
            .map_or_else(|| "0.1.0".to_owned(), Value::to_string);
        fail(
            CniError::new(
                ErrorCode::IncompatibleCniVersion,
                "incompatible CNI versions",
            )
            .with_details(format!(
                "config is {written}, plugin supports [{}]",
                join_versions(plugin.supported_versions())
            )),
        )
    })?;
    let with_version = |err: CniError| (err, Some(version));
    let config: NetworkConfig = serde_json::from_value(value).map_err(|e| {
        with_version(
            CniError::new(
                ErrorCode::DecodingFailure,
                "error unmarshalling network config",
            )
            .with_details(e.to_string()),
        )
    })?;
    let needs = |min: Version, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(with_version(
                CniError::new(
                    ErrorCode::IncompatibleCniVersion,
                    format!("config version does not allow {cmd}"),
                )
                .with_details(format!(
                    "{cmd} needs cniVersion {min} or later, config is {version}"
                )),
            ))
        }
    };
    match cmd {
        Command::Check => needs(Version::V0_4_0, version.supports_check())?,
        Command::Gc | Command::Status => needs(Version::V1_1_0, version.supports_gc_and_status())?,
        _ => {}
    }
    let req = Request {
        command: cmd,
        env,
        config,
        config_bytes: stdin.to_vec(),
        version,
    };
    match cmd {
        Command::Add => {
            let result = plugin.add(&req).map_err(with_version)?;
            let converted = result.convert(version).map_err(|e| {
                with_version(
                    CniError::new(ErrorCode::Internal, "cannot convert the plugin's result")
                        .with_details(e.to_string()),
                )
            })?;
            // Only strings and numbers: serialisation cannot fail.
            Ok(serde_json::to_vec_pretty(&converted).unwrap_or_default())
        }
        Command::Del => plugin.del(&req).map(|()| Vec::new()).map_err(with_version),
        Command::Check => plugin
            .check(&req)
            .map(|()| Vec::new())
            .map_err(with_version),
        Command::Status => plugin
            .status(&req)
            .map(|()| Vec::new())
            .map_err(with_version),
        Command::Gc => {
            let valid = req
                .config
                .valid_attachments()
                .map_err(|e| {
                    with_version(
                        CniError::new(
                            ErrorCode::DecodingFailure,
                            "invalid cni.dev/valid-attachments",
                        )
                        .with_details(e.to_string()),
                    )
                })?
                .unwrap_or_default();
            plugin
                .gc(&req, &valid)
                .map(|()| Vec::new())
                .map_err(with_version)
        }
        Command::Version => Ok(version_answer(plugin, stdin)),
    }
}

/// The `VERSION` answer: the plugin's versions, in the version the caller
/// asked for on stdin when the plugin supports it, else the plugin's highest.
fn version_answer<P: Plugin + ?Sized>(plugin: &P, stdin: &[u8]) -> Vec<u8> {
    let supported = plugin.supported_versions();
    let requested = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str()?.parse::<Version>().ok())
        .filter(|v| supported.contains(v));
    let info = VersionInfo {
        cni_version: requested
            .or_else(|| supported.iter().max().copied())
            .unwrap_or(Version::LATEST),
        supported_versions: supported.to_vec(),
    };
    // Only strings: serialisation cannot fail.
    serde_json::to_vec(&info).unwrap_or_default()
}

/// Run `plugin` as this process: read the environment and stdin, write
/// stdout/stderr, and exit with the right status. Never returns.
///
/// For `VERSION`, stdin is not read (like libcni's runner), so the plugin
/// answers even when stdin is a terminal.
///
/// ```no_run
/// # use overlay_cni::{error::CniError, plugin::{Plugin, Request}, result::CniResult};
/// struct Noop;
/// impl Plugin for Noop {
///     fn add(&self, req: &Request) -> Result<CniResult, CniError> { Ok(CniResult::new(req.version)) }
///     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
/// }
/// fn main() {
///     overlay_cni::plugin::run(&Noop);
/// }
/// ```
pub fn run<P: Plugin + ?Sized>(plugin: &P) -> ! {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut stdin = Vec::new();
    let is_version = lookup("CNI_COMMAND").as_deref() == Some("VERSION");
    let output = if !is_version {
        match std::io::stdin().read_to_end(&mut stdin) {
            Ok(_) => dispatch_with(plugin, lookup, &stdin),
            Err(e) => Output::error(
                CniError::new(ErrorCode::IoFailure, "error reading from stdin")
                    .with_details(e.to_string())
                    .with_version(Version::LATEST),
            ),
        }
    } else {
        dispatch_with(plugin, lookup, &stdin)
    };
    let mut out = std::io::stdout().lock();
    // If stdout is gone, the runtime cannot read anything anyway; the exit
    // status still tells it what happened.
    let _ = out.write_all(&output.stdout).and_then(|()| out.flush());
    let _ = std::io::stderr().write_all(&output.stderr);
    std::process::exit(output.exit_code)
}

#[cfg(test)]
mod tests {
    use super::super::attachment_hash;
    use super::*;
    use crate::config::GcAttachment;
    use crate::result::CniResult;
    use crate::result::IpConfig;
    use crate::version::SUPPORTED_VERSIONS;
    use serde_json::json;
    use std::cell::RefCell;
    use std::path::Path;

    /// Records what it was called with; fails ADD when the config says so.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<(Command, Version)>>,
        gc_valid: RefCell<Vec<GcAttachment>>,
        versions: Option<Vec<Version>>,
    }

    impl Plugin for Recorder {
        fn supported_versions(&self) -> &[Version] {
            self.versions.as_deref().unwrap_or(SUPPORTED_VERSIONS)
        }
        fn about(&self) -> Option<&str> {
            Some("recorder test plugin")
        }
        fn add(&self, req: &Request) -> Result<CniResult, CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            if req.config.extra.contains_key("fail") {
                return Err(CniError::plugin(117, "asked to fail").with_details("fail key"));
            }
            // Built as 1.1.0 on purpose: the runner converts.
            let mut r = CniResult::new(Version::V1_1_0);
            r.ips
                .push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
            Ok(r)
        }
        fn del(&self, req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            Ok(())
        }
        fn check(&self, req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            Ok(())
        }
        fn status(&self, req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            if req.config.extra.contains_key("down") {
                return Err(CniError::new(ErrorCode::PluginNotAvailable, "daemon down"));
            }
            Ok(())
        }
        fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
            self.calls.borrow_mut().push((req.command, req.version));
            self.gc_valid.borrow_mut().extend_from_slice(valid);
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn full_env(command: &str) -> HashMap<String, String> {
        env(&[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ])
    }

    fn conf(version: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"cniVersion": version, "name": "net", "type": "recorder"}))
            .unwrap()
    }

    fn expect_error(out: &Output, code: ErrorCode) -> CniError {
        assert_eq!(
            out.exit_code,
            1,
            "stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = out.cni_error().expect("error JSON on stdout");
        assert_eq!(err.code, code, "{err}");
        assert!(
            err.cni_version.is_some(),
            "error JSON always carries cniVersion"
        );
        err
    }

    #[test]
    fn add_prints_result_converted_to_each_config_version() {
        for version in SUPPORTED_VERSIONS {
            let p = Recorder::default();
            let out = dispatch(&p, &full_env("ADD"), &conf(&version.to_string()));
            assert_eq!(out.exit_code, 0);
            let r = CniResult::from_slice(&out.stdout).unwrap();
            assert_eq!(r.cni_version, *version);
            assert_eq!(p.calls.borrow().as_slice(), &[(Command::Add, *version)]);
        }
        let out = dispatch(&Recorder::default(), &full_env("ADD"), &conf("0.3.0"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "0.3.0", "ips": [{"version": "4", "address": "198.51.100.7/24"}]})
        );
    }

    #[test]
    fn plugin_error_is_printed_with_its_code_and_the_config_version() {
        let stdin = serde_json::to_vec(
            &json!({"cniVersion": "0.4.0", "name": "net", "type": "r", "fail": true}),
        )
        .unwrap();
        let out = dispatch(&Recorder::default(), &full_env("ADD"), &stdin);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "0.4.0", "code": 117, "msg": "asked to fail", "details": "fail key"})
        );
        assert_eq!(out.exit_code, 1);
    }

    #[test]
    fn missing_variables_are_code_4_and_listed() {
        let mut e = full_env("ADD");
        e.remove("CNI_NETNS");
        e.remove("CNI_PATH");
        let err = expect_error(
            &dispatch(&Recorder::default(), &e, &conf("1.0.0")),
            ErrorCode::InvalidEnvironmentVariables,
        );
        assert_eq!(
            err.msg,
            "required env variables [CNI_NETNS,CNI_PATH] missing"
        );
        for (cmd, var) in [
            ("ADD", "CNI_CONTAINERID"),
            ("ADD", "CNI_IFNAME"),
            ("CHECK", "CNI_NETNS"),
            ("DEL", "CNI_CONTAINERID"),
            ("DEL", "CNI_IFNAME"),
            ("DEL", "CNI_PATH"),
            ("GC", "CNI_PATH"),
            ("STATUS", "CNI_PATH"),
        ] {
            let mut e = full_env(cmd);
            e.insert(var.to_owned(), String::new());
            let err = expect_error(
                &dispatch(&Recorder::default(), &e, &conf("1.1.0")),
                ErrorCode::InvalidEnvironmentVariables,
            );
            assert!(err.msg.contains(var), "{cmd}: {}", err.msg);
        }
    }

    #[test]
    fn del_does_not_need_netns_and_gc_status_need_only_path() {
        let mut e = full_env("DEL");
        e.remove("CNI_NETNS");
        let p = Recorder::default();
        assert_eq!(dispatch(&p, &e, &conf("1.0.0")).exit_code, 0);
        for cmd in ["GC", "STATUS"] {
            let e = env(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/opt/cni/bin")]);
            let out = dispatch(&p, &e, &conf("1.1.0"));
            assert_eq!(
                out.exit_code,
                0,
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(out.stdout.is_empty());
        }
    }

    #[test]
    fn unknown_command_is_code_4() {
        let err = expect_error(
            &dispatch(&Recorder::default(), &full_env("FROB"), &conf("1.0.0")),
            ErrorCode::InvalidEnvironmentVariables,
        );
        assert_eq!(err.msg, "unknown CNI_COMMAND: FROB");
    }

    #[test]
    fn no_command_prints_about_with_about_text_and_errors_without() {
        let out = dispatch(&Recorder::default(), &env(&[]), b"");
        assert_eq!(out.exit_code, 0);
        let text = String::from_utf8(out.stderr).unwrap();
        assert!(text.starts_with("recorder test plugin\nCNI protocol versions supported: 0.1.0"));

        struct Silent;
        impl Plugin for Silent {
            fn add(&self, r: &Request) -> Result<CniResult, CniError> {
                Ok(CniResult::new(r.version))
            }
            fn del(&self, _: &Request) -> Result<(), CniError> {
                Ok(())
            }
            fn check(&self, _: &Request) -> Result<(), CniError> {
                Ok(())
            }
        }
        let err = expect_error(
            &dispatch(&Silent, &env(&[]), b""),
            ErrorCode::InvalidEnvironmentVariables,
        );
        assert!(err.msg.contains("CNI_COMMAND"));
    }

    #[test]
    fn bad_json_is_code_6() {
        for stdin in [
            &b"{not json"[..],
            b"",
            b"[1,2]",
            br#"{"name":"n","ipam":"x"}"#,
        ] {
            expect_error(
                &dispatch(&Recorder::default(), &full_env("ADD"), stdin),
                ErrorCode::DecodingFailure,
            );
        }
    }

    #[test]
    fn bad_or_missing_network_name_is_code_7() {
        for stdin in [
            json!({"cniVersion": "1.0.0", "type": "r"}),
            json!({"cniVersion": "1.0.0", "name": "-x", "type": "r"}),
            json!({"cniVersion": "1.0.0", "name": "a b", "type": "r"}),
        ] {
            expect_error(
                &dispatch(
                    &Recorder::default(),
                    &full_env("ADD"),
                    &serde_json::to_vec(&stdin).unwrap(),
                ),
                ErrorCode::InvalidNetworkConfig,
            );
        }
    }

    #[test]
    fn bad_container_id_and_ifname_are_rejected_with_libcni_codes() {
        let mut e = full_env("ADD");
        e.insert("CNI_CONTAINERID".into(), "bad/id".into());
        expect_error(
            &dispatch(&Recorder::default(), &e, &conf("1.0.0")),
            ErrorCode::InvalidEnvironmentVariables,
        );
        for ifname in ["sixteen_bytes_ab", ".", "..", "a/b", "a:b", "a b"] {
            let mut e = full_env("DEL");
            e.insert("CNI_IFNAME".into(), ifname.into());
            expect_error(
                &dispatch(&Recorder::default(), &e, &conf("1.0.0")),
                ErrorCode::InvalidEnvironmentVariables,
            );
        }
    }

    #[test]
    fn unsupported_or_malformed_version_is_code_1() {
        for stdin in [
            conf("0.5.0"),
            conf("2.0.0"),
            conf("garbage"),
            serde_json::to_vec(&json!({"cniVersion": 1, "name": "n", "type": "r"})).unwrap(),
        ] {
            let err = expect_error(
                &dispatch(&Recorder::default(), &full_env("ADD"), &stdin),
                ErrorCode::IncompatibleCniVersion,
            );
            assert_eq!(err.msg, "incompatible CNI versions");
        }
        // A plugin that supports only 1.x refuses 0.4.0 configs.
        let p = Recorder {
            versions: Some(vec![Version::V1_0_0, Version::V1_1_0]),
            ..Recorder::default()
        };
        let err = expect_error(
            &dispatch(&p, &full_env("ADD"), &conf("0.4.0")),
            ErrorCode::IncompatibleCniVersion,
        );
        assert_eq!(
            err.details,
            "config is \"0.4.0\", plugin supports [1.0.0, 1.1.0]"
        );
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn check_below_0_4_0_and_gc_status_below_1_1_0_are_code_1() {
        for (cmd, version) in [
            ("CHECK", "0.3.1"),
            ("CHECK", "0.2.0"),
            ("GC", "1.0.0"),
            ("STATUS", "1.0.0"),
            ("STATUS", "0.4.0"),
        ] {
            let p = Recorder::default();
            let err = expect_error(
                &dispatch(&p, &full_env(cmd), &conf(version)),
                ErrorCode::IncompatibleCniVersion,
            );
            assert_eq!(err.msg, format!("config version does not allow {cmd}"));
            assert_eq!(
                err.cni_version.map(|v| v.to_string()).as_deref(),
                Some(version)
            );
            assert!(p.calls.borrow().is_empty());
        }
        let p = Recorder::default();
        assert_eq!(
            dispatch(&p, &full_env("CHECK"), &conf("0.4.0")).exit_code,
            0
        );
    }

    #[test]
    fn gc_accepts_both_attachment_keys() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let p = Recorder::default();
            let stdin = serde_json::to_vec(&json!({
                "cniVersion": "1.1.0", "name": "net", "type": "r",
                key: [{"containerID": "c9", "ifname": "net1"}]
            }))
            .unwrap();
            let e = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]);
            assert_eq!(dispatch(&p, &e, &stdin).exit_code, 0);
            assert_eq!(
                p.gc_valid.borrow().as_slice(),
                &[GcAttachment {
                    container_id: "c9".into(),
                    ifname: "net1".into()
                }]
            );
        }
        let bad = serde_json::to_vec(&json!({
            "cniVersion": "1.1.0", "name": "net", "type": "r",
            "cni.dev/valid-attachments": "nope"
        }))
        .unwrap();
        let e = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]);
        expect_error(
            &dispatch(&Recorder::default(), &e, &bad),
            ErrorCode::DecodingFailure,
        );
    }

    #[test]
    fn status_failure_carries_code_50() {
        let stdin = serde_json::to_vec(
            &json!({"cniVersion": "1.1.0", "name": "net", "type": "r", "down": true}),
        )
        .unwrap();
        let e = env(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")]);
        expect_error(
            &dispatch(&Recorder::default(), &e, &stdin),
            ErrorCode::PluginNotAvailable,
        );
    }

    #[test]
    fn version_lists_supported_versions_in_the_requested_version() {
        let p = Recorder::default();
        let out = dispatch(&p, &env(&[("CNI_COMMAND", "VERSION")]), b"");
        assert_eq!(out.exit_code, 0);
        let info: VersionInfo = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info.cni_version, Version::V1_1_0);
        assert_eq!(info.supported_versions, SUPPORTED_VERSIONS);
        let out = dispatch(
            &p,
            &env(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"0.4.0"}"#,
        );
        let info: VersionInfo = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info.cni_version, Version::V0_4_0);
        // VERSION needs no other variable and ignores a malformed stdin.
        let out = dispatch(&p, &env(&[("CNI_COMMAND", "VERSION")]), b"{{{");
        assert_eq!(out.exit_code, 0);
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn request_exposes_env_and_prev_result() {
        struct Inspect;
        impl Plugin for Inspect {
            fn add(&self, r: &Request) -> Result<CniResult, CniError> {
                assert_eq!(r.container_id(), "c1");
                assert_eq!(r.ifname(), "eth0");
                assert_eq!(r.netns(), Some(Path::new("/run/netns/p")));
                assert_eq!(r.network_name(), "net");
                assert_eq!(r.attachment_hash(), attachment_hash("net", "c1", "eth0"));
                assert_eq!(r.load_args(&["A"])?.get("A"), Some("1"));
                let prev = r
                    .prev_result()
                    .expect("prevResult given")
                    .map_err(|e| CniError::new(ErrorCode::DecodingFailure, e.to_string()))?;
                Ok(prev)
            }
            fn del(&self, r: &Request) -> Result<(), CniError> {
                assert_eq!(r.netns(), None);
                Ok(())
            }
            fn check(&self, _: &Request) -> Result<(), CniError> {
                Ok(())
            }
        }
        let mut e = full_env("ADD");
        e.insert("CNI_ARGS".into(), "A=1".into());
        let stdin = serde_json::to_vec(&json!({
            "cniVersion": "0.4.0", "name": "net", "type": "i",
            "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "198.51.100.9/24"}]}
        }))
        .unwrap();
        let out = dispatch(&Inspect, &e, &stdin);
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
        let mut e = full_env("DEL");
        e.remove("CNI_NETNS");
        assert_eq!(dispatch(&Inspect, &e, &conf("1.0.0")).exit_code, 0);
    }
}
