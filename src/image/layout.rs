//! Reading images out of OCI image layouts on disk: a layout named by
//! `--build-context NAME=oci-layout://DIR[:TAG][@DIGEST]`, and kiln's own store (which is
//! one, see the `kiln-cache` crate).
//!
//! ```text
//! DIR/
//! ├── oci-layout            {"imageLayoutVersion":"1.0.0"}
//! ├── index.json            entries (manifests or indexes), named by annotations:
//! │                         io.containerd.image.name (full name) or
//! │                         org.opencontainers.image.ref.name (a tag)
//! └── blobs/<alg>/<hex>     every manifest, index, config and layer
//! ```
//!
//! Finding an image follows BuildKit (`client/ociindex`): with a digest, that digest; else
//! the entry whose `io.containerd.image.name`, then whose `org.opencontainers.image.ref.name`,
//! equals the tag (default `latest`); else the only entry when there is just one. An index
//! is narrowed to the wanted platform with containerd's rules
//! ([`select_manifest`]).
//!
//! Invariants: nothing read from a layout is trusted. Manifests, indexes and configs are read
//! with a size limit and hashed against the digest that named them before they are parsed;
//! layer blobs are hashed and counted while they stream into kiln's store
//! ([`Layout::import_blob`]), so a damaged layout never puts a wrong blob there. Blob paths
//! are built only from validated digests, so `index.json` cannot name a file outside
//! `blobs/`. Only sha256 blobs can enter kiln's store.

use crate::registry::digest::Digest;
use crate::registry::image_config::{ImageConfig, MAX_CONFIG_BYTES};
use crate::registry::manifest::{
    DOCKER_CONFIG, Descriptor, ImageIndex, ImageManifest, MAX_MANIFEST_BYTES, ManifestError,
    ManifestKind, OCI_CONFIG, parse_manifest,
};
use crate::registry::platform_select::{PlatformSelectError, select_manifest};
use kiln_cache::{BlobStore, CacheError};
use kiln_frontend::platform::Platform;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How deep indexes may nest (an index entry pointing at another index).
const MAX_INDEX_DEPTH: usize = 4;
/// Largest `index.json` read (it lists one small entry per tag).
const MAX_INDEX_JSON_BYTES: u64 = 16 * 1024 * 1024;
/// containerd's annotation for an image's full name.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a tag.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an image could not be read from a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{} is not an OCI image layout: {reason}", dir.display())]
    NotALayout { dir: PathBuf, reason: String },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("invalid {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("no image tagged {tag:?} in OCI layout {} (tags: {})", dir.display(), list(tags))]
    TagNotFound { dir: PathBuf, tag: String, tags: Vec<String> },
    #[error("invalid digest {text:?} in oci-layout reference: {reason}")]
    BadDigest { text: String, reason: String },
    #[error("blob {digest} is not in {}", dir.display())]
    BlobMissing { dir: PathBuf, digest: Digest },
    #[error("blob {digest} in {} is damaged: {reason}", dir.display())]
    BlobDamaged { dir: PathBuf, digest: Digest, reason: String },
    #[error("blob {digest} in kiln's store is damaged (run `kiln cache verify`)")]
    StoreBlobDamaged { digest: Digest },
    #[error("manifest {digest} of {name}: {source}")]
    Manifest { name: String, digest: Digest, source: ManifestError },
    #[error(transparent)]
    Platform(#[from] PlatformSelectError),
    #[error("image config {digest} of {name}: {source}")]
    Config { name: String, digest: Digest, source: serde_json::Error },
    #[error("blob {digest} uses an algorithm kiln's store does not keep (only sha256)")]
    UnsupportedAlgorithm { digest: Digest },
    #[error("cannot store blob {digest}: {source}")]
    Store { digest: Digest, source: CacheError },
}

fn list(tags: &[String]) -> String {
    if tags.is_empty() { "none".to_string() } else { tags.join(", ") }
}

/// `DIR[:TAG][@DIGEST]` as given after `oci-layout://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutLocation {
    pub dir: PathBuf,
    /// `latest` when not given.
    pub tag: String,
    pub digest: Option<Digest>,
}

impl LayoutLocation {
    /// Splits at the first `@` (the digest), then at the last `:` not followed by a `/`
    /// (the tag), so directories with colons in their parent path still work.
    pub fn parse(text: &str) -> Result<LayoutLocation, LayoutError> {
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let parsed = digest.parse::<Digest>().map_err(|e| LayoutError::BadDigest {
                    text: digest.to_string(),
                    reason: e.to_string(),
                })?;
                (rest, Some(parsed))
            }
            None => (text, None),
        };
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, tag),
            _ => (rest, "latest"),
        };
        let tag = if tag.is_empty() { "latest" } else { tag };
        Ok(LayoutLocation { dir: PathBuf::from(dir), tag: tag.to_string(), digest })
    }
}

/// Reads blobs by digest, checking that the bytes hash to it.
pub trait BlobReader {
    /// The blob's bytes, refused when longer than `limit` or not hashing to `digest`.
    fn read_verified(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, LayoutError>;
}

/// A manifest reached from an entry: the documents walked through and the config.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The digest of the entry the walk started at (what pins the image).
    pub digest: Digest,
    /// Bytes of the indexes walked through, outermost first.
    pub indexes: Vec<(Digest, Vec<u8>)>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest_bytes: Vec<u8>,
    pub manifest: ImageManifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
}

impl LayoutImage {
    /// Puts the documents read (indexes, manifest, config; all verified) into `store`.
    pub fn store_documents(&self, store: &BlobStore) -> Result<(), LayoutError> {
        let config = (&self.manifest.config.digest, &self.config_bytes);
        let documents = self.indexes.iter().map(|(digest, bytes)| (digest, bytes));
        for (digest, bytes) in
            documents.chain([(&self.manifest_digest, &self.manifest_bytes), config])
        {
            let expected = store_digest(digest)?;
            let store_error = |source| LayoutError::Store { digest: digest.clone(), source };
            let (stored, _) =
                store.put_reader(bytes.as_slice(), Some(&expected)).map_err(store_error)?;
            debug_assert_eq!(stored, expected);
        }
        Ok(())
    }
}

/// Walks from `digest` (a manifest or an index) to the image manifest for `platform` and
/// reads its config. `name` is for messages.
pub fn resolve(
    blobs: &dyn BlobReader,
    digest: &Digest,
    platform: &Platform,
    name: &str,
) -> Result<LayoutImage, LayoutError> {
    let mut indexes = Vec::new();
    let mut current = digest.clone();
    let (manifest_media_type, manifest_bytes, manifest) = loop {
        let bytes = blobs.read_verified(&current, MAX_MANIFEST_BYTES)?;
        let invalid = |source| LayoutError::Manifest {
            name: name.to_string(),
            digest: current.clone(),
            source,
        };
        let (media_type, kind) = parse_manifest(&bytes, None).map_err(invalid)?;
        let index: ImageIndex = match kind {
            ManifestKind::Image(image) => break (media_type, bytes, *image),
            ManifestKind::Index(index) => index,
        };
        if indexes.len() >= MAX_INDEX_DEPTH {
            return Err(invalid(ManifestError::NestedTooDeep(MAX_INDEX_DEPTH)));
        }
        let chosen = select_manifest(&index, platform, name)?.digest.clone();
        indexes.push((current, bytes));
        current = chosen;
    };
    let config_descriptor = &manifest.config;
    let invalid_manifest =
        |source| LayoutError::Manifest { name: name.to_string(), digest: current.clone(), source };
    if !matches!(config_descriptor.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG) {
        return Err(invalid_manifest(ManifestError::NotAnImage(
            config_descriptor.media_type.clone(),
        )));
    }
    let config_bytes = blobs.read_verified(&config_descriptor.digest, MAX_CONFIG_BYTES)?;
    let config = ImageConfig::parse(&config_bytes).map_err(|source| LayoutError::Config {
        name: name.to_string(),
        digest: config_descriptor.digest.clone(),
        source,
    })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid_manifest(ManifestError::LayerCountMismatch {
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        }));
    }
    Ok(LayoutImage {
        digest: digest.clone(),
        indexes,
        manifest_digest: current,
        manifest_media_type,
        manifest_bytes,
        manifest,
        config_bytes,
        config,
    })
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens `dir`, which must hold an `oci-layout` file naming a layout version.
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        let not_a_layout = |reason: String| LayoutError::NotALayout { dir: dir.into(), reason };
        let marker = dir.join("oci-layout");
        let bytes = match read_limited(&marker, 64 * 1024) {
            Ok(bytes) => bytes,
            Err(LayoutError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(not_a_layout(if dir.is_dir() {
                    "it has no oci-layout file".into()
                } else {
                    "no such directory".into()
                }));
            }
            Err(other) => return Err(other),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| not_a_layout(format!("oci-layout is not json: {e}")))?;
        if !value.get("imageLayoutVersion").is_some_and(serde_json::Value::is_string) {
            return Err(not_a_layout("oci-layout has no imageLayoutVersion".into()));
        }
        Ok(Layout { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entries of `index.json`.
    pub fn entries(&self) -> Result<Vec<Descriptor>, LayoutError> {
        let path = self.dir.join("index.json");
        let bytes = read_limited(&path, MAX_INDEX_JSON_BYTES)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| LayoutError::Invalid { path: path.clone(), reason: e.to_string() })?;
        Ok(index.manifests)
    }

    /// The digest `location` names: its digest, else its tag looked up as BuildKit does.
    pub fn find(&self, location: &LayoutLocation) -> Result<Digest, LayoutError> {
        if let Some(digest) = &location.digest {
            return Ok(digest.clone());
        }
        let entries = self.entries()?;
        let annotated = |key: &str| {
            entries.iter().find(|entry| {
                entry.annotations.as_ref().and_then(|a| a.get(key)) == Some(&location.tag)
            })
        };
        let found = annotated(ANNOTATION_IMAGE_NAME).or_else(|| annotated(ANNOTATION_REF_NAME));
        match (found, entries.as_slice()) {
            (Some(entry), _) | (None, [entry]) => Ok(entry.digest.clone()),
            (None, _) => Err(LayoutError::TagNotFound {
                dir: self.dir.clone(),
                tag: location.tag.clone(),
                tags: entries
                    .iter()
                    .filter_map(|e| e.annotations.as_ref()?.get(ANNOTATION_REF_NAME).cloned())
                    .collect(),
            }),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.algorithm().name()).join(digest.hex())
    }

    fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => {
                LayoutError::BlobMissing { dir: self.dir.clone(), digest: digest.clone() }
            }
            _ => LayoutError::Read { path, source },
        })
    }

    /// Copies the blob `descriptor` names into `store` unless it is there already, checking
    /// its size and digest on the way; `progress` hears the bytes copied so far.
    pub fn import_blob(
        &self,
        descriptor: &Descriptor,
        store: &BlobStore,
        progress: &dyn Fn(u64),
    ) -> Result<(), LayoutError> {
        let digest = &descriptor.digest;
        let expected = store_digest(digest)?;
        if store.contains(&expected) {
            return Ok(());
        }
        let damaged = |reason: String| LayoutError::BlobDamaged {
            dir: self.dir.clone(),
            digest: digest.clone(),
            reason,
        };
        let path = self.blob_path(digest);
        let mut source = self.open_blob(digest)?.take(descriptor.size.saturating_add(1));
        let store_error = |source| LayoutError::Store { digest: digest.clone(), source };
        let mut writer = store.writer().map_err(store_error)?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(LayoutError::Read { path, source }),
            };
            io::Write::write_all(&mut writer, &buffer[..n]).map_err(|e| {
                store_error(CacheError::Io { op: "write", path: path.clone(), source: e })
            })?;
            copied += n as u64;
            progress(copied.min(descriptor.size));
        }
        if copied != descriptor.size {
            return Err(damaged(format!(
                "it has {} bytes but its descriptor says {}",
                if copied > descriptor.size { "more".to_string() } else { copied.to_string() },
                descriptor.size
            )));
        }
        match writer.commit(Some(&expected)) {
            Ok(_) => Ok(()),
            Err(CacheError::DigestMismatch { actual, .. }) => {
                Err(damaged(format!("its bytes hash to {actual}")))
            }
            Err(other) => Err(store_error(other)),
        }
    }
}

impl BlobReader for Layout {
    fn read_verified(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let bytes = match read_limited(&path, limit) {
            Err(LayoutError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::BlobMissing {
                    dir: self.dir.clone(),
                    digest: digest.clone(),
                });
            }
            other => other?,
        };
        if !digest.matches(&bytes) {
            return Err(LayoutError::BlobDamaged {
                dir: self.dir.clone(),
                digest: digest.clone(),
                reason: format!("its bytes hash to {}", Digest::sha256_of(&bytes)),
            });
        }
        Ok(bytes)
    }
}

impl BlobReader for BlobStore {
    fn read_verified(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let path = self.path(&store_digest(digest)?);
        let bytes = read_limited(&path, limit)?;
        if !digest.matches(&bytes) {
            return Err(LayoutError::StoreBlobDamaged { digest: digest.clone() });
        }
        Ok(bytes)
    }
}

/// `digest` as kiln's store names blobs.
pub fn store_digest(digest: &Digest) -> Result<kiln_cache::Digest, LayoutError> {
    kiln_cache::Digest::parse(&digest.to_string())
        .map_err(|_| LayoutError::UnsupportedAlgorithm { digest: digest.clone() })
}

/// Reads a whole file, refusing one longer than `limit`.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, LayoutError> {
    let read_error = |source| LayoutError::Read { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(LayoutError::TooLarge { path: path.to_path_buf(), limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
