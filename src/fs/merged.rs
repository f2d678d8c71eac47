//! A read-only, userspace view of a stack of layer directories, merged as overlayfs would.
//!
//! The layers are snapshot directories in *overlay lower format*, top layer first:
//!
//! ```text
//! layers[0]/            top: wins over everything below
//!   etc/passwd          hides etc/passwd of every lower layer
//!   tmp/                directories merge with lower ones ...
//!   opt/   (opaque)     ... unless opaque (`trusted.overlay.opaque=y` or `user.overlay.opaque=y`):
//!                       then nothing below shows through
//!   var/cache  (c 0/0)  whiteout: `var/cache` is gone, whatever lower layers have
//!   var/log    (empty file with `*.overlay.whiteout`): also a whiteout
//! layers[1]/ ...
//! ```
//!
//! A name resolves to the entry of the highest layer that has it; a whiteout ends the search
//! (not found); a non-directory ends it (found); a directory starts a merged directory made of
//! it and the directories of the same path in the layers below, down to the first opaque one
//! or the first layer where the path is not a directory. An empty stack is an empty root
//! (`FROM scratch`). [`MergedRoot::plain`] treats one host directory the same way with no
//! whiteout or opaque markers (a build context), optionally hiding `.dockerignore`d paths.
//!
//! Invariants:
//! - Symlinks are resolved *inside* the merged root, never on the host: an absolute target
//!   restarts at the root, `..` never climbs above it, at most [`MAX_SYMLINKS`] links are
//!   followed per lookup (more is a loop, reported as an error).
//! - The host is only ever touched through `openat2(layer_fd, real_path, RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)` where `real_path` is a [`RootPath`] whose components were each
//!   found to be directories: a host symlink, even one swapped in by a racing process, makes
//!   the call fail instead of leading outside the layer. Files opened for reading are checked
//!   to be the inode that was looked up.
//! - The view reads the disk on every call (no caching), so a layer directory being written
//!   (the top of a live view, see `layer_dir`) is always seen as it is now.

use super::path::{Step, steps};
use super::{FsError, RootPath, xattr};
use kiln_frontend::dockerignore::IgnoreFile;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Symlinks followed in one lookup before it fails (the kernel's limit).
pub const MAX_SYMLINKS: usize = 40;

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    fn from_mode(mode: u32) -> Self {
        match rustix::fs::FileType::from_raw_mode(mode) {
            rustix::fs::FileType::Directory => FileKind::Dir,
            rustix::fs::FileType::Symlink => FileKind::Symlink,
            rustix::fs::FileType::CharacterDevice => FileKind::CharDevice,
            rustix::fs::FileType::BlockDevice => FileKind::BlockDevice,
            rustix::fs::FileType::Fifo => FileKind::Fifo,
            rustix::fs::FileType::Socket => FileKind::Socket,
            _ => FileKind::File,
        }
    }

    /// A one-letter tag (`d`, `f`, `l`, `c`, `b`, `p`, `s`), as `find -printf %y` prints.
    pub fn letter(self) -> char {
        match self {
            FileKind::Dir => 'd',
            FileKind::File => 'f',
            FileKind::Symlink => 'l',
            FileKind::CharDevice => 'c',
            FileKind::BlockDevice => 'b',
            FileKind::Fifo => 'p',
            FileKind::Socket => 's',
        }
    }
}

/// A point in time, as stored in inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// What `lstat` says about a file, in plain fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stat {
    pub kind: FileKind,
    /// Permission and set-id/sticky bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Time,
    pub atime: Time,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
}

impl Stat {
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn from_raw(st: &rustix::fs::Stat) -> Self {
        let mode = st.st_mode as u32;
        Stat {
            kind: FileKind::from_mode(mode),
            mode: mode & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size.max(0) as u64,
            mtime: Time { sec: st.st_mtime as i64, nsec: st.st_mtime_nsec as u32 },
            atime: Time { sec: st.st_atime as i64, nsec: st.st_atime_nsec as u32 },
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            rdev: st.st_rdev as u64,
        }
    }

    /// The stat of the root of an empty stack: a root-owned 0755 directory.
    fn empty_root() -> Self {
        Stat {
            kind: FileKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Time::default(),
            atime: Time::default(),
            dev: 0,
            ino: 0,
            nlink: 2,
            rdev: 0,
        }
    }

    /// Device major and minor numbers (for char and block devices).
    pub fn device(&self) -> (u32, u32) {
        (rustix::fs::major(self.rdev as _), rustix::fs::minor(self.rdev as _))
    }
}

/// One layer directory, opened once.
#[derive(Debug)]
pub(crate) struct Layer {
    dir: PathBuf,
    fd: OwnedFd,
}

impl Layer {
    fn open(dir: &Path) -> Result<Self, FsError> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::OpenRoot { path: dir.to_path_buf(), source: e.into() })?;
        Ok(Layer { dir: dir.to_path_buf(), fd })
    }

    /// Opens `path` inside the layer with every component required to be a real directory
    /// (see the module invariants). `flags` decide what is opened; `O_NOFOLLOW` is added.
    pub(crate) fn open_beneath(&self, path: &RootPath, flags: OFlags) -> io::Result<OwnedFd> {
        open_beneath(&self.fd, path, flags)
    }
}

/// `openat2(dir, path, flags | O_NOFOLLOW | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
/// retried when a concurrent rename makes the kernel ask (`EAGAIN`).
pub(crate) fn open_beneath(dir: impl AsFd, path: &RootPath, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = path.relative();
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..128 {
        match rustix::fs::openat2(dir.as_fd(), &rel, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            Err(Errno::NOSYS) => {
                return Err(io::Error::other(
                    "openat2 is unavailable (Linux 5.6 or later, not filtered by seccomp, is required)",
                ));
            }
            other => return other.map_err(io::Error::from),
        }
    }
    Err(io::Error::other("path resolution kept racing with renames"))
}

/// A file found in a merged root.
#[derive(Debug, Clone)]
pub struct Entry {
    path: RootPath,
    stat: Stat,
    /// The layer the entry comes from; `None` only for the root of an empty stack.
    layer: Option<Arc<Layer>>,
    /// For directories: indices of the layers merged into it, top first.
    stack: Arc<[usize]>,
}

impl Entry {
    /// The entry's real path in the merged root.
    pub fn path(&self) -> &RootPath {
        &self.path
    }

    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    pub fn kind(&self) -> FileKind {
        self.stat.kind
    }

    pub fn is_dir(&self) -> bool {
        self.stat.kind == FileKind::Dir
    }

    /// Where the entry lives on the host (the winning layer's file); `None` for the root of an
    /// empty stack. For information (stat caches, messages): reading goes through [`open`].
    ///
    /// [`open`]: Entry::open
    pub fn host_path(&self) -> Option<PathBuf> {
        let layer = self.layer.as_ref()?;
        if self.path.is_root() {
            return Some(layer.dir.clone());
        }
        Some(layer.dir.join(self.path.relative()))
    }

    /// Opens a regular file for reading, confined to its layer, and checks that it is still
    /// the inode that was looked up.
    pub fn open(&self) -> Result<File, FsError> {
        let layer = self.layer.as_ref().ok_or_else(|| {
            FsError::io("open", &self.path, io::Error::from(io::ErrorKind::IsADirectory))
        })?;
        let fd = layer
            .open_beneath(&self.path, OFlags::RDONLY)
            .map_err(|e| FsError::io("open", &self.path, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| FsError::io("stat", &self.path, e))?;
        #[allow(clippy::unnecessary_cast)]
        if st.st_ino as u64 != self.stat.ino || st.st_dev as u64 != self.stat.dev {
            return Err(FsError::Changed { path: self.path.clone() });
        }
        Ok(File::from(fd))
    }

    /// The target of a symlink, as stored.
    pub fn read_link(&self) -> Result<OsString, FsError> {
        let layer = self.layer.as_ref().ok_or_else(|| {
            FsError::io("readlink", &self.path, io::Error::from(io::ErrorKind::InvalidInput))
        })?;
        let fd = layer
            .open_beneath(&self.path, OFlags::PATH)
            .map_err(|e| FsError::io("readlink", &self.path, e))?;
        let target = rustix::fs::readlinkat(&fd, "", Vec::new())
            .map_err(|e| FsError::io("readlink", &self.path, e))?;
        Ok(OsString::from_vec(target.into_bytes()))
    }

    /// The entry's extended attributes (files and directories; other types have none here),
    /// sorted, overlay-private ones included (callers filter with [`xattr::is_excluded`]).
    pub fn xattrs(&self) -> Result<xattr::Xattrs, FsError> {
        let flags = match self.stat.kind {
            FileKind::Dir => OFlags::RDONLY | OFlags::DIRECTORY,
            FileKind::File => OFlags::RDONLY,
            _ => return Ok(Vec::new()),
        };
        let Some(layer) = self.layer.as_ref() else { return Ok(Vec::new()) };
        let fd = layer
            .open_beneath(&self.path, flags)
            .map_err(|e| FsError::io("open", &self.path, e))?;
        xattr::read_all(&fd).map_err(|e| FsError::io("read xattrs of", &self.path, e))
    }
}

/// The outcome of resolving a path.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The real path: every symlink on the way followed (the final one only when asked),
    /// components after the first missing one appended as written.
    pub path: RootPath,
    /// The entry at `path`, when it exists.
    pub entry: Option<Entry>,
}

/// A stack of layer directories seen as one root filesystem (see the module docs).
#[derive(Debug, Clone)]
pub struct MergedRoot {
    layers: Vec<Arc<Layer>>,
    /// Whiteouts and opaque directories are interpreted (overlay lower format).
    overlay: bool,
    /// Paths hidden as `.dockerignore` hides them from a build context.
    ignore: Option<Arc<IgnoreFile>>,
}

impl MergedRoot {
    /// The merge of `layers`, top first, in overlay lower format. No layers: an empty root.
    pub fn new(layers: Vec<PathBuf>) -> Result<Self, FsError> {
        let layers =
            layers.iter().map(|dir| Layer::open(dir).map(Arc::new)).collect::<Result<_, _>>()?;
        Ok(MergedRoot { layers, overlay: true, ignore: None })
    }

    /// One plain host directory (a build context): no whiteouts, no opaque directories.
    pub fn plain(dir: &Path) -> Result<Self, FsError> {
        Ok(MergedRoot { layers: vec![Arc::new(Layer::open(dir)?)], overlay: false, ignore: None })
    }

    /// The same view with `.dockerignore` patterns applied: an excluded path is absent, except
    /// a directory a `!` pattern may re-include something in.
    pub fn with_ignore(mut self, ignore: IgnoreFile) -> Self {
        self.ignore = Some(Arc::new(ignore));
        self
    }

    /// The same view with `dir` on top (a layer being written over this root).
    pub fn with_top_layer(&self, dir: &Path) -> Result<Self, FsError> {
        let mut layers = vec![Arc::new(Layer::open(dir)?)];
        layers.extend(self.layers.iter().cloned());
        Ok(MergedRoot { layers, overlay: true, ignore: self.ignore.clone() })
    }

    /// The host directories of the layers, top first.
    pub fn layer_dirs(&self) -> Vec<&Path> {
        self.layers.iter().map(|l| l.dir.as_path()).collect()
    }

    /// The root directory.
    pub fn root(&self) -> Result<Entry, FsError> {
        let root = RootPath::root();
        let Some(top) = self.layers.first() else {
            return Ok(Entry {
                path: root,
                stat: Stat::empty_root(),
                layer: None,
                stack: Arc::from([]),
            });
        };
        let stat = stat_in(top, &root)?
            .ok_or_else(|| FsError::io("stat", &root, io::Error::from(io::ErrorKind::NotFound)))?;
        let mut stack = vec![0];
        if !(self.overlay && self.is_opaque(0, &root)?) {
            for i in 1..self.layers.len() {
                stack.push(i);
                if self.overlay && self.is_opaque(i, &root)? {
                    break;
                }
            }
        }
        Ok(Entry { path: root, stat, layer: Some(top.clone()), stack: stack.into() })
    }

    /// The entry named `name` in the directory `dir` (which must come from this root), without
    /// following a symlink.
    pub fn child(&self, dir: &Entry, name: &OsStr) -> Result<Option<Entry>, FsError> {
        let path = dir.path.join(name);
        let mut found: Option<(usize, Stat)> = None;
        let mut stack = Vec::new();
        for &i in dir.stack.iter() {
            let Some(stat) = stat_in(&self.layers[i], &path)? else { continue };
            if self.overlay && self.is_whiteout(i, &path, &stat)? {
                break;
            }
            if found.is_none() {
                found = Some((i, stat));
                if stat.kind != FileKind::Dir {
                    break;
                }
            } else if stat.kind != FileKind::Dir {
                // A lower non-directory under a directory is hidden, and so is all below it.
                break;
            }
            stack.push(i);
            if self.overlay && self.is_opaque(i, &path)? {
                break;
            }
        }
        let Some((top, stat)) = found else { return Ok(None) };
        if stack.is_empty() {
            stack.push(top);
        }
        if let Some(ignore) = &self.ignore {
            let rel = path.to_slash_string();
            if ignore.is_excluded(&rel)
                && !(stat.kind == FileKind::Dir && ignore.may_reinclude_within(&rel))
            {
                return Ok(None);
            }
        }
        Ok(Some(Entry { path, stat, layer: Some(self.layers[top].clone()), stack: stack.into() }))
    }

    /// The entries of the directory `dir`, sorted by name.
    pub fn list(&self, dir: &Entry) -> Result<Vec<(OsString, Entry)>, FsError> {
        if dir.stat.kind != FileKind::Dir {
            return Err(FsError::NotADirectory { path: dir.path.clone() });
        }
        let mut names: Vec<OsString> = Vec::new();
        for &i in dir.stack.iter() {
            let fd = self.layers[i]
                .open_beneath(&dir.path, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| FsError::io("open directory", &dir.path, e))?;
            let iter = rustix::fs::Dir::new(fd)
                .map_err(|e| FsError::io("read directory", &dir.path, e))?;
            for item in iter {
                let item = item.map_err(|e| FsError::io("read directory", &dir.path, e))?;
                let name = item.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(OsString::from_vec(name.to_vec()));
                }
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(entry) = self.child(dir, &name)? {
                out.push((name, entry));
            }
        }
        Ok(out)
    }

    /// Resolves `path` from the root. See [`MergedRoot::resolve_in`].
    pub fn resolve(
        &self,
        path: impl AsRef<OsStr>,
        follow_final: bool,
    ) -> Result<Resolved, FsError> {
        self.resolve_in(&RootPath::root(), path, follow_final)
    }

    /// Resolves `path` with the directory `base` acting as the root: symlinks are followed
    /// (the final one only when `follow_final`), absolute targets restart at `base`, `..`
    /// stops at `base`. A missing component makes the rest of the path lexical. A
    /// non-directory in the middle of the path is an error, as is a symlink loop.
    pub fn resolve_in(
        &self,
        base: &RootPath,
        path: impl AsRef<OsStr>,
        follow_final: bool,
    ) -> Result<Resolved, FsError> {
        let base_entry = match self.entry_at(base)? {
            Some(entry) if entry.is_dir() => entry,
            Some(_) => return Err(FsError::NotADirectory { path: base.clone() }),
            None => {
                return Err(FsError::io("resolve", base, io::Error::from(io::ErrorKind::NotFound)));
            }
        };
        let mut todo: VecDeque<Step> = steps(path.as_ref().as_bytes()).into();
        // The entries from `base` to the current directory: `..` pops, never past `base`.
        let mut chain = vec![base_entry];
        let mut real = base.clone();
        let mut missing = false;
        let mut hops = 0;
        while let Some(step) = todo.pop_front() {
            let name = match step {
                Step::Parent => {
                    if real.len() > base.len() {
                        real.pop();
                        if !missing {
                            chain.pop();
                        }
                    }
                    continue;
                }
                Step::Name(name) => name,
            };
            if missing {
                real.push(name);
                continue;
            }
            let dir = chain.last().expect("chain starts with base");
            let here = real.join(&name);
            match self.child(dir, &name)? {
                None => {
                    missing = true;
                    real = here;
                }
                Some(entry)
                    if entry.kind() == FileKind::Symlink && (follow_final || !todo.is_empty()) =>
                {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(FsError::SymlinkLoop { path: here });
                    }
                    let target = entry.read_link()?;
                    let target = target.as_bytes();
                    if target.is_empty() {
                        missing = true;
                        real = here;
                        continue;
                    }
                    if target[0] == b'/' {
                        real = base.clone();
                        chain.truncate(1);
                    }
                    for step in steps(target).into_iter().rev() {
                        todo.push_front(step);
                    }
                }
                Some(entry) => {
                    if entry.kind() != FileKind::Dir && !todo.is_empty() {
                        return Err(FsError::NotADirectory { path: here });
                    }
                    real = here;
                    chain.push(entry);
                }
            }
        }
        let entry = if missing { None } else { chain.pop() };
        Ok(Resolved { path: real, entry })
    }

    /// The entry at the real path `path`, following no symlink; `None` when absent or when a
    /// component on the way is not a directory.
    pub fn entry_at(&self, path: &RootPath) -> Result<Option<Entry>, FsError> {
        let mut entry = self.root()?;
        for name in path.components() {
            if !entry.is_dir() {
                return Ok(None);
            }
            match self.child(&entry, name)? {
                Some(child) => entry = child,
                None => return Ok(None),
            }
        }
        Ok(Some(entry))
    }

    /// Looks `path` up from the root; `None` when it does not exist.
    pub fn lookup(
        &self,
        path: impl AsRef<OsStr>,
        follow_final: bool,
    ) -> Result<Option<Entry>, FsError> {
        Ok(self.resolve(path, follow_final)?.entry)
    }

    /// The entries of the directory at `path` (symlinks followed), sorted by name.
    pub fn read_dir(&self, path: impl AsRef<OsStr>) -> Result<Vec<(OsString, Entry)>, FsError> {
        let resolved = self.resolve(path, true)?;
        let entry = resolved.entry.ok_or_else(|| {
            FsError::io("read directory", &resolved.path, io::Error::from(io::ErrorKind::NotFound))
        })?;
        self.list(&entry)
    }

    /// Opens the regular file at `path` (symlinks followed) for reading.
    pub fn open_file(&self, path: impl AsRef<OsStr>) -> Result<File, FsError> {
        let resolved = self.resolve(path, true)?;
        let entry = resolved.entry.ok_or_else(|| {
            FsError::io("open", &resolved.path, io::Error::from(io::ErrorKind::NotFound))
        })?;
        if entry.kind() != FileKind::File {
            return Err(FsError::io(
                "open",
                &resolved.path,
                io::Error::other("not a regular file"),
            ));
        }
        entry.open()
    }

    /// The target of the symlink at `path` (earlier symlinks followed, the final one read).
    pub fn read_link(&self, path: impl AsRef<OsStr>) -> Result<OsString, FsError> {
        let resolved = self.resolve(path, false)?;
        match resolved.entry {
            Some(entry) if entry.kind() == FileKind::Symlink => entry.read_link(),
            Some(_) => {
                Err(FsError::io("readlink", &resolved.path, io::Error::other("not a symlink")))
            }
            None => Err(FsError::io(
                "readlink",
                &resolved.path,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    /// A character device 0/0, or an empty regular file marked `*.overlay.whiteout`.
    fn is_whiteout(&self, layer: usize, path: &RootPath, stat: &Stat) -> Result<bool, FsError> {
        match stat.kind {
            FileKind::CharDevice => Ok(stat.rdev == 0),
            FileKind::File if stat.size == 0 => {
                let fd = self.layers[layer]
                    .open_beneath(path, OFlags::RDONLY)
                    .map_err(|e| FsError::io("open", path, e))?;
                for name in [&b"trusted.overlay.whiteout"[..], b"user.overlay.whiteout"] {
                    if xattr::get(&fd, name)
                        .map_err(|e| FsError::io("read xattrs of", path, e))?
                        .is_some()
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// A directory marked `*.overlay.opaque=y`.
    fn is_opaque(&self, layer: usize, path: &RootPath) -> Result<bool, FsError> {
        let fd = self.layers[layer]
            .open_beneath(path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| FsError::io("open directory", path, e))?;
        for name in [&b"trusted.overlay.opaque"[..], b"user.overlay.opaque"] {
            let value =
                xattr::get(&fd, name).map_err(|e| FsError::io("read xattrs of", path, e))?;
            if value.as_deref() == Some(b"y") {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `lstat` of `path` in one layer; `None` when absent there.
fn stat_in(layer: &Layer, path: &RootPath) -> Result<Option<Stat>, FsError> {
    let fd = match layer.open_beneath(path, OFlags::PATH) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(code) if code == Errno::NOENT.raw_os_error() || code == Errno::NOTDIR.raw_os_error()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(FsError::io("stat", path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::io("stat", path, e))?;
    Ok(Some(Stat::from_raw(&st)))
}

#[cfg(test)]
mod tests;
