//! Paths inside the rootfs, resolved as the container would and never on the host.
//!
//! Mount targets come from the image (`/etc/resolv.conf` may be a symlink) and the Dockerfile.
//! Resolving them with plain path joins would let a symlink such as `/etc -> /home/me` send a
//! mount, or a stub file, outside the rootfs (runc's CVE-2021-30465 and friends). Every lookup
//! here goes through `openat2(RESOLVE_IN_ROOT)`, so `..` and absolute symlinks stop at the
//! rootfs root, and mounts are made onto the resulting `O_PATH` descriptor (never a path
//! string re-resolved later).
//!
//! Missing targets are created ("stubs") and recorded with their real in-rootfs path, so the
//! layer writer can leave them out and [`remove_stubs`] can delete them after the run.
//! Removal walks with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: the command may have replaced a
//! stub's parent by a symlink, and removal must then do nothing rather than follow it.

use super::error::WireError;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Dir,
    File,
}

/// Something the sandbox created in the rootfs only to mount on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stub {
    /// Absolute path inside the rootfs (symlinks resolved).
    pub path: String,
    pub kind: StubKind,
    /// Modification time of the parent directory before the stub was created, restored when
    /// the stub is removed (seconds, nanoseconds).
    pub parent_mtime: Option<(i64, i64)>,
    /// Whether the sandbox removed it after the run (it stays when the command put content
    /// in it, or when its path no longer leads to it without symlinks).
    #[serde(default)]
    pub removed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StubKind {
    File,
    Dir,
}

/// Lexically normalise an absolute container path into its components (`.` dropped, `..`
/// popped, never above `/`).
pub fn components(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts
}

fn in_root_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// Open `path` (relative to the rootfs `root`) as an `O_PATH` descriptor, resolving inside
/// the rootfs.
pub fn open_in_root(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    let rel = components(path).join("/");
    let rel = if rel.is_empty() { ".".to_owned() } else { rel };
    rustix::fs::openat2(
        root,
        rel.as_str(),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        in_root_flags(),
    )
}

/// The in-rootfs path an open descriptor refers to (`root_path` is the rootfs on the host).
fn path_in_root(fd: BorrowedFd<'_>, root_path: &Path) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd)))
        .ok()?;
    let rel = link.strip_prefix(root_path).ok()?;
    Some(format!("/{}", rel.display()))
}

/// Open the mount target `path`, creating it (and missing parents) when absent; created
/// entries are appended to `stubs`.
pub fn ensure_target(
    root: BorrowedFd<'_>,
    root_path: &Path,
    path: &str,
    kind: TargetKind,
    stubs: &mut Vec<Stub>,
) -> Result<OwnedFd, WireError> {
    ensure_target_depth(root, root_path, path, kind, stubs, 0)
}

fn ensure_target_depth(
    root: BorrowedFd<'_>,
    root_path: &Path,
    path: &str,
    kind: TargetKind,
    stubs: &mut Vec<Stub>,
    depth: u32,
) -> Result<OwnedFd, WireError> {
    let target_err = |reason: String| WireError::MountTarget { target: path.to_owned(), reason };
    if depth > 40 {
        return Err(target_err("too many levels of symbolic links".into()));
    }
    let parts = components(path);
    match open_in_root(root, path) {
        Ok(fd) => {
            let is_dir = rustix::fs::fstat(&fd)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                .map_err(|e| target_err(e.to_string()))?;
            return match (kind, is_dir) {
                (TargetKind::Dir, false) => Err(target_err("exists and is not a directory".into())),
                (TargetKind::File, true) => Err(target_err("exists and is a directory".into())),
                _ => Ok(fd),
            };
        }
        Err(Errno::NOENT) => {}
        Err(e) => return Err(target_err(e.to_string())),
    }
    let Some((name, parents)) = parts.split_last() else {
        return Err(target_err("is the rootfs root".into()));
    };
    // Parents: open each prefix; create the missing ones as directories.
    let mut parent = open_in_root(root, "/").map_err(|e| target_err(e.to_string()))?;
    for (index, part) in parents.iter().enumerate() {
        let prefix = parts[..=index].join("/");
        match open_in_root(root, &prefix) {
            Ok(fd) => parent = fd,
            Err(Errno::NOENT) => {
                let created = create_entry(&parent, root_path, part, TargetKind::Dir, stubs);
                match created {
                    Err(Errno::EXIST) => {
                        // A dangling symlink in the middle: follow it by hand.
                        let rest = parts[index + 1..].join("/");
                        let redirected = follow_dangling(&parent, root_path, part, &rest)
                            .map_err(|e| target_err(e.to_string()))?;
                        return ensure_target_depth(
                            root,
                            root_path,
                            &redirected,
                            kind,
                            stubs,
                            depth + 1,
                        );
                    }
                    Err(e) => return Err(target_err(format!("create {part}: {e}"))),
                    Ok(()) => {}
                }
                parent = open_in_root(root, &prefix).map_err(|e| target_err(e.to_string()))?;
            }
            Err(e) => return Err(target_err(e.to_string())),
        }
    }
    match create_entry(&parent, root_path, name, kind, stubs) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            let redirected = follow_dangling(&parent, root_path, name, "")
                .map_err(|e| target_err(e.to_string()))?;
            return ensure_target_depth(root, root_path, &redirected, kind, stubs, depth + 1);
        }
        Err(e) => return Err(target_err(format!("create: {e}"))),
    }
    open_in_root(root, path).map_err(|e| target_err(e.to_string()))
}

/// `name` in `parent` exists but resolving through it failed: it must be a dangling symlink.
/// Returns the in-rootfs path it designates, followed by `rest`.
fn follow_dangling(
    parent: &OwnedFd,
    root_path: &Path,
    name: &str,
    rest: &str,
) -> Result<String, Errno> {
    let link = rustix::fs::readlinkat(parent, name, Vec::new())?;
    let link = link.to_string_lossy().into_owned();
    let base = if link.starts_with('/') {
        String::new()
    } else {
        path_in_root(parent.as_fd(), root_path).ok_or(Errno::NOENT)?
    };
    Ok(format!("{base}/{link}/{rest}"))
}

fn create_entry(
    parent: &OwnedFd,
    root_path: &Path,
    name: &str,
    kind: TargetKind,
    stubs: &mut Vec<Stub>,
) -> Result<(), Errno> {
    let parent_mtime =
        rustix::fs::fstat(parent).ok().map(|st| (st.st_mtime, st.st_mtime_nsec as i64));
    match kind {
        TargetKind::Dir => rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755))?,
        TargetKind::File => {
            rustix::fs::openat(
                parent,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
        }
    }
    let parent_path = path_in_root(parent.as_fd(), root_path).unwrap_or_else(|| "/".into());
    let path =
        if parent_path == "/" { format!("/{name}") } else { format!("{parent_path}/{name}") };
    stubs.push(Stub {
        path,
        kind: match kind {
            TargetKind::Dir => StubKind::Dir,
            TargetKind::File => StubKind::File,
        },
        parent_mtime,
        removed: false,
    });
    Ok(())
}

/// Delete the stubs from the tree at `root` (the sandbox's `/` after the run, the overlay
/// upper, or a copy-mode rootfs), last created first, and mark each removed one. A stub is
/// removed only while it is still what we made: an empty regular file, or an empty
/// directory; its parent's modification time is then restored. With `unmount`, whatever is
/// mounted on a stub is detached first (inside the sandbox's mount namespace).
pub fn remove_stubs(root: &Path, stubs: &mut [Stub], unmount: bool) -> std::io::Result<()> {
    let root_fd =
        rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for stub in stubs.iter_mut().rev() {
        if unmount {
            let host = host_path(root, &stub.path);
            while rustix::mount::unmount(
                &host,
                rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
            )
            .is_ok()
            {}
        }
        stub.removed = remove_stub(&root_fd, stub)?;
    }
    Ok(())
}

fn remove_stub(root: &OwnedFd, stub: &Stub) -> std::io::Result<bool> {
    let parts = components(&stub.path);
    let Some((name, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let parent_rel = if parents.is_empty() { ".".to_owned() } else { parents.join("/") };
    let parent = match rustix::fs::openat2(
        root,
        parent_rel.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let st = match rustix::fs::statat(&parent, *name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let file_type = FileType::from_raw_mode(st.st_mode);
    let removed = match stub.kind {
        StubKind::File if file_type == FileType::RegularFile && st.st_size == 0 => {
            rustix::fs::unlinkat(&parent, *name, AtFlags::empty()).map(|()| true)
        }
        StubKind::Dir if file_type == FileType::Directory => {
            match rustix::fs::unlinkat(&parent, *name, AtFlags::REMOVEDIR) {
                Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(false),
                other => other.map(|()| true),
            }
        }
        _ => Ok(false),
    }?;
    if removed && let Some((sec, nsec)) = stub.parent_mtime {
        let now = rustix::fs::fstat(&parent)?;
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: now.st_atime,
                tv_nsec: now.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec { tv_sec: sec, tv_nsec: nsec as _ },
        };
        rustix::fs::futimens(&parent, &times)?;
    }
    Ok(removed)
}

/// Host path of an in-rootfs path under `root` (lexical; for messages and tests only).
pub fn host_path(root: &Path, path: &str) -> PathBuf {
    components(path).into_iter().fold(root.to_path_buf(), |acc, part| acc.join(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn open_root(path: &Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .unwrap()
    }

    #[test]
    fn components_never_climb_above_root() {
        assert_eq!(components("/a/./b/../../../c//d"), ["c", "d"]);
        assert!(components("/").is_empty());
    }

    #[test]
    fn missing_target_is_created_and_recorded_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(root_path.join("etc")).unwrap();
        let root = open_root(&root_path);
        let mut stubs = Vec::new();
        ensure_target(root.as_fd(), &root_path, "/etc/hosts", TargetKind::File, &mut stubs)
            .unwrap();
        ensure_target(root.as_fd(), &root_path, "/run/x/y", TargetKind::Dir, &mut stubs).unwrap();
        let paths: Vec<_> = stubs.iter().map(|s| (s.path.as_str(), s.kind)).collect();
        assert_eq!(
            paths,
            [
                ("/etc/hosts", StubKind::File),
                ("/run", StubKind::Dir),
                ("/run/x", StubKind::Dir),
                ("/run/x/y", StubKind::Dir)
            ]
        );
        // Existing targets are not stubs.
        ensure_target(root.as_fd(), &root_path, "/etc", TargetKind::Dir, &mut stubs).unwrap();
        assert_eq!(stubs.len(), 4);
        // Kind mismatch is an error naming the target.
        let err = ensure_target(root.as_fd(), &root_path, "/etc", TargetKind::File, &mut stubs)
            .unwrap_err();
        assert_eq!(
            err,
            WireError::MountTarget {
                target: "/etc".into(),
                reason: "exists and is a directory".into()
            }
        );
        fs::write(root_path.join("run/x/keep"), b"data").unwrap();
        remove_stubs(&root_path, &mut stubs, false).unwrap();
        assert!(!root_path.join("etc/hosts").exists());
        assert!(!root_path.join("run/x/y").exists());
        assert!(root_path.join("run/x/keep").exists());
        let kept: Vec<_> = stubs.iter().filter(|s| !s.removed).map(|s| s.path.as_str()).collect();
        assert_eq!(kept, ["/run", "/run/x"]);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(dir.path()).unwrap();
        // An absolute symlink pointing at a host directory stays inside the rootfs.
        symlink(outside.path(), root_path.join("etc")).unwrap();
        let root = open_root(&root_path);
        let mut stubs = Vec::new();
        ensure_target(root.as_fd(), &root_path, "/etc/hosts", TargetKind::File, &mut stubs)
            .unwrap();
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        let inside = host_path(&root_path, &format!("{}/hosts", outside.path().display()));
        assert!(inside.exists(), "{inside:?}");
        assert_eq!(stubs.last().unwrap().path, format!("{}/hosts", outside.path().display()));
    }

    #[test]
    fn dangling_final_symlink_creates_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(root_path.join("etc")).unwrap();
        symlink("../run/resolve/stub.conf", root_path.join("etc/resolv.conf")).unwrap();
        let root = open_root(&root_path);
        let mut stubs = Vec::new();
        ensure_target(root.as_fd(), &root_path, "/etc/resolv.conf", TargetKind::File, &mut stubs)
            .unwrap();
        assert!(root_path.join("run/resolve/stub.conf").is_file());
        let paths: Vec<_> = stubs.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["/run", "/run/resolve", "/run/resolve/stub.conf"]);
    }

    #[test]
    fn removal_does_not_follow_a_replaced_parent() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(dir.path()).unwrap();
        fs::write(outside.path().join("hosts"), b"").unwrap();
        symlink(outside.path(), root_path.join("etc")).unwrap();
        let mut stubs = [Stub {
            path: "/etc/hosts".into(),
            kind: StubKind::File,
            parent_mtime: None,
            removed: false,
        }];
        remove_stubs(&root_path, &mut stubs, false).unwrap();
        assert!(!stubs[0].removed);
        assert!(outside.path().join("hosts").exists());
    }
}
