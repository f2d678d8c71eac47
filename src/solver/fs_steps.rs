//! Engine glue for the filesystem steps (COPY, ADD, WORKDIR) and for views of a step's
//! files: each writes a new layer directory with `ops::copy` / `ops::mkdir`, which becomes
//! the layer's blob and snapshot.

use super::rootfs::{Layer, Rootfs};
use crate::fs::merged::{Entry, MergedRoot, Time};
use crate::fs::users::{ExecUser, lookup_user};
use crate::layer::{Compression, DiffSource, WriteOptions};
use crate::ops::context::ContextSnapshot;
use crate::ops::copy::{
    CopyOptions, CopySource, SourceDigests, copy_into_layer, sha256_content, source_digests,
};
use crate::ops::mkdir::mkdir_into_layer;
use crate::ops::run::store_dir_as_layer;
use kiln_cache::Root;
use kiln_frontend::dockerignore::IgnoreFile;
use kiln_frontend::graph::{CopyOp, CopySourceRef};
use std::path::PathBuf;
use std::sync::Arc;

/// A scanned build context with the `.dockerignore` that filters it.
#[derive(Debug)]
pub struct ContextFiles {
    pub snapshot: ContextSnapshot,
    pub ignore: Option<IgnoreFile>,
}

impl ContextFiles {
    pub fn new(snapshot: ContextSnapshot, patterns: &[String]) -> Result<Self, String> {
        let ignore = if patterns.is_empty() {
            None
        } else {
            Some(IgnoreFile::parse(&patterns.join("\n")).map_err(|e| e.to_string())?)
        };
        Ok(ContextFiles { snapshot, ignore })
    }

    /// The context as COPY sees it: files `.dockerignore` excludes are absent.
    pub fn view(&self) -> Result<MergedRoot, String> {
        let root = MergedRoot::plain(self.snapshot.root()).map_err(|e| e.to_string())?;
        Ok(match &self.ignore {
            Some(ignore) => root.with_ignore(ignore.clone()),
            None => root,
        })
    }

    /// Content digests already computed by the scan, by entry (falls back to reading).
    fn digest(&self, entry: &Entry) -> Result<[u8; 32], crate::fs::FsError> {
        let relative = PathBuf::from(entry.path().to_slash_string());
        if let Some(digest) = self.snapshot.entry(&relative).and_then(|e| e.digest()) {
            let mut bytes = [0u8; 32];
            let hex = digest.hex();
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            return Ok(bytes);
        }
        sha256_content(entry)
    }
}

/// Where a COPY reads: a context, another step's filesystem, or nothing.
pub enum Source<'a> {
    Context(&'a ContextFiles),
    Rootfs(&'a Rootfs),
    None,
}

fn rootfs_view(rootfs: &Rootfs) -> Result<MergedRoot, String> {
    MergedRoot::new(rootfs.lowers()).map_err(|e| e.to_string())
}

/// The digests of the files `op` selects from its source (see `ops::copy::source_digests`).
pub fn sources_digest(op: &CopyOp, source: &Source<'_>) -> Result<SourceDigests, String> {
    let digests = match source {
        Source::Context(files) => {
            let view = files.view()?;
            let hasher = |entry: &Entry| files.digest(entry);
            source_digests(op, CopySource::Context(&view), &hasher)
        }
        Source::Rootfs(rootfs) => {
            let view = rootfs_view(rootfs)?;
            source_digests(op, CopySource::Rootfs(&view), &sha256_content)
        }
        Source::None => source_digests(op, CopySource::None, &sha256_content),
    };
    digests.map_err(|e| e.to_string())
}

fn created_time(source_date_epoch: Option<i64>) -> Time {
    let sec = source_date_epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    Time { sec, nsec: 0 }
}

/// A fresh empty layer directory in the store's `tmp/`.
fn layer_dir(root: &Root, prefix: &str) -> Result<tempfile::TempDir, String> {
    let work = root.work_dir().map_err(|e| e.to_string())?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(work)
        .map_err(|e| format!("creating a layer directory: {e}"))
}

/// Writes `dir` as a layer blob and makes it the layer's snapshot.
fn store_dir(
    root: &Root,
    dir: tempfile::TempDir,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<Layer, String> {
    let options = WriteOptions { compression, source_date_epoch, ..Default::default() };
    let path = dir.keep();
    let layer = store_dir_as_layer(root, &path, DiffSource::Directory(&path), &options)
        .map_err(|e| e.to_string());
    if path.exists() {
        // Failed, or the id was committed by someone else first: ours is not needed.
        let _ = std::fs::remove_dir_all(&path);
    }
    layer
}

pub fn copy(
    root: &Root,
    op: &CopyOp,
    parent: &Rootfs,
    source: &Source<'_>,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<Layer, String> {
    let dest = rootfs_view(parent)?;
    let dir = layer_dir(root, "copy-")?;
    let options = CopyOptions {
        created_time: created_time(source_date_epoch),
        download_dir: Some(root.work_dir().map_err(|e| e.to_string())?),
        ..Default::default()
    };
    match source {
        Source::Context(files) => {
            let view = files.view()?;
            copy_into_layer(op, CopySource::Context(&view), &dest, dir.path(), &options)
        }
        Source::Rootfs(rootfs) => {
            let view = rootfs_view(rootfs)?;
            copy_into_layer(op, CopySource::Rootfs(&view), &dest, dir.path(), &options)
        }
        Source::None => copy_into_layer(op, CopySource::None, &dest, dir.path(), &options),
    }
    .map_err(|e| e.to_string())?;
    store_dir(root, dir, compression, source_date_epoch)
}

pub fn mkdir(
    root: &Root,
    parent: &Rootfs,
    path: &str,
    mode: u32,
    user: Option<&str>,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<Layer, String> {
    let dest = rootfs_view(parent)?;
    let dir = layer_dir(root, "mkdir-")?;
    mkdir_into_layer(path, mode, user, &dest, dir.path(), created_time(source_date_epoch))
        .map_err(|e| e.to_string())?;
    store_dir(root, dir, compression, source_date_epoch)
}

/// Who a RUN process is, as BuildKit's executor sets it up: `user` (`name`, `uid`,
/// `name:group` ...) looked up in `rootfs` (`oci.GetUser`: for the default user, root, a
/// failed lookup is plain 0:0), the primary group first among the supplementary groups
/// (`ensureAdditionalGids`), and as `home` what runc gives `HOME` when the environment has
/// none: the home of the uid's passwd entry, else `/`.
pub fn resolve_user(rootfs: &Rootfs, user: Option<&str>) -> Result<ExecUser, String> {
    let view = rootfs_view(rootfs)?;
    let mut found = match user.filter(|u| !u.is_empty()) {
        Some(user) => lookup_user(&view, user).map_err(|e| e.to_string())?,
        None => lookup_user(&view, "0").unwrap_or(ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: None,
        }),
    };
    if !found.additional_gids.contains(&found.gid) {
        found.additional_gids.insert(0, found.gid);
    }
    let home = lookup_user(&view, &found.uid.to_string()).ok().and_then(|entry| entry.home);
    found.home = Some(home.unwrap_or_else(|| "/".to_string()));
    Ok(found)
}

/// A read-only copy of `path` from a step's files, for a RUN bind mount: the files as the
/// step sees them (whiteouts applied, `.dockerignore` honoured), in a temporary directory
/// under the store's `tmp/` that lives as long as the returned guard.
pub fn materialize(
    root: &Root,
    source: &Source<'_>,
    path: &str,
) -> Result<(tempfile::TempDir, PathBuf), String> {
    let relative = path.trim_start_matches('/');
    let op = CopyOp {
        dest_parent: kiln_frontend::graph::StepId(0),
        source: CopySourceRef::None,
        sources: vec![if relative.is_empty() { ".".to_string() } else { relative.to_string() }],
        inline_sources: Vec::new(),
        dest: "/mount".into(),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: Vec::new(),
        add: None,
    };
    let dir = layer_dir(root, "mount-")?;
    let empty = MergedRoot::new(Vec::new()).map_err(|e| e.to_string())?;
    let options = CopyOptions::default();
    let result = match source {
        Source::Context(files) => {
            let view = files.view()?;
            copy_into_layer(&op, CopySource::Rootfs(&view), &empty, dir.path(), &options)
        }
        Source::Rootfs(rootfs) => {
            let view = rootfs_view(rootfs)?;
            copy_into_layer(&op, CopySource::Rootfs(&view), &empty, dir.path(), &options)
        }
        Source::None => return Err("a bind mount needs a source".into()),
    };
    result.map_err(|e| e.to_string())?;
    let mounted = dir.path().join("mount");
    Ok((dir, mounted))
}

/// Shares a context between steps.
pub type SharedContext = Arc<ContextFiles>;
