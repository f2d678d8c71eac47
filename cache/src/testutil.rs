//! Builders for unit tests: small images and records in a root.

use crate::digest::Digest;
use crate::index::{CacheKey, CacheRecord, LayerRef};
use crate::layout::Root;
use oci_spec::image::{Descriptor, MediaType};
use std::time::{Duration, UNIX_EPOCH};

pub(crate) fn open_root() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

pub(crate) fn key(n: u8) -> CacheKey {
    CacheKey::from(Digest::of(&[b'k', n]))
}

/// The blobs of an image built by [`image`].
pub(crate) struct TestImage {
    pub(crate) manifest: Digest,
    pub(crate) config: Digest,
    pub(crate) layer: Digest,
    pub(crate) diff_id: Digest,
}

/// Stores a one-layer image (layer content `layer`, stored uncompressed so blob = diff_id)
/// and tags it `reference`.
pub(crate) fn image(root: &Root, reference: &str, layer: &[u8]) -> TestImage {
    let blobs = root.blobs();
    let layer_digest = blobs.put_bytes(layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = blobs.put_bytes(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = blobs.put_bytes(&manifest_bytes).unwrap();
    let descriptor =
        Descriptor::new(MediaType::ImageManifest, manifest_bytes.len() as u64, &manifest_digest);
    root.images().tag(reference, descriptor).unwrap();
    TestImage {
        manifest: manifest_digest,
        config: config_digest,
        layer: layer_digest,
        diff_id: layer_digest,
    }
}

/// Stores a record under `key` whose layers are the given blob contents (diff_id = blob),
/// last used at `last_used` seconds.
pub(crate) fn record(root: &Root, key: &CacheKey, layers: &[&[u8]], last_used: u64) -> CacheRecord {
    let layers = layers
        .iter()
        .map(|content| {
            let blob = root.blobs().put_bytes(content).unwrap();
            LayerRef {
                diff_id: blob,
                blob,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: content.len() as u64,
                created: None,
            }
        })
        .collect();
    let record = CacheRecord {
        layers,
        config_delta: serde_json::json!({}),
        sources: vec![],
        description: format!("step {key}"),
        created: last_used,
        last_used,
    };
    root.records().put(key, &record).unwrap();
    root.records().touch_at(key, UNIX_EPOCH + Duration::from_secs(last_used)).unwrap();
    record
}
