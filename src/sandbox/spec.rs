//! What one sandboxed command needs: its rootfs layers, process, network and extra mounts.
//!
//! A [`SandboxSpec`] is plain data. The engine builds it (resolving USER to numbers, WORKDIR,
//! the environment, RUN --mount definitions turned into [`Mount`]s), and the sandbox only
//! executes it. The spec crosses the process boundary to the `__sandbox-init` helper as JSON on
//! a private socket, never on argv, so it must never contain secret *values*: secrets reach
//! the sandbox as host files bind-mounted read-only.
//!
//! Paths inside the sandbox (`cwd`, mount targets) are absolute paths of the container's view;
//! they are always resolved inside the rootfs (symlinks included), never on the host.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything needed to run one command in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The layers the command sees as `/`, and where its writes go.
    pub rootfs: RootfsSpec,
    /// The command and its credentials.
    pub process: ProcessSpec,
    /// Host name set in the sandbox's own UTS namespace (and written to its `/etc/hosts`).
    pub hostname: String,
    /// Network mode: the host's network (Docker's default for RUN) or none.
    pub network: NetworkMode,
    /// Extra mounts, applied in order after the standard ones (`/proc`, `/dev`, `/sys`,
    /// `/etc/hosts`, `/etc/resolv.conf`); a later target may lie inside an earlier one.
    pub mounts: Vec<Mount>,
}

/// The root filesystem: read-only lower layers merged under a writable upper directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Lower layer directories, topmost first (overlayfs `lowerdir` order). May be empty
    /// (a `FROM scratch` rootfs).
    pub lowers: Vec<PathBuf>,
    /// Writable directory receiving the command's changes in overlay form (whiteouts as 0/0
    /// character devices, opaque directories marked by an `overlay.opaque` xattr).
    pub upper: PathBuf,
    /// Empty scratch directory on the same filesystem as `upper` (overlayfs `workdir`; the
    /// copy fallback also builds its merged tree under it).
    pub work: PathBuf,
    /// How to assemble the rootfs.
    #[serde(default)]
    pub mode: RootfsModeRequest,
}

/// Which rootfs strategy the caller asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsModeRequest {
    /// Overlay when the kernel lets us mount it, else the copy fallback.
    #[default]
    Auto,
    /// Overlay only: failing to mount it is an error.
    Overlay,
    /// Always the copy fallback (tests, filesystems overlayfs cannot use as upper).
    Copy,
}

/// The command to run and the identity it runs as (numbers already resolved from the
/// rootfs's `/etc/passwd` and `/etc/group` by the engine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// `argv[0]` is looked up in the `PATH` of `env` when it holds no `/`.
    pub argv: Vec<String>,
    /// The exact environment, `KEY=VALUE` entries; nothing is inherited from kiln.
    pub env: Vec<String>,
    /// Absolute working directory inside the rootfs; it must exist (creating WORKDIR is the
    /// engine's job).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Set `PR_SET_NO_NEW_PRIVS` (Docker's `--security-opt no-new-privileges`).
    pub no_new_privs: bool,
}

/// Network namespace choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Share the host's network, as `docker build` does by default.
    #[default]
    Host,
    /// A fresh network namespace with only the loopback interface, up.
    None,
}

/// An extra mount requested by the engine (RUN --mount types are built from these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// Bind a host file or directory (recursively) at `target`.
    Bind { source: PathBuf, target: String, readonly: bool },
    /// A writable view of a host directory whose writes are thrown away: an overlay with the
    /// source as its only lower layer and a temporary upper.
    BindOverlay { source: PathBuf, target: String },
    /// A fresh tmpfs. `size` in bytes (the kernel default, half of RAM, when absent); `mode`
    /// defaults to 01777 like Docker's.
    Tmpfs { target: String, size: Option<u64>, mode: Option<u32> },
}

impl Mount {
    /// The in-sandbox path this mount covers.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::BindOverlay { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }
}
