//! What the snapshot records about each selected file, directory and symlink.

use kiln_cache::Digest;
use std::path::PathBuf;

/// One selected entry of the context.
///
/// Invariants: `path` is relative to the context root, non-empty, and made of plain names
/// (no `.`, `..` or empty component); `mode` holds only the permission and setuid, setgid and
/// sticky bits (`st_mode & 0o7777`); for a file, `size` is the number of bytes hashed into
/// `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    /// The owner COPY gives the file when it has no `--chown`. Like BuildKit's client (which
    /// resets every context entry to 0:0 before sending it), this is always 0, so the digest
    /// of a context does not depend on who checked it out.
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the epoch. COPY keeps it; it is never part of a
    /// digest.
    pub mtime_ns: i64,
    /// `(device, inode)` on the host and the link count, so a copier can recreate hard links.
    /// Never part of a digest.
    pub inode: (u64, u64),
    pub nlink: u64,
}

/// The type of an entry, with what only that type has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File {
        size: u64,
        digest: Digest,
    },
    /// A symbolic link, recorded as a link (never followed by the walk); `target` is the link
    /// text exactly as stored.
    Symlink {
        target: PathBuf,
    },
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Directory)
    }

    /// The content digest of a regular file.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.kind {
            EntryKind::File { digest, .. } => Some(digest),
            _ => None,
        }
    }
}

/// A selected entry the context source leaves out because it cannot be part of an image
/// built without privileges: sockets, fifos and device nodes.
///
/// BuildKit's client clears the socket bit (so a socket is sent as an empty regular file that
/// fails to open) and sends fifos and devices for the daemon to create as root. kiln skips all
/// of them, never opening them (opening a fifo would block), and reports them here so the
/// caller can warn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    pub path: PathBuf,
    pub kind: SpecialKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Socket,
    Fifo,
    CharDevice,
    BlockDevice,
}

impl std::fmt::Display for SpecialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecialKind::Socket => "socket",
            SpecialKind::Fifo => "fifo",
            SpecialKind::CharDevice => "character device",
            SpecialKind::BlockDevice => "block device",
        })
    }
}

/// Counters of one scan, for progress output and for tests that must prove a file was not
/// read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Selected entries (directories, files, symlinks).
    pub entries: usize,
    /// Selected regular files.
    pub files: usize,
    /// Their total size in bytes.
    pub file_bytes: u64,
    /// Files whose content was read and hashed in this scan.
    pub files_hashed: usize,
    pub bytes_hashed: u64,
    /// Files whose digest came from the stat cache without reading them.
    pub stat_cache_hits: usize,
}
