//! Starting the command: program lookup, identity, capabilities, and the exec.
//!
//! Runs in the sandbox's pid 1 after `pivot_root`, so every path here is the container's.
//! The child is set up, between `fork` and `execve`, in this order (runc's):
//! new session → drop bounding capabilities (needs CAP_SETPCAP, so while still root) →
//! keep-caps on → supplementary groups, gid, uid → keep-caps off → permitted/effective set to
//! the default set, inheritable and ambient emptied → no_new_privs (if asked) → parent-death
//! signal (re-armed: changing credentials clears it) → umask 0022 → every signal back to its
//! default (the sandbox ignores [`STOP_SIGNALS`]) → every descriptor above 2
//! marked close-on-exec (CVE-2024-21626 leaked a host directory descriptor into the
//! container; nothing of ours must survive the exec).
//!
//! A non-root user ends up with no effective capabilities after `execve` (the kernel
//! recomputes them from the file's), exactly as under Docker.

use super::capabilities;
use super::error::WireError;
use super::spec::ProcessSpec;
use rustix::process::{Gid, Pid, Uid};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Signals that ask a process group to stop (a terminal's Ctrl-C, Ctrl-\, hang-up; a
/// service manager's SIGTERM to every process). The sandbox's own processes ignore them:
/// kiln decides when a sandbox stops, and kills it itself ([`super::KillHandle`]). The
/// command gets them back at their defaults ([`reset_signal_dispositions`]), as under Docker.
pub const STOP_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM];

/// Sets the disposition of every [`STOP_SIGNALS`] signal to `handler` (`SIG_IGN` or
/// `SIG_DFL`). Async-signal-safe: only `sigaction` calls, no allocation.
pub fn set_stop_signals(handler: libc::sighandler_t) -> std::io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed means no flags and an empty mask, and
    // `sa_sigaction` holds SIG_IGN or SIG_DFL, which need no handler code.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    for signal in STOP_SIGNALS {
        // SAFETY: a valid signal number and a live, initialised action; no old action asked.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets every signal that can be caught back to its default disposition, so that the
/// command starts as under Docker whatever kiln and its caller ignored (the signal mask is
/// emptied by `std` already). `max` is `SIGRTMAX()`, read before forking. Async-signal-safe:
/// only `sigaction` calls. glibc refuses its two internal real-time signals (32 and 33,
/// which glibc's `posix_spawn` may leave ignored): they keep what they had, harmlessly,
/// since glibc installs its own handlers for them when a program uses them.
pub fn reset_signal_dispositions(max: libc::c_int) {
    // SAFETY: as in `set_stop_signals`: plain data, SIG_DFL needs no handler code.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_DFL;
    for signal in (1..=max).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP) {
        // SAFETY: a signal number in range and a live, initialised action.
        unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
    }
}

/// `PATH` used when the environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The value of `PATH` in `env` (its last definition wins, as in a shell).
pub fn path_of(env: &[String]) -> Option<&str> {
    env.iter().rev().find_map(|entry| entry.strip_prefix("PATH="))
}

/// Resolve `argv0` as `execvp` would with `env`'s `PATH`: a name with a `/` is used as is,
/// other names are searched in each `PATH` directory (empty entries mean `.`) for a regular
/// file with an execute bit. `is_executable` is the filesystem seam.
pub fn lookup(
    argv0: &str,
    env: &[String],
    is_executable: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, WireError> {
    if argv0.is_empty() {
        return Err(WireError::CommandNotFound { command: String::new() });
    }
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    let search = path_of(env).unwrap_or(DEFAULT_PATH);
    search
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(argv0))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| WireError::CommandNotFound { command: argv0.to_owned() })
}

/// The real filesystem check behind [`lookup`].
pub fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Check that the working directory exists and is a directory.
pub fn check_cwd(cwd: &str) -> Result<(), WireError> {
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(WireError::CwdNotDirectory { cwd: cwd.into() }),
        Err(_) => Err(WireError::CwdMissing { cwd: cwd.into() }),
    }
}

/// Split `KEY=VALUE` entries (an entry without `=` sets an empty value).
pub fn env_pairs(env: &[String]) -> Vec<(&str, &str)> {
    env.iter().map(|entry| entry.split_once('=').unwrap_or((entry.as_str(), ""))).collect()
}

/// Identity and privileges of the command, computed before forking so that the child needs
/// no allocation.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// False when `setgroups` is denied in the user namespace (own-id-only gid map).
    pub setgroups_allowed: bool,
    pub no_new_privs: bool,
    pub keep_capabilities: u64,
    pub drop_bounding: Vec<u32>,
}

impl Credentials {
    pub fn for_process(process: &ProcessSpec, setgroups_allowed: bool) -> Self {
        let keep = capabilities::default_mask();
        Credentials {
            uid: process.uid,
            gid: process.gid,
            groups: process.additional_gids.clone(),
            setgroups_allowed,
            no_new_privs: process.no_new_privs,
            keep_capabilities: keep,
            drop_bounding: capabilities::capabilities_to_drop(
                keep,
                capabilities::last_capability(),
            ),
        }
    }
}

/// Start `program` with `process`'s argv, env and cwd as `creds`; stdin is `/dev/null`,
/// stdout and stderr are inherited (kiln's pipes).
pub fn spawn(process: &ProcessSpec, program: &Path, creds: Credentials) -> std::io::Result<Child> {
    let mut command = Command::new(program);
    command
        .arg0(&process.argv[0])
        .args(&process.argv[1..])
        .env_clear()
        .envs(env_pairs(&process.env))
        .current_dir(&process.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let groups: Vec<Gid> = creds.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let max_signal = libc::SIGRTMAX();
    // SAFETY: the closure runs in the forked child before exec; it only makes raw system
    // calls (no allocation, no locks): the vectors it reads were built before the fork.
    unsafe {
        command.pre_exec(move || {
            rustix::process::setsid()?;
            capabilities::drop_bounding(&creds.drop_bounding)?;
            rustix::thread::set_keep_capabilities(true)?;
            if creds.setgroups_allowed {
                rustix::thread::set_thread_groups(&groups)?;
            }
            let gid = Gid::from_raw(creds.gid);
            rustix::thread::set_thread_res_gid(gid, gid, gid)?;
            // SAFETY (uid): the raw setresuid affects this thread only, and the child has
            // exactly one thread.
            let uid = Uid::from_raw(creds.uid);
            rustix::thread::set_thread_res_uid(uid, uid, uid)?;
            rustix::thread::set_keep_capabilities(false)?;
            capabilities::apply(creds.keep_capabilities)?;
            if creds.no_new_privs {
                rustix::thread::set_no_new_privs(true)?;
            }
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
            reset_signal_dispositions(max_signal);
            mark_fds_cloexec_from(3);
            Ok(())
        });
    }
    command.spawn()
}

/// Set close-on-exec on every descriptor from `first` up.
fn mark_fds_cloexec_from(first: u32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    }
}

/// The pid of a spawned child as rustix's type.
pub fn pid_of(child: &Child) -> Option<Pid> {
    Pid::from_raw(child.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(path: Option<&str>) -> Vec<String> {
        let mut env = vec!["HOME=/root".to_owned()];
        if let Some(path) = path {
            env.push(format!("PATH={path}"));
        }
        env
    }

    #[test]
    fn lookup_searches_path_in_order() {
        let exists = |p: &Path| p == Path::new("/usr/bin/ls") || p == Path::new("/bin/ls");
        assert_eq!(
            lookup("ls", &env(Some("/sbin:/usr/bin:/bin")), &exists).unwrap(),
            Path::new("/usr/bin/ls")
        );
        assert_eq!(
            lookup("ls", &env(None), &exists).unwrap(),
            Path::new("/usr/bin/ls"),
            "default PATH"
        );
        let here = |p: &Path| p == Path::new("./tool");
        assert_eq!(lookup("tool", &env(Some("/x::/y")), &here).unwrap(), Path::new("./tool"));
    }

    #[test]
    fn names_with_a_slash_are_not_searched() {
        let never = |_: &Path| false;
        assert_eq!(lookup("./run.sh", &env(Some("/bin")), &never).unwrap(), Path::new("./run.sh"));
    }

    #[test]
    fn missing_command_is_reported_by_name() {
        let never = |_: &Path| false;
        assert_eq!(
            lookup("foo", &env(Some("/bin")), &never).unwrap_err(),
            WireError::CommandNotFound { command: "foo".into() }
        );
    }

    #[test]
    fn last_path_wins_and_env_splits_on_first_equals() {
        let env =
            vec!["PATH=/a".to_owned(), "X=1=2".to_owned(), "PATH=/b".to_owned(), "E".to_owned()];
        assert_eq!(path_of(&env), Some("/b"));
        assert_eq!(env_pairs(&env), [("PATH", "/a"), ("X", "1=2"), ("PATH", "/b"), ("E", "")]);
    }
}
