//! The build graph: what lowering produces and the solver runs.
//!
//! A [`Graph`] is a list of [`Step`]s in an order where every step comes after the steps it
//! reads from, so running them front to back (or in parallel as the edges allow) is always
//! valid. Each step has two parts:
//!
//! - [`Op`]: the *defining* data. Everything that decides the step's result is here, and
//!   nothing else: two steps with equal ops and equal inputs give equal results. The solver
//!   computes cache keys from the op alone (plus its inputs' keys and, for context and image
//!   sources, the content they resolve to).
//! - [`StepMeta`]: *descriptive* data (source lines, progress name). It never enters a key.
//!
//! Invariants: `steps[i].id == StepId(i)`; every `StepId` inside an op is smaller than the
//! step's own id; paths in ops are absolute and cleaned (destinations keep a trailing `/` when
//! one was written, because it changes COPY's meaning); values are fully expanded.

use crate::Span;
use crate::instructions::{Device, MountType, NetworkMode, SecurityMode, Sharing};
use crate::platform::Platform;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StepId(pub usize);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub steps: Vec<Step>,
    /// The stages the target needs, in file order (the target last among them).
    pub stages: Vec<StageResult>,
    /// Index into `stages` of the stage whose image is the build's result.
    pub target: usize,
    /// The platform the build produces (`TARGETPLATFORM`).
    pub platform: Platform,
    pub warnings: Vec<GraphWarning>,
}

impl Graph {
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.0]
    }

    pub fn target_stage(&self) -> &StageResult {
        &self.stages[self.target]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphWarning {
    pub message: String,
    /// Lines the warning is about; `None` for build-wide warnings (unused `--build-arg`).
    pub span: Option<Span>,
}

/// One stage as built: the step holding its filesystem and the image config it ends with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageResult {
    /// Position of the stage in the Dockerfile.
    pub index: usize,
    pub name: Option<String>,
    /// The step whose filesystem is this stage's result.
    pub root: StepId,
    pub platform: Platform,
    /// The image this stage's filesystem starts from, through any stages it is built on
    /// (`None` for `scratch` or a local context): its config and history come first.
    pub base_image: Option<String>,
    pub image: StageImage,
}

/// The image a stage produces, apart from its layers: its config and its history.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StageImage {
    pub config: ImageConfig,
    /// `MAINTAINER`.
    pub author: Option<String>,
    /// History entries this Dockerfile added, after those of the base image.
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub created_by: String,
    /// True for instructions that change only the config.
    pub empty_layer: bool,
}

/// The runtime configuration of an image, with Docker's fields that the OCI spec lacks
/// (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ImageConfig {
    pub user: Option<String>,
    pub exposed_ports: BTreeSet<String>,
    /// `KEY=value` strings in order; keys unique.
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub volumes: BTreeSet<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub args_escaped: bool,
    pub healthcheck: Option<Healthcheck>,
    pub on_build: Vec<String>,
    pub shell: Vec<String>,
}

impl ImageConfig {
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key=value`, replacing an earlier value in place.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self.env.iter_mut().find(|kv| kv.split_once('=').map_or(kv.as_str(), |p| p.0) == key)
        {
            Some(existing) => *existing = entry,
            None => self.env.push(entry),
        }
    }
}

/// Docker's `Healthcheck` config; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: StepId,
    pub op: Op,
    pub meta: StepMeta,
}

impl Step {
    /// The steps this one reads from.
    pub fn inputs(&self) -> Vec<StepId> {
        self.op.inputs()
    }
}

/// Descriptive data: never part of a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepMeta {
    /// Progress name, e.g. `[build 2/5] RUN make`.
    pub name: String,
    /// Lines of the instruction this step comes from (`None` for internal steps).
    pub span: Option<Span>,
    /// The stage the step belongs to (its name, or `stage-N`), when it belongs to one.
    pub stage: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// An empty filesystem (`FROM scratch`, the base of a cache mount).
    Scratch,
    /// An image's filesystem. `reference` is normalised by the engine and pinned to a digest
    /// when the cache key is computed.
    Image {
        reference: String,
        platform: Platform,
    },
    /// Files of a local build context: the main one (`name == "context"`) or a named one from
    /// `--build-context NAME=PATH`.
    Context(ContextSource),
    Run(RunOp),
    Copy(CopyOp),
    /// `WORKDIR`: create the directory (and its parents) owned by the current user.
    Mkdir {
        parent: StepId,
        path: String,
        mode: u32,
        user: Option<String>,
    },
}

impl Op {
    pub fn inputs(&self) -> Vec<StepId> {
        match self {
            Op::Scratch | Op::Image { .. } | Op::Context(_) => vec![],
            Op::Mkdir { parent, .. } => vec![*parent],
            Op::Copy(copy) => {
                let mut inputs = vec![copy.dest_parent];
                if let CopySourceRef::Step(source) = copy.source {
                    inputs.push(source);
                }
                inputs
            }
            Op::Run(run) => {
                let mut inputs = vec![run.rootfs];
                inputs.extend(run.mounts.iter().filter_map(|m| m.source));
                inputs
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextSource {
    /// `context` for the main build context, or the `--build-context` name.
    pub name: String,
    /// `.dockerignore` patterns, in order, as written (`!` kept). Applied by the engine.
    pub exclude_patterns: Vec<String>,
    /// The paths the build reads, absolute from the context root and cleaned (`/` for all):
    /// the engine may skip anything outside them. Sorted, unique.
    pub include_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOp {
    /// The root filesystem the command runs on.
    pub rootfs: StepId,
    /// argv, the shell already prepended for the shell form.
    pub args: Vec<String>,
    /// The environment: image/ENV variables and the ARGs in scope, `KEY=value`.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: String,
    pub network: NetworkMode,
    pub security: SecurityMode,
    pub mounts: Vec<RunMount>,
    pub devices: Vec<Device>,
    /// Heredoc files mounted read-only for the command (a `#!` heredoc runs from
    /// `/dev/pipes/NAME`).
    pub inline_files: Vec<InlineFileMount>,
    /// Proxy variables from `--build-arg` (`HTTP_PROXY=...`): given to the command but, as in
    /// BuildKit, kept out of the cache key and the history.
    pub proxy_env: Vec<String>,
}

/// A RUN mount after expansion and defaults (cache ids, secret and ssh targets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    pub kind: MountType,
    /// Absolute path inside the sandbox.
    pub target: String,
    /// For bind and cache mounts: the step whose files are mounted (context, stage, image or
    /// scratch for a fresh cache). `None` for tmpfs, secret and ssh.
    pub source: Option<StepId>,
    /// Path inside the source (cleaned, absolute; `/` for all of it).
    pub source_path: String,
    pub readonly: bool,
    /// Cache mounts: the persistent cache's id; secrets and ssh: the id requested.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size_limit: Option<u64>,
    pub required: bool,
    /// Secrets: also expose the value in this environment variable.
    pub env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFileMount {
    pub path: String,
    pub data: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopySourceRef {
    /// Files come from this step (context, another stage, an image).
    Step(StepId),
    /// Only inline (heredoc) sources or URLs: nothing to read from a step.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyOp {
    /// The filesystem the files are copied into.
    pub dest_parent: StepId,
    pub source: CopySourceRef,
    /// Source paths (relative to the source's root, as written after expansion) or URLs.
    pub sources: Vec<String>,
    /// Heredoc sources: file name and (expanded when asked) content.
    pub inline_sources: Vec<InlineSource>,
    /// Absolute destination, resolved against the WORKDIR; a trailing `/` kept.
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// Set for ADD: archive extraction, URL checksums, git options.
    pub add: Option<AddOptions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineSource {
    pub name: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddOptions {
    /// `--unpack`: `None` means the default (extract local archives, never URLs).
    pub unpack: Option<bool>,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
}
