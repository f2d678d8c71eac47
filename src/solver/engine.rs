//! The engine: runs each step of a graph for real — cache lookup first, execution on a miss —
//! and records what it made.
//!
//! Per step: compute the cache key from the op and the inputs' results ([`super::key`]); with
//! the key's lock held (so two processes never build the same step twice), look up the
//! record; on a hit whose blobs are all present, reuse its layers (unpacking missing
//! snapshots); otherwise execute the op, store its layer, and put the record. `--no-cache`
//! skips the lookup but still records.

use super::cancel::{Cancel, Canceled};
use super::fs_steps::{self, ContextFiles, Source};
use super::key::{self, CacheKey};
use super::progress::{Event, ProgressSink, StepTimer, Stream as ProgressStream};
use super::rootfs::{Layer, Rootfs, SnapshotError, load_layers};
use super::schedule::StepRunner;
use crate::layer::Compression;
use crate::ops;
use crate::sandbox::{Mount, NetworkMode, Stream};
use kiln_cache::{CacheRecord, LayerRef, Root, now_secs};
use kiln_frontend::graph::{Graph, Op, RunOp, StepId};
use kiln_frontend::instructions::{MountType, NetworkMode as RunNetwork};
use kiln_frontend::platform::Platform;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a step hands to the steps that read it.
#[derive(Debug, Clone)]
pub enum StepOutput {
    Rootfs(Rootfs),
    /// A local build context: its directory and the files the build selected.
    Context(Arc<ContextFiles>),
}

impl StepOutput {
    pub fn rootfs(&self) -> Option<&Rootfs> {
        match self {
            StepOutput::Rootfs(r) => Some(r),
            StepOutput::Context(_) => None,
        }
    }
}

/// Fetches image layers into the store: the engine's view of registries and the local store.
pub trait ImageProvider: Sync {
    /// The digest `reference` resolves to for `platform`, and its layers (blobs present in the
    /// store when this returns).
    fn layers(
        &self,
        reference: &str,
        platform: &Platform,
        note: &dyn Fn(String),
    ) -> Result<(String, Vec<LayerRef>), String>;
}

/// A secret given with `--secret`.
#[derive(Clone)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "File({})", path.display()),
            SecretSource::Env(var) => write!(f, "Env({var})"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub no_cache: bool,
    pub compression: Compression,
    pub source_date_epoch: Option<i64>,
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh ID=SOCKET`: agent sockets to forward.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Directories of local contexts by name (`context` is the main one).
    pub context_dirs: BTreeMap<String, PathBuf>,
}

pub struct Engine<'a> {
    pub root: &'a Root,
    pub graph: &'a Graph,
    pub images: &'a dyn ImageProvider,
    pub progress: &'a dyn ProgressSink,
    pub options: &'a EngineOptions,
    pub stat_cache: std::sync::Mutex<ops::context::StatCache>,
    /// Set by the CLI's signal watcher: kills running sandboxes, stops new steps.
    pub cancel: &'a Cancel,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{name}: {message}")]
    Step { step: StepId, name: String, message: String },
    #[error(transparent)]
    Canceled(#[from] Canceled),
}

impl Engine<'_> {
    /// The step's error, reported; a step that fails once the build was canceled (its
    /// sandbox killed) fails because of that.
    fn fail(&self, step: StepId, message: impl std::fmt::Display) -> BuildError {
        if let Some(canceled) = self.cancel.canceled() {
            self.progress.emit(Event::Failed { step: step.0 + 1, error: "canceled".into() });
            return canceled.into();
        }
        let name = self.graph.step(step).meta.name.clone();
        self.progress.emit(Event::Failed { step: step.0 + 1, error: message.to_string() });
        BuildError::Step { step, name, message: message.to_string() }
    }

    fn rootfs_of<'o>(&self, inputs: &'o [(StepId, &StepOutput)], id: StepId) -> &'o Rootfs {
        inputs
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, o)| o.rootfs())
            .expect("the graph's inputs are filesystems where an op needs one")
    }

    fn output_of<'o>(&self, inputs: &'o [(StepId, &'o StepOutput)], id: StepId) -> &'o StepOutput {
        inputs.iter().find(|(i, _)| *i == id).map(|(_, o)| *o).expect("input finished")
    }

    /// Looks the key up (unless `--no-cache`), else runs `make`, then records the result.
    fn cached(
        &self,
        step: StepId,
        key: CacheKey,
        parent: &[Layer],
        make: impl FnOnce() -> Result<Vec<Layer>, String>,
    ) -> Result<Rootfs, BuildError> {
        let _lock = self.root.key_lock(&key).map_err(|e| self.fail(step, e))?;
        let index = self.root.records();
        if !self.options.no_cache
            && let Some(record) = index.get(&key).map_err(|e| self.fail(step, e))?
            && let Some(layers) =
                load_layers(self.root, &record.layers).map_err(|e| self.fail(step, e))?
        {
            let _ = index.touch(&key);
            self.progress.emit(Event::Cached { step: step.0 + 1 });
            return Ok(Rootfs { key, layers });
        }
        let added = make().map_err(|e| self.fail(step, e))?;
        let mut layers = parent.to_vec();
        layers.extend(added);
        let now = now_secs();
        let record = CacheRecord {
            layers: layers.iter().map(Layer::to_ref).collect(),
            config_delta: serde_json::Value::Null,
            sources: Vec::new(),
            description: self.graph.step(step).meta.name.clone(),
            created: now,
            last_used: now,
        };
        index.put(&key, &record).map_err(|e| self.fail(step, e))?;
        Ok(Rootfs { key, layers })
    }

    fn run_image(
        &self,
        step: StepId,
        reference: &str,
        platform: &Platform,
    ) -> Result<StepOutput, BuildError> {
        let note = |text: String| self.progress.emit(Event::Note { step: step.0 + 1, text });
        let (digest, refs) =
            self.images.layers(reference, platform, &note).map_err(|e| self.fail(step, e))?;
        let layers = load_layers(self.root, &refs)
            .map_err(|e: SnapshotError| self.fail(step, e))?
            .ok_or_else(|| self.fail(step, "a layer blob vanished from the store"))?;
        Ok(StepOutput::Rootfs(Rootfs { key: key::image_key(&digest, platform), layers }))
    }

    fn run_run(
        &self,
        step: StepId,
        op: &RunOp,
        inputs: &[(StepId, &StepOutput)],
    ) -> Result<StepOutput, BuildError> {
        let parent = self.rootfs_of(inputs, op.rootfs);
        let mount_keys: Vec<Option<CacheKey>> = op
            .mounts
            .iter()
            .map(|m| {
                m.source
                    .map(|s| match self.output_of(inputs, s) {
                        StepOutput::Rootfs(r) => Ok(r.key.clone()),
                        StepOutput::Context(c) => c
                            .snapshot
                            .digest_of(&[m.source_path.trim_start_matches('/').to_string()])
                            .map(CacheKey::from)
                            .map_err(|e| self.fail(step, e)),
                    })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let key = key::run_key(op, &parent.key, &mount_keys);
        let rootfs = self.cached(step, key, &parent.layers, || {
            let (uid, gid, groups) = fs_steps::resolve_user(parent, op.user.as_deref())?;
            let mut env = op.env.clone();
            env.extend(op.proxy_env.iter().cloned());
            let mut secrets_dir = None;
            let mut leases = Vec::new();
            let mut views = Vec::new();
            let mounts =
                self.run_mounts(op, inputs, &mut env, &mut secrets_dir, &mut leases, &mut views)?;
            let request = ops::run::RunRequest {
                rootfs: parent,
                argv: op.args.clone(),
                env,
                cwd: op.workdir.clone(),
                uid,
                gid,
                additional_gids: groups,
                network: match op.network {
                    RunNetwork::None => NetworkMode::None,
                    RunNetwork::Default | RunNetwork::Host => NetworkMode::Host,
                },
                mounts,
                inline_files: op
                    .inline_files
                    .iter()
                    .map(|f| (f.path.clone(), f.data.clone(), f.mode))
                    .collect(),
                compression: self.options.compression,
                source_date_epoch: self.options.source_date_epoch,
                cancel: self.cancel,
            };
            let progress_step = step.0 + 1;
            let mut on_output = |stream: Stream, bytes: &[u8]| {
                let stream = match stream {
                    Stream::Stdout => ProgressStream::Stdout,
                    Stream::Stderr => ProgressStream::Stderr,
                };
                let text = String::from_utf8_lossy(bytes).into_owned();
                self.progress.emit(Event::Output { step: progress_step, stream, text });
            };
            let layer =
                ops::run::run(self.root, request, &mut on_output).map_err(|e| e.to_string());
            drop((secrets_dir, leases, views));
            Ok(vec![layer?])
        })?;
        Ok(StepOutput::Rootfs(rootfs))
    }

    /// RUN --mount → sandbox mounts. Secret files go to a private temporary directory outside
    /// the state root, removed when `secrets_dir` is dropped.
    fn run_mounts(
        &self,
        op: &RunOp,
        inputs: &[(StepId, &StepOutput)],
        env: &mut Vec<String>,
        secrets_dir: &mut Option<tempfile::TempDir>,
        leases: &mut Vec<ops::cache_mount::CacheMountLease>,
        views: &mut Vec<tempfile::TempDir>,
    ) -> Result<Vec<Mount>, String> {
        let mut mounts = Vec::new();
        for m in &op.mounts {
            match m.kind {
                MountType::Tmpfs => mounts.push(Mount::Tmpfs {
                    target: m.target.clone(),
                    size: m.size_limit,
                    mode: None,
                }),
                MountType::Bind => {
                    let source = m.source.expect("bind mounts have a source");
                    let from = match self.output_of(inputs, source) {
                        StepOutput::Context(c) => Source::Context(c),
                        StepOutput::Rootfs(r) => Source::Rootfs(r),
                    };
                    let (guard, host) = fs_steps::materialize(self.root, &from, &m.source_path)?;
                    views.push(guard);
                    mounts.push(if m.readonly {
                        Mount::Bind { source: host, target: m.target.clone(), readonly: true }
                    } else {
                        Mount::BindOverlay { source: host, target: m.target.clone() }
                    });
                }
                MountType::Cache => {
                    let lease = ops::cache_mount::acquire(self.root, m)?;
                    mounts.push(Mount::Bind {
                        source: lease.dir.clone(),
                        target: m.target.clone(),
                        readonly: m.readonly,
                    });
                    leases.push(lease);
                }
                MountType::Secret => {
                    let id = m.id.clone().unwrap_or_default();
                    let Some(source) = self.options.secrets.get(&id) else {
                        if m.required {
                            return Err(format!("secret {id} not found"));
                        }
                        continue;
                    };
                    let value = match source {
                        SecretSource::File(path) => std::fs::read(path).map_err(|e| {
                            format!("reading secret {id} from {}: {e}", path.display())
                        })?,
                        SecretSource::Env(var) => std::env::var(var)
                            .map_err(|_| {
                                format!("secret {id}: environment variable {var} is not set")
                            })?
                            .into_bytes(),
                    };
                    if let Some(var) = &m.env {
                        env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
                    }
                    if !m.target.is_empty() {
                        let dir = match secrets_dir {
                            Some(dir) => dir.path().to_path_buf(),
                            None => {
                                let dir = tempfile::Builder::new()
                                    .prefix("kiln-secrets-")
                                    .tempdir()
                                    .map_err(|e| format!("creating a secrets directory: {e}"))?;
                                let path = dir.path().to_path_buf();
                                *secrets_dir = Some(dir);
                                path
                            }
                        };
                        let file = dir.join(format!("{}", mounts.len()));
                        write_private(
                            &file,
                            &value,
                            m.mode.unwrap_or(0o400),
                            m.uid.unwrap_or(0),
                            m.gid.unwrap_or(0),
                        )?;
                        mounts.push(Mount::Bind {
                            source: file,
                            target: m.target.clone(),
                            readonly: true,
                        });
                    }
                }
                MountType::Ssh => {
                    let id = m.id.clone().unwrap_or_else(|| "default".into());
                    match self.options.ssh.get(&id) {
                        Some(socket) => mounts.push(Mount::Bind {
                            source: socket.clone(),
                            target: m.target.clone(),
                            readonly: true,
                        }),
                        None if m.required => {
                            return Err(format!(
                                "no SSH key {id:?} forwarded (use --ssh {id}=SOCKET)"
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(mounts)
    }
}

fn write_private(
    path: &std::path::Path,
    value: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing a secret file: {e}"))?;
    file.write_all(value).map_err(|e| format!("writing a secret file: {e}"))?;
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("writing a secret file: {e}"))
}

impl StepRunner<StepOutput> for Engine<'_> {
    type Error = BuildError;

    fn run(
        &self,
        step: StepId,
        inputs: &[(StepId, &StepOutput)],
    ) -> Result<StepOutput, BuildError> {
        self.cancel.check()?;
        let meta = &self.graph.step(step).meta;
        let timer = StepTimer::start(self.progress, step.0 + 1, &meta.name);
        let output = match &self.graph.step(step).op {
            Op::Scratch => {
                StepOutput::Rootfs(Rootfs { key: key::scratch_key(), layers: Vec::new() })
            }
            Op::Image { reference, platform } => self.run_image(step, reference, platform)?,
            Op::Context(source) => {
                let dir = self.options.context_dirs.get(&source.name).ok_or_else(|| {
                    self.fail(step, format!("no directory for build context {:?}", source.name))
                })?;
                let mut stat_cache = self.stat_cache.lock().unwrap_or_else(|p| p.into_inner());
                let snapshot = ops::context::ContextSnapshot::scan(dir, source, &mut stat_cache)
                    .map_err(|e| self.fail(step, e))?;
                let files = ContextFiles::new(snapshot, &source.exclude_patterns)
                    .map_err(|e| self.fail(step, e))?;
                StepOutput::Context(Arc::new(files))
            }
            Op::Run(op) => self.run_run(step, op, inputs)?,
            Op::Copy(op) => {
                let parent = self.rootfs_of(inputs, op.dest_parent);
                let source = match op.source {
                    kiln_frontend::graph::CopySourceRef::Step(id) => {
                        match self.output_of(inputs, id) {
                            StepOutput::Context(c) => Source::Context(c),
                            StepOutput::Rootfs(r) => Source::Rootfs(r),
                        }
                    }
                    kiln_frontend::graph::CopySourceRef::None => Source::None,
                };
                let digest =
                    fs_steps::sources_digest(op, &source).map_err(|e| self.fail(step, e))?;
                let key = key::copy_key(op, &parent.key, &digest);
                let rootfs = self.cached(step, key, &parent.layers, || {
                    fs_steps::copy(
                        self.root,
                        op,
                        parent,
                        &source,
                        self.options.compression,
                        self.options.source_date_epoch,
                    )
                    .map(|layer| vec![layer])
                })?;
                StepOutput::Rootfs(rootfs)
            }
            Op::Mkdir { parent, path, mode, user } => {
                let parent = self.rootfs_of(inputs, *parent);
                let key = key::mkdir_key(&parent.key, path, *mode, user.as_deref());
                let rootfs = self.cached(step, key, &parent.layers, || {
                    fs_steps::mkdir(
                        self.root,
                        parent,
                        path,
                        *mode,
                        user.as_deref(),
                        self.options.compression,
                        self.options.source_date_epoch,
                    )
                    .map(|layer| vec![layer])
                })?;
                StepOutput::Rootfs(rootfs)
            }
        };
        timer.done();
        Ok(output)
    }
}
