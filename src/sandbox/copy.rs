//! Copy mode: merge overlay-form lower layers into one plain directory tree.
//!
//! Layers are applied bottom to top, as overlayfs would show them:
//! - a character device 0/0 is a whiteout: the name is removed from what lies below;
//! - a directory whose `trusted.overlay.opaque` or `user.overlay.opaque` xattr is `y` hides
//!   everything below it;
//! - anything else replaces what lies below, except a directory over a directory, which
//!   merges.
//!
//! Metadata kept: type, mode (setuid bits included: set after `chown`, which clears them),
//! owner, modification time, xattrs (minus overlayfs's own), symlink targets, and hard links
//! within a layer. Runs inside the sandbox's user namespace, so ownership is as the sandbox
//! sees it. Device nodes other than whiteouts cannot be created there and are skipped.

use super::error::{WireError, errno_of};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Copy the merge of `lowers` (topmost first) into `dest` (created; must not exist).
pub fn copy_merged(lowers: &[PathBuf], dest: &Path) -> Result<(), WireError> {
    let err = |path: &Path, e: io::Error| WireError::Copy {
        path: path.to_path_buf(),
        errno: errno_of(&e),
    };
    fs::create_dir(dest).map_err(|e| err(dest, e))?;
    if let Some(bottom) = lowers.last() {
        let meta = fs::symlink_metadata(bottom).map_err(|e| err(bottom, e))?;
        apply_metadata(bottom, dest, &meta).map_err(|e| err(dest, e))?;
    }
    for layer in lowers.iter().rev() {
        let mut links = HashMap::new();
        apply_dir(layer, dest, &mut links).map_err(|(path, e)| err(&path, e))?;
    }
    Ok(())
}

type CopyResult = Result<(), (PathBuf, io::Error)>;

fn is_whiteout(meta: &fs::Metadata) -> bool {
    FileType::from_raw_mode(meta.mode()) == FileType::CharacterDevice && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|name| {
        let mut value = [0u8; 8];
        matches!(rustix::fs::lgetxattr(dir, *name, &mut value[..]), Ok(1) if value[0] == b'y')
    })
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn apply_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> CopyResult {
    let entries = fs::read_dir(src).map_err(|e| (src.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| (src.to_path_buf(), e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let at = |e: io::Error| (from.clone(), e);
        let meta = fs::symlink_metadata(&from).map_err(at)?;
        if is_whiteout(&meta) {
            remove_any(&to).map_err(at)?;
            continue;
        }
        if meta.is_dir() {
            let existing_dir = fs::symlink_metadata(&to).map(|m| m.is_dir()).unwrap_or(false);
            if !existing_dir || is_opaque(&from) {
                remove_any(&to).map_err(at)?;
                fs::create_dir(&to).map_err(at)?;
            }
            apply_dir(&from, &to, links)?;
            apply_metadata(&from, &to, &meta).map_err(at)?;
            continue;
        }
        remove_any(&to).map_err(at)?;
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to).map_err(at)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        let file_type = FileType::from_raw_mode(meta.mode());
        match file_type {
            FileType::RegularFile => {
                fs::copy(&from, &to).map_err(at)?;
            }
            FileType::Symlink => {
                let target = fs::read_link(&from).map_err(at)?;
                std::os::unix::fs::symlink(target, &to).map_err(at)?;
            }
            FileType::Fifo => {
                rustix::fs::mknodat(CWD, &to, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|e| at(e.into()))?;
            }
            // Devices cannot be created in a user namespace; sockets are not image content.
            _ => continue,
        }
        apply_metadata(&from, &to, &meta).map_err(at)?;
    }
    Ok(())
}

fn apply_metadata(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    let is_symlink = meta.file_type().is_symlink();
    if !is_symlink {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    copy_xattrs(from, to)?;
    let times = Timestamps {
        last_access: Timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() as _ },
        last_modification: Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() as _ },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let len = match rustix::fs::llistxattr(from, &mut names[..]) {
        Ok(len) => len,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let name = std::ffi::OsStr::from_bytes(name);
        let n = match rustix::fs::lgetxattr(from, name, &mut value[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        match rustix::fs::lsetxattr(to, name, &value[..n], rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // Namespaces we may not write in a user namespace (trusted.*, security.* on
            // some filesystems) are dropped, as an unprivileged `cp -a` would.
            Err(rustix::io::Errno::PERM | rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_respects_order_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let bottom = tmp.path().join("bottom");
        let top = tmp.path().join("top");
        fs::create_dir_all(bottom.join("d")).unwrap();
        fs::create_dir_all(bottom.join("o")).unwrap();
        fs::write(bottom.join("d/a"), b"bottom a").unwrap();
        fs::write(bottom.join("d/b"), b"bottom b").unwrap();
        fs::write(bottom.join("o/hidden"), b"x").unwrap();
        fs::write(bottom.join("f"), b"f").unwrap();
        fs::hard_link(bottom.join("f"), bottom.join("f2")).unwrap();
        std::os::unix::fs::symlink("d/a", bottom.join("l")).unwrap();
        fs::create_dir_all(top.join("d")).unwrap();
        fs::write(top.join("d/a"), b"top a").unwrap();
        fs::create_dir_all(top.join("o")).unwrap();
        fs::write(top.join("o/new"), b"n").unwrap();
        rustix::fs::lsetxattr(
            top.join("o"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fs::set_permissions(top.join("d/a"), fs::Permissions::from_mode(0o4755)).unwrap();

        let dest = tmp.path().join("merged");
        copy_merged(&[top.clone(), bottom.clone()], &dest).unwrap();
        assert_eq!(fs::read(dest.join("d/a")).unwrap(), b"top a");
        assert_eq!(fs::read(dest.join("d/b")).unwrap(), b"bottom b");
        assert!(!dest.join("o/hidden").exists());
        assert!(dest.join("o/new").exists());
        assert_eq!(fs::read_link(dest.join("l")).unwrap(), Path::new("d/a"));
        let f = fs::metadata(dest.join("f")).unwrap();
        let f2 = fs::metadata(dest.join("f2")).unwrap();
        assert_eq!((f.ino(), f.nlink()), (f2.ino(), 2));
        assert_eq!(fs::metadata(dest.join("d/a")).unwrap().mode() & 0o7777, 0o4755);
        assert_eq!(
            fs::metadata(dest.join("d/b")).unwrap().mtime(),
            fs::metadata(bottom.join("d/b")).unwrap().mtime()
        );
        // Overlay markers are not copied.
        let mut buf = [0u8; 4];
        assert!(
            rustix::fs::lgetxattr(dest.join("o"), "user.overlay.opaque", &mut buf[..]).is_err()
        );
    }

    #[test]
    fn whiteouts_remove_lower_entries() {
        // Creating a 0/0 character device needs CAP_MKNOD; skip where we lack it.
        let tmp = tempfile::tempdir().unwrap();
        let bottom = tmp.path().join("bottom");
        let top = tmp.path().join("top");
        fs::create_dir_all(bottom.join("gone_dir/sub")).unwrap();
        fs::write(bottom.join("gone"), b"x").unwrap();
        fs::write(bottom.join("kept"), b"k").unwrap();
        fs::create_dir_all(&top).unwrap();
        for name in ["gone", "gone_dir"] {
            if let Err(e) = rustix::fs::mknodat(
                CWD,
                top.join(name),
                FileType::CharacterDevice,
                Mode::empty(),
                0,
            ) {
                eprintln!("skipping: cannot create a whiteout here: {e}");
                return;
            }
        }
        let dest = tmp.path().join("merged");
        copy_merged(&[top, bottom], &dest).unwrap();
        let mut names: Vec<_> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["kept"]);
    }
}
