//! The per-run scratch directory on the host, and the files kiln generates for the sandbox.
//!
//! ```text
//! kiln-sandbox-XXXXXX/
//! ├── rootfs/          empty; the rootfs is mounted here (inside the sandbox's mount ns only)
//! ├── empty/           lower layer standing in for none (FROM scratch)
//! ├── hosts            127.0.0.1 localhost HOSTNAME, ::1 localhost ip6-localhost ip6-loopback
//! ├── resolv.conf      a copy of the host's /etc/resolv.conf (empty if it has none)
//! └── overlay-N/{upper,work}   throwaway layers of BindOverlay mounts
//! ```
//!
//! Removed when the run ends; only a SIGKILLed kiln leaves one behind (nothing is mounted on
//! it: mounts live and die with the sandbox's namespaces), which is why the engine may place
//! scratch directories in its own state directory and sweep stale ones. Overlayfs leaves `work/work` with mode 000, which an
//! unprivileged owner cannot descend: permissions are restored before removal.

use super::error::SandboxError;
use super::protocol::ScratchPaths;
use super::spec::{Mount, SandboxSpec};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The hosts file BuildKit writes for a RUN.
pub fn hosts_file(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    pub paths: ScratchPaths,
}

impl Scratch {
    /// Create it under `parent` (the system's temporary directory when `None`).
    pub fn create(spec: &SandboxSpec, parent: Option<&Path>) -> Result<Scratch, SandboxError> {
        let io_err = |context: &str, source: io::Error| SandboxError::Io {
            context: context.to_owned(),
            source,
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix("kiln-sandbox-");
        let dir = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|e| io_err("create scratch directory", e))?;
        // Canonical, so paths read back from /proc/self/fd compare equal.
        let base = fs::canonicalize(dir.path()).map_err(|e| io_err("canonicalize scratch", e))?;
        let rootfs = base.join("rootfs");
        let empty_lower = base.join("empty");
        for path in [&rootfs, &empty_lower] {
            fs::create_dir(path).map_err(|e| io_err("create scratch directory", e))?;
        }
        let hosts = base.join("hosts");
        fs::write(&hosts, hosts_file(&spec.hostname)).map_err(|e| io_err("write hosts", e))?;
        let resolv_conf = base.join("resolv.conf");
        let resolv = match fs::read("/etc/resolv.conf") {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read /etc/resolv.conf", e)),
        };
        fs::write(&resolv_conf, resolv).map_err(|e| io_err("write resolv.conf", e))?;
        for path in [&hosts, &resolv_conf] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o644))
                .map_err(|e| io_err("chmod scratch file", e))?;
        }
        let mut overlay_dirs = Vec::new();
        let overlays = spec.mounts.iter().filter(|m| matches!(m, Mount::BindOverlay { .. }));
        for (index, _) in overlays.enumerate() {
            let upper = base.join(format!("overlay-{index}/upper"));
            let work = base.join(format!("overlay-{index}/work"));
            for path in [&upper, &work] {
                fs::create_dir_all(path).map_err(|e| io_err("create overlay directory", e))?;
            }
            overlay_dirs.push((upper, work));
        }
        Ok(Scratch {
            dir: Some(dir),
            paths: ScratchPaths { rootfs, empty_lower, hosts, resolv_conf, overlay_dirs },
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            let _ = remove_tree(&path);
        }
    }
}

/// `rm -rf` that first makes directories it owns searchable (overlayfs's mode-000 work dir).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_searchable(path);
            fs::remove_dir_all(path)
        }
    }
}

fn make_searchable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        let children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        for child in children {
            make_searchable(&child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_names_localhost_and_the_hostname() {
        assert_eq!(
            hosts_file("kiln"),
            "127.0.0.1\tlocalhost kiln\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
    }

    #[test]
    fn remove_tree_handles_unsearchable_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/work");
        fs::create_dir_all(dir.join("inner")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&tmp.path().join("a")).unwrap();
        assert!(!tmp.path().join("a").exists());
    }
}
