//! Turning a COPY's source list into the items it copies, before anything is written.
//!
//! Each source is, in order: a git URL (refused for now), an HTTP(S) URL, or a path in the
//! source filesystem. Paths are cleaned as if joined to `/` (so `../x` is `/x`), split at
//! their first wildcard component, and expanded (see `fs::glob`): the literal prefix is
//! resolved with symlinks followed, the wildcard components match one directory level each
//! without following symlinks. A wildcard that matches nothing copies nothing (BuildKit's
//! `AllowEmptyWildcard`); a path without wildcards that does not exist is an error. Every
//! match is then resolved with its final symlink followed (BuildKit's `FollowSymlinks`), so
//! `COPY link /` copies what the link points to, under the link's name.
//!
//! With `--parents`, a source `a/b/./c/d` is the directory `a/b` (expanded as above) copied
//! with only `c/d` kept (an include pattern, `**` allowed); without `/./` the pivot is the
//! root. A pattern without wildcards must name something that exists.
//!
//! Heredoc sources come last, as files named after the heredoc.

use super::walk::{Include, Rules};
use super::{CopyError, CopySource};
use crate::fs::glob::{contains_wildcards, matches, split_wildcards};
use crate::fs::{Entry, MergedRoot, RootPath, is_plain};
use kiln_frontend::graph::CopyOp;
use std::ffi::OsString;

/// One thing a COPY writes.
pub(super) enum Item {
    Local(Box<LocalItem>),
    Url { url: String },
    Inline { name: OsString, data: Vec<u8> },
}

/// A file or directory of the source filesystem.
pub(super) struct LocalItem {
    /// The source as written (for messages).
    pub source: String,
    /// The name a non-directory gets when the destination is a directory.
    pub name: OsString,
    /// The entry, final symlink followed.
    pub entry: Entry,
    pub rules: Rules,
    /// ADD: a local archive to extract (set by the caller after detection).
    pub archive: bool,
}

pub(super) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Git sources as the frontend tells them: `git@`, `git://`, or an HTTP(S) URL of a
/// `.git` repository (with an optional `#ref`).
pub(super) fn is_git(source: &str) -> bool {
    source.starts_with("git@")
        || source.starts_with("git://")
        || (is_url(source) && (source.contains(".git#") || source.ends_with(".git")))
}

/// The items of `op`, in the order BuildKit copies them.
pub(super) fn plan(
    op: &CopyOp,
    source: CopySource<'_>,
    exclude: &Rules,
) -> Result<Vec<Item>, CopyError> {
    let mut items = Vec::new();
    for src in &op.sources {
        if is_git(src) {
            return Err(CopyError::GitUnsupported { source_url: src.clone() });
        }
        if is_url(src) {
            items.push(Item::Url { url: src.clone() });
            continue;
        }
        let root = source.root().ok_or(CopyError::NoSource)?;
        items.extend(
            local_items(root, src, op.parents, exclude)?
                .into_iter()
                .map(|i| Item::Local(Box::new(i))),
        );
    }
    for inline in &op.inline_sources {
        let name = OsString::from(&inline.name);
        if !is_plain(&name) {
            return Err(CopyError::InlineName(inline.name.clone()));
        }
        items.push(Item::Inline { name, data: inline.data.clone().into_bytes() });
    }
    Ok(items)
}

/// The items of one local source.
pub(super) fn local_items(
    root: &MergedRoot,
    src: &str,
    parents: bool,
    exclude: &Rules,
) -> Result<Vec<LocalItem>, CopyError> {
    let (path, include, required) = if parents {
        let (pivot, pattern) = src.split_once("/./").unwrap_or(("/", src));
        let pattern = RootPath::lexical(pattern);
        let text = pattern.to_slash_string();
        let required =
            (!contains_wildcards(pivot) && !contains_wildcards(&text)).then(|| pattern.clone());
        (pivot.to_string(), Some(Include::new(&text)?), required)
    } else {
        (src.to_string(), None, None)
    };
    let mut items = Vec::new();
    let mut found_required = required.is_none();
    for (matched, name) in expand(root, &path)? {
        let resolved =
            root.resolve(matched.relative(), true).map_err(|e| not_found_or(&matched, e))?;
        let entry = resolved
            .entry
            .ok_or_else(|| CopyError::SourceNotFound { path: matched.to_string() })?;
        if let Some(required) = &required
            && entry.is_dir()
            && root
                .entry_at(&entry.path().join_path(required))
                .map_err(|e| CopyError::Source { path: src.to_string(), source: e })?
                .is_some()
        {
            found_required = true;
        }
        let rules = Rules { exclude: exclude.exclude.clone(), include: include.clone() };
        items.push(LocalItem { source: src.to_string(), name, entry, rules, archive: false });
    }
    if !found_required {
        let missing = RootPath::lexical(&path).join_path(required.as_ref().expect("checked above"));
        return Err(CopyError::SourceNotFound { path: missing.to_string() });
    }
    Ok(items)
}

/// The paths a source names: itself, or its wildcard matches (see the module docs).
fn expand(root: &MergedRoot, src: &str) -> Result<Vec<(RootPath, OsString)>, CopyError> {
    let (prefix, pattern) = split_wildcards(src);
    if pattern.is_empty() {
        let name = prefix.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        return Ok(vec![(prefix, name)]);
    }
    let base = root.resolve(prefix.relative(), true).map_err(|e| not_found_or(&prefix, e))?;
    let Some(base) = base.entry else {
        return Err(CopyError::SourceNotFound { path: prefix.to_string() });
    };
    let mut out = Vec::new();
    if base.is_dir() {
        collect(root, &base, &pattern, &mut out)?;
    }
    Ok(out)
}

fn collect(
    root: &MergedRoot,
    dir: &Entry,
    pattern: &[String],
    out: &mut Vec<(RootPath, OsString)>,
) -> Result<(), CopyError> {
    let children = root
        .list(dir)
        .map_err(|e| CopyError::Source { path: dir.path().to_string(), source: e })?;
    for (name, child) in children {
        if !matches(&pattern[0], &name.to_string_lossy()) {
            continue;
        }
        if pattern.len() == 1 {
            out.push((child.path().clone(), name));
        } else if child.is_dir() {
            collect(root, &child, &pattern[1..], out)?;
        }
    }
    Ok(())
}

/// A path that cannot be resolved (a file in the middle) is not found; loops and I/O
/// errors stay what they are.
fn not_found_or(path: &RootPath, e: crate::fs::FsError) -> CopyError {
    match e {
        crate::fs::FsError::NotADirectory { .. } => {
            CopyError::SourceNotFound { path: path.to_string() }
        }
        source => CopyError::Source { path: path.to_string(), source },
    }
}
