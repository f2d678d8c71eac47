//! Content hashing of context files: streaming (one bounded buffer per thread, whatever the
//! file size) and parallel (rayon's pool, biggest files first so one large file does not end
//! up alone at the tail).
//!
//! Files are opened relative to the context directory's descriptor with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`) and `O_NOFOLLOW | O_NONBLOCK`, and must still be
//! regular files once open: if the tree changes between the walk and the read (a directory
//! swapped for a symlink, a file for a fifo), the read fails instead of leaving the context
//! or blocking.

use super::ContextError;
use kiln_cache::{Digest, Hasher};
use rayon::prelude::*;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::cell::RefCell;
use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

/// Read size: large enough that syscall overhead vanishes next to hashing, small enough to
/// stay in L2.
const BUFFER_SIZE: usize = 256 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; BUFFER_SIZE]);
}

/// One file to hash: its path relative to the root, and its size at walk time (used only to
/// schedule big files first).
pub struct HashJob<'a> {
    pub path: &'a Path,
    pub size: u64,
}

/// The digest and byte count of each job's file, in job order.
pub fn hash_files(
    root_fd: BorrowedFd<'_>,
    root: &Path,
    jobs: &[HashJob<'_>],
) -> Result<Vec<(Digest, u64)>, ContextError> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].size));
    let mut results: Vec<(usize, (Digest, u64))> = order
        .par_iter()
        .with_max_len(1)
        .map(|&i| {
            let path = jobs[i].path;
            hash_file(root_fd, path)
                .map(|hashed| (i, hashed))
                .map_err(|source| ContextError::io("read", root.join(path), source))
        })
        .collect::<Result<_, _>>()?;
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, hashed)| hashed).collect())
}

/// Hashes one file, opened beneath `root_fd`.
pub fn hash_file(root_fd: BorrowedFd<'_>, path: &Path) -> std::io::Result<(Digest, u64)> {
    let fd = open_beneath(root_fd, path)?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::other("changed into a non-regular file during the scan"));
    }
    let mut file = std::fs::File::from(fd);
    BUFFER.with_borrow_mut(|buffer| {
        let mut hasher = Hasher::new();
        let mut total = 0u64;
        loop {
            let n = match file.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buffer[..n]);
            total += n as u64;
        }
        Ok((hasher.finish(), total))
    })
}

/// Opens `path` (relative) for reading without following any symlink and without leaving
/// `root_fd`; falls back to `openat` with `O_NOFOLLOW` on kernels without `openat2`.
fn open_beneath(root_fd: BorrowedFd<'_>, path: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root_fd, path, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::NOSYS) => {
            Ok(rustix::fs::openat(root_fd, path, flags, Mode::empty())?)
        }
        Err(errno) => Err(errno.into()),
    }
}
