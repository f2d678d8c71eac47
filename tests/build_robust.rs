//! `kiln build` under conditions other than the happy path, end to end with the real binary:
//! rootless builds (with and without subordinate ids, default state root), Ctrl-C, SIGTERM
//! and SIGKILL in the middle of a RUN (as root and rootless), concurrent builds and a prune
//! on one state root, and bad input (exit code 1, file:line and cause, nothing written, the
//! cache still good).
//!
//! Needs root (to create the test users and read host ownership), user namespaces,
//! `newuidmap`, `docker-registry`, `skopeo`, `setpriv` and `/bin/busybox`; each test skips
//! when they are missing, unless `KILN_E2E=1` makes that a failure. One registry with the
//! busybox base serves every test of this binary.

mod common;

use common::busybox::push_busybox;
use common::processes::{
    ProcessId, descendants, is_running, processes_using, processes_with, wait_until,
};
use common::registry::TestRegistry;
use common::tools;
use common::users::{self, TestUser};
use rustix::process::Signal;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// A hang guard only: nothing here is expected to take more than a few seconds.
const PATIENCE: Duration = Duration::from_secs(90);

fn ready() -> bool {
    if !rustix::process::geteuid().is_root() {
        assert!(!tools::e2e_required(), "these tests need root (KILN_E2E=1)");
        eprintln!("skipping: these tests need root");
        return false;
    }
    if !Path::new("/proc/self/ns/user").exists() {
        assert!(!tools::e2e_required(), "KILN_E2E=1 but there are no user namespaces");
        eprintln!("skipping: no user namespaces");
        return false;
    }
    tools::available(&["docker-registry", "skopeo", "setpriv", "/bin/busybox", "newuidmap"])
}

static REGISTRY: Mutex<Option<TestRegistry>> = Mutex::new(None);

extern "C" fn stop_registry() {
    if let Ok(mut registry) = REGISTRY.lock() {
        drop(registry.take());
    }
}

/// The busybox base, pushed once to a registry shared by the tests of this binary.
fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        // The registry dies with the thread that started it (`setpriv --pdeathsig`), and
        // each test runs in a thread of its own: start it from one that lives as long as
        // the process, and stop it at exit.
        std::thread::spawn(move || {
            let registry = TestRegistry::plain();
            let pushed = push_busybox(&registry, "busybox", "latest", &Default::default());
            *REGISTRY.lock().unwrap() = Some(registry);
            // SAFETY: registers a plain function taking and returning nothing.
            unsafe { libc::atexit(stop_registry) };
            sender.send(pushed.reference).unwrap();
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("starting the registry failed")
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process whose output goes to anonymous temp files: there is no pipe to drain, so it
/// can be waited for with a hang guard.
struct Running {
    child: Child,
    stdout: fs::File,
    stderr: fs::File,
}

fn spawn(command: &mut Command) -> Running {
    let (stdout, stderr) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    command.stdout(stdout.try_clone().unwrap()).stderr(stderr.try_clone().unwrap());
    Running { child: command.spawn().unwrap(), stdout, stderr }
}

/// Runs `command` to its end (a hang fails the test) and returns what it printed.
fn run(command: &mut Command) -> Output {
    spawn(command).finish()
}

impl Running {
    fn id(&self) -> u32 {
        self.child.id()
    }

    fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the end (killing it and failing after [`PATIENCE`]); what it printed.
    fn finish(mut self) -> Output {
        if !wait_until(PATIENCE, || self.has_exited()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("{} hung; it printed:\n{}", self.child.id(), text(&read_all(&mut self.stderr)));
        }
        let status = self.child.wait().unwrap();
        Output { status, stdout: read_all(&mut self.stdout), stderr: read_all(&mut self.stderr) }
    }
}

fn read_all(file: &mut fs::File) -> Vec<u8> {
    use std::io::Seek;
    let mut bytes = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

/// A temp directory for one test, owned by the user kiln runs as: the build context in
/// `ctx/`, outputs in `out/`; the state root is `state/` as root and the default one
/// (`$XDG_DATA_HOME/kiln`, XDG_DATA_HOME being `xdg/`) for an unprivileged user.
struct Workspace {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    user: Option<&'static TestUser>,
}

impl Workspace {
    fn new(user: Option<&'static TestUser>) -> Workspace {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        for sub in ["ctx", "out"] {
            fs::create_dir(dir.join(sub)).unwrap();
        }
        if let Some(user) = user {
            for path in [dir.clone(), dir.join("out")] {
                std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
        Workspace { _tmp: tmp, dir, user }
    }

    fn state(&self) -> PathBuf {
        match self.user {
            None => self.dir.join("state"),
            Some(_) => self.dir.join("xdg/kiln"),
        }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.join("out").join(name)
    }

    /// Writes a context file; `BASE` in it becomes the base image's reference.
    fn write(&self, path: &str, content: &str) {
        let full = self.dir.join("ctx").join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content.replace("BASE", base())).unwrap();
    }

    /// kiln as the workspace's user; unprivileged, with a clean environment whose HOME,
    /// TMPDIR and XDG_DATA_HOME are in the workspace.
    fn kiln(&self) -> Command {
        let mut command = match self.user {
            None => {
                let mut command = Command::new(KILN);
                command.stdin(Stdio::null()).env("KILN_ROOT", self.state());
                command
            }
            Some(user) => {
                let mut command = users::command_as(KILN, user, &self.dir);
                command.env("XDG_DATA_HOME", self.dir.join("xdg"));
                command
            }
        };
        command.current_dir(&self.dir);
        command
    }

    /// `kiln build --progress plain ARGS ctx`.
    fn build_command(&self, args: &[&str]) -> Command {
        let mut command = self.kiln();
        command.args(["build", "--progress", "plain"]).args(args).arg(self.dir.join("ctx"));
        command
    }

    fn build(&self, args: &[&str]) -> Output {
        let output = run(&mut self.build_command(args));
        eprintln!("kiln build {args:?}: {}\n{}", output.status, text(&output.stderr));
        output
    }

    fn build_ok(&self, args: &[&str]) -> String {
        let output = self.build(args);
        assert!(output.status.success(), "kiln build {args:?} failed");
        text(&output.stderr)
    }

    fn cache_verify_is_clean(&self) {
        let output = run(self.kiln().args(["cache", "verify"]));
        assert!(
            output.status.success(),
            "kiln cache verify: {}\n{}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
    }

    /// Entries of the output directory (a failed build must leave none, temp files included).
    fn outputs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Per step of a plain progress log: its title and whether it came from the cache.
fn steps(log: &str) -> BTreeMap<String, (String, bool)> {
    let mut steps: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for line in log.lines() {
        let Some((id, rest)) = line.split_once(' ') else { continue };
        if !id.starts_with('#') {
            continue;
        }
        if rest == "CACHED" {
            if let Some(step) = steps.get_mut(id) {
                step.1 = true;
            }
        } else if rest.starts_with('[') {
            steps.entry(id.to_string()).or_insert_with(|| (rest.to_string(), false));
        }
    }
    steps
}

/// Titles of the RUN/COPY steps that ran (were not cached).
fn steps_run(log: &str) -> Vec<String> {
    steps(log)
        .into_values()
        .filter(|(title, cached)| {
            !cached && (title.contains("] RUN ") || title.contains("] COPY "))
        })
        .map(|(title, _)| title)
        .collect()
}

fn cached_count(log: &str) -> usize {
    steps(log).values().filter(|(_, cached)| *cached).count()
}

/// The files of an OCI archive by path.
fn archive_files(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut outer = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(path, bytes);
    }
    files
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The digest of the image manifest an OCI archive holds.
fn manifest_digest(archive: &Path) -> String {
    let index = json(&archive_files(archive)["index.json"]);
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

/// Entries of every layer of the OCI archive's image: path → (uid, gid), upper layers last.
fn layer_owners(archive: &Path) -> BTreeMap<String, (u64, u64)> {
    let files = archive_files(archive);
    let blob = |digest: &str| &files[&format!("blobs/sha256/{}", &digest["sha256:".len()..])];
    let manifest = json(blob(&manifest_digest(archive)));
    let mut owners = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let compressed = blob(layer["digest"].as_str().unwrap());
        let mut layer = tar::Archive::new(flate2::read::GzDecoder::new(&compressed[..]));
        for entry in layer.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let header = entry.header();
            owners.insert(path, (header.uid().unwrap(), header.gid().unwrap()));
        }
    }
    owners
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

/// Paths under `dir` (itself included) not owned by `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let output = Command::new("find").arg(dir).args(["!", "-user", &uid.to_string()]).output();
    text(&output.unwrap().stdout).lines().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------
// Rootless builds
// ---------------------------------------------------------------------------------------

const MULTI_STAGE: &str = "FROM BASE AS build\n\
    RUN --mount=type=cache,target=/cache,uid=1234 echo run >> /cache/log && cp /cache/log /seen \
        && mkdir -p /out/sub && echo made > /out/sub/f && chown -R 1234:5678 /out/sub\n\
    USER 1234:5678\n\
    RUN grep SigIgn /proc/self/status > /tmp/sigign && id -u > /tmp/uid && id -g > /tmp/gid\n\
    FROM BASE\n\
    COPY --from=build /out/ /opt/\n\
    COPY --from=build /tmp/uid /tmp/gid /tmp/sigign /seen /info/\n\
    COPY --chown=42:43 app.txt /app.txt\n\
    USER nobody\n";

#[test]
fn rootless_multi_stage_build_keeps_ownership_and_is_cached_the_second_time() {
    if !ready() {
        return;
    }
    let (user, subids) = users::rootless_user();
    let work = Workspace::new(Some(user));
    work.write("Dockerfile", MULTI_STAGE);
    work.write("app.txt", "app\n");
    let archive = work.out("image.tar");
    let oci = format!("type=oci,dest={}", archive.display());
    let local = format!("type=local,dest={}", work.out("fs").display());
    let log = work.build_ok(&["-o", &oci, "-o", &local]);
    assert!(!log.contains("warning:"), "no warning with subordinate ids: {log}");
    assert_eq!(cached_count(&log), 0);

    // The image's layers carry the ids the Dockerfile asked for.
    let owners = layer_owners(&archive);
    assert_eq!(owners["opt/sub"], (1234, 5678), "{owners:?}");
    assert_eq!(owners["opt/sub/f"], (1234, 5678));
    assert_eq!(owners["app.txt"], (42, 43));
    assert_eq!(owners["info/uid"], (1234, 5678), "COPY --from keeps the owner USER gave it");
    // The local export is owned by the same ids as the host sees them: container id N is
    // subordinate id start+N-1 (0 is the user).
    let fs_dir = work.out("fs");
    let host = |id: u32, start: u32| start + id - 1;
    let sub_owner = (host(1234, subids.uid.0), host(5678, subids.gid.0));
    assert_eq!(owner(&fs_dir.join("opt/sub")), sub_owner);
    assert_eq!(owner(&fs_dir.join("opt/sub/f")), sub_owner);
    assert_eq!(owner(&fs_dir.join("app.txt")), (host(42, subids.uid.0), host(43, subids.gid.0)));
    assert_eq!(owner(&fs_dir.join("bin/busybox")), (user.uid, user.gid), "root is the user");
    let info = |name: &str| fs::read_to_string(fs_dir.join("info").join(name)).unwrap();
    assert_eq!((info("uid"), info("gid")), ("1234\n".into(), "5678\n".into()), "USER applies");
    // (Not the last command of the shell, which ash would exec with its SIGQUIT ignored.)
    // Read before other commands: ash execs the last one with its own SIGQUIT ignored.
    // glibc's two internal real-time signals (32, 33) are out of sigaction's reach (and
    // glibc sets them itself when a program uses them): leave them out.
    let sigign = info("sigign");
    let ignored = u64::from_str_radix(sigign.trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(ignored & !(0b11 << 31), 0, "RUN starts with no signal ignored: {sigign}");
    assert_eq!(info("seen"), "run\n", "the cache mount was mounted");

    // Everything kiln made in its default state root belongs to the user, except image
    // files (in snapshots) and cache mount contents owned by other ids as the build said;
    // nothing is left in tmp/.
    let state = work.state();
    assert!(state.join("oci-layout").is_file(), "the default root is $XDG_DATA_HOME/kiln");
    let foreign = not_owned_by(&work.dir.join("xdg"), user.uid);
    assert!(!foreign.is_empty(), "the snapshots hold the chowned files");
    let image_data = ["snapshots", "cache-mounts"].map(|d| state.join(d).display().to_string());
    assert!(foreign.iter().all(|p| image_data.iter().any(|d| p.starts_with(d))), "{foreign:#?}");
    assert_eq!(fs::read_dir(state.join("tmp")).unwrap().count(), 0);

    // Again: every step cached, the same image.
    let again = work.build_ok(&["-o", &oci]);
    assert_eq!(steps_run(&again), Vec::<String>::new(), "a second build runs nothing");
    assert_eq!(cached_count(&again), 5, "two RUNs and three COPYs cached");

    // A user cannot `rm -rf` directories owned by subordinate ids: the state root goes with
    // `kiln cache prune --all` first (which runs in kiln's user namespace), then `rm -rf`.
    let rm = |path: &Path| {
        Command::new("rm").arg("-rf").arg(path).uid(user.uid).gid(user.gid).output().unwrap()
    };
    let output = rm(&state.join("cache-mounts"));
    assert!(!output.status.success(), "rm -rf of a cache mount chowned to 1234 cannot work");
    let output = run(work.kiln().args(["cache", "prune", "--all"]));
    assert!(output.status.success(), "prune: {}", text(&output.stderr));
    assert!(text(&output.stdout).ends_with("removed 1 cache mount\n"), "{}", text(&output.stdout));
    assert_eq!(not_owned_by(&work.dir.join("xdg"), user.uid), Vec::<String>::new());
    let output = rm(&work.dir.join("xdg"));
    assert!(output.status.success(), "rm -rf of the state root: {}", text(&output.stderr));
    assert!(!work.dir.join("xdg").exists());
}

#[test]
fn without_subordinate_ids_a_build_warns_and_chown_fails_in_the_run() {
    if !ready() {
        return;
    }
    let user = users::user_without_subids();
    let work = Workspace::new(Some(user));
    work.write("Dockerfile", "FROM BASE\nRUN echo made > /f && id -u > /uid\n");
    let output = work.build(&["-o", &format!("type=local,dest={}", work.out("fs").display())]);
    assert!(output.status.success());
    let stderr = text(&output.stderr);
    let warning = "warning: no subordinate ids for kilnnosub in /etc/subuid and /etc/subgid: \
                   files can only be owned by root in images built here\n";
    assert!(stderr.starts_with(warning), "{stderr}");
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert_eq!(fs::read_to_string(work.out("fs/uid")).unwrap(), "0\n");
    assert_eq!(owner(&work.out("fs/f")), (user.uid, user.gid));

    // chown to an id the namespace does not have fails as the kernel says, in the RUN.
    work.write("Dockerfile", "FROM BASE\nRUN echo made > /f\nRUN chown 1000:1000 /f\n");
    let dest = work.out("image.tar");
    let output = work.build(&["-o", &format!("type=oci,dest={}", dest.display())]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("chown: /f: Invalid argument"), "{stderr}");
    assert!(stderr.contains("Dockerfile:3: process \"/bin/sh -c chown 1000:1000 /f\" did not complete successfully: exit code: 1"), "{stderr}");
    assert!(!dest.exists());
}

// ---------------------------------------------------------------------------------------
// Ctrl-C, SIGTERM, SIGKILL during a RUN
// ---------------------------------------------------------------------------------------

/// A RUN that waits for `/gate/open` in its cache mount; `marker` names its processes.
fn gated_dockerfile(marker: &str) -> String {
    format!(
        "FROM BASE\n\
         RUN --mount=type=cache,id=gate,target=/gate sh -c ': {marker}; touch /gate/started; \
             while [ ! -e /gate/open ]; do sleep 1; done'\n\
         RUN echo after > /after\n"
    )
}

/// The host directory of the `gate` cache mount of `state`, once a RUN made it.
fn gate_dir(state: &Path) -> Option<PathBuf> {
    let mounts = fs::read_dir(state.join("cache-mounts")).ok()?;
    mounts.flatten().map(|e| e.path().join("0/data")).find(|d| d.is_dir())
}

fn open_gate(state: &Path) {
    let dir = gate_dir(state).expect("the gated RUN made its cache mount");
    fs::write(dir.join("open"), "").unwrap();
}

/// Starts a gated build (in its own process group) and returns once its RUN runs, with the
/// processes the build had then.
fn start_gated_build(work: &Workspace, marker: &str, args: &[&str]) -> (Running, Vec<ProcessId>) {
    work.write("Dockerfile", &gated_dockerfile(marker));
    let mut kiln = spawn(work.build_command(args).process_group(0));
    let started = wait_until(PATIENCE, || {
        gate_dir(&work.state()).is_some_and(|d| d.join("started").exists()) || kiln.has_exited()
    });
    if !started || kiln.has_exited() {
        let _ = kiln.child.kill();
        let output = kiln.finish();
        panic!("the gated RUN did not start: {}\n{}", output.status, text(&output.stderr));
    }
    let processes = descendants(kiln.id());
    assert!(!processes_with(marker).is_empty(), "the RUN's processes carry the marker");
    (kiln, processes)
}

fn wait_for_exit(kiln: Running) -> Output {
    let output = kiln.finish();
    eprintln!("kiln: {}\n{}", output.status, text(&output.stderr));
    output
}

/// Mount points of this (the host's) mount namespace under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(&dir))
        .map(str::to_owned)
        .collect()
}

enum Delivery {
    /// To kiln's process group, as a terminal's Ctrl-C.
    Group,
    /// To kiln alone, as `kill PID`.
    Process,
}

/// Interrupts a gated build with `signal`; then nothing of the build may be left (process,
/// mount, output), the store must verify, and the same build must then succeed.
fn interrupt(user: Option<&'static TestUser>, signal: Signal, delivery: Delivery, marker: &str) {
    let work = Workspace::new(user);
    let dest = work.out("image.tar");
    let oci = format!("type=oci,dest={}", dest.display());
    let (kiln, processes) = start_gated_build(&work, marker, &["-o", &oci]);
    let pid = rustix::process::Pid::from_raw(kiln.id() as i32).unwrap();
    match delivery {
        Delivery::Group => rustix::process::kill_process_group(pid, signal).unwrap(),
        Delivery::Process => rustix::process::kill_process(pid, signal).unwrap(),
    }
    let output = wait_for_exit(kiln);
    let stderr = text(&output.stderr);
    match signal {
        Signal::KILL => assert_eq!(output.status.signal(), Some(libc::SIGKILL)),
        Signal::INT => {
            // As the docker CLI: 128 + SIGINT, after saying why.
            assert_eq!(output.status.code(), Some(130), "{stderr}");
            assert!(stderr.ends_with("error: build canceled: received SIGINT\n"), "{stderr}");
        }
        Signal::TERM => {
            assert_eq!(output.status.code(), Some(143), "{stderr}");
            assert!(stderr.ends_with("error: build canceled: received SIGTERM\n"), "{stderr}");
        }
        other => panic!("no expectation for {other:?}"),
    }
    assert!(
        wait_until(PATIENCE, || processes.iter().all(|p| !is_running(p))),
        "processes of the build survived: {:?}",
        processes.iter().filter(|p| is_running(p)).collect::<Vec<_>>()
    );
    assert_eq!(processes_with(marker), Vec::<String>::new(), "the RUN's command survived");
    assert_eq!(processes_using(&work.dir), Vec::<String>::new(), "processes in the test's dirs");
    assert_eq!(mounts_under(&work.dir), Vec::<String>::new(), "mounts left on the host");
    assert_eq!(work.outputs(), Vec::<String>::new(), "an interrupted build wrote output");
    let tmp: Vec<String> = fs::read_dir(work.state().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if signal == Signal::KILL {
        // A killed kiln cannot clean up: its locked-while-alive work directory is swept by a
        // later open or prune once it is older than the stale age.
        assert!(tmp.iter().all(|name| name.starts_with("work-")), "{tmp:?}");
    } else {
        assert_eq!(tmp, Vec::<String>::new(), "a canceled build cleans its temp files up");
    }
    work.cache_verify_is_clean();
    // No stale lock: the interrupted step's key is built now (the gate opened).
    open_gate(&work.state());
    let log = work.build_ok(&["-o", &oci]);
    assert!(steps_run(&log).iter().any(|s| s.contains(marker)), "{log}");
    assert!(dest.is_file());
}

#[test]
fn ctrl_c_cancels_a_build_as_root() {
    if ready() {
        interrupt(None, Signal::INT, Delivery::Group, "kiln-test-9871");
    }
}

#[test]
fn sigterm_cancels_a_build_as_root() {
    if ready() {
        interrupt(None, Signal::TERM, Delivery::Process, "kiln-test-9872");
    }
}

#[test]
fn sigkill_of_a_build_as_root_leaves_nothing_running() {
    if ready() {
        interrupt(None, Signal::KILL, Delivery::Process, "kiln-test-9873");
    }
}

#[test]
fn ctrl_c_cancels_a_rootless_build() {
    if ready() {
        interrupt(Some(&users::rootless_user().0), Signal::INT, Delivery::Group, "kiln-test-9874");
    }
}

#[test]
fn sigterm_cancels_a_rootless_build() {
    if ready() {
        let user = &users::rootless_user().0;
        interrupt(Some(user), Signal::TERM, Delivery::Process, "kiln-test-9875");
    }
}

#[test]
fn sigkill_of_a_rootless_build_leaves_nothing_running() {
    if ready() {
        let user = &users::rootless_user().0;
        interrupt(Some(user), Signal::KILL, Delivery::Process, "kiln-test-9876");
    }
}

#[test]
fn a_canceled_build_that_cannot_stop_exits_after_a_grace_period() {
    if !ready() {
        return;
    }
    let work = Workspace::new(None);
    work.write("Dockerfile", "FROM BASE\nRUN true\n");
    // A prune (this exclusive lock) keeps the build waiting for its lease, where it cannot
    // be interrupted.
    let root = kiln_cache::Root::open(work.state()).unwrap();
    let prune = root.lock_exclusive(&mut || {}).unwrap();
    let kiln = spawn(&mut work.build_command(&[]));
    let lock_file = work.state().join("lock");
    let fds = PathBuf::from(format!("/proc/{}/fd", kiln.id()));
    let waiting = wait_until(PATIENCE, || {
        fs::read_dir(&fds).is_ok_and(|fds| {
            fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|to| to == lock_file))
        })
    });
    assert!(waiting, "kiln never opened the root's lock");
    let pid = rustix::process::Pid::from_raw(kiln.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::INT).unwrap();
    let output = wait_for_exit(kiln);
    assert_eq!(output.status.code(), Some(130));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: build canceled: received SIGINT; still busy after"),
        "{stderr}"
    );
    drop(prune);
    work.cache_verify_is_clean();
    work.build_ok(&[]);
}

// ---------------------------------------------------------------------------------------
// Concurrency on one state root
// ---------------------------------------------------------------------------------------

#[test]
fn four_concurrent_builds_on_one_root_build_shared_steps_once() {
    if !ready() {
        return;
    }
    let work = Workspace::new(None);
    let shared = "RUN sleep 1 && echo shared > /shared";
    work.write("Dockerfile.same", &format!("FROM BASE\n{shared}\nRUN echo same > /which\n"));
    work.write("Dockerfile.other", &format!("FROM BASE\n{shared}\nRUN echo other > /which\n"));
    work.write("Dockerfile.copy", &format!("FROM BASE\n{shared}\nCOPY which /which\n"));
    work.write("which", "copy\n");
    let builds = [("a", "same"), ("b", "same"), ("c", "other"), ("d", "copy")];
    let children: Vec<(&str, &str, Running)> = builds
        .iter()
        .map(|&(name, file)| {
            let dockerfile = work.dir.join("ctx").join(format!("Dockerfile.{file}"));
            let dest = format!("type=local,dest={}", work.out(name).display());
            let oci = format!("type=oci,dest={}", work.out(&format!("{name}.tar")).display());
            let running = spawn(&mut work.build_command(&[
                "-f",
                dockerfile.to_str().unwrap(),
                "-o",
                &dest,
                "-o",
                &oci,
                "--build-arg",
                "SOURCE_DATE_EPOCH=1700000000",
            ]));
            (name, file, running)
        })
        .collect();
    let mut ran_shared = 0;
    for (name, file, child) in children {
        let output = child.finish();
        let log = text(&output.stderr);
        eprintln!("build {name}: {}\n{log}", output.status);
        assert!(output.status.success(), "build {name} failed");
        let which = fs::read_to_string(work.out(name).join("which")).unwrap();
        assert_eq!(which, format!("{file}\n"), "build {name}");
        assert_eq!(fs::read_to_string(work.out(name).join("shared")).unwrap(), "shared\n");
        let shared_step = steps(&log).into_values().find(|(title, _)| title.ends_with(shared));
        let (_, cached) = shared_step.unwrap_or_else(|| panic!("build {name}: no shared step"));
        ran_shared += usize::from(!cached);
    }
    assert_eq!(ran_shared, 1, "the shared step ran once; the others waited and hit the cache");
    let digest = |name: &str| manifest_digest(&work.out(&format!("{name}.tar")));
    assert_eq!(digest("a"), digest("b"), "the same Dockerfile gave the same image");
    assert_ne!(digest("a"), digest("c"));
    work.cache_verify_is_clean();
}

#[test]
fn prune_during_a_build_waits_for_it() {
    if !ready() {
        return;
    }
    let work = Workspace::new(None);
    let (build, _) = start_gated_build(&work, "kiln-test-9877", &[]);
    let prune = spawn(work.kiln().args(["cache", "prune", "--all"]));
    open_gate(&work.state());
    let build = wait_for_exit(build);
    assert!(build.status.success());
    let prune = prune.finish();
    assert!(prune.status.success(), "{}", text(&prune.stderr));
    let pruned = text(&prune.stdout);
    assert!(pruned.ends_with("removed 1 cache mount\n"), "the gate went too: {pruned}");
    work.cache_verify_is_clean();
    work.write("Dockerfile", "FROM BASE\nRUN echo after > /after\n");
    let again = work.build_ok(&[]);
    assert_eq!(steps_run(&again), ["[2/2] RUN echo after > /after"], "pruned records are gone");
}

#[test]
fn another_kiln_opening_the_root_leaves_a_long_runs_files_alone() {
    if !ready() {
        return;
    }
    let work = Workspace::new(None);
    let (build, _) = start_gated_build(&work, "kiln-test-9878", &[]);
    // Make everything in tmp/ look older than the stale age, as after a long RUN; then
    // another kiln opens the root (and sweeps stale entries).
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    for entry in fs::read_dir(work.state().join("tmp")).unwrap() {
        fs::File::open(entry.unwrap().path()).unwrap().set_modified(old).unwrap();
    }
    let du = run(work.kiln().args(["cache", "du"]));
    assert!(du.status.success(), "{}", text(&du.stderr));
    open_gate(&work.state());
    let build = wait_for_exit(build);
    assert!(build.status.success(), "the build lost its files to another kiln");
    work.cache_verify_is_clean();
}

#[test]
fn an_output_to_a_device_or_fifo_is_written_into_not_replaced() {
    if !ready() {
        return;
    }
    // As `-o type=tar,dest=/dev/null` must leave /dev/null a device (a rename replaced it
    // with a regular file once); a FIFO shows it without touching the host's /dev/null.
    use std::os::unix::fs::FileTypeExt;
    let work = Workspace::new(None);
    work.write("Dockerfile", "FROM BASE\nRUN echo hi > /hi\n");
    let fifo = work.out("pipe");
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    work.build_ok(&["-o", &format!("type=tar,dest={}", fifo.display())]);
    let kind = fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced by {kind:?}");
    let tar = reader.join().unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().into_owned());
    assert!(names.any(|name| name == Path::new("hi")), "the rootfs went through the FIFO");
    assert_eq!(work.outputs(), ["pipe"], "no temp file beside it");
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[test]
fn bad_input_exits_1_names_the_cause_writes_nothing_and_keeps_the_cache() {
    if !ready() {
        return;
    }
    let work = Workspace::new(None);
    let dest = work.out("image.tar");
    let oci = format!("type=oci,dest={}", dest.display());
    let ctx = work.dir.join("ctx");
    let dockerfile_at = |line: usize| format!("{}/Dockerfile:{line}: ", ctx.display());
    // (Dockerfile, extra arguments, what stderr must say)
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "FROM BASE\nCOPY missing.txt /x\n",
            vec![],
            vec![dockerfile_at(2), "\"/missing.txt\": not found".into()],
        ),
        (
            "FROM BASE\nRUN true\nRUN echo failing && exit 3\n",
            vec![],
            vec![
                dockerfile_at(3),
                "process \"/bin/sh -c echo failing && exit 3\" did not complete successfully: exit code: 3".into(),
                "3 | RUN echo failing && exit 3".into(),
            ],
        ),
        (
            "FROM BASE\nRUN --mount=type=secret,id=token,required true\n",
            vec![],
            vec![dockerfile_at(2), "secret token not found".into()],
        ),
        (
            "FROM REGISTRY/no-such-image:1\n",
            vec![],
            vec![dockerfile_at(1), "manifest unknown".into(), "no-such-image".into()],
        ),
        (
            "FROM 127.0.0.1:1/unreachable\n",
            vec![],
            vec![dockerfile_at(1), "127.0.0.1:1".into(), "Connection refused".into()],
        ),
        ("FROM BASE\nRUNN true\n", vec![], vec![dockerfile_at(2) + "unknown instruction: RUNN"]),
        (
            "FROM BASE\nRUN <<EOF\necho never ends\n",
            vec![],
            vec![dockerfile_at(2) + "unterminated heredoc"],
        ),
        (
            "FROM BASE AS a\nRUN true\n",
            vec!["--target".into(), "nope".into()],
            vec!["target stage \"nope\" could not be found".into()],
        ),
        (
            "FROM BASE\n",
            vec!["--output".into(), "type=nope".into()],
            vec!["unknown output type \"nope\"".into()],
        ),
        (
            "FROM BASE\n",
            vec!["--secret".into(), "token".into()],
            vec!["invalid --secret \"token\"".into()],
        ),
        (
            "FROM BASE\n",
            vec!["--secret".into(), "id=,src=/etc/hostname".into()],
            vec!["invalid --secret \"id=,src=/etc/hostname\": id is required".into()],
        ),
    ];
    let registry = base().split('/').next().unwrap().to_string();
    for (dockerfile, extra, expected) in &cases {
        work.write("Dockerfile", &dockerfile.replace("REGISTRY", &registry));
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        args.extend(["-o", &oci]);
        let output = work.build(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{dockerfile} {extra:?}: {stderr}");
        for needle in expected {
            assert!(stderr.contains(needle.as_str()), "{dockerfile}: no {needle:?} in\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(work.outputs(), Vec::<String>::new(), "{dockerfile}: output written");
    }

    // Paths that are not there.
    let missing = work.dir.join("no-such-dir");
    let output = run(work.kiln().args(["build", "-o", &oci]).arg(&missing));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: unable to prepare context: path {:?} not found\n",
            missing.display().to_string()
        )
    );
    let empty = work.dir.join("empty");
    fs::create_dir(&empty).unwrap();
    let output = run(work.kiln().args(["build", "-o", &oci]).arg(&empty));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&format!("failed to read dockerfile {}/Dockerfile", empty.display())));
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert_eq!(work.outputs(), Vec::<String>::new());

    // The store is intact and a good build works, from the cache where it can.
    work.cache_verify_is_clean();
    work.write("Dockerfile", "FROM BASE\nRUN true\nRUN echo fine > /fine\n");
    let log = work.build_ok(&["-o", &oci]);
    assert_eq!(cached_count(&log), 1, "RUN true was recorded by the failed build: {log}");
    assert!(dest.is_file());
}
