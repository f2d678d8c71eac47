//! The remote cache around one `kiln build`: `--cache-from` imported before the graph runs,
//! the final image's lazy layers fetched before outputs read them, `--cache-to` exported
//! after every output succeeded, and used imported records kept in the local index.
//!
//! Failures to import or to keep records are warnings; a failed export fails the build
//! unless the export says `ignore-error=true` (as BuildKit).

use crate::registry::RegistryClient;
use crate::registry::push::MountSources;
use crate::remote_cache::export::{self, CacheExport};
use crate::remote_cache::upload::CacheUploader;
use crate::remote_cache::{CacheSession, CacheSource, ImportedCache};
use crate::solver::progress::{Event, ProgressSink, StepReporter};
use crate::solver::rootfs::Layer;
use kiln_frontend::graph::Graph;

/// Reads every `--cache-from`; those that cannot be read are warned about and skipped.
pub fn import(
    sources: &[CacheSource],
    client: &RegistryClient,
    progress: &dyn ProgressSink,
) -> ImportedCache {
    for source in sources {
        progress.emit(Event::Message { text: format!("importing cache manifest from {source}") });
    }
    ImportedCache::load(sources, client, &mut |warning| {
        progress.emit(Event::Message { text: format!("WARNING: {warning}") })
    })
}

/// Fetches the blobs of `layers` that are lazy (remote cache hits) into the store, reported
/// as part of progress step `step`.
pub fn fetch_layers(
    session: &CacheSession<'_>,
    layers: &[Layer],
    progress: &dyn ProgressSink,
    step: usize,
) -> anyhow::Result<()> {
    let refs: Vec<_> = layers.iter().map(Layer::to_ref).collect();
    session.fetch_blobs(&refs, &StepReporter::new(progress, step))?;
    Ok(())
}

/// Where the registry caches hold the blobs of `layers`, for cross-repository mounts.
pub fn mount_sources(session: &CacheSession<'_>, layers: &[Layer]) -> MountSources {
    let descriptors: Vec<_> = layers.iter().filter_map(|l| session.descriptor(&l.blob)).collect();
    crate::remote_cache::registry_upload::mount_sources(&session.registries_holding(&descriptors))
}

/// Runs every `--cache-to`, numbered as progress steps from `first_step`.
pub fn export_all(
    exports: &[CacheExport],
    graph: &Graph,
    session: &CacheSession<'_>,
    uploader: &dyn CacheUploader,
    progress: &dyn ProgressSink,
    first_step: usize,
) -> anyhow::Result<()> {
    for (i, cache_export) in exports.iter().enumerate() {
        let step = first_step + i;
        if let Err(err) = export::run(cache_export, graph, session, uploader, progress, step) {
            progress.emit(Event::Failed { step, error: err.to_string() });
            if !cache_export.ignore_error {
                return Err(err.into());
            }
            progress.emit(Event::Message { text: format!("WARNING: {err} (ignored)") });
        }
    }
    Ok(())
}

/// Keeps the imported records the build used in the local index (a failure is a warning:
/// it only costs the next build a download).
pub fn persist(session: &CacheSession<'_>, progress: &dyn ProgressSink) {
    if let Err(err) = session.persist() {
        progress.emit(Event::Message {
            text: format!("WARNING: keeping imported cache records: {err}"),
        });
    }
}
