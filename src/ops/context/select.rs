//! Resolving COPY sources against a snapshot, and the digest of what they select.
//!
//! A source resolves as in BuildKit's copy (`ResolveWildcards` then `rootPath` with
//! `FollowSymlinks`):
//!
//! - The source is cleaned as a path from the context root and split at its first component
//!   with a wildcard.
//! - The part before is resolved with every symlink followed, the last one included, inside
//!   the context: an absolute target starts again from the context root, `..` never climbs
//!   above it (at most [`MAX_SYMLINKS`] links, then an error).
//! - Without wildcards, the source must exist: it is the single match. With wildcards, the
//!   rest is matched component by component against the entries beneath (symlinks are not
//!   followed between wildcard components, as Go's `filepath.Walk` does not); no match is
//!   fine (BuildKit's `AllowEmptyWildcard`), and each match that is a symlink is followed.

use super::encoding::Encoder;
use super::filter::Component;
use super::paths::{clean_components, display_rel, join_components};
use super::walk::MAX_SYMLINKS;
use super::{ContextError, ContextSnapshot, Entry, EntryKind};
use kiln_cache::Digest;
use std::collections::VecDeque;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Domain string of the selection digest encoding (see the parent module docs).
const SELECTION_DOMAIN: &str = "kiln.context.selection.v1";

/// One thing a COPY source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// The path as matched, relative to the context root (a wildcard match's real path, or a
    /// literal source as written and cleaned). Its last component names the copy for a
    /// wildcard source.
    pub path: PathBuf,
    /// Where it leads once symlinks are followed; the empty path is the context root. What
    /// COPY copies is [`ContextSnapshot::entries_at`] this path.
    pub resolved: PathBuf,
}

impl ContextSnapshot {
    /// What `source` (a COPY source as written, relative to the context root: `src`,
    /// `/go.mod`, `cmd/*/main.go`, `.`) names in this snapshot, in path order.
    pub fn resolve_source(&self, source: &str) -> Result<Vec<SourceMatch>, ContextError> {
        let components = clean_components(source);
        let split = components
            .iter()
            .position(|c| super::wildcard::contains_wildcards(c))
            .unwrap_or(components.len());
        let (literal, wild) = components.split_at(split);
        let literal: Vec<Vec<u8>> = literal.iter().map(|c| c.as_bytes().to_vec()).collect();

        if wild.is_empty() {
            let resolved = self.follow(literal.clone(), source)?;
            if !self.exists(&resolved) {
                return Err(self.not_found(source));
            }
            return Ok(vec![SourceMatch { path: join_components(&literal), resolved }]);
        }
        let wild =
            wild.iter().map(|c| Component::parse(c, source)).collect::<Result<Vec<_>, _>>()?;
        let base = self.follow(literal, source)?;
        let mut matched = Vec::new();
        if self.is_dir(&base) {
            self.match_below(&base, &wild, &mut matched);
        }
        matched
            .into_iter()
            .map(|path| {
                let components: Vec<Vec<u8>> = path.iter().map(|c| c.as_bytes().to_vec()).collect();
                let resolved = self.follow(components, source)?;
                if !self.exists(&resolved) {
                    return Err(self.not_found(&display_rel(&path)));
                }
                Ok(SourceMatch { path, resolved })
            })
            .collect()
    }

    /// The digest of everything `sources` select: their matches and, for each, the entries
    /// COPY would copy, in the canonical encoding of the parent module's docs.
    pub fn digest_of<S: AsRef<str>>(&self, sources: &[S]) -> Result<Digest, ContextError> {
        let mut encoder = Encoder::new(SELECTION_DOMAIN);
        encoder.u64(sources.len() as u64);
        for source in sources {
            let source = source.as_ref();
            encoder.tag(b'S');
            encoder.bytes(source.as_bytes());
            let matches = self.resolve_source(source)?;
            encoder.u64(matches.len() as u64);
            for found in &matches {
                encoder.tag(b'M');
                encoder.bytes(found.path.as_os_str().as_bytes());
                let entries = self.entries_at(&found.resolved);
                encoder.u64(entries.len() as u64);
                for entry in entries {
                    let relative = entry.path.strip_prefix(&found.resolved).unwrap_or(&entry.path);
                    encode_entry(&mut encoder, relative, entry);
                }
            }
        }
        Ok(encoder.finish())
    }

    /// Resolves `components` from the root, following every symlink (BuildKit's `rootPath`
    /// with `followTrailing`). Missing components are kept as they are.
    fn follow(&self, components: Vec<Vec<u8>>, source: &str) -> Result<PathBuf, ContextError> {
        let mut queue: VecDeque<Vec<u8>> = components.into();
        let mut current: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(part) = queue.pop_front() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let path = join_components(&current);
            let Some(EntryKind::Symlink { target }) = self.entry(&path).map(|e| &e.kind) else {
                continue;
            };
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ContextError::TooManyLinks {
                    context: self.name.clone(),
                    path: display_rel(&join_components(&clean_components(source))),
                });
            }
            current.pop();
            let target = target.as_os_str().as_bytes();
            if target.starts_with(b"/") {
                current.clear();
            }
            for part in target.split(|b| *b == b'/').rev() {
                queue.push_front(part.to_vec());
            }
        }
        Ok(join_components(&current))
    }

    /// Collects the paths beneath the directory `base` that match `wild` component by
    /// component, in walk order.
    fn match_below(&self, base: &Path, wild: &[Component], out: &mut Vec<PathBuf>) {
        let Some((first, rest)) = wild.split_first() else { return };
        for child in self.children(base) {
            let entry = &self.entries[child];
            let name = entry.path.file_name().map_or(&[][..], |n| n.as_bytes());
            if !first.matches(name) {
                continue;
            }
            if rest.is_empty() {
                out.push(entry.path.clone());
            } else if entry.is_dir() {
                self.match_below(&entry.path, rest, out);
            }
        }
    }

    /// Indices of the entries directly inside the directory `dir` (the root when empty).
    fn children(&self, dir: &Path) -> Vec<usize> {
        let (mut i, end) = if dir.as_os_str().is_empty() {
            (0, self.entries.len())
        } else {
            match self.index.get(dir) {
                Some(&d) => (d + 1, self.subtree_end[d]),
                None => return Vec::new(),
            }
        };
        let mut out = Vec::new();
        while i < end {
            out.push(i);
            i = self.subtree_end[i];
        }
        out
    }

    fn exists(&self, path: &Path) -> bool {
        path.as_os_str().is_empty() || self.index.contains_key(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.as_os_str().is_empty() || self.entry(path).is_some_and(Entry::is_dir)
    }

    fn not_found(&self, path: &str) -> ContextError {
        let path = display_rel(&join_components(&clean_components(path)));
        ContextError::NotFound { context: self.name.clone(), path }
    }
}

fn encode_entry(encoder: &mut Encoder, relative: &Path, entry: &Entry) {
    let tag = match entry.kind {
        EntryKind::Directory => b'D',
        EntryKind::File { .. } => b'F',
        EntryKind::Symlink { .. } => b'L',
    };
    encoder.tag(tag);
    encoder.bytes(relative.as_os_str().as_bytes());
    encoder.u32(entry.mode);
    encoder.u32(entry.uid);
    encoder.u32(entry.gid);
    match &entry.kind {
        EntryKind::Directory => {}
        EntryKind::File { size, digest } => {
            encoder.u64(*size);
            encoder.digest(digest);
        }
        EntryKind::Symlink { target } => encoder.bytes(target.as_os_str().as_bytes()),
    }
}
