//! Layers from comparing two trees: `lower` (before) and `upper` (after). Used where overlayfs
//! is unavailable and for COPY results.
//!
//! Both trees are walked together, one directory at a time, children merged by name:
//!
//! - only in upper → the entry, and for a directory its whole subtree;
//! - only in lower → a whiteout `.wh.NAME` (nothing below it);
//! - in both, not both directories, and different → the upper entry (a non-directory
//!   replacing a directory needs no whiteout: applying it removes the directory);
//! - in both as directories → recurse; the directory entry itself is written when its own
//!   metadata changed, or (as containerd's change writer does) before the first changed entry
//!   below it, so every changed entry's parents are in the layer with their real metadata.
//!
//! "Different" compares the file type, permission bits, uid, gid, xattrs (those a layer
//! carries), and then: symlink targets, device numbers, and for regular files the size and
//! the content. mtime is never taken as proof that a file is unchanged (content is compared
//! byte for byte unless both sides are the same inode), because build steps routinely keep
//! mtimes while changing bytes (`cp -p`, `touch -r`, tar extraction, `SOURCE_DATE_EPOCH`);
//! a change of mtime alone is not a change either, so re-running a step that rewrites the same
//! bytes gives the same layer. Directory mtimes are ignored: they change with every entry.

use super::diff_overlay::{TreeKind, write_tree};
use super::error::LayerError;
use super::tar_writer::TarWriter;
use super::tree::{self, Child, Exclude};
use super::xattrs::{self, Xattrs};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A directory present in both trees whose entry is written only if something below changed.
struct Pending {
    name: Vec<u8>,
    child: Child,
    xattrs: Xattrs,
    written: bool,
}

/// Writes the changes from `lower` to `upper` into `writer`.
pub(crate) fn write_walk_diff<W: Write>(
    writer: &mut TarWriter<W>,
    lower: &Path,
    upper: &Path,
    exclude: &Exclude,
) -> Result<(), LayerError> {
    let md = std::fs::symlink_metadata(upper)
        .map_err(|source| LayerError::ReadTree { path: upper.to_path_buf(), source })?;
    let mut pending = Vec::new();
    diff_dir(writer, lower, upper, md.mtime(), b"", &mut pending, exclude)
}

enum Item {
    Added(Box<Child>),
    Deleted(Vec<u8>),
    BothDirs { lower: Box<Child>, upper: Box<Child> },
}

fn diff_dir<W: Write>(
    writer: &mut TarWriter<W>,
    lower: &Path,
    upper: &Path,
    upper_mtime: i64,
    prefix: &[u8],
    pending: &mut Vec<Pending>,
    exclude: &Exclude,
) -> Result<(), LayerError> {
    let mut sides: BTreeMap<Vec<u8>, (Option<Child>, Option<Child>)> = BTreeMap::new();
    for child in tree::children(lower)? {
        let name = child.name.clone();
        sides.entry(name).or_default().0 = Some(child);
    }
    for child in tree::children(upper)? {
        let name = child.name.clone();
        sides.entry(name).or_default().1 = Some(child);
    }
    let mut items: Vec<(Vec<u8>, Item)> = Vec::new();
    for (name, pair) in sides {
        if exclude.contains(&tree::join(prefix, &name)) {
            continue;
        }
        match pair {
            (None, Some(u)) => {
                if !u.md.file_type().is_socket() {
                    items.push((tree::sort_key(&name, u.md.is_dir()), Item::Added(Box::new(u))));
                }
            }
            (Some(_), None) => {
                let wh = tree::whiteout_name(&name);
                items.push((wh.clone(), Item::Deleted(wh)));
            }
            (Some(l), Some(u)) => {
                if l.md.is_dir() && u.md.is_dir() {
                    let key = tree::sort_key(&name, true);
                    items.push((key, Item::BothDirs { lower: Box::new(l), upper: Box::new(u) }));
                } else if u.md.file_type().is_socket() {
                    // A socket cannot be in a layer; what it replaced is gone.
                    let wh = tree::whiteout_name(&name);
                    items.push((wh.clone(), Item::Deleted(wh)));
                } else if !same_entry(&l, &u)? {
                    items.push((tree::sort_key(&name, u.md.is_dir()), Item::Added(Box::new(u))));
                }
            }
            (None, None) => {}
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, item) in items {
        match item {
            Item::Added(child) => {
                flush(writer, pending)?;
                let name = tree::join(prefix, &child.name);
                let kept = kept_xattrs(&child.path)?;
                writer.write_fs_entry(&name, &child.path, &child.md, &kept)?;
                if child.md.is_dir() {
                    write_tree(writer, &child.path, &name, TreeKind::Plain, exclude)?;
                }
            }
            Item::Deleted(wh) => {
                flush(writer, pending)?;
                writer.write_marker(&tree::join(prefix, &wh), upper_mtime)?;
            }
            Item::BothDirs { lower, upper } => {
                let name = tree::join(prefix, &upper.name);
                let upper_xattrs = kept_xattrs(&upper.path)?;
                let changed = lower.md.mode() != upper.md.mode()
                    || lower.md.uid() != upper.md.uid()
                    || lower.md.gid() != upper.md.gid()
                    || kept_xattrs(&lower.path)? != upper_xattrs;
                let mtime = upper.md.mtime();
                let (lower_path, upper_path) = (lower.path.clone(), upper.path.clone());
                pending.push(Pending {
                    name: name.clone(),
                    child: *upper,
                    xattrs: upper_xattrs,
                    written: false,
                });
                if changed {
                    flush(writer, pending)?;
                }
                diff_dir(writer, &lower_path, &upper_path, mtime, &name, pending, exclude)?;
                pending.pop();
            }
        }
    }
    Ok(())
}

/// Writes the directory entries of `pending` not yet written, outermost first.
fn flush<W: Write>(writer: &mut TarWriter<W>, pending: &mut [Pending]) -> Result<(), LayerError> {
    for dir in pending.iter_mut().filter(|d| !d.written) {
        writer.write_fs_entry(&dir.name, &dir.child.path, &dir.child.md, &dir.xattrs)?;
        dir.written = true;
    }
    Ok(())
}

fn kept_xattrs(path: &Path) -> Result<Xattrs, LayerError> {
    let all = xattrs::read_all(path)
        .map_err(|source| LayerError::ReadTree { path: path.to_path_buf(), source })?;
    Ok(all.into_iter().filter(|(n, _)| !xattrs::is_excluded(n)).collect())
}

/// True when `upper` carries nothing new over `lower` (neither is a pair of directories).
fn same_entry(lower: &Child, upper: &Child) -> Result<bool, LayerError> {
    let (l, u) = (&lower.md, &upper.md);
    if l.mode() != u.mode() || l.uid() != u.uid() || l.gid() != u.gid() {
        return Ok(false); // mode includes the file type
    }
    if kept_xattrs(&lower.path)? != kept_xattrs(&upper.path)? {
        return Ok(false);
    }
    let ft = u.file_type();
    if ft.is_symlink() {
        let read = |p: &Path| {
            std::fs::read_link(p)
                .map_err(|source| LayerError::ReadTree { path: p.to_path_buf(), source })
        };
        return Ok(read(&lower.path)? == read(&upper.path)?);
    }
    if ft.is_char_device() || ft.is_block_device() {
        return Ok(l.rdev() == u.rdev());
    }
    if ft.is_file() {
        if l.len() != u.len() {
            return Ok(false);
        }
        if l.dev() == u.dev() && l.ino() == u.ino() {
            return Ok(true);
        }
        return same_content(&lower.path, &upper.path)
            .map_err(|source| LayerError::ReadTree { path: upper.path.clone(), source });
    }
    Ok(true) // fifos
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
