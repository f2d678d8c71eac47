//! Thin wrappers over the kernel's file-descriptor mount API (`fsopen`, `fsmount`,
//! `open_tree`, `mount_setattr`, `move_mount`).
//!
//! Why this API rather than `mount(2)` with strings: a new mount is built detached, its
//! attributes (read-only, nosuid...) are set on the detached tree (recursively, which the old
//! API cannot do for binds), and it is attached onto an already-resolved `O_PATH` descriptor
//! of the target, so no path is resolved twice (see `confined.rs`). Option values also avoid
//! the comma-separated data string, whose page-size limit overflows with many overlay lower
//! layers (`lowerdir+` adds them one at a time, Linux ≥ 6.5).
//!
//! Minimum kernel: 5.12 (`mount_setattr`); rootless overlay needs 5.11 (`userxattr`) anyway.

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, fsconfig_create,
    fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// One filesystem option: a flag (`userxattr`) or a key with a value (`size=65536k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOption {
    Flag(String),
    Value(String, String),
}

impl FsOption {
    pub fn flag(key: &str) -> Self {
        FsOption::Flag(key.to_owned())
    }
    pub fn value(key: &str, value: impl Into<String>) -> Self {
        FsOption::Value(key.to_owned(), value.into())
    }
}

/// Create a detached mount of a new `fstype` instance.
pub fn new_fs(fstype: &str, options: &[FsOption], attrs: MountAttrFlags) -> Result<OwnedFd, Errno> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for option in options {
        match option {
            FsOption::Flag(key) => fsconfig_set_flag(&fs, key.as_str())?,
            FsOption::Value(key, value) => fsconfig_set_string(&fs, key.as_str(), value.as_str())?,
        }
    }
    fsconfig_create(&fs)?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
}

/// A detached copy of the mount tree at host path `source` (recursive).
pub fn clone_tree(source: &Path) -> Result<OwnedFd, Errno> {
    open_tree(
        CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )
}

/// A detached copy of the mount tree at an open descriptor (recursive).
pub fn clone_tree_at(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    open_tree(
        fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
}

/// `struct mount_attr` of `linux/mount.h`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Add `attrs` to every mount of the tree `fd` (recursively).
pub fn set_attrs(fd: BorrowedFd<'_>, attrs: MountAttrFlags) -> Result<(), Errno> {
    let attr =
        MountAttr { attr_set: u64::from(attrs.bits()), attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes from `&attr`, a live local
    // with the kernel's layout; the path is a NUL-terminated empty string; `fd` is open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO),
        ))
    }
}

/// Attach the detached mount `mount` onto the target descriptor.
pub fn attach(mount: &OwnedFd, target: BorrowedFd<'_>) -> Result<(), Errno> {
    move_mount(
        mount.as_fd(),
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// Bind the host path `source` onto `target`, optionally read-only (recursively).
pub fn bind(source: &Path, target: BorrowedFd<'_>, readonly: bool) -> Result<(), Errno> {
    let tree = clone_tree(source)?;
    if readonly {
        set_attrs(tree.as_fd(), MountAttrFlags::MOUNT_ATTR_RDONLY)?;
    }
    attach(&tree, target)
}

/// Make what is mounted at `target` read-only by binding it over itself read-only.
pub fn make_readonly(target: BorrowedFd<'_>) -> Result<(), Errno> {
    let tree = clone_tree_at(target)?;
    set_attrs(tree.as_fd(), MountAttrFlags::MOUNT_ATTR_RDONLY)?;
    attach(&tree, target)
}
