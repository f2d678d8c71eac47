//! Lexical path arithmetic inside the context: splitting paths as written in a Dockerfile
//! into components, and resolving a symlink target as if the context root were `/`.
//!
//! Invariant: every path these functions return is relative to the context root and made of
//! plain names only (no empty, `.` or `..` component), so joining it to the root can never
//! leave the context.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The components of a path as written (`/src/./a//b/../c` → `src`, `a`, `c`): leading `/`,
/// empty and `.` components dropped, `..` taking back the previous component and never going
/// above the root (Go's `path.Clean` on `"/" + path`).
pub fn clean_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            name => out.push(name.to_string()),
        }
    }
    out
}

/// Where a symlink at `link` (relative to the root) with target `target` points, resolved
/// lexically inside the root: an absolute target starts from the root, a relative one from
/// the link's directory, and `..` stops at the root. Intermediate symlinks in the result are
/// left for the caller to resolve.
pub fn resolve_link_target(link: &Path, target: &Path) -> Vec<Vec<u8>> {
    let target = target.as_os_str().as_bytes();
    let mut out: Vec<Vec<u8>> = Vec::new();
    if !target.starts_with(b"/")
        && let Some(parent) = link.parent()
    {
        out.extend(parent.iter().map(|c| c.as_bytes().to_vec()));
    }
    for part in target.split(|b| *b == b'/') {
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

/// Joins byte components into a relative path (`[]` is the empty path, the root).
pub fn join_components<C: AsRef<[u8]>>(components: &[C]) -> PathBuf {
    let mut path = PathBuf::new();
    for component in components {
        path.push(OsStr::from_bytes(component.as_ref()));
    }
    path
}

/// A relative path as written in messages: `/` for the root, `/a/b` otherwise.
pub fn display_rel(path: &Path) -> String {
    format!("/{}", path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go_path_clean_from_root() {
        assert_eq!(clean_components("/src/./a//b/../c/"), ["src", "a", "c"]);
        assert_eq!(clean_components("../../x"), ["x"]);
        assert_eq!(clean_components("/"), Vec::<String>::new());
        assert_eq!(clean_components("."), Vec::<String>::new());
    }

    #[test]
    fn link_targets_stay_inside_the_root() {
        let resolve = |link: &str, target: &str| {
            join_components(&resolve_link_target(Path::new(link), Path::new(target)))
        };
        assert_eq!(resolve("a/b/link", "../c"), Path::new("a/c"));
        assert_eq!(resolve("a/link", "../../../../etc/passwd"), Path::new("etc/passwd"));
        assert_eq!(resolve("a/link", "/etc/passwd"), Path::new("etc/passwd"));
        assert_eq!(resolve("link", "."), Path::new(""));
        assert_eq!(resolve("a/link", "./x/./y/"), Path::new("a/x/y"));
    }

    #[test]
    fn displays_relative_paths_from_the_root() {
        assert_eq!(display_rel(Path::new("")), "/");
        assert_eq!(display_rel(Path::new("a/b")), "/a/b");
    }
}
