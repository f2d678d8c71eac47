//! What the diff walkers share: listing a directory's children, the exclude set, tar names.
//!
//! Tar names are bytes: the walkers never require UTF-8 file names. A child's tar name is its
//! parent's tar name, `/`, and its own name (no leading `./` or `/`). Siblings are written in
//! the order of their *sort key* — the name, with a `/` appended for directories — which makes
//! the depth-first walk emit tar names in globally increasing bytewise order (everything
//! under `a/` shares the prefix `a/`, so it sorts as one block, right after `a/` itself).

use super::error::LayerError;
use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Paths left out of a layer (mount stubs, RUN mount targets), with their subtrees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclude(BTreeSet<Vec<u8>>);

impl Exclude {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a path as seen inside the container (`/etc/hosts`, `run/secrets`); leading and
    /// trailing slashes and `.` components do not matter.
    pub fn insert(&mut self, path: impl AsRef<Path>) {
        let normalized = normalize_relative(path.as_ref().as_os_str().as_bytes());
        if !normalized.is_empty() {
            self.0.insert(normalized);
        }
    }

    /// True when the tar name (without trailing `/`) is excluded.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.0.contains(name)
    }
}

impl<P: AsRef<Path>> FromIterator<P> for Exclude {
    fn from_iter<I: IntoIterator<Item = P>>(iter: I) -> Self {
        let mut set = Exclude::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

fn normalize_relative(path: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> =
        path.split(|b| *b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    parts.join(&b'/')
}

/// One child of a directory being walked.
pub(crate) struct Child {
    pub name: Vec<u8>,
    pub path: PathBuf,
    pub md: Metadata,
}

/// The children of `dir` (no `.`/`..`), unsorted, with their `lstat` metadata.
pub(crate) fn children(dir: &Path) -> Result<Vec<Child>, LayerError> {
    let read_err = |path: &Path, source| LayerError::ReadTree { path: path.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let path = entry.path();
        let md = fs::symlink_metadata(&path).map_err(|e| read_err(&path, e))?;
        out.push(Child { name: entry.file_name().as_bytes().to_vec(), path, md });
    }
    Ok(out)
}

/// `parent/name`, or `name` at the top.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        out.extend_from_slice(parent);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The sibling sort key: the name, plus `/` for directories.
pub(crate) fn sort_key(name: &[u8], is_dir: bool) -> Vec<u8> {
    let mut key = name.to_vec();
    if is_dir {
        key.push(b'/');
    }
    key
}

/// `.wh.NAME`
pub(crate) fn whiteout_name(name: &[u8]) -> Vec<u8> {
    let mut out = b".wh.".to_vec();
    out.extend_from_slice(name);
    out
}

/// The opaque-directory marker's base name.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_normalizes_paths() {
        let set: Exclude = ["/etc/hosts", "./run//secrets/", "/"].into_iter().collect();
        assert!(set.contains(b"etc/hosts"));
        assert!(set.contains(b"run/secrets"));
        assert!(!set.contains(b"etc"));
        assert!(!set.contains(b""));
    }

    #[test]
    fn sort_keys_give_global_tar_order() {
        // "a-c" < "a/" < "a/b" bytewise: a directory's block sorts by "a/".
        let mut keys = vec![sort_key(b"a", true), sort_key(b"a-c", false), sort_key(b"a0", false)];
        keys.sort();
        assert_eq!(keys, vec![b"a-c".to_vec(), b"a/".to_vec(), b"a0".to_vec()]);
    }
}
