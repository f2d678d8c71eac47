//! Podman as root with a private store (`--root`/`--runroot` in a directory of the test, the
//! vfs driver), no events or systemd cgroups, and `runc`: the settings under which it runs
//! here, in a container without a systemd and without `CAP_SYS_RESOURCE`.

use std::path::Path;
use std::process::Command;

/// `podman` with its store under `store` (created on first use).
pub fn podman(store: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root").arg(store.join("root")).arg("--runroot").arg(store.join("runroot")).args([
        "--storage-driver",
        "vfs",
        "--events-backend",
        "none",
        "--cgroup-manager",
        "cgroupfs",
        "--runtime",
        "runc",
    ]);
    cmd
}

/// The options of a `podman run` that prints and exits: no network, removed afterwards, and
/// modest open-file and process limits (at most the test's own) — podman's defaults are
/// higher, and raising a hard limit needs `CAP_SYS_RESOURCE`, which containers often lack.
pub fn run_options() -> Vec<String> {
    let limit = |resource| {
        let own = rustix::process::getrlimit(resource);
        let value = [own.current, own.maximum].into_iter().flatten().fold(1024, u64::min);
        format!("{value}:{value}")
    };
    vec![
        "--rm".into(),
        "--network".into(),
        "none".into(),
        "--ulimit".into(),
        format!("nofile={}", limit(rustix::process::Resource::Nofile)),
        "--ulimit".into(),
        format!("nproc={}", limit(rustix::process::Resource::Nproc)),
    ]
}
