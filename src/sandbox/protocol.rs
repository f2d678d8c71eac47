//! Messages between kiln and its `__sandbox-init` helper, one JSON object per line on a
//! private Unix socket (the helper's descriptor 3).
//!
//! ```text
//! kiln                                   helper                      pid 1 (new pid ns)
//!  ── Start(InitSpec) ─────────────────▶ unshare(user)
//!  ◀──────────────── UserNamespaceReady
//!  write uid/gid maps
//!  ── Mapped ─────────────────────────▶ unshare(pid), fork ─────────▶ namespaces, mounts
//!  ◀──────────────────────────────────────────────────── RootfsReady / Warning / Failed
//!  ◀──────────────────────────────────────────────────── Exited(status, stubs)
//! ```
//!
//! The spec travels here and never on argv (visible to every user in `/proc/*/cmdline`).

use super::confined::Stub;
use super::error::WireError;
use super::rootfs::RootfsMode;
use super::spec::SandboxSpec;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Write};
use std::path::PathBuf;

/// Descriptor number on which the helper finds its socket.
pub const HELPER_FD: i32 = 3;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Host-side paths kiln prepared for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScratchPaths {
    /// Empty directory the rootfs is mounted on.
    pub rootfs: PathBuf,
    /// Empty directory standing in for the lower layers of a `FROM scratch` rootfs.
    pub empty_lower: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// (upper, work) per `BindOverlay` mount.
    pub overlay_dirs: Vec<(PathBuf, PathBuf)>,
}

/// What the helper needs besides the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSpec {
    pub spec: SandboxSpec,
    pub scratch: ScratchPaths,
    /// kiln is not real root (unprivileged, or root only inside a user namespace): overlays
    /// need `userxattr`.
    pub rootless: bool,
    pub tty_gid_mapped: bool,
    pub setgroups_allowed: bool,
    /// kiln's pid: the helper exits at once if it finds itself orphaned.
    pub parent_pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToHelper {
    Start(Box<InitSpec>),
    Mapped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromHelper {
    UserNamespaceReady,
    Warning(String),
    RootfsReady { mode: RootfsMode },
    Failed(WireError),
    Exited { status: ExitStatus, stubs: Vec<Stub> },
}

/// Write one message as a line.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Read one message; `None` at end of stream.
pub fn receive<T: for<'de> Deserialize<'de>>(input: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_single_lines() {
        let message = FromHelper::Exited { status: ExitStatus::Signal(9), stubs: vec![] };
        let mut buf = Vec::new();
        send(&mut buf, &message).unwrap();
        send(&mut buf, &FromHelper::Warning("a\nb".into())).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut input = io::Cursor::new(buf);
        assert_eq!(receive::<FromHelper>(&mut input).unwrap(), Some(message));
        assert_eq!(
            receive::<FromHelper>(&mut input).unwrap(),
            Some(FromHelper::Warning("a\nb".into()))
        );
        assert_eq!(receive::<FromHelper>(&mut input).unwrap(), None);
    }
}
