//! The remote cache during one build, as the engine sees it: imported records to fall back
//! on, lazy layers and their fetching, and the log of every record the build used (what
//! `--cache-to` exports).
//!
//! Lazy layers: a [`Layer`] whose blob is not in the store, or whose snapshot is not
//! unpacked, is *lazy* — a remote hit's ([`CacheSession::lookup`]) or a base image's
//! ([`CacheSession::lazy_image`]). Its `snapshot` is the path the snapshot will have
//! ([`kiln_cache::Snapshots::path`]), so it can be handed on, compared and keyed like any
//! other; [`CacheSession::materialize`] makes it real before anything reads the files.
//!
//! Invariants:
//! - a remote hit is only taken when every blob it names is in the store or was found at
//!   one of the cache sources (checked once per blob); otherwise the step runs and a
//!   warning says why;
//! - each blob is fetched at most once per build, even when parallel steps need it;
//! - the local index only ever receives records whose blobs are all in the store
//!   ([`CacheSession::persist`]).

use super::format::{CacheEntry, CopySourceDigest, copy_source_key};
use super::import::{CacheSource, ImportedCache};
use crate::image::Descriptor;
use crate::ops::copy::SourceDigests;
use crate::registry::RegistryClient;
use crate::solver::progress::{Event, ProgressSink, StepReporter};
use crate::solver::rootfs::{Layer, Rootfs, SnapshotError, ensure_snapshot};
use indicatif::DecimalBytes;
use kiln_cache::{CacheError, CacheKey, CacheRecord, Digest, LayerRef, Root, SnapshotId, now_secs};
use kiln_frontend::graph::{CopyOp, StepId};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a lazy layer could not be made real.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("layer {blob} is not in kiln's store and no --cache-from holds it")]
    NoSource { blob: Digest },
    #[error("cannot fetch layer {blob} from cache {source_name}: {cause}")]
    Fetch { blob: Digest, source_name: String, cause: Box<super::fetch::FetchError> },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// One record a build reused or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedRecord {
    /// The step whose result it is.
    pub step: StepId,
    pub entry: CacheEntry,
    /// Whether it came from `--cache-from` (and may not be in the local index yet).
    pub imported: bool,
}

/// The records a build used, in the order it used them, and the digests its copies from
/// other stages read.
#[derive(Debug, Default)]
pub struct UsedRecords {
    records: Mutex<Vec<UsedRecord>>,
    copy_sources: Mutex<Vec<(StepId, CopySourceDigest)>>,
}

impl UsedRecords {
    fn push(&self, record: UsedRecord) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    }

    /// Every record noted so far.
    pub fn all(&self) -> Vec<UsedRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every copy source digest noted so far, with the step that computed or used it.
    pub fn copy_sources(&self) -> Vec<(StepId, CopySourceDigest)> {
        self.copy_sources.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A base image whose layers are fetched only when something reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LazyImage {
    /// The digest the reference resolved to (what its cache key covers).
    pub digest: String,
    pub layers: Vec<LayerRef>,
    /// Where its blobs are: its registry repository or its OCI layout.
    pub source: CacheSource,
}

/// What the engine holds of the remote cache for one build.
pub struct CacheSession<'a> {
    root: &'a Root,
    client: &'a RegistryClient,
    progress: &'a dyn ProgressSink,
    imported: ImportedCache,
    /// Blobs of lazy base images and where they are.
    image_blobs: Mutex<HashMap<Digest, (Descriptor, CacheSource)>>,
    /// Whether some source still holds a blob, once checked.
    present: Mutex<HashMap<Digest, bool>>,
    /// One lock per blob being fetched.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// Blobs fetched from cache sources during this build.
    fetched: Mutex<BTreeSet<Digest>>,
    used: UsedRecords,
}

impl<'a> CacheSession<'a> {
    pub fn new(
        root: &'a Root,
        client: &'a RegistryClient,
        progress: &'a dyn ProgressSink,
        imported: ImportedCache,
    ) -> Self {
        CacheSession {
            root,
            client,
            progress,
            imported,
            image_blobs: Mutex::default(),
            present: Mutex::default(),
            fetching: Mutex::default(),
            fetched: Mutex::default(),
            used: UsedRecords::default(),
        }
    }

    pub fn root(&self) -> &Root {
        self.root
    }

    pub fn imported(&self) -> &ImportedCache {
        &self.imported
    }

    /// Every record the build reused or made so far.
    pub fn used(&self) -> &UsedRecords {
        &self.used
    }

    /// The digest of what `op` selects from `rootfs`, when an imported cache remembers it
    /// (sparing the download of `rootfs`'s layers); the use is noted.
    pub fn copy_source(&self, step: StepId, op: &CopyOp, rootfs: &Rootfs) -> Option<SourceDigests> {
        let key = copy_source_key(op, &diff_ids(rootfs));
        let known = self.imported.copy_source(&key)?.clone();
        let digests = SourceDigests {
            total: known.digest.to_string(),
            per_source: known.sources.iter().map(|(p, d)| (p.clone(), d.to_string())).collect(),
        };
        self.used.copy_sources.lock().unwrap_or_else(|p| p.into_inner()).push((step, known));
        Some(digests)
    }

    /// Notes the digest `step` computed of what `op` selects from `rootfs`, for export.
    pub fn note_copy_source(
        &self,
        step: StepId,
        op: &CopyOp,
        rootfs: &Rootfs,
        digests: &SourceDigests,
    ) {
        let parse = |text: &str| Digest::parse(text).ok();
        let Some(digest) = parse(&digests.total) else { return };
        let Some(sources) = digests
            .per_source
            .iter()
            .map(|(path, digest)| Some((path.clone(), parse(digest)?)))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let key = copy_source_key(op, &diff_ids(rootfs));
        let copy = CopySourceDigest { key, digest, sources };
        self.used.copy_sources.lock().unwrap_or_else(|p| p.into_inner()).push((step, copy));
    }

    /// Blobs fetched from cache sources so far.
    pub fn fetched(&self) -> BTreeSet<Digest> {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn warn(&self, text: String) {
        self.progress.emit(Event::Message { text: format!("WARNING: {text}") });
    }

    /// Notes a record of the local index that `step` reused or made.
    pub fn note_local(&self, step: StepId, key: &CacheKey, record: &CacheRecord) {
        let entry = CacheEntry {
            key: key.clone(),
            layers: record.layers.clone(),
            description: record.description.clone(),
            created: record.created,
        };
        self.used.push(UsedRecord { step, entry, imported: false });
    }

    /// The layers of an imported record for `key`, lazy, if one exists and its blobs can
    /// be had; the use is noted.
    pub fn lookup(&self, step: StepId, key: &CacheKey) -> Option<Vec<Layer>> {
        let (source, entry) = self.imported.get(key)?;
        let blobs = self.root.blobs();
        for layer in entry.layers.iter().filter(|l| !blobs.contains(&l.blob)) {
            if !self.available(layer) {
                self.warn(format!(
                    "cache {source}: layer {} of {:?} is gone; running the step instead",
                    layer.blob, entry.description
                ));
                return None;
            }
        }
        let layers = entry.layers.iter().map(|l| self.lazy_layer(l)).collect();
        self.used.push(UsedRecord { step, entry: entry.clone(), imported: true });
        Some(layers)
    }

    /// A base image's layers, lazy: their blobs are fetched from `image.source` when read.
    pub fn lazy_image(&self, image: LazyImage) -> Vec<Layer> {
        let blobs = self.root.blobs();
        let mut image_blobs = self.image_blobs.lock().unwrap_or_else(|p| p.into_inner());
        for layer in image.layers.iter().filter(|l| !blobs.contains(&l.blob)) {
            image_blobs.insert(layer.blob, (descriptor_of(layer), image.source.clone()));
        }
        drop(image_blobs);
        image.layers.iter().map(|l| self.lazy_layer(l)).collect()
    }

    /// A layer whose snapshot is where it will be unpacked (see the module docs).
    fn lazy_layer(&self, layer: &LayerRef) -> Layer {
        Layer {
            diff_id: layer.diff_id,
            blob: layer.blob,
            size: layer.size,
            media_type: layer.media_type.clone(),
            snapshot: self.root.snapshots().path(&SnapshotId::of_layer(&layer.diff_id)),
            created: layer.created.clone(),
        }
    }

    /// Every source known to hold `blob`: imported caches first, then base images.
    fn sources_of(&self, blob: &Digest) -> Vec<CacheSource> {
        let mut sources: Vec<CacheSource> =
            self.imported.sources_of(blob).into_iter().cloned().collect();
        let image_blobs = self.image_blobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, source)) = image_blobs.get(blob) {
            sources.push(source.clone());
        }
        sources
    }

    /// The descriptor of a blob that some source holds.
    pub fn descriptor(&self, blob: &Digest) -> Option<Descriptor> {
        if let Some(descriptor) = self.imported.descriptor(blob) {
            return Some(descriptor.clone());
        }
        let image_blobs = self.image_blobs.lock().unwrap_or_else(|p| p.into_inner());
        image_blobs.get(blob).map(|(descriptor, _)| descriptor.clone())
    }

    /// For each of `blobs` that a registry source holds, the references that hold it (for
    /// cross-repository mounts).
    pub fn registries_holding(&self, blobs: &[Descriptor]) -> super::upload::HeldBy {
        let mut held_by = super::upload::HeldBy::new();
        for blob in blobs {
            for source in self.sources_of(&blob.digest) {
                if let CacheSource::Registry(reference) = source {
                    held_by.entry(blob.digest).or_default().push(reference);
                }
            }
        }
        held_by
    }

    /// Whether some source holds the blob (asked once per blob; a failure to ask is a
    /// warning and counts as no).
    fn available(&self, layer: &LayerRef) -> bool {
        let blob = descriptor_of(layer);
        if let Some(known) = self.present.lock().unwrap_or_else(|p| p.into_inner()).get(&layer.blob)
        {
            return *known;
        }
        let mut found = false;
        for source in self.sources_of(&layer.blob) {
            match source.has_blob(self.client, &blob) {
                Ok(true) => {
                    found = true;
                    break;
                }
                Ok(false) => {}
                Err(err) => {
                    self.warn(format!("cache {source}: checking layer {}: {err}", layer.blob))
                }
            }
        }
        self.present.lock().unwrap_or_else(|p| p.into_inner()).insert(layer.blob, found);
        found
    }

    /// Makes every layer of `rootfs` real: blobs fetched from the cache sources (even when
    /// a snapshot exists: the records of the steps built on top name the blobs, and the
    /// index only takes records whose blobs are stored), snapshots unpacked. Layers already
    /// real cost two `stat`s.
    pub fn materialize(
        &self,
        rootfs: &Rootfs,
        report: &StepReporter<'_>,
    ) -> Result<(), SessionError> {
        let refs: Vec<LayerRef> = rootfs.layers.iter().map(Layer::to_ref).collect();
        self.fetch_blobs(&refs, report)?;
        for (layer, lazy) in refs.iter().zip(&rootfs.layers) {
            if !lazy.snapshot.is_dir() {
                ensure_snapshot(self.root, layer)?;
            }
        }
        Ok(())
    }

    /// Puts the blobs of `layers` in the store, fetching those that are missing from the
    /// cache sources.
    pub fn fetch_blobs(
        &self,
        layers: &[LayerRef],
        report: &StepReporter<'_>,
    ) -> Result<(), SessionError> {
        let blobs = self.root.blobs();
        let mut missing: Vec<crate::image::Descriptor> = Vec::new();
        for layer in layers.iter().filter(|l| !blobs.contains(&l.blob)) {
            if !missing.iter().any(|m| m.digest == layer.blob) {
                missing.push(descriptor_of(layer));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let total: u64 = missing.iter().map(|l| l.size).sum();
        report.note(format!(
            "pulling {} layer(s), {}, from the cache",
            missing.len(),
            DecimalBytes(total)
        ));
        // As many at once as the registry client downloads in parallel; the first error wins.
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<SessionError>> = Mutex::new(None);
        let workers = self.client.options().parallel_downloads.clamp(1, missing.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while let Some(blob) = missing.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).is_some();
                        if failed {
                            return;
                        }
                        if let Err(err) = self.fetch_blob(blob, report) {
                            failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(err);
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Puts the blob `digest` in the store, fetching it from a cache source that lists it
    /// if it is missing.
    pub fn ensure_blob(
        &self,
        digest: &Digest,
        report: &StepReporter<'_>,
    ) -> Result<(), SessionError> {
        if self.root.blobs().contains(digest) {
            return Ok(());
        }
        let blob = self.descriptor(digest).ok_or(SessionError::NoSource { blob: *digest })?;
        self.fetch_blob(&blob, report)
    }

    fn fetch_blob(
        &self,
        blob: &crate::image::Descriptor,
        report: &StepReporter<'_>,
    ) -> Result<(), SessionError> {
        let lock = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            fetching.entry(blob.digest).or_default().clone()
        };
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let blobs = self.root.blobs();
        if blobs.contains(&blob.digest) {
            return Ok(());
        }
        let id = blob.digest.to_string();
        let mut last = None;
        for source in self.sources_of(&blob.digest) {
            let progress = |done| report.bytes(&id, done, blob.size);
            match source.fetch_blob(self.client, blob, &blobs, &progress) {
                Ok(()) => {
                    self.fetched.lock().unwrap_or_else(|p| p.into_inner()).insert(blob.digest);
                    return Ok(());
                }
                Err(cause) => {
                    last = Some(SessionError::Fetch {
                        blob: blob.digest,
                        source_name: source.to_string(),
                        cause: Box::new(cause),
                    })
                }
            }
        }
        Err(last.unwrap_or(SessionError::NoSource { blob: blob.digest }))
    }

    /// Puts every imported record the build used, whose blobs are all in the store by now,
    /// into the local index (unless it has one for the key). Returns how many.
    pub fn persist(&self) -> Result<usize, CacheError> {
        let index = self.root.records();
        let blobs = self.root.blobs();
        let mut written = 0;
        for used in self.used().all().into_iter().filter(|u| u.imported) {
            let entry = used.entry;
            let local = matches!(index.get(&entry.key), Ok(Some(_)));
            if local || !entry.layers.iter().all(|l| blobs.contains(&l.blob)) {
                continue;
            }
            let record = CacheRecord {
                layers: entry.layers,
                config_delta: serde_json::Value::Null,
                sources: Vec::new(),
                description: entry.description,
                created: entry.created,
                last_used: now_secs(),
            };
            index.put(&entry.key, &record)?;
            written += 1;
        }
        Ok(written)
    }
}

fn descriptor_of(layer: &LayerRef) -> crate::image::Descriptor {
    crate::image::Descriptor::new(&layer.media_type, layer.blob, layer.size)
}

fn diff_ids(rootfs: &Rootfs) -> Vec<Digest> {
    rootfs.layers.iter().map(|l| l.diff_id).collect()
}
