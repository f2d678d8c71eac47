//! Unprivileged users for rootless end-to-end tests, created on first use.
//!
//! Needs root. Idempotent across runs and test binaries: an existing user and existing
//! subordinate ranges are reused; within one test process creation happens once.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A local user account.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

/// A user's first subordinate uid and gid ranges (`start`, `count`).
#[derive(Debug, Clone, Copy)]
pub struct SubIds {
    pub uid: (u32, u32),
    pub gid: (u32, u32),
}

/// `kilntest`: an ordinary user with subordinate uid and gid ranges (given 400000:65536
/// when it has none).
pub fn rootless_user() -> &'static (TestUser, SubIds) {
    static USER: OnceLock<(TestUser, SubIds)> = OnceLock::new();
    USER.get_or_init(|| {
        let name = "kilntest";
        ensure_account(name, false);
        let uid = (first_range("/etc/subuid", name), first_range("/etc/subgid", name));
        let subids = match uid {
            (Some(uid), Some(gid)) => SubIds { uid, gid },
            _ => {
                for file in ["/etc/subuid", "/etc/subgid"] {
                    if first_range(file, name).is_none() {
                        let mut text = fs::read_to_string(file).unwrap_or_default();
                        if !text.is_empty() && !text.ends_with('\n') {
                            text.push('\n');
                        }
                        text.push_str(&format!("{name}:400000:65536\n"));
                        replace_file(file, &text);
                    }
                }
                SubIds {
                    uid: first_range("/etc/subuid", name).unwrap(),
                    gid: first_range("/etc/subgid", name).unwrap(),
                }
            }
        };
        (lookup(name), subids)
    })
}

/// `kilnnosub`: a system user with no subordinate ids at all.
pub fn user_without_subids() -> &'static TestUser {
    static USER: OnceLock<TestUser> = OnceLock::new();
    USER.get_or_init(|| {
        let name = "kilnnosub";
        ensure_account(name, true);
        let user = lookup(name);
        let uid = user.uid.to_string();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = fs::read_to_string(file).unwrap_or_default();
            let kept: String = text
                .lines()
                .filter(|line| {
                    let owner = line.split(':').next().unwrap_or("");
                    owner != name && owner != uid
                })
                .map(|line| format!("{line}\n"))
                .collect();
            if kept != text {
                replace_file(file, &kept);
            }
        }
        user
    })
}

/// `program` as `user`, with a clean environment whose HOME and TMPDIR are `home`, from `/`,
/// stdin `/dev/null`.
pub fn command_as(program: &str, user: &TestUser, home: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", home)
        .env("TMPDIR", home)
        .current_dir("/")
        .stdin(Stdio::null());
    command
}

fn ensure_account(name: &str, system: bool) {
    if Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        return;
    }
    let mut useradd = Command::new("useradd");
    useradd.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]);
    if system {
        // System accounts get no subordinate ids from useradd.
        useradd.arg("--system");
    }
    let status = useradd.arg(name).status().expect("useradd");
    assert!(status.success(), "useradd {name}");
}

fn lookup(name: &'static str) -> TestUser {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id").args([flag, name]).output().unwrap();
        String::from_utf8(output.stdout).unwrap().trim().parse().unwrap()
    };
    TestUser { name, uid: id("-u"), gid: id("-g") }
}

/// The first range of `name` in a subordinate id file.
fn first_range(file: &str, name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{name}:")))?;
    let fields: Vec<u32> = line.split(':').skip(1).map(|f| f.parse().unwrap()).collect();
    Some((fields[0], fields[1]))
}

/// Replace a system file atomically: `newuidmap` may be reading it from another test.
fn replace_file(path: &str, text: &str) {
    let temp = format!("{path}.kiln-test");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}
