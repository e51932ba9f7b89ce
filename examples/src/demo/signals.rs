//! SIGINT and SIGTERM, caught and handed to a thread of their own, so that a
//! program can clean up after them without blocking them in its children.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};

/// The signals that stop the demo.
pub const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// The write end of the pipe [`on_signal`] writes the signal number to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The handler of SIGINT and SIGTERM: it only writes the signal number to
/// [`SIGNAL_PIPE`] (write(2) is async-signal-safe), for the signal thread.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: errno is thread-local; write(2) gets a valid one-byte buffer.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = u8::try_from(sig).unwrap_or(0);
        libc::write(
            SIGNAL_PIPE.load(Ordering::SeqCst),
            std::ptr::from_ref(&byte).cast(),
            1,
        );
        *libc::__errno_location() = errno;
    }
}

/// Catch SIGINT and SIGTERM and take them on a thread of their own: the
/// first one is passed to `on_first`, later ones only print that the cleanup
/// is under way. Call it once per process.
///
/// The signals are caught, not blocked: a blocked signal stays blocked in
/// the processes the program starts (`std::process::Command` keeps the
/// signal mask), and `overlayd` must stop on SIGTERM. A caught signal is
/// reset to its default action by exec(2), so `overlayd`, `ping` and
/// `tcpdump` react to Ctrl-C as usual. A signal that is ignored when the
/// program starts (a background job of a shell without job control) stays
/// ignored.
pub fn take_stop_signals<F>(on_first: F) -> Result<()>
where
    F: FnOnce(libc::c_int) + Send + 'static,
{
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: pipe2(2) gets a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("signal pipe");
    }
    let [read_end, write_end] = fds;
    SIGNAL_PIPE.store(write_end, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut on_first = Some(on_first);
            loop {
                let mut byte = 0u8;
                // SAFETY: read(2) into a valid one-byte buffer.
                let n = unsafe { libc::read(read_end, std::ptr::from_mut(&mut byte).cast(), 1) };
                if n != 1 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                let sig = libc::c_int::from(byte);
                match on_first.take() {
                    Some(first) => first(sig),
                    None => eprintln!("{}: still cleaning up", signal_name(sig)),
                }
            }
        })
        .context("start the signal thread")?;
    for sig in STOP_SIGNALS {
        // SAFETY: sigaction(2) with zero-initialised (valid) structures, a
        // handler of the right type and an initialised mask.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                return Err(std::io::Error::last_os_error()).context("read a signal's action");
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_flags = libc::SA_RESTART;
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("catch SIGINT and SIGTERM");
            }
        }
    }
    Ok(())
}

/// `SIGINT`, `SIGTERM`, or `signal` for any other number.
pub fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// The exit status of a process that stopped on `sig`, as a shell reports
/// one killed by it: 128 + the signal number (1 if that does not fit).
pub fn exit_status(sig: libc::c_int) -> u8 {
    u8::try_from(128 + sig).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exit_statuses_are_the_shells() {
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGHUP), "signal");
        assert_eq!(exit_status(libc::SIGINT), 130);
        assert_eq!(exit_status(libc::SIGTERM), 143);
        assert_eq!(exit_status(200), 1);
    }
}
