//! User-namespace id maps: which host ids the sandbox's ids stand for, and writing them.
//!
//! Policy (computed by the pure [`IdMaps::for_user`] and [`IdMaps::nested`], chosen by
//! [`id_maps_for`] from the process's [`IdentityContext`], written by [`write_maps`]):
//! - **kiln runs as real root**: identity over the whole range (`0 0 4294967295`). Files the
//!   command creates carry the same ids on the host as in the image, so the layer writer
//!   copies ids verbatim. Root gets nothing extra from this: the sandbox's capabilities are
//!   those of a user namespace, which grant no power over host resources.
//! - **unprivileged user with subordinate ranges** (`/etc/subuid`, `/etc/subgid`): container
//!   0 → the user's own id, container 1.. → the subordinate ranges in file order, written by
//!   the setuid helpers `newuidmap`/`newgidmap` (only they may map ids we do not own).
//! - **unprivileged user without ranges**: only container 0 → own id, written directly; for
//!   gids the kernel then requires `setgroups` to be denied first (CVE-2014-8989: otherwise
//!   dropping a group could grant access to files denied to that group). `chown` to any other
//!   id then fails inside the sandbox, and a warning says so.
//! - **kiln is root inside a user namespace** (its own, [`crate::userns`], or a rootless
//!   container's): identity over exactly the ids that namespace has (the inside ranges of
//!   `/proc/self/uid_map`), written directly: root there holds CAP_SETUID over them, and
//!   `newuidmap` is neither needed nor usable. An inherited `setgroups deny` is kept.
//!
//! Invariant: the maps of one kind never overlap and container ids are contiguous from 0.

use super::error::SandboxError;
use crate::userns::{IdentityContext, NestedIds};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The most lines a kernel id map may hold (since Linux 4.15).
const KERNEL_MAX_MAP_LINES: usize = 340;

/// One line of `/proc/PID/uid_map`: `count` ids from `container` map to `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapEntry {
    pub container: u32,
    pub host: u32,
    pub count: u32,
}

/// How a map gets written into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapWriter {
    /// Written directly by a process privileged in the parent namespace (kiln as root).
    Direct,
    /// Written by the setuid `newuidmap`/`newgidmap`.
    NewIdMap,
    /// Own id only, written directly by the unprivileged owner (gid: after `setgroups deny`).
    OwnIdOnly,
    /// Written directly after `setgroups deny`, because the parent namespace already denies
    /// `setgroups` (a nested namespace inherits it, and its gid map needs it said again).
    DirectNoSetgroups,
}

/// The uid and gid maps of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<IdMapEntry>,
    pub uid_writer: MapWriter,
    pub gid: Vec<IdMapEntry>,
    pub gid_writer: MapWriter,
    /// Human-readable reasons the mapping is reduced.
    pub warnings: Vec<String>,
}

/// Who kiln runs as, and the contents of the subordinate id files.
#[derive(Debug, Clone)]
pub struct IdSource<'a> {
    pub uid: u32,
    pub gid: u32,
    /// Login name of `uid`, when known (subordinate files may name users either way).
    pub user_name: Option<&'a str>,
    /// Contents of `/etc/subuid` (`None`: file absent).
    pub subuid: Option<&'a str>,
    /// Contents of `/etc/subgid`.
    pub subgid: Option<&'a str>,
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

impl IdMaps {
    /// The maps for a process running as `source.uid`/`source.gid` (pure).
    pub fn for_user(source: &IdSource<'_>) -> Result<IdMaps, SandboxError> {
        if source.uid == 0 {
            let full = vec![IdMapEntry { container: 0, host: 0, count: u32::MAX }];
            return Ok(IdMaps {
                uid: full.clone(),
                uid_writer: MapWriter::Direct,
                gid: full,
                gid_writer: MapWriter::Direct,
                warnings: Vec::new(),
            });
        }
        let mut warnings = Vec::new();
        let subuid = parse_subids(source.subuid.unwrap_or(""), "/etc/subuid", source)?;
        let subgid = parse_subids(source.subgid.unwrap_or(""), "/etc/subgid", source)?;
        let (uid, uid_writer) = build_map(source.uid, &subuid);
        let (gid, gid_writer) = build_map(source.gid, &subgid);
        if uid_writer == MapWriter::OwnIdOnly {
            warnings.push(format!(
                "no subordinate uid range for uid {} in /etc/subuid: only uid 0 is mapped, chown to other ids will fail",
                source.uid
            ));
        }
        if gid_writer == MapWriter::OwnIdOnly {
            warnings.push(format!(
                "no subordinate gid range for uid {} in /etc/subgid: only gid 0 is mapped, chown to other ids will fail",
                source.uid
            ));
        }
        Ok(IdMaps { uid, uid_writer, gid, gid_writer, warnings })
    }

    /// Maps for a sandbox started by uid 0 of a user namespace with `ids`: identity over the
    /// inside ranges (pure).
    pub fn nested(ids: &NestedIds) -> IdMaps {
        let identity = |entries: &[IdMapEntry]| -> Vec<IdMapEntry> {
            entries
                .iter()
                .map(|e| IdMapEntry { container: e.container, host: e.container, count: e.count })
                .collect()
        };
        IdMaps {
            uid: identity(&ids.uid),
            uid_writer: MapWriter::Direct,
            gid: identity(&ids.gid),
            gid_writer: if ids.setgroups_allowed {
                MapWriter::Direct
            } else {
                MapWriter::DirectNoSetgroups
            },
            warnings: Vec::new(),
        }
    }

    /// The host uid a container uid stands for.
    pub fn host_uid(&self, container: u32) -> Option<u32> {
        map_id(&self.uid, container)
    }

    /// The host gid a container gid stands for.
    pub fn host_gid(&self, container: u32) -> Option<u32> {
        map_id(&self.gid, container)
    }

    /// Whether the sandbox may call `setgroups` (denied when gids were written unprivileged).
    pub fn setgroups_allowed(&self) -> bool {
        !denies_setgroups(self.gid_writer)
    }
}

fn denies_setgroups(writer: MapWriter) -> bool {
    matches!(writer, MapWriter::OwnIdOnly | MapWriter::DirectNoSetgroups)
}

fn map_id(entries: &[IdMapEntry], container: u32) -> Option<u32> {
    entries.iter().find_map(|e| {
        let offset = container.checked_sub(e.container)?;
        (offset < e.count).then(|| e.host + offset)
    })
}

fn build_map(own: u32, ranges: &[SubIdRange]) -> (Vec<IdMapEntry>, MapWriter) {
    let mut entries = vec![IdMapEntry { container: 0, host: own, count: 1 }];
    let mut next: u32 = 1;
    for range in ranges.iter().take(KERNEL_MAX_MAP_LINES - 1) {
        // A range containing our own id would map it twice; the kernel rejects overlaps.
        if own >= range.start && own - range.start < range.count {
            continue;
        }
        let Some(end) = next.checked_add(range.count) else {
            break;
        };
        entries.push(IdMapEntry { container: next, host: range.start, count: range.count });
        next = end;
    }
    let writer = if entries.len() > 1 { MapWriter::NewIdMap } else { MapWriter::OwnIdOnly };
    (entries, writer)
}

/// The ranges of `source`'s user in a subordinate id file, in file order. Lines of other
/// users are skipped unread; a malformed line of ours is an error naming the line.
pub fn parse_subids(
    text: &str,
    file: &str,
    source: &IdSource<'_>,
) -> Result<Vec<SubIdRange>, SandboxError> {
    let uid_text = source.uid.to_string();
    let mut ranges = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let owner = fields.next().unwrap_or("");
        if owner != uid_text && Some(owner) != source.user_name {
            continue;
        }
        let bad = |reason: &str| SandboxError::InvalidSpec {
            reason: format!("{file} line {}: {reason}: {line:?}", index + 1),
        };
        let (Some(start), Some(count), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad("expected NAME:START:COUNT"));
        };
        let start: u32 = start.parse().map_err(|_| bad("invalid start"))?;
        let count: u32 = count.parse().map_err(|_| bad("invalid count"))?;
        if count == 0 {
            continue;
        }
        if start.checked_add(count).is_none() {
            return Err(bad("range overflows 32-bit ids"));
        }
        ranges.push(SubIdRange { start, count });
    }
    Ok(ranges)
}

/// The text written to `/proc/PID/{uid,gid}_map`.
pub fn map_file_text(entries: &[IdMapEntry]) -> String {
    entries.iter().map(|e| format!("{} {} {}\n", e.container, e.host, e.count)).collect()
}

/// Arguments of `newuidmap`/`newgidmap` for `pid`.
pub fn newidmap_args(pid: u32, entries: &[IdMapEntry]) -> Vec<String> {
    let mut args = vec![pid.to_string()];
    for e in entries {
        args.extend([e.container.to_string(), e.host.to_string(), e.count.to_string()]);
    }
    args
}

/// Find out who we are, read the subordinate id files if needed, and compute the maps.
pub fn host_id_maps() -> Result<IdMaps, SandboxError> {
    id_maps_for(&IdentityContext::detect()?)
}

/// The maps a sandbox started in `identity` gets.
pub fn id_maps_for(identity: &IdentityContext) -> Result<IdMaps, SandboxError> {
    if let IdentityContext::NestedRoot(ids) = identity {
        return Ok(IdMaps::nested(ids));
    }
    let uid = match identity {
        IdentityContext::InitialRoot => 0,
        _ => rustix::process::geteuid().as_raw(),
    };
    let gid = rustix::process::getegid().as_raw();
    let user_name = user_name_of(uid);
    let read = |path: &str| -> Result<Option<String>, SandboxError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SandboxError::SubIdRead { path: path.into(), source }),
        }
    };
    let (subuid, subgid) =
        if uid == 0 { (None, None) } else { (read("/etc/subuid")?, read("/etc/subgid")?) };
    IdMaps::for_user(&IdSource {
        uid,
        gid,
        user_name: user_name.as_deref(),
        subuid: subuid.as_deref(),
        subgid: subgid.as_deref(),
    })
}

/// The login name of `uid` through the C library (NSS included), if any.
pub fn user_name_of(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `passwd` is plain old data, valid when zeroed.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `pwd` and `result` are live locals, `buf`
    // is writable for `buf.len()` bytes; getpwuid_r is the reentrant variant.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`, alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_owned)
}

/// Write both maps of process `pid` (which must be waiting in its fresh user namespace).
pub fn write_maps(pid: u32, maps: &IdMaps) -> Result<(), SandboxError> {
    write_one(pid, "uid_map", "newuidmap", &maps.uid, maps.uid_writer)?;
    if denies_setgroups(maps.gid_writer) {
        write_proc(pid, "setgroups", "deny")?;
    }
    write_one(pid, "gid_map", "newgidmap", &maps.gid, maps.gid_writer)
}

fn write_one(
    pid: u32,
    file: &str,
    tool: &'static str,
    entries: &[IdMapEntry],
    writer: MapWriter,
) -> Result<(), SandboxError> {
    match writer {
        MapWriter::Direct | MapWriter::OwnIdOnly | MapWriter::DirectNoSetgroups => {
            write_proc(pid, file, &map_file_text(entries))
        }
        MapWriter::NewIdMap => {
            let output = Command::new(tool)
                .args(newidmap_args(pid, entries))
                .env_clear()
                .output()
                .map_err(|source| SandboxError::IdMapToolMissing { tool, source })?;
            if output.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                let hint =
                    newidmap_hint(&stderr, tool_is_setuid(tool), bounding_set_has(CAP_SYS_ADMIN));
                Err(SandboxError::IdMapTool {
                    tool,
                    pid,
                    stderr: if stderr.is_empty() { output.status.to_string() } else { stderr },
                    hint,
                })
            }
        }
    }
}

const CAP_SYS_ADMIN: u32 = 21;

/// Why `newuidmap`/`newgidmap` may have been refused, when it can be told (pure): a setuid-root
/// helper writes the map with euid 0, not as the namespace's owner, and the kernel then wants
/// CAP_SYS_ADMIN over the new namespace, which only a process holding it in the initial one
/// has. Containers (Docker, podman, Kubernetes) leave CAP_SYS_ADMIN out of the bounding set,
/// so there the setuid helpers of some shadow versions (Debian 12's) always fail with EPERM,
/// while helpers with file capabilities (`cap_setuid=ep`, as Fedora ships them) keep the
/// user's euid and succeed.
pub fn newidmap_hint(stderr: &str, setuid: bool, cap_sys_admin_bounded: bool) -> String {
    if !stderr.contains("Operation not permitted") || !setuid || cap_sys_admin_bounded {
        return String::new();
    }
    " (a setuid-root newuidmap/newgidmap cannot map ids where CAP_SYS_ADMIN is out of reach, \
     as in a container: give them file capabilities instead — chmod u-s on both, \
     setcap cap_setuid=ep newuidmap, setcap cap_setgid=ep newgidmap; see docs/ci.md)"
        .to_owned()
}

/// Whether `tool`, as found in PATH, is setuid.
fn tool_is_setuid(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join(tool))
        .find_map(|path| fs::metadata(path).ok())
        .is_some_and(|meta| meta.permissions().mode() & 0o4000 != 0)
}

/// Whether this process's capability bounding set holds `capability` (true when unknown).
fn bounding_set_has(capability: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << capability) != 0)
}

fn write_proc(pid: u32, file: &str, text: &str) -> Result<(), SandboxError> {
    let path = Path::new("/proc").join(pid.to_string()).join(file);
    // One write(2): the kernel accepts a map only as a single write.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| SandboxError::IdMapWrite { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source<'a>(subuid: Option<&'a str>, subgid: Option<&'a str>) -> IdSource<'a> {
        IdSource { uid: 1001, gid: 1002, user_name: Some("kilntest"), subuid, subgid }
    }

    #[test]
    fn a_refused_setuid_newuidmap_without_cap_sys_admin_gets_the_file_capabilities_hint() {
        let refused = "newuidmap: write to uid_map failed: Operation not permitted";
        let hint = newidmap_hint(refused, true, false);
        assert!(hint.contains("setcap cap_setuid=ep newuidmap"), "{hint}");
        assert_eq!(newidmap_hint(refused, false, false), "", "file capabilities already");
        assert_eq!(newidmap_hint(refused, true, true), "", "CAP_SYS_ADMIN was within reach");
        assert_eq!(
            newidmap_hint(
                "newuidmap: uid range [1-65537) -> [100000-165536) not allowed",
                true,
                false
            ),
            ""
        );
    }

    #[test]
    fn root_gets_the_full_identity_range() {
        let maps = IdMaps::for_user(&IdSource {
            uid: 0,
            gid: 0,
            user_name: Some("root"),
            subuid: Some("root:100000:65536\n"),
            subgid: None,
        })
        .unwrap();
        assert_eq!(map_file_text(&maps.uid), "0 0 4294967295\n");
        assert_eq!(maps.gid, maps.uid);
        assert_eq!(maps.uid_writer, MapWriter::Direct);
        assert!(maps.setgroups_allowed());
        assert!(maps.warnings.is_empty());
        assert_eq!(maps.host_uid(1234), Some(1234));
    }

    #[test]
    fn subordinate_ranges_follow_own_id() {
        let subuid = "other:200000:65536\nkilntest:100000:65536\n1001:300000:10\n";
        let subgid = "kilntest:400000:1000\n";
        let maps = IdMaps::for_user(&source(Some(subuid), Some(subgid))).unwrap();
        assert_eq!(map_file_text(&maps.uid), "0 1001 1\n1 100000 65536\n65537 300000 10\n");
        assert_eq!(map_file_text(&maps.gid), "0 1002 1\n1 400000 1000\n");
        assert_eq!(maps.uid_writer, MapWriter::NewIdMap);
        assert_eq!(maps.host_uid(0), Some(1001));
        assert_eq!(maps.host_uid(1234), Some(100000 + 1233));
        assert_eq!(maps.host_uid(65537), Some(300000));
        assert_eq!(maps.host_uid(65547), None);
        assert_eq!(maps.host_gid(1000), Some(400999));
        assert!(maps.warnings.is_empty());
        assert_eq!(newidmap_args(42, &maps.gid), ["42", "0", "1002", "1", "1", "400000", "1000"]);
    }

    #[test]
    fn numeric_owner_matches_and_comments_are_skipped() {
        let maps = IdMaps::for_user(&IdSource {
            user_name: None,
            ..source(Some("# c\n\n1001:5000:7\n"), Some("1001:6000:8"))
        })
        .unwrap();
        assert_eq!(map_file_text(&maps.uid), "0 1001 1\n1 5000 7\n");
        assert_eq!(map_file_text(&maps.gid), "0 1002 1\n1 6000 8\n");
    }

    #[test]
    fn without_ranges_only_own_id_is_mapped_with_warnings() {
        let maps = IdMaps::for_user(&source(None, Some("someoneelse:1:2\n"))).unwrap();
        assert_eq!(map_file_text(&maps.uid), "0 1001 1\n");
        assert_eq!(map_file_text(&maps.gid), "0 1002 1\n");
        assert_eq!(maps.uid_writer, MapWriter::OwnIdOnly);
        assert!(!maps.setgroups_allowed());
        assert_eq!(maps.warnings.len(), 2);
        assert!(maps.warnings[0].contains("chown to other ids will fail"));
    }

    #[test]
    fn nested_root_maps_the_ids_it_has_onto_themselves() {
        let ids = NestedIds {
            uid: vec![
                IdMapEntry { container: 0, host: 1001, count: 1 },
                IdMapEntry { container: 1, host: 100000, count: 65536 },
            ],
            gid: vec![IdMapEntry { container: 0, host: 1002, count: 1 }],
            setgroups_allowed: true,
        };
        let maps = IdMaps::nested(&ids);
        assert_eq!(map_file_text(&maps.uid), "0 0 1\n1 1 65536\n");
        assert_eq!(map_file_text(&maps.gid), "0 0 1\n");
        assert_eq!(maps.uid_writer, MapWriter::Direct);
        assert_eq!(maps.gid_writer, MapWriter::Direct);
        assert!(maps.setgroups_allowed());
        assert!(maps.warnings.is_empty());
        assert_eq!(maps.host_uid(1000), Some(1000));
        assert_eq!(maps.host_uid(65537), None);
        assert_eq!(maps.host_gid(5), None);
        assert_eq!(id_maps_for(&IdentityContext::NestedRoot(ids)).unwrap(), maps);
    }

    #[test]
    fn nested_root_keeps_an_inherited_setgroups_deny() {
        let one = vec![IdMapEntry { container: 0, host: 1001, count: 1 }];
        let maps =
            IdMaps::nested(&NestedIds { uid: one.clone(), gid: one, setgroups_allowed: false });
        assert_eq!(maps.gid_writer, MapWriter::DirectNoSetgroups);
        assert!(!maps.setgroups_allowed());
    }

    #[test]
    fn initial_root_gets_the_full_identity_whoever_asks() {
        let maps = id_maps_for(&IdentityContext::InitialRoot).unwrap();
        assert_eq!(map_file_text(&maps.uid), "0 0 4294967295\n");
        assert_eq!(maps.gid_writer, MapWriter::Direct);
    }

    #[test]
    fn range_holding_own_id_is_skipped() {
        let maps = IdMaps::for_user(&source(Some("kilntest:1000:10\n"), None)).unwrap();
        assert_eq!(maps.uid_writer, MapWriter::OwnIdOnly);
    }

    #[test]
    fn malformed_line_of_ours_is_an_error_naming_the_line() {
        let err = IdMaps::for_user(&source(Some("x:1:2\nkilntest:abc:5\n"), None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid sandbox spec: /etc/subuid line 2: invalid start: \"kilntest:abc:5\""
        );
        let err = IdMaps::for_user(&source(Some("kilntest:4294967295:5\n"), None)).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        // Other users' garbage is not our business.
        assert!(IdMaps::for_user(&source(Some("bob:zzz\n"), None)).is_ok());
    }
}
