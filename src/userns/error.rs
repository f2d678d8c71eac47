//! Errors of entering, detecting and reporting kiln's user namespace.

use crate::sandbox::SandboxError;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong getting kiln to run as root over its id range.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("read {path}: {source}")]
    ReadProc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} line {line}: expected INSIDE OUTSIDE COUNT, got {text:?}")]
    BadIdMap { path: PathBuf, line: usize, text: String },
    #[error(
        "cannot create a user namespace: {source} (unprivileged user namespaces may be \
         disabled: see sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, \
         kernel.apparmor_restrict_unprivileged_userns)"
    )]
    Unshare {
        #[source]
        source: io::Error,
    },
    #[error("map ids into kiln's user namespace: {source}")]
    MapIds {
        #[source]
        source: Box<SandboxError>,
    },
    #[error("re-execute kiln in a user namespace: {source}")]
    Spawn {
        #[source]
        source: io::Error,
    },
    #[error("kiln's user-namespace child ended during set-up ({status})")]
    ChildDied { status: String },
    #[error("user-namespace set-up: {step}: {source}")]
    Setup {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid {variable} {value:?}: expected a descriptor number")]
    BadSyncFd { variable: &'static str, value: String },
    /// The child's set-up stopped; the parent process prints the reason (or is gone).
    #[error("user-namespace set-up abandoned (the parent kiln process reports why)")]
    ReportedByParent,
}

impl UsernsError {
    /// Whether another process already told the user about this error (print nothing more).
    pub fn is_reported_by_parent(&self) -> bool {
        matches!(self, UsernsError::ReportedByParent)
    }
}
