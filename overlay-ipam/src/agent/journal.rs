//! Releases while the node agent is down (see the [module
//! docs](super#releases-while-the-agent-is-down)): the plugin's release call
//! that falls back to the journal, and the journal itself (plain files).

use std::io::Write;
use std::path::{Path, PathBuf};

use overlay_cni::CniError;

use super::{
    AgentIpam, AgentRequest, AgentResponse, Attachment, PendingCall, ProtocolError, decode_request,
    encode_request, read_line,
};

/// A release sent to the agent ([`AgentIpam::send_release`]).
#[derive(Debug)]
#[must_use = "finish() reads the answer or journals the release"]
pub struct PendingRelease<'a> {
    pub(super) agent: &'a AgentIpam,
    pub(super) attachment: Attachment,
    pub(super) call: Result<PendingCall<'a>, CniError>,
}

impl PendingRelease<'_> {
    /// The release's outcome: `Ok` when the agent released (or held
    /// nothing for the attachment), and also when it could not be reached
    /// or did not answer and the release was recorded in the journal. The
    /// agent's error answer is that error; a journal that cannot be
    /// written leaves the original code 11, with the reason in `details`.
    pub fn finish(self) -> Result<(), CniError> {
        let unreachable = match self.call {
            Ok(call) => match call.response() {
                Ok(AgentResponse::Done) => return Ok(()),
                Ok(AgentResponse::Error(e)) => return Err(e.into()),
                Ok(other) => return Err(self.agent.unexpected("release", &other)),
                Err(silent) => silent,
            },
            Err(unreachable) => unreachable,
        };
        match self.agent.journal().record(&self.attachment) {
            Ok(()) => Ok(()),
            Err(e) => Err(unreachable.with_details(format!(
                "recording the release in {} failed too: {e}",
                self.agent.journal().dir().display()
            ))),
        }
    }
}

/// Releases recorded for the node agent while it could not be reached: a
/// directory of one file per attachment, holding the `release` request
/// line of the [protocol](super) (so at most [`MAX_MESSAGE`](super::MAX_MESSAGE) bytes). The
/// plugin [`record`](Self::record)s; the agent reads them with
/// [`pending`](Self::pending), applies each and [`remove`](Self::remove)s
/// it (see the [module docs](super#releases-while-the-agent-is-down)).
///
/// ```
/// use overlay_ipam::agent::{Attachment, ReleaseJournal};
///
/// let dir = std::env::temp_dir().join(format!("journal-doc-{}", std::process::id()));
/// let journal = ReleaseJournal::new(&dir);
/// let a = Attachment::new("pods", "c1", "eth0");
/// journal.record(&a).unwrap();
/// journal.record(&a).unwrap(); // once per attachment
/// assert!(journal.contains(&a));
/// assert_eq!(journal.pending().unwrap().attachments, vec![a.clone()]);
/// journal.remove(&a).unwrap();
/// assert!(journal.pending().unwrap().attachments.is_empty());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseJournal {
    dir: PathBuf,
}

/// What [`ReleaseJournal::pending`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingReleases {
    /// The recorded releases, in file-name order.
    pub attachments: Vec<Attachment>,
    /// Entries that are not a `release` request line (left in place).
    pub unreadable: Vec<PathBuf>,
}

/// File-name suffix of a journal entry (temporary files differ).
const JOURNAL_SUFFIX: &str = ".release";

impl ReleaseJournal {
    /// The journal in `dir` (created on the first [`record`](Self::record)).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReleaseJournal { dir: dir.into() }
    }

    /// The journal of the agent listening on `socket`: the directory
    /// `pending-release` beside it, so the plugin and the agent find the
    /// same one from the socket path they share.
    ///
    /// ```
    /// use overlay_ipam::agent::ReleaseJournal;
    /// use std::path::Path;
    ///
    /// let j = ReleaseJournal::beside(Path::new("/run/overlay/overlayd.sock"));
    /// assert_eq!(j.dir(), Path::new("/run/overlay/pending-release"));
    /// ```
    pub fn beside(socket: &Path) -> Self {
        let parent = socket.parent().unwrap_or(Path::new(""));
        ReleaseJournal::new(parent.join("pending-release"))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry of `attachment`: named by its attachment hash
    /// (`overlay_cni::plugin::attachment_hash`), so recording twice keeps one.
    fn entry(&self, attachment: &Attachment) -> PathBuf {
        let hash = overlay_cni::plugin::attachment_hash(
            &attachment.network,
            &attachment.container_id,
            &attachment.ifname,
        );
        self.dir.join(format!("{hash:016x}{JOURNAL_SUFFIX}"))
    }

    /// Record the release of `attachment`, durably: the request line goes
    /// to a temporary file, flushed to disk, then renamed into place (the
    /// directory is created, mode 0700, when missing).
    pub fn record(&self, attachment: &Attachment) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let entry = self.entry(attachment);
        let temp = entry.with_extension(format!("tmp{}", std::process::id()));
        let line = encode_request(&AgentRequest::Release(attachment.clone()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(&line)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temp, &entry));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// Whether a release of `attachment` is recorded.
    pub fn contains(&self, attachment: &Attachment) -> bool {
        self.entry(attachment).exists()
    }

    /// Forget the release of `attachment` (once the agent applied it); one
    /// that is not recorded is no error.
    pub fn remove(&self, attachment: &Attachment) -> std::io::Result<()> {
        match std::fs::remove_file(self.entry(attachment)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The recorded releases. A missing directory holds none; temporary
    /// files of a [`record`](Self::record) under way are not entries.
    pub fn pending(&self) -> std::io::Result<PendingReleases> {
        let mut found = PendingReleases::default();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.to_str().is_some_and(|s| s.ends_with(JOURNAL_SUFFIX)))
            .collect();
        paths.sort();
        for path in paths {
            let release = std::fs::File::open(&path)
                .map_err(ProtocolError::Io)
                .and_then(read_line)
                .and_then(|line| decode_request(&line));
            match release {
                Ok(AgentRequest::Release(a)) if self.entry(&a) == path => found.attachments.push(a),
                _ => found.unreadable.push(path),
            }
        }
        Ok(found)
    }
}
