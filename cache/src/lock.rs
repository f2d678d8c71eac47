//! Inter-process locks on a root, all `flock(2)` locks through `std::fs::File::lock*`, so the
//! kernel releases them when a process dies, however it dies.
//!
//! - `ROOT/lock`: every process that adds to or reads from the store during a build holds a
//!   shared [`Lease`] on it for the build's duration. `prune` and `verify` take it exclusively
//!   ([`ExclusiveLock`]), so they never run while a build is using what they might delete, and
//!   no build starts while they run.
//! - `ROOT/locks/keys/<key>`: a [`KeyLock`] serialises processes computing the same cache key;
//!   the second one waits, then finds the record the first one wrote. A key lock includes a
//!   lease, which is what makes removing key lock files under the exclusive lock safe.
//! - `ROOT/locks/index`: serialises read-modify-write cycles of `index.json` (taken together
//!   with a lease, see `images.rs`).
//!
//! Invariant: a process never asks for the exclusive root lock while it holds a lease (flock
//! locks taken through different open files conflict even within one process).

use crate::error::{IoContext, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// Opens (creating if needed) `path` and locks it in `mode`. When the lock is busy, calls
/// `on_wait` once and then blocks until it is granted.
pub(crate) fn acquire(path: &Path, mode: Mode, on_wait: &mut dyn FnMut()) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at("open lock file", path)?;
    let attempt = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match attempt {
        Ok(()) => return Ok(file),
        Err(TryLockError::WouldBlock) => on_wait(),
        Err(TryLockError::Error(err)) => return Err(err).at("lock", path),
    }
    match mode {
        Mode::Shared => file.lock_shared(),
        Mode::Exclusive => file.lock(),
    }
    .at("lock", path)?;
    Ok(file)
}

/// A shared hold on the root: while any lease lives, nothing is pruned or verified away.
/// Released on drop (or when the process dies).
#[derive(Debug)]
#[must_use = "the lease is released when dropped"]
pub struct Lease {
    _file: File,
}

impl Lease {
    pub(crate) fn new(file: File) -> Lease {
        Lease { _file: file }
    }
}

/// The exclusive hold on the root that `prune` and `verify` take. Released on drop.
#[derive(Debug)]
#[must_use = "the lock is released when dropped"]
pub struct ExclusiveLock {
    _file: File,
}

impl ExclusiveLock {
    pub(crate) fn new(file: File) -> ExclusiveLock {
        ExclusiveLock { _file: file }
    }
}

/// An exclusive hold on one cache key (plus a lease on the root). Released on drop.
#[derive(Debug)]
#[must_use = "the lock is released when dropped"]
pub struct KeyLock {
    _key: File,
    _lease: Lease,
    path: PathBuf,
}

impl KeyLock {
    pub(crate) fn new(key: File, lease: Lease, path: PathBuf) -> KeyLock {
        KeyLock { _key: key, _lease: lease, path }
    }

    /// The lock file (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    #[test]
    fn shared_locks_coexist_and_exclusive_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = acquire(&path, Mode::Shared, &mut || panic!("shared must not wait")).unwrap();
        let second = acquire(&path, Mode::Shared, &mut || panic!("shared must not wait")).unwrap();

        let granted = Arc::new(AtomicBool::new(false));
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let thread = {
            let (path, granted) = (path.clone(), granted.clone());
            std::thread::spawn(move || {
                let _lock =
                    acquire(&path, Mode::Exclusive, &mut || waiting_tx.send(()).unwrap()).unwrap();
                granted.store(true, Ordering::SeqCst);
            })
        };
        waiting_rx.recv_timeout(Duration::from_secs(10)).expect("on_wait was called");
        drop(first);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!granted.load(Ordering::SeqCst), "exclusive granted while a shared lock lives");
        drop(second);
        thread.join().unwrap();
        assert!(granted.load(Ordering::SeqCst));
    }
}
