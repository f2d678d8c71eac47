//! `--cache-to type=local,dest=DIR`: writing a cache artifact into an OCI image layout.
//!
//! ```text
//! DIR/
//! ├── oci-layout            {"imageLayoutVersion":"1.0.0"} (written when missing)
//! ├── index.json            the entry annotated org.opencontainers.image.ref.name = TAG is
//! │                         replaced by the new manifest; other entries are kept
//! └── blobs/sha256/<hex>    layers, config and manifest (blobs already there are kept)
//! ```
//!
//! Invariants: every file is written to a temp file beside it and renamed into place
//! ([`write_file_atomically`]); blobs first, `index.json` last, so a failed or interrupted
//! export leaves `index.json` naming the previous, complete cache. Layer bytes are verified
//! against their digest and size while copied. A blob whose file already has the right size
//! is not written again (content addressed). Blobs the new manifest no longer uses are left
//! in place, as BuildKit's local cache does; delete the directory to reclaim them.

use super::format::Artifact;
use crate::export::destination::write_file_atomically;
use crate::export::source::VerifyingReader;
use crate::export::{BlobSource, ExportError};
use crate::image::Descriptor;
use crate::image::manifest::ANNOTATION_REF_NAME;
use crate::registry::manifest::{ImageIndex, OCI_INDEX};
use kiln_cache::{Digest, IMAGE_LAYOUT_VERSION};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The largest existing `index.json` read back.
const MAX_INDEX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// Why a cache could not be written into a directory.
#[derive(Debug, thiserror::Error)]
pub enum LayoutWriteError {
    #[error("{} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Write(#[from] ExportError),
    #[error("cannot update {}: {reason}", path.display())]
    Index { path: PathBuf, reason: String },
}

/// Writes `artifact` into `dir` under `tag` (see the module docs); `on_write` hears each
/// blob written (not those already there).
pub fn write(
    dir: &Path,
    tag: &str,
    artifact: &Artifact,
    blobs: &dyn BlobSource,
    on_write: &dyn Fn(&Descriptor),
) -> Result<(), LayoutWriteError> {
    if dir.exists() && !dir.is_dir() {
        return Err(LayoutWriteError::NotADirectory(dir.to_path_buf()));
    }
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(|source| ExportError::Io {
        op: "create directory",
        path: blob_dir.clone(),
        source,
    })?;
    let marker = dir.join("oci-layout");
    if !marker.is_file() {
        let text = format!("{{\"imageLayoutVersion\":\"{IMAGE_LAYOUT_VERSION}\"}}");
        write_file_atomically(&marker, |w| {
            w.write_all(text.as_bytes()).map_err(ExportError::Write)
        })?;
    }
    let present = |descriptor: &Descriptor| {
        fs::metadata(blob_dir.join(descriptor.digest.hex()))
            .is_ok_and(|m| m.is_file() && m.len() == descriptor.size)
    };
    for layer in &artifact.layers {
        if !present(layer) {
            copy_blob(&blob_dir, layer, blobs)?;
            on_write(layer);
        }
    }
    for (descriptor, bytes) in [
        (artifact.config_descriptor(), &artifact.config),
        (artifact.manifest_descriptor(), &artifact.manifest),
    ] {
        if !present(&descriptor) {
            let path = blob_dir.join(descriptor.digest.hex());
            write_file_atomically(&path, |w| w.write_all(bytes).map_err(ExportError::Write))?;
            on_write(&descriptor);
        }
    }
    update_index(dir, tag, artifact)
}

/// Copies one layer blob, verified, to `blob_dir`.
fn copy_blob(
    blob_dir: &Path,
    layer: &Descriptor,
    blobs: &dyn BlobSource,
) -> Result<(), ExportError> {
    let digest: Digest = layer.digest;
    let reader = blobs.open(&digest).map_err(|source| ExportError::Blob { digest, source })?;
    let mut verifying = VerifyingReader::new(reader, digest, layer.size);
    write_file_atomically(&blob_dir.join(digest.hex()), |w| {
        io::copy(&mut verifying, w).map_err(|source| match verifying.mismatch() {
            Some(mismatch) => {
                ExportError::BlobMismatch { digest, size: layer.size, mismatch: mismatch.clone() }
            }
            None => ExportError::Read { digest, source },
        })?;
        Ok(())
    })
}

/// Points `tag` in `dir/index.json` at the artifact's manifest.
fn update_index(dir: &Path, tag: &str, artifact: &Artifact) -> Result<(), LayoutWriteError> {
    let path = dir.join("index.json");
    let invalid = |reason: String| LayoutWriteError::Index { path: path.clone(), reason };
    let mut index = match fs::File::open(&path) {
        Ok(file) => {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(file, MAX_INDEX_JSON_BYTES + 1), &mut bytes)
                .map_err(|e| invalid(e.to_string()))?;
            if bytes.len() as u64 > MAX_INDEX_JSON_BYTES {
                return Err(invalid(format!("it is larger than {MAX_INDEX_JSON_BYTES} bytes")));
            }
            serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| invalid(e.to_string()))?
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: None,
            extra: serde_json::Map::new(),
        },
        Err(err) => return Err(invalid(err.to_string())),
    };
    index.manifests.retain(|entry| {
        entry.annotations.as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME)).map(String::as_str)
            != Some(tag)
    });
    let mut entry = super::fetch::registry_descriptor(&artifact.manifest_descriptor());
    entry.annotations = Some(BTreeMap::from([(ANNOTATION_REF_NAME.to_string(), tag.to_string())]));
    index.manifests.push(entry);
    let bytes = crate::image::canonical::to_canonical_bytes(&index)
        .map_err(|source| ExportError::Encode { what: "index.json", source })?;
    write_file_atomically(&path, |w| w.write_all(&bytes).map_err(ExportError::Write))?;
    Ok(())
}
