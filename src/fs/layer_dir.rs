//! A new layer directory being written over a root filesystem (COPY, ADD, WORKDIR).
//!
//! The layer directory starts empty and ends holding exactly what the step adds: the new
//! files, and every directory on the way to them. A directory on the way that already exists
//! in the root below is *replicated* — made in the layer with the existing one's mode,
//! owner, xattrs and times — so applying the layer changes nothing about it.
//!
//! ```text
//! out_dir/                 (the layer; its own metadata is not part of the layer)
//!   usr/                   replicated from the rootfs (0755 root:root, its mtime)
//!     local/               replicated
//!       bin/tool           new
//!   app/                   new (0755, --chown owner, creation time)
//! ```
//!
//! Paths are resolved in the *live* view: the layer directory on top of the root below,
//! read fresh on every lookup, so symlinks and directories made earlier in the same step
//! count (a second COPY source written through a symlink the first one made lands where the
//! link points, inside the root).
//!
//! Confinement invariant: every write is an `*at` call on a directory fd obtained with
//! `openat2(out_dir, real_path, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` or by `O_NOFOLLOW`
//! opens one component at a time from `out_dir`, and the final component is created with
//! `O_EXCL | O_NOFOLLOW`, `mkdirat`, `symlinkat`, `linkat` (no follow) or `mknodat` — never
//! followed. Whatever symlinks the sources, the root below or the layer itself hold, nothing
//! is written outside `out_dir`.
//!
//! Directory times are set last ([`LayerDir::finish`]), deepest first, because creating
//! entries in a directory changes its mtime.

use super::merged::{FileKind, Stat, Time, open_beneath};
use super::{Entry, FsError, MergedRoot, Resolved, RootPath, xattr};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Metadata for something the layer creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMeta {
    /// Permission and set-id/sticky bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
    /// Extended attributes to set (excluded names are skipped, see [`xattr::is_excluded`]).
    pub xattrs: xattr::Xattrs,
}

impl NewMeta {
    /// The metadata of an existing entry.
    pub fn of(stat: &Stat, xattrs: xattr::Xattrs) -> Self {
        NewMeta {
            mode: stat.mode,
            uid: stat.uid,
            gid: stat.gid,
            atime: stat.atime,
            mtime: stat.mtime,
            xattrs,
        }
    }

    /// A plain directory or file: `mode`, owner, both times `time`, no xattrs.
    pub fn simple(mode: u32, uid: u32, gid: u32, time: Time) -> Self {
        NewMeta { mode, uid, gid, atime: time, mtime: time, xattrs: Vec::new() }
    }
}

/// The bytes of a file being written.
pub enum Content<'a> {
    File(&'a mut File),
    Reader(&'a mut dyn Read),
}

/// Counts of what the kernel would not let the layer hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// xattrs refused (no privilege for `trusted.*`/`security.*`, or on symlinks).
    pub xattrs_skipped: u64,
    /// Device nodes not made because `mknod` was refused (rootless) or because they were
    /// 0/0 character devices, which an overlay lower layer would read as whiteouts.
    pub devices_skipped: u64,
}

/// A layer directory being written over a root (see the module docs).
pub struct LayerDir {
    out_dir: PathBuf,
    fd: OwnedFd,
    lower: MergedRoot,
    live: MergedRoot,
    dir_times: HashMap<RootPath, (Time, Time)>,
    stats: WriteStats,
}

impl LayerDir {
    /// Opens the (empty) layer directory `out_dir` to be written over `lower`.
    pub fn open(out_dir: &Path, lower: &MergedRoot) -> Result<Self, FsError> {
        let fd = rustix::fs::open(
            out_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::OpenRoot { path: out_dir.to_path_buf(), source: e.into() })?;
        Ok(LayerDir {
            out_dir: out_dir.to_path_buf(),
            fd,
            lower: lower.clone(),
            live: lower.with_top_layer(out_dir)?,
            dir_times: HashMap::new(),
            stats: WriteStats::default(),
        })
    }

    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The layer over the root below, as it is now.
    pub fn live(&self) -> &MergedRoot {
        &self.live
    }

    /// Resolves `path` in the live view with `base` as its root (see
    /// [`MergedRoot::resolve_in`]).
    pub fn resolve(
        &self,
        base: &RootPath,
        path: impl AsRef<OsStr>,
        follow_final: bool,
    ) -> Result<Resolved, FsError> {
        self.live.resolve_in(base, path, follow_final)
    }

    /// The entry at the real path `path` in the live view (no symlink followed).
    pub fn entry(&self, path: &RootPath) -> Result<Option<Entry>, FsError> {
        self.live.entry_at(path)
    }

    /// Whether `path` exists in the layer directory itself (not only below).
    pub fn in_layer(&self, path: &RootPath) -> Result<bool, FsError> {
        let Some(parent) = path.parent() else { return Ok(true) };
        let name = path.file_name().expect("not the root");
        let dir = match open_beneath(&self.fd, &parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if is_absent(&e) => return Ok(false),
            Err(e) => return Err(FsError::io("open directory", &parent, e)),
        };
        Ok(lstat_at(&dir, name).map_err(|e| FsError::io("stat", path, e))?.is_some())
    }

    /// Makes sure the directory `path` exists in the layer: directories that exist below are
    /// replicated, missing ones are made with `create` (an error when `create` is `None`).
    /// Returns the directories made from `create`, outermost first.
    pub fn ensure_dir(
        &mut self,
        path: &RootPath,
        create: Option<&NewMeta>,
    ) -> Result<Vec<RootPath>, FsError> {
        let mut made = Vec::new();
        let mut dir = self.open_root()?;
        let mut prefix = RootPath::root();
        for name in path.components() {
            prefix.push(name.clone());
            match lstat_at(&dir, name).map_err(|e| FsError::io("stat", &prefix, e))? {
                Some(st) if st.kind == FileKind::Dir => {}
                Some(_) => return Err(FsError::NotADirectory { path: prefix }),
                None => match self.lower.entry_at(&prefix)? {
                    Some(existing) if existing.is_dir() => {
                        let meta = NewMeta::of(existing.stat(), existing.xattrs()?);
                        self.make_dir(&dir, &prefix, &meta)?;
                    }
                    Some(_) => return Err(FsError::NotADirectory { path: prefix }),
                    None => {
                        let meta = create.ok_or_else(|| {
                            FsError::io(
                                "open directory",
                                &prefix,
                                io::Error::from(io::ErrorKind::NotFound),
                            )
                        })?;
                        self.make_dir(&dir, &prefix, meta)?;
                        made.push(prefix.clone());
                    }
                },
            }
            dir =
                open_dir_path(&dir, name).map_err(|e| FsError::io("open directory", &prefix, e))?;
        }
        Ok(made)
    }

    /// The directory `path` of the layer, replicated from below first when needed (it must
    /// be a directory in the live view), as an fd for `*at` calls.
    pub fn dir(&mut self, path: &RootPath) -> Result<OwnedFd, FsError> {
        self.ensure_dir(path, None)?;
        open_beneath(&self.fd, path, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| FsError::io("open directory", path, e))
    }

    /// Removes whatever the layer itself has at `path` (and below it). Entries of the root
    /// below are not touched: what the layer writes next at `path` hides them.
    pub fn remove(&mut self, path: &RootPath) -> Result<(), FsError> {
        let Some(parent) = path.parent() else { return Ok(()) };
        let name = path.file_name().expect("not the root");
        let dir = match open_beneath(&self.fd, &parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if is_absent(&e) => return Ok(()),
            Err(e) => return Err(FsError::io("open directory", &parent, e)),
        };
        remove_all_at(&dir, name).map_err(|e| FsError::io("remove", path, e))?;
        self.dir_times.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    /// Makes the directory `path` (its parent must exist in the layer) with `meta`; its times
    /// are set by [`finish`](LayerDir::finish).
    pub fn create_dir(&mut self, path: &RootPath, meta: &NewMeta) -> Result<(), FsError> {
        let (parent, _) = self.parent_of(path)?;
        self.make_dir(&parent, path, meta)
    }

    /// Sets the owner, mode and xattrs of the layer's existing directory `path` to `meta`
    /// (times at [`finish`](LayerDir::finish)).
    pub fn update_dir(&mut self, path: &RootPath, meta: &NewMeta) -> Result<(), FsError> {
        let fd = open_beneath(&self.fd, path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| FsError::io("open directory", path, e))?;
        self.set_meta(&fd, path, meta)?;
        self.set_dir_times(path, meta.atime, meta.mtime);
        Ok(())
    }

    /// Sets only the mode of the layer's existing directory `path`.
    pub fn set_dir_mode(&mut self, path: &RootPath, mode: u32) -> Result<(), FsError> {
        let fd = open_beneath(&self.fd, path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| FsError::io("open directory", path, e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| FsError::io("chmod", path, e))
    }

    /// Records the times the directory `path` gets at the end.
    pub fn set_dir_times(&mut self, path: &RootPath, atime: Time, mtime: Time) {
        self.dir_times.insert(path.clone(), (atime, mtime));
    }

    /// Writes a regular file at `path` (its parent must exist in the layer, nothing may be at
    /// `path` in the layer) from `content`; returns the bytes written.
    pub fn write_file(
        &mut self,
        path: &RootPath,
        content: Content<'_>,
        meta: &NewMeta,
    ) -> Result<u64, FsError> {
        let (parent, name) = self.parent_of(path)?;
        let fd = rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| FsError::io("create", path, e))?;
        let mut file = File::from(fd);
        let bytes = match content {
            // File to file: `io::copy` uses `copy_file_range` (reflinks where the fs can).
            Content::File(source) => io::copy(source, &mut file),
            Content::Reader(reader) => copy_content(reader, &mut file),
        }
        .map_err(|e| FsError::io("write", path, e))?;
        self.set_meta(&file, path, meta)?;
        rustix::fs::futimens(&file, &timestamps(meta.atime, meta.mtime))
            .map_err(|e| FsError::io("set times of", path, e))?;
        Ok(bytes)
    }

    /// Makes a symlink at `path` pointing to `target` (stored as given).
    pub fn symlink(
        &mut self,
        path: &RootPath,
        target: &OsStr,
        meta: &NewMeta,
    ) -> Result<(), FsError> {
        let (parent, name) = self.parent_of(path)?;
        rustix::fs::symlinkat(target, &parent, name)
            .map_err(|e| FsError::io("symlink", path, e))?;
        chown_at(&parent, name, path, meta)?;
        self.stats.xattrs_skipped +=
            meta.xattrs.iter().filter(|(n, _)| !xattr::is_excluded(n)).count() as u64;
        rustix::fs::utimensat(
            &parent,
            name,
            &timestamps(meta.atime, meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| FsError::io("set times of", path, e))?;
        Ok(())
    }

    /// Makes `path` a hard link to the layer's file `target`. A target that exists only in
    /// the root below is first copied up into the layer (a link cannot cross layers).
    pub fn hardlink(&mut self, target: &RootPath, path: &RootPath) -> Result<(), FsError> {
        if !self.in_layer(target)? {
            self.copy_up(target)?;
        }
        let (target_parent, target_name) = self.parent_of(target)?;
        let (parent, name) = self.parent_of(path)?;
        rustix::fs::linkat(&target_parent, target_name, &parent, name, AtFlags::empty())
            .map_err(|e| FsError::io("link", path, e))?;
        Ok(())
    }

    /// Gives the layer's non-directory `path` the owner, xattrs, mode and times of `meta`, or
    /// only the owner when it is a symlink. For a hard link just made, that is the file all
    /// its names share: moby's `Untar` applies a link's own header so (`createTarFile`).
    pub fn set_linked_meta(&mut self, path: &RootPath, meta: &NewMeta) -> Result<(), FsError> {
        let (parent, name) = self.parent_of(path)?;
        let kind =
            lstat_at(&parent, name).map_err(|e| FsError::io("stat", path, e))?.map(|s| s.kind);
        match kind {
            Some(FileKind::File) => {
                let fd = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| FsError::io("open", path, e))?;
                self.set_meta(&fd, path, meta)?;
                rustix::fs::futimens(&fd, &timestamps(meta.atime, meta.mtime))
                    .map_err(|e| FsError::io("set times of", path, e))
            }
            Some(FileKind::Symlink) => chown_at(&parent, name, path, meta),
            Some(FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice) => {
                set_node_meta(&parent, name, path, meta)
            }
            _ => Err(FsError::io("set metadata of", path, io::Error::other("not a link target"))),
        }
    }

    /// Makes a device node or fifo at `path`. Returns `false` when it was skipped (see
    /// [`WriteStats::devices_skipped`]).
    pub fn node(
        &mut self,
        path: &RootPath,
        kind: FileKind,
        rdev: u64,
        meta: &NewMeta,
    ) -> Result<bool, FsError> {
        let file_type = match kind {
            FileKind::CharDevice if rdev == 0 => {
                self.stats.devices_skipped += 1;
                return Ok(false);
            }
            FileKind::CharDevice => FileType::CharacterDevice,
            FileKind::BlockDevice => FileType::BlockDevice,
            FileKind::Fifo => FileType::Fifo,
            other => {
                return Err(FsError::io(
                    "mknod",
                    path,
                    io::Error::other(format!("not a node: {other:?}")),
                ));
            }
        };
        let (parent, name) = self.parent_of(path)?;
        match rustix::fs::mknodat(&parent, name, file_type, Mode::from_raw_mode(0o600), rdev as _) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::ACCESS) if kind != FileKind::Fifo => {
                self.stats.devices_skipped += 1;
                return Ok(false);
            }
            Err(e) => return Err(FsError::io("mknod", path, e)),
        }
        set_node_meta(&parent, name, path, meta)?;
        Ok(true)
    }

    /// Sets the recorded directory times (deepest first) and returns what was skipped.
    pub fn finish(self) -> Result<WriteStats, FsError> {
        let mut dirs: Vec<_> = self.dir_times.iter().collect();
        dirs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(b.0)));
        for (path, (atime, mtime)) in dirs {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { continue };
            let dir = match open_beneath(&self.fd, &parent, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                // Replaced by a non-directory later in the step: nothing to date.
                Err(e) if is_absent(&e) || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                    continue;
                }
                Err(e) => return Err(FsError::io("open directory", &parent, e)),
            };
            match lstat_at(&dir, name).map_err(|e| FsError::io("stat", path, e))? {
                Some(st) if st.kind == FileKind::Dir => {}
                _ => continue,
            }
            rustix::fs::utimensat(
                &dir,
                name,
                &timestamps(*atime, *mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| FsError::io("set times of", path, e))?;
        }
        Ok(self.stats)
    }

    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    fn open_root(&self) -> Result<OwnedFd, FsError> {
        open_beneath(&self.fd, &RootPath::root(), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| FsError::io("open directory", &RootPath::root(), e))
    }

    /// The fd of `path`'s parent in the layer, and `path`'s last component.
    fn parent_of<'p>(&self, path: &'p RootPath) -> Result<(OwnedFd, &'p OsStr), FsError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(FsError::io("create", path, io::Error::other("the root itself")));
        };
        let fd = open_beneath(&self.fd, &parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| FsError::io("open directory", &parent, e))?;
        Ok((fd, name))
    }

    fn make_dir(
        &mut self,
        parent: &OwnedFd,
        path: &RootPath,
        meta: &NewMeta,
    ) -> Result<(), FsError> {
        let name = path.file_name().expect("not the root");
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| FsError::io("mkdir", path, e))?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::io("open directory", path, e))?;
        self.set_meta(&fd, path, meta)?;
        self.set_dir_times(path, meta.atime, meta.mtime);
        Ok(())
    }

    /// Owner, xattrs, then mode (chown clears set-id bits and file capabilities).
    fn set_meta(
        &mut self,
        fd: &impl std::os::fd::AsFd,
        path: &RootPath,
        meta: &NewMeta,
    ) -> Result<(), FsError> {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )
        .map_err(|e| FsError::io("chown", path, e))?;
        self.stats.xattrs_skipped +=
            xattr::apply(fd, &meta.xattrs).map_err(|e| FsError::io("set xattrs of", path, e))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| FsError::io("chmod", path, e))?;
        Ok(())
    }

    /// Copies the file `path` of the root below into the layer, with its metadata.
    fn copy_up(&mut self, path: &RootPath) -> Result<(), FsError> {
        let entry = self.lower.entry_at(path)?.ok_or_else(|| {
            FsError::io("link to", path, io::Error::from(io::ErrorKind::NotFound))
        })?;
        if entry.kind() != FileKind::File {
            return Err(FsError::io("link to", path, io::Error::other("not a regular file")));
        }
        if let Some(parent) = path.parent() {
            self.ensure_dir(&parent, None)?;
        }
        let meta = NewMeta::of(entry.stat(), entry.xattrs()?);
        let mut content = entry.open()?;
        self.write_file(path, Content::File(&mut content), &meta)?;
        Ok(())
    }
}

/// Sets the owner of `name` in `parent` (`path` in the layer), not following a symlink.
fn chown_at(
    parent: &OwnedFd,
    name: &OsStr,
    path: &RootPath,
    meta: &NewMeta,
) -> Result<(), FsError> {
    rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| FsError::io("chown", path, e))
}

/// Sets the owner, mode and times of the device node or fifo `name` in `parent`.
fn set_node_meta(
    parent: &OwnedFd,
    name: &OsStr,
    path: &RootPath,
    meta: &NewMeta,
) -> Result<(), FsError> {
    chown_at(parent, name, path, meta)?;
    rustix::fs::chmodat(parent, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
        .map_err(|e| FsError::io("chmod", path, e))?;
    rustix::fs::utimensat(
        parent,
        name,
        &timestamps(meta.atime, meta.mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| FsError::io("set times of", path, e))
}

/// `lstat` of `name` in `dir`; `None` when absent.
fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Stat::from_raw(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_dir_path(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes `name` in `dir` and everything below it; absent is fine.
fn remove_all_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else { return Ok(()) };
    if st.kind == FileKind::Dir {
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for item in rustix::fs::Dir::read_from(&sub)? {
            let item = item?;
            let child = item.file_name().to_bytes();
            if child != b"." && child != b".." {
                names.push(OsStr::from_bytes(child).to_os_string());
            }
        }
        for child in names {
            remove_all_at(&sub, &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

fn copy_content(content: &mut dyn Read, file: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn timestamps(atime: Time, mtime: Time) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: atime.sec, tv_nsec: atime.nsec as _ },
        last_modification: Timespec { tv_sec: mtime.sec, tv_nsec: mtime.nsec as _ },
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == Errno::NOENT.raw_os_error() || code == Errno::NOTDIR.raw_os_error())
}

#[cfg(test)]
mod tests;
