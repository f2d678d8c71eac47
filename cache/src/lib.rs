//! kiln's content-addressed store: blobs by sha256, the cache-key index, tagged images,
//! unpacked layer snapshots, the locks that let many `kiln` processes share one root, and
//! garbage collection and verification. It knows nothing about Dockerfiles.
//!
//! # Layout
//!
//! The root is also a valid OCI image layout, so `skopeo inspect oci:ROOT:REF` and `umoci`
//! read the image store:
//!
//! ```text
//! ROOT/
//! ├── oci-layout                     {"imageLayoutVersion":"1.0.0"}
//! ├── index.json                     OCI index of tagged images; annotation
//! │                                  org.opencontainers.image.ref.name = full reference
//! ├── blobs/
//! │   └── sha256/<hex>               every blob: layers, configs, manifests (read-only files)
//! ├── cache/
//! │   └── records/<kk>/<key>.json    cache-key records, one atomic file each (kk = key[..2])
//! ├── snapshots/<id>/                unpacked layer trees (id = diff_id or chain id hex)
//! ├── tmp/                           writes in progress (locked by their writer); stale
//! │                                  entries are removed on open and by prune
//! ├── lock                           the root lock: builds hold it shared, prune/verify
//! │                                  exclusive
//! └── locks/
//!     ├── index                      serialises read-modify-write of index.json
//!     └── keys/<key>                 per-cache-key in-progress locks
//! ```
//!
//! # Guarantees
//!
//! - **Crash safety**: every file reaches its final name by rename after an fsync (trees:
//!   after a `syncfs`), so a crash never leaves a blob, record, index or snapshot under its
//!   final name with wrong or partial content; leftovers stay in `tmp/`.
//! - **Concurrency**: any number of processes may share a root. Writers of the same blob or
//!   snapshot race harmlessly (same content, atomic renames); `index.json` updates are
//!   serialised; [`Root::key_lock`] lets one process compute a step while others wait for
//!   its record; builds hold a [`Root::lease`] and `prune`/`verify` wait for leases to end.
//! - **Streaming**: blobs are hashed while written and read through `File`s; memory stays
//!   bounded whatever their size.
//! - **No secrets**: records hold what the engine gives them; the engine never gives them
//!   secret values, and nothing here adds any.
//!
//! # Example
//!
//! ```
//! use kiln_cache::{CacheKey, CacheRecord, LayerRef, Root};
//! use std::io::Write;
//!
//! # fn main() -> Result<(), kiln_cache::CacheError> {
//! # let dir = tempfile::tempdir().unwrap();
//! let root = Root::open(dir.path())?;
//! let _lease = root.lease()?; // nothing is pruned while we build
//!
//! let mut writer = root.blobs().writer()?;
//! writer.write_all(b"layer bytes").unwrap();
//! let (blob, size) = writer.commit(None)?;
//!
//! let key = CacheKey::new("ab".repeat(32))?;
//! let record = CacheRecord {
//!     layers: vec![LayerRef { diff_id: blob, blob, media_type: "application/vnd.oci.image.layer.v1.tar".into(), size, created: None }],
//!     config_delta: serde_json::json!({}),
//!     sources: vec![],
//!     description: "RUN true".into(),
//!     created: 0,
//!     last_used: 0,
//! };
//! root.records().put(&key, &record)?;
//! assert_eq!(root.records().get(&key)?.unwrap().layers, record.layers);
//! # Ok(())
//! # }
//! ```

mod blobs;
mod digest;
mod error;
mod fsutil;
mod gc;
mod images;
mod index;
mod layout;
mod lock;
mod reach;
mod snapshots;
#[cfg(test)]
mod testutil;
mod verify;

pub use blobs::{BlobStore, BlobWriter};
pub use digest::{Digest, Hasher};
pub use error::{CacheError, Result};
pub use gc::{Category, PruneOptions, PruneReport, Usage};
pub use images::{ImageStore, REF_NAME_ANNOTATION};
pub use index::{CacheIndex, CacheKey, CacheRecord, LayerRef, SourceDigest, now_secs};
pub use layout::{IMAGE_LAYOUT_VERSION, Root, default_path_for};
pub use lock::{ExclusiveLock, KeyLock, Lease};
pub use oci_spec::image::{Descriptor, MediaType};
pub use reach::{MAX_CONFIG, MAX_MANIFEST};
pub use snapshots::{SnapshotId, SnapshotWriter, Snapshots, chain_ids};
pub use verify::{BadRecord, DamagedBlob, VerifyOptions, VerifyReport};
