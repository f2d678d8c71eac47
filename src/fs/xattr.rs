//! Extended attributes through file descriptors, and which of them a copy carries.
//!
//! Policy (the same as the layer writer's): overlayfs' own attributes (`trusted.overlay.*`,
//! `user.overlay.*`) are never copied — in a layer directory they would forge whiteouts or
//! opaque directories — and `security.selinux` (the host's label, not image content) is left
//! out. Everything else, `security.capability` included, is copied.

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use std::io;
use std::os::fd::AsFd;

/// Sorted `(name, value)` pairs.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// True for the attributes a copy never carries.
pub fn is_excluded(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux"
}

/// Every attribute of the open file `fd`, sorted by name. A filesystem without xattrs, or
/// attributes we may not read (`trusted.*` without privilege), give fewer entries, not errors.
pub fn read_all(fd: impl AsFd) -> io::Result<Xattrs> {
    let fd = fd.as_fd();
    let names = loop {
        let size = match rustix::fs::flistxattr_query(fd) {
            Ok(size) => size,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if let Some(value) = get(fd, name)? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// The attribute `name` of the open file `fd`; `None` when absent or unreadable.
pub fn get(fd: impl AsFd, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let fd = fd.as_fd();
    loop {
        let size = match rustix::fs::fgetxattr_query(fd, name) {
            Ok(size) => size,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => continue,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets the attributes `xattrs` allows on `fd`, skipping excluded names. Returns how many
/// the kernel refused (no privilege for `trusted.*`/`security.*`, no xattr support).
pub fn apply(fd: impl AsFd, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<u64> {
    let fd = fd.as_fd();
    let mut refused = 0;
    for (name, value) in xattrs.iter().filter(|(name, _)| !is_excluded(name)) {
        match rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::ACCESS | Errno::OPNOTSUPP | Errno::INVAL) => refused += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(refused)
}

fn unsupported(e: Errno) -> bool {
    e == Errno::OPNOTSUPP
}

fn absent(e: Errno) -> bool {
    e == Errno::NODATA || e == Errno::OPNOTSUPP || e == Errno::PERM || e == Errno::ACCESS
}
