//! Pushing an image: its blobs into every target repository, then its manifest under
//! every target tag.
//!
//! Order and invariants:
//! - targets naming a digest (`name@sha256:…`) must name the manifest's own digest;
//! - blobs go first, repository by repository, each repository's blobs in parallel
//!   ([`ClientOptions::parallel_uploads`](super::ClientOptions)), through
//!   [`RegistryClient::upload_blob`] (existence check, mounts, upload). A blob already sent
//!   to one repository of a registry is mounted into the next from there;
//! - manifests go last, only once every blob of every target is in place, so a failed push
//!   leaves no tag pointing at a partial image. The manifest is sent as the exact bytes its
//!   digest was computed over, with its media type as `Content-Type`; a
//!   `Docker-Content-Digest` answer naming another digest is an error.

use super::auth::Scope;
use super::client::RegistryClient;
use super::digest::Digest;
use super::error::RegistryError;
use super::manifest::Descriptor;
use super::parallel::for_each_parallel;
use super::reference::Reference;
use super::upload::{BlobOutcome, OpenBlob, check_announced_digest};
use reqwest::header::CONTENT_TYPE;
use std::collections::BTreeMap;

/// An image as a push needs it.
#[derive(Debug, Clone)]
pub struct PushImage<'a> {
    /// The manifest's exact bytes.
    pub manifest: &'a [u8],
    pub manifest_media_type: &'a str,
    pub manifest_digest: Digest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What happens during a push, for progress displays.
#[derive(Debug, Clone, Copy)]
pub enum PushEvent<'a> {
    /// Bytes of a blob the registry acknowledged.
    BlobProgress { target: &'a Reference, descriptor: &'a Descriptor, done: u64 },
    /// A blob is in the repository.
    BlobDone { target: &'a Reference, descriptor: &'a Descriptor, outcome: &'a BlobOutcome },
    /// A manifest was put under a tag (or digest).
    ManifestPushed { target: &'a Reference, digest: &'a Digest },
}

/// Repositories (`registry` → repository names) that may already hold a blob, for mounts.
pub type MountSources = BTreeMap<Digest, Vec<(String, String)>>;

impl RegistryClient {
    /// Pushes `image` to every reference of `targets` (see the module docs). `open` reads a
    /// blob, verified; `mount_sources` names repositories that may hold blobs already.
    pub fn push_image(
        &self,
        targets: &[Reference],
        image: &PushImage<'_>,
        open: &OpenBlob<'_>,
        mount_sources: &MountSources,
        progress: &(dyn Fn(PushEvent<'_>) + Sync),
    ) -> Result<(), RegistryError> {
        for target in targets {
            if let Some(named) = target.digest().filter(|d| **d != image.manifest_digest) {
                return Err(RegistryError::PushDigest {
                    reference: target.to_string(),
                    named: named.clone(),
                    actual: image.manifest_digest.clone(),
                });
            }
        }
        // Each blob once, however many layers share it (empty layers often do).
        let mut blobs: Vec<&Descriptor> = Vec::new();
        for blob in image.layers.iter().chain([&image.config]) {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob);
            }
        }
        // One target per repository carries the blobs there.
        let mut repositories: Vec<&Reference> = Vec::new();
        for target in targets {
            if !repositories.iter().any(|r| r.name() == target.name()) {
                repositories.push(target);
            }
        }
        let mut pushed: Vec<&Reference> = Vec::new();
        for target in repositories {
            let mut mounts = mount_sources.clone();
            for earlier in pushed.iter().filter(|r| r.registry() == target.registry()) {
                for blob in &blobs {
                    let from = (earlier.registry().to_string(), earlier.repository().to_string());
                    mounts.entry(blob.digest.clone()).or_default().insert(0, from);
                }
            }
            for_each_parallel(&blobs, self.options.parallel_uploads, |descriptor| {
                let from: Vec<String> = mounts
                    .get(&descriptor.digest)
                    .into_iter()
                    .flatten()
                    .filter(|(registry, _)| registry == target.registry())
                    .map(|(_, repository)| repository.clone())
                    .collect();
                let report = |done, _total| {
                    progress(PushEvent::BlobProgress { target, descriptor, done });
                };
                let outcome = self.upload_blob(target, descriptor, open, &from, &report)?;
                progress(PushEvent::BlobDone { target, descriptor, outcome: &outcome });
                Ok::<(), RegistryError>(())
            })?;
            pushed.push(target);
        }
        for target in targets {
            self.put_manifest(target, image)?;
            progress(PushEvent::ManifestPushed { target, digest: &image.manifest_digest });
        }
        Ok(())
    }

    /// `PUT /v2/<name>/manifests/<tag or digest>` with the manifest's exact bytes.
    fn put_manifest(&self, target: &Reference, image: &PushImage<'_>) -> Result<(), RegistryError> {
        let registry = target.registry();
        let scope = Scope::push(target.repository());
        let path = format!("/v2/{}/manifests/{}", target.repository(), target.manifest_reference());
        let what = format!("manifest {target}");
        let response = self.send_with(registry, &scope, &|http, base_url| {
            http.put(format!("{base_url}{path}"))
                .header(CONTENT_TYPE, image.manifest_media_type)
                .body(image.manifest.to_vec())
        })?;
        if !response.status().is_success() {
            return Err(self.status_error(registry, &scope, &what, response, |detail| {
                RegistryError::Status {
                    registry: registry.to_string(),
                    what: format!("PUT {what}"),
                    status: 404,
                    detail,
                }
            }));
        }
        check_announced_digest(&response, &image.manifest_digest, &what)
    }
}
