//! Run one RUN command in an isolated, rootless sandbox.
//!
//! A [`Sandbox`] takes a [`SandboxSpec`] (rootfs layers, command, identity, network, mounts)
//! and runs the command as Docker/BuildKit would for a `RUN`, without root on the host:
//!
//! - **namespaces** ([`namespaces`]): user, mount, pid, ipc, uts (host name from the spec), and
//!   net only for [`NetworkMode::None`] (with `lo` up); the default shares the host network
//!   as `docker build` does.
//! - **ids** ([`idmap`]): the full uid/gid range is mapped: from `/etc/subuid`/`/etc/subgid`
//!   through `newuidmap`/`newgidmap` when unprivileged, identity when kiln runs as root, and
//!   identity over the ids it has when kiln is root inside a user namespace (its own, see
//!   [`crate::userns`]; [`crate::userns::IdentityContext`] tells these apart).
//! - **rootfs** ([`rootfs`], [`copy`]): kernel overlayfs of the lower layers with the
//!   writable upper (`userxattr` rootless), or a merged copy when overlay cannot be mounted
//!   ([`RootfsMode`] says which); then `pivot_root`, old root detached.
//! - **mounts** ([`mounts`], [`confined`]): `/proc`, a minimal `/dev`, read-only `/sys`,
//!   kiln's `/etc/hosts` and the host's `/etc/resolv.conf`, then the spec's binds, overlays
//!   and tmpfs; every target resolved inside the rootfs. Targets missing from the image are
//!   created as stubs, reported in [`SandboxResult::stubs`] and removed after the run.
//! - **process** ([`process`], [`capabilities`]): exact argv/env/cwd, uid/gid/groups,
//!   Docker's 14 default capabilities, optional no_new_privs, umask 0022, stdin `/dev/null`,
//!   stdout/stderr streamed line by line to a callback.
//! - **lifetime** ([`init`], [`launch`]): kiln never forks without exec; it re-executes
//!   itself as `kiln __sandbox-init` with the spec on a private socket ([`protocol`]). The
//!   command runs under a pid 1 that reaps orphans; a chain of parent-death signals and the
//!   pid namespace guarantee that killing kiln, or [`KillHandle::kill`], leaves no process
//!   and no mount behind on the host.
//!
//! ```no_run
//! use kiln::sandbox::{Sandbox, SandboxSpec};
//! # fn demo(spec: SandboxSpec) -> Result<(), kiln::sandbox::SandboxError> {
//! let sandbox = Sandbox::new(spec);
//! let killer = sandbox.kill_handle(); // hand to a Ctrl-C handler
//! let result = sandbox.run(&mut |stream, line| {
//!     eprint!("{stream:?}: {}", String::from_utf8_lossy(line));
//! })?;
//! println!("{}", result.status);
//! # drop(killer); Ok(()) }
//! ```
//!
//! Requirements: Linux ≥ 5.12 (mount API, `mount_setattr`), ≥ 6.5 for the overlay rootfs
//! (`lowerdir+`; older kernels fall back to the copy mode), unprivileged user namespaces
//! enabled, and `newuidmap`/`newgidmap` (package `uidmap`) for a full rootless id range.

pub mod capabilities;
pub mod confined;
pub mod copy;
pub mod error;
pub mod idmap;
pub mod init;
mod launch;
pub mod mount_api;
pub mod mounts;
pub mod namespaces;
mod output;
pub mod process;
mod protocol;
pub mod rootfs;
mod scratch;
mod spec;
mod validate;

pub use confined::{Stub, StubKind};
pub use error::SandboxError;
pub use launch::{KillHandle, Sandbox, SandboxResult};
pub use output::{LineSplitter, Stream};
pub use protocol::ExitStatus;
pub use rootfs::RootfsMode;
pub use scratch::hosts_file;
pub use spec::{Mount, NetworkMode, ProcessSpec, RootfsModeRequest, RootfsSpec, SandboxSpec};
