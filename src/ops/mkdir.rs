//! `WORKDIR`: making the working directory (and its missing parents) in a new layer.
//!
//! BuildKit's `Mkdir` with `MakeParents`: the path is resolved in the rootfs with symlinks
//! followed (inside the root); every missing directory is made with the op's mode (0755),
//! owned by the stage's `USER` resolved with `--chown` rules (a lone uid is also the gid, a
//! name takes its passwd entry, an unknown name is root — see `fs::users`), with the
//! build's creation time. Directories that exist are left alone: when the whole path
//! exists, the layer stays empty. Existing parents of a made directory are replicated into
//! the layer with their own metadata. A non-directory on the path is an error.

use crate::fs::users::UserError;
use crate::fs::{FsError, LayerDir, MergedRoot, NewMeta, RootPath, Time, resolve_chown};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MkdirError {
    #[error("mkdir {path}: {source}")]
    Fs { path: String, source: FsError },
    #[error("mkdir {path}: not a directory")]
    NotADirectory { path: String },
    #[error("user {user:?}: {source}")]
    User { user: String, source: UserError },
}

/// What a WORKDIR made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MkdirReport {
    /// The directories made, outermost first.
    pub created: Vec<RootPath>,
    pub warnings: Vec<String>,
}

/// Makes `path` and its missing parents with `mode`, owned by `user`, in the empty layer
/// directory `out_dir` over `dest_root`.
pub fn mkdir_into_layer(
    path: &str,
    mode: u32,
    user: Option<&str>,
    dest_root: &MergedRoot,
    out_dir: &Path,
    created_time: Time,
) -> Result<MkdirReport, MkdirError> {
    let fs_err = |source| MkdirError::Fs { path: path.to_string(), source };
    let mut report = MkdirReport::default();
    let (uid, gid) = match user.filter(|u| !u.is_empty()) {
        Some(user) => {
            let owner = resolve_chown(dest_root, user)
                .map_err(|source| MkdirError::User { user: user.to_string(), source })?;
            report.warnings.extend(owner.warnings);
            (owner.uid, owner.gid)
        }
        None => (0, 0),
    };
    let mut layer = LayerDir::open(out_dir, dest_root).map_err(fs_err)?;
    let resolved = layer.resolve(&RootPath::root(), path, true).map_err(|e| match e {
        FsError::NotADirectory { path } => MkdirError::NotADirectory { path: path.to_string() },
        other => fs_err(other),
    })?;
    match resolved.entry {
        Some(entry) if entry.is_dir() => {}
        Some(entry) => return Err(MkdirError::NotADirectory { path: entry.path().to_string() }),
        None => {
            let meta = NewMeta::simple(mode & 0o777, uid, gid, created_time);
            report.created =
                layer.ensure_dir(&resolved.path, Some(&meta)).map_err(|e| match e {
                    FsError::NotADirectory { path } => {
                        MkdirError::NotADirectory { path: path.to_string() }
                    }
                    other => fs_err(other),
                })?;
        }
    }
    layer.finish().map_err(fs_err)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::testutil::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    const CREATED: Time = Time { sec: 1_700_000_000, nsec: 0 };

    struct Setup {
        _tmp: tempfile::TempDir,
        lower: PathBuf,
        out: PathBuf,
        host: PathBuf,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, out, host) =
            (tmp.path().join("lower"), tmp.path().join("out"), tmp.path().join("host"));
        for dir in [&lower, &out, &host] {
            mkdir(dir);
        }
        Setup { _tmp: tmp, lower, out, host }
    }

    impl Setup {
        fn run(&self, path: &str, user: Option<&str>) -> Result<MkdirReport, MkdirError> {
            let root = MergedRoot::new(vec![self.lower.clone()]).unwrap();
            mkdir_into_layer(path, 0o755, user, &root, &self.out, CREATED)
        }

        /// `mode uid:gid mtime` of a path in the layer.
        fn meta(&self, path: &str) -> String {
            let md = std::fs::symlink_metadata(self.out.join(path)).unwrap();
            format!(
                "{:o} {}:{} {}",
                md.permissions().mode() & 0o7777,
                md.uid(),
                md.gid(),
                md.mtime()
            )
        }

        fn names(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut stack = vec![self.out.clone()];
            while let Some(dir) = stack.pop() {
                for item in std::fs::read_dir(&dir).unwrap() {
                    let path = item.unwrap().path();
                    out.push(path.strip_prefix(&self.out).unwrap().to_string_lossy().into_owned());
                    if path.is_dir() && !path.is_symlink() {
                        stack.push(path);
                    }
                }
            }
            out.sort();
            out
        }
    }

    #[test]
    fn missing_directories_are_made_with_the_user_as_owner() {
        if !have_root("mkdir owners") {
            return;
        }
        let s = setup();
        let report = s.run("/app/src", Some("1000")).unwrap();
        assert_eq!(report.created, [RootPath::lexical("/app"), RootPath::lexical("/app/src")]);
        assert_eq!(s.meta("app"), "755 1000:1000 1700000000");
        assert_eq!(s.meta("app/src"), "755 1000:1000 1700000000");
        let s = setup();
        write(
            &s.lower.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:33:44::/home/app:/bin/sh\n",
        );
        s.run("/home/app", Some("app")).unwrap();
        assert_eq!(s.meta("home/app"), "755 33:44 1700000000");
        let s = setup();
        let report = s.run("/w", Some("ghost")).unwrap();
        assert_eq!(s.meta("w"), "755 0:0 1700000000");
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        let s = setup();
        s.run("/plain", None).unwrap();
        assert_eq!(s.meta("plain"), "755 0:0 1700000000");
    }

    #[test]
    fn existing_parents_are_replicated_and_existing_paths_add_nothing() {
        if !have_root("mkdir replication") {
            return;
        }
        let s = setup();
        mkdir(&s.lower.join("usr"));
        std::os::unix::fs::chown(s.lower.join("usr"), Some(5), Some(6)).unwrap();
        std::fs::set_permissions(s.lower.join("usr"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let t = rustix::fs::Timespec { tv_sec: 1234, tv_nsec: 0 };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            s.lower.join("usr"),
            &rustix::fs::Timestamps { last_access: t, last_modification: t },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        s.run("/usr/app", None).unwrap();
        assert_eq!(s.names(), ["usr", "usr/app"]);
        assert_eq!(s.meta("usr"), "700 5:6 1234");
        let s2 = setup();
        mkdir(&s2.lower.join("var/www"));
        let report = s2.run("/var/www", Some("1000")).unwrap();
        assert!(report.created.is_empty());
        assert!(s2.names().is_empty(), "an existing WORKDIR makes an empty layer");
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs() {
        if !have_root("mkdir symlinks") {
            return;
        }
        let s = setup();
        mkdir(&s.lower.join("srv"));
        symlink("/srv", &s.lower.join("work"));
        symlink(s.host.to_str().unwrap(), &s.lower.join("escape"));
        s.run("/work/x", None).unwrap();
        assert_eq!(s.names(), ["srv", "srv/x"]);
        s.run("/escape/y", None).unwrap();
        assert!(
            std::fs::read_dir(&s.host).unwrap().next().is_none(),
            "the host directory was written"
        );
        let inside = s.out.join(s.host.strip_prefix("/").unwrap()).join("y");
        assert!(inside.is_dir(), "made inside the layer instead");
    }

    #[test]
    fn a_file_on_the_path_is_an_error() {
        if !have_root("mkdir errors") {
            return;
        }
        let s = setup();
        write(&s.lower.join("app"), "a file");
        let err = s.run("/app/src", None).unwrap_err();
        assert_eq!(err.to_string(), "mkdir /app: not a directory");
        let err = s.run("/app", None).unwrap_err();
        assert_eq!(err.to_string(), "mkdir /app: not a directory");
        assert!(s.names().is_empty());
    }
}
