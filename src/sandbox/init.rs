//! The `kiln __sandbox-init` helper: the processes that live inside the sandbox.
//!
//! kiln may have many threads, and forking a multi-threaded process without exec'ing leaves
//! a child with locks held by threads that no longer exist. So kiln only ever spawns a fresh
//! copy of its own binary (`/proc/self/exe __sandbox-init`); this module runs there,
//! single-threaded, and may fork freely.
//!
//! Process tree and lifetimes:
//! ```text
//! kiln ── helper (user ns) ── pid 1: init (new pid, mount, ipc, uts[, net] ns) ── command ── ...
//! ```
//! - every process has a parent-death signal of SIGKILL: kiln dies → helper dies → pid 1
//!   dies → the kernel kills everything else in the pid namespace, and the mount namespace,
//!   owned by pid 1 alone, goes with its mounts. Nothing is left on the host.
//! - pid 1 reaps every orphan (it is their init) and reports the command's status.
//! - the helper and pid 1 ignore stop signals sent to kiln's process group (a terminal's
//!   Ctrl-C): kiln decides, and kills the sandbox when it stops.
//! - the helper and pid 1 are non-dumpable, so the command cannot open `/proc/1/exe` (our
//!   binary on the host) for writing; CVE-2019-5736 overwrote runc's binary that way.

use super::error::WireError;
use super::mounts::{self, MountContext, Mounter};
use super::namespaces;
use super::process::{self, Credentials};
use super::protocol::{self, ExitStatus, FromHelper, HELPER_FD, InitSpec, ToHelper};
use super::rootfs::{self, OverlayPlan};
use super::spec::RootfsModeRequest;
use rustix::process::{DumpableBehavior, Signal, WaitOptions};
use rustix::thread::UnshareFlags;
use std::io::BufReader;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Entry point of `kiln __sandbox-init`; returns the helper's exit code.
pub fn main() -> i32 {
    // Ctrl-C reaches kiln's whole process group, this helper included. Whether the build
    // stops is kiln's call (it kills the sandbox then); the helper and pid 1 (which inherits
    // this) ignore such signals, and the command gets the defaults back.
    if process::set_stop_signals(libc::SIG_IGN).is_err() {
        return 125;
    }
    // SAFETY: kiln starts the helper with its end of the socket pair as descriptor 3, and
    // nothing else in this process owns that descriptor.
    let socket = unsafe { UnixStream::from(OwnedFd::from_raw_fd(HELPER_FD)) };
    // Not for the command: mark it close-on-exec right away.
    if rustix::io::fcntl_setfd(socket.as_fd(), rustix::io::FdFlags::CLOEXEC).is_err() {
        return 125;
    }
    let mut writer = match socket.try_clone() {
        Ok(writer) => writer,
        Err(_) => return 125,
    };
    match helper(socket, &mut writer) {
        Ok(code) => code,
        Err(err) => {
            let _ = protocol::send(&mut writer, &FromHelper::Failed(err));
            125
        }
    }
}

fn arm_parent_death_signal() -> Result<(), WireError> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| WireError::setup("set parent death signal", e))
}

fn helper(socket: UnixStream, writer: &mut UnixStream) -> Result<i32, WireError> {
    let mut reader = BufReader::new(socket);
    let init = match protocol::receive::<ToHelper>(&mut reader) {
        Ok(Some(ToHelper::Start(init))) => init,
        other => {
            return Err(WireError::Other {
                message: format!("expected the sandbox spec, got {other:?}"),
            });
        }
    };
    arm_parent_death_signal()?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(init.parent_pid)
    {
        return Ok(125); // kiln is already gone
    }
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| WireError::setup("prctl(PR_SET_DUMPABLE)", e))?;

    let overlay = if init.rootless {
        match init.spec.rootfs.mode {
            RootfsModeRequest::Copy => OverlayPlan::Skip,
            _ => OverlayPlan::MountWithUserXattr,
        }
    } else {
        rootfs::premount_as_root(&init.spec.rootfs, &init.scratch.rootfs, &init.scratch.empty_lower)
    };
    namespaces::unshare(UnshareFlags::NEWUSER)
        .map_err(|e| WireError::setup("unshare user namespace", e))?;
    send(writer, &FromHelper::UserNamespaceReady)?;
    match protocol::receive::<ToHelper>(&mut reader) {
        Ok(Some(ToHelper::Mapped)) => {}
        _ => return Ok(125), // kiln could not map ids, and reports why itself
    }
    arm_parent_death_signal()?;
    namespaces::unshare(UnshareFlags::NEWPID)
        .map_err(|e| WireError::setup("unshare pid namespace", e))?;

    // A pipe whose write end only the helper holds: pid 1 sees it hang up if the helper died
    // before pid 1 could arm its own parent-death signal.
    let (alive_read, alive_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| WireError::setup("pipe", e))?;

    // SAFETY: this process is single-threaded (a fresh exec of kiln that started no thread),
    // so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(WireError::setup("fork pid 1", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(alive_write);
        let code = match pid1(&init, overlay, &alive_read, writer) {
            Ok(()) => 0,
            Err(err) => {
                let _ = protocol::send(writer, &FromHelper::Failed(err));
                125
            }
        };
        // Leave without running destructors or atexit handlers shared with the helper.
        // SAFETY: _exit never returns and is always safe to call.
        unsafe { libc::_exit(code) };
    }
    drop(alive_read);
    let child = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
    let status = loop {
        match rustix::process::waitpid(Some(child), WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(WireError::setup("wait for pid 1", e)),
        }
    };
    drop(alive_write);
    Ok(status.exit_status().unwrap_or(125))
}

fn send(writer: &mut UnixStream, message: &FromHelper) -> Result<(), WireError> {
    protocol::send(writer, message).map_err(|e| WireError::setup("report to kiln", e))
}

/// Pid 1 of the sandbox: set up the namespaces and filesystem, run the command, reap.
fn pid1(
    init: &InitSpec,
    overlay: OverlayPlan,
    alive: &OwnedFd,
    writer: &mut UnixStream,
) -> Result<(), WireError> {
    arm_parent_death_signal()?;
    let mut poll = [rustix::event::PollFd::new(alive, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    if rustix::event::poll(&mut poll, Some(&zero)).is_ok()
        && poll[0].revents().contains(rustix::event::PollFlags::HUP)
    {
        return Ok(()); // the helper is already gone
    }
    let spec = &init.spec;
    namespaces::unshare(namespaces::init_namespaces(spec.network))
        .map_err(|e| WireError::setup("unshare mount/ipc/uts namespaces", e))?;
    // Nothing we mount may propagate back to the host (or to other sandboxes).
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|e| WireError::setup("make mounts private", e))?;
    rustix::system::sethostname(spec.hostname.as_bytes())
        .map_err(|e| WireError::setup("sethostname", e))?;
    if spec.network == super::spec::NetworkMode::None {
        namespaces::loopback_up().map_err(|e| WireError::setup("bring lo up", e))?;
    }

    let mut warnings = Vec::new();
    let root_path = init.scratch.rootfs.as_path();
    let mode = rootfs::mount_rootfs(
        &spec.rootfs,
        root_path,
        &init.scratch.empty_lower,
        overlay,
        &mut warnings,
    )?;
    let root = rustix::fs::open(
        root_path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| WireError::setup("open rootfs", e))?;
    let context = MountContext {
        tty_gid_mapped: init.tty_gid_mapped,
        hosts_file: init.scratch.hosts.clone(),
        resolv_conf: init.scratch.resolv_conf.clone(),
        overlay_dirs: init.scratch.overlay_dirs.clone(),
    };
    let mut mounter =
        Mounter { root: root.as_fd(), root_path, stubs: Vec::new(), warnings: Vec::new() };
    let mounted = mounter.run(&mounts::plan(spec, &context));
    let mut stubs = std::mem::take(&mut mounter.stubs);
    warnings.append(&mut mounter.warnings);
    drop(root);
    for warning in warnings {
        send(writer, &FromHelper::Warning(warning))?;
    }
    send(writer, &FromHelper::RootfsReady { mode })?;
    mounted?;
    rootfs::pivot_into(root_path)?;

    let status = run_command(init)?;
    let Some(status) = status else {
        return Ok(());
    };
    // The command is done: kill whatever it left running (pid 1 is spared by kill(-1)), then
    // take the stubs down so they do not end up in the layer.
    // SAFETY: kill(-1, SIGKILL) signals every process of this pid namespace except pid 1.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    reap_all();
    if let Err(err) = super::confined::remove_stubs(Path::new("/"), &mut stubs, true) {
        send(writer, &FromHelper::Warning(format!("removing mount stubs: {err}")))?;
    }
    send(writer, &FromHelper::Exited { status, stubs })
}

/// Start the command and reap until it exits; `None` if it could not be waited for.
fn run_command(init: &InitSpec) -> Result<Option<ExitStatus>, WireError> {
    let process_spec = &init.spec.process;
    process::check_cwd(&process_spec.cwd)?;
    let program =
        process::lookup(&process_spec.argv[0], &process_spec.env, &process::is_executable_file)?;
    let creds = Credentials::for_process(process_spec, init.setgroups_allowed);
    let child = process::spawn(process_spec, &program, creds).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if !process_spec.argv[0].contains('/') => {
            WireError::CommandNotFound { command: process_spec.argv[0].clone() }
        }
        _ => WireError::Exec {
            command: process_spec.argv[0].clone(),
            errno: super::error::errno_of(&e),
        },
    })?;
    let Some(child_pid) = process::pid_of(&child) else {
        return Ok(None);
    };
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == child_pid => {
                let status = match status.terminating_signal() {
                    Some(signal) => ExitStatus::Signal(signal),
                    None => ExitStatus::Code(status.exit_status().unwrap_or(0)),
                };
                return Ok(Some(status));
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(WireError::setup("wait for the command", e)),
        }
    }
}

/// Reap every remaining child (they have all been sent SIGKILL).
fn reap_all() {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return, // ECHILD: none left
        }
    }
}
