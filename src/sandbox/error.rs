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
    /// `hint`, here and in `Setup`: empty, or why the kernel said EPERM (see [`eperm_hint`]).
    #[error("mount {what} on {target}: {source}{hint}")]
    Mount {
        what: String,
        target: String,
        #[source]
        source: io::Error,
        hint: String,
    },
    #[error("mount target {target}: {reason}")]
    MountTarget { target: String, reason: String },
    #[error(
        "cannot mount a new /proc for RUN: kiln runs in a container that masks parts of its \
         own /proc ({}), and the kernel then refuses a new /proc to a user namespace; start \
         the container with /proc unmasked: docker run --security-opt systempaths=unconfined, \
         podman run --security-opt unmask=ALL, or in Kubernetes securityContext.procMount: \
         Unmasked (which needs hostUsers: false); see docs/ci.md",
        list_some(covered)
    )]
    ProcMasked { covered: Vec<String> },
    /// `hint`: empty, or a sentence (with its leading separator) on how to fix it.
    #[error("{tool} failed for pid {pid}: {stderr}{hint}")]
    IdMapTool { tool: &'static str, pid: u32, stderr: String, hint: String },
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
    #[error("sandbox setup: {step}: {source}{hint}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
        hint: String,
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
    ProcMasked { covered: Vec<String> },
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

/// Why a sandbox set-up step may have got EPERM, when kiln can tell: it runs under a seccomp
/// filter (the sandbox's processes inherit kiln's), as containers do by default, and those
/// filters refuse `mount`, `sethostname` and friends to processes without CAP_SYS_ADMIN —
/// which a user namespace's root has, but only over the namespace, not in the filter's eyes.
pub fn eperm_hint(errno: i32) -> String {
    let filtered = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|status| status.lines().any(|line| line.replace('\t', " ") == "Seccomp: 2"));
    seccomp_hint(errno, filtered)
}

/// [`eperm_hint`] given whether a seccomp filter applies (pure).
pub fn seccomp_hint(errno: i32, filtered: bool) -> String {
    if errno != libc::EPERM || !filtered {
        return String::new();
    }
    " (kiln runs under a seccomp filter, such as a container's default profile, which refuses \
     what its sandbox needs: run the container with seccomp unconfined — docker or podman \
     run --security-opt seccomp=unconfined, in Kubernetes securityContext.seccompProfile \
     type: Unconfined; see docs/ci.md)"
        .to_owned()
}

/// The first few of `items`, comma-separated, with "..." when there are more.
fn list_some(items: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        text.push_str(", ...");
    }
    text
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
                SandboxError::Mount { what, target, source: os(errno), hint: eperm_hint(errno) }
            }
            WireError::MountTarget { target, reason } => {
                SandboxError::MountTarget { target, reason }
            }
            WireError::ProcMasked { covered } => SandboxError::ProcMasked { covered },
            WireError::InvalidSpec { reason } => SandboxError::InvalidSpec { reason },
            WireError::Setup { step, errno } => {
                SandboxError::Setup { step, source: os(errno), hint: eperm_hint(errno) }
            }
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
    fn masked_proc_error_names_the_masks_and_the_settings_that_lift_them() {
        let covered: Vec<String> =
            ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/bus", "/proc/sys"]
                .map(Into::into)
                .into();
        let text = SandboxError::from(WireError::ProcMasked { covered }).to_string();
        assert!(text.contains("(/proc/acpi, /proc/kcore, /proc/keys, /proc/bus, ...)"), "{text}");
        for setting in ["systempaths=unconfined", "unmask=ALL", "procMount: Unmasked"] {
            assert!(text.contains(setting), "{setting} in {text}");
        }
    }

    #[test]
    fn eperm_under_seccomp_gets_the_unconfined_hint() {
        assert!(seccomp_hint(libc::EPERM, true).contains("seccomp=unconfined"));
        assert_eq!(seccomp_hint(libc::EPERM, false), "");
        assert_eq!(seccomp_hint(libc::ENOENT, true), "");
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
