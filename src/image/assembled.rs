//! A finished image, ready to store, export or push: the exact config and manifest bytes
//! with their digests, and the layer blobs the manifest lists.
//!
//! Invariants of an [`ExportImage`] made by [`ExportImage::assemble`]: the config's
//! `rootfs.diff_ids` are the layers' diff_ids in order; every layer's media type belongs to
//! the image's [`MediaTypes`] family; `config_digest`/`manifest_digest` are the sha256 of the
//! bytes beside them (the fields are public, so consumers re-check with
//! [`ExportImage::check`] before writing anything).

use super::ImageError;
use super::config::ImageConfigFile;
use super::manifest::{Descriptor, Manifest, MediaTypes, layer_compression};
use kiln_cache::Digest;

/// One layer blob as stored: compressed `digest` and `size`, uncompressed `diff_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

impl LayerBlob {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest, self.size)
    }
}

/// A finished image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportImage {
    pub config_bytes: Vec<u8>,
    pub config_digest: Digest,
    /// In manifest order (bottom first), with the manifest's media types.
    pub layers: Vec<LayerBlob>,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: Digest,
    pub media_types: MediaTypes,
    /// Fully qualified references (`docker.io/library/app:latest`), normalised by the caller
    /// with `registry::Reference`. May be empty.
    pub names: Vec<String>,
}

impl ExportImage {
    /// Serialises `config`, gives the layers the media types of `media_types` and writes
    /// the manifest.
    pub fn assemble(
        config: &ImageConfigFile,
        layers: Vec<LayerBlob>,
        media_types: MediaTypes,
        names: Vec<String>,
    ) -> Result<ExportImage, ImageError> {
        let diff_ids: Vec<Digest> = layers.iter().map(|layer| layer.diff_id).collect();
        if diff_ids != config.rootfs.diff_ids {
            return Err(ImageError::DiffIdsMismatch {
                config: config.rootfs.diff_ids.len(),
                layers: layers.len(),
                first_difference: first_difference(&config.rootfs.diff_ids, &diff_ids),
            });
        }
        let mut layers = layers;
        for layer in &mut layers {
            let compression = layer_compression(&layer.media_type)?;
            layer.media_type = media_types.layer(compression)?.to_owned();
        }
        let (config_bytes, config_digest) = config.to_blob()?;
        let config_descriptor =
            Descriptor::new(media_types.config(), config_digest, config_bytes.len() as u64);
        let manifest = Manifest::new(
            media_types,
            config_descriptor,
            layers.iter().map(LayerBlob::descriptor).collect(),
        );
        let manifest_bytes = manifest.to_bytes()?;
        let manifest_digest = Digest::of(&manifest_bytes);
        Ok(ExportImage {
            config_bytes,
            config_digest,
            layers,
            manifest_bytes,
            manifest_digest,
            media_types,
            names,
        })
    }

    /// The descriptor of the manifest (no annotations).
    pub fn manifest_descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_types.manifest(),
            self.manifest_digest,
            self.manifest_bytes.len() as u64,
        )
    }

    /// The descriptor of the config.
    pub fn config_descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_types.config(),
            self.config_digest,
            self.config_bytes.len() as u64,
        )
    }

    /// Checks that the digests match the bytes and that the manifest lists this config and
    /// these layers.
    pub fn check(&self) -> Result<(), ImageError> {
        for (what, bytes, declared) in [
            ("config", &self.config_bytes, self.config_digest),
            ("manifest", &self.manifest_bytes, self.manifest_digest),
        ] {
            let actual = Digest::of(bytes);
            if actual != declared {
                return Err(ImageError::BytesDigestMismatch { what, declared, actual });
            }
        }
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        let layers: Vec<Descriptor> = self.layers.iter().map(LayerBlob::descriptor).collect();
        if manifest.config.digest != self.config_digest || manifest.layers != layers {
            return Err(ImageError::ManifestMismatch { manifest: self.manifest_digest });
        }
        Ok(())
    }
}

fn first_difference(config: &[Digest], layers: &[Digest]) -> Option<usize> {
    (0..config.len().max(layers.len())).find(|&i| config.get(i) != layers.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::config::RootFs;
    use crate::image::manifest::{DOCKER_LAYER_GZIP, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

    fn layer(n: u8, media_type: &str) -> LayerBlob {
        LayerBlob {
            digest: Digest::of(&[n, n]),
            diff_id: Digest::of(&[n]),
            size: 2,
            media_type: media_type.into(),
        }
    }

    fn config(diff_ids: Vec<Digest>) -> ImageConfigFile {
        ImageConfigFile {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs { diff_ids, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn assemble_writes_manifest_over_config_and_layers() {
        let layers = vec![layer(1, OCI_LAYER_GZIP), layer(2, OCI_LAYER)];
        let cfg = config(vec![Digest::of(&[1]), Digest::of(&[2])]);
        let image = ExportImage::assemble(&cfg, layers.clone(), MediaTypes::Oci, vec![]).unwrap();
        image.check().unwrap();
        assert_eq!(image.config_bytes, cfg.to_bytes().unwrap());
        assert_eq!(image.config_digest, Digest::of(&image.config_bytes));
        assert_eq!(image.manifest_digest, Digest::of(&image.manifest_bytes));
        let manifest = Manifest::parse(&image.manifest_bytes).unwrap();
        assert_eq!(manifest.config, image.config_descriptor());
        assert_eq!(manifest.layers, layers.iter().map(LayerBlob::descriptor).collect::<Vec<_>>());
        assert_eq!(image.manifest_descriptor().size, image.manifest_bytes.len() as u64);
        // Deterministic.
        let again = ExportImage::assemble(&cfg, layers, MediaTypes::Oci, vec![]).unwrap();
        assert_eq!(again, image);
    }

    #[test]
    fn assemble_converts_layer_media_types() {
        let cfg = config(vec![Digest::of(&[1])]);
        let image =
            ExportImage::assemble(&cfg, vec![layer(1, OCI_LAYER_GZIP)], MediaTypes::Docker, vec![])
                .unwrap();
        assert_eq!(image.layers[0].media_type, DOCKER_LAYER_GZIP);
        let back =
            ExportImage::assemble(&cfg, image.layers.clone(), MediaTypes::Oci, vec![]).unwrap();
        assert_eq!(back.layers[0].media_type, OCI_LAYER_GZIP);
        let err =
            ExportImage::assemble(&cfg, vec![layer(1, OCI_LAYER_ZSTD)], MediaTypes::Docker, vec![])
                .unwrap_err();
        assert!(matches!(err, ImageError::ZstdNeedsOciTypes));
    }

    #[test]
    fn assemble_rejects_layers_that_disagree_with_the_config() {
        let cfg = config(vec![Digest::of(&[1]), Digest::of(&[3])]);
        let err = ExportImage::assemble(
            &cfg,
            vec![layer(1, OCI_LAYER), layer(2, OCI_LAYER)],
            MediaTypes::Oci,
            vec![],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the config lists 2 diff_ids and 2 layers were given, first different at position 1"
        );
        let err = ExportImage::assemble(&cfg, vec![layer(1, OCI_LAYER)], MediaTypes::Oci, vec![])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the config lists 2 diff_ids and 1 layers were given, first different at position 1"
        );
    }

    #[test]
    fn check_finds_tampering() {
        let cfg = config(vec![Digest::of(&[1])]);
        let image = ExportImage::assemble(&cfg, vec![layer(1, OCI_LAYER)], MediaTypes::Oci, vec![])
            .unwrap();
        let mut bad = image.clone();
        bad.config_bytes.push(b' ');
        let err = bad.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image config bytes hash to {}, not the declared {}",
                Digest::of(&bad.config_bytes),
                image.config_digest
            )
        );
        let mut bad = image.clone();
        bad.layers[0].size = 3;
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            format!(
                "manifest {} does not list the image's config and layers",
                image.manifest_digest
            )
        );
    }
}
