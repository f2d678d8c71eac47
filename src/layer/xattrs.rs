//! Extended attributes: reading them from a tree, and which of them a layer carries.
//!
//! Policy (same both ways, writing and applying):
//! - overlayfs-private attributes (`trusted.overlay.*`, `user.overlay.*`) never enter a tar
//!   and are never applied from one: they describe the overlay mount, not the image, and a
//!   layer that could set them would forge whiteouts, opaque dirs or redirects in an overlay
//!   lower directory.
//! - `security.selinux` is the host's label, not image content: left out (BuildKit and
//!   containerd do not carry it either), so layers stay identical across hosts.
//! - everything else is kept, `security.capability` (file capabilities, e.g. `ping`)
//!   included, as BuildKit writes it, and `user.*`, `trusted.*` as found.

use std::io;
use std::path::Path;

/// Sorted `(name, value)` pairs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// True for the attributes a layer never carries.
pub(crate) fn is_excluded(name: &[u8]) -> bool {
    is_overlay_private(name) || name == b"security.selinux"
}

/// True for overlayfs' own attributes.
pub(crate) fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Reads every attribute of `path` (not following a final symlink), sorted by name.
/// A filesystem without xattr support gives an empty list.
pub(crate) fn read_all(path: &Path) -> io::Result<Xattrs> {
    let names = match list(path) {
        Ok(names) => names,
        Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        match get(path, name) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed between list and get, or not readable by us (trusted.* as non-root).
            Err(e) if e.raw_os_error() == Some(libc_errno::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc_errno::EOPNOTSUPP)
}

mod libc_errno {
    pub const ENODATA: i32 = rustix::io::Errno::NODATA.raw_os_error();
    pub const EOPNOTSUPP: i32 = rustix::io::Errno::OPNOTSUPP.raw_os_error();
}

fn list(path: &Path) -> io::Result<Vec<u8>> {
    loop {
        let size = rustix::fs::llistxattr_query(path)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Grew between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn get(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    loop {
        let size = rustix::fs::lgetxattr_query(path, name)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
