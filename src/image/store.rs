//! kiln's default output: a finished image kept in the local store (`--root`), tagged under
//! its names, so a later `FROM name` finds it without a registry.
//!
//! Invariant: tags are written last, after the config and manifest blobs are stored and
//! every layer blob is checked present with its declared size, so a tag never points at
//! an incomplete image.

use super::ImageError;
use super::assembled::ExportImage;
use super::manifest::Descriptor;
use kiln_cache::Root;
use std::io::Write;

/// Stores `image` in `root` and tags it under each of its names (an image without names is
/// stored untagged: its blobs stay until the next prune). Returns the manifest descriptor.
pub fn store_image(root: &Root, image: &ExportImage) -> Result<Descriptor, ImageError> {
    image.check()?;
    let blobs = root.blobs();
    for layer in &image.layers {
        let actual = blobs.size(&layer.digest).map_err(ImageError::Store)?;
        if actual != layer.size {
            return Err(ImageError::LayerSizeMismatch {
                digest: layer.digest,
                declared: layer.size,
                actual,
            });
        }
    }
    for (bytes, digest) in
        [(&image.config_bytes, image.config_digest), (&image.manifest_bytes, image.manifest_digest)]
    {
        let mut writer = blobs.writer().map_err(ImageError::Store)?;
        writer.write_all(bytes).map_err(|source| ImageError::StoreWrite { digest, source })?;
        writer.commit(Some(&digest)).map_err(ImageError::Store)?;
    }
    let descriptor = image.manifest_descriptor();
    let oci = descriptor.to_oci_spec()?;
    for name in &image.names {
        root.images().tag(name, oci.clone()).map_err(ImageError::Store)?;
    }
    Ok(descriptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::assembled::LayerBlob;
    use crate::image::config::{ImageConfigFile, RootFs};
    use crate::image::manifest::{MediaTypes, OCI_LAYER};

    fn image_with_layer(root: &Root, content: &[u8], names: &[&str]) -> ExportImage {
        let digest = root.blobs().put_bytes(content).unwrap();
        let layer = LayerBlob {
            digest,
            diff_id: digest,
            size: content.len() as u64,
            media_type: OCI_LAYER.into(),
        };
        let config = ImageConfigFile {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs { diff_ids: vec![digest], ..Default::default() },
            ..Default::default()
        };
        let names = names.iter().map(|n| n.to_string()).collect();
        ExportImage::assemble(&config, vec![layer], MediaTypes::Oci, names).unwrap()
    }

    #[test]
    fn stores_blobs_and_tags_every_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let image =
            image_with_layer(&root, b"layer", &["docker.io/library/a:1", "example.com/b:2"]);
        let descriptor = store_image(&root, &image).unwrap();
        assert_eq!(descriptor, image.manifest_descriptor());
        assert_eq!(root.blobs().read_bytes(&image.config_digest).unwrap(), image.config_bytes);
        assert_eq!(root.blobs().read_bytes(&image.manifest_digest).unwrap(), image.manifest_bytes);
        for name in &image.names {
            let tagged = root.images().resolve(name).unwrap().unwrap();
            assert_eq!(tagged.digest().to_string(), image.manifest_digest.to_string());
            assert_eq!(tagged.size(), image.manifest_bytes.len() as u64);
        }
        // Storing again is a no-op that succeeds.
        store_image(&root, &image).unwrap();
        assert_eq!(root.images().list().unwrap().len(), 2);
    }

    #[test]
    fn missing_or_wrong_layers_leave_no_tag() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut image = image_with_layer(&root, b"layer", &["x:1"]);
        root.blobs().remove(&image.layers[0].digest).unwrap();
        let err = store_image(&root, &image).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot store image: blob {} not found in the store", image.layers[0].digest)
        );
        root.blobs().put_bytes(b"layer").unwrap();
        image.layers[0].size = 9;
        let err = store_image(&root, &image).unwrap_err();
        assert!(matches!(err, ImageError::ManifestMismatch { .. }), "{err}");
        assert!(root.images().list().unwrap().is_empty());
        assert!(!root.blobs().contains(&image.manifest_digest));
    }

    #[test]
    fn layer_of_other_size_in_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let image = image_with_layer(&root, b"layer", &["x:1"]);
        // A valid image that claims a layer whose stored blob has another size.
        let other = root.blobs().put_bytes(b"other bytes").unwrap();
        let mut layers = image.layers.clone();
        layers[0].digest = other;
        let config = ImageConfigFile::parse(&image.config_bytes).unwrap();
        let lying =
            ExportImage::assemble(&config, layers, MediaTypes::Oci, image.names.clone()).unwrap();
        let err = store_image(&root, &lying).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer {other} is 5 bytes in the manifest but 11 bytes in the store")
        );
        assert!(root.images().list().unwrap().is_empty());
    }
}
