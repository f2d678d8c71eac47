//! Filesystem helpers shared by the store's parts: crash-safe writes, temp entries that
//! announce they are in use, and removal of trees that may be read-only.
//!
//! Invariants:
//! - every temp entry under `ROOT/tmp` is created by [`temp_file`] or [`temp_dir`], which
//!   hold an exclusive `flock` on it for as long as the entry is in use; [`clean_stale`]
//!   removes only entries it can lock itself *and* that are older than [`STALE_AFTER`]
//!   (the age closes the window between creating an entry and locking it);
//! - a file reaches its final name only by `rename` after its bytes were `fsync`ed, and the
//!   directory holding the final name is `fsync`ed after the rename.

use crate::error::{IoContext, Result};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tempfile::NamedTempFile;

/// Temp entries younger than this are never considered stale.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(60);

/// Creates a temp file in `tmp` with an exclusive lock held on it through the returned
/// handle. Dropping the handle removes the file.
pub(crate) fn temp_file(tmp: &Path, prefix: &str) -> Result<NamedTempFile> {
    let file =
        tempfile::Builder::new().prefix(prefix).tempfile_in(tmp).at("create temp file in", tmp)?;
    file.as_file().lock().at("lock", file.path())?;
    Ok(file)
}

/// A temp directory in `tmp`, locked while this value lives; removed (even when read-only
/// inside) on drop unless [`TempDir::keep`] was called.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
    lock: Option<File>,
}

/// Creates a temp directory in `tmp`, locked until the returned value is dropped.
pub(crate) fn temp_dir(tmp: &Path, prefix: &str) -> Result<TempDir> {
    let path = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(tmp)
        .at("create temp directory in", tmp)?
        .keep();
    let lock = File::open(&path).at("open", &path)?;
    lock.lock().at("lock", &path)?;
    Ok(TempDir { path, lock: Some(lock) })
}

impl TempDir {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory stays where it is (typically: it was renamed away) when dropped.
    pub(crate) fn keep(mut self) {
        self.lock = None;
        self.path = PathBuf::new();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: whatever cannot be removed now is stale and cleaned on a later open.
            let _ = remove_tree(&self.path);
        }
    }
}

/// A temp file holding `bytes`, fsynced, mode 0644 (metadata other tools may read).
fn synced_temp_file(tmp: &Path, bytes: &[u8]) -> Result<NamedTempFile> {
    let mut file = temp_file(tmp, "write-")?;
    file.write_all(bytes).at("write", file.path())?;
    file.as_file().set_permissions(fs::Permissions::from_mode(0o644)).at("chmod", file.path())?;
    file.as_file().sync_all().at("fsync", file.path())?;
    Ok(file)
}

/// Writes `bytes` to `dest` atomically: temp file in `tmp`, fsync, rename, fsync dir.
pub(crate) fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let file = synced_temp_file(tmp, bytes)?;
    file.persist(dest).map_err(|err| err.error).at("rename into place", dest)?;
    sync_parent(dest)
}

/// Like [`write_atomic`] but never replaces an existing `dest`. Returns whether it wrote.
pub(crate) fn write_new_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<bool> {
    if fs::symlink_metadata(dest).is_ok() {
        return Ok(false);
    }
    let file = synced_temp_file(tmp, bytes)?;
    match file.persist_noclobber(dest) {
        Ok(_) => {
            sync_parent(dest)?;
            Ok(true)
        }
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err.error).at("rename into place", dest),
    }
}

/// Fsyncs the directory that holds `path`, making a rename into it durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent).and_then(|dir| dir.sync_all()).at("fsync directory", parent)
}

/// Removes `path` (a file, symlink or directory tree) even when directories inside are
/// read-only: a directory we cannot list or empty is made `u+rwx` and tried again. Files
/// owned by other uids under a read-only directory we do not own cannot be removed by an
/// unprivileged user; that error names the path. A missing `path` is not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).at("inspect", path),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.at("remove", path),
        };
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    // Some directory in the tree is not writable or listable; open them up, top down.
    make_tree_writable(path);
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.at("remove", path),
    }
}

fn make_tree_writable(path: &Path) {
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(path) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            make_tree_writable(&entry.path());
        }
    }
}

/// Removes entries of `tmp` that no live process holds and that are older than
/// [`STALE_AFTER`]. Returns how many entries and bytes were removed.
pub(crate) fn clean_stale(tmp: &Path) -> Result<(u64, u64)> {
    let now = SystemTime::now();
    let mut removed = (0, 0);
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(err) => return Err(err).at("read directory", tmp),
    };
    for entry in entries {
        let entry = entry.at("read directory", tmp)?;
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let modified = meta.modified().unwrap_or(now);
        if now.duration_since(modified).unwrap_or_default() < STALE_AFTER {
            continue;
        }
        // An entry whose creator is alive is locked; we must get the lock to remove it.
        let Ok(handle) = File::open(&path) else { continue };
        if handle.try_lock().is_err() {
            continue;
        }
        let size = tree_size(&path);
        remove_tree(&path)?;
        removed.0 += 1;
        removed.1 += size;
    }
    Ok(removed)
}

/// Apparent size of a file or tree: regular file and symlink sizes, hard links counted once.
/// Entries that vanish or cannot be read while walking are skipped.
pub(crate) fn tree_size(path: &Path) -> u64 {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            continue;
        }
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.len();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn age(path: &Path, by: Duration) {
        let when = SystemTime::now() - by;
        let file = File::open(path).unwrap();
        file.set_modified(when).unwrap();
    }

    #[test]
    fn write_atomic_replaces_and_write_new_atomic_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        write_atomic(dir.path(), &dest, b"one").unwrap();
        write_atomic(dir.path(), &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert!(!write_new_atomic(dir.path(), &dest, b"three").unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert!(write_new_atomic(dir.path(), &dir.path().join("g"), b"four").unwrap());
        // No temp files are left behind.
        let mut names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["f", "g"]);
    }

    #[test]
    fn remove_tree_copes_with_read_only_directories() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::write(top.join("a/b/file"), b"x").unwrap();
        symlink("/nonexistent", top.join("a/link")).unwrap();
        fs::set_permissions(top.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(top.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        remove_tree(&top).unwrap();
    }

    #[test]
    fn clean_stale_removes_only_old_unlocked_entries() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        let held = temp_file(tmp, "held-").unwrap();
        let held_dir = temp_dir(tmp, "held-dir-").unwrap();
        fs::write(tmp.join("fresh"), b"x").unwrap();
        fs::write(tmp.join("stale"), b"12345").unwrap();
        fs::create_dir_all(tmp.join("stale-dir/sub")).unwrap();
        fs::write(tmp.join("stale-dir/sub/f"), b"abc").unwrap();
        for name in ["stale", "stale-dir"] {
            age(&tmp.join(name), STALE_AFTER * 2);
        }
        age(held.path(), STALE_AFTER * 2);
        age(held_dir.path(), STALE_AFTER * 2);

        assert_eq!(clean_stale(tmp).unwrap(), (2, 8));
        assert!(held.path().exists());
        assert!(held_dir.path().exists());
        assert!(tmp.join("fresh").exists());
        assert!(!tmp.join("stale").exists());
        assert!(!tmp.join("stale-dir").exists());

        let held_dir_path = held_dir.path().to_path_buf();
        drop(held_dir);
        assert!(!held_dir_path.exists(), "a dropped temp dir removes itself");
    }

    #[test]
    fn make_tree_writable_opens_up_every_directory() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b/c")).unwrap();
        for (path, mode) in [("a/b/c", 0o000), ("a/b", 0o500), ("a", 0o000), ("", 0o555)] {
            fs::set_permissions(top.join(path), fs::Permissions::from_mode(mode)).unwrap();
        }
        make_tree_writable(&top);
        for path in ["", "a", "a/b", "a/b/c"] {
            let mode = fs::metadata(top.join(path)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{path}");
        }
    }

    #[test]
    fn atomic_writes_are_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), &dir.path().join("f"), b"x").unwrap();
        write_new_atomic(dir.path(), &dir.path().join("g"), b"x").unwrap();
        for name in ["f", "g"] {
            let mode = fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{name}");
        }
    }

    #[test]
    fn tree_size_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![0u8; 100]).unwrap();
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        fs::write(dir.path().join("c"), vec![0u8; 10]).unwrap();
        assert_eq!(tree_size(dir.path()), 110);
        assert_eq!(tree_size(&dir.path().join("c")), 10);
    }
}
