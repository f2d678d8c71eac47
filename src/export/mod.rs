//! Outputs: writing a finished image where `-o/--output` says (see `spec` for the syntax).
//!
//! | output            | what is written                                  | module        |
//! |-------------------|--------------------------------------------------|---------------|
//! | `type=oci`        | OCI image layout as a tar stream                 | [`archive`]   |
//! | `type=docker`     | the same plus `manifest.json` (`docker load`)    | [`archive`]   |
//! | `type=local`      | the flattened root filesystem in a directory     | [`rootfs`]    |
//! | `type=tar`        | the flattened root filesystem as a tar stream    | [`rootfs`]    |
//! | `type=image`      | kiln's image store, tagged (`push=true`: pushed) | `image::store`|
//! | `type=registry`   | pushed through a [`Pusher`]                      | [`push`]      |
//!
//! The input is an [`ExportImage`] (exact config and manifest bytes, layer blobs) that the
//! caller assembled for this output: with the output's media types, its compression
//! (re-encode stored layers first with [`recompress_all`] when the output asks for another
//! compression; [`prepare_image`] does both) and its names, fully qualified
//! (`registry::Reference`; with no `name=`, the `-t` tags). Blobs are read from a
//! [`BlobSource`].
//!
//! Guarantees:
//! - nothing is written when the export fails: files go through a temp file renamed into
//!   place, directories through a temp directory (see [`destination`]);
//! - every blob is verified against its digest and size while it is read;
//! - archives and the rootfs tar are deterministic for a fixed image, names, creation time
//!   and `SOURCE_DATE_EPOCH`;
//! - memory stays bounded: blobs and trees stream.
//!
//! ```no_run
//! use kiln::export::{Exporter, Output, prepare_image};
//! use kiln::image::{ImageConfigFile, LayerBlob, Timestamp};
//!
//! fn export(config: &ImageConfigFile, stored: &[LayerBlob]) -> Result<(), Box<dyn std::error::Error>> {
//!     let root = kiln_cache::Root::open("/var/lib/kiln")?;
//!     let blobs = root.blobs();
//!     let output = Output::parse("type=oci,dest=app.tar,compression=zstd")?;
//!     let options = output.image().cloned().unwrap_or_default();
//!     let names = vec!["docker.io/library/app:latest".to_string()];
//!     let image = prepare_image(&options, config, stored, names, &blobs, &blobs)?;
//!     let exporter = Exporter::new(&blobs, root.path().join("tmp"), Timestamp::now());
//!     let response = exporter.export(&output, &image)?;
//!     println!("{}", response.image_digest.unwrap());
//!     Ok(())
//! }
//! ```

pub mod archive;
pub mod destination;
pub mod metadata;
pub mod names;
pub mod push;
pub mod recompress;
pub mod rootfs;
pub mod source;
pub mod spec;

#[cfg(test)]
pub(crate) mod testutil;

pub use crate::image::{ExportImage, LayerBlob};
pub use archive::{ArchiveFormat, write_archive};
pub use metadata::{ExportResponse, check_iidfile_outputs, write_iidfile, write_metadata_file};
pub use push::{Pusher, RegistryPusher};
pub use recompress::{recompress, recompress_all};
pub use rootfs::{flatten_into, write_rootfs_tar};
pub use source::{BlobSource, Mismatch, SourceError};
pub use spec::{Destination, ImageOutput, Output, SpecError};

use crate::image::manifest::{ANNOTATION_CREATED, layer_compression};
use crate::image::{ImageError, MediaTypes, Timestamp, store_image};
use crate::layer::{IdMap, LayerError};
use kiln_cache::{CacheError, Digest, Root};
use std::cell::RefCell;
use std::io::{self, Write};
use std::path::PathBuf;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("cannot read blob {digest}: {source}")]
    Blob { digest: Digest, source: SourceError },
    #[error("cannot read blob {digest}: {source}")]
    Read { digest: Digest, source: io::Error },
    #[error("blob {digest} is damaged: {}", describe(mismatch, *size))]
    BlobMismatch { digest: Digest, size: u64, mismatch: Mismatch },
    #[error("layer {digest} decompresses to {actual}, not its diff_id {expected}")]
    DiffIdMismatch { digest: Digest, expected: Digest, actual: Digest },
    #[error("cannot unpack layer {digest}: {source}")]
    Apply { digest: Digest, source: LayerError },
    #[error("cannot write the root filesystem tar: {source}")]
    WriteTree { source: LayerError },
    #[error("cannot write output: {0}")]
    Write(io::Error),
    #[error("cannot {op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    #[error("blob store: {0}")]
    Store(CacheError),
    #[error("output file {} is a directory", path.display())]
    DestIsDirectory { path: PathBuf },
    #[error("output directory {} exists and is not a directory", path.display())]
    DestNotDirectory { path: PathBuf },
    #[error("type=image needs kiln's image store, and none was given")]
    NoStore,
    #[error("pushing needs a registry client, and none was given")]
    NoPusher,
    #[error("type={kind} pushes to a registry and needs a name (name=REF or -t)")]
    NoNames { kind: &'static str },
    /// The cause is kept in the message, not as a `source`: the registry's errors name
    /// everything already, and a source would print twice in `{:#}`.
    #[error("cannot push {name}: {cause}")]
    Push { name: String, cause: SourceError },
    #[error(
        "the image was assembled with {} media types but the output asks for {}",
        image.family(),
        output.family()
    )]
    MediaTypesMismatch { image: MediaTypes, output: MediaTypes },
    #[error(
        "layer {digest} is not stored with compression={} as the output asks; recompress it first",
        compression_name(*expected)
    )]
    CompressionMismatch { digest: Digest, expected: crate::layer::Compression },
    #[error("the output produced no image, so there is no image id for --iidfile")]
    NoImageId,
    #[error(
        "type=local and type=tar outputs produce no image, so --iidfile cannot be used with type={kind}"
    )]
    IidfileWithoutImage { kind: &'static str },
}

/// The `compression=` value naming `compression`.
pub fn compression_name(compression: crate::layer::Compression) -> &'static str {
    match compression {
        crate::layer::Compression::Gzip => "gzip",
        crate::layer::Compression::Zstd => "zstd",
        crate::layer::Compression::Uncompressed => "uncompressed",
    }
}

fn describe(mismatch: &Mismatch, size: u64) -> String {
    match mismatch {
        Mismatch::Short { actual } => format!("it ends after {actual} of its {size} bytes"),
        Mismatch::Long => format!("it is longer than its {size} bytes"),
        Mismatch::Digest { actual } => format!("its bytes hash to {actual}"),
    }
}

/// The image an output needs: `stored` layers re-encoded as `options.compression` asks
/// (new blobs go into `store`), the output's media types, `names` (fully qualified).
/// Outputs without image options (`local`, `tar`) take [`ImageOutput::default`].
pub fn prepare_image(
    options: &ImageOutput,
    config: &crate::image::ImageConfigFile,
    stored: &[LayerBlob],
    names: Vec<String>,
    blobs: &dyn BlobSource,
    store: &kiln_cache::BlobStore,
) -> Result<ExportImage, ExportError> {
    let layers = recompress_all(stored, options.compression, blobs, store)?;
    Ok(ExportImage::assemble(config, layers, options.media_types, names)?)
}

/// Runs outputs for one build.
pub struct Exporter<'a> {
    blobs: &'a (dyn BlobSource + Sync),
    scratch: PathBuf,
    created: Timestamp,
    source_date_epoch: Option<i64>,
    id_map: IdMap,
    store: Option<&'a Root>,
    pusher: Option<&'a dyn Pusher>,
    stdout: RefCell<Option<Box<dyn Write + 'a>>>,
}

impl<'a> Exporter<'a> {
    /// An exporter reading blobs from `blobs`, unpacking trees under `scratch` (kiln's
    /// `ROOT/tmp`), stamping layouts with `created` (the build's [`Timestamp`]).
    pub fn new(
        blobs: &'a (dyn BlobSource + Sync),
        scratch: impl Into<PathBuf>,
        created: Timestamp,
    ) -> Self {
        Exporter {
            blobs,
            scratch: scratch.into(),
            created,
            source_date_epoch: None,
            id_map: IdMap::identity(),
            store: None,
            pusher: None,
            stdout: RefCell::new(None),
        }
    }

    /// `SOURCE_DATE_EPOCH`: clamps file mtimes in the `type=tar` stream.
    pub fn source_date_epoch(mut self, epoch: Option<i64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// The user namespace's id map (container ids ↔ ids on disk) for unpacked trees.
    pub fn id_map(mut self, id_map: IdMap) -> Self {
        self.id_map = id_map;
        self
    }

    /// kiln's store, for `type=image`.
    pub fn store(mut self, root: &'a Root) -> Self {
        self.store = Some(root);
        self
    }

    /// The registry client, for `type=registry` and `push=true`.
    pub fn pusher(mut self, pusher: &'a dyn Pusher) -> Self {
        self.pusher = Some(pusher);
        self
    }

    /// Where `dest=-` writes (the process's stdout when not set).
    pub fn stdout(self, sink: Box<dyn Write + 'a>) -> Self {
        *self.stdout.borrow_mut() = Some(sink);
        self
    }

    /// Writes `image` to `output`.
    pub fn export(
        &self,
        output: &Output,
        image: &ExportImage,
    ) -> Result<ExportResponse, ExportError> {
        if let Some(options) = output.image() {
            check_matches(options, image)?;
        }
        match output {
            Output::Oci { dest, .. } => self.archive(ArchiveFormat::Oci, dest, image),
            Output::Docker { dest, .. } => self.archive(ArchiveFormat::Docker, dest, image),
            Output::Local { dest } => {
                destination::write_dir_atomically(dest, |tree| {
                    flatten_into(image, self.blobs, tree, &self.id_map)
                })?;
                Ok(ExportResponse::default())
            }
            Output::Tar { dest } => {
                self.to_destination(dest, |sink| {
                    write_rootfs_tar(
                        image,
                        self.blobs,
                        &self.scratch,
                        &self.id_map,
                        self.source_date_epoch,
                        sink,
                    )
                })?;
                Ok(ExportResponse::default())
            }
            Output::Image { push, .. } => {
                let root = self.store.ok_or(ExportError::NoStore)?;
                store_image(root, image)?;
                if *push {
                    self.push(image, "image")?;
                }
                Ok(image_response(image, image.manifest_descriptor()))
            }
            Output::Registry { .. } => {
                self.push(image, "registry")?;
                Ok(image_response(image, image.manifest_descriptor()))
            }
        }
    }

    fn archive(
        &self,
        format: ArchiveFormat,
        dest: &Destination,
        image: &ExportImage,
    ) -> Result<ExportResponse, ExportError> {
        self.to_destination(dest, |sink| {
            write_archive(format, image, self.blobs, self.created, sink)
        })?;
        let mut descriptor = image.manifest_descriptor();
        descriptor
            .annotations
            .insert(ANNOTATION_CREATED.to_owned(), self.created.rfc3339_seconds());
        Ok(image_response(image, descriptor))
    }

    fn to_destination<T>(
        &self,
        dest: &Destination,
        write: impl FnOnce(&mut dyn Write) -> Result<T, ExportError>,
    ) -> Result<T, ExportError> {
        match dest {
            Destination::File(path) => destination::write_file_atomically(path, write),
            Destination::Stdout => {
                let mut custom = self.stdout.borrow_mut();
                match custom.as_mut() {
                    Some(sink) => {
                        let result = write(sink)?;
                        sink.flush().map_err(ExportError::Write)?;
                        Ok(result)
                    }
                    None => {
                        let mut sink =
                            io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
                        let result = write(&mut sink)?;
                        sink.flush().map_err(ExportError::Write)?;
                        Ok(result)
                    }
                }
            }
        }
    }

    fn push(&self, image: &ExportImage, kind: &'static str) -> Result<(), ExportError> {
        let pusher = self.pusher.ok_or(ExportError::NoPusher)?;
        if image.names.is_empty() {
            return Err(ExportError::NoNames { kind });
        }
        pusher
            .push(&image.names, image, self.blobs)
            .map_err(|cause| ExportError::Push { name: image.names.join(", "), cause })
    }
}

/// The image was assembled for this output: same media types, requested compression.
fn check_matches(options: &ImageOutput, image: &ExportImage) -> Result<(), ExportError> {
    if options.media_types != image.media_types {
        return Err(ExportError::MediaTypesMismatch {
            image: image.media_types,
            output: options.media_types,
        });
    }
    if let Some(expected) = options.compression {
        for layer in &image.layers {
            if layer_compression(&layer.media_type)? != expected {
                return Err(ExportError::CompressionMismatch { digest: layer.digest, expected });
            }
        }
    }
    Ok(())
}

fn image_response(image: &ExportImage, descriptor: crate::image::Descriptor) -> ExportResponse {
    ExportResponse {
        image_digest: Some(image.manifest_digest),
        config_digest: Some(image.config_digest),
        descriptor: Some(descriptor),
        image_name: (!image.names.is_empty()).then(|| image.names.join(",")),
    }
}

#[cfg(test)]
mod tests;
