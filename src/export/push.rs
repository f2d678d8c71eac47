//! The seam between exports and the registry client: `type=registry` and
//! `type=image,push=true` hand the image to a [`Pusher`]; [`RegistryPusher`] is the real
//! one, over [`RegistryClient::push_image`] (missing blobs first, in parallel, then the
//! manifest under every name).
//!
//! Invariants of [`RegistryPusher`]: the image is re-checked ([`ExportImage::check`])
//! before anything is sent; every layer is read from the blob source through a
//! [`VerifyingReader`], so damaged stored bytes fail the push instead of reaching the
//! registry; the manifest is sent as `image.manifest_bytes`, so the pushed digest is
//! `image.manifest_digest`.

use super::source::{BlobSource, SourceError, VerifyingReader};
use crate::image::ExportImage;
use crate::registry::digest::Digest;
use crate::registry::manifest::Descriptor;
use crate::registry::push::{MountSources, PushEvent, PushImage};
use crate::registry::{Reference, RegistryClient};
use std::io::{self, Read};

/// Uploads images to registries.
pub trait Pusher {
    /// Pushes `image` under every name of `names` (fully qualified references such as
    /// `ghcr.io/org/app:1`), reading its layer blobs from `blobs`. No manifest may be
    /// pushed before every blob of every name is in place. The manifest bytes must be
    /// uploaded exactly as `image.manifest_bytes` so the pushed digest is
    /// `image.manifest_digest`.
    fn push(
        &self,
        names: &[String],
        image: &ExportImage,
        blobs: &(dyn BlobSource + Sync),
    ) -> Result<(), SourceError>;
}

/// Pushes with a [`RegistryClient`].
pub struct RegistryPusher<'a> {
    client: &'a RegistryClient,
    mount_sources: MountSources,
    progress: Option<&'a (dyn Fn(PushEvent<'_>) + Sync)>,
}

impl<'a> RegistryPusher<'a> {
    pub fn new(client: &'a RegistryClient) -> Self {
        RegistryPusher { client, mount_sources: MountSources::new(), progress: None }
    }

    /// Repositories that may hold some blobs already (a base image's), to mount from.
    pub fn mount_sources(mut self, sources: MountSources) -> Self {
        self.mount_sources = sources;
        self
    }

    /// Where push events go.
    pub fn progress(mut self, progress: &'a (dyn Fn(PushEvent<'_>) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// The mount sources for blobs that came with the base image `base` (a reference as a
/// `FROM` resolved it; `oci-layout://` and other non-registry bases give none).
pub fn base_mount_sources(
    base: Option<&str>,
    blobs: impl IntoIterator<Item = kiln_cache::Digest>,
) -> MountSources {
    let Some(base) = base.and_then(|b| Reference::parse(b).ok()) else {
        return MountSources::new();
    };
    let from = (base.registry().to_string(), base.repository().to_string());
    blobs.into_iter().map(|digest| (registry_digest(&digest), vec![from.clone()])).collect()
}

fn registry_digest(digest: &kiln_cache::Digest) -> Digest {
    digest.to_string().parse().expect("a store digest is a valid registry digest")
}

impl Pusher for RegistryPusher<'_> {
    fn push(
        &self,
        names: &[String],
        image: &ExportImage,
        blobs: &(dyn BlobSource + Sync),
    ) -> Result<(), SourceError> {
        image.check()?;
        let targets = names.iter().map(|n| Reference::parse(n)).collect::<Result<Vec<_>, _>>()?;
        let config = Descriptor::new(
            image.media_types.config(),
            registry_digest(&image.config_digest),
            image.config_bytes.len() as u64,
        );
        let layers = image
            .layers
            .iter()
            .map(|l| Descriptor::new(&l.media_type, registry_digest(&l.digest), l.size))
            .collect();
        let pushed = PushImage {
            manifest: &image.manifest_bytes,
            manifest_media_type: image.media_types.manifest(),
            manifest_digest: registry_digest(&image.manifest_digest),
            config,
            layers,
        };
        let config_digest = pushed.config.digest.clone();
        let open = |descriptor: &Descriptor| -> io::Result<Box<dyn Read + '_>> {
            if descriptor.digest == config_digest {
                // Checked against its digest by `image.check()` above.
                return Ok(Box::new(&image.config_bytes[..]));
            }
            let digest: kiln_cache::Digest =
                descriptor.digest.to_string().parse().map_err(io::Error::other)?;
            let reader = blobs.open(&digest).map_err(io::Error::other)?;
            Ok(Box::new(VerifyingReader::new(reader, digest, descriptor.size)))
        };
        let quiet = |_: PushEvent<'_>| {};
        let progress = self.progress.unwrap_or(&quiet);
        self.client.push_image(&targets, &pushed, &open, &self.mount_sources, progress)?;
        Ok(())
    }
}
