//! Layer blobs of an imported cache: whether a source still holds one, and fetching one
//! into kiln's blob store.
//!
//! Invariant: a fetched blob reaches the store only after its size and digest were checked
//! (the registry client verifies while streaming and the store's writer checks the digest
//! again on commit; [`Layout::import_blob`] does both), so a damaged cache never puts a
//! wrong blob in the store.

use super::import::CacheSource;
use crate::image::Descriptor;
use crate::image::layout::{Layout, LayoutError};
use crate::registry::{RegistryClient, RegistryError};
use kiln_cache::{BlobStore, CacheError, Digest};

/// Why a blob could not be checked or fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("cannot store blob {digest}: {source}")]
    Store { digest: Digest, source: CacheError },
}

/// `digest` as the registry client spells it (every store digest is a valid one).
pub fn registry_digest(digest: &Digest) -> crate::registry::Digest {
    digest.to_string().parse().expect("a sha256 store digest is a valid registry digest")
}

/// A descriptor as the registry client takes it.
pub fn registry_descriptor(descriptor: &Descriptor) -> crate::registry::manifest::Descriptor {
    crate::registry::manifest::Descriptor {
        media_type: descriptor.media_type.clone(),
        digest: registry_digest(&descriptor.digest),
        size: descriptor.size,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
        extra: serde_json::Map::new(),
    }
}

impl CacheSource {
    /// Whether the source holds the blob (a `HEAD` for registries; a file of the right
    /// size for directories).
    pub fn has_blob(&self, client: &RegistryClient, blob: &Descriptor) -> Result<bool, FetchError> {
        match self {
            CacheSource::Registry(reference) => {
                Ok(client.blob_exists(reference, &registry_digest(&blob.digest))?)
            }
            CacheSource::Local(location) => {
                let path = location.dir.join("blobs/sha256").join(blob.digest.hex());
                Ok(path.metadata().is_ok_and(|m| m.is_file() && m.len() == blob.size))
            }
        }
    }

    /// Downloads (or copies) the blob into `store`; `progress` hears the bytes done.
    pub fn fetch_blob(
        &self,
        client: &RegistryClient,
        blob: &Descriptor,
        store: &BlobStore,
        progress: &dyn Fn(u64),
    ) -> Result<(), FetchError> {
        let descriptor = registry_descriptor(blob);
        let store_error = |source| FetchError::Store { digest: blob.digest, source };
        match self {
            CacheSource::Registry(reference) => {
                let mut writer = store.writer().map_err(store_error)?;
                client.fetch_blob(reference, &descriptor, &mut writer, &|p| progress(p.done))?;
                writer.commit(Some(&blob.digest)).map_err(store_error)?;
                Ok(())
            }
            CacheSource::Local(location) => {
                Layout::open(&location.dir)?.import_blob(&descriptor, store, progress)?;
                Ok(())
            }
        }
    }
}
