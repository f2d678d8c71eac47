//! The seam between exports and the registry client: `type=registry` and
//! `type=image,push=true` hand the image to a [`Pusher`], which the registry module
//! implements (uploading missing layer blobs, then the config, then the manifest).

use super::source::{BlobSource, SourceError};
use crate::image::ExportImage;

/// Uploads images to registries.
pub trait Pusher {
    /// Pushes `image` to `name` (a fully qualified reference such as
    /// `ghcr.io/org/app:1`), reading its layer blobs from `blobs`. The manifest bytes must
    /// be uploaded exactly as `image.manifest_bytes` so the pushed digest is
    /// `image.manifest_digest`.
    fn push(
        &self,
        name: &str,
        image: &ExportImage,
        blobs: &dyn BlobSource,
    ) -> Result<(), SourceError>;
}
