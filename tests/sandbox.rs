//! End-to-end tests of the RUN sandbox over a busybox rootfs.
//!
//! They need root (to compare host and container ids, and to create the `kilntest` user for
//! the rootless test), user namespaces, and `/bin/busybox` (Debian `busybox-static`). Without
//! them each test prints why it is skipped, unless `KILN_E2E=1` (set by `scripts/test`), which
//! turns a missing prerequisite into a failure.

use kiln::sandbox::{
    ExitStatus, Mount, NetworkMode, ProcessSpec, RootfsMode, RootfsModeRequest, RootfsSpec,
    Sandbox, SandboxError, SandboxResult, SandboxSpec, Stream, StubKind,
};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::processes::{processes_with, wait_until};
use common::rootfs::busybox_rootfs;
use common::users;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Why the sandbox cannot be tested here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Some("not running as root".into());
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("/bin/busybox missing (apt-get install busybox-static)".into());
    }
    if !Path::new("/proc/self/ns/user").exists() {
        return Some("no user namespaces".into());
    }
    None
}

/// Skip (or, with KILN_E2E=1, fail) when the sandbox cannot run here.
macro_rules! require_sandbox {
    () => {
        if let Some(reason) = missing_prerequisite() {
            if std::env::var_os("KILN_E2E").is_some_and(|v| v == "1") {
                panic!("KILN_E2E=1 but the sandbox cannot be tested: {reason}");
            }
            eprintln!("skipping: {reason} (set KILN_E2E=1 to make this a failure)");
            return;
        }
    };
}

/// A busybox rootfs with a lower layer, and empty upper/work directories.
struct Layers {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

fn new_layers() -> Layers {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let lower = base.join("lower");
    busybox_rootfs(&lower);
    let upper = base.join("upper");
    let work = base.join("work");
    fs::create_dir(&upper).unwrap();
    fs::create_dir(&work).unwrap();
    Layers { _tmp: tmp, base, lower, upper, work }
}

fn spec(layers: &Layers, script: &str) -> SandboxSpec {
    SandboxSpec {
        rootfs: RootfsSpec {
            lowers: vec![layers.lower.clone()],
            upper: layers.upper.clone(),
            work: layers.work.clone(),
            mode: RootfsModeRequest::Auto,
        },
        process: ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into(), "HOME=/root".into()],
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

struct Output {
    result: SandboxResult,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Output {
    fn stdout_text(&self) -> String {
        self.stdout.concat()
    }
}

fn try_run(spec: SandboxSpec) -> (Result<SandboxResult, SandboxError>, Vec<String>, Vec<String>) {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let result = Sandbox::new(spec).with_helper(KILN).run(&mut |stream, line| {
        let line = String::from_utf8_lossy(line).into_owned();
        match stream {
            Stream::Stdout => stdout.push(line),
            Stream::Stderr => stderr.push(line),
        }
    });
    (result, stdout, stderr)
}

fn run(spec: SandboxSpec) -> Output {
    let (result, stdout, stderr) = try_run(spec);
    let result = result.unwrap_or_else(|e| panic!("sandbox failed: {e}; stderr: {stderr:?}"));
    Output { result, stdout, stderr }
}

/// Mount lines of this (host) process mentioning `needle`.
fn host_mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle) || l.contains("kiln-sandbox-"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn output_is_streamed_line_by_line_per_stream() {
    require_sandbox!();
    let layers = new_layers();
    let out = run(spec(&layers, "echo one; echo two >&2; echo three; printf tail"));
    assert_eq!(out.stdout, ["one\n", "three\n", "tail"]);
    assert_eq!(out.stderr, ["two\n"]);
    assert_eq!(out.result.status, ExitStatus::Code(0));
    assert_eq!(out.result.rootfs_mode, RootfsMode::Overlay);
}

#[test]
fn exit_code_and_signal_are_propagated() {
    require_sandbox!();
    let layers = new_layers();
    assert_eq!(run(spec(&layers, "exit 42")).result.status, ExitStatus::Code(42));
    let layers = new_layers();
    assert_eq!(run(spec(&layers, "kill -9 $$")).result.status, ExitStatus::Signal(9));
}

#[test]
fn writes_land_in_upper_and_not_in_lower() {
    require_sandbox!();
    let layers = new_layers();
    let out = run(spec(
        &layers,
        "echo new > /created && echo changed > /data/sub/file && mkdir -p /d/e && cat /data/sub/file",
    ));
    assert_eq!(out.stdout_text(), "changed\n");
    assert_eq!(fs::read_to_string(layers.upper.join("created")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(layers.upper.join("data/sub/file")).unwrap(), "changed\n");
    assert!(layers.upper.join("d/e").is_dir());
    assert_eq!(fs::read_to_string(layers.lower.join("data/sub/file")).unwrap(), "lower\n");
    assert!(!layers.lower.join("created").exists());
    assert!(!layers.upper.join("data/keep").exists(), "untouched files stay in lower");
}

#[test]
fn deletions_become_overlay_whiteouts_in_upper() {
    require_sandbox!();
    let layers = new_layers();
    run(spec(&layers, "rm /data/keep && rm -r /data/sub && mkdir /data/sub"));
    let whiteout = fs::symlink_metadata(layers.upper.join("data/keep")).unwrap();
    assert_eq!(whiteout.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(whiteout.rdev(), 0);
    // The recreated directory hides the lower one: opaque (trusted.* as root).
    let mut value = [0u8; 4];
    let n = rustix::fs::lgetxattr(
        layers.upper.join("data/sub"),
        "trusted.overlay.opaque",
        &mut value[..],
    )
    .unwrap();
    assert_eq!(&value[..n], b"y");
    assert!(layers.lower.join("data/keep").exists());
}

#[test]
fn user_and_groups_are_applied_without_capabilities() {
    require_sandbox!();
    let layers = new_layers();
    let mut spec =
        spec(&layers, "id -u; id -g; id -G; grep CapEff /proc/self/status; touch /tmp/mine");
    spec.process.uid = 1000;
    spec.process.gid = 1000;
    spec.process.additional_gids = vec![1000, 44];
    let out = run(spec);
    assert_eq!(out.stdout_text(), "1000\n1000\n1000 44\nCapEff:\t0000000000000000\n");
    let meta = fs::metadata(layers.upper.join("tmp/mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    // umask 0022
    assert_eq!(meta.mode() & 0o777, 0o644);
}

#[test]
fn root_keeps_exactly_dockers_default_capabilities() {
    require_sandbox!();
    let layers = new_layers();
    let out = run(spec(&layers, "grep -E 'Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status"));
    assert_eq!(
        out.stdout_text(),
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    );
}

#[test]
fn chown_to_any_id_is_kept_in_upper() {
    require_sandbox!();
    let layers = new_layers();
    run(spec(&layers, "touch /f && chown 1234:4321 /f"));
    let meta = fs::metadata(layers.upper.join("f")).unwrap();
    // kiln runs as root here: the identity map keeps ids verbatim.
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
}

#[test]
fn hostname_is_the_specs() {
    require_sandbox!();
    let layers = new_layers();
    let mut spec = spec(&layers, "hostname; grep -c buildhost /etc/hosts");
    spec.hostname = "buildhost".into();
    assert_eq!(run(spec).stdout_text(), "buildhost\n1\n");
}

#[test]
fn command_runs_under_the_sandbox_init_in_a_new_pid_namespace() {
    require_sandbox!();
    let layers = new_layers();
    let out = run(spec(
        &layers,
        "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$; ls /proc | grep -c '^[0-9]'",
    ));
    let lines: Vec<&str> = out.stdout_text().leak().lines().collect();
    assert!(lines[0].contains("__sandbox-init"), "{lines:?}");
    assert_eq!(lines[1], "2", "the command is pid 1's first child");
    // pid 1, the shell, and the ls/grep of the pipeline: nothing from the host.
    assert!(lines[2].parse::<u32>().unwrap() <= 5, "{lines:?}");
}

#[test]
fn network_none_has_only_loopback_up() {
    require_sandbox!();
    let layers = new_layers();
    let mut spec = spec(&layers, "ls /sys/class/net; cat /sys/class/net/lo/operstate");
    spec.network = NetworkMode::None;
    let out = run(spec);
    let text = out.stdout_text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("lo"));
    // `lo` reports "unknown" as its operstate once up (it has no carrier notion).
    assert_eq!(lines.next(), Some("unknown"));
    assert_eq!(lines.next(), None);
}

#[test]
fn host_network_is_shared_by_default() {
    require_sandbox!();
    let layers = new_layers();
    let out = run(spec(&layers, "ls /sys/class/net | sort"));
    let mut host: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    host.sort();
    assert_eq!(out.stdout_text(), host.iter().map(|n| format!("{n}\n")).collect::<String>());
}

#[test]
fn etc_hosts_and_mount_points_are_stubs_removed_after_the_run() {
    require_sandbox!();
    let layers = new_layers();
    let out = run(spec(&layers, "cat /etc/hosts; test -c /dev/null && echo devnull"));
    assert_eq!(
        out.stdout_text(),
        "127.0.0.1\tlocalhost kiln\n::1\tlocalhost ip6-localhost ip6-loopback\ndevnull\n"
    );
    let stubs: Vec<(&str, StubKind, bool)> =
        out.result.stubs.iter().map(|s| (s.path.as_str(), s.kind, s.removed)).collect();
    assert_eq!(
        stubs,
        [
            ("/proc", StubKind::Dir, true),
            ("/dev", StubKind::Dir, true),
            ("/sys", StubKind::Dir, true),
            ("/etc/hosts", StubKind::File, true),
            ("/etc/resolv.conf", StubKind::File, true),
        ]
    );
    for gone in ["etc/hosts", "etc/resolv.conf", "proc", "dev", "sys"] {
        assert!(!layers.upper.join(gone).exists(), "{gone} left in upper");
    }
    // /etc was copied up to hold the stubs; its mtime is the lower's again.
    let upper_etc = fs::metadata(layers.upper.join("etc")).unwrap();
    let lower_etc = fs::metadata(layers.lower.join("etc")).unwrap();
    assert_eq!(
        (upper_etc.mtime(), upper_etc.mtime_nsec()),
        (lower_etc.mtime(), lower_etc.mtime_nsec())
    );
}

#[test]
fn existing_mount_targets_are_not_stubs() {
    require_sandbox!();
    let layers = new_layers();
    for dir in ["proc", "dev", "sys"] {
        fs::create_dir(layers.lower.join(dir)).unwrap();
    }
    fs::write(layers.lower.join("etc/hosts"), "image hosts\n").unwrap();
    fs::write(layers.lower.join("etc/resolv.conf"), "").unwrap();
    let out = run(spec(&layers, "grep -c localhost /etc/hosts"));
    assert_eq!(out.stdout_text(), "2\n");
    assert_eq!(out.result.stubs, []);
    assert_eq!(fs::read_dir(&layers.upper).unwrap().count(), 0, "upper stays empty");
}

#[test]
fn missing_command_and_cwd_are_clear_errors() {
    require_sandbox!();
    let layers = new_layers();
    let mut missing = spec(&layers, "");
    missing.process.argv = vec!["no-such-tool".into(), "x".into()];
    let (result, _, _) = try_run(missing);
    let err = result.unwrap_err();
    assert!(matches!(err, SandboxError::CommandNotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "exec: \"no-such-tool\": executable file not found in $PATH");

    let layers = new_layers();
    let mut cwd = spec(&layers, "pwd");
    cwd.process.cwd = "/nope".into();
    let err = try_run(cwd).0.unwrap_err();
    assert_eq!(err.to_string(), "working directory /nope does not exist in the rootfs");

    // A file bound onto a directory: the error names the mount target.
    let layers = new_layers();
    let file = layers.base.join("file");
    fs::write(&file, "x").unwrap();
    let mut bad_mount = spec(&layers, "true");
    bad_mount.mounts.push(Mount::Bind { source: file, target: "/data".into(), readonly: true });
    let err = try_run(bad_mount).0.unwrap_err();
    assert_eq!(err.to_string(), "mount target /data: exists and is a directory");

    let layers = new_layers();
    let mut in_dir = spec(&layers, "pwd");
    in_dir.process.cwd = "/data/sub".into();
    assert_eq!(run(in_dir).stdout_text(), "/data/sub\n");
}

#[test]
fn extra_mounts_bind_overlay_and_tmpfs() {
    require_sandbox!();
    let layers = new_layers();
    let host = layers.base.join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "from host\n").unwrap();
    let mut spec = spec(
        &layers,
        "cat /ro/in; echo x > /ro/in 2>/dev/null || echo ro-refused; \
         echo rw > /rw/out; \
         echo scratch > /ov/in; cat /ov/in; \
         echo t > /mnt/tmp/t && grep -c ' /mnt/tmp tmpfs' /proc/mounts",
    );
    spec.mounts = vec![
        Mount::Bind { source: host.clone(), target: "/ro".into(), readonly: true },
        Mount::Bind { source: host.clone(), target: "/rw".into(), readonly: false },
        Mount::BindOverlay { source: host.clone(), target: "/ov".into() },
        Mount::Tmpfs { target: "/mnt/tmp".into(), size: Some(1 << 20), mode: None },
    ];
    let out = run(spec);
    assert_eq!(out.stdout_text(), "from host\nro-refused\nscratch\n1\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "rw\n");
    assert_eq!(
        fs::read_to_string(host.join("in")).unwrap(),
        "from host\n",
        "overlay writes discarded"
    );
    for gone in ["ro", "rw", "ov", "mnt"] {
        assert!(!layers.upper.join(gone).exists(), "{gone} stub left in upper");
    }
}

#[test]
fn copy_mode_runs_in_a_merged_copy() {
    require_sandbox!();
    let layers = new_layers();
    let top = layers.base.join("top");
    fs::create_dir_all(top.join("data")).unwrap();
    fs::write(top.join("data/keep"), "top\n").unwrap();
    let mut spec = spec(&layers, "cat /data/keep; echo new > /created; rm /data/sub/file");
    spec.rootfs.lowers.insert(0, top.clone());
    spec.rootfs.mode = RootfsModeRequest::Copy;
    let out = run(spec);
    assert_eq!(out.stdout_text(), "top\n");
    let RootfsMode::Copy { root } = &out.result.rootfs_mode else {
        panic!("expected copy mode, got {:?}", out.result.rootfs_mode);
    };
    assert_eq!(root, &layers.work.join("rootfs"));
    assert_eq!(fs::read_to_string(root.join("created")).unwrap(), "new\n");
    assert!(!root.join("data/sub/file").exists());
    assert!(!root.join("etc/hosts").exists(), "stub removed from the copy");
    assert!(layers.lower.join("data/sub/file").exists());
    assert_eq!(fs::read_dir(&layers.upper).unwrap().count(), 0);
}

#[test]
fn kill_handle_stops_the_sandbox_and_leaves_nothing() {
    require_sandbox!();
    let layers = new_layers();
    let marker = "987651";
    let spec = spec(&layers, &format!("echo started; sleep {marker}; echo never"));
    let sandbox = Sandbox::new(spec).with_helper(KILN).with_scratch_parent(&layers.base);
    let killer = sandbox.kill_handle();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        sandbox.run(&mut |_, line| {
            if line == b"started\n" {
                let _ = started_tx.send(());
            }
        })
    });
    started_rx.recv_timeout(Duration::from_secs(20)).expect("sandbox started");
    assert!(wait_until(Duration::from_secs(5), || !processes_with(marker).is_empty()));
    killer.kill();
    let result = runner.join().unwrap();
    assert!(matches!(result, Err(SandboxError::Killed)), "{result:?}");
    assert!(
        wait_until(Duration::from_secs(5), || processes_with(marker).is_empty()),
        "left behind: {:?}",
        processes_with(marker)
    );
    assert_eq!(host_mounts_mentioning(&layers.base.to_string_lossy()), Vec::<String>::new());
    let scratch_left = fs::read_dir(&layers.base)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("kiln-sandbox-"))
        .count();
    assert_eq!(scratch_left, 0, "scratch directory removed");
}

#[test]
fn killing_kiln_with_sigkill_leaves_no_process_and_no_mount() {
    require_sandbox!();
    let layers = new_layers();
    let marker = "987652";
    let mut kiln = Command::new(KILN)
        .args(["debug", "run", "--env", "PATH=/bin"])
        .arg("--lower")
        .arg(&layers.lower)
        .arg("--upper")
        .arg(&layers.upper)
        .arg("--work")
        .arg(&layers.work)
        .args(["--", "sh", "-c", &format!("echo ready; sleep {marker}")])
        // A SIGKILLed kiln cannot remove its scratch directory: keep it in ours.
        .env("TMPDIR", &layers.base)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(kiln.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n");
    assert!(wait_until(Duration::from_secs(5), || !processes_with(marker).is_empty()));
    kiln.kill().unwrap(); // SIGKILL
    kiln.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || processes_with(marker).is_empty()
            && processes_with("__sandbox-init").is_empty()),
        "left behind: {:?}",
        processes_with(marker)
    );
    assert_eq!(host_mounts_mentioning(&layers.base.to_string_lossy()), Vec::<String>::new());
}

#[test]
fn debug_run_exits_with_the_commands_code() {
    require_sandbox!();
    let layers = new_layers();
    let output = Command::new(KILN)
        .args(["debug", "run", "--env", "PATH=/bin", "--user", "1000:1000"])
        .arg("--lower")
        .arg(&layers.lower)
        .arg("--upper")
        .arg(&layers.upper)
        .arg("--work")
        .arg(&layers.work)
        .args(["--", "sh", "-c", "id -u; exit 7"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1000\n");
}

#[test]
fn rootless_user_maps_root_to_itself_and_chown_uses_subordinate_ids() {
    require_sandbox!();
    if !Path::new("/usr/bin/newuidmap").exists() {
        if std::env::var_os("KILN_E2E").is_some_and(|v| v == "1") {
            panic!("newuidmap missing (apt-get install uidmap)");
        }
        eprintln!("skipping: newuidmap missing");
        return;
    }
    let (test_user, subids) = users::rootless_user();
    let user = test_user.name;
    let (uid, sub_start) = (test_user.uid, subids.uid.0);
    let layers = new_layers();
    // Rootless, lower layers are unpacked by kiln itself, so all their ids are mapped; here
    // the user owns them all (container root).
    Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(&layers.base)
        .status()
        .unwrap();
    let report = layers.base.join("report.json");
    let output = Command::new("runuser")
        .args(["-u", user, "--", KILN, "debug", "run", "--env", "PATH=/bin"])
        .arg("--lower")
        .arg(&layers.lower)
        .arg("--upper")
        .arg(&layers.upper)
        .arg("--work")
        .arg(&layers.work)
        .arg("--report")
        .arg(&report)
        .args([
            "--",
            "sh",
            "-c",
            "id -u; touch /mine /theirs && chown 1000:1000 /theirs && rm /data/keep \
             && rm -r /data/sub && mkdir /data/sub && echo ok",
        ])
        .current_dir("/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "0\nok\n");
    let mine = fs::metadata(layers.upper.join("mine")).unwrap();
    assert_eq!(mine.uid(), uid, "container root is the user");
    let theirs = fs::metadata(layers.upper.join("theirs")).unwrap();
    assert_eq!(theirs.uid(), sub_start + 999, "container 1000 → subordinate id");
    let whiteout = fs::symlink_metadata(layers.upper.join("data/keep")).unwrap();
    assert_eq!((whiteout.mode() & libc::S_IFMT, whiteout.rdev()), (libc::S_IFCHR, 0));
    // Rootless overlayfs keeps its markers in user.* xattrs.
    let mut value = [0u8; 4];
    let n =
        rustix::fs::lgetxattr(layers.upper.join("data/sub"), "user.overlay.opaque", &mut value[..])
            .unwrap();
    assert_eq!(&value[..n], b"y");
    let report = fs::read_to_string(&report).unwrap();
    assert!(report.contains("\"rootfs_mode\": \"overlay\""), "{report}");
    assert!(!layers.upper.join("etc/hosts").exists());
    // Leave the tree removable by the root test process.
    Command::new("chown").args(["-R", "root:root"]).arg(&layers.base).status().unwrap();
}
