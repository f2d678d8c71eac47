//! Who this process is in terms of ids and privilege: the one place that decides between
//! real root, root inside a user namespace, and an unprivileged user.
//!
//! Being uid 0 is not enough to know what the kernel allows. Inside kiln's own user
//! namespace (see [`super`]) or a rootless container, uid 0 holds every capability *over the
//! namespace's ids only*: it may chown to any mapped id and mount overlayfs, but not write
//! `trusted.*` xattrs (they need CAP_SYS_ADMIN in the initial user namespace), nor map ids
//! that its own namespace does not have. So:
//!
//! | context | uid_map | sandbox ids | overlay xattrs |
//! |---|---|---|---|
//! | [`IdentityContext::InitialRoot`] | `0 0 4294967295` | identity over all ids | `trusted.overlay.*` |
//! | [`IdentityContext::NestedRoot`] | anything else, euid 0 | identity over the ranges we have | `user.overlay.*` (`userxattr`) |
//! | [`IdentityContext::Unprivileged`] | euid ≠ 0 | own id + `/etc/subuid` via `newuidmap` | `user.overlay.*` (`userxattr`) |
//!
//! A user namespace whose map is the full identity cannot be told apart from the initial
//! one from inside; only a privileged process can create one, and it is treated as initial.
//! The context never changes once [`super::complete_reexec`] has run (first thing in `main`),
//! so [`overlay_xattr_prefix`] computes it once per process.

use super::error::UsernsError;
use crate::sandbox::idmap::IdMapEntry;
use std::path::Path;
use std::sync::OnceLock;

/// The privilege context of the current process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityContext {
    /// uid 0 in the initial user namespace: real root.
    InitialRoot,
    /// uid 0 in a user namespace that maps only part of the ids (kiln's own, or a rootless
    /// container's): root over exactly the ids in [`NestedIds`].
    NestedRoot(NestedIds),
    /// Not uid 0: needs kiln's user namespace (or `newuidmap`) to act on other ids.
    Unprivileged,
}

/// The id ranges of the user namespace a [`IdentityContext::NestedRoot`] process is in: the
/// lines of `/proc/self/{uid,gid}_map` (`container` = inside id, `host` = id in the parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedIds {
    pub uid: Vec<IdMapEntry>,
    pub gid: Vec<IdMapEntry>,
    /// `/proc/self/setgroups` is `allow`: a nested namespace inherits `deny` and may then
    /// never call `setgroups`.
    pub setgroups_allowed: bool,
}

impl NestedIds {
    /// The parent namespace's uid for `inside` (the user who started kiln, for uid 0).
    pub fn outside_uid(&self, inside: u32) -> Option<u32> {
        outside_of(&self.uid, inside)
    }

    /// The parent namespace's gid for `inside`.
    pub fn outside_gid(&self, inside: u32) -> Option<u32> {
        outside_of(&self.gid, inside)
    }
}

fn outside_of(entries: &[IdMapEntry], inside: u32) -> Option<u32> {
    entries.iter().find_map(|e| {
        let offset = inside.checked_sub(e.container)?;
        (offset < e.count).then(|| e.host + offset)
    })
}

const FULL_IDENTITY: IdMapEntry = IdMapEntry { container: 0, host: 0, count: u32::MAX };

impl IdentityContext {
    /// The context of the current process, read from its euid and `/proc/self`.
    pub fn detect() -> Result<IdentityContext, UsernsError> {
        let euid = rustix::process::geteuid().as_raw();
        if euid != 0 {
            return Ok(IdentityContext::Unprivileged);
        }
        let Some(uid_map) = read_proc_optional("/proc/self/uid_map")? else {
            // A kernel without user namespaces: there is only the initial one.
            return Ok(IdentityContext::InitialRoot);
        };
        let gid_map = read_proc_optional("/proc/self/gid_map")?.unwrap_or_default();
        let setgroups = read_proc_optional("/proc/self/setgroups")?.unwrap_or_default();
        IdentityContext::from_proc_text(euid, &uid_map, &gid_map, &setgroups)
    }

    /// The context for `euid` given the texts of `/proc/self/{uid_map,gid_map,setgroups}`.
    pub fn from_proc_text(
        euid: u32,
        uid_map: &str,
        gid_map: &str,
        setgroups: &str,
    ) -> Result<IdentityContext, UsernsError> {
        if euid != 0 {
            return Ok(IdentityContext::Unprivileged);
        }
        let uid = parse_id_map(uid_map, Path::new("/proc/self/uid_map"))?;
        if uid == [FULL_IDENTITY] {
            return Ok(IdentityContext::InitialRoot);
        }
        let gid = parse_id_map(gid_map, Path::new("/proc/self/gid_map"))?;
        Ok(IdentityContext::NestedRoot(NestedIds {
            uid,
            gid,
            setgroups_allowed: setgroups.trim() != "deny",
        }))
    }

    pub fn is_initial_root(&self) -> bool {
        matches!(self, IdentityContext::InitialRoot)
    }

    /// Where overlayfs keeps its whiteout/opaque markers for mounts made in this context:
    /// `trusted.overlay.` as real root, `user.overlay.` (the `userxattr` option) otherwise.
    pub fn overlay_xattr_prefix(&self) -> &'static str {
        if self.is_initial_root() { "trusted.overlay." } else { "user.overlay." }
    }
}

/// The lines of an id map file; blank lines are ignored.
pub fn parse_id_map(text: &str, path: &Path) -> Result<Vec<IdMapEntry>, UsernsError> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = || UsernsError::BadIdMap {
            path: path.to_path_buf(),
            line: index + 1,
            text: line.to_owned(),
        };
        let [container, host, count] = fields.as_slice() else {
            return Err(bad());
        };
        let number = |field: &str| field.parse::<u32>().map_err(|_| bad());
        entries.push(IdMapEntry {
            container: number(container)?,
            host: number(host)?,
            count: number(count)?,
        });
    }
    Ok(entries)
}

fn read_proc_optional(path: &str) -> Result<Option<String>, UsernsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UsernsError::ReadProc { path: path.into(), source }),
    }
}

/// The xattr prefix (`trusted.overlay.` or `user.overlay.`) that overlay lower and upper
/// directories must carry in this process, so that snapshots unpacked here read the same
/// way as what the sandbox's overlay mounts write. Computed once per process; should
/// `/proc` be unreadable, the euid decides.
pub fn overlay_xattr_prefix() -> &'static str {
    static PREFIX: OnceLock<&'static str> = OnceLock::new();
    PREFIX.get_or_init(|| match IdentityContext::detect() {
        Ok(context) => context.overlay_xattr_prefix(),
        Err(_) if rustix::process::geteuid().is_root() => "trusted.overlay.",
        Err(_) => "user.overlay.",
    })
}

/// The uid of the user who started kiln: inside kiln's own user namespace (marked by
/// [`super::IN_USERNS_ENV`]) the id that uid 0 stands for, else the real uid. Decides
/// per-user defaults such as the state root, which must not become root's because the
/// engine runs as uid 0 in its namespace.
pub fn invoking_uid() -> u32 {
    let uid = rustix::process::getuid().as_raw();
    if uid != 0 || !super::in_kiln_userns_env() {
        return uid;
    }
    match IdentityContext::detect() {
        Ok(IdentityContext::NestedRoot(ids)) => ids.outside_uid(0).unwrap_or(uid),
        _ => uid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(container: u32, host: u32, count: u32) -> IdMapEntry {
        IdMapEntry { container, host, count }
    }

    #[test]
    fn full_identity_as_uid_0_is_initial_root() {
        let map = "         0          0 4294967295\n";
        let context = IdentityContext::from_proc_text(0, map, map, "allow\n").unwrap();
        assert_eq!(context, IdentityContext::InitialRoot);
        assert_eq!(context.overlay_xattr_prefix(), "trusted.overlay.");
    }

    #[test]
    fn any_other_map_as_uid_0_is_nested_root_with_its_ranges() {
        let uid_map = "         0       1001          1\n         1     100000      65536\n";
        let gid_map = "         0       1002          1\n         1     200000       1000\n";
        let context = IdentityContext::from_proc_text(0, uid_map, gid_map, "allow\n").unwrap();
        let IdentityContext::NestedRoot(ids) = &context else {
            panic!("expected nested root, got {context:?}");
        };
        assert_eq!(ids.uid, [entry(0, 1001, 1), entry(1, 100000, 65536)]);
        assert_eq!(ids.gid, [entry(0, 1002, 1), entry(1, 200000, 1000)]);
        assert!(ids.setgroups_allowed);
        assert_eq!(ids.outside_uid(0), Some(1001));
        assert_eq!(ids.outside_uid(1000), Some(100999));
        assert_eq!(ids.outside_uid(65537), None);
        assert_eq!(ids.outside_gid(1000), Some(200999));
        assert_eq!(context.overlay_xattr_prefix(), "user.overlay.");
    }

    #[test]
    fn a_partial_identity_map_is_nested_and_setgroups_deny_is_seen() {
        let map = "0 0 65536\n";
        let context = IdentityContext::from_proc_text(0, map, map, "deny\n").unwrap();
        let IdentityContext::NestedRoot(ids) = context else { panic!("expected nested root") };
        assert_eq!(ids.uid, [entry(0, 0, 65536)]);
        assert!(!ids.setgroups_allowed);
    }

    #[test]
    fn a_non_zero_euid_is_unprivileged_whatever_the_map() {
        let map = "0 0 4294967295\n";
        let context = IdentityContext::from_proc_text(1000, map, map, "allow").unwrap();
        assert_eq!(context, IdentityContext::Unprivileged);
        assert_eq!(context.overlay_xattr_prefix(), "user.overlay.");
    }

    #[test]
    fn malformed_map_lines_are_errors_naming_file_and_line() {
        let err = IdentityContext::from_proc_text(0, "0 1000 1\n1 x 5\n", "", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/self/uid_map line 2: expected INSIDE OUTSIDE COUNT, got \"1 x 5\""
        );
        let err = IdentityContext::from_proc_text(0, "0 1000 1\n", "0 1\n", "").unwrap_err();
        assert!(err.to_string().starts_with("/proc/self/gid_map line 1:"), "{err}");
    }

    #[test]
    fn this_process_is_detected_consistently_with_its_euid() {
        let context = IdentityContext::detect().unwrap();
        let euid = rustix::process::geteuid().as_raw();
        assert_eq!(euid != 0, context == IdentityContext::Unprivileged);
        assert_eq!(overlay_xattr_prefix(), context.overlay_xattr_prefix());
    }
}
