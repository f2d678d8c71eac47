//! Path resolution confined to a root directory, for unpacking untrusted tars.
//!
//! # Why
//!
//! Unpacking is where container tools have repeatedly let a hostile archive write on the host:
//! `docker cp` (CVE-2019-14271, and the symlink-exchange race CVE-2018-15664), containerd's
//! and moby's unpackers through symlinks created earlier by the same archive, runc's
//! `/proc` and symlink escapes (CVE-2019-19921, CVE-2021-30465), and libraries (Go's
//! `tar-split`/`archive/tar` users, Rust's `tar` crate before 0.4.36) that joined entry names
//! to a target directory as strings. Checking a path string and then using it is racy and
//! misses symlinks whose targets are only known at use time.
//!
//! # How
//!
//! The root is opened once as a directory fd. Every entry name is first cleaned lexically
//! (`..` cannot climb above the root, a leading `/` is dropped), then split into a parent
//! path and a final name. The parent is resolved by the kernel with `openat2(root, parent,
//! RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: during that lookup the root fd acts as `/`, so
//! absolute symlinks, `..` and symlinks made by earlier entries all land inside the root, and
//! `/proc` magic links are refused. When a parent is missing, the path is walked from the
//! root fd one component at a time with `O_NOFOLLOW` opens, symlink targets spliced in by
//! hand with the same rules (absolute → root, `..` stops at the root), and missing
//! directories made with `mkdirat` on the fd of the directory that holds them.
//! The final component is then only ever used with `*at` calls on the parent fd that do not
//! follow it (`O_NOFOLLOW | O_EXCL` creation, `AT_SYMLINK_NOFOLLOW`, `unlinkat`), so a final
//! symlink is replaced, never written through. Hard link targets are resolved like parents,
//! and `linkat` without `AT_SYMLINK_FOLLOW` links the target itself.
//!
//! `openat2` needs Linux 5.6; without it (or behind a seccomp filter that refuses it) unpacking
//! fails with a clear error rather than falling back to an unsafe resolver. `EAGAIN` (a rename
//! raced the lookup) is retried.

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// A normalized entry path: components that are never empty, `.` or `..`.
pub(crate) type Components = Vec<Vec<u8>>;

/// Cleans a tar entry name lexically, as if it were joined to `/`: empty and `.` components
/// dropped, `..` removes the previous component and stops at the root.
pub(crate) fn normalize(raw: &[u8]) -> Components {
    let mut out: Components = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            name => out.push(name.to_vec()),
        }
    }
    out
}

/// A directory every path is resolved inside of.
pub(crate) struct Root {
    fd: OwnedFd,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const RETRIES: usize = 128;

impl Root {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    /// Resolves `components` as a directory inside the root (following symlinks, confined).
    pub(crate) fn resolve_dir(&self, components: &[Vec<u8>]) -> io::Result<OwnedFd> {
        let path = if components.is_empty() { b".".to_vec() } else { components.join(&b'/') };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        for _ in 0..RETRIES {
            match rustix::fs::openat2(&self.fd, path.as_slice(), flags, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                Err(Errno::NOSYS) => {
                    return Err(io::Error::other(
                        "openat2 is unavailable (Linux 5.6 or later, not filtered by seccomp, is required to unpack safely)",
                    ));
                }
                other => return other.map_err(io::Error::from),
            }
        }
        Err(io::Error::other("path resolution kept racing with renames"))
    }

    /// Resolves `components` as a directory, making missing ones (mode 0755, whatever the
    /// umask). Returns the directory and the paths it made (real paths inside the root,
    /// outermost first).
    ///
    /// The fast path is one `openat2`. When something is missing, the path is walked one
    /// component at a time from the root fd: directories are entered with `O_NOFOLLOW`,
    /// symlinks are read and their targets spliced into the rest of the walk (absolute ones
    /// restart at the root, `..` never leaves it, at most [`MAX_SYMLINKS`] of them), missing
    /// components are made with `mkdirat`. So a symlink to a directory that does not exist
    /// yet (`var/run -> /run`) gets its target made inside the root, as containerd does.
    pub(crate) fn ensure_dir(
        &self,
        components: &[Vec<u8>],
    ) -> io::Result<(OwnedFd, Vec<Components>)> {
        match self.resolve_dir(components) {
            Ok(fd) => return Ok((fd, Vec::new())),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let mut made = Vec::new();
        let mut todo: VecDeque<Vec<u8>> = components.iter().cloned().collect();
        let mut real: Components = Vec::new();
        let mut dir = self.resolve_dir(&[])?;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            match name.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    real.pop();
                    dir = self.resolve_dir(&real)?;
                    continue;
                }
                _ => {}
            }
            let st = match lstat_at(&dir, &name)? {
                Some(st) => st,
                None => {
                    rustix::fs::mkdirat(&dir, name.as_slice(), Mode::from_raw_mode(0o755))?;
                    rustix::fs::chmodat(
                        &dir,
                        name.as_slice(),
                        Mode::from_raw_mode(0o755),
                        AtFlags::empty(),
                    )?;
                    real.push(name.clone());
                    made.push(real.clone());
                    dir = open_path_dir(&dir, &name)?;
                    continue;
                }
            };
            match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::Directory => {
                    dir = open_path_dir(&dir, &name)?;
                    real.push(name);
                }
                rustix::fs::FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rustix::fs::readlinkat(&dir, name.as_slice(), Vec::new())?;
                    let target = target.as_bytes();
                    if target.first() == Some(&b'/') {
                        real.clear();
                        dir = self.resolve_dir(&[])?;
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        todo.push_front(part.to_vec());
                    }
                }
                _ => return Err(Errno::NOTDIR.into()),
            }
        }
        Ok((dir, made))
    }
}

/// Symlinks followed in one walk before giving up with `ELOOP` (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

fn open_path_dir(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `lstat` of `name` in `dir`; `None` when absent.
pub(crate) fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// True when the `st_mode` is a directory.
pub(crate) fn is_dir(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
}

/// Opens the directory `name` in `dir` for reading, not following a symlink.
pub(crate) fn open_dir_at(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Names in a directory fd (not `.`, `..`).
pub(crate) fn list_dir(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and, for a directory, everything below it. Absent is fine.
pub(crate) fn remove_all_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    let Some(st) = lstat_at(dir, name)? else { return Ok(()) };
    if is_dir(&st) {
        let sub = open_dir_at(dir, name)?;
        for child in list_dir(&sub)? {
            remove_all_at(&sub, &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &str) -> Vec<String> {
        normalize(raw.as_bytes()).into_iter().map(|c| String::from_utf8(c).unwrap()).collect()
    }

    #[test]
    fn normalize_keeps_names_inside_the_root() {
        assert_eq!(n("../escape"), ["escape"]);
        assert_eq!(n("/abs/x"), ["abs", "x"]);
        assert_eq!(n("./a/./b/"), ["a", "b"]);
        assert_eq!(n("a/../../../b"), ["b"]);
        assert_eq!(n("a/b/.."), ["a"]);
        assert!(n("/").is_empty());
        assert!(n("..").is_empty());
        assert!(n("").is_empty());
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink("/", root_path.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root_path.join("dots")).unwrap();
        let root = Root::open(&root_path).unwrap();
        let (_, made) = root.ensure_dir(&normalize(b"up/made")).unwrap();
        assert_eq!(made, vec![vec![b"made".to_vec()]], "made paths are real paths");
        // The same directory, reached through a relative symlink that tries to climb out.
        let (_, made) = root.ensure_dir(&normalize(b"dots/made")).unwrap();
        assert!(made.is_empty());
        assert!(root_path.join("made").is_dir());
        assert!(!tmp.path().join("made").exists());
        let mode = std::fs::metadata(root_path.join("made")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o7777, 0o755);
    }

    #[test]
    fn dangling_symlinks_get_their_target_made_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink("/run", root_path.join("varrun")).unwrap();
        std::os::unix::fs::symlink("../../sibling/x", root_path.join("climb")).unwrap();
        std::os::unix::fs::symlink("loop", root_path.join("loop")).unwrap();
        let root = Root::open(&root_path).unwrap();
        let (_, made) = root.ensure_dir(&normalize(b"varrun/lock")).unwrap();
        assert_eq!(made, vec![vec![b"run".to_vec()], vec![b"run".to_vec(), b"lock".to_vec()]]);
        let (_, made) = root.ensure_dir(&normalize(b"climb/y")).unwrap();
        assert_eq!(made.len(), 3);
        assert!(root_path.join("sibling/x/y").is_dir());
        assert!(!tmp.path().join("sibling").exists());
        let err = root.ensure_dir(&normalize(b"loop/z")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
    }
}
