//! libcni's on-disk result cache.
//!
//! After a successful `ADD`, runtimes store what they need for later
//! `CHECK`, `DEL` and `GC` in `<cacheDir>/results/<network>-<containerID>-<ifname>`
//! (libcni's default cache dir is `/var/lib/cni`). The file is a JSON object:
//!
//! | key | value |
//! |-----|-------|
//! | `kind` | `"cniCacheV1"` |
//! | `containerId`, `ifName`, `networkName` | the attachment |
//! | `netns` | the namespace path (libcni 1.2 and later; omitted when empty) |
//! | `config` | the conflist bytes, base64 (standard alphabet, padded) |
//! | `cniArgs` | `CNI_ARGS` as `[[key, value], ...]` (omitted when empty) |
//! | `capabilityArgs` | the runtime's capability arguments (omitted when empty) |
//! | `result` | the chain's final result, in its own version |
//!
//! [`CacheEntry`] reads and writes exactly this layout, so libcni and this
//! crate can share a cache directory.
//!
//! ```
//! use overlay_cni::cache::{CacheEntry, cache_file_path};
//! use std::path::Path;
//!
//! let path = cache_file_path(Path::new("/var/lib/cni"), "pods", "c1", "eth0").unwrap();
//! assert_eq!(path, Path::new("/var/lib/cni/results/pods-c1-eth0"));
//!
//! let entry = CacheEntry::new("pods", "c1", "eth0", br#"{"name":"pods"}"#.to_vec());
//! let json: serde_json::Value = serde_json::from_slice(&entry.to_vec()).unwrap();
//! assert_eq!(json["kind"], "cniCacheV1");
//! assert_eq!(json["config"], "eyJuYW1lIjoicG9kcyJ9");
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::result::{CniResult, ResultError};
use crate::version::Version;

/// The `kind` of libcni's cache files.
pub const CACHE_KIND_V1: &str = "cniCacheV1";

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// Why reading or writing a cache file failed.
///
/// ```
/// let err = overlay_cni::cache::cache_file_path("/var/lib/cni".as_ref(), "pods", "", "eth0").unwrap_err();
/// assert!(err.to_string().contains("container ID"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Network name, container ID or interface name is empty.
    #[error(
        "cache file path requires network name ({network:?}), container ID ({container_id:?}) and interface name ({ifname:?})"
    )]
    IncompleteKey {
        /// Network name.
        network: String,
        /// Container ID.
        container_id: String,
        /// Interface name.
        ifname: String,
    },
    /// Reading, writing or listing failed.
    #[error("cache file {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a cache entry.
    #[error("cache file {}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: serde_json::Error,
    },
    /// The cached result could not be read or converted.
    #[error("cache file {}: {source}", path.display())]
    Result {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: ResultError,
    },
}

/// `<cache_dir>/results/<network>-<container_id>-<ifname>`, as libcni names it.
///
/// Fails when any part is empty, as libcni does.
pub fn cache_file_path(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<PathBuf, CacheError> {
    if network.is_empty() || container_id.is_empty() || ifname.is_empty() {
        return Err(CacheError::IncompleteKey {
            network: network.to_owned(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        });
    }
    Ok(cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}")))
}

/// One cache file (libcni's `cachedInfo`).
///
/// ```
/// use overlay_cni::cache::CacheEntry;
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut entry = CacheEntry::new("pods", "c1", "eth0", br#"{"name":"pods"}"#.to_vec());
/// entry.result = Some(serde_json::json!({"cniVersion": "1.0.0"}));
/// entry.write(dir.path()).unwrap();
/// let back = CacheEntry::read(dir.path(), "pods", "c1", "eth0").unwrap().unwrap();
/// assert_eq!(back, entry);
/// assert_eq!(CacheEntry::list(dir.path()).unwrap().len(), 1);
/// CacheEntry::remove(dir.path(), "pods", "c1", "eth0").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheEntry {
    /// Always [`CACHE_KIND_V1`] for entries this crate writes.
    pub kind: String,
    /// The container ID.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The conflist bytes the attachment was made with.
    #[serde(with = "base64_bytes")]
    pub config: Vec<u8>,
    /// The interface name.
    #[serde(rename = "ifName")]
    pub ifname: String,
    /// The network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The network namespace path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    /// `CNI_ARGS` as pairs.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    /// The runtime's capability arguments.
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    /// The final result of the chain, as JSON in its own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl CacheEntry {
    /// An entry without args, capabilities, netns or result.
    pub fn new(
        network: impl Into<String>,
        container_id: impl Into<String>,
        ifname: impl Into<String>,
        config: Vec<u8>,
    ) -> Self {
        CacheEntry {
            kind: CACHE_KIND_V1.to_owned(),
            container_id: container_id.into(),
            config,
            ifname: ifname.into(),
            network_name: network.into(),
            netns: String::new(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: None,
        }
    }

    /// The entry as JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        // Strings, numbers and maps with string keys always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The cached result, read with `version` as default version and converted to it.
    pub fn result_as(&self, version: Version) -> Option<Result<CniResult, ResultError>> {
        let raw = self.result.clone()?;
        Some(CniResult::from_value_with_default(raw, version).and_then(|r| r.convert(version)))
    }

    /// Write the entry to `<cache_dir>/results/...` (directory mode 0700,
    /// file mode 0600, replaced atomically). Returns the file's path.
    pub fn write(&self, cache_dir: &Path) -> Result<PathBuf, CacheError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = cache_file_path(
            cache_dir,
            &self.network_name,
            &self.container_id,
            &self.ifname,
        )?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Io { path, source }
        };
        let dir = cache_dir.join("results");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
        ));
        {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err(&tmp))?;
            file.write_all(&self.to_vec()).map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Read the entry of an attachment; `Ok(None)` when there is no file.
    pub fn read(
        cache_dir: &Path,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, CacheError> {
        let path = cache_file_path(cache_dir, network, container_id, ifname)?;
        read_file(&path)
    }

    /// Remove the entry of an attachment; a missing file is not an error.
    pub fn remove(
        cache_dir: &Path,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), CacheError> {
        let path = cache_file_path(cache_dir, network, container_id, ifname)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(CacheError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every valid `cniCacheV1` entry in `<cache_dir>/results`, sorted by file
    /// name; files of other kinds or invalid JSON are skipped, as libcni does.
    pub fn list(cache_dir: &Path) -> Result<Vec<CacheEntry>, CacheError> {
        let dir = cache_dir.join("results");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CacheError::Io { path: dir, source }),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
            })
            .collect();
        paths.sort();
        Ok(paths
            .iter()
            .filter_map(|p| read_file(p).ok().flatten())
            .filter(|e| e.kind == CACHE_KIND_V1)
            .collect())
    }
}

/// Read a cache file. A file that is not a `cniCacheV1` entry is returned as
/// an entry whose `result` is the whole file (libcni's legacy layout, where
/// the file held only the result), with empty config.
fn read_file(path: &Path) -> Result<Option<CacheEntry>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    match serde_json::from_slice::<CacheEntry>(&bytes) {
        Ok(entry) if entry.kind == CACHE_KIND_V1 => Ok(Some(entry)),
        _ => {
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|source| CacheError::Json {
                    path: path.to_owned(),
                    source,
                })?;
            let mut legacy = CacheEntry::new("", "", "", Vec::new());
            legacy.kind = String::new();
            legacy.result = Some(value);
            Ok(Some(legacy))
        }
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
mod base64_bytes {
    use super::*;

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }

    pub(super) fn decode(input: &str) -> Option<Vec<u8>> {
        let bytes = input.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let chunks = bytes.len() / 4;
        for (index, chunk) in bytes.chunks(4).enumerate() {
            let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && index + 1 != chunks) {
                return None;
            }
            let mut n = 0u32;
            for &c in &chunk[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&decoded[..3 - pad]);
        }
        Some(out)
    }

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Go writes a nil []byte as null.
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        decode(&s).ok_or_else(|| serde::de::Error::custom("invalid base64 in cache config"))
    }
}

#[cfg(test)]
mod tests {
    use super::base64_bytes::{decode, encode};
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    #[test]
    fn base64_rejects_malformed_input() {
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9*", "Zm9v\n"] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn cache_entry_golden_json_uses_libcni_field_names() {
        let mut entry = CacheEntry::new("pods", "c1", "eth0", b"{}".to_vec());
        entry.netns = "/run/netns/p".into();
        entry.cni_args = vec![["K8S_POD_NAME".into(), "web".into()]];
        entry
            .capability_args
            .insert("mac".into(), Value::from("02:00:00:00:00:01"));
        entry.result = Some(serde_json::json!({"cniVersion": "1.0.0"}));
        let v: Value = serde_json::from_slice(&entry.to_vec()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "cniCacheV1",
                "containerId": "c1",
                "config": "e30=",
                "ifName": "eth0",
                "networkName": "pods",
                "netns": "/run/netns/p",
                "cniArgs": [["K8S_POD_NAME", "web"]],
                "capabilityArgs": {"mac": "02:00:00:00:00:01"},
                "result": {"cniVersion": "1.0.0"}
            })
        );
    }

    #[test]
    fn cache_path_needs_every_part() {
        assert!(cache_file_path(Path::new("/c"), "", "c", "eth0").is_err());
        assert!(cache_file_path(Path::new("/c"), "n", "", "eth0").is_err());
        assert!(cache_file_path(Path::new("/c"), "n", "c", "").is_err());
    }

    #[test]
    fn write_read_list_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut entry = CacheEntry::new("pods", "c1", "eth0", b"{\"x\":1}".to_vec());
        entry.result = Some(serde_json::json!({"cniVersion": "0.4.0", "ips": [
            {"version": "4", "address": "198.51.100.7/24"}]}));
        let path = entry.write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("results/pods-c1-eth0"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = CacheEntry::read(dir.path(), "pods", "c1", "eth0")
            .unwrap()
            .unwrap();
        assert_eq!(back, entry);
        let result = back.result_as(Version::V1_0_0).unwrap().unwrap();
        assert_eq!(result.cni_version, Version::V1_0_0);
        assert_eq!(CacheEntry::list(dir.path()).unwrap(), vec![entry]);
        CacheEntry::remove(dir.path(), "pods", "c1", "eth0").unwrap();
        CacheEntry::remove(dir.path(), "pods", "c1", "eth0").unwrap();
        assert!(
            CacheEntry::read(dir.path(), "pods", "c1", "eth0")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn legacy_cache_file_is_read_as_a_bare_result() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(
            dir.path().join("results/pods-c1-eth0"),
            br#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"198.51.100.7/24"}]}"#,
        )
        .unwrap();
        let entry = CacheEntry::read(dir.path(), "pods", "c1", "eth0")
            .unwrap()
            .unwrap();
        assert_ne!(entry.kind, CACHE_KIND_V1);
        let r = entry.result_as(Version::V0_3_1).unwrap().unwrap();
        assert_eq!(r.ips.len(), 1);
        // Legacy files carry no attachment identity: listing skips them, as libcni does.
        assert!(CacheEntry::list(dir.path()).unwrap().is_empty());
    }
}
