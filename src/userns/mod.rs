//! Run the whole kiln engine as root over the user's subordinate id range, without root.
//!
//! Unpacking base layers (files owned by image uids, whiteout devices), `COPY --chown` and
//! snapshot management must act as root over every id an image may use. Real root can; an
//! unprivileged user cannot. So, like `buildah unshare` and rootlesskit, the commands that
//! touch the state root call [`ensure_root_or_reexec`] early: an unprivileged kiln starts
//! itself again inside a new user + mount namespace where its uid 0 stands for the user and
//! uids 1.. for the ranges of `/etc/subuid` (likewise gids), and from then on the engine
//! runs as uid 0 there and may chown to any mapped id.
//!
//! ```text
//! kiln (uid 1000)                     kiln (same argv, env + KILN_IN_USERNS=1)
//!  ├─ spawn /proc/self/exe ─────────▶ main: complete_reexec() before anything else
//!  │                                   unshare(NEWUSER|NEWNS)
//!  │◀──────────────────── unshared ─┤
//!  ├─ newuidmap PID 0 1000 1 1 100000 65536, newgidmap likewise
//!  ├─ mapped ──────────────────────▶ setresuid/gid(0), mount --make-rprivate /, pdeathsig
//!  │                                   ... the command runs as uid 0 ...
//!  └─ forwards INT/TERM/HUP, waits, exits with the child's code (or 128+signal)
//! ```
//!
//! Invariants:
//! - the child enters the namespace while single-threaded ([`complete_reexec`] is the first
//!   call of `main`): `unshare(CLONE_NEWUSER)` refuses multi-threaded callers;
//! - ids are mapped from the parent (only a process outside may map them, and only the
//!   setuid `newuidmap` may map subordinate ids); policy and `/etc/subuid` parsing are the
//!   sandbox's ([`crate::sandbox::idmap`]);
//! - with no subordinate ids only 0 → own id is mapped, with one warning;
//! - the child dies with the parent (parent-death signal), and its sandboxes with it.
//!
//! Files on the host: what kiln creates in the state root is owned by the invoking user,
//! except files whose owner an image or a build chose — layer snapshots (`snapshots/`) and
//! cache mount contents (`cache-mounts/`) — where container id N ≥ 1 is subordinate id
//! start + N − 1, as in `-o type=local` outputs. The user cannot `rm -rf` those (a directory
//! owned by a subordinate id is not theirs to write to); `kiln cache prune --all`, which runs
//! in this namespace, removes them, after which `rm -rf` of the state root works.
//!
//! Inside, code must not confuse "uid 0" with "real root": [`IdentityContext`] tells them
//! apart (the sandbox then nests a user namespace over the ids it has and mounts overlays
//! with `userxattr`), [`overlay_xattr_prefix`] says which xattrs overlay directories use,
//! and [`invoking_uid`] gives the real user for per-user defaults (the state root).

mod child;
pub mod error;
mod handshake;
pub mod identity;
mod parent;

pub use child::complete_reexec;
pub use error::UsernsError;
pub use identity::{IdentityContext, NestedIds, invoking_uid, overlay_xattr_prefix};

use std::ffi::OsString;
use std::process::ExitCode;

/// Set (to `1`) in the environment of the re-executed kiln: "this is kiln's own namespace".
pub const IN_USERNS_ENV: &str = "KILN_IN_USERNS";

/// The child's end of the handshake socket (a descriptor number), removed from the
/// environment by [`complete_reexec`].
const SYNC_FD_ENV: &str = "KILN_USERNS_SYNC_FD";

/// Make sure this process is root over a full id range: `Ok(None)` when it already is (real
/// root, or uid 0 in a user namespace such as the one this function creates), otherwise
/// run `args` (the full argv, normally `std::env::args_os()`) again inside a new user
/// namespace and return the exit code to leave with, `Ok(Some(code))`.
///
/// Call it early, before any thread is started (signals get blocked in the calling thread),
/// and only for commands that need it: it forks a second process.
pub fn ensure_root_or_reexec(
    args: impl IntoIterator<Item = OsString>,
) -> Result<Option<ExitCode>, UsernsError> {
    match IdentityContext::detect()? {
        // Real root, kiln's own namespace (the child of a re-exec is uid 0 once
        // `complete_reexec` returns, so re-execution never repeats), or a rootless container
        // where we already are root over what there is to have.
        IdentityContext::InitialRoot | IdentityContext::NestedRoot(_) => Ok(None),
        IdentityContext::Unprivileged => {
            parent::run_in_user_namespace(args.into_iter().collect()).map(Some)
        }
    }
}

/// Whether the environment says this is the re-executed kiln.
fn in_kiln_userns_env() -> bool {
    std::env::var_os(IN_USERNS_ENV).is_some_and(|v| v == "1")
}
