//! The stat cache: content digests of context files remembered by their `stat` data, so an
//! unchanged file is never read again on the next build.
//!
//! A record maps `(device, inode)` to the file's size, mtime, ctime and mode when it was
//! hashed, and its sha256. A lookup hits only when all of them are unchanged.
//!
//! # Racy timestamps
//!
//! A file can change without its timestamps changing when the change falls in the same
//! timestamp tick as the stat the record was made from (git's "racy clean" problem): the
//! filesystem keeps times at some granularity (1 ns on ext4/xfs/btrfs, 1 s or 2 s on others)
//! and the kernel stamps them from a coarse clock that lags the real time by up to a tick.
//! kiln avoids it as git does, by not trusting records made too close to the file's last
//! change: a scan notes the time it starts (before any stat), and a record is kept only if
//! the file's newest timestamp (`max(mtime, ctime)`) is older than that start by more than
//! [`RACY_WINDOW_FINE`] (timestamps with a sub-second part) or [`RACY_WINDOW_COARSE`]
//! (whole-second timestamps, which may come from a 2 s filesystem). Any later change then
//! gets timestamps newer than the recorded ones and misses the cache. A racy file is still
//! hashed (and its digest used) in the scan that sees it; it is just hashed again next time,
//! by which point it is old enough to be remembered. ctime counts too: `touch -d` or a tar
//! extraction can put an old mtime on new content, but the kernel always sets ctime to now.
//! (A clock set backwards by more than the window is not covered, as it is not for git.)
//!
//! # On disk
//!
//! One file per context directory (named by the sha256 of its canonical path), written to a
//! temporary name and renamed into place, so readers see the old or the new file, never a
//! mix. A file that is truncated, from another version, or fails its checksum is ignored
//! (the cache is only an accelerator) and noted in [`StatCache::notes`].
//!
//! ```text
//! DIR/
//! └── <sha256(context path) hex>      one shard per context directory
//!     ├── "KILNSTAT" (8 bytes), version u32 = 1, record size u32 = 88
//!     ├── generation u64, record count u64, context path length u32 + bytes
//!     ├── records, each 88 bytes: dev, ino, size u64; mtime_ns, ctime_ns i64;
//!     │   last_used generation u64; mode u32; 4 zero bytes; sha256 [32]
//!     └── sha256 of everything above [32]
//! ```
//!
//! All integers little-endian. Each save with changes bumps the shard's generation; records
//! not used during the last [`KEEP_GENERATIONS`] saves are dropped, so deleted files do not
//! accumulate.

use super::ContextError;
use kiln_cache::{Digest, Hasher};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Trust window for timestamps with nanoseconds: covers fine-grained filesystems (down to
/// 10 ms ticks, e.g. exFAT) and the kernel's coarse clock lag (one jiffy, at most 10 ms).
pub const RACY_WINDOW_FINE: i64 = 100_000_000;
/// Trust window for whole-second timestamps: covers 2 s filesystems (FAT) and the clock lag.
pub const RACY_WINDOW_COARSE: i64 = 3_000_000_000;
/// Records unused for this many saves (with changes) of their shard are dropped.
pub const KEEP_GENERATIONS: u64 = 16;

const MAGIC: &[u8; 8] = b"KILNSTAT";
const VERSION: u32 = 1;
const RECORD_SIZE: usize = 88;
const HEADER_SIZE: usize = 8 + 4 + 4 + 8 + 8 + 4;

/// What identifies one version of a file: its `lstat` data at walk time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// The full `st_mode`, type bits included.
    pub mode: u32,
}

impl StatKey {
    /// Whether a record made from this stat by a scan that started at `scan_start_ns` can be
    /// trusted later (see the module docs).
    pub fn settled_before(&self, scan_start_ns: i64) -> bool {
        let newest = self.mtime_ns.max(self.ctime_ns);
        let whole_seconds = self.mtime_ns.rem_euclid(1_000_000_000) == 0
            && self.ctime_ns.rem_euclid(1_000_000_000) == 0;
        let window = if whole_seconds { RACY_WINDOW_COARSE } else { RACY_WINDOW_FINE };
        newest.saturating_add(window) < scan_start_ns
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
    digest: Digest,
    last_used: u64,
}

/// The records of one context directory.
#[derive(Debug, Default)]
pub(super) struct Shard {
    generation: u64,
    records: HashMap<(u64, u64), Record>,
    dirty: bool,
}

impl Shard {
    /// The digest remembered for a file with exactly this stat data.
    pub(super) fn lookup(&mut self, key: &StatKey) -> Option<Digest> {
        let generation = self.generation;
        self.records.get_mut(&(key.dev, key.ino)).and_then(|record| {
            let same = record.size == key.size
                && record.mtime_ns == key.mtime_ns
                && record.ctime_ns == key.ctime_ns
                && record.mode == key.mode;
            same.then(|| {
                record.last_used = generation;
                record.digest
            })
        })
    }

    /// Remembers `digest` for a file stat'ed as `key`, unless its timestamps are too close to
    /// `scan_start_ns` to be trusted (then any older record for the inode is dropped).
    pub(super) fn insert(&mut self, key: &StatKey, digest: Digest, scan_start_ns: i64) {
        let inode = (key.dev, key.ino);
        if !key.settled_before(scan_start_ns) {
            self.dirty |= self.records.remove(&inode).is_some();
            return;
        }
        let record = Record {
            size: key.size,
            mtime_ns: key.mtime_ns,
            ctime_ns: key.ctime_ns,
            mode: key.mode,
            digest,
            last_used: self.generation,
        };
        if self.records.get(&inode) != Some(&record) {
            self.records.insert(inode, record);
            self.dirty = true;
        }
    }
}

/// Content digests of context files by `stat` data, persisted per context directory.
#[derive(Debug, Default)]
pub struct StatCache {
    /// Where shards are saved; `None` keeps them in memory only.
    dir: Option<PathBuf>,
    shards: HashMap<PathBuf, Shard>,
    notes: Vec<String>,
}

impl StatCache {
    /// A cache that lives only as long as this value (nothing is read or written on disk).
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// A cache persisted under `dir` (created if missing). Shards are read when a scan first
    /// needs them and written by [`StatCache::save`].
    pub fn open(dir: &Path) -> Result<StatCache, ContextError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| ContextError::stat_cache("create", dir, source))?;
        Ok(StatCache { dir: Some(dir.to_path_buf()), ..StatCache::default() })
    }

    /// Why shard files were ignored (corrupt, truncated, another version), for a warning.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// How many records are held for the context directory `root` (loaded or added so far).
    pub fn len_for(&self, root: &Path) -> usize {
        self.shards.get(root).map_or(0, |shard| shard.records.len())
    }

    /// Writes every shard that changed since it was read. A cache from
    /// [`StatCache::in_memory`] has nothing to write.
    pub fn save(&mut self) -> Result<(), ContextError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        for (root, shard) in &mut self.shards {
            if !shard.dirty {
                continue;
            }
            let generation = shard.generation;
            shard.records.retain(|_, r| r.last_used + KEEP_GENERATIONS > generation);
            // The next session that reads the file works in the next generation.
            let bytes = encode(root, generation + 1, shard);
            write_atomically(&dir.join(shard_name(root)), &bytes)?;
            shard.generation = generation + 1;
            shard.dirty = false;
        }
        Ok(())
    }

    /// The records for the context directory `root`, read from disk the first time.
    pub(super) fn shard(&mut self, root: &Path) -> Result<&mut Shard, ContextError> {
        if !self.shards.contains_key(root) {
            let shard = match &self.dir {
                None => Shard::default(),
                Some(dir) => {
                    let file = dir.join(shard_name(root));
                    match std::fs::read(&file) {
                        Ok(bytes) => decode(root, &bytes).unwrap_or_else(|reason| {
                            self.notes
                                .push(format!("ignored stat cache {}: {reason}", file.display()));
                            Shard::default()
                        }),
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Shard::default(),
                        Err(source) => return Err(ContextError::stat_cache("read", &file, source)),
                    }
                }
            };
            self.shards.insert(root.to_path_buf(), shard);
        }
        Ok(self.shards.get_mut(root).expect("inserted above"))
    }
}

fn shard_name(root: &Path) -> String {
    Digest::of(root.as_os_str().as_bytes()).hex()
}

fn encode(root: &Path, generation: u64, shard: &Shard) -> Vec<u8> {
    let root = root.as_os_str().as_bytes();
    let mut out =
        Vec::with_capacity(HEADER_SIZE + root.len() + shard.records.len() * RECORD_SIZE + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(shard.records.len() as u64).to_le_bytes());
    out.extend_from_slice(&(root.len() as u32).to_le_bytes());
    out.extend_from_slice(root);
    // Sorted, so the same records always give the same bytes.
    let mut records: Vec<_> = shard.records.iter().collect();
    records.sort_unstable_by_key(|(inode, _)| **inode);
    for ((dev, ino), r) in records {
        out.extend_from_slice(&dev.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&r.size.to_le_bytes());
        out.extend_from_slice(&r.mtime_ns.to_le_bytes());
        out.extend_from_slice(&r.ctime_ns.to_le_bytes());
        out.extend_from_slice(&r.last_used.to_le_bytes());
        out.extend_from_slice(&r.mode.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(r.digest.as_bytes());
    }
    let mut hasher = Hasher::new();
    hasher.update(&out);
    out.extend_from_slice(hasher.finish().as_bytes());
    out
}

/// A little-endian reader over a byte slice that fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_le_bytes)
    }
}

fn decode(root: &Path, bytes: &[u8]) -> Result<Shard, String> {
    if bytes.len() < HEADER_SIZE + 32 {
        return Err("truncated".into());
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 32);
    let mut reader = Reader(body);
    if reader.take(8)? != MAGIC {
        return Err("not a stat cache file".into());
    }
    let version = reader.u32()?;
    if version != VERSION {
        return Err(format!("version {version}, expected {VERSION}"));
    }
    if reader.u32()? as usize != RECORD_SIZE {
        return Err("unexpected record size".into());
    }
    let mut hasher = Hasher::new();
    hasher.update(body);
    if hasher.finish().as_bytes() != checksum {
        return Err("checksum mismatch".into());
    }
    let generation = reader.u64()?;
    let count = reader.u64()?;
    let root_len = reader.u32()? as usize;
    if reader.take(root_len)? != root.as_os_str().as_bytes() {
        return Err("written for another directory".into());
    }
    if count.checked_mul(RECORD_SIZE as u64) != Some(reader.0.len() as u64) {
        return Err("record count does not match the file size".into());
    }
    let mut records = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        let dev = reader.u64()?;
        let ino = reader.u64()?;
        let size = reader.u64()?;
        let mtime_ns = reader.i64()?;
        let ctime_ns = reader.i64()?;
        let last_used = reader.u64()?;
        let mode = reader.u32()?;
        reader.take(4)?;
        let digest = digest_from_bytes(&reader.array::<32>()?);
        records.insert((dev, ino), Record { size, mtime_ns, ctime_ns, mode, digest, last_used });
    }
    Ok(Shard { generation, records, dirty: false })
}

/// A [`Digest`] from its raw bytes (the cache crate builds digests only from hex or content).
pub(super) fn digest_from_bytes(bytes: &[u8; 32]) -> Digest {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in bytes {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xf)] as char);
    }
    Digest::from_hex(&hex).expect("64 lowercase hex digits")
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ContextError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        ContextError::stat_cache("write", path, source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64, mtime_ns: i64) -> StatKey {
        StatKey { dev: 1, ino, size: 10, mtime_ns, ctime_ns: mtime_ns, mode: 0o100644 }
    }

    const HOUR: i64 = 3_600_000_000_000;
    const NOW: i64 = 1_700_000_000_123_456_789;

    #[test]
    fn racy_records_are_not_trusted() {
        // Sub-second timestamps: trusted once older than the fine window.
        assert!(key(1, NOW - RACY_WINDOW_FINE - 1).settled_before(NOW));
        assert!(!key(1, NOW - RACY_WINDOW_FINE).settled_before(NOW));
        assert!(!key(1, NOW + HOUR).settled_before(NOW));
        // Whole seconds may come from a 2 s filesystem: the coarse window applies.
        let whole = (NOW / 1_000_000_000 - 2) * 1_000_000_000;
        assert!(!key(1, whole).settled_before(NOW));
        assert!(key(1, whole - 2_000_000_000).settled_before(NOW));
        // A fresh ctime is enough to distrust an old mtime.
        let k = StatKey { ctime_ns: NOW - 1, ..key(1, NOW - HOUR) };
        assert!(!k.settled_before(NOW));
    }

    #[test]
    fn lookups_need_every_field_to_match() {
        let root = Path::new("/ctx");
        let mut cache = StatCache::in_memory();
        let digest = Digest::of(b"x");
        let k = key(7, NOW - HOUR);
        cache.shard(root).unwrap().insert(&k, digest, NOW);
        assert_eq!(cache.shard(root).unwrap().lookup(&k), Some(digest));
        for changed in [
            StatKey { size: 11, ..k },
            StatKey { mtime_ns: k.mtime_ns + 1, ..k },
            StatKey { ctime_ns: k.ctime_ns + 1, ..k },
            StatKey { mode: 0o100755, ..k },
            StatKey { ino: 8, ..k },
            StatKey { dev: 2, ..k },
        ] {
            assert_eq!(cache.shard(root).unwrap().lookup(&changed), None, "{changed:?}");
        }
        // Another context directory has its own records.
        assert_eq!(cache.shard(Path::new("/other")).unwrap().lookup(&k), None);
    }

    #[test]
    fn racy_insert_drops_the_old_record() {
        let root = Path::new("/ctx");
        let mut cache = StatCache::in_memory();
        let old = key(7, NOW - HOUR);
        cache.shard(root).unwrap().insert(&old, Digest::of(b"old"), NOW);
        let fresh = key(7, NOW - 10);
        cache.shard(root).unwrap().insert(&fresh, Digest::of(b"new"), NOW);
        assert_eq!(cache.shard(root).unwrap().lookup(&old), None);
        assert_eq!(cache.shard(root).unwrap().lookup(&fresh), None);
        assert_eq!(cache.len_for(root), 0);
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/some/context");
        let mut cache = StatCache::open(dir.path()).unwrap();
        for ino in 0..100 {
            cache.shard(root).unwrap().insert(
                &key(ino, NOW - HOUR),
                Digest::of(&ino.to_le_bytes()),
                NOW,
            );
        }
        cache.save().unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "one shard, no temporary files left");
        let size = files[0].as_ref().unwrap().metadata().unwrap().len() as usize;
        assert_eq!(size, HEADER_SIZE + root.as_os_str().len() + 100 * RECORD_SIZE + 32);

        let mut again = StatCache::open(dir.path()).unwrap();
        for ino in 0..100 {
            let hit = again.shard(root).unwrap().lookup(&key(ino, NOW - HOUR));
            assert_eq!(hit, Some(Digest::of(&ino.to_le_bytes())));
        }
        assert!(again.notes().is_empty());
    }

    #[test]
    fn damaged_files_are_ignored_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/ctx");
        let mut cache = StatCache::open(dir.path()).unwrap();
        cache.shard(root).unwrap().insert(&key(1, NOW - HOUR), Digest::of(b"a"), NOW);
        cache.save().unwrap();
        let file = dir.path().join(shard_name(root));
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).unwrap();

        let mut damaged = StatCache::open(dir.path()).unwrap();
        assert_eq!(damaged.shard(root).unwrap().lookup(&key(1, NOW - HOUR)), None);
        assert_eq!(damaged.notes().len(), 1);
        assert!(damaged.notes()[0].ends_with(": checksum mismatch"), "{:?}", damaged.notes());

        std::fs::write(&file, &bytes[..20]).unwrap();
        let mut truncated = StatCache::open(dir.path()).unwrap();
        assert_eq!(truncated.shard(root).unwrap().lookup(&key(1, NOW - HOUR)), None);
        assert!(truncated.notes()[0].ends_with(": truncated"), "{:?}", truncated.notes());
    }

    #[test]
    fn unused_records_expire_after_some_saves() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/ctx");
        let mut cache = StatCache::open(dir.path()).unwrap();
        cache.shard(root).unwrap().insert(&key(1, NOW - HOUR), Digest::of(b"stale"), NOW);
        cache.save().unwrap();
        // Each later session changes one other file and never looks at inode 1.
        for round in 0..KEEP_GENERATIONS {
            let mut session = StatCache::open(dir.path()).unwrap();
            let digest = Digest::of(&round.to_le_bytes());
            session.shard(root).unwrap().insert(&key(2, NOW - HOUR + round as i64), digest, NOW);
            session.save().unwrap();
        }
        let mut last = StatCache::open(dir.path()).unwrap();
        assert_eq!(last.shard(root).unwrap().lookup(&key(1, NOW - HOUR)), None);
        assert_eq!(last.len_for(root), 1);
    }

    #[test]
    fn digest_round_trips_through_raw_bytes() {
        let digest = Digest::of(b"abc");
        assert_eq!(digest_from_bytes(digest.as_bytes()), digest);
    }
}
