//! `ADD` of a local tar archive: detection, and extraction into a layer directory.
//!
//! Detection is BuildKit's: a regular file is an archive when, once decompressed (gzip,
//! bzip2, xz, zstd, told by the first bytes; otherwise read as is), its first tar header
//! parses. A `.tar.gz` that is not a tar, or a corrupt one, is copied as a plain file.
//!
//! Extraction follows moby's `Untar` run inside a chroot of the destination directory, which
//! is what BuildKit does, with every path resolved in the *live* view of the layer over the
//! destination rootfs (so a `var/run/x` entry lands in `/run/x` when the image has
//! `/var/run -> /run`, instead of shadowing the symlink with a directory):
//!
//! - entry names are cleaned; `..` and absolute names stay inside the destination;
//!   symlinks met on the way (from the image or from earlier entries) are followed with
//!   the destination as their root;
//! - missing parent directories are made 0755 owned by 0:0;
//! - an entry replaces whatever is at its path, except that a directory entry over an
//!   existing directory merges into it (only the metadata changes); whiteout names
//!   (`.wh.*`) are ordinary files, as in `Untar`;
//! - owner is the header's, or the `--chown` owner for every entry; mode and mtime are the
//!   header's; xattrs (PAX `SCHILY.xattr.*`) are applied best-effort;
//! - hard links point to an entry resolved the same way (the final component not followed);
//!   the link's header then sets the owner, xattrs, mode and times of the file both names
//!   share (only the owner of a symlink), as `Untar` does.
//!
//! A malformed archive gives an error naming the entry; it never panics.

use super::layer_dir::{Content, LayerDir, NewMeta};
use super::merged::{FileKind, Time};
use super::{FsError, RootPath};
use crate::layer::decompress;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("read archive: {0}")]
    Read(io::Error),
    #[error("archive entry {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("archive entry {path}: unsupported entry type {kind:?}")]
    Unsupported { path: String, kind: char },
    #[error("archive entry {path}: {source}")]
    Write { path: String, source: FsError },
}

/// How entries are owned and what implied directories look like.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// `--chown`: every entry gets this owner instead of the header's.
    pub owner: Option<(u32, u32)>,
    /// Times of directories made because an entry needed them.
    pub implied_dir_time: Time,
}

/// What an extraction wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub nodes: u64,
    pub bytes: u64,
}

/// Whether the stream is a (possibly compressed) tar archive: its first header parses.
pub fn is_archive<R: Read>(reader: R) -> bool {
    let Ok((_, stream)) = decompress(reader) else { return false };
    let mut archive = tar::Archive::new(stream);
    let Ok(mut entries) = archive.entries() else { return false };
    matches!(entries.next(), Some(Ok(_)))
}

/// Extracts the archive in `reader` into the directory `dest` (a real path that is a
/// directory in the layer's live view), which acts as the archive's root.
pub fn extract<R: Read>(
    layer: &mut LayerDir,
    dest: &RootPath,
    reader: R,
    options: &ExtractOptions,
) -> Result<ExtractStats, ArchiveError> {
    let (_, stream) = decompress(reader).map_err(ArchiveError::Read)?;
    let mut archive = tar::Archive::new(stream);
    let mut stats = ExtractStats::default();
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        stats.entries += 1;
        extract_entry(layer, dest, &mut entry, options, &mut stats)?;
    }
    Ok(stats)
}

/// One header, PAX overrides applied.
struct Header {
    display: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    link: Option<Vec<u8>>,
    device: (u32, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn read_header<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Header, ArchiveError> {
    let display = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let bad = |what: &str, e: io::Error| ArchiveError::Malformed {
        path: display.clone(),
        reason: format!("{what}: {e}"),
    };
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
    let mut uid = header.uid().map_err(|e| bad("uid", e))?;
    let mut gid = header.gid().map_err(|e| bad("gid", e))?;
    let mut mtime = header.mtime().map_err(|e| bad("mtime", e))? as i64;
    let device = if kind.is_character_special() || kind.is_block_special() {
        (
            header.device_major().map_err(|e| bad("device major", e))?.unwrap_or(0),
            header.device_minor().map_err(|e| bad("device minor", e))?.unwrap_or(0),
        )
    } else {
        (0, 0)
    };
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax header", e))? {
        for record in pax {
            let record = record.map_err(|e| bad("pax record", e))?;
            let number = || -> Result<i64, ArchiveError> {
                std::str::from_utf8(record.value_bytes())
                    .ok()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| ArchiveError::Malformed {
                        path: display.clone(),
                        reason: format!(
                            "pax {} is not a number",
                            String::from_utf8_lossy(record.key_bytes())
                        ),
                    })
            };
            match record.key_bytes() {
                b"uid" => uid = u64::try_from(number()?).unwrap_or(u64::MAX),
                b"gid" => gid = u64::try_from(number()?).unwrap_or(u64::MAX),
                b"mtime" => mtime = number()?,
                key => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    xattrs.sort();
    Ok(Header { display, kind, mode, uid, gid, mtime, link, device, xattrs })
}

fn extract_entry<R: Read>(
    layer: &mut LayerDir,
    dest: &RootPath,
    entry: &mut tar::Entry<'_, R>,
    options: &ExtractOptions,
    stats: &mut ExtractStats,
) -> Result<(), ArchiveError> {
    let header = read_header(entry)?;
    let write = |source: FsError| ArchiveError::Write { path: header.display.clone(), source };
    let raw = entry.path_bytes().into_owned();
    let name = RootPath::lexical(OsString::from_vec(raw));
    let Some(last) = name.file_name().map(|n| n.to_os_string()) else {
        // The archive's root: the destination keeps its own metadata.
        return Ok(());
    };
    let parent_name = name.parent().expect("has a last component");
    let parent = layer.resolve(dest, parent_name.relative(), true).map_err(write)?;
    let parent_path = parent.path.clone();
    match &parent.entry {
        Some(entry) if !entry.is_dir() => {
            return Err(write(FsError::NotADirectory { path: parent_path }));
        }
        Some(_) => {
            layer.dir(&parent_path).map_err(write)?;
        }
        None => {
            let implied = NewMeta::simple(0o755, 0, 0, options.implied_dir_time);
            layer.ensure_dir(&parent_path, Some(&implied)).map_err(write)?;
        }
    }
    let path = parent_path.join(last);
    let (uid, gid) = match options.owner {
        Some(owner) => owner,
        None => (id(header.uid, &header)?, id(header.gid, &header)?),
    };
    let time = Time { sec: header.mtime, nsec: 0 };
    let meta = NewMeta {
        mode: header.mode,
        uid,
        gid,
        atime: time,
        mtime: time,
        xattrs: header.xattrs.clone(),
    };
    let existing = layer.entry(&path).map_err(write)?;
    let kind = header.kind;
    if kind.is_dir() {
        if existing.as_ref().is_some_and(|e| e.is_dir()) {
            layer.dir(&path).map_err(write)?;
            layer.update_dir(&path, &meta).map_err(write)?;
        } else {
            layer.remove(&path).map_err(write)?;
            layer.create_dir(&path, &meta).map_err(write)?;
        }
        stats.dirs += 1;
        return Ok(());
    }
    if existing.is_some() {
        layer.remove(&path).map_err(write)?;
    }
    if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
        stats.bytes += layer.write_file(&path, Content::Reader(entry), &meta).map_err(write)?;
        stats.files += 1;
    } else if kind.is_symlink() {
        let target =
            header.link.clone().ok_or_else(|| malformed(&header, "symlink without a target"))?;
        layer.symlink(&path, &OsString::from_vec(target), &meta).map_err(write)?;
        stats.symlinks += 1;
    } else if kind.is_hard_link() {
        let target =
            header.link.clone().ok_or_else(|| malformed(&header, "hard link without a target"))?;
        let resolved = layer.resolve(dest, OsString::from_vec(target), false).map_err(write)?;
        let Some(target_entry) = resolved.entry else {
            return Err(malformed(&header, "hard link to a missing entry"));
        };
        if target_entry.is_dir() {
            return Err(malformed(&header, "hard link to a directory"));
        }
        layer.hardlink(target_entry.path(), &path).map_err(write)?;
        // The link's own header then applies to the file both names share, as in `Untar`.
        layer.set_linked_meta(&path, &meta).map_err(write)?;
        stats.hardlinks += 1;
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        let node = if kind.is_character_special() {
            FileKind::CharDevice
        } else if kind.is_block_special() {
            FileKind::BlockDevice
        } else {
            FileKind::Fifo
        };
        let rdev = rustix::fs::makedev(header.device.0, header.device.1);
        if layer.node(&path, node, rdev as u64, &meta).map_err(write)? {
            stats.nodes += 1;
        }
    } else {
        return Err(ArchiveError::Unsupported {
            path: header.display.clone(),
            kind: char::from(kind.as_byte()),
        });
    }
    Ok(())
}

fn id(value: u64, header: &Header) -> Result<u32, ArchiveError> {
    u32::try_from(value).map_err(|_| malformed(header, "owner id out of range"))
}

fn malformed(header: &Header, reason: &str) -> ArchiveError {
    ArchiveError::Malformed { path: header.display.clone(), reason: reason.to_string() }
}
