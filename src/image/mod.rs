//! Images as kiln writes and reads them: the image config file, manifests and indexes, the
//! canonical JSON they are written in, and storing a finished image in the local store.
//!
//! - [`config`]: [`ImageConfigFile`], Docker's image config with every field Docker writes
//!   and unknown ones kept; the one config type for pulled and built images.
//! - [`derive`](mod@derive): the frontend's runtime config to and from the file's, and
//!   [`derive_timed()`]: base config + stage + new layers → the built image's config.
//! - [`manifest`]: [`Manifest`], [`Index`], [`Descriptor`] in OCI or Docker media types.
//! - [`assembled`]: [`ExportImage`], a finished image's exact bytes and layers.
//! - [`store`]: [`store_image`], kiln's default output.
//! - [`layout`]: reading images out of OCI image layouts (`oci-layout://` build contexts,
//!   kiln's store); [`local`]: the store's tagged images read back (`kiln images`, `save`).
//! - [`canonical`]: the byte form of every JSON document kiln writes.
//! - [`time`]: [`Timestamp`], the build time as configs write it.
//!
//! Invariant: every config, manifest and index kiln writes goes through
//! [`canonical::to_canonical_bytes`], and every digest is computed over those exact bytes,
//! so equal inputs give equal digests (with `SOURCE_DATE_EPOCH`, equal images).
//!
//! ```
//! use kiln::image::{derive, ExportImage, ImageConfigFile, MediaTypes, Timestamp};
//! use kiln_frontend::graph::StageImage;
//! use kiln_frontend::platform::Platform;
//!
//! let base = ImageConfigFile::scratch(&Platform::new("linux", "amd64", None));
//! let created = Timestamp::for_build(Some(0))?;
//! let config = derive(&base, &StageImage::default(), &[], created)?;
//! let image = ExportImage::assemble(&config, vec![], MediaTypes::Oci, vec![])?;
//! assert_eq!(image.config_bytes, config.to_bytes()?);
//! # Ok::<(), kiln::image::ImageError>(())
//! ```

pub mod assembled;
pub mod canonical;
pub mod config;
pub mod derive;
pub mod layout;
pub mod local;
pub mod manifest;
pub mod store;
pub mod time;

pub use assembled::{ExportImage, LayerBlob};
pub use config::{ContainerConfig, HealthConfig, History, ImageConfigFile, RootFs};
pub use derive::{HISTORY_COMMENT, NewLayer, derive, derive_timed};
pub use manifest::{Descriptor, Index, Manifest, MediaTypes};
pub use store::store_image;
pub use time::Timestamp;

use kiln_cache::{CacheError, Digest};

/// Why an image document could not be read, made or stored.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image config: {source}")]
    ParseConfig { source: serde_json::Error },
    #[error("invalid manifest: {source}")]
    ParseManifest { source: serde_json::Error },
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    #[error("time {secs} (seconds since 1970) is outside years 0000-9999")]
    TimeOutOfRange { secs: i64 },
    #[error("invalid base image config: missing {field}")]
    MissingPlatformField { field: &'static str },
    #[error("the stage's history records {history} layers but {layers} new layers were given")]
    LayerCountMismatch { history: usize, layers: usize },
    #[error(
        "the config lists {config} diff_ids and {layers} layers were given{}",
        first_difference.map_or(String::new(), |i| format!(", first different at position {i}"))
    )]
    DiffIdsMismatch { config: usize, layers: usize, first_difference: Option<usize> },
    #[error("unsupported layer media type {media_type:?}")]
    UnsupportedLayerMediaType { media_type: String },
    #[error(
        "zstd-compressed layers need OCI media types (compression=zstd conflicts with oci-mediatypes=false)"
    )]
    ZstdNeedsOciTypes,
    #[error("image {what} bytes hash to {actual}, not the declared {declared}")]
    BytesDigestMismatch { what: &'static str, declared: Digest, actual: Digest },
    #[error("manifest {manifest} does not list the image's config and layers")]
    ManifestMismatch { manifest: Digest },
    #[error("layer {digest} is {declared} bytes in the manifest but {actual} bytes in the store")]
    LayerSizeMismatch { digest: Digest, declared: u64, actual: u64 },
    #[error("cannot store image: {0}")]
    Store(CacheError),
    #[error("cannot store image blob {digest}: {source}")]
    StoreWrite { digest: Digest, source: std::io::Error },
}
