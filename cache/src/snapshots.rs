//! Snapshots: unpacked layer trees under `snapshots/<id>/`, used as sandbox lower
//! directories. An id is a layer's diff_id hex (one layer alone) or a chain id hex (a stack
//! of layers applied in order, as the OCI image spec defines it).
//!
//! Invariants:
//! - a directory exists under `snapshots/` only when complete: it is filled in a locked temp
//!   directory in `ROOT/tmp`, the filesystem is synced (`syncfs`, one call for the whole
//!   tree), and it is renamed into place without replacing anything (`RENAME_NOREPLACE`);
//!   if another process committed the same id first, ours is discarded and theirs used;
//! - snapshots are never modified after commit; removal first renames the directory back
//!   into `ROOT/tmp` (it disappears atomically from view), then deletes it, opening up
//!   read-only directories as needed; what cannot be deleted stays in `tmp/` and is retried.

use crate::digest::{Digest, is_hex64};
use crate::error::{CacheError, IoContext, Result};
use crate::fsutil::{self, TempDir};
use crate::layout::Root;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The name of a snapshot: 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(String);

impl SnapshotId {
    /// Accepts exactly 64 lowercase hex characters.
    pub fn new(text: impl Into<String>) -> Result<SnapshotId> {
        let text = text.into();
        if is_hex64(&text) {
            Ok(SnapshotId(text))
        } else {
            Err(CacheError::InvalidSnapshotId { text })
        }
    }

    /// The id of a single layer's tree: its diff_id hex.
    pub fn of_layer(diff_id: &Digest) -> SnapshotId {
        SnapshotId(diff_id.hex())
    }

    /// The id of the tree that `diff_ids` give applied in order: their chain id.
    /// `None` for an empty list.
    pub fn of_chain(diff_ids: &[Digest]) -> Option<SnapshotId> {
        chain_ids(diff_ids).last().map(SnapshotId::of_layer)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The chain id of every prefix of `diff_ids`: `chain[0] = diff_ids[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff_ids[n])`, digests in `sha256:<hex>` form.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => *diff_id,
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({})", self.0)
    }
}

/// Access to `snapshots/`. Obtained from [`Root::snapshots`].
#[derive(Clone, Debug)]
pub struct Snapshots {
    root: Root,
}

impl Snapshots {
    pub(crate) fn new(root: Root) -> Snapshots {
        Snapshots { root }
    }

    /// Where the snapshot `id` is, or will be once committed (it may not exist: use
    /// [`Snapshots::get`] to find a committed one).
    pub fn path(&self, id: &SnapshotId) -> PathBuf {
        self.root.paths().snapshots.join(&id.0)
    }

    /// The committed snapshot's directory, if there is one. Do not modify it.
    pub fn get(&self, id: &SnapshotId) -> Option<PathBuf> {
        let path = self.path(id);
        path.is_dir().then_some(path)
    }

    /// Starts a snapshot: fill [`SnapshotWriter::path`], then commit. Dropping the writer
    /// removes the temp directory.
    pub fn prepare(&self, id: &SnapshotId) -> Result<SnapshotWriter> {
        let dir = fsutil::temp_dir(&self.root.paths().tmp, "snapshot-")?;
        Ok(SnapshotWriter { snapshots: self.clone(), id: id.clone(), dir })
    }

    /// Removes a snapshot. Returns whether it existed. Callers make sure no sandbox uses it
    /// (`prune` holds the exclusive root lock).
    pub fn remove(&self, id: &SnapshotId) -> Result<bool> {
        let path = self.path(id);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(false);
        }
        // Move it out of view atomically into a locked temp directory (so no concurrent
        // cleaner touches it), then delete it there.
        let grave = fsutil::temp_dir(&self.root.paths().tmp, "remove-")?;
        match fs::rename(&path, grave.path().join("tree")) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err).at("move out of the store", &path),
        }
        fsutil::remove_tree(grave.path())?;
        grave.keep();
        Ok(true)
    }

    /// Every committed snapshot id, sorted; entries with other names are skipped.
    pub fn list(&self) -> Result<Vec<SnapshotId>> {
        let dir = &self.root.paths().snapshots;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).at("read directory", dir)? {
            let entry = entry.at("read directory", dir)?;
            if let Some(id) = entry.file_name().to_str().and_then(|name| SnapshotId::new(name).ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// A snapshot being filled. See [`Snapshots::prepare`].
#[derive(Debug)]
pub struct SnapshotWriter {
    snapshots: Snapshots,
    id: SnapshotId,
    dir: TempDir,
}

impl SnapshotWriter {
    /// The directory to fill. It is created with mode 0700; set the mode the tree's root
    /// should have before committing.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the snapshot visible under its id and returns its final path. If the id was
    /// committed meanwhile (by another process or thread), ours is discarded and the
    /// existing one returned.
    pub fn commit(self) -> Result<PathBuf> {
        let dest = self.snapshots.path(&self.id);
        let source = self.dir.path().to_path_buf();
        let handle = File::open(&source).at("open", &source)?;
        rustix::fs::syncfs(&handle).map_err(io::Error::from).at("sync filesystem of", &source)?;
        match rename_noreplace(&source, &dest) {
            Ok(()) => {
                self.dir.keep();
                fsutil::sync_parent(&dest)?;
                Ok(dest)
            }
            Err(err) if is_taken(&err) => Ok(dest), // theirs wins; drop removes ours
            Err(err) => Err(err).at("rename into place", &dest),
        }
    }
}

fn is_taken(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc_eexist() || code == libc_enotempty())
}

fn libc_eexist() -> i32 {
    rustix::io::Errno::EXIST.raw_os_error()
}

fn libc_enotempty() -> i32 {
    rustix::io::Errno::NOTEMPTY.raw_os_error()
}

/// `rename` that fails with `EEXIST` instead of replacing `dest`. Falls back to a plain
/// rename, which refuses a non-empty `dest` with `ENOTEMPTY`, where the filesystem lacks
/// `RENAME_NOREPLACE`.
fn rename_noreplace(source: &Path, dest: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, source, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if fs::symlink_metadata(dest).is_ok() {
                return Err(io::Error::from_raw_os_error(libc_eexist()));
            }
            fs::rename(source, dest)
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id(n: u8) -> SnapshotId {
        SnapshotId::of_layer(&Digest::of(&[n]))
    }

    #[test]
    fn snapshot_id_validation_and_chain_ids() {
        assert!(SnapshotId::new("0".repeat(64)).is_ok());
        let err = SnapshotId::new("../x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid snapshot id \"../x\": expected 64 lowercase hex characters"
        );
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let ab = Digest::of(format!("{a} {b}").as_bytes());
        let abc = Digest::of(format!("{ab} {c}").as_bytes());
        assert_eq!(chain_ids(&[a, b, c]), vec![a, ab, abc]);
        assert_eq!(SnapshotId::of_chain(&[a]), Some(SnapshotId::of_layer(&a)));
        assert_eq!(SnapshotId::of_chain(&[a, b, c]).unwrap().as_str(), abc.hex());
        assert_eq!(SnapshotId::of_chain(&[]), None);
    }

    #[test]
    fn prepare_commit_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let snapshots = root.snapshots();
        assert_eq!(snapshots.get(&id(1)), None);
        let writer = snapshots.prepare(&id(1)).unwrap();
        assert!(writer.path().starts_with(root.path().join("tmp")));
        fs::create_dir(writer.path().join("etc")).unwrap();
        fs::write(writer.path().join("etc/hostname"), b"kiln").unwrap();
        let path = writer.commit().unwrap();
        assert_eq!(path, root.path().join("snapshots").join(id(1).as_str()));
        assert_eq!(snapshots.get(&id(1)), Some(path.clone()));
        assert_eq!(fs::read(path.join("etc/hostname")).unwrap(), b"kiln");
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(snapshots.list().unwrap(), vec![id(1)]);

        // Read-only directories inside do not stop removal.
        fs::set_permissions(path.join("etc"), fs::Permissions::from_mode(0o555)).unwrap();
        assert!(snapshots.remove(&id(1)).unwrap());
        assert!(!snapshots.remove(&id(1)).unwrap());
        assert_eq!(snapshots.get(&id(1)), None);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let writer = root.snapshots().prepare(&id(1)).unwrap();
        fs::create_dir(writer.path().join("ro")).unwrap();
        fs::set_permissions(writer.path().join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(root.snapshots().get(&id(1)), None);
    }

    #[test]
    fn commit_race_keeps_the_first_and_discards_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let barrier = std::sync::Barrier::new(6);
        let paths: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6u8)
                .map(|n| {
                    let (root, barrier) = (root.clone(), &barrier);
                    scope.spawn(move || {
                        let writer = root.snapshots().prepare(&id(7)).unwrap();
                        fs::write(writer.path().join("who"), [n]).unwrap();
                        fs::create_dir(writer.path().join("sub")).unwrap();
                        barrier.wait();
                        writer.commit().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let dest = root.path().join("snapshots").join(id(7).as_str());
        assert!(paths.iter().all(|p| *p == dest));
        // Exactly one writer's tree, whole: one file and the sub directory, nothing nested.
        let mut names: Vec<_> =
            fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["sub", "who"]);
        assert_eq!(fs::read_dir(dest.join("sub")).unwrap().count(), 0);
        assert_eq!(fs::read(dest.join("who")).unwrap().len(), 1);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }
}
