//! Images in kiln's local store, read back: the rows `kiln images` lists, and a tagged
//! image as an [`ExportImage`] that the archive exporters write (`kiln save`).
//!
//! A tag points at a manifest, or at an index narrowed to one platform (see
//! [`super::layout`]). Invariants: every manifest, index and config read here is checked
//! against its digest before it is used, and an [`ExportImage`] made here keeps the stored
//! manifest's exact bytes, so a saved image has the digests it has in the store.

use super::assembled::{ExportImage, LayerBlob};
use super::layout::{self, LayoutError, LayoutImage, store_digest};
use super::manifest::{DOCKER_MANIFEST, MediaTypes, OCI_MANIFEST};
use super::time::Timestamp;
use crate::registry::digest::Digest;
use kiln_cache::{CacheError, Root};
use kiln_frontend::platform::Platform;

/// Why the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read kiln's image store: {0}")]
    Store(#[from] CacheError),
    #[error("image {reference}: {source}")]
    Image { reference: String, source: Box<LayoutError> },
    #[error("image {reference}: unsupported manifest media type {media_type:?}")]
    MediaType { reference: String, media_type: String },
}

/// One tag of the store, with what `kiln images` shows of it.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The full reference (`docker.io/library/app:latest`).
    pub reference: String,
    /// The digest the tag points at (a manifest's, or an index's).
    pub digest: Digest,
    /// The image id.
    pub config_digest: Digest,
    /// The config's `created`, when it has a readable one.
    pub created: Option<Timestamp>,
    /// Bytes the image takes in the store: manifest(s), config and layers as stored.
    pub size: u64,
}

/// Every tag of the store, sorted by reference, read for `platform` where a tag points at
/// an index.
pub fn list(root: &Root, platform: &Platform) -> Result<Vec<StoredImage>, LocalError> {
    root.images()
        .list()?
        .into_iter()
        .map(|(reference, descriptor)| {
            let digest = digest_of(&reference, descriptor.digest().as_ref())?;
            let image = resolve(root, &reference, &digest, platform)?;
            Ok(summary(reference, &image))
        })
        .collect()
}

/// The image tagged `reference` (a full reference), or `None` when no such tag exists.
pub fn load(
    root: &Root,
    reference: &str,
    platform: &Platform,
) -> Result<Option<(StoredImage, ExportImage)>, LocalError> {
    let Some(descriptor) = root.images().resolve(reference)? else { return Ok(None) };
    let digest = digest_of(reference, descriptor.digest().as_ref())?;
    let image = resolve(root, reference, &digest, platform)?;
    let export = export_image(reference, &image)?;
    Ok(Some((summary(reference.to_string(), &image), export)))
}

fn digest_of(reference: &str, text: &str) -> Result<Digest, LocalError> {
    text.parse().map_err(|e: crate::registry::digest::DigestError| LocalError::Image {
        reference: reference.to_string(),
        source: Box::new(LayoutError::BadDigest { text: text.to_string(), reason: e.to_string() }),
    })
}

fn resolve(
    root: &Root,
    reference: &str,
    digest: &Digest,
    platform: &Platform,
) -> Result<LayoutImage, LocalError> {
    layout::resolve(&root.blobs(), digest, platform, reference).map_err(|source| {
        LocalError::Image { reference: reference.to_string(), source: source.into() }
    })
}

fn summary(reference: String, image: &LayoutImage) -> StoredImage {
    let documents: u64 = image.indexes.iter().map(|(_, bytes)| bytes.len() as u64).sum::<u64>()
        + image.manifest_bytes.len() as u64
        + image.config_bytes.len() as u64;
    let layers: u64 = image.manifest.layers.iter().map(|layer| layer.size).sum();
    StoredImage {
        reference,
        digest: image.digest.clone(),
        config_digest: image.manifest.config.digest.clone(),
        created: image.config.created.as_deref().and_then(Timestamp::parse_rfc3339),
        size: documents + layers,
    }
}

/// The stored image as the exporters take it: exact bytes, layers with their diff_ids.
fn export_image(reference: &str, image: &LayoutImage) -> Result<ExportImage, LocalError> {
    let invalid = |source: LayoutError| LocalError::Image {
        reference: reference.to_string(),
        source: source.into(),
    };
    let media_types = match image.manifest_media_type.as_str() {
        OCI_MANIFEST => MediaTypes::Oci,
        DOCKER_MANIFEST => MediaTypes::Docker,
        other => {
            return Err(LocalError::MediaType {
                reference: reference.to_string(),
                media_type: other.to_string(),
            });
        }
    };
    let layers = image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
        .map(|(layer, diff_id)| {
            Ok(LayerBlob {
                digest: store_digest(&layer.digest).map_err(invalid)?,
                diff_id: store_digest(diff_id).map_err(invalid)?,
                size: layer.size,
                media_type: layer.media_type.clone(),
            })
        })
        .collect::<Result<Vec<_>, LocalError>>()?;
    Ok(ExportImage {
        config_bytes: image.config_bytes.clone(),
        config_digest: store_digest(&image.manifest.config.digest).map_err(invalid)?,
        layers,
        manifest_bytes: image.manifest_bytes.clone(),
        manifest_digest: store_digest(&image.manifest_digest).map_err(invalid)?,
        media_types,
        names: vec![reference.to_string()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::sample_image;
    use crate::image::store_image;

    #[test]
    fn lists_and_loads_what_was_stored() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let platform = Platform::new("linux", "amd64", None);
        let image = sample_image(&root, MediaTypes::Docker, &["docker.io/library/app:1"]);
        store_image(&root, &image).unwrap();
        let listed = list(&root, &platform).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].reference, "docker.io/library/app:1");
        assert_eq!(listed[0].config_digest.to_string(), image.config_digest.to_string());
        let layers: u64 = image.layers.iter().map(|l| l.size).sum();
        let expected = layers + (image.config_bytes.len() + image.manifest_bytes.len()) as u64;
        assert_eq!(listed[0].size, expected);

        let (_, loaded) = load(&root, "docker.io/library/app:1", &platform).unwrap().unwrap();
        assert_eq!(loaded, image, "the stored bytes come back unchanged");
        assert!(load(&root, "docker.io/library/app:2", &platform).unwrap().is_none());
    }

    #[test]
    fn a_damaged_manifest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let platform = Platform::new("linux", "amd64", None);
        let image = sample_image(&root, MediaTypes::Oci, &["docker.io/library/app:1"]);
        store_image(&root, &image).unwrap();
        let path = root.blobs().path(&image.manifest_digest);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"{}").unwrap();
        let err = list(&root, &platform).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image docker.io/library/app:1: blob {} in kiln's store is damaged (run `kiln cache verify`)",
                image.manifest_digest
            )
        );
    }
}
