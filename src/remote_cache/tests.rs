//! The pieces together, without a registry: a cache written into a directory
//! ([`layout_writer`]), read back ([`import`]), hit lazily and made real ([`session`]), and
//! the records `mode=min|max` choose ([`export::select`]).

use super::export::{ExportMode, final_image_steps, select};
use super::format::{CacheEntry, encode};
use super::*;
use crate::image::layout::LayoutLocation;
use crate::image::manifest::OCI_LAYER;
use crate::registry::{ClientOptions, RegistryClient};
use crate::solver::progress::{Event, ProgressSink, StepReporter};
use crate::solver::rootfs::Rootfs;
use kiln_cache::{CacheKey, Digest, LayerRef, Root};
use kiln_frontend::graph::StepId;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl ProgressSink for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn warnings(&self) -> Vec<String> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message { text } if text.starts_with("WARNING: ") => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

/// An uncompressed layer holding `/hello.txt`.
fn layer_tar(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, "hello.txt", content.as_bytes()).unwrap();
    builder.into_inner().unwrap()
}

/// A state root that made one record (`origin`), its cache written to `dir`, and the
/// entry exported.
struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    origin: Root,
    cache_dir: std::path::PathBuf,
    entry: CacheEntry,
    fresh: Root,
}

fn fixture() -> Fixture {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let origin = Root::open(dirs[0].path()).unwrap();
    let tar = layer_tar("hi\n");
    let blob = origin.blobs().put_bytes(&tar).unwrap();
    let entry = CacheEntry {
        key: CacheKey::from(Digest::of(b"step")),
        layers: vec![LayerRef {
            diff_id: blob,
            blob,
            media_type: OCI_LAYER.into(),
            size: tar.len() as u64,
            created: Some("2024-05-06T07:08:09Z".into()),
        }],
        description: "RUN echo hi > /hello.txt".into(),
        created: 1_700_000_000,
    };
    let cache_dir = dirs[1].path().join("cache");
    let artifact = encode(std::slice::from_ref(&entry), &[]).unwrap();
    layout_writer::write(&cache_dir, "latest", &artifact, &origin.blobs(), &|_| {}).unwrap();
    let fresh = Root::open(dirs[2].path()).unwrap();
    Fixture { _dirs: dirs, origin, cache_dir, entry, fresh }
}

fn local(dir: &Path, tag: &str) -> CacheSource {
    CacheSource::Local(LayoutLocation { dir: dir.to_path_buf(), tag: tag.into(), digest: None })
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
}

fn load(sources: &[CacheSource]) -> (ImportedCache, Vec<String>) {
    let mut warnings = Vec::new();
    let imported = ImportedCache::load(sources, &client(), &mut |w| warnings.push(w));
    (imported, warnings)
}

#[test]
fn a_directory_cache_reads_back() {
    let f = fixture();
    let (imported, warnings) = load(&[local(&f.cache_dir, "latest")]);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(imported.len(), 1);
    let (source, entry) = imported.get(&f.entry.key).unwrap();
    assert_eq!(source, &local(&f.cache_dir, "latest"));
    assert_eq!(entry, &f.entry);
    assert_eq!(imported.sources_of(&f.entry.layers[0].blob), [&local(&f.cache_dir, "latest")]);

    let missing = f.cache_dir.join("missing");
    let (imported, warnings) = load(&[local(&missing, "latest")]);
    assert!(imported.is_empty());
    assert_eq!(
        warnings,
        [format!(
            "cannot import cache from {0}: {0} is not an OCI image layout: no such directory; building without it",
            missing.display()
        )]
    );
}

#[test]
fn writing_under_another_tag_keeps_the_first_and_rewriting_replaces() {
    let f = fixture();
    let mut second = f.entry.clone();
    second.key = CacheKey::from(Digest::of(b"other step"));
    let artifact = encode(&[second.clone()], &[]).unwrap();
    let written = Mutex::new(Vec::new());
    let on_write = |d: &crate::image::Descriptor| written.lock().unwrap().push(d.digest);
    layout_writer::write(&f.cache_dir, "v2", &artifact, &f.origin.blobs(), &on_write).unwrap();
    assert_eq!(
        written.into_inner().unwrap(),
        [artifact.config_digest, artifact.manifest_digest],
        "the layer was there already"
    );
    let (imported, _) = load(&[local(&f.cache_dir, "latest"), local(&f.cache_dir, "v2")]);
    assert_eq!(imported.len(), 2);
    layout_writer::write(&f.cache_dir, "latest", &artifact, &f.origin.blobs(), &|_| {}).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(f.cache_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let (imported, _) = load(&[local(&f.cache_dir, "latest")]);
    assert!(imported.get(&f.entry.key).is_none(), "latest now names the second cache");
}

#[test]
fn a_damaged_blob_fails_the_write_and_leaves_the_index_alone() {
    let f = fixture();
    let index_before = fs::read(f.cache_dir.join("index.json")).unwrap();
    let mut entry = f.entry.clone();
    entry.key = CacheKey::from(Digest::of(b"third"));
    entry.layers[0].size += 1; // the stored blob is shorter than the descriptor says
    let artifact = encode(&[entry], &[]).unwrap();
    let target = tempfile::tempdir().unwrap();
    let err = layout_writer::write(target.path(), "latest", &artifact, &f.origin.blobs(), &|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("is damaged"), "{err}");
    assert!(!target.path().join("index.json").exists());
    assert_eq!(fs::read(f.cache_dir.join("index.json")).unwrap(), index_before);
}

#[test]
fn a_remote_hit_is_lazy_until_materialized_then_kept_locally() {
    let f = fixture();
    let (imported, _) = load(&[local(&f.cache_dir, "latest")]);
    let progress = Recorder::default();
    let client = client();
    let session = CacheSession::new(&f.fresh, &client, &progress, imported);
    let layers = session.lookup(StepId(3), &f.entry.key).expect("a hit");
    let blob = f.entry.layers[0].blob;
    assert!(!f.fresh.blobs().contains(&blob), "nothing fetched on a hit");
    assert!(!layers[0].snapshot.exists(), "nothing unpacked on a hit");
    assert_eq!(layers[0].created, f.entry.layers[0].created);
    let used = session.used().all();
    assert_eq!((used.len(), used[0].step, used[0].imported), (1, StepId(3), true));
    assert_eq!(session.persist().unwrap(), 0, "nothing to keep before the blob is here");

    let rootfs = Rootfs { key: f.entry.key.clone(), layers };
    session.materialize(&rootfs, &StepReporter::new(&progress, 4)).unwrap();
    assert!(f.fresh.blobs().contains(&blob));
    assert_eq!(fs::read_to_string(rootfs.layers[0].snapshot.join("hello.txt")).unwrap(), "hi\n");
    assert_eq!(session.fetched().into_iter().collect::<Vec<_>>(), [blob]);

    assert_eq!(session.persist().unwrap(), 1);
    let record = f.fresh.records().get(&f.entry.key).unwrap().expect("kept locally");
    assert_eq!(record.layers, f.entry.layers);
    assert_eq!(session.persist().unwrap(), 0, "kept once");
    assert_eq!(progress.warnings(), Vec::<String>::new());
}

#[test]
fn a_record_whose_blob_is_gone_is_a_miss_and_a_warning() {
    let f = fixture();
    let (imported, _) = load(&[local(&f.cache_dir, "latest")]);
    let blob = f.entry.layers[0].blob;
    fs::remove_file(f.cache_dir.join("blobs/sha256").join(blob.hex())).unwrap();
    let progress = Recorder::default();
    let client = client();
    let session = CacheSession::new(&f.fresh, &client, &progress, imported);
    assert!(session.lookup(StepId(1), &f.entry.key).is_none());
    assert_eq!(
        progress.warnings(),
        [format!(
            "WARNING: cache {}: layer {blob} of \"RUN echo hi > /hello.txt\" is gone; running the step instead",
            f.cache_dir.display()
        )]
    );
    assert!(session.used().all().is_empty());
    let err = session.ensure_blob(&blob, &StepReporter::new(&progress, 1)).unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot fetch layer {blob} from cache")), "{err}");
}

fn graph(dockerfile: &str) -> kiln_frontend::graph::Graph {
    use kiln_frontend::lower::{LowerOptions, OfflineResolver, lower};
    let tree = kiln_frontend::syntax::parse_bytes(dockerfile.as_bytes()).unwrap();
    let dockerfile = kiln_frontend::instructions::parse_dockerfile(&tree).unwrap();
    lower(&dockerfile, &LowerOptions::default(), &OfflineResolver).unwrap()
}

#[test]
fn mode_min_takes_the_final_image_chain_and_mode_max_everything() {
    let graph = graph(
        "FROM alpine AS builder\nRUN make\nFROM builder AS tested\nRUN make test\n\
         FROM alpine\nCOPY --from=tested /out /out\nRUN --mount=from=builder,target=/b true\n",
    );
    let names = |steps: Vec<StepId>| -> Vec<String> {
        steps.into_iter().map(|s| graph.step(s).meta.name.clone()).collect()
    };
    let chain: Vec<StepId> = final_image_steps(&graph).into_iter().collect();
    assert!(matches!(graph.step(chain[0]).op, kiln_frontend::graph::Op::Image { .. }));
    assert_eq!(
        names(chain[1..].to_vec()),
        [
            "[stage-2 2/3] COPY --from=tested /out /out",
            "[stage-2 3/3] RUN --mount=from=builder,target=/b true"
        ],
        "the stages copied or mounted from are not in the chain"
    );
    let on_stage = self::graph("FROM alpine AS base\nRUN make\nFROM base\nRUN make test\n");
    let stacked: Vec<String> = final_image_steps(&on_stage)
        .into_iter()
        .map(|s| on_stage.step(s).meta.name.clone())
        .collect();
    assert_eq!(stacked.len(), 3, "a stage built FROM another takes its layers: {stacked:?}");

    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    let client = client();
    let progress = Recorder::default();
    let session = CacheSession::new(&root, &client, &progress, ImportedCache::default());
    let record = kiln_cache::CacheRecord {
        layers: vec![],
        config_delta: serde_json::Value::Null,
        sources: vec![],
        description: String::new(),
        created: 0,
        last_used: 0,
    };
    for step in &graph.steps {
        session.note_local(step.id, &CacheKey::from(Digest::of(&[step.id.0 as u8])), &record);
    }
    let exported = |mode| {
        let (entries, _) = select(&graph, session.used(), mode);
        entries.into_iter().map(|e| e.key).collect::<Vec<_>>()
    };
    let keys = |steps: &[StepId]| -> Vec<CacheKey> {
        steps.iter().map(|s| CacheKey::from(Digest::of(&[s.0 as u8]))).collect()
    };
    assert_eq!(exported(ExportMode::Min), keys(&chain));
    let all: Vec<StepId> = graph.steps.iter().map(|s| s.id).collect();
    assert_eq!(exported(ExportMode::Max), keys(&all));
}
