//! The cache artifact's documents: encoding cache entries into a manifest and a config, and
//! decoding (and checking) what a registry or a directory hands back.
//!
//! Manifest (canonical JSON, see [`crate::image::canonical`]):
//!
//! | field          | value                                                        |
//! |----------------|--------------------------------------------------------------|
//! | `schemaVersion`| `2`                                                          |
//! | `mediaType`    | `application/vnd.oci.image.manifest.v1+json`                 |
//! | `artifactType` | [`ARTIFACT_TYPE`]                                            |
//! | `config`       | descriptor of the config, media type [`CONFIG_MEDIA_TYPE`]   |
//! | `layers`       | one descriptor per layer blob, media types as stored         |
//!
//! Config ([`CONFIG_MEDIA_TYPE`], canonical JSON):
//!
//! | field        | value                                                                 |
//! |--------------|-----------------------------------------------------------------------|
//! | `format`     | [`FORMAT_VERSION`]; another number is "incompatible", never guessed at |
//! | `keyVersion` | the [`KEY_VERSION`] the keys were computed with                       |
//! | `layers[i]`  | `{"blob", "diffId"}` of manifest layer `i` (`blob` repeats its digest) |
//! | `records[]`  | `{"key", "description", "created", "layers": [{"layer", "created"?}]}` |
//! | `copySources[]` | `{"key", "digest", "sources": [{"path", "digest"}]}` (may be absent) |
//!
//! `records[].layers[].layer` indexes `layers`; `created` there is the RFC 3339 time the
//! step first made that layer (absent for base image layers); `records[].created` is the
//! record's creation time in seconds since the Unix epoch.
//!
//! `copySources` remembers what a `COPY --from` read from another stage: `key` is
//! [`copy_source_key`] of the copy and the exact layers of the stage it read (their
//! diff_ids), `digest` the digest of the selected files that the copy's cache key covers,
//! `sources` the same per source as written. With it, a build whose stage came from the
//! cache computes the copy's key without downloading the stage's layers. It is sound
//! because diff_ids fix the files exactly: the same layers give the same digest.
//!
//! Invariants of a decoded cache: every key is 64 lowercase hex characters and appears once;
//! every layer index is in range; every blob is a sha256 digest with a layer media type kiln
//! can unpack, and equals the manifest's descriptor at the same position; every `created` is
//! RFC 3339. Anything else is a [`FormatError`] and the whole cache is ignored. Encoding is
//! deterministic: entries sorted by key, layers in order of first use.

use crate::image::Timestamp;
use crate::image::canonical::to_canonical_bytes;
use crate::image::manifest::{Descriptor, OCI_INDEX, OCI_MANIFEST, layer_compression};
use crate::solver::key::KEY_VERSION;
use kiln_cache::{CacheKey, Digest, LayerRef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The media type of the config: what marks a manifest as a kiln cache.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";
/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.cache.v1";
/// The version of this layout; bumped when it changes in a way older readers cannot follow.
pub const FORMAT_VERSION: u64 = 1;
/// The largest config read (a few hundred bytes per record).
pub const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;
/// BuildKit's cache config media type, recognised to say what it is.
const BUILDKIT_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";

/// One cache record as it travels: the key and what the local index keeps for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: CacheKey,
    /// The step's whole layer chain, bottom first.
    pub layers: Vec<LayerRef>,
    pub description: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// The digest of the files a `COPY --from` read from a stage (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySourceDigest {
    pub key: CacheKey,
    /// What the copy's cache key covers (`sha256:<hex>`).
    pub digest: Digest,
    /// Per source as written, its part of the digest.
    pub sources: Vec<(String, Digest)>,
}

/// The key under which a copy's source digest is remembered: the copy itself (every field
/// that could change what it selects) and the diff_ids of the filesystem it reads.
pub fn copy_source_key(op: &kiln_frontend::graph::CopyOp, diff_ids: &[Digest]) -> CacheKey {
    use crate::solver::key::{KeyHasher, copy_key, scratch_key};
    let mut h = KeyHasher::new("copy-source");
    h.key(&copy_key(op, &scratch_key(), ""));
    h.strs(&diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>());
    h.finish()
}

/// Why a cache could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("invalid cache manifest: {0}")]
    Manifest(String),
    #[error("it is a BuildKit cache, which kiln cannot use")]
    BuildKit,
    #[error("not a kiln cache: its config has media type {0:?} (expected {CONFIG_MEDIA_TYPE})")]
    NotKilnCache(String),
    #[error("cache format {found} is not one this kiln reads (it reads format {FORMAT_VERSION})")]
    Format { found: u64 },
    #[error(
        "the cache keys were computed as {found:?} and this kiln computes {KEY_VERSION:?} (the cache was written by another kiln version)"
    )]
    KeyVersion { found: String },
    #[error("invalid cache config: {0}")]
    Config(String),
    #[error("cannot encode the cache {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    #[error("layer {blob} is named with two diff_ids, {first} and {second}")]
    ConflictingDiffIds { blob: Digest, first: Digest, second: Digest },
}

/// The documents of one cache, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// The manifest's layer descriptors, in order.
    pub layers: Vec<Descriptor>,
}

impl Artifact {
    pub fn manifest_descriptor(&self) -> Descriptor {
        Descriptor::new(OCI_MANIFEST, self.manifest_digest, self.manifest.len() as u64)
    }

    pub fn config_descriptor(&self) -> Descriptor {
        Descriptor::new(CONFIG_MEDIA_TYPE, self.config_digest, self.config.len() as u64)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc<'a> {
    schema_version: u32,
    media_type: &'a str,
    artifact_type: &'a str,
    config: Descriptor,
    layers: &'a [Descriptor],
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigDoc {
    format: u64,
    key_version: String,
    layers: Vec<ConfigLayer>,
    records: Vec<ConfigRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    copy_sources: Vec<ConfigCopySource>,
}

#[derive(Serialize, Deserialize)]
struct ConfigCopySource {
    key: String,
    digest: Digest,
    sources: Vec<ConfigSourcePart>,
}

#[derive(Serialize, Deserialize)]
struct ConfigSourcePart {
    path: String,
    digest: Digest,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigLayer {
    blob: Digest,
    diff_id: Digest,
}

#[derive(Serialize, Deserialize)]
struct ConfigRecord {
    key: String,
    description: String,
    created: u64,
    layers: Vec<RecordLayer>,
}

#[derive(Serialize, Deserialize)]
struct RecordLayer {
    layer: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

/// Encodes `entries` and `copy_sources` (any order; a key given twice keeps its first).
pub fn encode(
    entries: &[CacheEntry],
    copy_sources: &[CopySourceDigest],
) -> Result<Artifact, FormatError> {
    let mut by_key: BTreeMap<&CacheKey, &CacheEntry> = BTreeMap::new();
    for entry in entries {
        by_key.entry(&entry.key).or_insert(entry);
    }
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut config_layers: Vec<ConfigLayer> = Vec::new();
    let mut positions: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut records = Vec::with_capacity(by_key.len());
    for (key, entry) in by_key {
        let mut record_layers = Vec::with_capacity(entry.layers.len());
        for layer in &entry.layers {
            let position = match positions.get(&layer.blob) {
                Some(&position) => {
                    let first = config_layers[position].diff_id;
                    if first != layer.diff_id {
                        return Err(FormatError::ConflictingDiffIds {
                            blob: layer.blob,
                            first,
                            second: layer.diff_id,
                        });
                    }
                    position
                }
                None => {
                    layers.push(Descriptor::new(&layer.media_type, layer.blob, layer.size));
                    config_layers.push(ConfigLayer { blob: layer.blob, diff_id: layer.diff_id });
                    positions.insert(layer.blob, layers.len() - 1);
                    layers.len() - 1
                }
            };
            record_layers.push(RecordLayer { layer: position, created: layer.created.clone() });
        }
        records.push(ConfigRecord {
            key: key.to_string(),
            description: entry.description.clone(),
            created: entry.created,
            layers: record_layers,
        });
    }
    let mut copy_by_key: BTreeMap<&CacheKey, &CopySourceDigest> = BTreeMap::new();
    for copy in copy_sources {
        copy_by_key.entry(&copy.key).or_insert(copy);
    }
    let copy_sources = copy_by_key
        .into_values()
        .map(|copy| ConfigCopySource {
            key: copy.key.to_string(),
            digest: copy.digest,
            sources: copy
                .sources
                .iter()
                .map(|(path, digest)| ConfigSourcePart { path: path.clone(), digest: *digest })
                .collect(),
        })
        .collect();
    let config = ConfigDoc {
        format: FORMAT_VERSION,
        key_version: KEY_VERSION.to_string(),
        layers: config_layers,
        records,
        copy_sources,
    };
    let config = to_canonical_bytes(&config)
        .map_err(|source| FormatError::Encode { what: "config", source })?;
    let config_digest = Digest::of(&config);
    let manifest = ManifestDoc {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type: ARTIFACT_TYPE,
        config: Descriptor::new(CONFIG_MEDIA_TYPE, config_digest, config.len() as u64),
        layers: &layers,
    };
    let manifest = to_canonical_bytes(&manifest)
        .map_err(|source| FormatError::Encode { what: "manifest", source })?;
    Ok(Artifact { manifest_digest: Digest::of(&manifest), manifest, config, config_digest, layers })
}

/// A cache manifest's typed view: where its config is and what its layers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Reads manifest bytes (already checked against their digest by the caller), refusing
/// anything but a kiln cache manifest.
pub fn parse_manifest(bytes: &[u8]) -> Result<CacheManifest, FormatError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<Vec<serde_json::Value>>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Doc {
        config: Descriptor,
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Manifest(e.to_string()))?;
    if let Some(entries) = &probe.manifests {
        let buildkit = entries.iter().any(|e| e["mediaType"] == BUILDKIT_CONFIG);
        return Err(if buildkit {
            FormatError::BuildKit
        } else {
            FormatError::Manifest(format!("it is an image index ({OCI_INDEX}), not a manifest"))
        });
    }
    let config_type = probe.config.as_ref().and_then(|c| c["mediaType"].as_str());
    match config_type {
        Some(CONFIG_MEDIA_TYPE) => {}
        Some(BUILDKIT_CONFIG) => return Err(FormatError::BuildKit),
        Some(other) => return Err(FormatError::NotKilnCache(other.to_string())),
        None => return Err(FormatError::Manifest("it has no config".into())),
    }
    if let Some(media_type) = probe.media_type.as_deref().filter(|m| *m != OCI_MANIFEST) {
        return Err(FormatError::Manifest(format!("unexpected media type {media_type:?}")));
    }
    let doc: Doc =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Manifest(e.to_string()))?;
    for layer in &doc.layers {
        layer_compression(&layer.media_type)
            .map_err(|e| FormatError::Manifest(format!("layer {}: {e}", layer.digest)))?;
    }
    Ok(CacheManifest { config: doc.config, layers: doc.layers })
}

/// What a cache holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    pub entries: Vec<CacheEntry>,
    pub copy_sources: Vec<CopySourceDigest>,
}

/// Decodes a config (already checked against `manifest.config`), checking it against the
/// manifest (see the module docs).
pub fn decode(manifest: &CacheManifest, config: &[u8]) -> Result<Decoded, FormatError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        format: Option<u64>,
        key_version: Option<String>,
    }
    let invalid = |reason: String| FormatError::Config(reason);
    let probe: Probe = serde_json::from_slice(config).map_err(|e| invalid(e.to_string()))?;
    match probe.format {
        Some(FORMAT_VERSION) => {}
        Some(found) => return Err(FormatError::Format { found }),
        None => return Err(invalid("it has no format".into())),
    }
    if let Some(found) = probe.key_version.filter(|v| v != KEY_VERSION) {
        return Err(FormatError::KeyVersion { found });
    }
    let doc: ConfigDoc = serde_json::from_slice(config).map_err(|e| invalid(e.to_string()))?;
    if doc.layers.len() != manifest.layers.len() {
        return Err(invalid(format!(
            "it describes {} layers and the manifest lists {}",
            doc.layers.len(),
            manifest.layers.len()
        )));
    }
    for (i, (described, listed)) in doc.layers.iter().zip(&manifest.layers).enumerate() {
        if described.blob != listed.digest {
            return Err(invalid(format!(
                "layer {i} is {} in the config and {} in the manifest",
                described.blob, listed.digest
            )));
        }
    }
    let mut seen = BTreeSet::new();
    let mut entries = Vec::with_capacity(doc.records.len());
    for record in doc.records {
        let key = CacheKey::new(&record.key).map_err(|e| invalid(e.to_string()))?;
        if !seen.insert(key.clone()) {
            return Err(invalid(format!("key {key} appears twice")));
        }
        let layers = record
            .layers
            .into_iter()
            .map(|l| {
                let (Some(described), Some(listed)) =
                    (doc.layers.get(l.layer), manifest.layers.get(l.layer))
                else {
                    return Err(invalid(format!(
                        "record {key} names layer {}, out of range",
                        l.layer
                    )));
                };
                if let Some(created) = &l.created
                    && Timestamp::parse_rfc3339(created).is_none()
                {
                    return Err(invalid(format!("record {key}: invalid time {created:?}")));
                }
                Ok(LayerRef {
                    diff_id: described.diff_id,
                    blob: listed.digest,
                    media_type: listed.media_type.clone(),
                    size: listed.size,
                    created: l.created,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        entries.push(CacheEntry {
            key,
            layers,
            description: record.description,
            created: record.created,
        });
    }
    let copy_sources = doc
        .copy_sources
        .into_iter()
        .map(|copy| {
            Ok(CopySourceDigest {
                key: CacheKey::new(&copy.key).map_err(|e| invalid(e.to_string()))?,
                digest: copy.digest,
                sources: copy.sources.into_iter().map(|part| (part.path, part.digest)).collect(),
            })
        })
        .collect::<Result<Vec<_>, FormatError>>()?;
    Ok(Decoded { entries, copy_sources })
}

#[cfg(test)]
mod tests;
