//! The names of the namespaces a cluster creates, for a cleanup from another
//! thread.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Namespace names a cluster has created, shared with whoever must be able
/// to delete them from another thread (a signal handler).
#[derive(Debug, Clone, Default)]
pub struct NetnsRegistry(Arc<Mutex<Vec<String>>>);

impl NetnsRegistry {
    pub(super) fn add(&self, name: &str) {
        if let Ok(mut names) = self.0.lock() {
            names.push(name.to_owned());
        }
    }

    /// The names recorded so far, in order of creation.
    pub fn names(&self) -> Vec<String> {
        self.0.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Kill every process in the recorded namespaces and delete them, the
    /// newest first. Errors are ignored: a namespace may be gone already.
    pub fn delete_all(&self) {
        let names = match self.0.lock() {
            Ok(mut names) => std::mem::take(&mut *names),
            Err(_) => return,
        };
        for name in names.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>()
                        && pid > 0
                        && u32::try_from(pid).ok() != Some(std::process::id())
                    {
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl NetnsRegistry {
    /// [`NetnsRegistry::delete_all`], then the same for every namespace
    /// named `<prefix>-*` that is not recorded: one a step still under way
    /// created after the names were taken (a signal handler cleaning up
    /// while the cluster is busy on another thread).
    pub fn delete_all_with_prefix(&self, prefix: &str) {
        self.delete_all();
        let stray = NetnsRegistry::default();
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if has_prefix(&name, prefix) {
                    stray.add(&name);
                }
            }
        }
        stray.delete_all();
    }
}

/// Whether `name` is `<prefix>-<something>`.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// The inodes of the network namespaces named `<prefix>-*` in `/run/netns`.
///
/// A namespace whose name is deleted lives on while a process is inside;
/// its inode still finds that process ([`kill_children_in`]).
pub fn netns_inodes(prefix: &str) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter(|e| has_prefix(&e.file_name().to_string_lossy(), prefix))
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.ino())
        .collect()
}

/// SIGKILL every child of this process whose network namespace is one of
/// `inodes` (children only: a namespace inode may be reused as soon as the
/// namespace is destroyed, by anyone).
pub fn kill_children_in(inodes: &BTreeSet<u64>) {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let held = std::fs::read_link(entry.path().join("ns/net"))
            .ok()
            .and_then(|l| netns_inode_of_link(l.to_str()?))
            .is_some_and(|ino| inodes.contains(&ino));
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if held && parent_pid(&stat) == Some(me) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The inode in a `/proc/<pid>/ns/net` link's target, `net:[4026532281]`.
fn netns_inode_of_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The parent pid in `/proc/<pid>/stat`: the second field after the
/// command, which is in parentheses and may hold spaces and parentheses.
fn parent_pid(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_at_a_dash() {
        assert!(has_prefix("ovd-12-n1", "ovd-12"));
        assert!(!has_prefix("ovd-123-n1", "ovd-12"));
        assert!(!has_prefix("ovd-12", "ovd-12"));
    }

    #[test]
    fn proc_fields_are_read_as_the_kernel_writes_them() {
        assert_eq!(netns_inode_of_link("net:[4026532281]"), Some(4_026_532_281));
        assert_eq!(netns_inode_of_link("mnt:[4026532281]"), None);
        assert_eq!(netns_inode_of_link("net:[x]"), None);
        assert_eq!(parent_pid("42 (ping) S 7 42 7 0"), Some(7));
        assert_eq!(parent_pid("42 (a) b) (c) R 9 42 7 0"), Some(9));
        assert_eq!(parent_pid("42 (ping"), None);
    }

    #[test]
    fn this_process_is_found_by_its_namespace_inode() {
        let target = std::fs::read_link("/proc/self/ns/net").unwrap();
        let ino = netns_inode_of_link(target.to_str().unwrap()).unwrap();
        let meta = std::fs::metadata("/proc/self/ns/net").unwrap();
        assert_eq!(ino, meta.ino());
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(parent_pid(&stat), Some(std::os::unix::process::parent_id()));
    }
}
