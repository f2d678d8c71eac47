//! User and group names, resolved in a root filesystem's `/etc/passwd` and `/etc/group`.
//!
//! Two rule sets, both BuildKit's:
//!
//! - [`lookup_user`] — who a process runs as (`USER`, for `RUN`): moby's `GetExecUser`. A
//!   number needs no passwd entry (and then its group is 0); a name must have one (`unable to
//!   find user NAME: no matching entries in passwd file`); the group defaults to the user's
//!   primary group, and the groups listing the user by name become additional groups.
//! - [`resolve_chown`] — who owns files (`COPY --chown`, `ADD --chown`, `WORKDIR` under a
//!   `USER`): BuildKit's `readUser`. A lone number is both uid and gid (`--chown=10` is
//!   `10:10`); `root` is 0; a name takes its passwd entry's uid and gid; a name that is not
//!   found gives id 0, as BuildKit does, and a warning here.
//!
//! The files are read through the merged view (symlinks resolved inside the root), must be
//! regular files of at most 10 MiB, and a missing file is a file without entries.

use super::{FsError, MergedRoot, merged::FileKind};
use std::io::Read;

/// BuildKit's bound on `/etc/passwd` and `/etc/group`.
const MAX_USER_FILE_BYTES: u64 = 10 << 20;
/// Ids outside `0..=MAX_ID` are refused, as moby's user package does.
const MAX_ID: u64 = i32::MAX as u64;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("uids and gids must be in range 0-{MAX_ID}: {0}")]
    Range(String),
    #[error("{path} exceeds {MAX_USER_FILE_BYTES} bytes")]
    TooLarge { path: &'static str },
    #[error("{path} is not a regular file")]
    NotRegular { path: &'static str },
    #[error("read {path}: {source}")]
    Read { path: &'static str, source: std::io::Error },
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (groups whose member list names the user).
    pub additional_gids: Vec<u32>,
    /// The passwd entry's home directory, when the user has one.
    pub home: Option<String>,
}

/// Who owns files written by `COPY --chown` or `WORKDIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// Names that were not found and became id 0 (or kept the user's gid, for a group).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u64,
    gid: u64,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u64,
    members: Vec<String>,
}

/// Resolves `USER`-style `spec` (`name`, `uid`, `name:group`, `uid:gid`, ...) as the RUN
/// process's identity. See the module docs for the rules.
pub fn lookup_user(root: &MergedRoot, spec: &str) -> Result<ExecUser, UserError> {
    let mut parts = spec.split(':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let uid_arg = parse_number(user_arg);
    let gid_arg = parse_number(group_arg);
    let users = read_passwd(root)?;
    let mut out = ExecUser { uid: 0, gid: 0, additional_gids: Vec::new(), home: None };
    let matched = users.iter().find(|u| match (user_arg, uid_arg) {
        ("", _) => u.uid == 0,
        (_, Some(uid)) => u.uid == uid,
        (name, None) => u.name == name,
    });
    let mut matched_name = None;
    if let Some(user) = matched {
        out.uid = checked_id(user.uid, user_arg)?;
        out.gid = checked_id(user.gid, user_arg)?;
        out.home = Some(user.home.clone());
        matched_name = Some(user.name.clone());
    } else if !user_arg.is_empty() {
        let Some(uid) = uid_arg else { return Err(UserError::NoSuchUser(user_arg.to_string())) };
        out.uid = checked_id(uid, user_arg)?;
    }
    if !group_arg.is_empty() || matched_name.is_some() {
        let groups = read_group(root)?;
        if !group_arg.is_empty() {
            let found = groups.iter().find(|g| match gid_arg {
                Some(gid) => g.gid == gid,
                None => g.name == group_arg,
            });
            out.gid = match (found, gid_arg) {
                (Some(group), _) => checked_id(group.gid, group_arg)?,
                (None, Some(gid)) => checked_id(gid, group_arg)?,
                (None, None) => return Err(UserError::NoSuchGroup(group_arg.to_string())),
            };
        } else if let Some(name) = &matched_name {
            for group in groups.iter().filter(|g| g.members.iter().any(|m| m == name)) {
                out.additional_gids.push(checked_id(group.gid, &group.name)?);
            }
        }
    }
    Ok(out)
}

/// Resolves `--chown`-style `spec` (`user`, `user:group`, numbers or names) as a file owner.
/// See the module docs for the rules.
pub fn resolve_chown(root: &MergedRoot, spec: &str) -> Result<Owner, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let mut out = Owner { uid: 0, gid: 0, warnings: Vec::new() };
    match chown_number(user_arg) {
        Some(id) => {
            out.uid = id;
            out.gid = id;
        }
        None => {
            let users = read_passwd(root)?;
            match users.iter().find(|u| u.name == user_arg) {
                Some(user) => {
                    out.uid = checked_id(user.uid, user_arg)?;
                    out.gid = checked_id(user.gid, user_arg)?;
                }
                None => out.warnings.push(format!(
                    "user {user_arg:?} not found in /etc/passwd: using uid 0 as BuildKit does"
                )),
            }
        }
    }
    if let Some(group_arg) = group_arg {
        match chown_number(group_arg) {
            Some(id) => out.gid = id,
            None => {
                let groups = read_group(root)?;
                match groups.iter().find(|g| g.name == group_arg) {
                    Some(group) => out.gid = checked_id(group.gid, group_arg)?,
                    None => out.warnings.push(format!(
                        "group {group_arg:?} not found in /etc/group: keeping gid {} as BuildKit does",
                        out.gid
                    )),
                }
            }
        }
    }
    Ok(out)
}

/// BuildKit's `parseUID`: `root`, or a decimal number that fits an `int32` and is not negative.
fn chown_number(text: &str) -> Option<u32> {
    if text == "root" {
        return Some(0);
    }
    let value: i64 = text.parse().ok()?;
    (0..=MAX_ID as i64).contains(&value).then_some(value as u32)
}

/// A decimal number as Go's `strconv.Atoi` reads it (sign allowed; range checked later).
fn parse_number(text: &str) -> Option<u64> {
    let value: i64 = text.parse().ok()?;
    Some(if value < 0 { u64::MAX } else { value as u64 })
}

fn checked_id(id: u64, spec: &str) -> Result<u32, UserError> {
    if id > MAX_ID {
        return Err(UserError::Range(spec.to_string()));
    }
    Ok(id as u32)
}

fn read_passwd(root: &MergedRoot) -> Result<Vec<PasswdEntry>, UserError> {
    let Some(text) = read_user_file(root, "/etc/passwd")? else { return Ok(Vec::new()) };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or("");
            PasswdEntry {
                name: field(0).to_string(),
                uid: atoi(field(2)),
                gid: atoi(field(3)),
                home: field(5).to_string(),
            }
        })
        .collect())
}

fn read_group(root: &MergedRoot) -> Result<Vec<GroupEntry>, UserError> {
    let Some(text) = read_user_file(root, "/etc/group")? else { return Ok(Vec::new()) };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or("");
            GroupEntry {
                name: field(0).to_string(),
                gid: atoi(field(2)),
                members: field(3)
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect())
}

/// Go's `strconv.Atoi` with the error dropped (moby's parser ignores bad numbers: 0).
fn atoi(text: &str) -> u64 {
    match text.parse::<i64>() {
        Ok(value) if value >= 0 => value as u64,
        Ok(_) => u64::MAX,
        Err(_) => 0,
    }
}

/// The text of `path` in the root; `None` when it does not exist.
fn read_user_file(root: &MergedRoot, path: &'static str) -> Result<Option<String>, UserError> {
    let entry = match root.resolve(path, true) {
        Ok(resolved) => resolved.entry,
        Err(FsError::NotADirectory { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(entry) = entry else { return Ok(None) };
    if entry.kind() != FileKind::File {
        return Err(UserError::NotRegular { path });
    }
    let file = entry.open()?;
    let mut bytes = Vec::new();
    file.take(MAX_USER_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| UserError::Read { path, source })?;
    if bytes.len() as u64 > MAX_USER_FILE_BYTES {
        return Err(UserError::TooLarge { path });
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        \n\
        app:x:1000:1001:App:/home/app:/bin/sh\n\
        dup:x:1000:5:Dup:/dup:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        appgrp:x:1001:\n\
        wheel:x:10:app,other\n\
        audio:x:29:app\n\
        nobody:x:65534:\n";

    fn root_with(passwd: Option<&str>, group: Option<&str>) -> (tempfile::TempDir, MergedRoot) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        if let Some(text) = passwd {
            fs::write(dir.path().join("etc/passwd"), text).unwrap();
        }
        if let Some(text) = group {
            fs::write(dir.path().join("etc/group"), text).unwrap();
        }
        let root = MergedRoot::plain(dir.path()).unwrap();
        (dir, root)
    }

    fn exec(root: &MergedRoot, spec: &str) -> (u32, u32, Vec<u32>) {
        let user = lookup_user(root, spec).unwrap();
        (user.uid, user.gid, user.additional_gids)
    }

    #[test]
    fn exec_user_rules() {
        let (_dir, root) = root_with(Some(PASSWD), Some(GROUP));
        assert_eq!(exec(&root, ""), (0, 0, vec![]));
        assert_eq!(exec(&root, "root"), (0, 0, vec![]));
        assert_eq!(exec(&root, "app"), (1000, 1001, vec![10, 29]));
        // A number matches by uid; the first matching line wins.
        assert_eq!(exec(&root, "1000"), (1000, 1001, vec![10, 29]));
        // A number without an entry needs none, and its group is 0.
        assert_eq!(exec(&root, "4242"), (4242, 0, vec![]));
        assert_eq!(exec(&root, "app:wheel"), (1000, 10, vec![]));
        assert_eq!(exec(&root, "app:777"), (1000, 777, vec![]));
        assert_eq!(exec(&root, "4242:nobody"), (4242, 65534, vec![]));
        assert_eq!(lookup_user(&root, "app").unwrap().home.as_deref(), Some("/home/app"));
    }

    #[test]
    fn exec_user_errors() {
        let (_dir, root) = root_with(Some(PASSWD), Some(GROUP));
        assert_eq!(
            lookup_user(&root, "ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            lookup_user(&root, "app:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
        assert!(matches!(lookup_user(&root, "4294967296"), Err(UserError::Range(_))));
        assert!(matches!(lookup_user(&root, "-1"), Err(UserError::Range(_))));
        // Without /etc/passwd, names fail and numbers work.
        let (_dir, bare) = root_with(None, None);
        assert!(matches!(lookup_user(&bare, "app"), Err(UserError::NoSuchUser(_))));
        assert_eq!(exec(&bare, "33:44"), (33, 44, vec![]));
    }

    #[test]
    fn chown_rules() {
        let (_dir, root) = root_with(Some(PASSWD), Some(GROUP));
        let owner = |spec: &str| {
            let o = resolve_chown(&root, spec).unwrap();
            (o.uid, o.gid, o.warnings.len())
        };
        assert_eq!(owner("10"), (10, 10, 0));
        assert_eq!(owner("root"), (0, 0, 0));
        assert_eq!(owner("daemon"), (1, 1, 0));
        assert_eq!(owner("app"), (1000, 1001, 0));
        assert_eq!(owner("1000:nobody"), (1000, 65534, 0));
        assert_eq!(owner("app:20"), (1000, 20, 0));
        assert_eq!(owner("app:root"), (1000, 0, 0));
        // Not found: id 0 (user) or the user's gid kept (group), with a warning.
        assert_eq!(owner("ghost"), (0, 0, 1));
        assert_eq!(owner("app:ghosts"), (1000, 1001, 1));
        assert_eq!(owner("7:ghosts"), (7, 7, 1));
    }

    #[test]
    fn user_files_resolve_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "evil:x:66:66::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        // An absolute symlink to the host file must land inside the root (where it is absent).
        std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("etc/passwd"))
            .unwrap();
        let root = MergedRoot::plain(dir.path()).unwrap();
        assert!(matches!(lookup_user(&root, "evil"), Err(UserError::NoSuchUser(_))));
        // A directory where the file should be is an error, not an empty file.
        fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        fs::create_dir(dir.path().join("etc/passwd")).unwrap();
        assert!(matches!(lookup_user(&root, "x"), Err(UserError::NotRegular { .. })));
    }
}
