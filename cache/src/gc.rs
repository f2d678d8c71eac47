//! Disk usage and garbage collection.
//!
//! What is alive: blobs reachable from `index.json` (tagged images, see `reach.rs`), cache
//! records, the layer blobs records name, and snapshots whose id is a diff_id or a chain id
//! of a record's layers or of a tagged image's `rootfs.diff_ids`.
//!
//! `prune` modes, in the spirit of `docker buildx prune`:
//! - default: removes only garbage — blobs no record and no tagged image needs, snapshots
//!   nothing refers to, unreadable records, stale temp entries and key lock files;
//! - `keep_storage`: additionally evicts records least recently used first (ties broken by
//!   key) until the whole root (blobs + records + snapshots + temp) fits, freeing the blobs
//!   and snapshots that only they kept alive;
//! - `all`: removes every record and snapshot and every blob that tagged images do not need.
//!
//! Invariants: prune holds the exclusive root lock, so no build (which holds a lease) runs
//! meanwhile; it removes records before the blobs and snapshots they refer to, so a crash
//! midway never leaves a record pointing at nothing; tagged images' blobs are never removed.

use crate::digest::Digest;
use crate::error::{CacheError, IoContext, Result};
use crate::fsutil;
use crate::index::CacheKey;
use crate::layout::Root;
use crate::reach::reachable;
use crate::snapshots::{SnapshotId, chain_ids};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;

/// What `prune` may remove. The default removes only garbage (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Evict least recently used records until the root takes at most this many bytes.
    pub keep_storage: Option<u64>,
    /// Remove every record and snapshot, keeping only what tagged images need.
    pub all: bool,
}

/// What `prune` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Cache records removed.
    pub records_removed: u64,
    /// Blobs removed.
    pub blobs_removed: u64,
    /// Snapshots removed.
    pub snapshots_removed: u64,
    /// Stale temp entries removed.
    pub tmp_removed: u64,
    /// Bytes freed (apparent sizes).
    pub bytes_freed: u64,
    /// Bytes the root still takes.
    pub remaining: u64,
}

/// Count and bytes of one kind of entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Category {
    /// Number of entries.
    pub count: u64,
    /// Their apparent size in bytes.
    pub bytes: u64,
}

/// Disk usage of a root by category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `blobs/sha256`.
    pub blobs: Category,
    /// `cache/records`.
    pub records: Category,
    /// `snapshots`.
    pub snapshots: Category,
    /// `tmp` (writes in progress and leftovers).
    pub tmp: Category,
    /// Bytes `prune` with default options would free.
    pub garbage: u64,
    /// Bytes `prune --all` would free.
    pub reclaimable: u64,
}

impl Usage {
    /// Bytes of all categories.
    pub fn total(&self) -> u64 {
        self.blobs.bytes + self.records.bytes + self.snapshots.bytes + self.tmp.bytes
    }
}

struct RecordEntry {
    /// `None` for an unreadable record file.
    key: Option<CacheKey>,
    path: PathBuf,
    file_size: u64,
    last_used: u64,
    blobs: BTreeSet<Digest>,
    snapshots: BTreeSet<SnapshotId>,
}

/// Everything in a root, with what the images pin.
struct Inventory {
    blobs: BTreeMap<Digest, u64>,
    records: Vec<RecordEntry>,
    snapshots: BTreeMap<SnapshotId, u64>,
    tmp: Category,
    pinned_blobs: BTreeSet<Digest>,
    pinned_snapshots: BTreeSet<SnapshotId>,
}

/// What a prune would remove.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Indexes into `Inventory::records`.
    records: Vec<usize>,
    blobs: Vec<Digest>,
    snapshots: Vec<SnapshotId>,
    bytes: u64,
}

impl Inventory {
    fn scan(root: &Root) -> Result<Inventory> {
        let (digests, _strays) = root.blobs().list()?;
        let mut blobs = BTreeMap::new();
        for digest in digests {
            // A blob removed since listing is simply not counted.
            if let Ok(size) = root.blobs().size(&digest) {
                blobs.insert(digest, size);
            }
        }
        let index = root.records();
        let mut records = Vec::new();
        for item in index.iter() {
            match item {
                Ok((key, record)) => {
                    let path = index.path(&key);
                    let file_size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    let diff_ids: Vec<Digest> = record.layers.iter().map(|l| l.diff_id).collect();
                    records.push(RecordEntry {
                        key: Some(key),
                        path,
                        file_size,
                        last_used: record.last_used,
                        blobs: record.layers.iter().map(|l| l.blob).collect(),
                        snapshots: layer_snapshot_ids(&diff_ids),
                    });
                }
                Err(CacheError::Corrupt { path, .. }) => {
                    let file_size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    records.push(RecordEntry {
                        key: None,
                        path,
                        file_size,
                        last_used: 0,
                        blobs: BTreeSet::new(),
                        snapshots: BTreeSet::new(),
                    });
                }
                Err(err) => return Err(err),
            }
        }
        let mut snapshots = BTreeMap::new();
        for id in root.snapshots().list()? {
            if let Some(path) = root.snapshots().get(&id) {
                snapshots.insert(id, fsutil::tree_size(&path));
            }
        }
        let mut tmp = Category::default();
        let tmp_dir = &root.paths().tmp;
        for entry in fs::read_dir(tmp_dir).at("read directory", tmp_dir)?.flatten() {
            tmp.count += 1;
            tmp.bytes += fsutil::tree_size(&entry.path());
        }
        let reach = reachable(root)?;
        let pinned_snapshots =
            reach.layer_stacks.iter().flat_map(|stack| layer_snapshot_ids(stack)).collect();
        Ok(Inventory {
            blobs,
            records,
            snapshots,
            tmp,
            pinned_blobs: reach.blobs,
            pinned_snapshots,
        })
    }

    fn total(&self) -> u64 {
        self.blobs.values().sum::<u64>()
            + self.records.iter().map(|r| r.file_size).sum::<u64>()
            + self.snapshots.values().sum::<u64>()
            + self.tmp.bytes
    }

    fn usage(&self) -> Usage {
        let category = |count: usize, bytes: u64| Category { count: count as u64, bytes };
        Usage {
            blobs: category(self.blobs.len(), self.blobs.values().sum()),
            records: category(self.records.len(), self.records.iter().map(|r| r.file_size).sum()),
            snapshots: category(self.snapshots.len(), self.snapshots.values().sum()),
            tmp: self.tmp,
            garbage: self.plan(PruneOptions::default()).bytes,
            reclaimable: self.plan(PruneOptions { keep_storage: None, all: true }).bytes,
        }
    }

    fn plan(&self, options: PruneOptions) -> Plan {
        let mut plan = Plan::default();
        if options.all {
            plan.records = (0..self.records.len()).collect();
            plan.blobs =
                self.blobs.keys().filter(|d| !self.pinned_blobs.contains(d)).copied().collect();
            plan.snapshots = self.snapshots.keys().cloned().collect();
            plan.bytes = self.records.iter().map(|r| r.file_size).sum::<u64>()
                + plan.blobs.iter().map(|d| self.blobs[d]).sum::<u64>()
                + self.snapshots.values().sum::<u64>();
            return plan;
        }
        let mut blob_refs: HashMap<Digest, usize> = HashMap::new();
        let mut snapshot_refs: HashMap<&SnapshotId, usize> = HashMap::new();
        for record in &self.records {
            for blob in &record.blobs {
                *blob_refs.entry(*blob).or_default() += 1;
            }
            for id in &record.snapshots {
                *snapshot_refs.entry(id).or_default() += 1;
            }
        }
        for (index, record) in self.records.iter().enumerate() {
            if record.key.is_none() {
                plan.records.push(index);
                plan.bytes += record.file_size;
            }
        }
        for (digest, size) in &self.blobs {
            if !blob_refs.contains_key(digest) && !self.pinned_blobs.contains(digest) {
                plan.blobs.push(*digest);
                plan.bytes += size;
            }
        }
        for (id, size) in &self.snapshots {
            if !snapshot_refs.contains_key(id) && !self.pinned_snapshots.contains(id) {
                plan.snapshots.push(id.clone());
                plan.bytes += size;
            }
        }
        let Some(limit) = options.keep_storage else { return plan };
        let mut remaining = self.total() - plan.bytes;
        let mut order: Vec<usize> =
            (0..self.records.len()).filter(|i| self.records[*i].key.is_some()).collect();
        order.sort_by(|a, b| {
            let (a, b) = (&self.records[*a], &self.records[*b]);
            (a.last_used, &a.key).cmp(&(b.last_used, &b.key))
        });
        for index in order {
            if remaining <= limit {
                break;
            }
            let record = &self.records[index];
            plan.records.push(index);
            let mut freed = record.file_size;
            for blob in &record.blobs {
                let Some(count) = blob_refs.get_mut(blob) else { continue };
                *count -= 1;
                if *count == 0
                    && !self.pinned_blobs.contains(blob)
                    && let Some(size) = self.blobs.get(blob)
                {
                    plan.blobs.push(*blob);
                    freed += size;
                }
            }
            for id in &record.snapshots {
                let Some(count) = snapshot_refs.get_mut(id) else { continue };
                *count -= 1;
                if *count == 0
                    && !self.pinned_snapshots.contains(id)
                    && let Some(size) = self.snapshots.get(id)
                {
                    plan.snapshots.push(id.clone());
                    freed += size;
                }
            }
            plan.bytes += freed;
            remaining -= freed;
        }
        plan
    }
}

/// The snapshot ids a layer stack may have: each diff_id alone and each prefix's chain id.
fn layer_snapshot_ids(diff_ids: &[Digest]) -> BTreeSet<SnapshotId> {
    diff_ids.iter().chain(chain_ids(diff_ids).iter()).map(SnapshotId::of_layer).collect()
}

impl Root {
    /// Disk usage by category, and what prune would free. Takes no lock: the numbers are a
    /// snapshot of a store that may be changing.
    pub fn du(&self) -> Result<Usage> {
        Ok(Inventory::scan(self)?.usage())
    }

    /// Removes what `options` select (see the module docs). Waits for running builds.
    pub fn prune(&self, options: PruneOptions) -> Result<PruneReport> {
        self.prune_notify(options, &mut || {})
    }

    /// [`Root::prune`], calling `on_wait` once if it has to wait for leases to go.
    pub fn prune_notify(
        &self,
        options: PruneOptions,
        on_wait: &mut dyn FnMut(),
    ) -> Result<PruneReport> {
        let _lock = self.lock_exclusive(on_wait)?;
        let mut report = PruneReport::default();
        let (tmp_removed, tmp_bytes) = fsutil::clean_stale(&self.paths().tmp)?;
        report.tmp_removed = tmp_removed;
        report.bytes_freed += tmp_bytes;
        remove_key_locks(self)?;

        let inventory = Inventory::scan(self)?;
        let plan = inventory.plan(options);
        for index in &plan.records {
            let path = &inventory.records[*index].path;
            match fs::remove_file(path) {
                Ok(()) => report.records_removed += 1,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).at("remove", path),
            }
        }
        for digest in &plan.blobs {
            report.blobs_removed += u64::from(self.blobs().remove(digest)?);
        }
        for id in &plan.snapshots {
            report.snapshots_removed += u64::from(self.snapshots().remove(id)?);
        }
        report.bytes_freed += plan.bytes;
        report.remaining = inventory.total() - plan.bytes;
        Ok(report)
    }
}

/// Key lock files are only held together with a lease, so under the exclusive lock none is
/// held and all may go.
fn remove_key_locks(root: &Root) -> Result<()> {
    let dir = &root.paths().key_locks;
    for entry in fs::read_dir(dir).at("read directory", dir)? {
        let path = entry.at("read directory", dir)?.path();
        match fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).at("remove", &path);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{image, key, open_root, record};
    use std::sync::mpsc;
    use std::time::{Duration, SystemTime};

    fn snapshot(root: &Root, id: &SnapshotId, content: &[u8]) {
        let writer = root.snapshots().prepare(id).unwrap();
        fs::write(writer.path().join("f"), content).unwrap();
        writer.commit().unwrap();
    }

    fn stale_tmp_entry(root: &Root, name: &str, size: usize) {
        let path = root.path().join("tmp").join(name);
        fs::write(&path, vec![0u8; size]).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - fsutil::STALE_AFTER * 2).unwrap();
    }

    #[test]
    fn default_prune_removes_only_garbage() {
        let (_dir, root) = open_root();
        let img = image(&root, "docker.io/library/app:latest", b"image layer");
        let rec = record(&root, &key(1), &[b"record layer one", b"record layer two"], 100);
        let orphan = root.blobs().put_bytes(b"orphan blob").unwrap();
        let diff_ids: Vec<Digest> = rec.layers.iter().map(|l| l.diff_id).collect();
        let record_chain = SnapshotId::of_chain(&diff_ids).unwrap();
        let image_snapshot = SnapshotId::of_layer(&img.diff_id);
        let orphan_snapshot = SnapshotId::of_layer(&Digest::of(b"nothing"));
        snapshot(&root, &record_chain, b"12");
        snapshot(&root, &image_snapshot, b"123");
        snapshot(&root, &orphan_snapshot, b"1234");
        stale_tmp_entry(&root, "stale-blob", 7);
        fs::write(root.path().join("locks/keys").join(key(9).as_str()), b"").unwrap();
        let corrupt_path = root.records().path(&key(2));
        fs::create_dir_all(corrupt_path.parent().unwrap()).unwrap();
        fs::write(&corrupt_path, b"{").unwrap();

        let before = root.du().unwrap();
        assert_eq!(before.garbage, 11 + 4 + 1);
        let report = root.prune(PruneOptions::default()).unwrap();
        assert_eq!(
            report,
            PruneReport {
                records_removed: 1,
                blobs_removed: 1,
                snapshots_removed: 1,
                tmp_removed: 1,
                bytes_freed: 7 + 11 + 4 + 1,
                remaining: before.total() - 7 - (11 + 4 + 1),
            }
        );
        let blobs = root.blobs();
        for digest in [img.manifest, img.config, img.layer, rec.layers[0].blob, rec.layers[1].blob]
        {
            assert!(blobs.contains(&digest), "{digest} kept");
        }
        assert!(!blobs.contains(&orphan));
        assert!(root.records().get(&key(1)).unwrap().is_some());
        assert!(!corrupt_path.exists());
        assert_eq!(root.snapshots().list().unwrap(), {
            let mut ids = vec![record_chain, image_snapshot];
            ids.sort();
            ids
        });
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(root.path().join("locks/keys")).unwrap().count(), 0);
        assert_eq!(root.du().unwrap().total(), report.remaining);

        // A second prune finds nothing.
        let again = root.prune(PruneOptions::default()).unwrap();
        assert_eq!((again.records_removed, again.blobs_removed, again.bytes_freed), (0, 0, 0));
    }

    #[test]
    fn prune_all_keeps_only_tagged_images() {
        let (_dir, root) = open_root();
        let img = image(&root, "example.com/x:1", b"image layer");
        // A record sharing the image's layer blob plus its own.
        let rec = record(&root, &key(1), &[b"image layer", b"own layer"], 100);
        snapshot(&root, &SnapshotId::of_layer(&img.diff_id), b"x");
        let report = root.prune(PruneOptions { keep_storage: None, all: true }).unwrap();
        assert_eq!(
            (report.records_removed, report.blobs_removed, report.snapshots_removed),
            (1, 1, 1)
        );
        let (blobs, _) = root.blobs().list().unwrap();
        let mut expected = vec![img.manifest, img.config, img.layer];
        expected.sort();
        assert_eq!(blobs, expected);
        assert!(!root.blobs().contains(&rec.layers[1].blob));
        assert_eq!(root.records().iter().count(), 0);
        assert_eq!(root.images().list().unwrap().len(), 1);
        let usage = root.du().unwrap();
        assert_eq!((usage.garbage, usage.reclaimable), (0, 0));
    }

    #[test]
    fn nested_index_keeps_its_children_and_untag_releases_them() {
        let (_dir, root) = open_root();
        let img = image(&root, "tmp:child", b"layer");
        let child_size = root.blobs().size(&img.manifest).unwrap();
        let list = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest.to_string(), "size": child_size},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": Digest::of(b"never pulled").to_string(), "size": 5},
            ],
        });
        let bytes = serde_json::to_vec(&list).unwrap();
        let list_digest = root.blobs().put_bytes(&bytes).unwrap();
        root.images()
            .tag(
                "multi:latest",
                oci_spec::image::Descriptor::new(
                    oci_spec::image::MediaType::ImageIndex,
                    bytes.len() as u64,
                    &list_digest,
                ),
            )
            .unwrap();
        root.images().untag("tmp:child").unwrap();
        let report = root.prune(PruneOptions { keep_storage: None, all: true }).unwrap();
        assert_eq!(report.blobs_removed, 0);
        assert_eq!(root.blobs().list().unwrap().0.len(), 4);
        root.images().untag("multi:latest").unwrap();
        let report = root.prune(PruneOptions::default()).unwrap();
        assert_eq!(report.blobs_removed, 4);
    }

    #[test]
    fn keep_storage_evicts_least_recently_used_first() {
        let (_dir, root) = open_root();
        let big = |c: u8| vec![c; 10_000];
        record(&root, &key(1), &[&big(1)], 100);
        record(&root, &key(2), &[&big(2)], 200);
        record(&root, &key(3), &[&big(3), &big(1)], 300);
        record(&root, &key(4), &[&big(4)], 400);
        // Key 1 was used last of all, so key 2 is now the oldest.
        root.records()
            .touch_at(&key(1), SystemTime::UNIX_EPOCH + Duration::from_secs(500))
            .unwrap();
        let usage = root.du().unwrap();
        assert_eq!(usage.blobs, Category { count: 4, bytes: 40_000 });
        assert_eq!(usage.records.count, 4);

        // Room for about two of the blobs: key 2 goes (frees blob 2), then key 3 goes
        // (frees blob 3 only: blob 1 is still used by key 1).
        let limit = 25_000;
        let report = root.prune(PruneOptions { keep_storage: Some(limit), all: false }).unwrap();
        assert_eq!((report.records_removed, report.blobs_removed), (2, 2));
        assert!(report.remaining <= limit);
        let kept: Vec<CacheKey> = root.records().iter().map(|r| r.unwrap().0).collect();
        let mut expected = vec![key(1), key(4)];
        expected.sort();
        assert_eq!(kept, expected);
        assert!(root.blobs().contains(&Digest::of(&big(1))));
        assert!(!root.blobs().contains(&Digest::of(&big(2))));
        assert!(!root.blobs().contains(&Digest::of(&big(3))));
        assert_eq!(root.du().unwrap().total(), report.remaining);

        // A limit already met removes nothing more.
        let report = root.prune(PruneOptions { keep_storage: Some(limit), all: false }).unwrap();
        assert_eq!(report.records_removed, 0);
    }

    #[test]
    fn prune_waits_for_leases() {
        let (_dir, root) = open_root();
        let orphan = root.blobs().put_bytes(b"orphan").unwrap();
        let lease = root.lease().unwrap();
        let (tx, rx) = mpsc::channel();
        let thread = {
            let root = root.clone();
            std::thread::spawn(move || {
                root.prune_notify(PruneOptions::default(), &mut || tx.send(()).unwrap()).unwrap()
            })
        };
        rx.recv_timeout(Duration::from_secs(10)).expect("prune reported that it waits");
        std::thread::sleep(Duration::from_millis(200));
        assert!(root.blobs().contains(&orphan), "nothing removed while a lease is held");
        drop(lease);
        let report = thread.join().unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert!(!root.blobs().contains(&orphan));
    }

    #[test]
    fn key_lock_serialises_and_the_second_finds_the_record() {
        let (_dir, root) = open_root();
        let first = root.key_lock(&key(1)).unwrap();
        let (tx, rx) = mpsc::channel();
        let thread = {
            let root = root.clone();
            std::thread::spawn(move || {
                let _lock = root.key_lock(&key(1)).unwrap();
                tx.send(root.records().get(&key(1)).unwrap().is_some()).unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "second holder waits");
        record(&root, &key(1), &[b"l"], 1);
        drop(first);
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "second holder sees the record");
        thread.join().unwrap();
    }
}
