//! `RUN --mount=type=cache`: directories that persist across builds, outside every layer.
//!
//! Layout: `ROOT/cache-mounts/<sha256 of id>/<instance>/data`, with a lock file
//! `<instance>.lock` beside each instance. Sharing modes, as BuildKit defines them:
//! `shared` — every build uses instance 0 at the same time (shared lock);
//! `locked` — one build at a time on instance 0 (exclusive lock, others wait);
//! `private` — a build takes the first instance nobody holds, creating a new one if needed.
//! A new instance's `data` directory gets the mount's `mode` (default 0755) and `uid`/`gid`
//! (default 0). Contents never enter a cache key.
//!
//! With `from=`, the cache starts as a copy of that stage's or image's files (at `source`),
//! and is a cache of its own for each such starting point, as BuildKit keys it by id and
//! base: see [`CacheSeed`]. As in BuildKit, `uid`/`gid`/`mode` without a `source` ask for a
//! fresh directory instead.
//! `kiln cache prune --all` removes the instances no build holds ([`remove_unused`]).

use kiln_cache::Root;
use kiln_frontend::graph::RunMount;
use kiln_frontend::instructions::Sharing;
use sha2::{Digest as _, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A cache mount's directory, held for the duration of one RUN.
#[derive(Debug)]
pub struct CacheMountLease {
    pub dir: PathBuf,
    _lock: File,
}

/// What a cache mount with `from=` starts from.
pub struct CacheSeed<'a> {
    /// Identifies the starting files (the source step's cache key).
    pub key: String,
    /// Creates the directory it is given (absent before) holding the starting files.
    pub fill: &'a dyn Fn(&Path) -> Result<(), String>,
}

/// Takes the cache directory `mount` asks for, waiting if its sharing mode says so.
pub fn acquire(
    root: &Root,
    mount: &RunMount,
    seed: Option<&CacheSeed<'_>>,
) -> Result<CacheMountLease, String> {
    let id = mount.id.clone().unwrap_or_default();
    let fresh_dir = mount.source_path == "/"
        && (mount.uid.is_some() || mount.gid.is_some() || mount.mode.is_some());
    let seed = seed.filter(|_| !fresh_dir);
    let instance_id = match seed {
        Some(seed) => format!("{id}:{}", seed.key),
        None => id.clone(),
    };
    let hashed: String =
        Sha256::digest(instance_id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let base = root.path().join("cache-mounts").join(hashed);
    std::fs::create_dir_all(&base).map_err(|e| format!("cache mount {id}: {e}"))?;
    let sharing = mount.sharing.unwrap_or(Sharing::Shared);
    let mut instance = 0usize;
    loop {
        let lock_path = base.join(format!("{instance}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cache mount {id}: {}: {e}", lock_path.display()))?;
        let taken = match sharing {
            Sharing::Shared => lock.lock_shared().map(|_| true),
            Sharing::Locked => lock.lock().map(|_| true),
            Sharing::Private => match lock.try_lock() {
                Ok(()) => Ok(true),
                Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                Err(std::fs::TryLockError::Error(e)) => Err(e),
            },
        }
        .map_err(|e| format!("cache mount {id}: locking: {e}"))?;
        if !taken {
            instance += 1;
            continue;
        }
        let dir = base.join(instance.to_string());
        if !dir.exists() {
            create_instance(&dir, mount, seed).map_err(|e| format!("cache mount {id}: {e}"))?;
        }
        return Ok(CacheMountLease { dir: dir.join("data"), _lock: lock });
    }
}

/// Removes the contents of every cache mount no build holds (`kiln cache prune --all`), and
/// returns how many instances went. An instance is removed with its lock held exclusively,
/// so a build that wants it waits and then starts from a new, empty one. Lock files stay.
pub fn remove_unused(root: &Root) -> std::io::Result<u64> {
    let base = root.path().join("cache-mounts");
    let ids = match std::fs::read_dir(&base) {
        Ok(ids) => ids,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for id in ids {
        let id = id?.path();
        for entry in std::fs::read_dir(&id)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name.starts_with(".new-") {
                // A creation that died half-way.
                std::fs::remove_dir_all(&path)?;
                continue;
            }
            if name.parse::<usize>().is_err() || !path.is_dir() {
                continue;
            }
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(id.join(format!("{name}.lock")))?;
            if lock.try_lock().is_err() {
                continue; // in use by a build
            }
            std::fs::remove_dir_all(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn create_instance(
    dir: &Path,
    mount: &RunMount,
    seed: Option<&CacheSeed<'_>>,
) -> Result<(), String> {
    let parent = dir.parent().expect("instance dirs have a parent");
    let staging =
        tempfile::Builder::new().prefix(".new-").tempdir_in(parent).map_err(|e| e.to_string())?;
    let data = staging.path().join("data");
    match seed {
        Some(seed) => (seed.fill)(&data)?,
        None => new_data_dir(&data, mount).map_err(|e| e.to_string())?,
    }
    let staged = staging.keep();
    match std::fs::rename(&staged, dir) {
        Ok(()) => Ok(()),
        // Someone else created it meanwhile (shared sharing): use theirs.
        Err(_) if dir.exists() => std::fs::remove_dir_all(&staged).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn new_data_dir(data: &Path, mount: &RunMount) -> std::io::Result<()> {
    std::fs::create_dir(data)?;
    std::os::unix::fs::chown(data, Some(mount.uid.unwrap_or(0)), Some(mount.gid.unwrap_or(0)))?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(mount.mode.unwrap_or(0o755)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_frontend::instructions::MountType;

    fn mount(id: &str, sharing: Sharing) -> RunMount {
        RunMount {
            kind: MountType::Cache,
            target: "/cache".into(),
            source: None,
            source_path: "/".into(),
            readonly: false,
            id: Some(id.into()),
            sharing: Some(sharing),
            mode: Some(0o700),
            uid: None,
            gid: None,
            size_limit: None,
            required: false,
            env: None,
        }
    }

    #[test]
    fn persists_and_shares_by_mode() {
        let temp = tempfile::tempdir().unwrap();
        let root = Root::open(temp.path()).unwrap();
        let first = acquire(&root, &mount("go", Sharing::Shared), None).unwrap();
        std::fs::write(first.dir.join("x"), "1").unwrap();
        let second = acquire(&root, &mount("go", Sharing::Shared), None).unwrap();
        assert_eq!(first.dir, second.dir, "shared mounts use one directory at once");
        assert_eq!(std::fs::metadata(&first.dir).unwrap().permissions().mode() & 0o7777, 0o700);
        drop((first, second));
        let private_a = acquire(&root, &mount("go", Sharing::Private), None).unwrap();
        let private_b = acquire(&root, &mount("go", Sharing::Private), None).unwrap();
        assert_ne!(private_a.dir, private_b.dir, "a held private instance is not handed out twice");
        assert!(private_a.dir.join("x").exists(), "instance 0 kept its contents");
        let other = acquire(&root, &mount("npm", Sharing::Shared), None).unwrap();
        assert!(!other.dir.join("x").exists(), "ids are separate caches");
    }

    #[test]
    fn a_seeded_cache_starts_from_its_source_and_is_keyed_by_it() {
        let temp = tempfile::tempdir().unwrap();
        let root = Root::open(temp.path()).unwrap();
        let fill = |dir: &Path| {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("seeded"), "1").map_err(|e| e.to_string())
        };
        let seed = CacheSeed { key: "stage-a".into(), fill: &fill };
        let mut from_source = mount("go", Sharing::Shared);
        from_source.source_path = "/src".into();
        let seeded = acquire(&root, &from_source, Some(&seed)).unwrap();
        assert!(seeded.dir.join("seeded").exists());
        let plain = acquire(&root, &from_source, None).unwrap();
        assert!(!plain.dir.join("seeded").exists(), "another starting point, another cache");
        // uid/gid/mode without a source: a fresh directory, as BuildKit makes one.
        let fresh = acquire(&root, &mount("go", Sharing::Shared), Some(&seed)).unwrap();
        assert!(!fresh.dir.join("seeded").exists());
    }

    #[test]
    fn prune_removes_the_instances_no_build_holds() {
        let temp = tempfile::tempdir().unwrap();
        let root = Root::open(temp.path()).unwrap();
        let held = acquire(&root, &mount("go", Sharing::Shared), None).unwrap();
        std::fs::write(held.dir.join("x"), "1").unwrap();
        let free = acquire(&root, &mount("npm", Sharing::Shared), None).unwrap();
        std::fs::write(free.dir.join("y"), "1").unwrap();
        drop(free);
        assert_eq!(remove_unused(&root).unwrap(), 1);
        assert!(held.dir.join("x").exists(), "an instance in use stays");
        let again = acquire(&root, &mount("npm", Sharing::Shared), None).unwrap();
        assert!(again.dir.is_dir() && !again.dir.join("y").exists(), "a removed one starts empty");
    }
}
