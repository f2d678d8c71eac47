//! Applying (unpacking) a layer tar onto a directory, confined to it.
//!
//! Two modes:
//! - [`ApplyMode::Flatten`]: onto an existing rootfs (exports, `type=local`, ADD archives).
//!   `.wh.NAME` deletes `NAME` (and its subtree); `DIR/.wh..wh..opq` deletes every child of
//!   `DIR` that this layer did not itself create; an entry replaces whatever is at its path
//!   unless both are directories (then the directory is kept and its metadata updated).
//! - [`ApplyMode::OverlayLower`]: into a fresh directory that becomes one overlayfs lower
//!   layer. `.wh.NAME` becomes a char device 0/0 `NAME` (allowed unprivileged since Linux
//!   5.8); an opaque marker sets `trusted.overlay.opaque=y` on its directory, or
//!   `user.overlay.opaque=y` for overlays mounted with `userxattr` (rootless).
//!
//! Metadata, in this order per entry: create, chown (container ids translated to host ids by
//! the [`IdMap`]), xattrs, mode (after chown, which clears setuid/setgid), mtime. Directories
//! get their mode and mtime only after the whole tar is applied (deepest first), so creating
//! their contents neither bumps the mtime nor trips over a read-only mode.
//!
//! What is skipped and counted rather than failing, as rootless BuildKit does:
//! device nodes when `mknod` is not permitted (CAP_MKNOD in the initial user namespace),
//! ownership when the id is unmapped or `chown` is refused, xattrs the kernel refuses
//! (`trusted.*`/`security.*` without privilege, or filesystems without xattrs). xattr policy
//! is in `xattrs`: overlay-private ones and `security.selinux` are never applied.
//!
//! aufs metadata entries (`.wh..wh.*` other than the opaque marker) are skipped; an entry naming
//! the root directory itself is skipped (the target directory keeps its own metadata). A
//! malformed tar gives an error naming the entry; it never panics.
//!
//! Memory: file content streams through a 64 KiB buffer. Known limit: the `tar` crate reads
//! a PAX or GNU long-name header's body whole, so a hostile tar can make one such header as
//! large as its (decompressed) self; a framing guard in front of it is future work.

use super::compress;
use super::confined::{self, Components, Root};
use super::error::LayerError;
use super::idmap::IdMap;
use super::tar_entry::{Header, read_header};
use super::xattrs;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Where a layer is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// Onto an existing rootfs; whiteouts delete.
    #[default]
    Flatten,
    /// Into an empty directory used as an overlayfs lower layer; whiteouts stay as overlay
    /// whiteouts. `userxattr`: the overlay will be mounted with `userxattr` (rootless).
    OverlayLower { userxattr: bool },
}

/// How a layer is applied.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    /// Container ids in the tar → host ids on disk.
    pub id_map: IdMap,
}

/// What an application did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries read (PAX headers not counted).
    pub entries: u64,
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Char and block devices made.
    pub devices: u64,
    pub fifos: u64,
    /// `.wh.NAME` entries applied.
    pub whiteouts: u64,
    /// `.wh..wh..opq` entries applied.
    pub opaque_dirs: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Devices not made because mknod was refused.
    pub devices_skipped: u64,
    /// Entries whose owner could not be set.
    pub chowns_skipped: u64,
    /// xattrs the kernel refused.
    pub xattrs_skipped: u64,
    /// Entries skipped otherwise (the root directory itself, aufs metadata).
    pub entries_skipped: u64,
}

/// Applies the tar stream in `reader` (compressed or not) onto `root`.
pub fn apply_layer<R: Read>(
    reader: R,
    root: &Path,
    options: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let target =
        Root::open(root).map_err(|source| LayerError::Root { path: root.to_path_buf(), source })?;
    let (_, stream) = compress::decompress(reader).map_err(LayerError::ReadStream)?;
    let mut archive = tar::Archive::new(stream);
    let mut applier = Applier {
        root: target,
        options,
        stats: ApplyStats::default(),
        layer_paths: HashSet::new(),
        dirs: Vec::new(),
        buf: vec![0; 64 * 1024],
    };
    for entry in archive.entries().map_err(LayerError::ReadStream)? {
        let entry = entry.map_err(LayerError::ReadStream)?;
        applier.entry(entry)?;
    }
    applier.finish_dirs()?;
    Ok(applier.stats)
}

struct Applier<'a> {
    root: Root,
    options: &'a ApplyOptions,
    stats: ApplyStats,
    /// Paths this layer made (Flatten only), for opaque markers.
    layer_paths: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set at the end.
    dirs: Vec<(Components, u32, i64)>,
    buf: Vec<u8>,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw_path = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        let header = read_header(&mut entry, display)?;
        if header.kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        self.stats.entries += 1;
        let mut components = confined::normalize(&raw_path);
        let Some(name) = components.pop() else {
            if header.kind.is_dir() {
                self.stats.entries_skipped += 1;
                return Ok(());
            }
            return Err(malformed(&header.display, "entry names the root directory"));
        };
        let parent = components;
        if let Some(target) = name.strip_prefix(b".wh.") {
            return self.whiteout(&header, parent, target);
        }
        let path: Components = parent.iter().cloned().chain([name.clone()]).collect();
        let kind = header.kind;
        if kind.is_dir() {
            self.directory(&header, &parent, &name, path)
        } else if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            self.file(&header, &parent, &name, path, &mut entry)
        } else if kind.is_hard_link() {
            self.hardlink(&header, &parent, &name, path)
        } else if kind.is_symlink() {
            self.symlink(&header, &parent, &name, path)
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            self.special(&header, &parent, &name, path)
        } else {
            Err(LayerError::UnsupportedType {
                path: header.display.clone(),
                kind: char::from(kind.as_byte()),
            })
        }
    }

    /// The parent directory, made if missing; records made paths in the layer set.
    fn parent_dir(&mut self, header: &Header, parent: &[Vec<u8>]) -> Result<OwnedFd, LayerError> {
        let (fd, made) =
            self.root.ensure_dir(parent).map_err(|e| apply_err(header, "resolve parent", e))?;
        for path in made {
            self.note(&path);
        }
        Ok(fd)
    }

    fn note(&mut self, path: &[Vec<u8>]) {
        if self.options.mode == ApplyMode::Flatten {
            self.layer_paths.insert(path.join(&b'/'));
        }
    }

    /// Clears the way for a new non-directory (or a directory over a non-directory).
    fn replace(
        &self,
        header: &Header,
        dir: &OwnedFd,
        name: &[u8],
        keep_dir: bool,
    ) -> Result<bool, LayerError> {
        let existing =
            confined::lstat_at(dir, name).map_err(|e| apply_err(header, "inspect existing", e))?;
        match existing {
            Some(st) if keep_dir && confined::is_dir(&st) => Ok(true),
            Some(_) => confined::remove_all_at(dir, name)
                .map(|()| false)
                .map_err(|e| apply_err(header, "remove existing", e)),
            None => Ok(false),
        }
    }

    fn directory(
        &mut self,
        header: &Header,
        parent: &[Vec<u8>],
        name: &[u8],
        path: Components,
    ) -> Result<(), LayerError> {
        let dir = self.parent_dir(header, parent)?;
        if !self.replace(header, &dir, name, true)? {
            rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                .map_err(|e| apply_err(header, "mkdir", e.into()))?;
        }
        let fd = confined::open_dir_at(&dir, name).map_err(|e| apply_err(header, "open", e))?;
        // Until its final mode is set (at the end), the owner may write into it: a lower
        // layer's read-only directory must not stop an unprivileged unpacker.
        let st = rustix::fs::fstat(&fd).map_err(|e| apply_err(header, "stat", e.into()))?;
        if st.st_mode & 0o700 != 0o700 {
            let writable = Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700);
            rustix::fs::fchmod(&fd, writable).map_err(|e| apply_err(header, "chmod", e.into()))?;
        }
        self.chown(header, |uid, gid| rustix::fs::fchown(&fd, uid, gid))?;
        self.set_xattrs(header, |n, v| rustix::fs::fsetxattr(&fd, n, v, XattrFlags::empty()))?;
        self.note(&path);
        self.dirs.push((path, header.mode, header.mtime));
        self.stats.directories += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        header: &Header,
        parent: &[Vec<u8>],
        name: &[u8],
        path: Components,
        content: &mut R,
    ) -> Result<(), LayerError> {
        let dir = self.parent_dir(header, parent)?;
        self.replace(header, &dir, name, false)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| apply_err(header, "create", e.into()))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(apply_err(header, "read content", e)),
            };
            file.write_all(&self.buf[..n]).map_err(|e| apply_err(header, "write", e))?;
            written += n as u64;
        }
        self.stats.bytes += written;
        if written != header.size && !header.kind.is_gnu_sparse() {
            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tar ends inside the content");
            return Err(apply_err(header, "read content", eof));
        }
        self.chown(header, |uid, gid| rustix::fs::fchown(&file, uid, gid))?;
        self.set_xattrs(header, |n, v| rustix::fs::fsetxattr(&file, n, v, XattrFlags::empty()))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(header.mode))
            .map_err(|e| apply_err(header, "chmod", e.into()))?;
        rustix::fs::futimens(&file, &times(header.mtime))
            .map_err(|e| apply_err(header, "set mtime", e.into()))?;
        self.note(&path);
        self.stats.files += 1;
        Ok(())
    }

    fn hardlink(
        &mut self,
        header: &Header,
        parent: &[Vec<u8>],
        name: &[u8],
        path: Components,
    ) -> Result<(), LayerError> {
        let link =
            header.link.as_deref().ok_or_else(|| malformed(&header.display, "no link target"))?;
        let mut target = confined::normalize(link);
        if target == path {
            // A link to itself names an existing entry: nothing to do.
            self.stats.hardlinks += 1;
            return Ok(());
        }
        let Some(target_name) = target.pop() else {
            return Err(malformed(&header.display, "hard link to the root directory"));
        };
        let target_dir = self
            .root
            .resolve_dir(&target)
            .map_err(|e| apply_err(header, "resolve link target", e))?;
        let dir = self.parent_dir(header, parent)?;
        self.replace(header, &dir, name, false)?;
        rustix::fs::linkat(&target_dir, target_name.as_slice(), &dir, name, AtFlags::empty())
            .map_err(|e| apply_err(header, "link", e.into()))?;
        self.note(&path);
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        header: &Header,
        parent: &[Vec<u8>],
        name: &[u8],
        path: Components,
    ) -> Result<(), LayerError> {
        let target =
            header.link.as_deref().ok_or_else(|| malformed(&header.display, "no link target"))?;
        if target.is_empty() {
            return Err(malformed(&header.display, "empty symlink target"));
        }
        let dir = self.parent_dir(header, parent)?;
        self.replace(header, &dir, name, false)?;
        rustix::fs::symlinkat(target, &dir, name)
            .map_err(|e| apply_err(header, "symlink", e.into()))?;
        self.finish_node(header, &dir, name, false)?;
        self.note(&path);
        self.stats.symlinks += 1;
        Ok(())
    }

    fn special(
        &mut self,
        header: &Header,
        parent: &[Vec<u8>],
        name: &[u8],
        path: Components,
    ) -> Result<(), LayerError> {
        let (file_type, is_device) = if header.kind.is_character_special() {
            (FileType::CharacterDevice, true)
        } else if header.kind.is_block_special() {
            (FileType::BlockDevice, true)
        } else {
            (FileType::Fifo, false)
        };
        let dir = self.parent_dir(header, parent)?;
        self.replace(header, &dir, name, false)?;
        let dev = rustix::fs::makedev(header.device.0, header.device.1);
        let perm = Mode::from_raw_mode(header.mode & 0o777);
        match rustix::fs::mknodat(&dir, name, file_type, perm, dev) {
            Ok(()) => {}
            Err(Errno::PERM) if is_device => {
                self.stats.devices_skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(apply_err(header, "mknod", e.into())),
        }
        self.finish_node(header, &dir, name, true)?;
        self.note(&path);
        if is_device {
            self.stats.devices += 1;
        } else {
            self.stats.fifos += 1;
        }
        Ok(())
    }

    /// Owner, xattrs, mode (unless a symlink) and mtime of a node named `name` in `dir`.
    fn finish_node(
        &mut self,
        header: &Header,
        dir: &OwnedFd,
        name: &[u8],
        chmod: bool,
    ) -> Result<(), LayerError> {
        self.chown(header, |uid, gid| {
            rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
        })?;
        if !header.xattrs.is_empty() {
            // No fd can carry xattrs of a symlink, device or fifo without opening the node
            // itself; the fd's /proc path with a final name that is not followed can.
            let proc_path = proc_fd_path(dir, name);
            self.set_xattrs(header, |n, v| {
                rustix::fs::lsetxattr(proc_path.as_slice(), n, v, XattrFlags::empty())
            })?;
        }
        if chmod {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(header.mode), AtFlags::empty())
                .map_err(|e| apply_err(header, "chmod", e.into()))?;
        }
        rustix::fs::utimensat(dir, name, &times(header.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| apply_err(header, "set mtime", e.into()))?;
        Ok(())
    }

    fn chown(
        &mut self,
        header: &Header,
        call: impl FnOnce(Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) -> rustix::io::Result<()>,
    ) -> Result<(), LayerError> {
        let map = &self.options.id_map;
        let uid = u32::try_from(header.uid).ok().and_then(|u| map.uid_to_host(u));
        let gid = u32::try_from(header.gid).ok().and_then(|g| map.gid_to_host(g));
        let (Some(uid), Some(gid)) = (uid, gid) else {
            self.stats.chowns_skipped += 1;
            return Ok(());
        };
        let ids = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        match call(Some(ids.0), Some(ids.1)) {
            Ok(()) => Ok(()),
            Err(Errno::PERM) | Err(Errno::INVAL) => {
                self.stats.chowns_skipped += 1;
                Ok(())
            }
            Err(e) => Err(apply_err(header, "chown", e.into())),
        }
    }

    fn set_xattrs(
        &mut self,
        header: &Header,
        mut call: impl FnMut(&[u8], &[u8]) -> rustix::io::Result<()>,
    ) -> Result<(), LayerError> {
        for (name, value) in &header.xattrs {
            if xattrs::is_excluded(name) {
                continue;
            }
            match call(name, value) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::OPNOTSUPP | Errno::ACCESS) => {
                    self.stats.xattrs_skipped += 1
                }
                Err(e) => return Err(apply_err(header, "set xattr", e.into())),
            }
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        header: &Header,
        parent: Components,
        target: &[u8],
    ) -> Result<(), LayerError> {
        if target == b".wh..opq" {
            return self.opaque(header, parent);
        }
        if target.starts_with(b".wh.") {
            self.stats.entries_skipped += 1; // aufs metadata (.wh..wh.plnk, .wh..wh.aufs)
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(malformed(&header.display, "whiteout names no entry"));
        }
        match self.options.mode {
            ApplyMode::Flatten => {
                let dir = match self.root.resolve_dir(&parent) {
                    Ok(dir) => dir,
                    Err(e) if is_absent(&e) => {
                        self.stats.whiteouts += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(apply_err(header, "resolve parent", e)),
                };
                confined::remove_all_at(&dir, target)
                    .map_err(|e| apply_err(header, "remove", e))?;
            }
            ApplyMode::OverlayLower { .. } => {
                let dir = self.parent_dir(header, &parent)?;
                self.replace(header, &dir, target, false)?;
                rustix::fs::mknodat(
                    &dir,
                    target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| {
                    apply_err(header, "mknod whiteout (Linux 5.8 or later needed)", e.into())
                })?;
            }
        }
        self.stats.whiteouts += 1;
        Ok(())
    }

    fn opaque(&mut self, header: &Header, parent: Components) -> Result<(), LayerError> {
        match self.options.mode {
            ApplyMode::Flatten => {
                let dir = match self.root.resolve_dir(&parent) {
                    Ok(dir) => dir,
                    Err(e) if is_absent(&e) => {
                        self.stats.opaque_dirs += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(apply_err(header, "resolve directory", e)),
                };
                let names = confined::list_dir(&dir).map_err(|e| apply_err(header, "list", e))?;
                for name in names {
                    let path: Components = parent.iter().cloned().chain([name.clone()]).collect();
                    if !self.layer_paths.contains(&path.join(&b'/')) {
                        confined::remove_all_at(&dir, &name)
                            .map_err(|e| apply_err(header, "remove lower entry", e))?;
                    }
                }
            }
            ApplyMode::OverlayLower { userxattr } => {
                let dir = self.parent_dir(header, &parent)?;
                let fd = rustix::fs::openat(
                    &dir,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| apply_err(header, "open directory", e.into()))?;
                let name: &[u8] =
                    if userxattr { b"user.overlay.opaque" } else { b"trusted.overlay.opaque" };
                rustix::fs::fsetxattr(&fd, name, b"y", XattrFlags::empty())
                    .map_err(|e| apply_err(header, "set opaque xattr", e.into()))?;
            }
        }
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    /// Sets directory modes and mtimes, deepest (latest in the tar) first.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        for (mut path, mode, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let display = String::from_utf8_lossy(&path.join(&b'/')).into_owned();
            let err = |op, source| LayerError::Apply { path: display.clone(), op, source };
            let Some(name) = path.pop() else { continue };
            let parent = match self.root.resolve_dir(&path) {
                Ok(fd) => fd,
                Err(e) if is_absent(&e) => continue, // removed by a later entry
                Err(e) => return Err(err("resolve directory", e)),
            };
            let fd = match confined::open_dir_at(&parent, &name) {
                Ok(fd) => fd,
                Err(e) if is_absent(&e) => continue, // replaced by a later entry
                Err(e) => return Err(err("open directory", e)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| err("chmod", e.into()))?;
            rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| err("set mtime", e.into()))?;
        }
        Ok(())
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

/// `/proc/self/fd/N/NAME`: reaches `NAME` in the directory `dir` without a path walk from `/`.
fn proc_fd_path(dir: &OwnedFd, name: &[u8]) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let mut path = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    path
}

fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == Errno::NOENT.raw_os_error() || code == Errno::NOTDIR.raw_os_error() || code == Errno::LOOP.raw_os_error())
}

fn malformed(path: &str, reason: &str) -> LayerError {
    LayerError::Malformed { path: path.to_string(), reason: reason.to_string() }
}

fn apply_err(header: &Header, op: &'static str, source: io::Error) -> LayerError {
    LayerError::Apply { path: header.display.clone(), op, source }
}
