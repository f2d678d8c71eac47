//! Layers: deterministic layer tars from filesystem diffs, and confined application of tars.
//!
//! # Writing
//!
//! [`write_layer`] turns a [`DiffSource`] into a layer blob in one streaming pass, computing
//! the `diff_id` (sha256 of the tar) and the blob's digest and size while writing into any
//! [`Write`] sink:
//!
//! - [`DiffSource::OverlayUpper`]: the upper dir of the overlay a RUN ran on; overlay
//!   whiteouts and opaque dirs become OCI whiteouts (see `diff_overlay`);
//! - [`DiffSource::Walk`]: the changes from a lower tree to an upper tree (see `diff_walk`);
//! - [`DiffSource::Directory`]: a plain directory taken whole.
//!
//! The same tree always gives the same bytes: entries sorted bytewise by tar name, headers set
//! by kiln (no host user names, mtimes clamped to `SOURCE_DATE_EPOCH`), fixed compressor
//! settings (see `tar_writer` and `compress`).
//!
//! # Applying
//!
//! [`apply_layer`] unpacks a tar stream (gzip, zstd, bzip2, xz or plain, told by its first
//! bytes) into a directory treated as a root, either flattening whiteouts onto an existing
//! rootfs ([`ApplyMode::Flatten`]) or keeping them as overlayfs whiteouts in a fresh directory
//! that becomes an overlay lower layer ([`ApplyMode::OverlayLower`]). Every path is resolved
//! inside the root, whatever `..`, absolute names, symlinks or hard links say (see
//! `confined` for how and why).
//!
//! ```no_run
//! use kiln::layer::{apply_layer, write_layer, ApplyOptions, DiffSource, WriteOptions};
//! use std::path::Path;
//!
//! let mut blob = Vec::new();
//! let desc = write_layer(DiffSource::Directory(Path::new("/tmp/ctx")), &WriteOptions::default(), &mut blob)?;
//! println!("{} {} {}", desc.digest, desc.diff_id, desc.size);
//! let stats = apply_layer(&blob[..], Path::new("/tmp/rootfs"), &ApplyOptions::default())?;
//! println!("{} entries", stats.entries);
//! # Ok::<(), kiln::layer::LayerError>(())
//! ```

mod apply;
mod compress;
mod confined;
mod diff_overlay;
mod diff_walk;
mod error;
mod idmap;
mod parallel_gzip;
mod tar_entry;
mod tar_writer;
mod tree;
mod xattrs;

pub use apply::{ApplyMode, ApplyOptions, ApplyStats, apply_layer};
pub(crate) use compress::Encoder;
pub use compress::{
    Compression, DetectedCompression, GZIP_LEVEL, ZSTD_LEVEL, ZSTD_WORKERS, decompress,
};
pub use error::LayerError;
pub use idmap::{IdMap, IdRange};
pub use tree::Exclude;

use std::io::Write;
use std::path::Path;

/// Where the content of a layer comes from.
#[derive(Debug, Clone, Copy)]
pub enum DiffSource<'a> {
    /// An overlayfs upper directory.
    OverlayUpper(&'a Path),
    /// The changes from `lower` to `upper`.
    Walk { lower: &'a Path, upper: &'a Path },
    /// A whole directory.
    Directory(&'a Path),
}

/// How a layer is written.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: every mtime later than this is written as this.
    pub source_date_epoch: Option<i64>,
    /// Paths left out with their subtrees (mount stubs, RUN mount targets).
    pub exclude: Exclude,
    /// Translates host owners of the diffed tree back to container ids.
    pub id_map: IdMap,
}

/// A written layer blob, as an OCI descriptor needs it and the image config's `diff_ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:<hex>` of the blob as written.
    pub digest: String,
    /// Bytes of the blob as written.
    pub size: u64,
    /// OCI layer media type of the blob.
    pub media_type: &'static str,
}

/// Writes the layer of `source` into `sink`, compressed as `options` says.
pub fn write_layer<W: Write>(
    source: DiffSource<'_>,
    options: &WriteOptions,
    sink: W,
) -> Result<LayerDescriptor, LayerError> {
    let pipeline =
        compress::BlobPipeline::new(options.compression, sink).map_err(LayerError::Write)?;
    let mut writer =
        tar_writer::TarWriter::new(pipeline, options.source_date_epoch, options.id_map.clone());
    match source {
        DiffSource::OverlayUpper(upper) => diff_overlay::write_tree(
            &mut writer,
            upper,
            b"",
            diff_overlay::TreeKind::OverlayUpper,
            &options.exclude,
        )?,
        DiffSource::Walk { lower, upper } => {
            diff_walk::write_walk_diff(&mut writer, lower, upper, &options.exclude)?
        }
        DiffSource::Directory(dir) => diff_overlay::write_tree(
            &mut writer,
            dir,
            b"",
            diff_overlay::TreeKind::Plain,
            &options.exclude,
        )?,
    }
    let sums = writer.finish()?.finish().map_err(LayerError::Write)?;
    Ok(LayerDescriptor {
        diff_id: sums.diff_id,
        digest: sums.digest,
        size: sums.size,
        media_type: options.compression.media_type(),
    })
}
