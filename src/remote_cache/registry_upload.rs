//! [`CacheUploader`] over kiln's registry push ([`RegistryClient::push_image`]): the cache's
//! blobs go up first — each checked with `HEAD`, then mounted from a repository of the same
//! registry that an imported cache came from, and only then read and sent — and the
//! manifest last, as its exact bytes.
//!
//! Invariant: a layer is read from the [`BlobSource`] (which downloads lazy layers) only
//! when the target repository has it neither already nor by mount, and every byte read is
//! checked against its digest and size on the way out ([`VerifyingReader`]).

use super::fetch::{registry_descriptor, registry_digest};
use super::format::Artifact;
use super::upload::{CacheUploader, HeldBy, UploadError};
use crate::export::BlobSource;
use crate::export::source::VerifyingReader;
use crate::image::manifest::OCI_MANIFEST;
use crate::registry::push::{MountSources, PushEvent, PushImage};
use crate::registry::{Descriptor, Reference, RegistryClient};
use crate::solver::progress::StepReporter;
use std::io::{self, Read};

/// The repositories to try cross-repository mounts from, for blobs the caches hold.
pub fn mount_sources(held_by: &HeldBy) -> MountSources {
    held_by
        .iter()
        .map(|(digest, references)| {
            let repositories = references
                .iter()
                .map(|r| (r.registry().to_string(), r.repository().to_string()))
                .collect();
            (registry_digest(digest), repositories)
        })
        .collect()
}

/// Hears the push events of an upload, with the progress step it belongs to.
pub type PushProgress<'a> = dyn Fn(usize, PushEvent<'_>) + Sync + 'a;

/// Uploads caches with a [`RegistryClient`].
pub struct RegistryCacheUploader<'a> {
    client: &'a RegistryClient,
    progress: Option<&'a PushProgress<'a>>,
}

impl<'a> RegistryCacheUploader<'a> {
    pub fn new(client: &'a RegistryClient) -> Self {
        RegistryCacheUploader { client, progress: None }
    }

    /// Where push events go.
    pub fn progress(mut self, progress: &'a PushProgress<'a>) -> Self {
        self.progress = Some(progress);
        self
    }
}

impl CacheUploader for RegistryCacheUploader<'_> {
    fn upload(
        &self,
        target: &Reference,
        artifact: &Artifact,
        blobs: &dyn BlobSource,
        held_by: &HeldBy,
        report: &StepReporter<'_>,
    ) -> Result<(), UploadError> {
        let image = PushImage {
            manifest: &artifact.manifest,
            manifest_media_type: OCI_MANIFEST,
            manifest_digest: registry_digest(&artifact.manifest_digest),
            config: registry_descriptor(&artifact.config_descriptor()),
            layers: artifact.layers.iter().map(registry_descriptor).collect(),
        };
        let mount_sources = mount_sources(held_by);
        let config_digest = image.config.digest.clone();
        let open = |descriptor: &Descriptor| -> io::Result<Box<dyn Read + '_>> {
            if descriptor.digest == config_digest {
                return Ok(Box::new(&artifact.config[..]));
            }
            let digest: kiln_cache::Digest =
                descriptor.digest.to_string().parse().map_err(io::Error::other)?;
            let reader = blobs.open(&digest).map_err(io::Error::other)?;
            Ok(Box::new(VerifyingReader::new(reader, digest, descriptor.size)))
        };
        let (_, step) = report.target();
        let progress = |event: PushEvent<'_>| {
            if let Some(progress) = self.progress {
                progress(step, event);
            }
        };
        self.client.push_image(
            std::slice::from_ref(target),
            &image,
            &open,
            &mount_sources,
            &progress,
        )?;
        Ok(())
    }
}
