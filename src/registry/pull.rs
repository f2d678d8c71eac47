//! Fetching manifests, and resolving an image reference to what a build needs: the
//! platform's manifest, its config and its layer descriptors.
//!
//! Manifest bytes are returned exactly as received, hashed, and checked against the digest
//! asked for, the descriptor's size, and the registry's `Docker-Content-Digest` header.
//! Invariants of a [`ResolvedImage`]: every document in it was verified against the digest
//! that pointed at it (the reference's digest, the index entry's digest and size, the
//! manifest's config descriptor); the config has as many `diff_ids` as the manifest has
//! layers. A single-platform image is accepted whatever its platform (as BuildKit does; the
//! caller may warn); an index is narrowed to the wanted platform.

use super::auth::Scope;
use super::client::{LIMIT_EXCEEDED, RegistryClient, header_text, read_limited};
use super::digest::{Digest, DigestHasher};
use super::error::RegistryError;
use super::image_config::{ImageConfig, ImageConfigBlob, MAX_CONFIG_BYTES};
use super::manifest::{
    DOCKER_CONFIG, Descriptor, FetchedManifest, ImageManifest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES,
    ManifestError, ManifestKind, OCI_CONFIG, parse_manifest,
};
use super::platform_select::select_manifest;
use super::reference::Reference;
use kiln_frontend::platform::Platform;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// How deep indexes may nest (an index entry pointing at another index).
const MAX_INDEX_DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedImage {
    pub reference: Reference,
    /// The indexes walked through, outermost first (empty for a single-platform image).
    pub indexes: Vec<FetchedManifest>,
    /// The image manifest for the platform, exact bytes included.
    pub manifest: FetchedManifest,
    /// The typed view of `manifest`.
    pub image: ImageManifest,
    pub config: ImageConfigBlob,
}

impl ResolvedImage {
    /// The digest the reference resolved to: the outermost document's (what `name@digest`
    /// pins, and what a `FROM` cache key records).
    pub fn digest(&self) -> &Digest {
        self.indexes.first().map_or(&self.manifest.digest, |index| &index.digest)
    }

    pub fn layers(&self) -> &[Descriptor] {
        &self.image.layers
    }
}

impl RegistryClient {
    /// The manifest `reference` points at (its digest if it has one, else its tag).
    pub fn get_manifest(&self, reference: &Reference) -> Result<FetchedManifest, RegistryError> {
        self.fetch_manifest(reference, &reference.manifest_reference(), reference.digest(), None)
    }

    /// Fetches a manifest by tag or digest. `expected` (the digest asked for) and
    /// `expected_size` (from a descriptor) are checked against the bytes received.
    pub fn fetch_manifest(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<FetchedManifest, RegistryError> {
        let registry = reference.registry();
        let scope = Scope::pull(reference.repository());
        let shown = match expected {
            Some(digest) => format!("{}@{digest}", reference.name()),
            None => format!("{}:{tag_or_digest}", reference.name()),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response =
            self.send(registry, &scope, &format!("/manifests/{tag_or_digest}"), &headers)?;
        if !response.status().is_success() {
            let what = format!("manifest {shown}");
            return Err(self.status_error(registry, &scope, &what, response, |detail| {
                RegistryError::ManifestNotFound { reference: shown.clone(), detail }
            }));
        }
        let content_type = header_text(&response, CONTENT_TYPE.as_str());
        let announced = header_text(&response, DOCKER_CONTENT_DIGEST);
        let what = format!("manifest {shown}");
        if response.content_length().is_some_and(|len| len > MAX_MANIFEST_BYTES) {
            return Err(RegistryError::TooLarge { what, limit: MAX_MANIFEST_BYTES });
        }
        let bytes = read_limited(response, MAX_MANIFEST_BYTES).map_err(|cause| {
            if cause == LIMIT_EXCEEDED {
                RegistryError::TooLarge { what: what.clone(), limit: MAX_MANIFEST_BYTES }
            } else {
                RegistryError::Transfer {
                    registry: registry.to_string(),
                    what: what.clone(),
                    cause,
                }
            }
        })?;
        let digest = verify_manifest_digest(&bytes, expected, announced.as_deref(), &what)?;
        if let Some(size) = expected_size
            && size != bytes.len() as u64
        {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let (media_type, kind) = parse_manifest(&bytes, content_type.as_deref())
            .map_err(|source| RegistryError::Manifest { reference: shown.clone(), source })?;
        Ok(FetchedManifest { bytes, digest, media_type, kind })
    }

    /// Resolves `reference` for `platform`: manifest (through any index), then config.
    pub fn resolve_image(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, RegistryError> {
        let mut indexes = Vec::new();
        let mut current = self.get_manifest(reference)?;
        let invalid = |source| RegistryError::Manifest { reference: reference.to_string(), source };
        let image = loop {
            let index = match &current.kind {
                ManifestKind::Image(image) => break (**image).clone(),
                ManifestKind::Index(index) => index.clone(),
            };
            if indexes.len() >= MAX_INDEX_DEPTH {
                return Err(invalid(ManifestError::NestedTooDeep(MAX_INDEX_DEPTH)));
            }
            let chosen = select_manifest(&index, platform, &reference.to_string())?.clone();
            indexes.push(current);
            current = self.fetch_manifest(
                reference,
                &chosen.digest.to_string(),
                Some(&chosen.digest),
                Some(chosen.size),
            )?;
        };
        let config = self.fetch_config(reference, &image.config)?;
        let diff_ids = config.config.rootfs.diff_ids.len();
        if diff_ids != image.layers.len() {
            return Err(invalid(ManifestError::LayerCountMismatch {
                layers: image.layers.len(),
                diff_ids,
            }));
        }
        Ok(ResolvedImage {
            reference: reference.clone(),
            indexes,
            manifest: current,
            image,
            config,
        })
    }

    /// Fetches and parses an image config blob, verified against its descriptor.
    pub fn fetch_config(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<ImageConfigBlob, RegistryError> {
        if !matches!(descriptor.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG) {
            return Err(RegistryError::Manifest {
                reference: reference.to_string(),
                source: ManifestError::NotAnImage(descriptor.media_type.clone()),
            });
        }
        let bytes = self.fetch_blob_bytes(reference, descriptor, MAX_CONFIG_BYTES)?;
        let config = ImageConfig::parse(&bytes).map_err(|source| RegistryError::Config {
            reference: reference.to_string(),
            digest: descriptor.digest.clone(),
            source,
        })?;
        Ok(ImageConfigBlob { bytes, digest: descriptor.digest.clone(), config })
    }
}

/// Checks manifest bytes against the digest asked for and the registry's announced digest;
/// returns the digest to record (the one asked for, else the sha256 of the bytes).
fn verify_manifest_digest(
    bytes: &[u8],
    expected: Option<&Digest>,
    announced: Option<&str>,
    what: &str,
) -> Result<Digest, RegistryError> {
    let hash_with = |digest: &Digest| {
        let mut hasher = DigestHasher::new(digest.algorithm());
        hasher.update(bytes);
        hasher.finish()
    };
    if let Some(expected) = expected {
        let actual = hash_with(expected);
        if actual != *expected {
            return Err(RegistryError::DigestMismatch {
                what: what.to_string(),
                expected: expected.clone(),
                actual,
            });
        }
        return Ok(actual);
    }
    let computed = Digest::sha256_of(bytes);
    // An announced digest in an algorithm kiln does not know cannot be checked; it is
    // only a hint, so it is ignored rather than failing the pull.
    if let Some(announced) = announced.and_then(|a| a.trim().parse::<Digest>().ok()) {
        let actual = hash_with(&announced);
        if actual != announced {
            return Err(RegistryError::DigestMismatch {
                what: format!("{what} (Docker-Content-Digest header)"),
                expected: announced,
                actual,
            });
        }
    }
    Ok(computed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digest_checks() {
        let bytes = b"{\"schemaVersion\":2}";
        let right = Digest::sha256_of(bytes);
        let wrong = Digest::sha256_of(b"other");
        assert_eq!(verify_manifest_digest(bytes, Some(&right), None, "m").unwrap(), right);
        assert_eq!(
            verify_manifest_digest(bytes, Some(&wrong), None, "manifest r@x")
                .unwrap_err()
                .to_string(),
            format!("digest mismatch for manifest r@x: expected {wrong}, got {right}")
        );
        assert_eq!(
            verify_manifest_digest(bytes, None, Some(&right.to_string()), "m").unwrap(),
            right
        );
        assert_eq!(
            verify_manifest_digest(bytes, None, Some(&wrong.to_string()), "manifest r:t")
                .unwrap_err()
                .to_string(),
            format!(
                "digest mismatch for manifest r:t (Docker-Content-Digest header): expected {wrong}, got {right}"
            )
        );
        assert_eq!(verify_manifest_digest(bytes, None, Some("weird:1234"), "m").unwrap(), right);
    }
}
