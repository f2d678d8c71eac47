//! The parent's side of the re-exec: start kiln again, map the child's ids from outside,
//! then stay as a thin waiter that forwards signals and passes the exit code on.
//!
//! Why the parent maps: a process may not map ids it does not own into its own namespace;
//! only a process outside it may, and for subordinate ids only the setuid helpers
//! `newuidmap`/`newgidmap` (which check `/etc/subuid`/`/etc/subgid`). The map policy is the
//! sandbox's ([`crate::sandbox::idmap`]): container 0 → own id, 1.. → the subordinate ranges,
//! or own id only (with a warning) when the user has none.
//!
//! Signals: SIGINT, SIGTERM and SIGHUP are blocked and forwarded to the child, which reacts
//! as if they were sent to it (a terminal's Ctrl-C reaches both: the child then sees SIGINT
//! twice, which kiln's handlers treat as once). SIGCHLD is blocked too and waited for with
//! the others in one `sigwait` loop, so no handler and no thread are needed. If the parent is
//! killed outright, the child's parent-death signal takes it (and its sandboxes) down.

use super::error::UsernsError;
use super::handshake::{MAPPED, Report};
use super::{IN_USERNS_ENV, SYNC_FD_ENV};
use crate::sandbox::idmap::{self, IdMaps, MapWriter};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, ExitStatus};

/// Signals passed on to the child.
const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Run `args` (a full argv, program name first) as a copy of this executable in a new user
/// namespace; returns the code to exit with.
pub fn run_in_user_namespace(args: Vec<OsString>) -> Result<ExitCode, UsernsError> {
    let maps = idmap::host_id_maps().map_err(|e| UsernsError::MapIds { source: Box::new(e) })?;
    if let Some(warning) = missing_subids_warning(&maps, &user_label()) {
        eprintln!("warning: {warning}");
    }
    let blocked = SignalSet::new(&[&FORWARDED[..], &[libc::SIGCHLD]].concat());
    let previous = blocked.block();
    let result = spawn_and_wait(args, &maps, &blocked);
    previous.restore();
    result
}

fn spawn_and_wait(
    args: Vec<OsString>,
    maps: &IdMaps,
    signals: &SignalSet,
) -> Result<ExitCode, UsernsError> {
    let (mut ours, theirs) =
        UnixStream::pair().map_err(|e| UsernsError::Setup { step: "socketpair", source: e })?;
    let mut argv = args.into_iter();
    let mut command = Command::new("/proc/self/exe");
    if let Some(arg0) = argv.next() {
        command.arg0(arg0);
    }
    let fd = theirs.as_raw_fd();
    command.args(argv).env(IN_USERNS_ENV, "1").env(SYNC_FD_ENV, fd.to_string());
    // SAFETY: runs between fork and exec; fcntl is async-signal-safe and nothing allocates.
    // std resets the signal mask of the child, so it does not inherit our blocked signals.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| UsernsError::Spawn { source })?;
    drop(theirs);

    let mut report = [0u8; Report::LEN];
    let report = match ours.read_exact(&mut report) {
        Ok(()) => Report::decode(report),
        Err(_) => None,
    };
    match report {
        Some(Report::Unshared) => {}
        Some(Report::Failed(errno)) => {
            let _ = child.wait();
            return Err(UsernsError::Unshare { source: std::io::Error::from_raw_os_error(errno) });
        }
        None => return died_during_setup(&mut child),
    }
    if let Err(source) = idmap::write_maps(child.id(), maps) {
        drop(ours); // the child gives up quietly
        let _ = child.wait();
        return Err(UsernsError::MapIds { source: Box::new(source) });
    }
    if ours.write_all(&[MAPPED]).is_err() {
        return died_during_setup(&mut child);
    }
    drop(ours);
    let status = wait_forwarding(&mut child, signals)?;
    Ok(exit_code(status))
}

/// The child went away before the handshake ended: a signal (Ctrl-C) is passed on as the
/// exit code, anything else is an error.
fn died_during_setup(child: &mut Child) -> Result<ExitCode, UsernsError> {
    let status = child.wait().map_err(|e| UsernsError::Setup { step: "wait", source: e })?;
    match status.signal() {
        Some(_) => Ok(exit_code(status)),
        None => Err(UsernsError::ChildDied { status: status.to_string() }),
    }
}

/// Wait for the child, forwarding the blocked signals to it as they arrive.
fn wait_forwarding(child: &mut Child, signals: &SignalSet) -> Result<ExitStatus, UsernsError> {
    let wait_err = |source| UsernsError::Setup { step: "wait for the child", source };
    loop {
        // Checked before each wait: a SIGCHLD may have been consumed by an earlier round.
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(status);
        }
        let signal = signals.wait();
        if FORWARDED.contains(&signal) {
            // SAFETY: plain kill(2); the child is not reaped yet (only this loop reaps it),
            // so its pid cannot have been reused.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }
}

/// The code the parent exits with for the child's status: its code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(signal)) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        (None, None) => ExitCode::FAILURE,
    }
}

/// The warning for a user without subordinate ids, if they lack them (pure).
pub fn missing_subids_warning(maps: &IdMaps, user: &str) -> Option<String> {
    let files: Vec<&str> = [(maps.uid_writer, "/etc/subuid"), (maps.gid_writer, "/etc/subgid")]
        .into_iter()
        .filter(|(writer, _)| *writer == MapWriter::OwnIdOnly)
        .map(|(_, file)| file)
        .collect();
    if files.is_empty() {
        return None;
    }
    Some(format!(
        "no subordinate ids for {user} in {}: files can only be owned by root in images built here",
        files.join(" and ")
    ))
}

/// The login name of the real user, or its uid.
fn user_label() -> String {
    let uid = rustix::process::getuid().as_raw();
    idmap::user_name_of(uid).unwrap_or_else(|| uid.to_string())
}

/// A set of signals, blocked in this thread while the child runs.
struct SignalSet(libc::sigset_t);

/// The signal mask to put back.
struct SavedMask(libc::sigset_t);

impl SignalSet {
    fn new(signals: &[libc::c_int]) -> SignalSet {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live, initialised sigset_t; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
        }
        SignalSet(set)
    }

    fn block(&self) -> SavedMask {
        // SAFETY: sigset_t is plain data; pthread_sigmask reads `self.0` and writes `old`.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live sigset_t values.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, &mut old) };
        SavedMask(old)
    }

    /// The next pending signal of the set (they must be blocked).
    fn wait(&self) -> libc::c_int {
        let mut signal: libc::c_int = 0;
        // SAFETY: `self.0` is an initialised set and `signal` a live local sigwait writes to.
        // sigwait cannot fail for a valid set of valid signals.
        unsafe { libc::sigwait(&self.0, &mut signal) };
        signal
    }
}

impl SavedMask {
    fn restore(self) {
        // SAFETY: `self.0` was filled by pthread_sigmask; setting it back is always valid.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::idmap::{IdMapEntry, IdSource};

    #[test]
    fn exit_codes_pass_through_and_signals_become_128_plus_n() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), ExitCode::from(7));
        assert_eq!(exit_code(ExitStatus::from_raw(0)), ExitCode::SUCCESS);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGINT)), ExitCode::from(130));
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), ExitCode::from(137));
    }

    fn maps(subuid: Option<&str>, subgid: Option<&str>) -> IdMaps {
        IdMaps::for_user(&IdSource { uid: 1001, gid: 1001, user_name: Some("ann"), subuid, subgid })
            .unwrap()
    }

    #[test]
    fn full_ranges_give_newidmap_maps_and_no_warning() {
        let maps = maps(Some("ann:100000:65536\n"), Some("1001:200000:65536\n"));
        assert_eq!(
            maps.uid,
            [
                IdMapEntry { container: 0, host: 1001, count: 1 },
                IdMapEntry { container: 1, host: 100000, count: 65536 },
            ]
        );
        assert_eq!(
            idmap::newidmap_args(42, &maps.uid),
            ["42", "0", "1001", "1", "1", "100000", "65536"]
        );
        assert_eq!(missing_subids_warning(&maps, "ann"), None);
    }

    #[test]
    fn missing_ranges_are_named_in_one_warning() {
        let none = maps(None, Some("bob:1:2\n"));
        assert_eq!(
            missing_subids_warning(&none, "ann").unwrap(),
            "no subordinate ids for ann in /etc/subuid and /etc/subgid: files can only be owned by root in images built here"
        );
        let gid_only = maps(Some("ann:100000:65536\n"), None);
        assert_eq!(
            missing_subids_warning(&gid_only, "ann").unwrap(),
            "no subordinate ids for ann in /etc/subgid: files can only be owned by root in images built here"
        );
    }
}
