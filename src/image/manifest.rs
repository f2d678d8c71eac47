//! Manifests, indexes and descriptors, in OCI or Docker schema 2 media types.
//!
//! The two families describe the same JSON shape; only the media type strings differ
//! ([`MediaTypes`]). Zstd layers exist only as OCI media types (as in BuildKit, where
//! `compression=zstd` conflicts with `oci-mediatypes=false`).
//!
//! Bytes are written with [`super::canonical`], so the same manifest always has the same
//! digest. Struct fields are declared in the order Go's image-spec types declare them, which
//! only matters where a document is written non-canonically (the metadata file's descriptor).

use super::ImageError;
use super::canonical::to_canonical_bytes;
use crate::layer::Compression;
use kiln_cache::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// containerd's name for a zstd layer under Docker media types; read, never written.
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// A tag (`latest`) in OCI layouts; kiln's own store puts the full reference here.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full image name (`docker.io/library/app:latest`), as containerd writes it.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// RFC 3339 creation time of what the descriptor points at.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// Which family of media types an image is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    /// `application/vnd.oci.image.*` (`oci-mediatypes=true`).
    #[default]
    Oci,
    /// Docker schema 2 (`oci-mediatypes=false`).
    Docker,
}

impl MediaTypes {
    /// `OCI` or `Docker`, for messages.
    pub fn family(self) -> &'static str {
        match self {
            MediaTypes::Oci => "OCI",
            MediaTypes::Docker => "Docker",
        }
    }

    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_MANIFEST,
            MediaTypes::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_CONFIG,
            MediaTypes::Docker => DOCKER_CONFIG,
        }
    }

    /// The layer media type for a blob with `compression`.
    pub fn layer(self, compression: Compression) -> Result<&'static str, ImageError> {
        Ok(match (self, compression) {
            (MediaTypes::Oci, Compression::Uncompressed) => OCI_LAYER,
            (MediaTypes::Oci, Compression::Gzip) => OCI_LAYER_GZIP,
            (MediaTypes::Oci, Compression::Zstd) => OCI_LAYER_ZSTD,
            (MediaTypes::Docker, Compression::Uncompressed) => DOCKER_LAYER,
            (MediaTypes::Docker, Compression::Gzip) => DOCKER_LAYER_GZIP,
            (MediaTypes::Docker, Compression::Zstd) => return Err(ImageError::ZstdNeedsOciTypes),
        })
    }
}

/// The compression a layer media type (of either family) announces.
pub fn layer_compression(media_type: &str) -> Result<Compression, ImageError> {
    match media_type {
        OCI_LAYER | DOCKER_LAYER => Ok(Compression::Uncompressed),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD | DOCKER_LAYER_ZSTD => Ok(Compression::Zstd),
        other => Err(ImageError::UnsupportedLayerMediaType { media_type: other.to_owned() }),
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor without annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The same descriptor as `oci-spec` types it (what `kiln_cache::ImageStore` takes).
    pub fn to_oci_spec(&self) -> Result<kiln_cache::Descriptor, ImageError> {
        let value = serde_json::to_value(self)
            .map_err(|source| ImageError::Encode { what: "descriptor", source })?;
        serde_json::from_value(value)
            .map_err(|source| ImageError::Encode { what: "descriptor", source })
    }
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// A manifest of `media_types` for `config` and `layers` (whose media types the caller
    /// has already chosen from the same family).
    pub fn new(media_types: MediaTypes, config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: media_types.manifest().to_owned(),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        to_canonical_bytes(self).map_err(|source| ImageError::Encode { what: "manifest", source })
    }

    pub fn parse(bytes: &[u8]) -> Result<Manifest, ImageError> {
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseManifest { source })
    }
}

/// An image index (`index.json` of a layout, or a multi-platform image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An OCI index of `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: OCI_INDEX.to_owned(),
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        to_canonical_bytes(self).map_err(|source| ImageError::Encode { what: "index", source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_of_both_families() {
        use Compression::*;
        let oci: Vec<_> =
            [Uncompressed, Gzip, Zstd].map(|c| MediaTypes::Oci.layer(c).unwrap()).into();
        assert_eq!(oci, [OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD]);
        assert_eq!(MediaTypes::Docker.layer(Gzip).unwrap(), DOCKER_LAYER_GZIP);
        assert_eq!(MediaTypes::Docker.layer(Uncompressed).unwrap(), DOCKER_LAYER);
        assert_eq!(
            MediaTypes::Docker.layer(Zstd).unwrap_err().to_string(),
            "zstd-compressed layers need OCI media types (compression=zstd conflicts with oci-mediatypes=false)"
        );
        assert_eq!(
            (MediaTypes::Oci.manifest(), MediaTypes::Oci.config()),
            (OCI_MANIFEST, OCI_CONFIG)
        );
        assert_eq!(
            (MediaTypes::Docker.manifest(), MediaTypes::Docker.config()),
            (DOCKER_MANIFEST, DOCKER_CONFIG)
        );
        for (media_type, compression) in [
            (OCI_LAYER, Uncompressed),
            (DOCKER_LAYER_GZIP, Gzip),
            (OCI_LAYER_ZSTD, Zstd),
            (DOCKER_LAYER_ZSTD, Zstd),
        ] {
            assert_eq!(layer_compression(media_type).unwrap(), compression);
        }
        let err = layer_compression("application/vnd.oci.image.layer.nondistributable.v1.tar")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported layer media type \"application/vnd.oci.image.layer.nondistributable.v1.tar\""
        );
    }

    fn sample(media_types: MediaTypes) -> Manifest {
        let config = Descriptor::new(media_types.config(), Digest::of(b"config"), 6);
        let layer =
            Descriptor::new(media_types.layer(Compression::Gzip).unwrap(), Digest::of(b"layer"), 5);
        Manifest::new(media_types, config, vec![layer])
    }

    #[test]
    fn golden_oci_manifest_bytes() {
        let bytes = sample(MediaTypes::Oci).to_bytes().unwrap();
        let expected = format!(
            concat!(
                r#"{{"config":{{"digest":"{}","mediaType":"application/vnd.oci.image.config.v1+json","size":6}},"#,
                r#""layers":[{{"digest":"{}","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":5}}],"#,
                r#""mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}}"#
            ),
            Digest::of(b"config"),
            Digest::of(b"layer")
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        assert_eq!(sample(MediaTypes::Oci).to_bytes().unwrap(), bytes, "same input, same bytes");
        assert_eq!(Manifest::parse(&bytes).unwrap(), sample(MediaTypes::Oci));
    }

    #[test]
    fn docker_manifest_uses_docker_types() {
        let text = String::from_utf8(sample(MediaTypes::Docker).to_bytes().unwrap()).unwrap();
        assert!(text.contains(r#""mediaType":"application/vnd.docker.container.image.v1+json""#));
        assert!(
            text.contains(r#""mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip""#)
        );
        assert!(text.ends_with(r#""mediaType":"application/vnd.docker.distribution.manifest.v2+json","schemaVersion":2}"#));
    }

    #[test]
    fn golden_index_with_annotated_descriptor() {
        let mut descriptor = Descriptor::new(OCI_MANIFEST, Digest::of(b"m"), 1);
        descriptor.annotations.insert(ANNOTATION_REF_NAME.into(), "latest".into());
        descriptor
            .annotations
            .insert(ANNOTATION_IMAGE_NAME.into(), "docker.io/library/a:latest".into());
        descriptor.platform = Some(Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            os_version: String::new(),
            os_features: vec![],
            variant: String::new(),
        });
        let bytes = Index::new(vec![descriptor.clone()]).to_bytes().unwrap();
        let expected = format!(
            concat!(
                r#"{{"manifests":[{{"annotations":{{"io.containerd.image.name":"docker.io/library/a:latest","#,
                r#""org.opencontainers.image.ref.name":"latest"}},"digest":"{}","#,
                r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""platform":{{"architecture":"amd64","os":"linux"}},"size":1}}],"#,
                r#""mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#
            ),
            Digest::of(b"m")
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);

        let oci = descriptor.to_oci_spec().unwrap();
        assert_eq!(oci.digest().to_string(), Digest::of(b"m").to_string());
        assert_eq!(oci.size(), 1);
        assert_eq!(oci.annotations().as_ref().unwrap()[ANNOTATION_REF_NAME], "latest");
    }

    #[test]
    fn bad_manifest_is_an_error() {
        let err = Manifest::parse(br#"{"schemaVersion":2}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid manifest: missing field `mediaType`"),
            "{err}"
        );
    }
}
