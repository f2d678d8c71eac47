//! What a step produces: a root filesystem as a chain of layers, each with its blob in the
//! store and its unpacked snapshot on disk.
//!
//! Invariant: for every [`Layer`] of a [`Rootfs`] handed to another step, either the blob is
//! in the blob store and `snapshot` is a committed snapshot directory (overlay lower format),
//! or the layer is *lazy* (a hit in an imported remote cache): `snapshot` is the path its
//! snapshot will have and the blob can be fetched from a cache source. Whatever reads a
//! rootfs' files materializes it first (`remote_cache::CacheSession::materialize`).

use crate::layer::{ApplyMode, ApplyOptions, apply_layer};
use kiln_cache::{CacheKey, Digest, LayerRef, Root, SnapshotId};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub diff_id: Digest,
    pub blob: Digest,
    pub size: u64,
    pub media_type: String,
    pub snapshot: PathBuf,
    /// When the layer was first made (see [`LayerRef::created`]); `None` for image layers.
    pub created: Option<String>,
}

impl Layer {
    pub fn to_ref(&self) -> LayerRef {
        LayerRef {
            diff_id: self.diff_id,
            blob: self.blob,
            media_type: self.media_type.clone(),
            size: self.size,
            created: self.created.clone(),
        }
    }
}

/// A step's filesystem result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    pub key: CacheKey,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
}

impl Rootfs {
    /// Snapshot directories, top layer first (overlay `lowerdir` order), each once.
    ///
    /// Equal layers share one snapshot (two RUNs that change nothing both make the empty
    /// layer), and overlayfs refuses a directory given twice (ELOOP, "conflicting lowerdir
    /// path"). Only the topmost occurrence is kept, which merges to the same tree: whatever
    /// a lower copy of the layer provides or hides, the upper copy already provides or hides
    /// above every layer in between.
    pub fn lowers(&self) -> Vec<PathBuf> {
        let mut seen = std::collections::HashSet::new();
        self.layers
            .iter()
            .rev()
            .filter(|l| seen.insert(&l.snapshot))
            .map(|l| l.snapshot.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(snapshot: &str) -> Layer {
        Layer {
            diff_id: Digest::of(snapshot.as_bytes()),
            blob: Digest::of(snapshot.as_bytes()),
            size: 0,
            media_type: String::new(),
            snapshot: PathBuf::from(snapshot),
            created: None,
        }
    }

    #[test]
    fn lowers_are_top_first_and_unique() {
        let rootfs = Rootfs {
            key: CacheKey::from(Digest::of(b"key")),
            layers: ["/s/base", "/s/empty", "/s/files", "/s/empty"].map(layer).to_vec(),
        };
        assert_eq!(rootfs.lowers(), ["/s/empty", "/s/files", "/s/base"].map(PathBuf::from));
    }
}

/// Whether overlay lowers in this process carry `user.overlay.*` markers (rootless, or root
/// inside a user namespace) rather than `trusted.overlay.*` (real root).
pub fn userxattr() -> bool {
    crate::userns::overlay_xattr_prefix() == "user.overlay."
}

/// The snapshot of a stored layer, unpacking its blob if no snapshot exists yet.
pub fn ensure_snapshot(root: &Root, layer: &LayerRef) -> Result<PathBuf, SnapshotError> {
    let id = SnapshotId::of_layer(&layer.diff_id);
    let snapshots = root.snapshots();
    if let Some(path) = snapshots.get(&id) {
        return Ok(path);
    }
    let blob = root
        .blobs()
        .open(&layer.blob)
        .map_err(|e| SnapshotError::Blob(layer.blob, e.to_string()))?;
    let writer = snapshots.prepare(&id).map_err(|e| SnapshotError::Store(e.to_string()))?;
    let options = ApplyOptions {
        mode: ApplyMode::OverlayLower { userxattr: userxattr() },
        ..Default::default()
    };
    apply_layer(std::io::BufReader::new(blob), writer.path(), &options)
        .map_err(|e| SnapshotError::Unpack(layer.blob, e.to_string()))?;
    writer.commit().map_err(|e| SnapshotError::Store(e.to_string()))
}

/// Turns stored layer refs into layers with snapshots; `None` when a blob is gone (the
/// record is then useless and the step must run again).
pub fn load_layers(root: &Root, refs: &[LayerRef]) -> Result<Option<Vec<Layer>>, SnapshotError> {
    let mut layers = Vec::with_capacity(refs.len());
    for layer in refs {
        if !root.blobs().contains(&layer.blob) {
            return Ok(None);
        }
        let snapshot = ensure_snapshot(root, layer)?;
        layers.push(Layer {
            diff_id: layer.diff_id,
            blob: layer.blob,
            size: layer.size,
            media_type: layer.media_type.clone(),
            snapshot,
            created: layer.created.clone(),
        });
    }
    Ok(Some(layers))
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading layer {0}: {1}")]
    Blob(Digest, String),
    #[error("unpacking layer {0}: {1}")]
    Unpack(Digest, String),
    #[error("snapshot store: {0}")]
    Store(String),
}
