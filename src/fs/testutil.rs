//! Helpers for the unit tests of `fs` and `ops`: building layer trees on disk.

use std::ffi::OsStr;
use std::path::Path;

/// Whether the test may do what only root can (chown to any id, `trusted.*` xattrs, mknod).
/// Without root, the test is skipped with a message, unless `KILN_E2E=1` makes it mandatory.
pub fn have_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("KILN_E2E").is_some_and(|v| v == "1") {
        panic!("{test} needs root (KILN_E2E=1 makes it mandatory)");
    }
    eprintln!("skipping {test}: needs root");
    false
}

pub fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
}

pub fn symlink(target: &str, path: &Path) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// An overlay whiteout: a character device 0/0.
pub fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, OsStr::new(name), value, rustix::fs::XattrFlags::empty()).unwrap();
}
