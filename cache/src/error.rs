//! The one error type of the crate.
//!
//! Every variant carries what a user needs to act: the path that failed, the digest
//! involved, the cache key. Messages are lowercase and say what failed and why.

use crate::digest::Digest;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What we were doing ("open", "rename", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A digest string is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {text:?}: {reason}")]
    InvalidDigest {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes written did not hash to the digest they were announced with.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: Digest,
        /// The digest of the bytes actually received.
        actual: Digest,
    },
    /// A blob is not in the store.
    #[error("blob {digest} not found in the store")]
    BlobNotFound {
        /// The digest looked up.
        digest: Digest,
    },
    /// A descriptor's size disagrees with the stored blob it points to.
    #[error("descriptor of {digest} says {declared} bytes but the stored blob has {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the descriptor declares.
        declared: u64,
        /// The size of the stored blob.
        actual: u64,
    },
    /// A cache record refers to a blob the store does not have.
    #[error("cache record {key} references blob {digest}, which is not in the store")]
    RecordBlobMissing {
        /// The record's key.
        key: String,
        /// The missing blob.
        digest: Digest,
    },
    /// The root's `oci-layout` file names a version we do not know.
    #[error("unsupported image layout version {version:?} in {}", path.display())]
    UnsupportedLayout {
        /// The `oci-layout` file.
        path: PathBuf,
        /// The version it names.
        version: String,
    },
    /// A metadata file of the root (oci-layout, index.json, a record) is not valid JSON
    /// of the expected shape.
    #[error("corrupt {what} {}: {reason}", path.display())]
    Corrupt {
        /// What kind of file ("image layout", "image index", "cache record").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A cache key is not 64 lowercase hex characters.
    #[error("invalid cache key {text:?}: expected 64 lowercase hex characters")]
    InvalidCacheKey {
        /// The text as given.
        text: String,
    },
    /// A snapshot id is not 64 lowercase hex characters.
    #[error("invalid snapshot id {text:?}: expected 64 lowercase hex characters")]
    InvalidSnapshotId {
        /// The text as given.
        text: String,
    },
    /// An image reference cannot be stored as a tag.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No default root can be derived from the environment.
    #[error("cannot choose a default root: {reason}; pass --root or set KILN_ROOT")]
    NoDefaultRoot {
        /// Why not.
        reason: &'static str,
    },
    /// Serialising a value to JSON failed.
    #[error("cannot encode {what} as json: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Adds path context to `io::Result`s: `fs::read(&p).at("read", &p)?` (the path is copied only on error).
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| CacheError::Io { op, path: path.to_path_buf(), source })
    }
}
