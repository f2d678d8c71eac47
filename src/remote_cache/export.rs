//! `--cache-to`: which records a build exports, and writing them to a directory or a
//! registry.
//!
//! `mode=max` exports every record the build reused or made, in every stage it ran.
//! `mode=min` (the default) exports those of the steps whose layers make up the final image:
//! the target stage's filesystem chain, followed from its last step through each step's
//! parent filesystem (RUN's rootfs, COPY's destination, WORKDIR's parent) down to its base —
//! through the stages it is built `FROM`, but not into stages it only copies or mounts from.
//!
//! A build with no cacheable step (`FROM` alone) has no record to export: nothing is
//! written, and the progress says so ("skipping cache export for empty result", BuildKit's
//! words).

use super::format::{self, Artifact, CacheEntry, CopySourceDigest, FormatError};
use super::layout_writer::{self, LayoutWriteError};
use super::session::{CacheSession, UsedRecords};
use super::upload::{CacheUploader, UploadError};
use crate::export::{BlobSource, SourceError};
use crate::registry::Reference;
use crate::solver::progress::{ProgressSink, StepReporter, StepTimer};
use kiln_cache::Digest;
use kiln_frontend::graph::{Graph, Op, StepId};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

/// How much of the build to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportMode {
    /// The final image's layers only.
    #[default]
    Min,
    /// Every step of every stage that ran.
    Max,
}

/// Where a cache is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTarget {
    /// `type=registry,ref=REF`.
    Registry(Reference),
    /// `type=local,dest=DIR[,tag=TAG]`.
    Local { dir: PathBuf, tag: String },
}

impl fmt::Display for CacheTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheTarget::Registry(reference) => write!(f, "{reference}"),
            CacheTarget::Local { dir, .. } => write!(f, "{}", dir.display()),
        }
    }
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub target: CacheTarget,
    pub mode: ExportMode,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

impl CacheExport {
    /// BuildKit's name for the export's progress step.
    pub fn step_name(&self) -> &'static str {
        match self.target {
            CacheTarget::Registry(_) => "exporting cache to registry",
            CacheTarget::Local { .. } => "exporting cache to client directory",
        }
    }
}

/// Why a cache export failed.
#[derive(Debug, thiserror::Error)]
#[error("exporting cache to {target}: {cause}")]
pub struct CacheExportError {
    pub target: String,
    pub cause: Box<ExportCause>,
}

/// What went wrong in a cache export.
#[derive(Debug, thiserror::Error)]
pub enum ExportCause {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Local(#[from] LayoutWriteError),
    #[error(transparent)]
    Upload(UploadError),
}

/// The steps whose layers make up the final image (see the module docs).
pub fn final_image_steps(graph: &Graph) -> BTreeSet<StepId> {
    let mut steps = BTreeSet::new();
    let mut next = Some(graph.target_stage().root);
    while let Some(id) = next {
        steps.insert(id);
        next = match &graph.step(id).op {
            Op::Run(run) => Some(run.rootfs),
            Op::Copy(copy) => Some(copy.dest_parent),
            Op::Mkdir { parent, .. } => Some(*parent),
            Op::Scratch | Op::Image { .. } | Op::Context(_) => None,
        };
    }
    steps
}

/// What `mode` exports out of what the build used: entries (each key once) and the copy
/// source digests of the same steps.
pub fn select(
    graph: &Graph,
    used: &UsedRecords,
    mode: ExportMode,
) -> (Vec<CacheEntry>, Vec<CopySourceDigest>) {
    let wanted = match mode {
        ExportMode::Max => None,
        ExportMode::Min => Some(final_image_steps(graph)),
    };
    let exported = |step: &StepId| wanted.as_ref().is_none_or(|steps| steps.contains(step));
    let mut seen = BTreeSet::new();
    let entries = used
        .all()
        .into_iter()
        .filter(|u| exported(&u.step) && seen.insert(u.entry.key.clone()))
        .map(|u| u.entry)
        .collect();
    let copy_sources = used
        .copy_sources()
        .into_iter()
        .filter(|(step, _)| exported(step))
        .map(|(_, c)| c)
        .collect();
    (entries, copy_sources)
}

/// Reads blobs from the store, fetching those of lazy layers from the cache sources first.
pub struct LazyBlobs<'s> {
    session: &'s CacheSession<'s>,
    report: StepReporter<'s>,
}

impl<'s> LazyBlobs<'s> {
    pub fn new(session: &'s CacheSession<'s>, report: StepReporter<'s>) -> Self {
        LazyBlobs { session, report }
    }
}

impl BlobSource for LazyBlobs<'_> {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, SourceError> {
        self.session.ensure_blob(digest, &self.report)?;
        Ok(Box::new(self.session.root().blobs().open(digest)?))
    }

    fn size(&self, digest: &Digest) -> Result<u64, SourceError> {
        if let Some(descriptor) = self.session.descriptor(digest) {
            return Ok(descriptor.size);
        }
        Ok(self.session.root().blobs().size(digest)?)
    }
}

/// Runs one `--cache-to` as progress step `step`: selects, encodes and writes. Returns the
/// artifact written, `None` when there was nothing to export.
pub fn run(
    export: &CacheExport,
    graph: &Graph,
    session: &CacheSession<'_>,
    uploader: &dyn CacheUploader,
    progress: &dyn ProgressSink,
    step: usize,
) -> Result<Option<Artifact>, CacheExportError> {
    let timer = StepTimer::start(progress, step, export.step_name());
    let report = StepReporter::new(progress, step);
    let target = export.target.to_string();
    report.note("preparing build cache for export".into());
    let (entries, copy_sources) = select(graph, session.used(), export.mode);
    if entries.is_empty() {
        report.note("skipping cache export for empty result".into());
        timer.done();
        return Ok(None);
    }
    let failed =
        |cause: ExportCause| CacheExportError { target: target.clone(), cause: Box::new(cause) };
    let artifact = format::encode(&entries, &copy_sources).map_err(|e| failed(e.into()))?;
    let blobs = LazyBlobs::new(session, StepReporter::new(progress, step));
    match &export.target {
        CacheTarget::Local { dir, tag } => {
            let on_write = |d: &crate::image::Descriptor| {
                let what = if d.digest == artifact.manifest_digest {
                    "cache manifest"
                } else if d.digest == artifact.config_digest {
                    "config"
                } else {
                    "layer"
                };
                report.note(format!("writing {what} {}", d.digest));
            };
            layout_writer::write(dir, tag, &artifact, &blobs, &on_write)
                .map_err(|e| failed(e.into()))?;
        }
        CacheTarget::Registry(reference) => {
            let held_by = session.registries_holding(&artifact.layers);
            uploader
                .upload(reference, &artifact, &blobs, &held_by, &report)
                .map_err(|e| failed(ExportCause::Upload(e)))?;
            report.note(format!("writing cache manifest {}", artifact.manifest_digest));
        }
    }
    report.note(format!("{} record(s), {} layer(s)", entries.len(), artifact.layers.len()));
    timer.done();
    Ok(Some(artifact))
}
