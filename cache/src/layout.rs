//! The root directory: creating and checking its layout, the paths of its parts, the
//! default location, and the locks taken on it.
//!
//! Invariants: after [`Root::open`] returns, every directory of the layout exists,
//! `oci-layout` names version 1.0.0 and `index.json` exists (both are created without ever
//! replacing a file another process wrote first), and stale temp entries have been removed.

use crate::blobs::BlobStore;
use crate::error::{CacheError, IoContext, Result};
use crate::fsutil;
use crate::images::ImageStore;
use crate::index::{CacheIndex, CacheKey};
use crate::lock::{self, ExclusiveLock, KeyLock, Lease, Mode};
use crate::snapshots::Snapshots;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The version written to and accepted in `oci-layout`.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";

/// An opened store root. Cheap to clone; clones share the same paths and work directory.
#[derive(Clone, Debug)]
pub struct Root {
    paths: Arc<Paths>,
    /// This process's directory in `tmp/` ([`Root::work_dir`]), made on first use.
    work: Arc<Mutex<Option<fsutil::TempDir>>>,
}

#[derive(Debug)]
pub(crate) struct Paths {
    pub(crate) root: PathBuf,
    pub(crate) oci_layout: PathBuf,
    pub(crate) index_json: PathBuf,
    pub(crate) blobs: PathBuf,
    pub(crate) records: PathBuf,
    pub(crate) snapshots: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) lock: PathBuf,
    pub(crate) index_lock: PathBuf,
    pub(crate) key_locks: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            oci_layout: root.join("oci-layout"),
            index_json: root.join("index.json"),
            blobs: root.join("blobs").join("sha256"),
            records: root.join("cache").join("records"),
            snapshots: root.join("snapshots"),
            tmp: root.join("tmp"),
            lock: root.join("lock"),
            index_lock: root.join("locks").join("index"),
            key_locks: root.join("locks").join("keys"),
        }
    }
}

impl Root {
    /// Opens the store at `path`, creating its layout when missing, checking the layout
    /// version, and removing temp entries left behind by dead processes.
    pub fn open(path: impl AsRef<Path>) -> Result<Root> {
        let paths = Paths::new(path.as_ref());
        for dir in [&paths.blobs, &paths.records, &paths.snapshots, &paths.tmp, &paths.key_locks] {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        let layout = format!("{{\"imageLayoutVersion\":\"{IMAGE_LAYOUT_VERSION}\"}}");
        fsutil::write_new_atomic(&paths.tmp, &paths.oci_layout, layout.as_bytes())?;
        check_layout_version(&paths.oci_layout)?;
        fsutil::write_new_atomic(&paths.tmp, &paths.index_json, crate::images::EMPTY_INDEX)?;
        fsutil::clean_stale(&paths.tmp)?;
        Ok(Root { paths: Arc::new(paths), work: Arc::default() })
    }

    /// The default root: `/var/lib/kiln` for uid 0, otherwise `$XDG_DATA_HOME/kiln`
    /// (when set to an absolute path) or `$HOME/.local/share/kiln`.
    pub fn default_path() -> Result<PathBuf> {
        default_path_for(
            rustix::process::getuid().as_raw(),
            std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.paths.root
    }

    pub(crate) fn paths(&self) -> &Paths {
        &self.paths
    }

    /// A directory under `tmp/` for this process's scratch trees (a RUN's upper directory, a
    /// COPY's layer being filled, an export's flattened tree), which may take longer than the
    /// stale-entry age to use: it stays locked, so no other process's open or prune removes
    /// it, for as long as this root or a clone lives, and is removed with the last clone.
    /// One left by a killed process is stale and goes with a later open or prune. Trees made
    /// in it may be renamed into the store (same filesystem).
    pub fn work_dir(&self) -> Result<PathBuf> {
        let mut work = self.work.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(dir) = work.as_ref() {
            return Ok(dir.path().to_path_buf());
        }
        let dir = fsutil::temp_dir(&self.paths.tmp, "work-")?;
        let path = dir.path().to_path_buf();
        *work = Some(dir);
        Ok(path)
    }

    /// The blob store (`blobs/sha256`).
    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(self.clone())
    }

    /// The cache-key index (`cache/records`).
    pub fn records(&self) -> CacheIndex {
        CacheIndex::new(self.clone())
    }

    /// The tagged images (`index.json`).
    pub fn images(&self) -> ImageStore {
        ImageStore::new(self.clone())
    }

    /// The unpacked layer trees (`snapshots`).
    pub fn snapshots(&self) -> Snapshots {
        Snapshots::new(self.clone())
    }

    /// Takes a shared lease on the root, waiting while `prune`/`verify` run. A build holds
    /// one for its whole duration so nothing it writes or reads is collected under it.
    pub fn lease(&self) -> Result<Lease> {
        self.lease_notify(&mut || {})
    }

    /// [`Root::lease`], calling `on_wait` once if it has to wait.
    pub fn lease_notify(&self, on_wait: &mut dyn FnMut()) -> Result<Lease> {
        lock::acquire(&self.paths.lock, Mode::Shared, on_wait).map(Lease::new)
    }

    /// Takes the exclusive root lock, calling `on_wait` once if leases are held.
    pub fn lock_exclusive(&self, on_wait: &mut dyn FnMut()) -> Result<ExclusiveLock> {
        lock::acquire(&self.paths.lock, Mode::Exclusive, on_wait).map(ExclusiveLock::new)
    }

    /// Takes the in-progress lock of `key` (and a lease), waiting while another process
    /// computes the same key. Check the index again after it is granted.
    pub fn key_lock(&self, key: &CacheKey) -> Result<KeyLock> {
        let lease = self.lease()?;
        let path = self.paths.key_locks.join(key.as_str());
        let file = lock::acquire(&path, Mode::Exclusive, &mut || {})?;
        Ok(KeyLock::new(file, lease, path))
    }
}

fn check_layout_version(path: &Path) -> Result<()> {
    let corrupt =
        |reason: String| CacheError::Corrupt { what: "image layout", path: path.into(), reason };
    let bytes = fs::read(path).at("read", path)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|err| corrupt(err.to_string()))?;
    let Some(version) = value.get("imageLayoutVersion").and_then(|v| v.as_str()) else {
        return Err(corrupt("no \"imageLayoutVersion\" string".into()));
    };
    if version != IMAGE_LAYOUT_VERSION {
        return Err(CacheError::UnsupportedLayout { path: path.into(), version: version.into() });
    }
    Ok(())
}

/// [`Root::default_path`] with its inputs given (a seam for tests).
pub fn default_path_for(
    uid: u32,
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf> {
    if uid == 0 {
        return Ok(PathBuf::from("/var/lib/kiln"));
    }
    // The XDG base directory spec says relative values are to be ignored.
    if let Some(xdg) = xdg_data_home.filter(|p| p.is_absolute()) {
        return Ok(xdg.join("kiln"));
    }
    match home.filter(|p| p.is_absolute()) {
        Some(home) => Ok(home.join(".local/share/kiln")),
        None => Err(CacheError::NoDefaultRoot { reason: "HOME is not set to an absolute path" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("r")).unwrap();
        let base = root.path();
        assert_eq!(
            fs::read_to_string(base.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        assert_eq!(fs::read(base.join("index.json")).unwrap(), crate::images::EMPTY_INDEX);
        for dir in ["blobs/sha256", "cache/records", "snapshots", "tmp", "locks/keys"] {
            assert!(base.join(dir).is_dir(), "{dir}");
        }
        // Opening again keeps what is there.
        fs::write(base.join("index.json"), b"{\"schemaVersion\":2,\"manifests\":[]}").unwrap();
        Root::open(base).unwrap();
        assert_eq!(
            fs::read(base.join("index.json")).unwrap(),
            b"{\"schemaVersion\":2,\"manifests\":[]}"
        );
    }

    #[test]
    fn open_rejects_other_layout_versions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        let err = Root::open(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unsupported image layout version \"2.0.0\" in {}",
                dir.path().join("oci-layout").display()
            )
        );
        fs::write(dir.path().join("oci-layout"), b"{}").unwrap();
        let err = Root::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no \"imageLayoutVersion\" string"), "{err}");
        fs::write(dir.path().join("oci-layout"), b"not json").unwrap();
        let err = Root::open(dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("corrupt image layout "), "{err}");
    }

    #[test]
    fn work_dir_outlives_the_stale_age_while_held_and_goes_with_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let work = root.work_dir().unwrap();
        assert!(work.starts_with(dir.path().join("tmp")), "{}", work.display());
        assert_eq!(root.clone().work_dir().unwrap(), work, "clones share it");
        fs::create_dir(work.join("upper")).unwrap();
        let old = std::time::SystemTime::now() - fsutil::STALE_AFTER * 10;
        fs::File::open(&work).unwrap().set_modified(old).unwrap();
        // Another process opening the root meanwhile must leave it alone.
        Root::open(dir.path()).unwrap();
        assert!(work.join("upper").is_dir(), "a held work directory was removed");
        drop(root);
        assert!(!work.exists(), "the work directory outlived its root");
    }

    #[test]
    fn default_path_follows_uid_and_xdg() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(default_path_for(0, None, home.clone()).unwrap(), Path::new("/var/lib/kiln"));
        assert_eq!(
            default_path_for(1000, None, home.clone()).unwrap(),
            Path::new("/home/u/.local/share/kiln")
        );
        assert_eq!(
            default_path_for(1000, Some("/data".into()), home.clone()).unwrap(),
            Path::new("/data/kiln")
        );
        assert_eq!(
            default_path_for(1000, Some("relative".into()), home).unwrap(),
            Path::new("/home/u/.local/share/kiln")
        );
        let err = default_path_for(1000, None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot choose a default root: HOME is not set to an absolute path; pass --root or set KILN_ROOT"
        );
    }
}
