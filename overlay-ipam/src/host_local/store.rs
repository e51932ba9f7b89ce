//! The on-disk store of the reference `host-local` plugin.
//!
//! Layout of `<dataDir>/<network>/`:
//! - one file per reserved address, named by the address (`198.51.100.2`,
//!   `2001:db8::2`), holding `<containerID>\r\n<ifname>` (files written by
//!   old versions hold only the container ID);
//! - `last_reserved_ip.<i>`: the address last reserved from range set `i`;
//! - `lock`: every operation holds `flock(LOCK_EX)` on it, which makes this
//!   store safe to share with concurrent `host-local` processes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The prefix of the files that remember each range set's last address.
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// Between the container ID and the interface name in a reservation file.
const LINE_BREAK: &str = "\r\n";

/// Replace the content of the small file `path` with `content`, creating
/// it with mode 0644 (as Go's `os.WriteFile(name, data, 0644)`, which
/// `host-local` uses), by overwriting in place and cutting what is left of
/// a longer old content.
///
/// The result is the same as `os.WriteFile`'s `O_TRUNC` and write, and so
/// is crash safety (neither syncs; readers hold the store's lock), but
/// truncating to zero costs more than the whole write on ext4: the file's
/// block is freed (a synchronous discard on a `discard` mount) and, with
/// `auto_da_alloc`, the new block is written back on `close`. That was
/// about 7% of the CPU time of an `overlay-bridge` ADD.
fn overwrite(path: &Path, content: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    file.write_all_at(content, 0)?;
    let len = u64::try_from(content.len()).unwrap_or(u64::MAX);
    if file.metadata()?.len() > len {
        file.set_len(len)?;
    }
    Ok(())
}

/// The longest content [`read_small`] returns: more than any address
/// written as text (at most 45 bytes).
const SMALL_FILE_MAX: usize = 64;

/// The content of the small file `path`, or `None` when it is longer than
/// [`SMALL_FILE_MAX`]; one `read` for the usual case, without the size
/// look-up of [`fs::read`].
fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = File::open(path)?;
    let mut buf = [0u8; SMALL_FILE_MAX + 1];
    let mut len = 0;
    loop {
        // `len <= SMALL_FILE_MAX < buf.len()` on entry, so the slice is not empty.
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(Some(buf[..len].to_vec())),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if len > SMALL_FILE_MAX {
            return Ok(None);
        }
    }
}

/// A failed store operation: what was done, on which path, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (`create directory`, `lock`, `write`, ...).
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Who holds a reserved address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Owner {
    /// The container ID.
    pub container_id: String,
    /// The interface name; `None` for files written by `host-local`
    /// versions that recorded only the container ID.
    pub ifname: Option<String>,
}

impl Owner {
    fn parse(content: &str) -> Owner {
        let content = content.trim();
        match content.split_once(LINE_BREAK) {
            Some((id, ifname)) => Owner {
                container_id: id.to_owned(),
                ifname: Some(ifname.to_owned()),
            },
            None => Owner {
                container_id: content.to_owned(),
                ifname: None,
            },
        }
    }

    /// Whether the owner is the attachment (`container_id`, `ifname`),
    /// exactly (`legacy == false`) or by container ID only, as recorded by
    /// old versions (`legacy == true`).
    fn is(&self, container_id: &str, ifname: &str, legacy: bool) -> bool {
        self.container_id == container_id.trim()
            && match legacy {
                false => self.ifname.as_deref() == Some(ifname),
                true => self.ifname.is_none(),
            }
    }
}

/// One reserved address and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reservation {
    /// The address.
    pub ip: IpAddr,
    /// Its owner.
    pub owner: Owner,
}

/// The store of one network: `<dataDir>/<network>`, opened (created if
/// needed) but not locked; [`Store::lock`] gives access to the reservations.
///
/// ```
/// use overlay_ipam::host_local::Store;
///
/// let dir = std::env::temp_dir().join(format!("ipam-doc-{}", std::process::id()));
/// let store = Store::open(&dir, "pods").unwrap();
/// let locked = store.lock().unwrap();
/// let ip = "198.51.100.2".parse().unwrap();
/// assert!(locked.reserve("c1", "eth0", ip, 0).unwrap());
/// assert!(!locked.reserve("c2", "eth0", ip, 0).unwrap()); // taken
/// assert_eq!(locked.last_reserved_ip(0).unwrap(), Some(ip));
/// assert_eq!(locked.release("c1", "eth0").unwrap(), vec![ip]);
/// # drop(locked);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    lock: File,
}

/// A [`Store`] holding the exclusive lock; unlocked when dropped.
#[derive(Debug)]
pub struct LockedStore<'a> {
    store: &'a Store,
}

impl Store {
    /// Open the store of `network` under `data_dir`, creating the directory
    /// (mode 0755) and its `lock` file as `host-local` does.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, StoreError> {
        let dir = data_dir.join(network);
        let lock_path = dir.join("lock");
        // As `host-local`: created with mode 0750, never truncated (it is
        // empty; only its flock matters).
        let open_lock = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o750)
                .open(&lock_path)
                .or_else(|_| File::open(&lock_path))
        };
        // The directory exists except at a network's first use: the lock
        // file first saves the `mkdir -p` (two system calls with path
        // walks, a few percent of an ADD) on every other call. When that
        // fails, the steps (and errors) are those of `host-local`.
        let lock = match open_lock() {
            Ok(lock) => lock,
            Err(_) => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&dir)
                    .map_err(io_err("create directory", &dir))?;
                open_lock().map_err(io_err("open", &lock_path))?
            }
        };
        Ok(Store { dir, lock })
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait for the exclusive lock (`flock(LOCK_EX)` on `lock`).
    pub fn lock(&self) -> Result<LockedStore<'_>, StoreError> {
        loop {
            // SAFETY: flock on a file descriptor this `Store` owns.
            let rc = unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(LockedStore { store: self });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err("lock", &self.dir.join("lock"))(e));
            }
        }
    }

    /// Whether the process may create reservations: the directory is
    /// writable and searchable (`access(W_OK | X_OK)`; false on a read-only
    /// file system).
    pub fn is_writable(&self) -> bool {
        let Ok(path) = std::ffi::CString::new(self.dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `path` is a valid NUL-terminated string for the call's duration.
        unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    }
}

impl Drop for LockedStore<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on a file descriptor the borrowed `Store` owns.
        // Closing the descriptor would release the lock too; unlocking early
        // lets a reused `Store` lock again.
        unsafe {
            libc::flock(self.store.lock.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl LockedStore<'_> {
    fn path_of(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    /// Reserve `ip` for the attachment, recording it as the last address
    /// of range set `range_set`. `Ok(false)` when the address is taken.
    pub fn reserve(
        &self,
        container_id: &str,
        ifname: &str,
        ip: IpAddr,
        range_set: usize,
    ) -> Result<bool, StoreError> {
        let path = self.path_of(&ip.to_string());
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err("create", &path)(e)),
        };
        let content = format!("{}{LINE_BREAK}{ifname}", container_id.trim());
        if let Err(e) = file.write_all(content.as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(io_err("write", &path)(e));
        }
        drop(file);
        let last = self.path_of(&format!("{LAST_RESERVED_PREFIX}{range_set}"));
        overwrite(&last, ip.to_string().as_bytes()).map_err(io_err("write", &last))?;
        Ok(true)
    }

    /// The address last reserved from range set `range_set`, if recorded
    /// and readable as an address.
    pub fn last_reserved_ip(&self, range_set: usize) -> Result<Option<IpAddr>, StoreError> {
        let path = self.path_of(&format!("{LAST_RESERVED_PREFIX}{range_set}"));
        match read_small(&path) {
            Ok(Some(content)) => Ok(std::str::from_utf8(&content)
                .ok()
                .and_then(|s| s.parse().ok())),
            // Longer than any address: not one.
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Every reservation of the network (files named by an address).
    /// Files that vanish or cannot be read while listing are skipped, as
    /// `host-local` does.
    pub fn reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        let dir = &self.store.dir;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            if let Ok(content) = fs::read_to_string(entry.path()) {
                out.push(Reservation {
                    ip,
                    owner: Owner::parse(&content),
                });
            }
        }
        Ok(out)
    }

    /// The addresses held by the attachment (or by its container ID in
    /// files of old versions).
    pub fn get_by_id(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        Ok(self
            .reservations()?
            .into_iter()
            .filter(|r| {
                r.owner.is(container_id, ifname, false) || r.owner.is(container_id, ifname, true)
            })
            .map(|r| r.ip)
            .collect())
    }

    /// Remove one reservation; absent is success.
    pub fn remove(&self, ip: IpAddr) -> Result<(), StoreError> {
        let path = self.path_of(&ip.to_string());
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Release the attachment's addresses and return them: those recorded
    /// as `<containerID>\r\n<ifname>`, or, when there are none, those of
    /// old versions recorded with the container ID only. Releasing nothing
    /// is success.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        let all = self.reservations()?;
        let mut released = Vec::new();
        for legacy in [false, true] {
            for r in all
                .iter()
                .filter(|r| r.owner.is(container_id, ifname, legacy))
            {
                self.remove(r.ip)?;
                released.push(r.ip);
            }
            if !released.is_empty() {
                break;
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ovipam-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn reservation_files_have_host_local_content_and_modes() {
        let dir = temp_dir("layout");
        let store = Store::open(&dir, "net").unwrap();
        let locked = store.lock().unwrap();
        assert!(
            locked
                .reserve(" c1 ", "eth0", "2001:db8::2".parse().unwrap(), 1)
                .unwrap()
        );
        let net = dir.join("net");
        assert_eq!(fs::read(net.join("2001:db8::2")).unwrap(), b"c1\r\neth0");
        assert_eq!(
            fs::read(net.join("last_reserved_ip.1")).unwrap(),
            b"2001:db8::2"
        );
        let mode = |p: &str| fs::metadata(net.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("2001:db8::2"), 0o644);
        assert_eq!(mode("last_reserved_ip.1"), 0o644);
        assert!(net.join("lock").exists());
        drop(locked);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn release_prefers_exact_owner_and_falls_back_to_legacy_files() {
        let dir = temp_dir("legacy");
        let store = Store::open(&dir, "net").unwrap();
        let locked = store.lock().unwrap();
        let net = dir.join("net");
        fs::write(net.join("198.51.100.9"), "c1\n").unwrap();
        assert!(
            locked
                .reserve("c1", "eth1", "198.51.100.3".parse().unwrap(), 0)
                .unwrap()
        );
        assert_eq!(locked.get_by_id("c1", "eth1").unwrap().len(), 2);
        // eth0 has no exact file: the legacy file (container ID only) goes.
        assert_eq!(
            locked.release("c1", "eth0").unwrap(),
            vec!["198.51.100.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            locked.release("c1", "eth1").unwrap(),
            vec!["198.51.100.3".parse::<IpAddr>().unwrap()]
        );
        assert!(locked.release("c1", "eth1").unwrap().is_empty());
        // The bookkeeping files are not reservations.
        assert!(locked.reservations().unwrap().is_empty());
        drop(locked);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_reserved_ip_is_replaced_whole_by_a_shorter_or_longer_address() {
        let dir = temp_dir("overwrite");
        let store = Store::open(&dir, "net").unwrap();
        let locked = store.lock().unwrap();
        let last = dir.join("net/last_reserved_ip.0");
        for ip in [
            "198.51.100.100",
            "198.51.100.9",
            "2001:db8::1234:5678",
            "198.51.100.10",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(locked.reserve("c1", "eth0", ip, 0).unwrap());
            assert_eq!(fs::read_to_string(&last).unwrap(), ip.to_string());
            assert_eq!(locked.last_reserved_ip(0).unwrap(), Some(ip));
        }
        drop(locked);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_last_reserved_ip_is_treated_as_absent() {
        let dir = temp_dir("last");
        let store = Store::open(&dir, "net").unwrap();
        let locked = store.lock().unwrap();
        assert_eq!(locked.last_reserved_ip(0).unwrap(), None);
        fs::write(dir.join("net/last_reserved_ip.0"), "garbage").unwrap();
        assert_eq!(locked.last_reserved_ip(0).unwrap(), None);
        fs::write(dir.join("net/last_reserved_ip.0"), [b'1'; 200]).unwrap();
        assert_eq!(locked.last_reserved_ip(0).unwrap(), None);
        fs::write(dir.join("net/last_reserved_ip.0"), "198.51.100.7\n").unwrap();
        assert_eq!(
            locked.last_reserved_ip(0).unwrap(),
            None,
            "as host-local: not trimmed"
        );
        drop(locked);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lock_excludes_a_second_store_until_released() {
        let dir = temp_dir("lock");
        let a = Store::open(&dir, "net").unwrap();
        let b = Store::open(&dir, "net").unwrap();
        let held = a.lock().unwrap();
        // SAFETY: non-blocking flock on b's own descriptor.
        let rc = unsafe { libc::flock(b.lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second lock must not be granted while held");
        drop(held);
        drop(b.lock().unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
