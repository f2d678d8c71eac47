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
         kernel.apparmor_restrict_unprivileged_userns; in a container, its seccomp profile \
         may refuse them: run it with seccomp unconfined; see docs/ci.md)"
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
    #[error("user-namespace set-up: {step}: {source}{}", restricted_userns_hint(source))]
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

/// Ubuntu (23.10 and later) lets an unconfined program create a user namespace but then
/// denies it every capability inside (AppArmor's `unprivileged_userns` profile) when
/// `kernel.apparmor_restrict_unprivileged_userns` is 1: the first privileged step in the new
/// namespace fails with EPERM. Say so when that is the case.
fn restricted_userns_hint(source: &io::Error) -> String {
    let path = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
    let restricted = std::fs::read_to_string(path).is_ok_and(|value| value.trim() == "1");
    apparmor_hint(source.raw_os_error(), restricted)
}

/// [`restricted_userns_hint`] given the errno and the sysctl's state (pure).
pub fn apparmor_hint(errno: Option<i32>, restricted: bool) -> String {
    if !restricted || !matches!(errno, Some(libc::EPERM | libc::EACCES)) {
        return String::new();
    }
    " (AppArmor restricts unprivileged user namespaces on this machine: \
     kernel.apparmor_restrict_unprivileged_userns is 1; set it to 0 with sysctl, or give the \
     kiln binary an AppArmor profile that allows userns; see docs/ci.md)"
        .to_owned()
}

impl UsernsError {
    /// Whether another process already told the user about this error (print nothing more).
    pub fn is_reported_by_parent(&self) -> bool {
        matches!(self, UsernsError::ReportedByParent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_under_restricted_user_namespaces_gets_the_apparmor_hint() {
        let hint = apparmor_hint(Some(libc::EPERM), true);
        assert!(hint.contains("kernel.apparmor_restrict_unprivileged_userns"), "{hint}");
        assert_eq!(apparmor_hint(Some(libc::EPERM), false), "");
        assert_eq!(apparmor_hint(Some(libc::ENOENT), true), "");
    }
}
