//! Writing one walked source tree into the layer, with fsutil's metadata rules.
//!
//! - The item root (a directory copied "contents only") already exists at the target: it
//!   keeps its mode and owner and takes the source directory's times.
//! - A directory below it is made with the source's mode, owner and xattrs (or merged into
//!   an existing directory, whose mode, owner and times then become the source's).
//! - A directory only on the way to an included path ([`Visit::Parent`]) is made like that
//!   when missing; an existing one only takes the source's mode.
//! - Files, symlinks, devices and fifos replace what is at their path, except a directory,
//!   which is an error; a file hard-linked to an earlier file of the same item becomes a
//!   hard link to its copy; a socket becomes an empty file.
//! - Owner: `--chown` for everything, else 0:0 from a build context, else the source's.
//!   Mode: `--chmod` applied to files and directories (not symlinks), else the source's.
//!   Times: the source's.

use super::walk::{self, Rules, Visit};
use super::{CopyError, CopyReport, Owners};
use crate::fs::layer_dir::Content;
use crate::fs::mode::Chmod;
use crate::fs::{Entry, FileKind, LayerDir, MergedRoot, NewMeta, RootPath, xattr};
use std::collections::HashMap;

/// Copies the tree of `top` (an entry of `source`) to `target` in the layer.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_tree(
    layer: &mut LayerDir,
    source: &MergedRoot,
    top: &Entry,
    target: &RootPath,
    rules: &Rules,
    owners: Owners,
    chmod: Option<&Chmod>,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let mut copier = TreeCopy {
        layer,
        owners,
        chmod,
        target,
        inodes: HashMap::new(),
        dirs: HashMap::new(),
        report,
    };
    walk::walk(source, top, rules, &mut |rel, entry, visit| copier.visit(rel, entry, visit))
}

struct TreeCopy<'a> {
    layer: &'a mut LayerDir,
    owners: Owners,
    chmod: Option<&'a Chmod>,
    target: &'a RootPath,
    /// First copy of each multiply-linked source inode.
    inodes: HashMap<(u64, u64), RootPath>,
    /// Live-view entries of target directories already in the layer, so that looking up a
    /// child costs one step instead of a walk from the root. They stay valid: below them
    /// only the layer changes, and the layer is read fresh on every lookup.
    dirs: HashMap<RootPath, Entry>,
    report: &'a mut CopyReport,
}

impl TreeCopy<'_> {
    fn visit(&mut self, rel: &RootPath, entry: &Entry, visit: Visit) -> Result<(), CopyError> {
        let target = self.target.join_path(rel);
        let dest_err = |source| CopyError::Dest { path: target.to_string(), source };
        let existing = self.existing(&target).map_err(dest_err)?;
        if entry.is_dir() {
            match existing {
                Some(found) if !found.is_dir() => {
                    return Err(CopyError::NonDirectory { path: target.to_string() });
                }
                Some(_) => {
                    self.layer.dir(&target).map_err(dest_err)?;
                    if rel.is_root() {
                        let st = entry.stat();
                        self.layer.set_dir_times(&target, st.atime, st.mtime);
                    } else if visit == Visit::Direct {
                        let meta = self.meta(entry)?;
                        self.layer.update_dir(&target, &meta).map_err(dest_err)?;
                    } else {
                        self.layer.set_dir_mode(&target, entry.stat().mode).map_err(dest_err)?;
                    }
                }
                None => {
                    let meta = self.meta(entry)?;
                    self.layer.create_dir(&target, &meta).map_err(dest_err)?;
                    self.report.dirs += 1;
                }
            }
            // Now in the layer: its live entry includes the layer.
            if let Some(live) = self.layer.entry(&target).map_err(dest_err)? {
                self.dirs.insert(target, live);
            }
            return Ok(());
        }
        match existing {
            Some(found) if found.is_dir() => {
                return Err(CopyError::ReplaceDir { path: target.to_string() });
            }
            Some(_) => self.layer.remove(&target).map_err(dest_err)?,
            None => {}
        }
        let meta = self.meta(entry)?;
        let src_err = |source| CopyError::Source { path: entry.path().to_string(), source };
        match entry.kind() {
            FileKind::File => {
                let st = entry.stat();
                if st.nlink > 1 {
                    if let Some(first) = self.inodes.get(&(st.dev, st.ino)) {
                        self.layer.hardlink(first, &target).map_err(dest_err)?;
                        self.report.hardlinks += 1;
                        return Ok(());
                    }
                    self.inodes.insert((st.dev, st.ino), target.clone());
                }
                let mut file = entry.open().map_err(src_err)?;
                self.report.bytes += self
                    .layer
                    .write_file(&target, Content::File(&mut file), &meta)
                    .map_err(dest_err)?;
                self.report.files += 1;
            }
            FileKind::Symlink => {
                let link = entry.read_link().map_err(src_err)?;
                self.layer.symlink(&target, &link, &meta).map_err(dest_err)?;
                self.report.symlinks += 1;
            }
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                if self
                    .layer
                    .node(&target, entry.kind(), entry.stat().rdev, &meta)
                    .map_err(dest_err)?
                {
                    self.report.nodes += 1;
                }
            }
            FileKind::Socket => {
                self.layer
                    .write_file(&target, Content::Reader(&mut std::io::empty()), &meta)
                    .map_err(dest_err)?;
                self.report.files += 1;
            }
            FileKind::Dir => unreachable!("directories are handled above"),
        }
        Ok(())
    }

    /// What the live view has at `target`, looked up from its parent's cached entry.
    fn existing(&mut self, target: &RootPath) -> Result<Option<Entry>, crate::fs::FsError> {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return self.layer.entry(target);
        };
        if !self.dirs.contains_key(&parent) {
            match self.layer.entry(&parent)? {
                Some(live) if live.is_dir() => {
                    self.dirs.insert(parent.clone(), live);
                }
                _ => return self.layer.entry(target),
            }
        }
        self.layer.live().child(&self.dirs[&parent], name)
    }

    /// The metadata a copy of `entry` gets.
    fn meta(&self, entry: &Entry) -> Result<NewMeta, CopyError> {
        let st = entry.stat();
        let xattrs = entry
            .xattrs()
            .map_err(|source| CopyError::Source { path: entry.path().to_string(), source })?
            .into_iter()
            .filter(|(name, _)| !xattr::is_excluded(name))
            .collect();
        let (uid, gid) = self.owners.of(st.uid, st.gid);
        let mode = match (self.chmod, entry.kind()) {
            (Some(chmod), kind) if kind != FileKind::Symlink => {
                chmod.apply(st.mode, kind == FileKind::Dir)
            }
            _ => st.mode,
        };
        Ok(NewMeta { mode, uid, gid, atime: st.atime, mtime: st.mtime, xattrs })
    }
}
