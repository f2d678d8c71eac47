//! kiln as CI runs it: an unprivileged user inside a container, no daemon anywhere.
//!
//! Root podman plays the CI runner's container runtime (GitLab's docker executor, a
//! Kubernetes node): the container runs as uid 1000 with an `/etc/subuid` range, no extra
//! capabilities, and the kiln binary under test mounted in. Its root filesystem is a
//! directory made here, with the host's `/usr` mounted read-only for the programs kiln runs
//! (`newuidmap`), so no image has to be pulled. The registry runs on the host and is reached
//! through `--network host`.
//!
//! What is proved, and what a container needs for it (docs/ci.md says the same to users):
//! - with `seccomp=unconfined`, `/proc` unmasked and `newuidmap`/`newgidmap` holding file
//!   capabilities, a multi-stage build with RUN steps (chown to subordinate ids, USER) is
//!   pushed under two tags and `--metadata-file` records the digest the registry has;
//! - the same as root of a container that has a user namespace of its own (65536 ids, as a
//!   Kubernetes pod with `hostUsers: false` gets): no `newuidmap` needed;
//! - the same in a `--privileged` container as uid 1000 (what Kubernetes without user
//!   namespaces offers to unmask `/proc`), with the host's setuid `newuidmap`;
//! - with the state root on overlayfs (a container's own root filesystem usually is), RUN
//!   falls back to a copy of its rootfs, says so, and gives the same image content;
//! - with the default, masked `/proc`, the build fails (exit 1) naming the setting to change;
//! - with a setuid-root `newuidmap` and no CAP_SYS_ADMIN, it either works (shadow versions
//!   that map as the user) or fails saying to use file capabilities.

mod common;

use common::busybox;
use common::registry::TestRegistry;
use common::tools;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUILDER_UID: u32 = 1000;
const SUBORDINATE_START: u32 = 300000;
/// The host ids of a container with a user namespace: its 0..65536 are these.
const USERNS_HOST_START: u32 = 500000;

const TOOLS: &[&str] = &[
    "podman",
    "runc",
    "setcap",
    "newuidmap",
    "newgidmap",
    "docker-registry",
    "skopeo",
    "setpriv",
    "/bin/busybox",
];

fn ready() -> bool {
    tools::root_and_available("the CI container tests", TOOLS)
}

/// A multi-stage build whose RUN steps need the full id range (a chown to ids only a
/// subordinate range has, a USER that is not root) and a writable bind mount (an overlay of
/// its own).
const DOCKERFILE: &str = "\
FROM {{base}} AS build
RUN mkdir -p /out && echo built-in-ci > /out/message && chown -R 1234:5678 /out
RUN --mount=type=bind,target=/ctx,rw touch /ctx/scratch && test -f /ctx/Dockerfile
FROM {{base}}
COPY --from=build /out/ /app/
RUN test \"$(stat -c %u:%g /app/message)\" = 1234:5678 && mkdir /data && chown 65534:65534 /data
USER 65534
RUN id -u > /data/uid
LABEL org.kiln.test=ci-container
";

/// A container root filesystem with a `builder` user, and what `podman run` needs for it.
struct Container {
    dir: tempfile::TempDir,
    registry: TestRegistry,
    /// Overlay mounts made for the container, unmounted on drop.
    mounts: Vec<PathBuf>,
}

/// How one container is set up.
#[derive(Clone, Copy)]
struct Setup {
    /// `--security-opt unmask=ALL`: a `/proc` without the runtime's masks.
    unmasked_proc: bool,
    /// `newuidmap`/`newgidmap` with file capabilities instead of the host's setuid ones.
    file_capabilities: bool,
    /// The state root on an overlayfs mounted at `/state`.
    state_on_overlayfs: bool,
    /// kiln runs as root of a container with its own user namespace (host ids
    /// [`USERNS_HOST_START`]..+65536), not as uid 1000 of a container without one.
    root_in_user_namespace: bool,
    /// `--privileged` (which also unmasks `/proc`).
    privileged: bool,
}

const WORKING: Setup = Setup {
    unmasked_proc: true,
    file_capabilities: true,
    state_on_overlayfs: false,
    root_in_user_namespace: false,
    privileged: false,
};

impl Setup {
    /// The host uid (and gid) that owns the container's writable directories.
    fn owner(&self) -> u32 {
        if self.root_in_user_namespace { USERNS_HOST_START } else { BUILDER_UID }
    }
}

impl Container {
    fn new(setup: Setup) -> Container {
        let dir = tempfile::tempdir().unwrap();
        // Open to the ids of a container with a user namespace, which are not root here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let registry = TestRegistry::plain();
        let base = busybox::push_busybox(&registry, "ci/busybox", "1", &Default::default());
        let rootfs = dir.path().join("rootfs");
        for sub in ["etc", "home/builder", "work/ctx", "state", "proc", "sys", "dev", "usr", "run"]
        {
            fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        fs::create_dir_all(rootfs.join("tmp")).unwrap();
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        // The host's top-level program directories: symlinks into /usr where the host has
        // them (merged /usr), else mounted (see `run`).
        for name in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
            if let Ok(target) = fs::read_link(Path::new("/").join(name)) {
                std::os::unix::fs::symlink(target, rootfs.join(name)).unwrap();
            }
        }
        let etc = rootfs.join("etc");
        fs::write(
            etc.join("passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/sh\nbuilder:x:{BUILDER_UID}:{BUILDER_UID}::/home/builder:/bin/sh\n"
            ),
        )
        .unwrap();
        fs::write(etc.join("group"), format!("root:x:0:\nbuilder:x:{BUILDER_UID}:\n")).unwrap();
        // Targets podman mounts files on: made here, as a container root in a user namespace
        // could not create them in this root-owned tree.
        for target in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "run/.containerenv"] {
            fs::write(rootfs.join(target), "").unwrap();
        }
        fs::create_dir_all(rootfs.join("opt/kiln")).unwrap();
        fs::write(rootfs.join("opt/kiln/kiln"), "").unwrap();
        for file in ["subuid", "subgid"] {
            fs::write(etc.join(file), format!("builder:{SUBORDINATE_START}:65536\n")).unwrap();
        }
        for owned in ["home/builder", "work", "work/ctx", "state"] {
            chown(rootfs.join(owned), Some(setup.owner()), Some(setup.owner())).unwrap();
        }
        let context = rootfs.join("work/ctx");
        fs::write(context.join("Dockerfile"), DOCKERFILE.replace("{{base}}", &base.reference))
            .unwrap();
        // newuidmap/newgidmap as Fedora ships them: file capabilities, not setuid.
        let caps = dir.path().join("caps");
        fs::create_dir(&caps).unwrap();
        for (tool, capability) in [("newuidmap", "cap_setuid=ep"), ("newgidmap", "cap_setgid=ep")] {
            let copy = caps.join(tool);
            fs::copy(tools::find(tool).unwrap(), &copy).unwrap();
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
            tools::stdout_of(Command::new("setcap").arg(capability).arg(&copy));
        }
        Container { dir, registry, mounts: Vec::new() }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// An overlayfs (over an empty lower) for the container's `/state`.
    fn overlay_state(&mut self, owner: u32) -> PathBuf {
        let base = self.dir.path().join("state-overlay");
        let [lower, upper, work, merged] =
            ["lower", "upper", "work", "merged"].map(|name| base.join(name));
        for dir in [&lower, &upper, &work, &merged] {
            fs::create_dir_all(dir).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        tools::stdout_of(
            Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(&merged),
        );
        self.mounts.push(merged.clone());
        chown(&merged, Some(owner), Some(owner)).unwrap();
        merged
    }

    /// `kiln ARGS` in a fresh container (as uid 1000, or root in a user namespace), from
    /// `/work`.
    fn kiln(&mut self, setup: Setup, args: &[&str]) -> Output {
        let store = self.dir.path().join("podman");
        let kiln = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
        let mut command = common::podman::podman(&store);
        command.arg("run");
        let mut options = common::podman::run_options();
        let network = options.iter().position(|o| o == "none").unwrap();
        options[network] = "host".into();
        command.args(options).args([
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "label=disable",
            "--env",
            "HOME=/home/builder",
            "--env",
            "PATH=/opt/kiln:/usr/local/bin:/usr/bin:/bin",
            "--workdir",
            "/work",
            "--volume",
            "/usr:/usr:ro",
        ]);
        command.arg("--volume").arg(format!("{}:/opt/kiln/kiln:ro", kiln.display()));
        for name in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
            let host = Path::new("/").join(name);
            if host.is_dir() && !host.is_symlink() {
                command.arg("--volume").arg(format!("{}:/{name}:ro", host.display()));
            }
        }
        if setup.root_in_user_namespace {
            let map = format!("0:{USERNS_HOST_START}:65536");
            command.args(["--user", "0:0", "--uidmap", &map, "--gidmap", &map]);
        } else {
            command.args(["--user", &format!("{BUILDER_UID}:{BUILDER_UID}")]);
        }
        if setup.unmasked_proc {
            command.args(["--security-opt", "unmask=ALL"]);
        }
        if setup.privileged {
            command.arg("--privileged");
        }
        if setup.file_capabilities {
            let caps = self.dir.path().join("caps");
            for tool in ["newuidmap", "newgidmap"] {
                let inside = tools::find(tool).unwrap();
                command.arg("--volume").arg(format!(
                    "{}:{}:ro",
                    caps.join(tool).display(),
                    inside.display()
                ));
            }
        }
        if setup.state_on_overlayfs {
            let state = self.overlay_state(setup.owner());
            command.arg("--volume").arg(format!("{}:/state", state.display()));
        }
        command.arg("--rootfs").arg(self.rootfs()).arg("kiln").args(args);
        let output = command.output().expect("run podman");
        eprintln!(
            "kiln {args:?} in a container: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Builds the context with `--push` of two tags and `--metadata-file`, as docs/ci.md's
    /// recipes do, and checks what the registry got. Returns the progress log.
    fn build_and_push(&mut self, setup: Setup, repository: &str) -> String {
        let image = format!("{}/{repository}", self.registry.host);
        let (tag, latest) = (format!("{image}:1"), format!("{image}:latest"));
        let args = [
            "--root",
            "/state",
            "build",
            "--progress",
            "plain",
            "--push",
            "-t",
            &tag,
            "-t",
            &latest,
            "--metadata-file",
            "meta.json",
            "ctx",
        ];
        let output = self.kiln(setup, &args);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "the build in the container failed:\n{log}");
        assert!(!log.contains('\x1b') && !log.contains('\r'), "plain progress: {log:?}");
        let meta: Value =
            serde_json::from_slice(&fs::read(self.rootfs().join("work/meta.json")).unwrap())
                .unwrap();
        let digest = meta["containerimage.digest"].as_str().expect("the digest in meta.json");
        for reference in [&tag, &latest] {
            let inspected: Value = serde_json::from_str(&tools::stdout_of(
                Command::new("skopeo")
                    .args(["inspect", "--tls-verify=false"])
                    .arg(format!("docker://{reference}")),
            ))
            .unwrap();
            assert_eq!(inspected["Digest"], digest, "{reference} is the image meta.json names");
            assert_eq!(inspected["Labels"]["org.kiln.test"], "ci-container");
        }
        self.check_content(&tag);
        log
    }

    /// Exports the pushed image's files with kiln (as root, outside) and checks what the RUN
    /// steps made: owners only a subordinate range has, and the USER's output.
    fn check_content(&self, reference: &str) {
        let work = tempfile::tempdir().unwrap();
        let context = work.path().join("ctx");
        fs::create_dir(&context).unwrap();
        fs::write(context.join("Dockerfile"), format!("FROM {reference}\n")).unwrap();
        let dest = work.path().join("fs");
        tools::stdout_of(
            Command::new(env!("CARGO_BIN_EXE_kiln"))
                .arg("--root")
                .arg(work.path().join("root"))
                .args(["build", "--progress", "plain", "-o"])
                .arg(format!("type=local,dest={}", dest.display()))
                .arg(&context),
        );
        assert_eq!(fs::read_to_string(dest.join("app/message")).unwrap(), "built-in-ci\n");
        use std::os::unix::fs::MetadataExt;
        let message = fs::metadata(dest.join("app/message")).unwrap();
        assert_eq!((message.uid(), message.gid()), (1234, 5678), "the chown survived the push");
        assert_eq!(fs::read_to_string(dest.join("data/uid")).unwrap(), "65534\n", "USER applied");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        for mount in &self.mounts {
            let _ = Command::new("umount").arg("--lazy").arg(mount).status();
        }
    }
}

/// Builds and pushes in a fresh container set up as `setup`, if the tests can run here;
/// returns the progress log.
fn build_and_push_in_container(setup: Setup) -> Option<String> {
    ready().then(|| Container::new(setup).build_and_push(setup, "ci/app"))
}

#[test]
fn an_unprivileged_user_in_a_container_builds_and_pushes() {
    if let Some(log) = build_and_push_in_container(WORKING) {
        assert!(!log.contains("warning:"), "no fallback where overlay works: {log}");
    }
}

#[test]
fn root_of_a_container_with_its_own_user_namespace_builds_and_pushes() {
    let setup = Setup { root_in_user_namespace: true, file_capabilities: false, ..WORKING };
    if let Some(log) = build_and_push_in_container(setup) {
        assert!(!log.contains("warning:"), "no fallback where overlay works: {log}");
    }
}

#[test]
fn a_privileged_container_builds_and_pushes_as_uid_1000_with_setuid_newuidmap() {
    let setup =
        Setup { privileged: true, unmasked_proc: false, file_capabilities: false, ..WORKING };
    build_and_push_in_container(setup);
}

#[test]
fn with_the_state_root_on_overlayfs_run_works_on_a_copy() {
    if let Some(log) = build_and_push_in_container(Setup { state_on_overlayfs: true, ..WORKING }) {
        assert!(log.contains("warning: overlay rootfs unavailable"), "the fallback is told: {log}");
        assert!(log.contains("warning: writable bind mount on /ctx: overlay unavailable"), "{log}");
    }
}

/// `kiln build --progress plain ctx` in a fresh container set up as `setup`, if the tests can
/// run here.
fn build_in_container(setup: Setup) -> Option<Output> {
    let args = ["--root", "/state", "build", "--progress", "plain", "ctx"];
    ready().then(|| Container::new(setup).kiln(setup, &args))
}

#[test]
fn a_masked_proc_fails_naming_the_setting_that_unmasks_it() {
    let Some(output) = build_in_container(Setup { unmasked_proc: false, ..WORKING }) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1));
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = log.lines().collect();
    let error = lines.iter().rposition(|line| line.starts_with("error: ")).expect("an error");
    let last_progress = lines.iter().rposition(|line| line.starts_with('#')).unwrap();
    assert!(error > last_progress, "the error comes last: {log}");
    let error = lines[error];
    assert!(error.starts_with("error: ctx/Dockerfile:2: cannot mount a new /proc"), "{error}");
    for setting in
        ["its own /proc (/proc/", "unmask=ALL", "systempaths=unconfined", "procMount: Unmasked"]
    {
        assert!(error.contains(setting), "{setting} in {error}");
    }
}

#[test]
fn a_setuid_newuidmap_without_cap_sys_admin_works_or_says_to_use_file_capabilities() {
    let Some(output) = build_in_container(Setup { file_capabilities: false, ..WORKING }) else {
        return;
    };
    if output.status.success() {
        return; // a shadow version whose setuid helpers map ids as the user
    }
    assert_eq!(output.status.code(), Some(1));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("newuidmap failed"), "{log}");
    assert!(log.contains("setcap cap_setuid=ep newuidmap"), "{log}");
}
