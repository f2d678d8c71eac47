//! The one error type of the layer module.
//!
//! Every variant that concerns a tar entry or a file names it: `path` is the entry's path
//! inside the layer (as written in the tar, or as found in the tree being diffed) so the user
//! can tell which entry of which layer was refused.

use std::io;
use std::path::PathBuf;

/// What went wrong while writing or applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading the tree being turned into a layer failed.
    #[error("cannot read {path}: {source}")]
    ReadTree { path: PathBuf, source: io::Error },

    /// A file changed size while its bytes were being copied into the tar.
    #[error("{path} changed while it was written into the layer (expected {expected} bytes)")]
    FileChanged { path: PathBuf, expected: u64 },

    /// The overlay upper directory holds something a layer cannot express.
    #[error("overlay upper entry {path} cannot be written as a layer: {reason}")]
    Overlay { path: PathBuf, reason: &'static str },

    /// A host uid or gid of a file has no container id in the id map.
    #[error("{path}: host {kind} {id} has no container id in the id map")]
    UnmappedId { path: PathBuf, kind: &'static str, id: u32 },

    /// A walker produced entries out of order (a bug in kiln, reported rather than hidden).
    #[error("layer entries out of order: {path:?} after {previous:?}")]
    Unsorted { previous: String, path: String },

    /// Writing the layer stream into its sink failed.
    #[error("cannot write layer: {0}")]
    Write(#[source] io::Error),

    /// A line of a uid_map/gid_map style id map is malformed.
    #[error("invalid id map line {line:?}: {reason}")]
    IdMap { line: String, reason: &'static str },

    /// The layer stream could not be read (decompression or tar framing).
    #[error("cannot read layer stream: {0}")]
    ReadStream(#[source] io::Error),

    /// The tar stream is malformed at an entry.
    #[error("malformed tar entry {path:?}: {reason}")]
    Malformed { path: String, reason: String },

    /// A tar entry has a type kiln does not unpack.
    #[error("tar entry {path:?} has unsupported type {kind:?}")]
    UnsupportedType { path: String, kind: char },

    /// Applying one entry onto the target root failed.
    #[error("cannot apply tar entry {path:?}: {op}: {source}")]
    Apply { path: String, op: &'static str, source: io::Error },

    /// The target root of an application cannot be opened.
    #[error("cannot open target root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
}
