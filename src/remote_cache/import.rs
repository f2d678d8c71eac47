//! `--cache-from`: reading cache manifests and configs (never layers) from registries and
//! OCI layout directories, and merging them into one [`ImportedCache`].
//!
//! Invariants: a source that cannot be read — missing, unreachable, refused, corrupt, another
//! format or key version — contributes nothing and is reported once through `warn`; bytes
//! are checked against the digest that named them before they are parsed (the registry
//! client and [`Layout`] do that), and the documents against each other ([`format`](mod@format)).
//! When two sources hold the same key, the one given first wins; a blob may be fetched from
//! any source that lists it.

use super::format::{
    self, CacheEntry, CacheManifest, CopySourceDigest, Decoded, FormatError, MAX_CONFIG_BYTES,
};
use crate::image::Descriptor;
use crate::image::layout::{BlobReader, Layout, LayoutError, LayoutLocation};
use crate::registry::manifest::MAX_MANIFEST_BYTES;
use crate::registry::{Reference, RegistryClient, RegistryError};
use kiln_cache::{CacheKey, Digest};
use std::collections::HashMap;
use std::fmt;

/// Where a cache is read from (`--cache-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSource {
    /// `type=registry,ref=REF`.
    Registry(Reference),
    /// `type=local,src=DIR[,tag=TAG][,digest=DIGEST]`.
    Local(LayoutLocation),
}

impl fmt::Display for CacheSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheSource::Registry(reference) => write!(f, "{reference}"),
            CacheSource::Local(location) => write!(f, "{}", location.dir.display()),
        }
    }
}

/// Why one source could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// The records of every `--cache-from` that could be read.
#[derive(Debug, Default)]
pub struct ImportedCache {
    sources: Vec<CacheSource>,
    /// Each key's entry and the source it came from (an index into `sources`).
    entries: HashMap<CacheKey, (usize, CacheEntry)>,
    /// Each blob's descriptor and the sources that list it, in `--cache-from` order.
    blobs: HashMap<Digest, (Descriptor, Vec<usize>)>,
    /// Digests of what copies read from other stages, by [`format::copy_source_key`].
    copy_sources: HashMap<CacheKey, CopySourceDigest>,
}

impl ImportedCache {
    /// Reads every source; those that fail are reported through `warn` and skipped.
    pub fn load(
        sources: &[CacheSource],
        client: &RegistryClient,
        warn: &mut dyn FnMut(String),
    ) -> ImportedCache {
        let mut imported = ImportedCache::default();
        for source in sources {
            match read(source, client) {
                Ok((manifest, decoded)) => imported.add(source.clone(), &manifest, decoded),
                Err(err) => {
                    warn(format!("cannot import cache from {source}: {err}; building without it"))
                }
            }
        }
        imported
    }

    /// Adds one decoded cache.
    pub fn add(&mut self, source: CacheSource, manifest: &CacheManifest, decoded: Decoded) {
        let index = self.sources.len();
        self.sources.push(source);
        for layer in &manifest.layers {
            let (_, listed) =
                self.blobs.entry(layer.digest).or_insert_with(|| (layer.clone(), Vec::new()));
            if !listed.contains(&index) {
                listed.push(index);
            }
        }
        for entry in decoded.entries {
            self.entries.entry(entry.key.clone()).or_insert((index, entry));
        }
        for copy in decoded.copy_sources {
            self.copy_sources.entry(copy.key.clone()).or_insert(copy);
        }
    }

    /// The remembered digest of a copy's source (see [`format::copy_source_key`]).
    pub fn copy_source(&self, key: &CacheKey) -> Option<&CopySourceDigest> {
        self.copy_sources.get(key)
    }

    /// The imported entry for `key`, and the source it came from.
    pub fn get(&self, key: &CacheKey) -> Option<(&CacheSource, &CacheEntry)> {
        self.entries.get(key).map(|(source, entry)| (&self.sources[*source], entry))
    }

    /// The sources that hold `blob`, first given first.
    pub fn sources_of(&self, blob: &Digest) -> Vec<&CacheSource> {
        self.blobs.get(blob).into_iter().flat_map(|(_, s)| s).map(|i| &self.sources[*i]).collect()
    }

    /// The descriptor of an imported blob.
    pub fn descriptor(&self, blob: &Digest) -> Option<&Descriptor> {
        self.blobs.get(blob).map(|(descriptor, _)| descriptor)
    }

    /// How many records were imported.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads one source's manifest and config.
pub fn read(
    source: &CacheSource,
    client: &RegistryClient,
) -> Result<(CacheManifest, Decoded), ImportError> {
    let (manifest, config) = match source {
        CacheSource::Registry(reference) => {
            let fetched = client.get_manifest(reference)?;
            let manifest = format::parse_manifest(&fetched.bytes)?;
            let descriptor = super::fetch::registry_descriptor(&manifest.config);
            let config = client.fetch_blob_bytes(reference, &descriptor, MAX_CONFIG_BYTES)?;
            (manifest, config)
        }
        CacheSource::Local(location) => {
            let layout = Layout::open(&location.dir)?;
            let digest = layout.find(location)?;
            let bytes = layout.read_verified(&digest, MAX_MANIFEST_BYTES)?;
            let manifest = format::parse_manifest(&bytes)?;
            let config_digest = super::fetch::registry_digest(&manifest.config.digest);
            let config = layout.read_verified(&config_digest, MAX_CONFIG_BYTES)?;
            if config.len() as u64 != manifest.config.size {
                return Err(FormatError::Manifest(format!(
                    "the config has {} bytes, not the {} its descriptor says",
                    config.len(),
                    manifest.config.size
                ))
                .into());
            }
            (manifest, config)
        }
    };
    let decoded = format::decode(&manifest, &config)?;
    Ok((manifest, decoded))
}
