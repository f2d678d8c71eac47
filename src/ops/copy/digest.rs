//! The content digest of a COPY's local sources, for its cache key.
//!
//! The digest covers exactly what the copy reads from the source filesystem: for each
//! source (as written) and each item it selects (its name), every entry the walk visits
//! (see `walk`: excludes and `--parents` patterns applied) with its path relative to the
//! item, how it is reached, type, mode, owner as it will be written (0:0 from a build
//! context), xattrs, symlink target, device numbers, and for regular files a content hash
//! (or, for the second name of a hard-linked file, the first name). Never mtimes, never host
//! paths, never inode numbers. URLs and heredocs are not local sources: their content is in
//! the op itself (heredocs) or known after download ([`super::Download::digest`]).
//!
//! The encoding is canonical and type-tagged: every field is a one-byte tag followed by a
//! fixed-width integer or a length-prefixed byte string, so no two different inputs encode
//! alike. The result is `sha256:<hex>` of that encoding. [`source_digests`] also gives, per
//! source as written, the digest of that source's part of the encoding: the cache keeps them
//! to tell which source changed when a step misses.

use super::plan;
use super::walk::{self, Visit};
use super::{CopyError, CopySource, Owners};
use crate::fs::{Entry, FileKind, FsError, RootPath, xattr};
use kiln_frontend::graph::CopyOp;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

/// Gives the content hash (sha256) of a regular file entry. Lets a caller put a stat cache
/// (keyed by host path, device, inode, size and mtime) in front of reading the file.
pub type ContentHasher<'a> = &'a dyn Fn(&Entry) -> Result<[u8; 32], FsError>;

/// Reads the file and hashes its bytes.
pub fn sha256_content(entry: &Entry) -> Result<[u8; 32], FsError> {
    let mut file = entry.open()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FsError::io("read", entry.path(), e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// The digest of the local sources of `op`, and of each source on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigests {
    /// What the cache key covers (see the module docs).
    pub total: String,
    /// `(source as written, sha256:<hex> of its part)`, in the op's order.
    pub per_source: Vec<(String, String)>,
}

/// The digest of the local sources of `op` read from `source` (see the module docs).
pub fn source_digest(
    op: &CopyOp,
    source: CopySource<'_>,
    hasher: ContentHasher<'_>,
) -> Result<String, CopyError> {
    source_digests(op, source, hasher).map(|digests| digests.total)
}

/// [`source_digest`] with the digest of each local source.
pub fn source_digests(
    op: &CopyOp,
    source: CopySource<'_>,
    hasher: ContentHasher<'_>,
) -> Result<SourceDigests, CopyError> {
    let exclude = super::exclude_rules(op)?;
    let owners = match source {
        CopySource::Context(_) => Owners::Fixed(0, 0),
        _ => Owners::Keep,
    };
    let mut key = KeyWriter::new();
    key.bytes(b'V', b"kiln-copy-sources-v1");
    let mut per_source = Vec::new();
    for src in &op.sources {
        if plan::is_git(src) || plan::is_url(src) {
            continue;
        }
        key.part = Some(Sha256::new());
        key.bytes(b'S', src.as_bytes());
        let root = source.root().ok_or(CopyError::NoSource)?;
        for item in plan::local_items(root, src, op.parents, &exclude)? {
            key.bytes(b'I', item.name.as_bytes());
            let mut links: HashMap<(u64, u64), RootPath> = HashMap::new();
            walk::walk(root, &item.entry, &item.rules, &mut |rel, entry, visit| {
                write_entry(&mut key, rel, entry, visit, owners, hasher, &mut links)
            })?;
        }
        if let Some(part) = key.part.take() {
            per_source.push((src.clone(), format!("sha256:{}", super::url::hex(&part.finalize()))));
        }
    }
    let total = format!("sha256:{}", super::url::hex(&key.hasher.finalize()));
    Ok(SourceDigests { total, per_source })
}

fn write_entry(
    key: &mut KeyWriter,
    rel: &RootPath,
    entry: &Entry,
    visit: Visit,
    owners: Owners,
    hasher: ContentHasher<'_>,
    links: &mut HashMap<(u64, u64), RootPath>,
) -> Result<(), CopyError> {
    let st = entry.stat();
    let source_err = |source| CopyError::Source { path: entry.path().to_string(), source };
    key.bytes(if visit == Visit::Direct { b'E' } else { b'P' }, &rel.slash_joined());
    key.number(b'k', entry.kind().letter() as u64);
    key.number(b'm', st.mode as u64);
    let (uid, gid) = owners.of(st.uid, st.gid);
    key.number(b'u', uid as u64);
    key.number(b'g', gid as u64);
    match entry.kind() {
        FileKind::File => {
            let first = (st.nlink > 1).then(|| links.get(&(st.dev, st.ino)).cloned()).flatten();
            match first {
                Some(first) => key.bytes(b'h', &first.slash_joined()),
                None => {
                    if st.nlink > 1 {
                        links.insert((st.dev, st.ino), rel.clone());
                    }
                    key.bytes(b'c', &hasher(entry).map_err(source_err)?);
                }
            }
        }
        FileKind::Symlink => key.bytes(b'l', entry.read_link().map_err(source_err)?.as_bytes()),
        FileKind::CharDevice | FileKind::BlockDevice => key.number(b'r', st.rdev),
        FileKind::Dir | FileKind::Fifo | FileKind::Socket => {}
    }
    let xattrs = entry.xattrs().map_err(source_err)?;
    for (name, value) in xattrs.iter().filter(|(name, _)| !xattr::is_excluded(name)) {
        key.bytes(b'x', name);
        key.bytes(b'v', value);
    }
    Ok(())
}

/// The canonical encoding, hashed as it is written (and into `part`, the current source's
/// own digest, when set).
struct KeyWriter {
    hasher: Sha256,
    part: Option<Sha256>,
}

impl KeyWriter {
    fn new() -> Self {
        KeyWriter { hasher: Sha256::new(), part: None }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        if let Some(part) = &mut self.part {
            part.update(bytes);
        }
    }

    fn bytes(&mut self, tag: u8, bytes: &[u8]) {
        self.update(&[tag]);
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }

    fn number(&mut self, tag: u8, value: u64) {
        self.update(&[tag]);
        self.update(&value.to_le_bytes());
    }
}
