//! Manifest and index documents (OCI and Docker schema 2) and their descriptors.
//!
//! Invariants: a [`FetchedManifest`] keeps the exact bytes the registry sent and their
//! digest — re-serialising a parsed manifest would change its digest, so the typed view is
//! for reading only. Unknown JSON fields are kept (`extra`) so nothing a registry sends is
//! lost. Docker schema 1 manifests are refused with a clear error.

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests: every kind kiln reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest kiln reads (containerd's limit): manifests are small; anything bigger is
/// refused before it fills memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not valid json: {0}")]
    Json(#[source] serde_json::Error),
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error(
        "docker schema 1 manifests are not supported (push the image again with a current client)"
    )]
    Schema1,
    #[error("cannot tell the manifest's kind: no mediaType, no manifests and no layers")]
    UnknownKind,
    #[error("schemaVersion is {0}, expected 2")]
    SchemaVersion(u64),
    #[error("image indexes nest more than {0} deep")]
    NestedTooDeep(usize),
    #[error("the manifest lists {layers} layers but the config has {diff_ids} diff_ids")]
    LayerCountMismatch { layers: usize, diff_ids: usize },
    #[error("not a container image: config media type {0:?}")]
    NotAnImage(String),
}

/// A content descriptor: what a manifest says about a blob or another manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            extra: serde_json::Map::new(),
        }
    }
}

/// A descriptor's `platform` object, as the image spec spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A parsed manifest document.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestKind {
    Image(Box<ImageManifest>),
    Index(ImageIndex),
}

/// A manifest as received: exact bytes, their digest, media type and typed view.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub kind: ManifestKind,
}

impl FetchedManifest {
    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest.clone(), self.bytes.len() as u64)
    }
}

/// Parses manifest bytes. The document's own `mediaType` wins over the HTTP content type
/// (it is covered by the digest); without either, the shape decides.
pub fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(String, ManifestKind), ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u64>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
        fs_layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|c| {
            !matches!(
                c.as_str(),
                "" | "application/json" | "text/plain" | "application/octet-stream"
            )
        });
    if probe.schema_version == Some(1) || probe.fs_layers.is_some() {
        return Err(ManifestError::Schema1);
    }
    let media_type = match (probe.media_type.filter(|m| !m.is_empty()), content_type) {
        (Some(own), _) => own,
        (None, Some(header)) => header,
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if probe.layers.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => return Err(ManifestError::UnknownKind),
    };
    if let Some(version) = probe.schema_version.filter(|v| *v != 2) {
        return Err(ManifestError::SchemaVersion(version));
    }
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image(Box::new(
            serde_json::from_slice(bytes).map_err(ManifestError::Json)?,
        )),
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            ManifestKind::Index(serde_json::from_slice(bytes).map_err(ManifestError::Json)?)
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => return Err(ManifestError::Schema1),
        other => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
    };
    Ok((media_type, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn parses_oci_manifest_keeping_unknown_fields() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":9,"annotations":{{"a":"b"}}}}],"x-custom":true}}"#
        );
        let (media_type, kind) = parse_manifest(json.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(media_type, OCI_MANIFEST);
        let ManifestKind::Image(manifest) = kind else { panic!("not an image manifest") };
        assert_eq!(manifest.config.digest.to_string(), D1);
        assert_eq!(manifest.layers[0].size, 9);
        assert_eq!(manifest.extra["x-custom"], serde_json::Value::Bool(true));
    }

    #[test]
    fn media_type_from_header_or_shape() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#
        );
        let (media_type, kind) = parse_manifest(
            index.as_bytes(),
            Some(&format!("{DOCKER_MANIFEST_LIST}; charset=utf-8")),
        )
        .unwrap();
        assert_eq!(media_type, DOCKER_MANIFEST_LIST);
        let ManifestKind::Index(index_doc) = kind else { panic!("not an index") };
        assert_eq!(
            index_doc.manifests[0].platform.as_ref().unwrap().variant.as_deref(),
            Some("v7")
        );
        let (media_type, _) = parse_manifest(index.as_bytes(), None).unwrap();
        assert_eq!(media_type, OCI_INDEX);
    }

    #[test]
    fn refuses_what_kiln_cannot_read() {
        let err = |bytes: &str, ct: Option<&str>| {
            parse_manifest(bytes.as_bytes(), ct).unwrap_err().to_string()
        };
        assert_eq!(
            err(r#"{"schemaVersion":1,"fsLayers":[]}"#, None),
            "docker schema 1 manifests are not supported (push the image again with a current client)"
        );
        assert_eq!(
            err(r#"{"schemaVersion":2}"#, None),
            "cannot tell the manifest's kind: no mediaType, no manifests and no layers"
        );
        assert_eq!(
            err(r#"{"schemaVersion":2,"mediaType":"application/x-thing"}"#, None),
            "unsupported manifest media type \"application/x-thing\""
        );
        assert!(err("{", None).starts_with("not valid json: "));
        assert_eq!(
            err(r#"{"schemaVersion":3,"manifests":[]}"#, None),
            "schemaVersion is 3, expected 2"
        );
        assert!(
            err(
                &format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
                None
            )
            .contains("missing field `config`")
        );
    }
}
