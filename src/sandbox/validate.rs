//! Checks on a [`SandboxSpec`] before anything is started, so that mistakes are reported
//! with the field at fault rather than as an errno from deep inside the helper.

use super::error::SandboxError;
use super::spec::{Mount, SandboxSpec};
use std::path::Path;

fn invalid(reason: String) -> SandboxError {
    SandboxError::InvalidSpec { reason }
}

fn no_nul(what: &str, value: &str) -> Result<(), SandboxError> {
    if value.contains('\0') {
        return Err(invalid(format!("{what} contains a NUL byte: {value:?}")));
    }
    Ok(())
}

fn existing_dir(what: &str, path: &Path) -> Result<(), SandboxError> {
    if !path.is_dir() {
        return Err(invalid(format!("{what} {} is not an existing directory", path.display())));
    }
    Ok(())
}

fn container_path(what: &str, path: &str) -> Result<(), SandboxError> {
    no_nul(what, path)?;
    if !path.starts_with('/') {
        return Err(invalid(format!("{what} {path:?} is not an absolute path")));
    }
    Ok(())
}

/// Validate `spec` (reads the host filesystem to check the layer directories exist).
pub fn spec(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let process = &spec.process;
    let Some(argv0) = process.argv.first() else {
        return Err(invalid("empty command".into()));
    };
    if argv0.is_empty() {
        return Err(invalid("empty command name".into()));
    }
    for arg in &process.argv {
        no_nul("argument", arg)?;
    }
    for entry in &process.env {
        no_nul("environment entry", entry)?;
        if entry.starts_with('=') || entry.is_empty() {
            return Err(invalid(format!("environment entry {entry:?} has no name")));
        }
    }
    container_path("working directory", &process.cwd)?;
    let host = &spec.hostname;
    if host.is_empty() || host.len() > 64 || host.contains(['\0', '\n', ' ', '\t']) {
        return Err(invalid(format!("invalid hostname {host:?}")));
    }
    for lower in &spec.rootfs.lowers {
        existing_dir("lower layer", lower)?;
    }
    existing_dir("upper directory", &spec.rootfs.upper)?;
    existing_dir("work directory", &spec.rootfs.work)?;
    for mount in &spec.mounts {
        let target = mount.target();
        container_path("mount target", target)?;
        if super::confined::components(target).is_empty() {
            return Err(invalid(format!("mount target {target:?} is the root")));
        }
        match mount {
            Mount::Bind { source, .. } if !source.exists() => {
                return Err(invalid(format!("bind source {} does not exist", source.display())));
            }
            Mount::BindOverlay { source, .. } => existing_dir("bind source", source)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{NetworkMode, ProcessSpec, RootfsModeRequest, RootfsSpec};

    fn valid(dir: &Path) -> SandboxSpec {
        SandboxSpec {
            rootfs: RootfsSpec {
                lowers: vec![dir.to_path_buf()],
                upper: dir.to_path_buf(),
                work: dir.to_path_buf(),
                mode: RootfsModeRequest::Auto,
            },
            process: ProcessSpec {
                argv: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                no_new_privs: false,
            },
            hostname: "kiln".into(),
            network: NetworkMode::Host,
            mounts: vec![],
        }
    }

    #[test]
    fn rejects_each_bad_field_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(spec(&valid(tmp.path())).is_ok());
        let check = |edit: &dyn Fn(&mut SandboxSpec), expected: &str| {
            let mut s = valid(tmp.path());
            edit(&mut s);
            let err = spec(&s).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        };
        check(&|s| s.process.argv.clear(), "empty command");
        check(
            &|s| s.process.cwd = "work".into(),
            "working directory \"work\" is not an absolute path",
        );
        check(&|s| s.process.env.push("=x".into()), "has no name");
        check(&|s| s.hostname = "a b".into(), "invalid hostname");
        check(
            &|s| s.rootfs.upper = "/nonexistent/upper".into(),
            "upper directory /nonexistent/upper",
        );
        check(
            &|s| s.mounts.push(Mount::Tmpfs { target: "/".into(), size: None, mode: None }),
            "is the root",
        );
        check(
            &|s| {
                s.mounts.push(Mount::Bind {
                    source: "/nonexistent/src".into(),
                    target: "/x".into(),
                    readonly: true,
                })
            },
            "bind source /nonexistent/src does not exist",
        );
    }
}
