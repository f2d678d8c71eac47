//! The child's side of the re-exec: finish entering the user namespace before `main` does
//! anything else.
//!
//! Why first thing, and in the child itself: `unshare(CLONE_NEWUSER)` fails with EINVAL in
//! a multi-threaded process, and a process can only join a *new* user namespace by creating
//! it. Doing it in a `pre_exec` hook of the parent would run Rust code between fork and exec
//! in a possibly multi-threaded parent; here the process is a fresh exec that has started no
//! thread yet. The ids cannot be mapped from the inside (only `newuidmap` run by the parent,
//! setuid root outside, may map subordinate ids), hence the handshake in [`super::handshake`].

use super::error::UsernsError;
use super::handshake::{MAPPED, Report};
use super::{IN_USERNS_ENV, SYNC_FD_ENV};
use crate::sandbox::namespaces;
use rustix::mount::MountPropagationFlags;
use rustix::process::Signal;
use rustix::thread::UnshareFlags;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// If this process was started by [`super::ensure_root_or_reexec`], enter the user and mount
/// namespaces, wait for the ids to be mapped, and become uid/gid 0 there; otherwise do
/// nothing. Must run before any thread exists.
pub fn complete_reexec() -> Result<(), UsernsError> {
    let Some(value) = std::env::var_os(SYNC_FD_ENV) else {
        return Ok(());
    };
    // The variable is for this process alone, not for the commands it starts.
    // SAFETY: called first thing in main, while the process is single-threaded: nothing can
    // read the environment concurrently.
    unsafe { std::env::remove_var(SYNC_FD_ENV) };
    let text = value.to_string_lossy().into_owned();
    let fd: RawFd = match text.parse() {
        Ok(fd) if fd > 2 && std::env::var_os(IN_USERNS_ENV).is_some() => fd,
        _ => return Err(UsernsError::BadSyncFd { variable: SYNC_FD_ENV, value: text }),
    };
    // SAFETY: the parent left exactly this descriptor open for us (the child end of its
    // socket pair) and nothing else in this fresh process owns it.
    let mut sync = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let setup = |step, source| UsernsError::Setup { step, source };
    rustix::io::fcntl_setfd(&sync, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| setup("mark the handshake socket close-on-exec", e.into()))?;
    let parent = rustix::process::getppid();

    let unshared = namespaces::unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS);
    let report = match &unshared {
        Ok(()) => Report::Unshared,
        Err(err) => Report::Failed(crate::sandbox::error::errno_of(err)),
    };
    if sync.write_all(&report.encode()).is_err() || unshared.is_err() {
        return Err(UsernsError::ReportedByParent);
    }
    let mut answer = [0u8; 1];
    match sync.read_exact(&mut answer) {
        Ok(()) if answer[0] == MAPPED => {}
        _ => return Err(UsernsError::ReportedByParent),
    }
    drop(sync);

    // The maps are written: our ids already read as 0 through them; make every id of the
    // process (saved and filesystem ones too) 0 explicitly.
    // SAFETY: plain system calls on this single-threaded process's own credentials.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(setup("setresgid(0, 0, 0)", std::io::Error::last_os_error()));
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(setup("setresuid(0, 0, 0)", std::io::Error::last_os_error()));
        }
    }
    // Our mounts (overlay snapshots, sandbox scratch) must never propagate to the host.
    rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .map_err(|e| setup("make / rprivate", e.into()))?;
    // Die with the parent. Set after the credential change, which clears it.
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| setup("set parent death signal", e.into()))?;
    if rustix::process::getppid() != parent {
        // The parent died before the signal was armed: it will never come.
        return Err(UsernsError::ReportedByParent);
    }
    Ok(())
}
