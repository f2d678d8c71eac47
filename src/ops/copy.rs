//! `COPY` and `ADD`: writing the copied files into a new, empty layer directory.
//!
//! [`copy_into_layer`] executes a [`CopyOp`] with BuildKit's file-op semantics (fsutil's
//! `Copy` as `dockerfile2llb` drives it). The layer directory ends up holding the copied
//! files and the directories on the way to them (see `fs::layer_dir`), ready to become the
//! layer's snapshot and tar. [`source_digest`] gives the content digest of the sources for
//! the cache key, from the same selection logic.
//!
//! For each source, in order (then each heredoc):
//!
//! 1. The parents of the destination (the destination itself when it ends with `/`) are
//!    made if missing: mode 0755 (or the octal `--chmod`), owned by the `--chown` owner or
//!    root. The destination is resolved with symlinks followed, inside the destination
//!    rootfs.
//! 2. A directory source copies its *contents* into the destination (made if missing, with
//!    the same rules; it takes the source directory's times). A non-directory goes to the
//!    destination path, or into it — under the source's name — when the destination is an
//!    existing directory or ends with `/`.
//! 3. The tree is copied with the rules of `tree` (modes, owners, times, xattrs, hard links,
//!    symlinks as links, `--exclude`, `--parents`).
//!
//! With `--link`, the destination is an empty tree instead of the rootfs (BuildKit copies
//! onto scratch and links the result on top): no symlink of the rootfs is followed and every
//! directory on the way is made fresh.
//!
//! `ADD` extracts local tar archives (any compression; `--unpack=false` turns this off)
//! into the destination instead, downloads URLs (extracted only with `--unpack=true`),
//! and refuses git sources for now. Several sources into a destination that is neither an
//! existing directory nor written with a trailing `/` is an error when any of them is a
//! file. Nothing is written before every source has been found (and every URL
//! downloaded and checked).
//!
//! Confinement: sources are read through `MergedRoot` (nothing outside the source
//! filesystem is reachable), and every write goes through `LayerDir` (nothing outside the
//! layer directory is written), whatever symlinks or `..` the sources or the destination
//! rootfs hold.

mod digest;
mod plan;
mod tree;
mod url;
mod walk;

pub use digest::{ContentHasher, SourceDigests, sha256_content, source_digest, source_digests};
pub use url::{Download, default_http_client, download};

use crate::fs::archive::{self, ArchiveError, ExtractOptions};
use crate::fs::layer_dir::Content;
use crate::fs::mode::{Chmod, ModeError};
use crate::fs::users::UserError;
use crate::fs::{FsError, LayerDir, MergedRoot, NewMeta, RootPath, Time, resolve_chown};
use kiln_frontend::dockerignore::{IgnoreError, IgnoreFile};
use kiln_frontend::graph::CopyOp;
use plan::{Item, LocalItem};
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use walk::Rules;

/// Where a COPY's files come from.
#[derive(Debug, Clone, Copy)]
pub enum CopySource<'a> {
    /// A build context: the files are owned by 0:0 in the image.
    Context(&'a MergedRoot),
    /// A stage's or an image's filesystem: owners are kept.
    Rootfs(&'a MergedRoot),
    /// No filesystem: the op has only heredocs and URLs.
    None,
}

impl<'a> CopySource<'a> {
    fn root(self) -> Option<&'a MergedRoot> {
        match self {
            CopySource::Context(root) | CopySource::Rootfs(root) => Some(root),
            CopySource::None => None,
        }
    }
}

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Times of what the copy makes itself: missing parent directories, heredoc files, and
    /// downloads without `Last-Modified` (the build's `SOURCE_DATE_EPOCH`, or now).
    pub created_time: Time,
    /// The client for URL sources; [`default_http_client`] when `None`.
    pub http_client: Option<reqwest::blocking::Client>,
    /// URLs already downloaded (by the solver, to compute the cache key); others are
    /// downloaded during the copy.
    pub downloads: Vec<Download>,
    /// Where downloads are stored meanwhile (the system's temporary directory by default).
    pub download_dir: Option<PathBuf>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        CopyOptions {
            created_time: Time { sec: now, nsec: 0 },
            http_client: None,
            downloads: Vec::new(),
            download_dir: None,
        }
    }
}

/// What a copy wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub files: u64,
    /// Directories made (copied ones and missing parents), not counting replicated ones.
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Device nodes and fifos made.
    pub nodes: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Archives extracted (ADD).
    pub archives: u64,
    /// URLs downloaded (ADD).
    pub downloads: u64,
    pub xattrs_skipped: u64,
    pub devices_skipped: u64,
    /// Things the user should know (`--chown` names not found).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("failed to compute cache key: \"{path}\": not found")]
    SourceNotFound { path: String },
    #[error("source {source}")]
    Source { path: String, source: FsError },
    #[error("destination {source}")]
    Dest { path: String, source: FsError },
    #[error("cannot replace directory {path} with a file")]
    ReplaceDir { path: String },
    #[error("cannot copy to non-directory: {path}")]
    NonDirectory { path: String },
    #[error(
        "When using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    MultipleSources,
    #[error(transparent)]
    Chmod(#[from] ModeError),
    #[error("--chown: {0}")]
    Chown(#[from] UserError),
    #[error("invalid pattern {pattern:?}: {source}")]
    Pattern { pattern: String, source: IgnoreError },
    #[error("{source_url}: git sources are not supported yet")]
    GitUnsupported { source_url: String },
    #[error("download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("digest mismatch for {url}: {got} (expected: {expected})")]
    ChecksumMismatch { url: String, got: String, expected: String },
    #[error("invalid checksum {checksum:?}: {reason}")]
    Checksum { checksum: String, reason: String },
    #[error("http client: {0}")]
    HttpClient(String),
    #[error("extract {source_path}: {error}")]
    Archive { source_path: String, error: ArchiveError },
    #[error("invalid heredoc file name {0:?}")]
    InlineName(String),
    #[error("the copy reads from a step, but no source filesystem was given")]
    NoSource,
}

/// Who owns what the copy writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owners {
    /// The source's owners.
    Keep,
    /// Everything owned by this uid and gid.
    Fixed(u32, u32),
}

impl Owners {
    fn of(self, uid: u32, gid: u32) -> (u32, u32) {
        match self {
            Owners::Keep => (uid, gid),
            Owners::Fixed(uid, gid) => (uid, gid),
        }
    }
}

/// `--exclude` patterns as walk rules.
fn exclude_rules(op: &CopyOp) -> Result<Rules, CopyError> {
    let mut rules = Rules::default();
    if !op.exclude.is_empty() {
        let text = op.exclude.join("\n");
        rules.exclude = Some(
            IgnoreFile::parse(&text)
                .map_err(|source| CopyError::Pattern { pattern: text.clone(), source })?,
        );
    }
    Ok(rules)
}

/// Executes `op` reading from `source`, writing into the empty directory `out_dir` as a
/// layer over `dest_root` (see the module docs).
pub fn copy_into_layer(
    op: &CopyOp,
    source: CopySource<'_>,
    dest_root: &MergedRoot,
    out_dir: &Path,
    options: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let chmod = op.chmod.as_deref().map(Chmod::parse).transpose()?;
    let mut report = CopyReport::default();
    let chown = match &op.chown {
        Some(spec) => {
            let owner = resolve_chown(dest_root, spec)?;
            report.warnings.extend(owner.warnings);
            Some((owner.uid, owner.gid))
        }
        None => None,
    };
    let exclude = exclude_rules(op)?;
    let unpack = op.add.as_ref().map(|add| add.unpack);
    // `--link`: the files are copied into an empty tree, independent of the rootfs below
    // (its symlinks are not followed, its directories not replicated); only `--chown`
    // names are still looked up in it.
    let scratch;
    let dest_root = if op.link {
        scratch = MergedRoot::new(Vec::new()).map_err(|e| dest_err("/", e))?;
        &scratch
    } else {
        dest_root
    };
    let mut items = plan::plan(op, source, &exclude)?;

    // Everything that can fail on the inputs fails before anything is written.
    let mut downloads: Vec<Option<(Download, bool)>> = Vec::new();
    let mut client = options.http_client.clone();
    for item in &mut items {
        let mut fetched = None;
        match item {
            Item::Local(local) => {
                if unpack.is_some_and(|u| u != Some(false))
                    && local.entry.kind() == crate::fs::FileKind::File
                {
                    let file = local.entry.open().map_err(|e| source_err(&local.source, e))?;
                    local.archive = archive::is_archive(file);
                }
            }
            Item::Url { url } => {
                let existing = options.downloads.iter().find(|d| &d.url == url).cloned();
                let download = match existing {
                    Some(download) => download,
                    None => {
                        if client.is_none() {
                            client = Some(default_http_client()?);
                        }
                        let dir = options.download_dir.clone().unwrap_or_else(std::env::temp_dir);
                        let checksum = op.add.as_ref().and_then(|a| a.checksum.as_deref());
                        download(client.as_ref().expect("set above"), url, checksum, &dir)?
                    }
                };
                let extract = unpack == Some(Some(true))
                    && File::open(&download.path).map(archive::is_archive).unwrap_or(false);
                report.downloads += 1;
                fetched = Some((download, extract));
            }
            Item::Inline { .. } => {}
        }
        downloads.push(fetched);
    }
    let file_like = items
        .iter()
        .zip(&downloads)
        .filter(|(item, fetched)| match item {
            Item::Local(local) => !local.entry.is_dir() && !local.archive,
            Item::Url { .. } => !fetched.as_ref().is_some_and(|(_, extract)| *extract),
            Item::Inline { .. } => true,
        })
        .count();
    if items.len() > 1 && file_like > 0 && !op.dest.ends_with('/') {
        let dest = dest_root.resolve(&op.dest, true).map_err(|e| dest_err(&op.dest, e))?;
        if !dest.entry.is_some_and(|e| e.is_dir()) {
            return Err(CopyError::MultipleSources);
        }
    }

    let mut layer = LayerDir::open(out_dir, dest_root).map_err(|e| dest_err("/", e))?;
    let (uid, gid) = chown.unwrap_or((0, 0));
    let created = NewMeta::simple(
        chmod.as_ref().and_then(Chmod::created_dir_mode).unwrap_or(0o755),
        uid,
        gid,
        options.created_time,
    );
    let mut writer = Writer {
        layer: &mut layer,
        dest: &op.dest,
        created,
        chmod: chmod.as_ref(),
        chown,
        report: &mut report,
    };
    for (item, fetched) in items.iter().zip(downloads) {
        match item {
            Item::Local(local) if local.archive => writer.extract_local(local)?,
            Item::Local(local) => {
                let owners = match (chown, source) {
                    (Some((uid, gid)), _) => Owners::Fixed(uid, gid),
                    (None, CopySource::Context(_)) => Owners::Fixed(0, 0),
                    (None, _) => Owners::Keep,
                };
                let root = source.root().ok_or(CopyError::NoSource)?;
                writer.copy_local(root, local, owners)?;
            }
            Item::Url { .. } => {
                let (download, extract) = fetched.expect("every URL was downloaded");
                if extract {
                    writer.extract_file(&download.path, &download.url)?;
                } else {
                    let mtime = download.last_modified.unwrap_or(options.created_time);
                    let mut file = File::open(&download.path).map_err(|e| CopyError::Download {
                        url: download.url.clone(),
                        reason: e.to_string(),
                    })?;
                    writer.copy_single(
                        OsStr::new(&download.file_name),
                        Content::File(&mut file),
                        0o600,
                        mtime,
                    )?;
                }
            }
            Item::Inline { name, data } => {
                writer.copy_single(
                    name,
                    Content::Reader(&mut data.as_slice()),
                    0o644,
                    options.created_time,
                )?;
            }
        }
    }
    let stats = layer.finish().map_err(|e| dest_err("/", e))?;
    report.xattrs_skipped += stats.xattrs_skipped;
    report.devices_skipped += stats.devices_skipped;
    Ok(report)
}

struct Writer<'a> {
    layer: &'a mut LayerDir,
    dest: &'a str,
    /// Directories the copy makes on the way to the destination.
    created: NewMeta,
    chmod: Option<&'a Chmod>,
    chown: Option<(u32, u32)>,
    report: &'a mut CopyReport,
}

impl Writer<'_> {
    /// fsutil's first steps: the destination's parents (or itself, with a trailing `/`)
    /// made, then the destination resolved (symlinks followed).
    fn prepare_dest(&mut self) -> Result<RootPath, CopyError> {
        let root = RootPath::root();
        let parent = if self.dest.ends_with('/') {
            self.dest.to_string()
        } else {
            RootPath::lexical(self.dest).parent().unwrap_or_default().to_string()
        };
        let resolved =
            self.layer.resolve(&root, &parent, true).map_err(|e| dest_err(&parent, e))?;
        self.make_dirs(&resolved.path)?;
        let dest =
            self.layer.resolve(&root, self.dest, true).map_err(|e| dest_err(self.dest, e))?;
        Ok(dest.path)
    }

    /// MkdirAll: `path` must end up a directory; missing ones are made with `created`,
    /// existing ones are replicated into the layer (something is about to be written there).
    fn make_dirs(&mut self, path: &RootPath) -> Result<(), CopyError> {
        let made = self
            .layer
            .ensure_dir(path, Some(&self.created))
            .map_err(|e| dest_err(&path.to_string(), e))?;
        self.report.dirs += made.len() as u64;
        Ok(())
    }

    /// fsutil's `prepareTargetDir`: where the item goes, with its parent made.
    fn target(
        &mut self,
        dest: RootPath,
        is_dir: bool,
        name: &OsStr,
        dir_contents: bool,
    ) -> Result<RootPath, CopyError> {
        let existing = self.layer.entry(&dest).map_err(|e| dest_err(&dest.to_string(), e))?;
        let into = match &existing {
            Some(entry) => (!dir_contents && is_dir) || (!is_dir && entry.is_dir()),
            None => false,
        };
        let target = if into && !name.is_empty() { dest.join(name) } else { dest };
        let parent = if dir_contents && is_dir && existing.is_none() {
            Some(target.clone())
        } else {
            target.parent()
        };
        if let Some(parent) = parent {
            self.make_dirs(&parent)?;
        }
        Ok(target)
    }

    fn copy_local(
        &mut self,
        root: &MergedRoot,
        item: &LocalItem,
        owners: Owners,
    ) -> Result<(), CopyError> {
        let dest = self.prepare_dest()?;
        let target = self.target(dest, item.entry.is_dir(), &item.name, true)?;
        tree::copy_tree(
            self.layer,
            root,
            &item.entry,
            &target,
            &item.rules,
            owners,
            self.chmod,
            self.report,
        )
    }

    /// A single file that is not from a source filesystem (heredoc, download).
    fn copy_single(
        &mut self,
        name: &OsStr,
        content: Content<'_>,
        mode: u32,
        time: Time,
    ) -> Result<(), CopyError> {
        let dest = self.prepare_dest()?;
        let target = self.target(dest, false, name, false)?;
        let err = |e| dest_err(&target.to_string(), e);
        match self.layer.entry(&target).map_err(err)? {
            Some(found) if found.is_dir() => {
                return Err(CopyError::ReplaceDir { path: target.to_string() });
            }
            Some(_) => self.layer.remove(&target).map_err(err)?,
            None => {}
        }
        let (uid, gid) = self.chown.unwrap_or((0, 0));
        let mode = self.chmod.map_or(mode, |c| c.apply(mode, false));
        let meta = NewMeta::simple(mode, uid, gid, time);
        self.report.bytes += self.layer.write_file(&target, content, &meta).map_err(err)?;
        self.report.files += 1;
        Ok(())
    }

    fn extract_local(&mut self, item: &LocalItem) -> Result<(), CopyError> {
        let file = item.entry.open().map_err(|e| source_err(&item.source, e))?;
        self.extract(file, &item.source)
    }

    fn extract_file(&mut self, path: &Path, url: &str) -> Result<(), CopyError> {
        let file = File::open(path)
            .map_err(|e| CopyError::Download { url: url.to_string(), reason: e.to_string() })?;
        self.extract(file, url)
    }

    /// BuildKit's `unpack`: the destination (symlinks followed) made with 0755 and the
    /// `--chown` owner, then the archive extracted into it.
    fn extract(&mut self, file: File, source: &str) -> Result<(), CopyError> {
        let root = RootPath::root();
        let dest =
            self.layer.resolve(&root, self.dest, true).map_err(|e| dest_err(self.dest, e))?;
        let saved = std::mem::replace(&mut self.created.mode, 0o755);
        let made = self.make_dirs(&dest.path);
        self.created.mode = saved;
        made?;
        let options = ExtractOptions { owner: self.chown, implied_dir_time: self.created.mtime };
        let stats = archive::extract(self.layer, &dest.path, file, &options)
            .map_err(|error| CopyError::Archive { source_path: source.to_string(), error })?;
        self.report.archives += 1;
        self.report.files += stats.files;
        self.report.dirs += stats.dirs;
        self.report.symlinks += stats.symlinks;
        self.report.hardlinks += stats.hardlinks;
        self.report.nodes += stats.nodes;
        self.report.bytes += stats.bytes;
        Ok(())
    }
}

fn dest_err(path: &str, source: FsError) -> CopyError {
    CopyError::Dest { path: path.to_string(), source }
}

fn source_err(path: &str, source: FsError) -> CopyError {
    CopyError::Source { path: path.to_string(), source }
}
