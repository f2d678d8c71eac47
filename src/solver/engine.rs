//! The engine: runs each step of a graph for real — cache lookup first, execution on a miss —
//! and records what it made.
//!
//! Per step: compute the cache key from the op and the inputs' results ([`super::key`]); with
//! the key's lock held (so two processes never build the same step twice), look up the
//! record; on a hit whose blobs are all present, reuse its layers (unpacking missing
//! snapshots); otherwise execute the op, store its layer, and put the record. `--no-cache`
//! skips the lookup but still records.
//!
//! Remote cache (`--cache-from`/`--cache-to`, see [`crate::remote_cache`]): a local miss
//! falls back on the imported records, whose layers stay lazy until a step that executes
//! reads them (every filesystem input of an executing step is materialized first, and a
//! COPY's source before its key is computed); every record reused or made is noted for
//! export.

use super::cancel::{Cancel, Canceled};
use super::fs_steps::{self, ContextFiles, Source};
use super::key::{self, CacheKey};
use super::progress::{Event, ProgressSink, StepReporter, StepTimer, Stream as ProgressStream};
use super::rootfs::{Layer, Rootfs, SnapshotError, load_layers};
use super::schedule::StepRunner;
use crate::layer::Compression;
use crate::ops;
use crate::sandbox::{NetworkMode, Stream};
use kiln_cache::{CacheRecord, Digest, LayerRef, Root, SourceDigest, now_secs};
use kiln_frontend::graph::{Graph, Op, RunOp, StepId};
use kiln_frontend::instructions::NetworkMode as RunNetwork;
use kiln_frontend::platform::Platform;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

mod run_mounts;
use run_mounts::MountGuards;

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
    /// store when this returns). Transfers are reported through `report`.
    fn layers(
        &self,
        reference: &str,
        platform: &Platform,
        report: &StepReporter<'_>,
    ) -> Result<(String, Vec<LayerRef>), String>;

    /// Remote cache: like [`ImageProvider::layers`] without fetching anything, with where
    /// the missing blobs can be had; `None` when the image cannot be had lazily (its blobs
    /// are all in the store, or its origin cannot serve single blobs).
    fn lazy_layers(
        &self,
        _reference: &str,
        _platform: &Platform,
    ) -> Result<Option<crate::remote_cache::LazyImage>, String> {
        Ok(None)
    }
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
    /// remote cache: imported records, lazy layers and the log of records used.
    pub remote_cache: &'a crate::remote_cache::CacheSession<'a>,
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

    /// Makes every filesystem among `inputs` readable (remote cache: lazy layers fetched).
    fn materialize(
        &self,
        step: StepId,
        inputs: &[(StepId, &StepOutput)],
    ) -> Result<(), BuildError> {
        let report = StepReporter::new(self.progress, step.0 + 1);
        for rootfs in inputs.iter().filter_map(|(_, output)| output.rootfs()) {
            self.remote_cache.materialize(rootfs, &report).map_err(|e| self.fail(step, e))?;
        }
        Ok(())
    }

    /// The digest of the files a COPY selects, which its key covers. Remote cache: when the
    /// source is a stage's filesystem, an imported digest for exactly its layers spares
    /// downloading them; else they are materialized and read, and the digest noted.
    fn copy_sources_digest(
        &self,
        step: StepId,
        op: &kiln_frontend::graph::CopyOp,
        source: &Source<'_>,
    ) -> Result<crate::ops::copy::SourceDigests, BuildError> {
        let Source::Rootfs(rootfs) = source else {
            return fs_steps::sources_digest(op, source).map_err(|e| self.fail(step, e));
        };
        if let Some(known) = self.remote_cache.copy_source(step, op, rootfs) {
            return Ok(known);
        }
        let report = StepReporter::new(self.progress, step.0 + 1);
        self.remote_cache.materialize(rootfs, &report).map_err(|e| self.fail(step, e))?;
        let digests = fs_steps::sources_digest(op, source).map_err(|e| self.fail(step, e))?;
        self.remote_cache.note_copy_source(step, op, rootfs, &digests);
        Ok(digests)
    }

    /// Looks the key up (unless `--no-cache`) locally, then in the imported remote cache;
    /// else materializes the step's inputs, runs `make`, and records the result.
    fn cached(
        &self,
        step: StepId,
        inputs: &[(StepId, &StepOutput)],
        key: CacheKey,
        parent: &[Layer],
        sources: Vec<SourceDigest>,
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
            self.remote_cache.note_local(step, &key, &record);
            self.progress.emit(Event::Cached { step: step.0 + 1 });
            return Ok(Rootfs { key, layers });
        }
        if !self.options.no_cache
            && let Some(layers) = self.remote_cache.lookup(step, &key)
        {
            self.progress.emit(Event::Cached { step: step.0 + 1 });
            return Ok(Rootfs { key, layers });
        }
        self.materialize(step, inputs)?;
        let mut added = make().map_err(|e| self.fail(step, e))?;
        let made_at = crate::image::Timestamp::now().rfc3339();
        for layer in &mut added {
            layer.created.get_or_insert_with(|| made_at.clone());
        }
        let mut layers = parent.to_vec();
        layers.extend(added);
        let now = now_secs();
        let record = CacheRecord {
            layers: layers.iter().map(Layer::to_ref).collect(),
            config_delta: serde_json::Value::Null,
            sources,
            description: self.graph.step(step).meta.name.clone(),
            created: now,
            last_used: now,
        };
        index.put(&key, &record).map_err(|e| self.fail(step, e))?;
        self.remote_cache.note_local(step, &key, &record);
        Ok(Rootfs { key, layers })
    }

    fn run_image(
        &self,
        step: StepId,
        reference: &str,
        platform: &Platform,
    ) -> Result<StepOutput, BuildError> {
        // remote cache: with a cache to hit, a base image's layers are fetched only when
        // something reads them (a builder stage's base, for one, may never be).
        if !self.remote_cache.imported().is_empty()
            && let Some(image) =
                self.images.lazy_layers(reference, platform).map_err(|e| self.fail(step, e))?
        {
            let key = key::image_key(&image.digest, platform);
            return Ok(StepOutput::Rootfs(Rootfs {
                key,
                layers: self.remote_cache.lazy_image(image),
            }));
        }
        let report = StepReporter::new(self.progress, step.0 + 1);
        let (digest, refs) =
            self.images.layers(reference, platform, &report).map_err(|e| self.fail(step, e))?;
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
        let rootfs = self.cached(step, inputs, key, &parent.layers, Vec::new(), || {
            let user = fs_steps::resolve_user(parent, op.user.as_deref())?;
            let mut env = op.env.clone();
            env.extend(op.proxy_env.iter().cloned());
            if !env.iter().any(|kv| kv.starts_with("HOME=")) {
                // runc sets HOME from the user's passwd entry when the image does not.
                env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
            }
            let mut guards = MountGuards::default();
            let mounts = self.run_mounts(op, inputs, &mut env, &mut guards)?;
            let request = ops::run::RunRequest {
                rootfs: parent,
                argv: op.args.clone(),
                env,
                cwd: op.workdir.clone(),
                uid: user.uid,
                gid: user.gid,
                additional_gids: user.additional_gids,
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
            let mut on_warning = |warning: String| {
                let text = format!("warning: {warning}");
                self.progress.emit(Event::Note { step: progress_step, text });
            };
            let layer = ops::run::run(self.root, request, &mut on_output, &mut on_warning)
                .map_err(|e| self.explain_run_error(e));
            drop(guards);
            Ok(vec![layer?])
        })?;
        Ok(StepOutput::Rootfs(rootfs))
    }

    /// A RUN failure as the user should read it. The kernel refuses a binary for another
    /// architecture with ENOEXEC; without an emulator registered with binfmt_misc that is what
    /// building for a foreign platform gives, so say so.
    fn explain_run_error(&self, error: ops::run::RunError) -> String {
        use crate::sandbox::SandboxError;
        let ops::run::RunError::Sandbox(SandboxError::Exec { command, source }) = &error else {
            return error.to_string();
        };
        if source.raw_os_error() != Some(libc::ENOEXEC) {
            return error.to_string();
        }
        let host = Platform::host();
        let target = &self.graph.platform;
        let why = if target.os == host.os && target.architecture == host.architecture {
            format!("it is not a program for this machine ({host})")
        } else {
            format!(
                "building for {target} on {host} runs {target} programs, which needs an emulator \
                 registered with binfmt_misc (e.g. qemu-user-static)"
            )
        };
        format!("exec {command}: exec format error: {why}")
    }
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
                let digests = self.copy_sources_digest(step, op, &source)?;
                let sources: Vec<SourceDigest> = digests
                    .per_source
                    .into_iter()
                    .filter_map(|(path, digest)| {
                        Some(SourceDigest { path, digest: Digest::parse(&digest).ok()? })
                    })
                    .collect();
                let digest = digests.total;
                let make = || {
                    fs_steps::copy(
                        self.root,
                        op,
                        parent,
                        &source,
                        self.options.compression,
                        self.options.source_date_epoch,
                    )
                    .map(|layer| vec![layer])
                };
                // `--link` without names to look up in the rootfs: the layer is made and
                // cached apart from what lies below it (see `key`), then put on top.
                let independent = op.link
                    && op.chown.as_deref().is_none_or(|c| {
                        c.split(':')
                            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                    });
                if independent {
                    let layer_key = key::copy_key(op, &key::scratch_key(), &digest);
                    let linked = self.cached(step, inputs, layer_key, &[], sources, make)?;
                    let mut layers = parent.layers.clone();
                    layers.extend(linked.layers);
                    let key = key::link_key(&parent.key, &linked.key);
                    StepOutput::Rootfs(Rootfs { key, layers })
                } else {
                    let key = key::copy_key(op, &parent.key, &digest);
                    StepOutput::Rootfs(self.cached(
                        step,
                        inputs,
                        key,
                        &parent.layers,
                        sources,
                        make,
                    )?)
                }
            }
            Op::Mkdir { parent, path, mode, user } => {
                let parent = self.rootfs_of(inputs, *parent);
                let key = key::mkdir_key(&parent.key, path, *mode, user.as_deref());
                let rootfs = self.cached(step, inputs, key, &parent.layers, Vec::new(), || {
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
