//! The seam between `--cache-to type=registry` and the registry client: a cache artifact is
//! handed to a [`CacheUploader`]; [`super::registry_upload`] implements it with kiln's push.
//!
//! Contract for implementations: every layer blob and the config go into the target's
//! repository first — a blob the repository already holds (or can mount from a repository
//! of the same registry) is not read at all, so lazy layers of an imported cache are only
//! downloaded when they must really be sent; the manifest goes last, sent as
//! `artifact.manifest` exactly (its digest is `artifact.manifest_digest`), so a failed upload
//! leaves the previous cache under the tag. `held_by` names, for blobs of imported caches,
//! the registry repositories known to hold them: a cross-repository mount from one of the
//! same registry avoids downloading a lazy layer only to upload it again.

use super::format::Artifact;
use crate::export::BlobSource;
use crate::registry::Reference;
use crate::solver::progress::StepReporter;
use kiln_cache::Digest;
use std::collections::BTreeMap;
use std::error::Error;

/// An upload failure, kept whole for the message.
pub type UploadError = Box<dyn Error + Send + Sync>;

/// The registry repositories known to hold each blob (from `--cache-from`).
pub type HeldBy = BTreeMap<Digest, Vec<Reference>>;

/// Pushes cache artifacts to registries.
pub trait CacheUploader: Sync {
    /// Puts `artifact` under `target` (see the module docs), reading layer blobs from
    /// `blobs` only when they must be sent; transfers are reported through `report`.
    fn upload(
        &self,
        target: &Reference,
        artifact: &Artifact,
        blobs: &dyn BlobSource,
        held_by: &HeldBy,
        report: &StepReporter<'_>,
    ) -> Result<(), UploadError>;
}
