//! kiln's side of a sandbox run: start the helper, map its ids, stream output, collect the
//! result, and kill it on request.
//!
//! The helper is started with `std::process::Command` (fork+exec: safe from a multi-threaded
//! kiln); between fork and exec it only moves the socket to descriptor 3 and arms the
//! parent-death signal. Note that the parent-death signal fires when the *thread* that
//! spawned the helper exits: [`Sandbox::run`] blocks that thread until the sandbox is gone,
//! which keeps the guarantee.

use super::confined::Stub;
use super::error::SandboxError;
use super::idmap::{self, IdMaps};
use super::output::{LineSplitter, Stream};
use super::protocol::{self, ExitStatus, FromHelper, HELPER_FD, InitSpec, ToHelper};
use super::rootfs::RootfsMode;
use super::scratch::Scratch;
use super::spec::SandboxSpec;
use super::validate;
use crate::userns::IdentityContext;
use rustix::event::{PollFd, PollFlags};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The outcome of a command that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxResult {
    pub status: ExitStatus,
    /// Entries created in the rootfs only to mount on them. Those marked `removed` are gone
    /// again; any other must be left out of the layer.
    pub stubs: Vec<Stub>,
    /// Where the command's changes are: the overlay upper, or a copy to diff.
    pub rootfs_mode: RootfsMode,
    /// Degradations worth telling the user (reduced id map, `/sys` unavailable, ...).
    pub warnings: Vec<String>,
}

/// Kills a running sandbox from any thread (Ctrl-C handlers, timeouts).
#[derive(Debug, Clone, Default)]
pub struct KillHandle {
    state: Arc<Mutex<KillState>>,
}

#[derive(Debug, Default)]
struct KillState {
    helper_pid: Option<u32>,
    killed: bool,
}

impl KillHandle {
    /// Kill the sandbox and everything in it (a run not yet started will not start).
    pub fn kill(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.killed = true;
        if let Some(pid) = state.helper_pid {
            kill_pid(pid);
        }
    }

    /// Whether [`KillHandle::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).killed
    }

    /// Record the running helper; false (and the helper killed) if a kill came first.
    fn attach(&self, pid: u32) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.killed {
            kill_pid(pid);
            return false;
        }
        state.helper_pid = Some(pid);
        true
    }

    /// Forget the helper before it is reaped, so its pid can never be signalled once reused.
    fn detach(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).helper_pid = None;
    }
}

fn kill_pid(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        // The helper's death takes pid 1, then the whole pid namespace, with it.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// One command to run in a sandbox.
#[derive(Debug)]
pub struct Sandbox {
    spec: SandboxSpec,
    helper: PathBuf,
    scratch_parent: Option<PathBuf>,
    kill: KillHandle,
}

impl Sandbox {
    pub fn new(spec: SandboxSpec) -> Self {
        Sandbox {
            spec,
            helper: PathBuf::from("/proc/self/exe"),
            scratch_parent: None,
            kill: KillHandle::default(),
        }
    }

    /// Use another kiln binary as the helper (tests, whose own executable is not kiln).
    pub fn with_helper(mut self, helper: impl Into<PathBuf>) -> Self {
        self.helper = helper.into();
        self
    }

    /// Create the run's scratch directory (`kiln-sandbox-*`: rootfs mount point, hosts file,
    /// resolv.conf copy) under `dir` instead of the system's temporary directory.
    pub fn with_scratch_parent(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_parent = Some(dir.into());
        self
    }

    pub fn kill_handle(&self) -> KillHandle {
        self.kill.clone()
    }

    pub fn kill(&self) {
        self.kill.kill();
    }

    /// Run the command, passing its output line by line to `on_output`; blocks until the
    /// sandbox is gone.
    pub fn run(
        &self,
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<SandboxResult, SandboxError> {
        validate::spec(&self.spec)?;
        if self.kill.is_killed() {
            return Err(SandboxError::Killed);
        }
        let identity = IdentityContext::detect()?;
        let maps = idmap::id_maps_for(&identity)?;
        let scratch = Scratch::create(&self.spec, self.scratch_parent.as_deref())?;
        let init = InitSpec {
            spec: self.spec.clone(),
            scratch: scratch.paths.clone(),
            rootless: !identity.is_initial_root(),
            tty_gid_mapped: maps.host_gid(5).is_some(),
            setgroups_allowed: maps.setgroups_allowed(),
            parent_pid: std::process::id(),
        };
        let (ours, theirs) = UnixStream::pair().map_err(|e| io_err("socketpair", e))?;
        let mut child = self.spawn_helper(theirs)?;
        if !self.kill.attach(child.id()) {
            let _ = child.wait();
            return Err(SandboxError::Killed);
        }
        let outcome = drive(&mut child, ours, &init, &maps, on_output);
        self.kill.detach();
        if outcome.is_err() {
            kill_pid(child.id());
        }
        let _ = child.wait();
        drop(scratch);
        let mut outcome = outcome?;
        if self.kill.is_killed() {
            return Err(SandboxError::Killed);
        }
        if let Some(err) = outcome.failure.take() {
            return Err(err);
        }
        let mut warnings = maps.warnings.clone();
        warnings.append(&mut outcome.warnings);
        match (outcome.status, outcome.mode) {
            (Some(status), Some(rootfs_mode)) => {
                Ok(SandboxResult { status, stubs: outcome.stubs, rootfs_mode, warnings })
            }
            _ => Err(SandboxError::HelperDied {
                status: child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            }),
        }
    }

    fn spawn_helper(&self, socket: UnixStream) -> Result<Child, SandboxError> {
        let mut command = Command::new(&self.helper);
        command
            .arg("__sandbox-init")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fd = socket.as_raw_fd();
        let parent = std::process::id();
        // SAFETY: runs in the forked child before exec, making only async-signal-safe system
        // calls (dup2/fcntl/prctl/getppid), no allocation.
        unsafe {
            command.pre_exec(move || {
                if fd == HELPER_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, HELPER_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                // kiln died between fork and prctl: the signal will never come.
                if libc::getppid() as u32 != parent {
                    libc::_exit(125);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|source| SandboxError::SpawnHelper { helper: self.helper.clone(), source })?;
        drop(socket);
        Ok(child)
    }
}

fn io_err(context: &str, source: io::Error) -> SandboxError {
    SandboxError::Io { context: context.to_owned(), source }
}

/// What the helper told us.
#[derive(Default)]
struct Outcome {
    status: Option<ExitStatus>,
    mode: Option<RootfsMode>,
    stubs: Vec<Stub>,
    warnings: Vec<String>,
    failure: Option<SandboxError>,
}

/// Talk to the helper and stream output until every channel is closed.
fn drive(
    child: &mut Child,
    mut socket: UnixStream,
    init: &InitSpec,
    maps: &IdMaps,
    on_output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io_err("helper stdout", io::ErrorKind::BrokenPipe.into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| io_err("helper stderr", io::ErrorKind::BrokenPipe.into()))?;
    protocol::send(&mut socket, &ToHelper::Start(Box::new(init.clone())))
        .map_err(|e| io_err("send spec to helper", e))?;

    let mut outcome = Outcome::default();
    let mut splitters = [LineSplitter::default(), LineSplitter::default()];
    let mut messages = Vec::new();
    let mut open = [true, true, true];
    let mut buf = vec![0u8; 64 * 1024];
    while open.iter().any(|&o| o) {
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        if open[0] {
            fds.push(PollFd::new(&stdout, PollFlags::IN));
            which.push(0);
        }
        if open[1] {
            fds.push(PollFd::new(&stderr, PollFlags::IN));
            which.push(1);
        }
        if open[2] {
            fds.push(PollFd::new(&socket, PollFlags::IN));
            which.push(2);
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err("poll", e.into())),
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&which)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, &w)| w)
            .collect();
        drop(fds);
        for index in ready {
            let read = match index {
                0 => stdout.read(&mut buf),
                1 => stderr.read(&mut buf),
                _ => socket.read(&mut buf),
            };
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read from helper", e)),
            };
            if n == 0 {
                open[index] = false;
                if index < 2 {
                    let stream = if index == 0 { Stream::Stdout } else { Stream::Stderr };
                    splitters[index].finish(&mut |line| on_output(stream, line));
                }
                continue;
            }
            if index < 2 {
                let stream = if index == 0 { Stream::Stdout } else { Stream::Stderr };
                splitters[index].push(&buf[..n], &mut |line| on_output(stream, line));
                continue;
            }
            messages.extend_from_slice(&buf[..n]);
            while let Some(pos) = messages.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = messages.drain(..=pos).collect();
                let message: FromHelper = serde_json::from_slice(&line).map_err(|e| {
                    SandboxError::Protocol { reason: format!("bad message from helper: {e}") }
                })?;
                handle(message, child.id(), maps, &mut socket, &mut outcome)?;
            }
        }
    }
    Ok(outcome)
}

fn handle(
    message: FromHelper,
    pid: u32,
    maps: &IdMaps,
    socket: &mut UnixStream,
    outcome: &mut Outcome,
) -> Result<(), SandboxError> {
    match message {
        FromHelper::UserNamespaceReady => {
            idmap::write_maps(pid, maps)?;
            protocol::send(socket, &ToHelper::Mapped)
                .map_err(|e| io_err("tell helper its ids are mapped", e))?;
        }
        FromHelper::Warning(warning) => outcome.warnings.push(warning),
        FromHelper::RootfsReady { mode } => outcome.mode = Some(mode),
        FromHelper::Failed(err) => {
            if outcome.failure.is_none() {
                outcome.failure = Some(err.into());
            }
        }
        FromHelper::Exited { status, stubs } => {
            outcome.status = Some(status);
            outcome.stubs = stubs;
        }
    }
    Ok(())
}
