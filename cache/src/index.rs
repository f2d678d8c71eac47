//! The cache-key index: what a build step produced, looked up by the step's cache key.
//!
//! Storage: one JSON file per record, `cache/records/<kk>/<key>.json` (`kk` = the key's first
//! two hex characters, to keep directories small). Chosen over an SQLite database because
//! every write is then a single atomic rename (temp file + fsync + rename: readers see the
//! old record or the new one, never a torn one, and a crash loses at most the record being
//! written), many processes read and write without a database lock or a WAL to recover, no
//! native code is built, and the files are easy to inspect and repair by hand. Lookups are
//! one `open`; only `prune`/`du`/`verify` list them all.
//!
//! Last use: a record's `last_used` is the later of the value stored in its JSON and its
//! file's modification time. [`CacheIndex::touch`] only sets the mtime, a single metadata
//! write that cannot race with a concurrent [`CacheIndex::put`] of the same key.
//!
//! Secrets: records must never contain secret values (build secrets, credentials). The
//! engine guarantees that by never putting them in a record; this crate stores what it is
//! given and cannot tell.

use crate::digest::{Digest, is_hex64};
use crate::error::{CacheError, IoContext, Result};
use crate::fsutil;
use crate::layout::Root;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A cache key: the sha256 hex string the engine computes for a step (opaque here).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// Accepts exactly 64 lowercase hex characters.
    pub fn new(text: impl Into<String>) -> Result<CacheKey> {
        let text = text.into();
        if is_hex64(&text) { Ok(CacheKey(text)) } else { Err(CacheError::InvalidCacheKey { text }) }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Digest> for CacheKey {
    fn from(digest: Digest) -> CacheKey {
        CacheKey(digest.hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

/// One layer a step produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the uncompressed layer tar (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Digest of the stored (possibly compressed) blob.
    pub blob: Digest,
    /// Media type of the stored blob.
    pub media_type: String,
    /// Size of the stored blob in bytes.
    pub size: u64,
    /// When the step first made this layer (RFC 3339, as image history writes it); absent for
    /// layers of pulled images and in records written before kiln kept it. A cache hit
    /// reuses the time, so an unchanged rebuild gives an identical image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The digest of one source file a step read, kept to explain cache misses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDigest {
    /// Path of the source (relative to its context).
    pub path: String,
    /// Digest of its content.
    pub digest: Digest,
}

/// What a step produced. Must never hold secrets (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The layers, in order. Each blob must be in the store when the record is put.
    pub layers: Vec<LayerRef>,
    /// The change the step makes to the image config (opaque to the cache).
    pub config_delta: serde_json::Value,
    /// Per-source digests.
    pub sources: Vec<SourceDigest>,
    /// Human description of the step, for `du` listings and miss explanations.
    pub description: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Last use, seconds since the Unix epoch (see the module docs).
    pub last_used: u64,
}

/// Access to `cache/records`. Obtained from [`Root::records`].
#[derive(Clone, Debug)]
pub struct CacheIndex {
    root: Root,
}

impl CacheIndex {
    pub(crate) fn new(root: Root) -> CacheIndex {
        CacheIndex { root }
    }

    /// Where a key's record lives.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.root.paths().records.join(&key.0[..2]).join(format!("{}.json", key.0))
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => read_record(&path, &bytes).map(Some),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).at("read", &path),
        }
    }

    /// Stores `record` under `key`, atomically replacing any previous one. Every layer blob
    /// must already be in the store.
    pub fn put(&self, key: &CacheKey, record: &CacheRecord) -> Result<()> {
        let blobs = self.root.blobs();
        for layer in &record.layers {
            if !blobs.contains(&layer.blob) {
                return Err(CacheError::RecordBlobMissing {
                    key: key.0.clone(),
                    digest: layer.blob,
                });
            }
        }
        let bytes = serde_json::to_vec(record)
            .map_err(|source| CacheError::Encode { what: "cache record", source })?;
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root.paths().records);
        fs::create_dir_all(dir).at("create directory", dir)?;
        fsutil::write_atomic(&self.root.paths().tmp, &path, &bytes)
    }

    /// Marks `key` as used now. Returns whether the record exists.
    pub fn touch(&self, key: &CacheKey) -> Result<bool> {
        self.touch_at(key, SystemTime::now())
    }

    /// Marks `key` as used at `when`. Returns whether the record exists.
    pub fn touch_at(&self, key: &CacheKey, when: SystemTime) -> Result<bool> {
        let path = self.path(key);
        match File::options().write(true).open(&path) {
            Ok(file) => {
                file.set_modified(when).at("set modification time of", &path).map(|()| true)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).at("open", &path),
        }
    }

    /// Removes the record of `key`. Returns whether it existed.
    pub fn remove(&self, key: &CacheKey) -> Result<bool> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).at("remove", &path),
        }
    }

    /// Every record, in key order. Unreadable records come out as errors (a
    /// [`CacheError::Corrupt`] names the file); files that are not records are skipped.
    pub fn iter(&self) -> impl Iterator<Item = Result<(CacheKey, CacheRecord)>> + use<> {
        let dir = self.root.paths().records.clone();
        walkdir::WalkDir::new(&dir)
            .min_depth(2)
            .max_depth(2)
            .sort_by_file_name()
            .into_iter()
            .filter_map(move |entry| {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(err) => {
                        let path = err.path().unwrap_or(&dir).to_path_buf();
                        return Some(Err(CacheError::Io {
                            op: "read directory",
                            path,
                            source: err.into(),
                        }));
                    }
                };
                let key = entry.file_name().to_str()?.strip_suffix(".json")?;
                let key = CacheKey::new(key).ok()?;
                let path = entry.path();
                match fs::read(path) {
                    Ok(bytes) => Some(read_record(path, &bytes).map(|record| (key, record))),
                    // Removed since the directory was listed.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                    Err(err) => Some(Err(err).at("read", path)),
                }
            })
    }
}

fn read_record(path: &std::path::Path, bytes: &[u8]) -> Result<CacheRecord> {
    let mut record: CacheRecord =
        serde_json::from_slice(bytes).map_err(|err| CacheError::Corrupt {
            what: "cache record",
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    if let Ok(modified) = fs::metadata(path).and_then(|meta| meta.modified()) {
        let mtime = modified.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        record.last_used = record.last_used.max(mtime);
    }
    Ok(record)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn key(n: u8) -> CacheKey {
        CacheKey::from(Digest::of(&[n]))
    }

    fn record(root: &Root, content: &[u8]) -> CacheRecord {
        let blob = root.blobs().put_bytes(content).unwrap();
        CacheRecord {
            layers: vec![LayerRef {
                diff_id: Digest::of(b"diff"),
                blob,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: content.len() as u64,
                created: None,
            }],
            config_delta: serde_json::json!({"Env": ["A=1"]}),
            sources: vec![SourceDigest { path: "src/main.rs".into(), digest: Digest::of(b"src") }],
            description: "RUN make".into(),
            created: 1000,
            last_used: 1000,
        }
    }

    #[test]
    fn cache_key_validation() {
        assert!(CacheKey::new("a".repeat(64)).is_ok());
        for bad in ["", "../etc/passwd", &"A".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert_eq!(
                CacheKey::new(bad).unwrap_err().to_string(),
                format!("invalid cache key {bad:?}: expected 64 lowercase hex characters")
            );
        }
    }

    #[test]
    fn put_get_touch_remove() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let index = root.records();
        let k = key(1);
        assert_eq!(index.get(&k).unwrap(), None);
        let mut rec = record(&root, b"layer");
        index.put(&k, &rec).unwrap();
        let path = index.path(&k);
        assert_eq!(
            path,
            root.path().join("cache/records").join(&k.as_str()[..2]).join(format!("{k}.json"))
        );
        // Freshly written: last_used is the file's mtime, i.e. about now.
        let got = index.get(&k).unwrap().unwrap();
        assert!(got.last_used >= now_secs() - 60);
        rec.last_used = got.last_used;
        assert_eq!(got, rec);

        let later = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        assert!(index.touch_at(&k, later).unwrap());
        assert_eq!(index.get(&k).unwrap().unwrap().last_used, 4_000_000_000);
        assert!(!index.touch(&key(2)).unwrap());

        assert!(index.remove(&k).unwrap());
        assert!(!index.remove(&k).unwrap());
        assert_eq!(index.get(&k).unwrap(), None);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn put_refuses_records_whose_blobs_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut rec = record(&root, b"layer");
        rec.layers[0].blob = Digest::of(b"not stored");
        let err = root.records().put(&key(1), &rec).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cache record {} references blob {}, which is not in the store",
                key(1),
                Digest::of(b"not stored")
            )
        );
        assert_eq!(root.records().get(&key(1)).unwrap(), None);
    }

    #[test]
    fn iter_lists_records_in_key_order_and_reports_corrupt_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let index = root.records();
        let mut keys: Vec<CacheKey> = (1..=5).map(key).collect();
        for (i, k) in keys.iter().enumerate() {
            index.put(k, &record(&root, &[i as u8])).unwrap();
        }
        keys.sort();
        let listed: Vec<CacheKey> = index.iter().map(|r| r.unwrap().0).collect();
        assert_eq!(listed, keys);

        fs::write(index.path(&keys[2]), b"{\"layers\":").unwrap();
        fs::write(root.path().join("cache/records/README"), b"not a shard").unwrap();
        let results: Vec<_> = index.iter().collect();
        assert_eq!(results.len(), 5);
        let err = results[2].as_ref().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("corrupt cache record {}", index.path(&keys[2]).display())),
            "{err}"
        );
        assert!(matches!(index.get(&keys[2]), Err(CacheError::Corrupt { .. })));
    }
}
