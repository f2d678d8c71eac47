//! What the tagged images keep alive: every blob reachable from `index.json` (manifests,
//! nested indexes, configs, layers) and the layer stacks (diff_ids) of their configs.
//!
//! Only blobs reached in a manifest position (an `index.json` entry or an index's
//! `manifests[]`) are parsed as manifests, and only up to [`MAX_MANIFEST`] bytes, so memory
//! stays bounded; configs are read up to [`MAX_CONFIG`] bytes for their `rootfs.diff_ids`.
//! Both OCI and Docker schema 2 media types are handled, since the JSON shapes agree.
//! Children of a multi-platform index that were never pulled are simply absent: the walk
//! records them as missing and goes on.

use crate::digest::Digest;
use crate::error::Result;
use crate::images::ref_name;
use crate::layout::Root;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;

/// Largest blob parsed as a manifest or index (registries use 4 MiB).
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// Largest blob parsed as an image config.
pub const MAX_CONFIG: u64 = 16 * 1024 * 1024;

/// The outcome of walking from `index.json`.
#[derive(Debug, Default)]
pub(crate) struct Reachable {
    /// Blobs reachable and present.
    pub(crate) blobs: BTreeSet<Digest>,
    /// Each image config's `rootfs.diff_ids`.
    pub(crate) layer_stacks: Vec<Vec<Digest>>,
    /// Each index.json entry's name (tag, or manifest digest when untagged) and its blobs.
    pub(crate) per_image: Vec<(String, BTreeSet<Digest>)>,
    /// Blobs referenced but absent, with the tag (or digest) of the image that needs them.
    pub(crate) missing: Vec<(String, Digest)>,
}

/// Walks every `index.json` entry (tagged or not) down to its layers.
pub(crate) fn reachable(root: &Root) -> Result<Reachable> {
    let index = root.images().read()?;
    let mut out = Reachable::default();
    for entry in &index.entries {
        let Ok(digest) = Digest::try_from(entry.digest()) else { continue };
        let name = ref_name(entry).map_or_else(|| digest.to_string(), str::to_owned);
        let mut one = Reachable::default();
        walk_manifest(root, &name, digest, &mut one);
        out.blobs.extend(one.blobs.iter().copied());
        out.layer_stacks.extend(one.layer_stacks);
        out.missing.extend(one.missing);
        out.per_image.push((name, one.blobs));
    }
    Ok(out)
}

fn walk_manifest(root: &Root, name: &str, digest: Digest, out: &mut Reachable) {
    let Some(doc) = read_json(root, name, digest, MAX_MANIFEST, out) else { return };
    if let Some(children) = doc.get("manifests").and_then(Value::as_array) {
        for child in children {
            if let Some(child) = descriptor_digest(child) {
                walk_manifest(root, name, child, out);
            }
        }
    }
    if let Some(config) = doc.get("config").and_then(descriptor_digest)
        && let Some(config) = read_json(root, name, config, MAX_CONFIG, out)
    {
        let diff_ids = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().and_then(|s| Digest::parse(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        out.layer_stacks.push(diff_ids);
    }
    for list in ["layers", "blobs"] {
        for layer in doc.get(list).and_then(Value::as_array).into_iter().flatten() {
            if let Some(layer) = descriptor_digest(layer) {
                mark(root, name, layer, out);
            }
        }
    }
}

/// Marks `digest` reachable; returns whether it is present and was not marked before.
fn mark(root: &Root, name: &str, digest: Digest, out: &mut Reachable) -> bool {
    if !root.blobs().contains(&digest) {
        out.missing.push((name.to_owned(), digest));
        return false;
    }
    out.blobs.insert(digest)
}

fn read_json(
    root: &Root,
    name: &str,
    digest: Digest,
    limit: u64,
    out: &mut Reachable,
) -> Option<Value> {
    if !mark(root, name, digest, out) {
        return None;
    }
    let size = root.blobs().size(&digest).ok()?;
    if size > limit {
        return None;
    }
    // Not digest-checked: a damaged manifest that still parses keeps its children alive
    // (verify reports the damage); one that does not parse keeps only itself.
    let mut bytes = Vec::new();
    root.blobs().open(&digest).ok()?.take(limit).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn descriptor_digest(value: &Value) -> Option<Digest> {
    value.get("digest")?.as_str().and_then(|text| Digest::parse(text).ok())
}
