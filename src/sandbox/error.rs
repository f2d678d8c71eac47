//! Errors of the sandbox, and their wire form between the init helper and kiln.
//!
//! Failures inside the sandbox happen in another process (the `__sandbox-init` helper or the
//! sandbox's pid 1); they travel to kiln as a [`WireError`] (serialisable, errno as a number)
//! and become a [`SandboxError`] there, so the caller sees one typed error whatever process
//! failed.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong running a command in a sandbox. A command that runs and
/// exits non-zero is not an error: see [`super::ExitStatus`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("exec: \"{command}\": executable file not found in $PATH")]
    CommandNotFound { command: String },
    #[error("exec: \"{command}\": {source}")]
    Exec {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("working directory {cwd} does not exist in the rootfs")]
    CwdMissing { cwd: String },
    #[error("working directory {cwd} is not a directory")]
    CwdNotDirectory { cwd: String },
    #[error("mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("mount target {target}: {reason}")]
    MountTarget { target: String, reason: String },
    #[error("{tool} failed for pid {pid}: {stderr}")]
    IdMapTool { tool: &'static str, pid: u32, stderr: String },
    #[error("cannot run {tool} (Debian/Ubuntu package uidmap, Fedora shadow-utils): {source}")]
    IdMapToolMissing {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("write {path}: {source}")]
    IdMapWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read {path}: {source}")]
    SubIdRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Identity(#[from] crate::userns::UsernsError),
    #[error("invalid sandbox spec: {reason}")]
    InvalidSpec { reason: String },
    #[error("sandbox setup: {step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("copy rootfs {path}: {source}")]
    Copy {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("start sandbox helper {helper}: {source}")]
    SpawnHelper {
        helper: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox helper protocol: {reason}")]
    Protocol { reason: String },
    #[error("sandbox helper died before reporting the command's status ({status})")]
    HelperDied { status: String },
    #[error("sandbox killed")]
    Killed,
    #[error("sandbox i/o: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// A failure inside the helper or the sandbox's pid 1, as sent to kiln.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireError {
    CommandNotFound { command: String },
    Exec { command: String, errno: i32 },
    CwdMissing { cwd: String },
    CwdNotDirectory { cwd: String },
    Mount { what: String, target: String, errno: i32 },
    MountTarget { target: String, reason: String },
    InvalidSpec { reason: String },
    Setup { step: String, errno: i32 },
    Copy { path: PathBuf, errno: i32 },
    Other { message: String },
}

impl WireError {
    pub fn setup(step: impl Into<String>, err: impl Into<io::Error>) -> Self {
        WireError::Setup { step: step.into(), errno: errno_of(&err.into()) }
    }

    pub fn mount(
        what: impl Into<String>,
        target: impl Into<String>,
        err: impl Into<io::Error>,
    ) -> Self {
        WireError::Mount { what: what.into(), target: target.into(), errno: errno_of(&err.into()) }
    }
}

/// The errno of an I/O error (EIO when it carries none: the wire form needs a number).
pub fn errno_of(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(libc::EIO)
}

impl From<WireError> for SandboxError {
    fn from(wire: WireError) -> Self {
        let os = io::Error::from_raw_os_error;
        match wire {
            WireError::CommandNotFound { command } => SandboxError::CommandNotFound { command },
            WireError::Exec { command, errno } => SandboxError::Exec { command, source: os(errno) },
            WireError::CwdMissing { cwd } => SandboxError::CwdMissing { cwd },
            WireError::CwdNotDirectory { cwd } => SandboxError::CwdNotDirectory { cwd },
            WireError::Mount { what, target, errno } => {
                SandboxError::Mount { what, target, source: os(errno) }
            }
            WireError::MountTarget { target, reason } => {
                SandboxError::MountTarget { target, reason }
            }
            WireError::InvalidSpec { reason } => SandboxError::InvalidSpec { reason },
            WireError::Setup { step, errno } => SandboxError::Setup { step, source: os(errno) },
            WireError::Copy { path, errno } => SandboxError::Copy { path, source: os(errno) },
            WireError::Other { message } => SandboxError::Protocol { reason: message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_not_found_reads_like_docker() {
        let err = SandboxError::from(WireError::CommandNotFound { command: "foo".into() });
        assert_eq!(err.to_string(), "exec: \"foo\": executable file not found in $PATH");
    }

    #[test]
    fn mount_error_names_the_mount_and_errno() {
        let err = SandboxError::from(WireError::Mount {
            what: "proc".into(),
            target: "/proc".into(),
            errno: libc::EPERM,
        });
        let text = err.to_string();
        assert!(text.starts_with("mount proc on /proc: "), "{text}");
        assert!(text.contains("Operation not permitted"), "{text}");
    }
}
