//! Stages → [`Graph`]: what BuildKit's `dockerfile2llb` does, as plain data.
//!
//! [`lower`] picks the target stage, finds the stages it needs (its base, `COPY --from`,
//! `RUN --mount from=`, and those of ONBUILD triggers), and turns each needed stage's
//! instructions into steps and image-config edits, in file order.
//!
//! Rules kept from BuildKit:
//! - ARG scoping: ARGs before the first FROM (plus the predefined platform args and
//!   `--build-arg` overrides) are visible only in FROM lines, unless a stage redeclares them
//!   with `ARG NAME`, which then takes the global value. Inside a stage, an ARG's value is
//!   `--build-arg` if given, else its (expanded) default; it joins the environment of later
//!   RUNs and of word expansion, but not the image config.
//! - Expansion uses the stage's environment (image ENV, ENV, ARGs in order; later wins) and
//!   applies to ENV, LABEL, ADD/COPY paths and flags, WORKDIR, USER, VOLUME, STOPSIGNAL,
//!   EXPOSE, ARG defaults, `--mount` values, and unquoted heredoc bodies of COPY/ADD —
//!   never to RUN, CMD, ENTRYPOINT, SHELL or HEALTHCHECK.
//! - A stage may only read from stages defined before it.
//! - Base image facts (config, ONBUILD triggers) come from an [`ImageResolver`].
//!
//! Invariant: lowering never touches the filesystem or the network itself.

mod args;
mod dispatch;
mod paths;
mod reference;
mod stages;

pub use reference::validate_reference;

use crate::Span;
use crate::graph::{Graph, ImageConfig};
use crate::instructions::Dockerfile;
use crate::platform::Platform;
use std::collections::BTreeMap;

/// What the engine knows about a base image, as lowering needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedImage {
    /// The reference to pull, normalised and pinned (`docker.io/library/alpine:3@sha256:...`)
    /// when the resolver knows the digest.
    pub reference: String,
    pub config: ImageConfig,
    /// The image's own platform, when its config says.
    pub platform: Option<Platform>,
    /// Whether the image has no layers (a `scratch`-like image).
    pub is_empty: bool,
}

/// The engine's side of lowering: looks up base images.
pub trait ImageResolver {
    /// Resolves `reference` (as written after expansion: `alpine`, `ghcr.io/x/y:1`, or an
    /// `oci-layout://DIR[:TAG]` named context) for `platform`. The error is shown to the
    /// user after "failed to resolve source metadata for REF: ".
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String>;
}

/// A resolver for offline planning: every image resolves to itself with an empty config.
/// `kiln debug plan` uses it; real builds use the engine's registry-backed resolver.
#[derive(Debug, Default, Clone, Copy)]
pub struct OfflineResolver;

impl ImageResolver for OfflineResolver {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage { reference: reference.to_string(), ..Default::default() })
    }
}

/// What `--build-context NAME=...` gives a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory: read like the main context.
    Local,
    /// `docker-image://REF`: that image.
    Image(String),
    /// `oci-layout://DIR[:TAG]`: an image in an OCI layout (the engine reads it).
    OciLayout(String),
}

#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// `--target`; the last stage when `None`.
    pub target: Option<String>,
    /// `--build-arg KEY=VALUE`, already resolved from the environment for bare `KEY`.
    pub build_args: BTreeMap<String, String>,
    /// `--platform` (TARGETPLATFORM).
    pub target_platform: Platform,
    /// The platform of the machine running the build (BUILDPLATFORM).
    pub build_platform: Platform,
    /// `.dockerignore` patterns of the main context, as written.
    pub dockerignore: Vec<String>,
    /// `--build-context` names.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--network` default for RUN.
    pub default_network: crate::instructions::NetworkMode,
    /// `--label` values added to the target image.
    pub labels: BTreeMap<String, String>,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            target: None,
            build_args: BTreeMap::new(),
            target_platform: Platform::host(),
            build_platform: Platform::host(),
            dockerignore: Vec::new(),
            named_contexts: BTreeMap::new(),
            default_network: crate::instructions::NetworkMode::Default,
            labels: BTreeMap::new(),
        }
    }
}

/// Why lowering failed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LowerError {
    pub message: String,
    /// The lines of the instruction at fault; `None` for build-wide errors (`--target`).
    pub span: Option<Span>,
}

impl LowerError {
    pub(crate) fn at(span: Span, message: impl Into<String>) -> Self {
        LowerError { message: message.into(), span: Some(span) }
    }

    pub(crate) fn global(message: impl Into<String>) -> Self {
        LowerError { message: message.into(), span: None }
    }
}

/// Lowers a typed Dockerfile into the graph that builds `options.target`.
pub fn lower(
    dockerfile: &Dockerfile,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<Graph, LowerError> {
    stages::Lowering::new(dockerfile, options, resolver)?.run()
}
