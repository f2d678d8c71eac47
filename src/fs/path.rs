//! Paths inside a root filesystem (never host paths).
//!
//! A [`RootPath`] is a list of plain components: never empty, never `.` or `..`, never
//! containing `/`. It names a place relative to some root directory; joining it to a host
//! directory can therefore never climb out of that directory lexically. Paths produced by
//! resolution ([`super::MergedRoot::resolve`]) are also *real*: no component is a symlink.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// A path inside a root: plain components only.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootPath(Vec<OsString>);

/// One step of a raw path, as resolution walks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Parent,
    Name(OsString),
}

impl RootPath {
    /// The root itself.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Cleans `raw` lexically as if it were joined to `/`: empty and `.` components dropped,
    /// `..` removes the previous component and never climbs above the root.
    pub fn lexical(raw: impl AsRef<OsStr>) -> Self {
        let mut out = Self::root();
        for step in steps(raw.as_ref().as_bytes()) {
            match step {
                Step::Parent => {
                    out.0.pop();
                }
                Step::Name(name) => out.0.push(name),
            }
        }
        out
    }

    pub fn components(&self) -> &[OsString] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends one plain name. Panics in debug builds on names that are not plain.
    pub fn push(&mut self, name: impl Into<OsString>) {
        let name = name.into();
        debug_assert!(is_plain(&name), "not a plain path component: {name:?}");
        self.0.push(name);
    }

    pub fn pop(&mut self) -> Option<OsString> {
        self.0.pop()
    }

    /// This path with `name` appended.
    pub fn join(&self, name: impl Into<OsString>) -> Self {
        let mut out = self.clone();
        out.push(name);
        out
    }

    /// This path with every component of `other` appended.
    pub fn join_path(&self, other: &RootPath) -> Self {
        let mut out = self.clone();
        out.0.extend(other.0.iter().cloned());
        out
    }

    /// The path without its last component; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() { None } else { Some(Self(self.0[..self.0.len() - 1].to_vec())) }
    }

    pub fn file_name(&self) -> Option<&OsStr> {
        self.0.last().map(OsString::as_os_str)
    }

    pub fn starts_with(&self, prefix: &RootPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The components after `prefix`, when this path starts with it.
    pub fn strip_prefix(&self, prefix: &RootPath) -> Option<Self> {
        self.0.strip_prefix(prefix.0.as_slice()).map(|rest| Self(rest.to_vec()))
    }

    /// The path relative to the root, for `*at` calls: `a/b`, or `.` for the root.
    pub fn relative(&self) -> PathBuf {
        if self.0.is_empty() {
            return PathBuf::from(".");
        }
        PathBuf::from(OsString::from_vec(self.slash_joined()))
    }

    /// `a/b` (empty for the root), as bytes.
    pub fn slash_joined(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(c.as_bytes());
        }
        out
    }

    /// `a/b` (empty for the root), lossily as text: for pattern matching and messages.
    pub fn to_slash_string(&self) -> String {
        String::from_utf8_lossy(&self.slash_joined()).into_owned()
    }
}

impl fmt::Display for RootPath {
    /// `/a/b`, or `/` for the root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.to_slash_string())
    }
}

impl fmt::Debug for RootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Whether `name` can be a component of a [`RootPath`].
pub fn is_plain(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

/// The steps of a raw slash path: empty and `.` components dropped, `..` kept as
/// [`Step::Parent`]. A leading `/` is not reported (callers decide what absolute means).
pub fn steps(raw: &[u8]) -> Vec<Step> {
    raw.split(|b| *b == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .map(|part| {
            if part == b".." { Step::Parent } else { Step::Name(OsString::from_vec(part.to_vec())) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_cleaning_stays_at_or_below_the_root() {
        assert_eq!(RootPath::lexical("/a/./b/../c/").to_string(), "/a/c");
        assert_eq!(RootPath::lexical("../../etc/passwd").to_string(), "/etc/passwd");
        assert_eq!(RootPath::lexical("a/../../..").to_string(), "/");
        assert_eq!(RootPath::lexical("").to_string(), "/");
        assert_eq!(RootPath::lexical("//x//y").components().len(), 2);
    }

    #[test]
    fn relative_and_parents() {
        let p = RootPath::lexical("/usr/local/bin");
        assert_eq!(p.relative(), PathBuf::from("usr/local/bin"));
        assert_eq!(RootPath::root().relative(), PathBuf::from("."));
        assert_eq!(p.parent().unwrap().to_string(), "/usr/local");
        assert_eq!(p.file_name().unwrap(), "bin");
        assert!(p.starts_with(&RootPath::lexical("/usr")));
        assert!(!p.starts_with(&RootPath::lexical("/us")));
        assert_eq!(p.strip_prefix(&RootPath::lexical("/usr")).unwrap().to_string(), "/local/bin");
        assert!(RootPath::root().parent().is_none());
    }

    #[test]
    fn steps_keep_parent_references() {
        assert_eq!(
            steps(b"/a/../b/./"),
            vec![Step::Name("a".into()), Step::Parent, Step::Name("b".into())]
        );
        assert!(is_plain(OsStr::new("x")));
        assert!(!is_plain(OsStr::new("..")));
        assert!(!is_plain(OsStr::new("a/b")));
    }
}
