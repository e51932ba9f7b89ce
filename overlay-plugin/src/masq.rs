//! Masquerading a pod's traffic that leaves its subnet, through nftables.
//!
//! The reference `bridge` plugin's `ipMasq`: traffic from the pod's address
//! to anywhere outside its subnet, except multicast, leaves with the node's
//! address. Here each attachment gets its own chain in a table owned by
//! this crate (`table inet overlay`), a `nat` base chain on `postrouting`
//! named after the attachment (`masq-<attachment hash>`), holding one rule
//! per pod address:
//!
//! ```text
//! table inet overlay {
//!     chain masq-36b6a2f1c0a80e55 {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 198.51.100.7 ip daddr != 198.51.100.0/24 ip daddr != 224.0.0.0/4 masquerade comment "overlay masq"
//!     }
//! }
//! ```
//!
//! Every change is one `nft -f -` transaction, so it applies whole or not
//! at all. Adding is idempotent (the chain is created if missing and
//! flushed before its rules are written); removing needs no address (the
//! chain is found by name) and succeeds when nothing is there. The table
//! stays when its last chain goes, as `iptables`' `nat` table does.
//!
//! The transaction goes through an [`NftRunner`]: [`NftCommand`] spawns
//! `nft -f -` (in the calling process's network namespace: a CNI plugin's
//! is the host's); [`RecordingRunner`] records the text for tests.
//!
//! ```
//! use overlay_plugin::masq::{Masquerade, RecordingRunner};
//!
//! let masq = Masquerade::new(RecordingRunner::default());
//! masq.add(0x36b6a2f1c0a80e55, &["198.51.100.7/24".parse().unwrap()]).unwrap();
//! masq.del(0x36b6a2f1c0a80e55).unwrap();
//! let scripts = masq.runner().scripts();
//! assert!(scripts[0].contains(
//!     "ip saddr 198.51.100.7 ip daddr != 198.51.100.0/24 ip daddr != 224.0.0.0/4 masquerade"
//! ));
//! assert!(scripts[1].contains("delete chain inet overlay masq-36b6a2f1c0a80e55"));
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ipnet::IpNet;
use overlay_cni::CniError;

use crate::error::CODE_FIREWALL;

/// The table this crate owns.
pub const TABLE: &str = "overlay";

/// Why an nftables transaction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    /// `nft` could not be started or fed.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the transaction; nothing of it was applied.
    #[error("nft -f - failed: {stderr}")]
    Refused {
        /// What `nft` printed on stderr, trimmed.
        stderr: String,
    },
}

impl From<NftError> for CniError {
    /// [`CODE_FIREWALL`] with the reason.
    fn from(e: NftError) -> CniError {
        CniError::plugin(CODE_FIREWALL, e.to_string())
    }
}

/// Applies one `nft -f -` transaction.
pub trait NftRunner {
    /// Apply `script` (nft's file syntax) as one transaction.
    fn run(&self, script: &str) -> Result<(), NftError>;
}

/// The real runner: `nft -f -` with the script on stdin.
///
/// ```no_run
/// use overlay_plugin::masq::{NftCommand, NftRunner};
///
/// NftCommand::default().run("add table inet overlay\n").unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct NftCommand {
    program: PathBuf,
    args: Vec<String>,
}

impl Default for NftCommand {
    /// `nft`, found on `PATH`.
    fn default() -> Self {
        NftCommand {
            program: PathBuf::from("nft"),
            args: Vec::new(),
        }
    }
}

impl NftCommand {
    /// Run `program` instead of `nft` from `PATH`.
    ///
    /// ```
    /// let runner = overlay_plugin::masq::NftCommand::default().program("/usr/sbin/nft");
    /// # let _ = runner;
    /// ```
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Arguments before `-f -`, for a program that runs `nft` (for example
    /// `ip netns exec NAME nft`, to apply the transaction in a named
    /// namespace).
    ///
    /// ```
    /// let runner = overlay_plugin::masq::NftCommand::default()
    ///     .program("ip")
    ///     .args(["netns", "exec", "pod-1", "nft"]);
    /// # let _ = runner;
    /// ```
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
}

impl NftRunner for NftCommand {
    fn run(&self, script: &str) -> Result<(), NftError> {
        let spawn_error = |source| NftError::Spawn {
            program: self.program.display().to_string(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(spawn_error)?;
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NftError::Refused {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }
}

/// A runner that records each script and applies nothing; it fails the
/// scripts that contain [`RecordingRunner::fail_on`]'s text.
///
/// ```
/// use overlay_plugin::masq::{NftRunner, RecordingRunner};
///
/// let runner = RecordingRunner::default().fail_on("masquerade");
/// runner.run("add table inet overlay\n").unwrap();
/// assert!(runner.run("add rule inet overlay c masquerade\n").is_err());
/// assert_eq!(runner.scripts().len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct RecordingRunner {
    scripts: Mutex<Vec<String>>,
    fail_on: Option<String>,
}

impl RecordingRunner {
    /// Refuse every script that contains `text`.
    pub fn fail_on(mut self, text: &str) -> Self {
        self.fail_on = Some(text.to_owned());
        self
    }

    /// The scripts run so far, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.scripts.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl NftRunner for RecordingRunner {
    fn run(&self, script: &str) -> Result<(), NftError> {
        if let Ok(mut scripts) = self.scripts.lock() {
            scripts.push(script.to_owned());
        }
        match &self.fail_on {
            Some(text) if script.contains(text.as_str()) => Err(NftError::Refused {
                stderr: format!("refused: script contains {text:?}"),
            }),
            _ => Ok(()),
        }
    }
}

/// Per-attachment masquerading through an [`NftRunner`]; see the
/// [module docs](self).
#[derive(Debug, Default)]
pub struct Masquerade<R> {
    runner: R,
}

impl<R: NftRunner> Masquerade<R> {
    /// Masquerading applied through `runner`.
    pub fn new(runner: R) -> Self {
        Masquerade { runner }
    }

    /// The runner.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// The chain of the attachment with hash `attachment_hash`
    /// (`overlay_cni::plugin::attachment_hash`).
    ///
    /// ```
    /// assert_eq!(overlay_plugin::masq::Masquerade::<overlay_plugin::masq::NftCommand>::chain(0xab), "masq-00000000000000ab");
    /// ```
    pub fn chain(attachment_hash: u64) -> String {
        format!("masq-{attachment_hash:016x}")
    }

    /// The transaction of [`Masquerade::add`].
    pub fn add_script(attachment_hash: u64, ips: &[IpNet]) -> String {
        let chain = Self::chain(attachment_hash);
        let mut s = Self::ensure_chain(&chain);
        let _ = writeln!(s, "flush chain inet {TABLE} {chain}");
        for ip in ips {
            let (family, multicast) = match ip {
                IpNet::V4(_) => ("ip", "224.0.0.0/4"),
                IpNet::V6(_) => ("ip6", "ff00::/8"),
            };
            let _ = writeln!(
                s,
                "add rule inet {TABLE} {chain} {family} saddr {} {family} daddr != {} {family} daddr != {multicast} masquerade comment \"overlay masq\"",
                ip.addr(),
                ip.trunc()
            );
        }
        s
    }

    /// The transaction of [`Masquerade::del`].
    pub fn del_script(attachment_hash: u64) -> String {
        let chain = Self::chain(attachment_hash);
        let mut s = Self::ensure_chain(&chain);
        let _ = writeln!(s, "flush chain inet {TABLE} {chain}");
        let _ = writeln!(s, "delete chain inet {TABLE} {chain}");
        s
    }

    /// Create the table and the attachment's chain when missing (a no-op
    /// when they exist), so that the rest of a transaction cannot fail on
    /// their absence.
    fn ensure_chain(chain: &str) -> String {
        format!(
            "add table inet {TABLE}\n\
             add chain inet {TABLE} {chain} {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
        )
    }

    /// Masquerade the traffic from each address of `ips` (with its
    /// subnet's prefix length) leaving that subnet, except multicast,
    /// replacing what the attachment had. Code 102 ([`CODE_FIREWALL`]) on
    /// failure, with nothing changed.
    pub fn add(&self, attachment_hash: u64, ips: &[IpNet]) -> Result<(), CniError> {
        Ok(self.runner.run(&Self::add_script(attachment_hash, ips))?)
    }

    /// Remove the attachment's masquerading; absent is success.
    pub fn del(&self, attachment_hash: u64) -> Result<(), CniError> {
        Ok(self.runner.run(&Self::del_script(attachment_hash))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type M = Masquerade<RecordingRunner>;

    #[test]
    fn add_is_one_idempotent_transaction_per_attachment_and_family() {
        let script = M::add_script(
            0x1234,
            &[
                "198.51.100.7/24".parse().expect("valid"),
                "2001:db8:15::7/64".parse().expect("valid"),
            ],
        );
        assert_eq!(
            script,
            "add table inet overlay\n\
             add chain inet overlay masq-0000000000001234 { type nat hook postrouting priority srcnat; policy accept; }\n\
             flush chain inet overlay masq-0000000000001234\n\
             add rule inet overlay masq-0000000000001234 ip saddr 198.51.100.7 ip daddr != 198.51.100.0/24 ip daddr != 224.0.0.0/4 masquerade comment \"overlay masq\"\n\
             add rule inet overlay masq-0000000000001234 ip6 saddr 2001:db8:15::7 ip6 daddr != 2001:db8:15::/64 ip6 daddr != ff00::/8 masquerade comment \"overlay masq\"\n"
        );
    }

    #[test]
    fn del_needs_no_address_and_creates_before_it_deletes() {
        let script = M::del_script(0x1234);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("add chain inet overlay masq-0000000000001234 {"));
        assert_eq!(lines[3], "delete chain inet overlay masq-0000000000001234");
    }

    #[test]
    fn a_refused_transaction_is_code_102_with_nfts_reason() {
        let masq = Masquerade::new(RecordingRunner::default().fail_on("masquerade"));
        let err = masq
            .add(1, &["198.51.100.7/24".parse().expect("valid")])
            .unwrap_err();
        assert_eq!(err.code, overlay_cni::ErrorCode::Other(102));
        assert!(err.msg.contains("refused"), "{err:?}");
        masq.del(1).expect("del has no masquerade rule");
        assert_eq!(masq.runner().scripts().len(), 2);
    }
}
