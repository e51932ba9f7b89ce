//! Finding plugin executables on `CNI_PATH` and running them.
//!
//! This is the layer shared by IPAM delegation ([`crate::delegate`]) and the
//! runtime side: it starts a plugin with an environment and a configuration
//! on stdin, and turns a non-zero exit into the plugin's [`CniError`] (or
//! into [`ExecError::Failed`] when the plugin printed no valid error JSON).
//!
//! The plugin's stderr is captured as libcni's `RawExec` does: when a failed
//! plugin printed nothing on stdout, its stderr text is the message of the
//! error ([`ExecError::Failed::stderr`]); when it printed something on stdout,
//! that is what the error is made of. Stderr text that does not end up in an
//! error is copied to this process's stderr (libcni copies it on success and
//! drops it on failure).
//!
//! ```no_run
//! use overlay_cni::exec::{find_in_path, split_path};
//!
//! let dirs = split_path("/opt/cni/bin:/usr/lib/cni");
//! let bridge = find_in_path("bridge", &dirs).unwrap();
//! println!("{}", bridge.display());
//! ```

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::CniError;
use crate::result::ResultError;
use crate::version::VersionInfo;

/// Why running a plugin failed.
///
/// ```
/// use overlay_cni::exec::{find_in_path, ExecError};
///
/// let err = find_in_path("no-such-plugin", &["/nonexistent".into()]).unwrap_err();
/// assert!(matches!(err, ExecError::NotFound { .. }));
/// assert!(err.cni_error().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The plugin type is empty or contains a path separator.
    #[error("invalid plugin type {plugin:?}: must be a non-empty file name")]
    InvalidPluginName {
        /// The rejected name.
        plugin: String,
    },
    /// No executable of that name in any `CNI_PATH` directory.
    #[error("failed to find plugin {plugin:?} in path {path:?}")]
    NotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        path: Vec<PathBuf>,
    },
    /// The executable could not be started.
    #[error("cannot start plugin {}: {source}", plugin.display())]
    Spawn {
        /// The executable.
        plugin: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Talking to the plugin over its stdin/stdout failed.
    #[error("I/O with plugin {}: {source}", plugin.display())]
    Io {
        /// The executable.
        plugin: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The plugin failed and printed a CNI error object.
    #[error("plugin {} failed: {error}", plugin.display())]
    Plugin {
        /// The executable.
        plugin: PathBuf,
        /// The error it printed.
        error: CniError,
    },
    /// The plugin failed without printing a valid CNI error object.
    ///
    /// As in libcni (`pluginErr` in `pkg/invoke/raw_exec.go`), the message
    /// is its stderr text when its stdout was empty, and its stdout otherwise.
    #[error("plugin {} failed ({status}){}", plugin.display(), failure_detail(stdout, stderr))]
    Failed {
        /// The executable.
        plugin: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stdout (lossily decoded).
        stdout: String,
        /// What it printed on stderr (lossily decoded) when `stdout` is
        /// empty; empty otherwise, since libcni then ignores stderr (the text
        /// is copied to this process's stderr instead).
        stderr: String,
    },
    /// The plugin succeeded but its result could not be read or converted.
    #[error("plugin {} printed an invalid result: {source}", plugin.display())]
    BadResult {
        /// The executable.
        plugin: PathBuf,
        /// What was wrong.
        source: ResultError,
    },
    /// The plugin did not finish within the time limit and was killed.
    #[error("plugin {} did not finish within {after:?} and was killed", plugin.display())]
    Timeout {
        /// The executable.
        plugin: PathBuf,
        /// The time limit.
        after: Duration,
    },
    /// The plugin's answer to `VERSION` is not a valid version object.
    #[error("plugin {} printed an invalid VERSION answer: {source}", plugin.display())]
    BadVersionInfo {
        /// The executable.
        plugin: PathBuf,
        /// What was wrong.
        source: serde_json::Error,
    },
}

/// The end of [`ExecError::Failed`]'s message, after the exit status.
fn failure_detail(stdout: &str, stderr: &str) -> String {
    match (stdout.is_empty(), stderr.is_empty()) {
        (false, _) => format!(" without a CNI error on stdout: {stdout:?}"),
        (true, false) => format!(": {stderr:?}"),
        (true, true) => " with no error message".to_owned(),
    }
}

impl ExecError {
    /// The CNI error a plugin printed, if that is what this is.
    pub fn cni_error(&self) -> Option<&CniError> {
        match self {
            ExecError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<ExecError> for CniError {
    /// A delegated plugin's own error passes through unchanged (code, message
    /// and details), so `?` in a plugin reports what the IPAM plugin said;
    /// every other failure becomes [`crate::error::ErrorCode::Internal`].
    fn from(err: ExecError) -> Self {
        match err {
            ExecError::Plugin { error, .. } => error,
            other => CniError::internal(&other),
        }
    }
}

/// Split a `CNI_PATH` value (colon-separated) into directories, skipping empty parts.
///
/// ```
/// let dirs = overlay_cni::exec::split_path("/opt/cni/bin::/usr/lib/cni");
/// assert_eq!(dirs.len(), 2);
/// ```
pub fn split_path(cni_path: &str) -> Vec<PathBuf> {
    cni_path
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Find the executable for `plugin` in the first directory of `path` that has it.
///
/// `plugin` must be a plain file name; a name with `/` is rejected, so a
/// configuration cannot point outside the plugin directories.
pub fn find_in_path(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, ExecError> {
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(ExecError::InvalidPluginName {
            plugin: plugin.to_owned(),
        });
    }
    path.iter()
        .map(|dir| dir.join(plugin))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| ExecError::NotFound {
            plugin: plugin.to_owned(),
            path: path.to_vec(),
        })
}

/// Run the plugin at `plugin` with extra environment variables `env` (added
/// to this process's environment, replacing same-named ones) and `stdin`.
///
/// Returns its stdout on a zero exit. Its stderr is captured: on a failure
/// with empty stdout it is the message of [`ExecError::Failed`]; otherwise it
/// is copied to this process's stderr once the plugin has finished (see the
/// [module docs](self)). An executable that is busy (being written,
/// `ETXTBSY`) is retried a few times, as libcni does.
///
/// ```no_run
/// use overlay_cni::exec::{exec_plugin, find_in_path};
///
/// let bridge = find_in_path("bridge", &["/usr/lib/cni".into()]).unwrap();
/// let env = [("CNI_COMMAND", "VERSION"), ("CNI_PATH", "/usr/lib/cni")];
/// let stdout = exec_plugin(&bridge, &env, br#"{"cniVersion":"1.0.0"}"#).unwrap();
/// println!("{}", String::from_utf8_lossy(&stdout));
/// ```
pub fn exec_plugin(
    plugin: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<Vec<u8>, ExecError> {
    exec_plugin_with_timeout(plugin, env, stdin, None)
}

/// [`exec_plugin`] with a time limit: when the plugin has not closed its
/// stdout and stderr and exited within `timeout`, it is killed and
/// [`ExecError::Timeout`] is returned. Retries of a busy executable stop at
/// the deadline too. `None` waits indefinitely.
///
/// Only the plugin process itself is killed (as libcni does); a process it
/// started and left running is not waited for past the deadline.
///
/// ```
/// use std::time::Duration;
/// use overlay_cni::exec::{exec_plugin_with_timeout, ExecError};
///
/// let err = exec_plugin_with_timeout("/bin/sh".as_ref(), &[], b"exec sleep 10", Some(Duration::from_millis(100)))
///     .unwrap_err();
/// assert!(matches!(err, ExecError::Timeout { .. }));
/// ```
pub fn exec_plugin_with_timeout(
    plugin: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
    timeout: Option<Duration>,
) -> Result<Vec<u8>, ExecError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut command = Command::new(plugin);
    command
        .envs(
            env.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let timeout_err = || ExecError::Timeout {
        plugin: plugin.to_owned(),
        after: timeout.unwrap_or_default(),
    };
    let pause = |delay: Duration| match deadline {
        None => {
            std::thread::sleep(delay);
            true
        }
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(delay.min(left));
            !left.is_zero()
        }
    };
    let mut child = match spawn_retrying_busy(&mut command, pause) {
        Ok(child) => child,
        Err(e) if e.raw_os_error() == Some(ETXTBSY) && deadline.is_some_and(passed) => {
            return Err(timeout_err());
        }
        Err(source) => {
            return Err(ExecError::Spawn {
                plugin: plugin.to_owned(),
                source,
            });
        }
    };
    let io_err = |source| ExecError::Io {
        plugin: plugin.to_owned(),
        source,
    };
    let timed_out = |child: &mut Child| {
        // The plugin may have exited just now; either way it is reaped here.
        let _ = child.kill();
        let _ = child.wait();
        timeout_err()
    };

    // Writer and readers own their pipes on detached threads, so that a
    // plugin (or a process it left behind) that holds a pipe open cannot
    // block us past the deadline.
    let writer = child.stdin.take().map(|mut pipe| {
        let input = stdin.to_vec();
        std::thread::spawn(move || match pipe.write_all(&input) {
            // A plugin may exit without reading stdin (VERSION): a broken
            // pipe is not our failure then; its exit status tells.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        })
    });
    let stdout_rx = read_to_end_detached(child.stdout.take());
    let stderr_rx = read_to_end_detached(child.stderr.take());
    let stdout = match recv_until(&stdout_rx, deadline) {
        Received::Bytes(bytes) => bytes,
        Received::Failed(e) => return Err(io_err(e)),
        Received::TimedOut => return Err(timed_out(&mut child)),
    };
    // Stdout is closed: the plugin is exiting. Reap it, within the deadline.
    let status = match deadline {
        None => child.wait().map_err(io_err)?,
        Some(deadline) => {
            let mut pause = Duration::from_micros(50);
            loop {
                if let Some(status) = child.try_wait().map_err(io_err)? {
                    break status;
                }
                if Instant::now() >= deadline {
                    return Err(timed_out(&mut child));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        }
    };
    // Like stdout, stderr is read to its end (libcni's Wait does the same).
    let stderr = match recv_until(&stderr_rx, deadline) {
        Received::Bytes(bytes) => bytes,
        Received::Failed(e) => return Err(io_err(e)),
        Received::TimedOut => return Err(timed_out(&mut child)),
    };
    if let Some(writer) = writer {
        // The plugin has exited, so the writer is done unless a process it
        // left behind holds stdin open; do not wait for that one.
        if deadline.is_none() || writer.is_finished() {
            match writer.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io_err(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }
    let pass_stderr_through = || {
        if !stderr.is_empty() {
            // Informational only, as in libcni: a failure to copy is ignored.
            let _ = std::io::stderr().write_all(&stderr);
        }
    };
    if status.success() {
        pass_stderr_through();
        return Ok(stdout);
    }
    // libcni's pluginErr: with nothing on stdout, stderr is the message;
    // otherwise stdout must be the error object and stderr is not used.
    if stdout.is_empty() {
        return Err(ExecError::Failed {
            plugin: plugin.to_owned(),
            status,
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        });
    }
    pass_stderr_through();
    match serde_json::from_slice::<CniError>(&stdout) {
        Ok(error) => Err(ExecError::Plugin {
            plugin: plugin.to_owned(),
            error,
        }),
        Err(_) => Err(ExecError::Failed {
            plugin: plugin.to_owned(),
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::new(),
        }),
    }
}

/// Whether `deadline` has come.
fn passed(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

/// Read `pipe` to its end on a detached thread; the receiver gets the bytes
/// (at once, empty, when there is no pipe).
fn read_to_end_detached(
    pipe: Option<impl Read + Send + 'static>,
) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    match pipe {
        None => {
            let _ = tx.send(Ok(Vec::new()));
        }
        Some(mut pipe) => {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = tx.send(pipe.read_to_end(&mut out).map(|_| out));
            });
        }
    }
    rx
}

/// What [`recv_until`] got.
enum Received {
    /// The pipe's whole content.
    Bytes(Vec<u8>),
    /// Reading failed.
    Failed(std::io::Error),
    /// The deadline came first.
    TimedOut,
}

/// Wait for a [`read_to_end_detached`] reader, until `deadline` if there is one.
fn recv_until(
    rx: &mpsc::Receiver<std::io::Result<Vec<u8>>>,
    deadline: Option<Instant>,
) -> Received {
    let stopped = || std::io::Error::other("pipe reader stopped");
    let read = match deadline {
        None => rx.recv().map_err(|_| stopped()),
        Some(deadline) => {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(read) => Ok(read),
                Err(mpsc::RecvTimeoutError::Timeout) => return Received::TimedOut,
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
            }
        }
    };
    match read {
        Ok(Ok(bytes)) => Received::Bytes(bytes),
        Ok(Err(e)) | Err(e) => Received::Failed(e),
    }
}

/// `ETXTBSY`: the executable is open for writing (being installed or upgraded).
const ETXTBSY: i32 = 26;

/// Spawn, retrying while the executable is busy ("text file busy"), as
/// libcni does: up to 5 retries, backing off from 50 ms to 800 ms.
///
/// `pause(delay)` waits before a retry; it returns `false` to give up (the
/// deadline has come), and then the busy error is returned. Tests pass a
/// `pause` that makes the executable ready instead of sleeping.
fn spawn_retrying_busy(
    command: &mut Command,
    mut pause: impl FnMut(Duration) -> bool,
) -> std::io::Result<Child> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..5 {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) => {
                if !pause(delay) {
                    return Err(e);
                }
                delay *= 2;
            }
            other => return other,
        }
    }
    command.spawn()
}

/// Ask the plugin at `plugin` which versions it supports (`CNI_COMMAND=VERSION`).
///
/// Like libcni, this sets dummy values for `CNI_NETNS`, `CNI_IFNAME` and
/// `CNI_PATH` for plugins built with old runners that require them, and sends
/// `{"cniVersion": "<latest>"}` on stdin. A plugin that prints no
/// `supportedVersions` (spec 0.1.0) is reported as supporting 0.1.0.
///
/// ```no_run
/// let info = overlay_cni::exec::version_info("/usr/lib/cni/bridge".as_ref()).unwrap();
/// assert!(info.supports(overlay_cni::Version::V1_0_0));
/// ```
pub fn version_info(plugin: &Path) -> Result<VersionInfo, ExecError> {
    version_info_with_env(plugin, &[])
}

/// [`version_info`] with extra environment variables for the plugin (the
/// `CNI_*` ones are set by this function and win).
pub fn version_info_with_env(
    plugin: &Path,
    extra_env: &[(&str, &str)],
) -> Result<VersionInfo, ExecError> {
    version_info_with_timeout(plugin, extra_env, None)
}

/// [`version_info_with_env`] with a time limit, as
/// [`exec_plugin_with_timeout`]: a plugin that does not answer within
/// `timeout` is killed and [`ExecError::Timeout`] is returned.
///
/// ```no_run
/// use std::time::Duration;
///
/// let bridge = "/usr/lib/cni/bridge".as_ref();
/// let info = overlay_cni::exec::version_info_with_timeout(bridge, &[], Some(Duration::from_secs(5)))
///     .unwrap();
/// assert!(info.supports(overlay_cni::Version::V1_0_0));
/// ```
pub fn version_info_with_timeout(
    plugin: &Path,
    extra_env: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<VersionInfo, ExecError> {
    let stdin = format!(r#"{{"cniVersion":"{}"}}"#, crate::version::Version::LATEST);
    let env: Vec<(&str, &str)> = extra_env
        .iter()
        .copied()
        .chain([
            ("CNI_COMMAND", "VERSION"),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_PATH", "dummy"),
        ])
        .collect();
    let stdout = exec_plugin_with_timeout(plugin, &env, stdin.as_bytes(), timeout)?;
    let mut info: VersionInfo =
        serde_json::from_slice(&stdout).map_err(|source| ExecError::BadVersionInfo {
            plugin: plugin.to_owned(),
            source,
        })?;
    if info.supported_versions.is_empty() {
        info.supported_versions = vec![crate::version::Version::V0_1_0];
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_rejects_names_with_separators() {
        for bad in ["", "../bridge", "/bin/sh", ".", ".."] {
            assert!(matches!(
                find_in_path(bad, &[PathBuf::from("/usr/lib/cni")]),
                Err(ExecError::InvalidPluginName { .. })
            ));
        }
    }

    #[test]
    fn find_reports_the_searched_path() {
        let dirs = split_path("/nonexistent-a:/nonexistent-b");
        match find_in_path("bridge", &dirs) {
            Err(ExecError::NotFound { plugin, path }) => {
                assert_eq!(plugin, "bridge");
                assert_eq!(path, dirs);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn find_takes_the_first_directory_that_has_an_executable() {
        let dirs = split_path("/nonexistent:/bin:/usr/bin");
        let sh = find_in_path("sh", &dirs).unwrap();
        assert_eq!(sh, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn exec_returns_stdout_and_passes_stdin_and_env() {
        let out = exec_plugin(Path::new("/bin/sh"), &[("CNI_COMMAND", "ADD")], b"hello");
        // /bin/sh reads the script from stdin: "hello" is not a command.
        assert!(out.is_err());
        let out = exec_plugin(
            Path::new("/bin/sh"),
            &[("CNI_COMMAND", "ADD")],
            b"printf '%s' \"$CNI_COMMAND\"",
        )
        .unwrap();
        assert_eq!(out, b"ADD");
    }

    #[test]
    fn exec_parses_a_plugin_error_object() {
        let err = exec_plugin(
            Path::new("/bin/sh"),
            &[],
            br#"echo '{"code":11,"msg":"later"}'; exit 1"#,
        )
        .unwrap_err();
        let cni: CniError = err.into();
        assert_eq!(cni.code, crate::error::ErrorCode::TryAgainLater);
        assert_eq!(cni.msg, "later");
    }

    #[test]
    fn exec_reports_failure_without_error_json() {
        let err = exec_plugin(Path::new("/bin/sh"), &[], b"echo oops; exit 3").unwrap_err();
        match err {
            ExecError::Failed {
                stdout,
                stderr,
                status,
                ..
            } => {
                assert_eq!(stdout, "oops\n");
                assert_eq!(stderr, "");
                assert_eq!(status.code(), Some(3));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn failure_with_empty_stdout_carries_the_stderr_text() {
        let err =
            exec_plugin(Path::new("/bin/sh"), &[], b"echo 'no bridge' >&2; exit 2").unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { stdout, stderr, status, .. }
                if stdout.is_empty() && stderr == "no bridge\n" && status.code() == Some(2)),
            "{err:?}"
        );
        assert!(err.to_string().ends_with(r#": "no bridge\n""#), "{err}");
        let cni: CniError = err.into();
        assert!(cni.msg.contains("no bridge"), "{cni:?}");

        let silent = exec_plugin(Path::new("/bin/sh"), &[], b"exit 2").unwrap_err();
        assert!(
            silent.to_string().ends_with("with no error message"),
            "{silent}"
        );
    }

    #[test]
    fn stderr_is_not_used_when_stdout_has_text_as_in_libcni() {
        // An error object on stdout is the error, whatever stderr says.
        let err = exec_plugin(
            Path::new("/bin/sh"),
            &[],
            br#"echo '{"code":7,"msg":"bad"}'; echo noise >&2; exit 1"#,
        )
        .unwrap_err();
        assert_eq!(
            err.cni_error(),
            Some(&CniError::new(
                crate::error::ErrorCode::InvalidNetworkConfig,
                "bad"
            ))
        );
        // Unparsable stdout is the message; stderr is not.
        let err = exec_plugin(
            Path::new("/bin/sh"),
            &[],
            b"echo out; echo noise >&2; exit 1",
        )
        .unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { stdout, stderr, .. } if stdout == "out\n" && stderr.is_empty()),
            "{err:?}"
        );
    }

    #[test]
    fn spawn_retries_while_the_executable_is_open_for_writing() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .unwrap();
        file.write_all(b"#!/bin/sh\necho ready\n").unwrap();
        // While `file` is open for writing, exec fails with ETXTBSY, so the
        // first spawn fails for certain; the first pause closes the file
        // (the writer finishes). Later pauses, if any (another test's fork
        // may briefly hold a copy of the descriptor), wait for real.
        let mut file = Some(file);
        let mut pauses = Vec::new();
        let mut command = Command::new(&path);
        command.stdout(Stdio::piped());
        let child = spawn_retrying_busy(&mut command, |delay| {
            pauses.push(delay);
            if file.take().is_none() {
                std::thread::sleep(delay);
            }
            true
        })
        .unwrap();
        assert_eq!(child.wait_with_output().unwrap().stdout, b"ready\n");
        assert_eq!(pauses.first(), Some(&Duration::from_millis(50)));
    }

    #[test]
    fn spawn_gives_up_on_a_busy_executable_when_pause_says_so() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin");
        let _writing = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .unwrap();
        let mut pauses = 0;
        let err = spawn_retrying_busy(&mut Command::new(&path), |_| {
            pauses += 1;
            false
        })
        .unwrap_err();
        assert_eq!((err.raw_os_error(), pauses), (Some(ETXTBSY), 1));
    }

    #[test]
    fn timeout_kills_a_hanging_plugin_and_spares_a_quick_one() {
        let start = Instant::now();
        let err = exec_plugin_with_timeout(
            Path::new("/bin/sh"),
            &[],
            b"exec sleep 30",
            Some(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(
            matches!(err, ExecError::Timeout { after, .. } if after == Duration::from_millis(200))
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let out = exec_plugin_with_timeout(
            Path::new("/bin/sh"),
            &[],
            b"echo quick",
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(out, b"quick\n");
    }

    #[test]
    fn timeout_is_not_blocked_by_a_leftover_process_holding_stdout() {
        let start = Instant::now();
        let err = exec_plugin_with_timeout(
            Path::new("/bin/sh"),
            &[],
            // The leftover `sleep` outlives the deadline but not the test run.
            b"sleep 1 & echo started",
            Some(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
