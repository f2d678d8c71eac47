//! The blob store: every blob (layer, config, manifest, index) at `blobs/sha256/<hex>`.
//!
//! Invariants:
//! - a file exists under its final name only if its content hashed to that name when it was
//!   written: bytes are hashed while streamed into a locked temp file in `ROOT/tmp`, checked
//!   against the expected digest, fsynced, made read-only (0444) and renamed into place;
//!   a crash at any point leaves at most a temp file, which a later open removes;
//! - any number of threads and processes may write the same blob at once: each writes its
//!   own temp file and the rename is atomic, so readers see the old complete file or the
//!   new complete file, never a mix;
//! - memory stays bounded whatever the blob size (a fixed write buffer; reads stream).
//!
//! Damage after the fact (disk errors, someone editing files) is found by `verify`.

use crate::digest::{Digest, Hasher};
use crate::error::{CacheError, IoContext, Result};
use crate::fsutil;
use crate::layout::Root;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

const WRITE_BUFFER: usize = 256 * 1024;

/// Access to `blobs/sha256/`. Obtained from [`Root::blobs`].
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: Root,
}

impl BlobStore {
    pub(crate) fn new(root: Root) -> BlobStore {
        BlobStore { root }
    }

    /// Starts writing a new blob. Nothing is visible until [`BlobWriter::commit`]; dropping
    /// the writer discards what was written.
    pub fn writer(&self) -> Result<BlobWriter> {
        let file = fsutil::temp_file(&self.root.paths().tmp, "blob-")?;
        Ok(BlobWriter {
            store: self.clone(),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: Hasher::new(),
            size: 0,
        })
    }

    /// Stores everything `reader` yields, streaming. See [`BlobWriter::commit`].
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let mut writer = self.writer()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).at("read blob content for", writer.temp_path()),
            };
            writer.write_all(&buf[..n]).at("write", writer.temp_path())?;
        }
        writer.commit(expected)
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let mut writer = self.writer()?;
        writer.write_all(bytes).at("write", writer.temp_path())?;
        writer.commit(None).map(|(digest, _)| digest)
    }

    /// Opens a blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|err| self.not_found_or(err, digest, "open", path))
    }

    /// Reads a whole blob into memory, checking its digest. Meant for small blobs
    /// (manifests, configs); stream large ones with [`BlobStore::open`].
    pub fn read_bytes(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let path = self.path(digest);
        self.open(digest)?.read_to_end(&mut bytes).at("read", &path)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(CacheError::DigestMismatch { expected: *digest, actual });
        }
        Ok(bytes)
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(err) => Err(self.not_found_or(err, digest, "inspect", path)),
        }
    }

    /// Where the blob lives. For reading only: never write to this path.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.paths().blobs.join(digest.hex())
    }

    /// Removes a blob. Returns whether it was there. Callers make sure nothing uses it
    /// (`prune` and `verify` hold the exclusive root lock).
    pub fn remove(&self, digest: &Digest) -> Result<bool> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).at("remove", &path),
        }
    }

    /// Every blob in the store, and the paths of files under `blobs/sha256` whose names
    /// are not digests (left by something other than kiln).
    pub fn list(&self) -> Result<(Vec<Digest>, Vec<PathBuf>)> {
        let dir = &self.root.paths().blobs;
        let mut digests = Vec::new();
        let mut strays = Vec::new();
        for entry in fs::read_dir(dir).at("read directory", dir)? {
            let entry = entry.at("read directory", dir)?;
            let name = entry.file_name();
            match name.to_str().and_then(Digest::from_hex) {
                Some(digest) => digests.push(digest),
                None => strays.push(entry.path()),
            }
        }
        digests.sort();
        strays.sort();
        Ok((digests, strays))
    }

    fn not_found_or(
        &self,
        err: io::Error,
        digest: &Digest,
        op: &'static str,
        path: PathBuf,
    ) -> CacheError {
        if err.kind() == io::ErrorKind::NotFound {
            CacheError::BlobNotFound { digest: *digest }
        } else {
            CacheError::Io { op, path, source: err }
        }
    }
}

/// A blob being written. Write to it, then [`commit`](BlobWriter::commit).
pub struct BlobWriter {
    store: BlobStore,
    file: BufWriter<NamedTempFile>,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn temp_path(&self) -> &Path {
        self.file.get_ref().path()
    }

    /// Finishes the blob: checks it against `expected` (when given), fsyncs it and renames it
    /// to its final name. A blob already stored under that name is kept (an equal-sized file
    /// is assumed intact; `verify` checks content). On a mismatch the error names both
    /// digests and nothing is stored.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let temp_path = self.temp_path().to_path_buf();
        let file =
            self.file.into_inner().map_err(|err| err.into_error()).at("write", &temp_path)?;
        let digest = self.hasher.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(CacheError::DigestMismatch { expected: *expected, actual: digest });
        }
        let dest = self.store.path(&digest);
        if fs::metadata(&dest).is_ok_and(|meta| meta.len() == self.size) {
            return Ok((digest, self.size));
        }
        file.as_file().sync_all().at("fsync", &temp_path)?;
        file.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .at("chmod", &temp_path)?;
        file.persist(&dest).map_err(|err| err.error).at("rename into place", &dest)?;
        fsutil::sync_parent(&dest)?;
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    fn tmp_entries(root: &Root) -> usize {
        fs::read_dir(root.path().join("tmp")).unwrap().count()
    }

    #[test]
    fn put_and_read_back() {
        let (_dir, root) = root();
        let blobs = root.blobs();
        let digest = blobs.put_bytes(b"hello").unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert!(blobs.contains(&digest));
        assert_eq!(blobs.size(&digest).unwrap(), 5);
        assert_eq!(blobs.read_bytes(&digest).unwrap(), b"hello");
        let mut text = String::new();
        blobs.open(&digest).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
        assert_eq!(blobs.path(&digest), root.path().join("blobs/sha256").join(digest.hex()));
        let mode = fs::metadata(blobs.path(&digest)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        assert_eq!(tmp_entries(&root), 0);
        assert_eq!(blobs.list().unwrap(), (vec![digest], vec![]));
        assert!(blobs.remove(&digest).unwrap());
        assert!(!blobs.remove(&digest).unwrap());
        assert!(!blobs.contains(&digest));
    }

    #[test]
    fn missing_blob_errors_name_the_digest() {
        let (_dir, root) = root();
        let digest = Digest::of(b"absent");
        let expected = format!("blob {digest} not found in the store");
        assert_eq!(root.blobs().open(&digest).unwrap_err().to_string(), expected);
        assert_eq!(root.blobs().size(&digest).unwrap_err().to_string(), expected);
        assert_eq!(root.blobs().read_bytes(&digest).unwrap_err().to_string(), expected);
    }

    #[test]
    fn wrong_bytes_with_expected_digest_store_nothing() {
        let (_dir, root) = root();
        let blobs = root.blobs();
        let expected = Digest::of(b"the real content");
        let mut writer = blobs.writer().unwrap();
        writer.write_all(b"something else").unwrap();
        let err = writer.commit(Some(&expected)).unwrap_err();
        let actual = Digest::of(b"something else");
        assert_eq!(
            err.to_string(),
            format!("digest mismatch: expected {expected}, content hashes to {actual}")
        );
        assert!(!blobs.contains(&expected));
        assert!(!blobs.contains(&actual));
        assert_eq!(tmp_entries(&root), 0, "the temp file is removed");
        assert_eq!(blobs.list().unwrap().0, vec![]);
    }

    #[test]
    fn streamed_large_blob_with_expected_digest() {
        let (_dir, root) = root();
        let data: Vec<u8> =
            (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let expected = Digest::of(&data);
        let (digest, size) = root.blobs().put_reader(&data[..], Some(&expected)).unwrap();
        assert_eq!((digest, size), (expected, data.len() as u64));
        assert_eq!(fs::read(root.blobs().path(&digest)).unwrap(), data);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let (_dir, root) = root();
        let mut writer = root.blobs().writer().unwrap();
        writer.write_all(b"partial").unwrap();
        assert_eq!(tmp_entries(&root), 1);
        drop(writer);
        assert_eq!(tmp_entries(&root), 0);
        assert_eq!(root.blobs().list().unwrap().0, vec![]);
    }

    #[test]
    fn damaged_blob_of_other_size_is_replaced_and_read_bytes_detects_damage() {
        let (_dir, root) = root();
        let blobs = root.blobs();
        let digest = blobs.put_bytes(b"content").unwrap();
        let path = blobs.path(&digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"CONTENT").unwrap();
        let err = blobs.read_bytes(&digest).unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { expected, .. } if expected == digest));
        fs::write(&path, b"short").unwrap();
        assert_eq!(blobs.put_bytes(b"content").unwrap(), digest);
        assert_eq!(fs::read(&path).unwrap(), b"content");
    }

    fn big_payload() -> Vec<u8> {
        (0..1_500_000u32).map(|i| (i % 253) as u8 ^ (i >> 11) as u8).collect()
    }

    /// Writes the payload slowly in small pieces so that concurrent writers interleave.
    fn write_payload(root: &Root) -> Digest {
        let data = big_payload();
        let mut writer = root.blobs().writer().unwrap();
        for chunk in data.chunks(64 * 1024) {
            writer.write_all(chunk).unwrap();
            std::thread::yield_now();
        }
        writer.commit(Some(&Digest::of(&data))).unwrap().0
    }

    #[test]
    fn concurrent_writers_of_one_blob_in_threads() {
        let (_dir, root) = root();
        let digests: Vec<Digest> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| write_payload(&root))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let expected = Digest::of(&big_payload());
        assert!(digests.iter().all(|d| *d == expected));
        assert_eq!(root.blobs().list().unwrap().0, vec![expected]);
        assert_eq!(root.blobs().read_bytes(&expected).unwrap(), big_payload());
        assert_eq!(tmp_entries(&root), 0);
    }

    /// Run by `concurrent_writers_of_one_blob_in_processes` in child processes.
    #[test]
    #[ignore = "helper: run in child processes by concurrent_writers_of_one_blob_in_processes"]
    fn child_process_writes_payload() {
        let path = std::env::var_os("KILN_CACHE_TEST_ROOT").expect("KILN_CACHE_TEST_ROOT");
        let root = Root::open(path).unwrap();
        for _ in 0..3 {
            write_payload(&root);
        }
    }

    #[test]
    fn concurrent_writers_of_one_blob_in_processes() {
        let (dir, _root) = root();
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "blobs::tests::child_process_writes_payload",
                        "--ignored",
                        "--quiet",
                    ])
                    .env("KILN_CACHE_TEST_ROOT", dir.path())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let root = Root::open(dir.path()).unwrap();
        let expected = Digest::of(&big_payload());
        assert_eq!(root.blobs().list().unwrap().0, vec![expected]);
        assert_eq!(root.blobs().read_bytes(&expected).unwrap(), big_payload());
        assert_eq!(tmp_entries(&root), 0);
    }

    /// Run by `crash_mid_write_leaves_only_a_stale_temp_file` in a child process.
    #[test]
    #[ignore = "helper: run in a child process by crash_mid_write_leaves_only_a_stale_temp_file"]
    fn child_process_dies_mid_write() {
        let path = std::env::var_os("KILN_CACHE_TEST_ROOT").expect("KILN_CACHE_TEST_ROOT");
        let root = Root::open(path).unwrap();
        let mut writer = root.blobs().writer().unwrap();
        writer.write_all(&big_payload()[..500_000]).unwrap();
        writer.flush().unwrap();
        // Dies without running destructors, as a crash would (abort could leave a core file).
        std::process::exit(3);
    }

    #[test]
    fn crash_mid_write_leaves_only_a_stale_temp_file() {
        let (dir, root) = root();
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "blobs::tests::child_process_dies_mid_write", "--ignored", "--quiet"])
            .env("KILN_CACHE_TEST_ROOT", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3), "the child died mid-write");
        assert_eq!(root.blobs().list().unwrap().0, vec![], "no blob under a final name");
        let leftovers: Vec<PathBuf> =
            fs::read_dir(root.path().join("tmp")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(leftovers.len(), 1);
        assert_eq!(fs::metadata(&leftovers[0]).unwrap().len(), 500_000);
        // Young leftovers are kept (their writer might just have created them)...
        Root::open(dir.path()).unwrap();
        assert!(leftovers[0].exists());
        // ...old ones whose writer is gone (lock released) are removed on open.
        let old = std::time::SystemTime::now() - fsutil::STALE_AFTER * 2;
        File::options().write(true).open(&leftovers[0]).unwrap().set_modified(old).unwrap();
        Root::open(dir.path()).unwrap();
        assert!(!leftovers[0].exists());
    }
}
