//! The build context source: which files of a context directory a build reads, their
//! metadata and content digests, and the digest of what each COPY selects.
//!
//! # Overview
//!
//! [`ContextSnapshot::scan`] walks a context directory once (see the `walk` module) and records every
//! selected entry: its path relative to the context root, type, mode (permission bits plus
//! setuid, setgid and sticky), owner, size, symlink target, and for regular files the sha256 of
//! the content. An entry is selected when
//!
//! - it matches one of the [`ContextSource::include_paths`] (the paths the Dockerfile reads,
//!   with COPY wildcards) or lies beneath a match, symlinks on the way to them being followed
//!   inside the context (BuildKit's `FollowPaths`), and
//! - the `.dockerignore` patterns ([`ContextSource::exclude_patterns`]) leave it in, with
//!   fsutil's rules: `!` patterns re-include, also inside excluded directories;
//!
//! and the directories above a selected entry are recorded too. Symlinks are recorded as links,
//! never followed by the walk; sockets, fifos and devices are left out and listed in
//! [`ContextSnapshot::skipped`]. Owners are recorded as 0:0, as BuildKit's client resets them.
//!
//! File contents are hashed in parallel and streamed through a fixed-size buffer, and
//! a [`StatCache`] remembers digests by `stat` data so unchanged files are not read again on
//! the next build (with git's defence against racy timestamps, see [`stat_cache`]).
//!
//! [`ContextSnapshot::resolve_source`] resolves a COPY source the way BuildKit does
//! (symlinks followed inside the context, wildcards matched per component with Go's
//! `filepath.Match`), [`ContextSnapshot::entries_at`] lists what a match copies, and
//! [`ContextSnapshot::digest_of`] hashes all of it for the COPY's cache key.
//!
//! # Selection digest encoding (version 1)
//!
//! `digest_of(sources)` is the sha256 of this byte string, where `u32`/`u64` are
//! little-endian, `bytes(x)` is `u64 len(x)` followed by `x`, and paths are raw file-name
//! bytes joined with `/`, relative (no leading `/`):
//!
//! ```text
//! bytes("kiln.context.selection.v1")
//! u64 number of sources
//! for each source, in the order given:
//!     'S'  bytes(source as given)                       e.g. "/src/*.go"
//!     u64 number of matches
//!     for each match, in path order:
//!         'M'  bytes(matched path)                      relative to the context root
//!         u64 number of entries
//!         for each entry of the match, in walk order (the match itself first, when it is
//!         not the context root; then everything beneath it):
//!             tag  'D' directory | 'F' regular file | 'L' symlink
//!             bytes(path relative to the match)         "" for the match itself
//!             u32 mode (st_mode & 0o7777)  u32 uid  u32 gid
//!             'F': u64 size, then the 32 raw bytes of the content sha256
//!             'L': bytes(link target as stored)
//! ```
//!
//! Never part of it: modification or change times, inode numbers, link counts, directory
//! sizes, and the absolute path of the context directory, so the digest is the same on every
//! machine and wherever the context is checked out. A match reached through a symlink is
//! encoded with the path as matched and the entries of the link's target, which is what COPY
//! copies.
//!
//! # Invariants
//!
//! - Entries are in walk order (depth first, names sorted by bytes), so each directory's
//!   subtree is one contiguous run and the encoding is deterministic.
//! - Nothing outside the context directory is read: the walk and the reads go through
//!   descriptors beneath the context root and never follow symlinks; symlink targets are
//!   resolved lexically with the context root as `/`.
//! - Memory is bounded by the number of entries, not by file sizes.

mod encoding;
mod entry;
mod filter;
mod hash;
mod paths;
mod select;
pub mod stat_cache;
mod walk;
pub mod wildcard;

pub use entry::{Entry, EntryKind, ScanStats, SkippedEntry, SpecialKind};
pub use select::SourceMatch;
pub use stat_cache::StatCache;
pub use wildcard::WildcardError;

use kiln_frontend::dockerignore::{IgnoreError, IgnoreFile};
use kiln_frontend::graph::ContextSource;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a context could not be scanned or a COPY source not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {}: no such directory", path.display())]
    MissingDir { path: PathBuf },
    #[error("build context {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("permission denied: cannot {action} {}", path.display())]
    PermissionDenied { action: &'static str, path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("invalid .dockerignore of build context {context:?}: {source}")]
    Ignore { context: String, source: IgnoreError },
    #[error("invalid COPY source {pattern:?}: {cause}")]
    InvalidPattern { pattern: String, cause: WildcardError },
    #[error("{path:?}: not found in build context {context:?}")]
    NotFound { context: String, path: String },
    #[error("{path:?}: too many levels of symbolic links in build context {context:?}")]
    TooManyLinks { context: String, path: String },
    #[error("cannot {action} stat cache {}: {source}", path.display())]
    StatCache { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl ContextError {
    /// An I/O error on a context path; lack of permission gets its own variant.
    fn io(action: &'static str, path: PathBuf, source: std::io::Error) -> ContextError {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ContextError::PermissionDenied { action, path }
        } else {
            ContextError::Io { action, path, source }
        }
    }

    fn stat_cache(action: &'static str, path: &Path, source: std::io::Error) -> ContextError {
        ContextError::StatCache { action, path: path.to_path_buf(), source }
    }
}

/// The selected entries of a context directory at one point in time.
#[derive(Debug)]
pub struct ContextSnapshot {
    name: String,
    root: PathBuf,
    entries: Vec<Entry>,
    /// Entry index by path.
    index: HashMap<PathBuf, usize>,
    /// For each entry, the index just past its subtree.
    subtree_end: Vec<usize>,
    skipped: Vec<SkippedEntry>,
    stats: ScanStats,
}

impl ContextSnapshot {
    /// Walks `dir` with the filters of `source` and hashes the selected files, reusing and
    /// updating `stat_cache` (the caller saves it).
    pub fn scan(
        dir: &Path,
        source: &ContextSource,
        stat_cache: &mut StatCache,
    ) -> Result<ContextSnapshot, ContextError> {
        let scan_start_ns = now_ns();
        let (root, root_fd) = walk::open_root(dir)?;
        let ignore =
            IgnoreFile::parse(&source.exclude_patterns.join("\n")).map_err(|source_err| {
                ContextError::Ignore { context: source.name.clone(), source: source_err }
            })?;
        let mut include = filter::IncludeFilter::new(&source.include_paths)?;
        if !include.includes_everything() {
            walk::follow_include_links(root_fd.as_fd(), &mut include);
        }
        let walked = walk::walk(root_fd.as_fd(), &root, &ignore, &include)?;

        // Digests from the stat cache where it knows the file, hashing for the rest.
        let mut stats = ScanStats { entries: walked.entries.len(), ..ScanStats::default() };
        let mut digests = vec![None; walked.entries.len()];
        let mut misses = Vec::new();
        let shard = stat_cache.shard(&root)?;
        for (i, entry) in walked.entries.iter().enumerate() {
            if !matches!(entry.kind, walk::WalkedKind::File) {
                continue;
            }
            stats.files += 1;
            stats.file_bytes += entry.stat.size;
            match shard.lookup(&entry.stat) {
                Some(digest) => {
                    stats.stat_cache_hits += 1;
                    digests[i] = Some((digest, entry.stat.size));
                }
                None => misses.push(i),
            }
        }
        let jobs: Vec<hash::HashJob<'_>> = misses
            .iter()
            .map(|&i| hash::HashJob {
                path: &walked.entries[i].path,
                size: walked.entries[i].stat.size,
            })
            .collect();
        let hashed = hash::hash_files(root_fd.as_fd(), &root, &jobs)?;
        for (&i, (digest, size)) in misses.iter().zip(hashed) {
            stats.files_hashed += 1;
            stats.bytes_hashed += size;
            let stat = &walked.entries[i].stat;
            // A file that changed size while read is not remembered.
            if size == stat.size {
                shard.insert(stat, digest, scan_start_ns);
            }
            digests[i] = Some((digest, size));
        }

        let entries: Vec<Entry> = walked
            .entries
            .into_iter()
            .zip(digests)
            .map(|(walked, digest)| {
                let kind = match (walked.kind, digest) {
                    (walk::WalkedKind::Directory, _) => EntryKind::Directory,
                    (walk::WalkedKind::Symlink(target), _) => EntryKind::Symlink { target },
                    (walk::WalkedKind::File, Some((digest, size))) => {
                        EntryKind::File { size, digest }
                    }
                    (walk::WalkedKind::File, None) => unreachable!("every file was hashed"),
                };
                Entry {
                    path: walked.path,
                    kind,
                    mode: walked.stat.mode & 0o7777,
                    uid: 0,
                    gid: 0,
                    mtime_ns: walked.stat.mtime_ns,
                    inode: (walked.stat.dev, walked.stat.ino),
                    nlink: walked.nlink,
                }
            })
            .collect();
        Ok(ContextSnapshot::from_entries(source.name.clone(), root, entries, walked.skipped, stats))
    }

    fn from_entries(
        name: String,
        root: PathBuf,
        entries: Vec<Entry>,
        skipped: Vec<SkippedEntry>,
        stats: ScanStats,
    ) -> ContextSnapshot {
        let index = entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect();
        // In walk order, a subtree ends at the next entry that is no deeper than its root.
        let depth =
            |e: &Entry| e.path.as_os_str().as_bytes().iter().filter(|b| **b == b'/').count();
        let mut subtree_end = vec![entries.len(); entries.len()];
        let mut open: Vec<(usize, usize)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let d = depth(entry);
            while let Some(&(top, top_depth)) = open.last() {
                if top_depth < d {
                    break;
                }
                subtree_end[top] = i;
                open.pop();
            }
            open.push((i, d));
        }
        ContextSnapshot { name, root, entries, index, subtree_end, skipped, stats }
    }

    /// The context's name (`context`, or a `--build-context` name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context directory, resolved (absolute, no symlinks). Host-specific: never hash it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every selected entry in walk order (depth first, names sorted by bytes).
    pub fn files(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The entry at `path` (relative to the context root), if selected.
    pub fn entry(&self, path: &Path) -> Option<&Entry> {
        self.index.get(path).map(|&i| &self.entries[i])
    }

    /// The entry at `path` and everything beneath it, in walk order; for the empty path (the
    /// context root), every entry. Empty if `path` is not in the snapshot.
    pub fn entries_at(&self, path: &Path) -> &[Entry] {
        if path.as_os_str().is_empty() {
            return &self.entries;
        }
        match self.index.get(path) {
            Some(&i) => &self.entries[i..self.subtree_end[i]],
            None => &[],
        }
    }

    /// Sockets, fifos and devices the scan left out.
    pub fn skipped(&self) -> &[SkippedEntry] {
        &self.skipped
    }

    pub fn stats(&self) -> &ScanStats {
        &self.stats
    }
}

/// Nanoseconds since the epoch on the real-time clock (0 if the clock is before 1970).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
