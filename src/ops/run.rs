//! RUN: the command in the sandbox on an overlay of the parent's snapshots; its upper
//! directory becomes the new layer (written as a deterministic tar) and that layer's
//! snapshot.
//!
//! Where overlayfs refuses the state root's filesystem (an overlayfs itself, as a container's
//! root usually is), the sandbox runs the command in a merged copy of the parent's snapshots
//! instead; the layer is then the walk diff of that copy against a second, untouched merge,
//! and its snapshot is unpacked from the written layer like a pulled one. Slower (two copies
//! of the parent's files per RUN); the layer holds the same changes, but not the directories
//! an overlay upper has only because overlayfs copied them up (for a mount stub, say).
//!
//! Invariants: the layer never contains a mount stub (a mount target the sandbox created,
//! `/etc/hosts` or a RUN mount's) that is still empty after the run; a failing command
//! leaves no blob, record or snapshot behind (its scratch directory is removed); secrets
//! reach the command only through mounts or its environment, never through the layer or
//! anything the caller stores.

use crate::layer::{Compression, DiffSource, WriteOptions, write_layer};
use crate::sandbox::{
    ExitStatus, Mount, NetworkMode, ProcessSpec, RootfsMode, RootfsModeRequest, RootfsSpec,
    Sandbox, SandboxError, SandboxSpec, Stream,
};
use crate::solver::cancel::Cancel;
use crate::solver::rootfs::{Layer, Rootfs, ensure_snapshot};
use kiln_cache::{Digest, LayerRef, Root, SnapshotId};
use std::path::{Path, PathBuf};

/// Everything one RUN needs, resolved by the engine.
pub struct RunRequest<'a> {
    pub rootfs: &'a Rootfs,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub network: NetworkMode,
    pub mounts: Vec<Mount>,
    /// Heredoc scripts to place in the sandbox: (absolute path, content, mode).
    pub inline_files: Vec<(String, String, u32)>,
    pub compression: Compression,
    pub source_date_epoch: Option<i64>,
    /// Kills the sandbox when the build is canceled.
    pub cancel: &'a Cancel,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("process {command:?} did not complete successfully: exit code: {code}")]
    Failed { command: String, code: i32 },
    #[error("process {command:?} was killed by signal {signal}")]
    Signaled { command: String, signal: i32 },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("writing the layer: {0}")]
    Layer(String),
    #[error("storing the layer: {0}")]
    Store(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

/// Runs the command and returns the layer it made (already stored, with its snapshot).
/// The sandbox's warnings (a fallback it took, a mount it had to leave out) go to
/// `on_warning`.
pub fn run(
    root: &Root,
    request: RunRequest<'_>,
    on_output: &mut dyn FnMut(Stream, &[u8]),
    on_warning: &mut dyn FnMut(String),
) -> Result<Layer, RunError> {
    let scratch_parent = root.work_dir().map_err(|e| RunError::Store(e.to_string()))?;
    let scratch = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&scratch_parent)
        .map_err(io("create scratch directory in", &scratch_parent))?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    let empty = scratch.path().join("empty");
    for dir in [&upper, &work, &empty] {
        std::fs::create_dir(dir).map_err(io("create", dir))?;
    }
    let mut lowers = request.rootfs.lowers();
    if lowers.is_empty() {
        lowers.push(empty.clone());
    }
    let mut mounts = request.mounts;
    if !request.inline_files.is_empty() {
        let pipes = scratch.path().join("pipes");
        std::fs::create_dir(&pipes).map_err(io("create", &pipes))?;
        for (index, (target, data, mode)) in request.inline_files.iter().enumerate() {
            let file = pipes.join(index.to_string());
            std::fs::write(&file, data).map_err(io("write", &file))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                .map_err(io("chmod", &file))?;
            mounts.push(Mount::Bind { source: file, target: target.clone(), readonly: true });
        }
    }
    let command = request.argv.join(" ");
    let spec = SandboxSpec {
        rootfs: RootfsSpec {
            lowers: lowers.clone(),
            upper: upper.clone(),
            work,
            mode: RootfsModeRequest::Auto,
        },
        process: ProcessSpec {
            argv: request.argv,
            env: request.env,
            cwd: request.cwd,
            uid: request.uid,
            gid: request.gid,
            additional_gids: request.additional_gids,
            no_new_privs: true,
        },
        hostname: "kiln".into(),
        network: request.network,
        mounts: mounts.clone(),
    };
    let sandbox = Sandbox::new(spec).with_scratch_parent(&scratch_parent);
    let tracked = request.cancel.track(sandbox.kill_handle());
    let result = sandbox.run(on_output);
    drop(tracked);
    let result = result?;
    result.warnings.iter().cloned().for_each(on_warning);
    match result.status {
        ExitStatus::Code(0) => {}
        ExitStatus::Code(code) => return Err(RunError::Failed { command, code }),
        ExitStatus::Signal(signal) => return Err(RunError::Signaled { command, signal }),
    }
    // The sandbox removed every stub that is still empty. One the command filled (a `/etc`
    // made for `/etc/hosts` on a base without `/etc`, then given `/etc/passwd`) is the
    // command's output now and stays in the layer, as BuildKit's MountStubsCleaner leaves it.
    let options = WriteOptions {
        compression: request.compression,
        source_date_epoch: request.source_date_epoch,
        ..Default::default()
    };
    match &result.rootfs_mode {
        RootfsMode::Overlay => {
            store_dir_as_layer(root, &upper, DiffSource::OverlayUpper(&upper), &options)
        }
        RootfsMode::Copy { root: after } => {
            let before = scratch.path().join("before");
            crate::sandbox::copy::copy_merged(&lowers, &before)
                .map_err(|wire| RunError::Sandbox(wire.into()))?;
            store_walk_diff_as_layer(root, &before, after, &options)
        }
    }
}

/// Writes the changes from `before` to `after` as a layer blob and unpacks that blob as the
/// layer's snapshot (overlay form, whatever form `after` has).
fn store_walk_diff_as_layer(
    root: &Root,
    before: &Path,
    after: &Path,
    options: &WriteOptions,
) -> Result<Layer, RunError> {
    let mut writer = root.blobs().writer().map_err(|e| RunError::Store(e.to_string()))?;
    let descriptor =
        write_layer(DiffSource::Walk { lower: before, upper: after }, options, &mut writer)
            .map_err(|e| RunError::Layer(e.to_string()))?;
    let digest = parse_digest(&descriptor.digest)?;
    let (blob, size) = writer.commit(Some(&digest)).map_err(|e| RunError::Store(e.to_string()))?;
    let layer = LayerRef {
        diff_id: parse_digest(&descriptor.diff_id)?,
        blob,
        media_type: descriptor.media_type.to_string(),
        size,
        created: None,
    };
    let snapshot = ensure_snapshot(root, &layer).map_err(|e| RunError::Store(e.to_string()))?;
    Ok(Layer {
        diff_id: layer.diff_id,
        blob,
        size,
        media_type: layer.media_type,
        snapshot,
        created: None,
    })
}

/// Writes `source` (read from `dir`) as a layer blob and turns `dir` itself into the layer's
/// snapshot; when a snapshot of that layer already exists, `dir` is left where it is.
pub fn store_dir_as_layer(
    root: &Root,
    dir: &Path,
    source: DiffSource<'_>,
    options: &WriteOptions,
) -> Result<Layer, RunError> {
    let mut writer = root.blobs().writer().map_err(|e| RunError::Store(e.to_string()))?;
    let descriptor =
        write_layer(source, options, &mut writer).map_err(|e| RunError::Layer(e.to_string()))?;
    let digest = parse_digest(&descriptor.digest)?;
    let (blob, size) = writer.commit(Some(&digest)).map_err(|e| RunError::Store(e.to_string()))?;
    let diff_id = parse_digest(&descriptor.diff_id)?;
    let snapshot = commit_dir_as_snapshot(root, dir, &diff_id)?;
    Ok(Layer {
        diff_id,
        blob,
        size,
        media_type: descriptor.media_type.to_string(),
        snapshot,
        created: None,
    })
}

/// Moves a filled directory into the snapshot store under the layer's id.
pub fn commit_dir_as_snapshot(
    root: &Root,
    dir: &Path,
    diff_id: &Digest,
) -> Result<PathBuf, RunError> {
    let snapshots = root.snapshots();
    let id = SnapshotId::of_layer(diff_id);
    if let Some(existing) = snapshots.get(&id) {
        return Ok(existing);
    }
    let writer = snapshots.prepare(&id).map_err(|e| RunError::Store(e.to_string()))?;
    // The writer's directory is empty: renaming our tree onto it replaces it in one step.
    std::fs::rename(dir, writer.path()).map_err(io("move into the snapshot store", dir))?;
    writer.commit().map_err(|e| RunError::Store(e.to_string()))
}

fn parse_digest(text: &str) -> Result<Digest, RunError> {
    Digest::parse(text).map_err(|e| RunError::Layer(format!("bad digest {text:?}: {e}")))
}
