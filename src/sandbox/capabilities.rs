//! The capabilities a RUN command keeps: Docker's (and BuildKit's) default set.
//!
//! The command keeps exactly [`DEFAULT_CAPABILITIES`] in its bounding, permitted and effective
//! sets; every other capability up to the kernel's last one is dropped from the bounding set,
//! and the inheritable and ambient sets are empty. Empty inheritable follows the fix for
//! CVE-2022-24769 (moby, containerd): a non-empty inheritable set let a program with file
//! inheritable capabilities gain them on exec despite the bounding set's intent.
//!
//! The capabilities are those of the sandbox's user namespace: they act only on objects that
//! namespace owns (its mount, pid, uts, ipc, net namespaces, and files whose ids it maps).
//!
//! Computation is pure ([`capabilities_to_drop`], [`default_mask`]); [`apply`] is the syscall
//! side, meant for the forked child right before `execve` (async-signal-safe: no allocation).

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Docker's default capabilities, by number (`linux/capability.h`).
pub const DEFAULT_CAPABILITIES: [(u32, &str); 14] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// The default set as a bit mask.
pub fn default_mask() -> u64 {
    DEFAULT_CAPABILITIES.iter().fold(0, |mask, (bit, _)| mask | (1u64 << bit))
}

/// Capabilities `0..=last_cap` outside `keep`, to drop from the bounding set.
pub fn capabilities_to_drop(keep: u64, last_cap: u32) -> Vec<u32> {
    (0..=last_cap.min(63)).filter(|cap| keep & (1u64 << cap) == 0).collect()
}

/// The kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`), 40 if unreadable.
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop `to_drop` from the bounding set (needs CAP_SETPCAP, so call before changing uid).
pub fn drop_bounding(to_drop: &[u32]) -> std::io::Result<()> {
    for &cap in to_drop {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // EINVAL: a capability this kernel does not know; nothing to drop.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Set permitted = effective = `keep`, inheritable = ∅, and clear the ambient set.
pub fn apply(keep: u64) -> std::io::Result<()> {
    let set = CapabilitySet::from_bits_retain(keep);
    rustix::thread::set_capabilities(
        None,
        CapabilitySets { effective: set, permitted: set, inheritable: CapabilitySet::empty() },
    )?;
    rustix::thread::clear_ambient_capability_set()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_matches_dockers_fourteen() {
        assert_eq!(default_mask(), 0x0000_0000_a804_25fb);
        assert_eq!(default_mask().count_ones(), 14);
        let rustix_names = CapabilitySet::CHOWN
            | CapabilitySet::DAC_OVERRIDE
            | CapabilitySet::FSETID
            | CapabilitySet::FOWNER
            | CapabilitySet::MKNOD
            | CapabilitySet::NET_RAW
            | CapabilitySet::SETGID
            | CapabilitySet::SETUID
            | CapabilitySet::SETFCAP
            | CapabilitySet::SETPCAP
            | CapabilitySet::NET_BIND_SERVICE
            | CapabilitySet::SYS_CHROOT
            | CapabilitySet::KILL
            | CapabilitySet::AUDIT_WRITE;
        assert_eq!(rustix_names.bits(), default_mask());
    }

    #[test]
    fn drop_list_is_the_complement_up_to_last_cap() {
        let drop = capabilities_to_drop(default_mask(), 40);
        assert_eq!(drop.len(), 41 - 14);
        assert!(drop.contains(&21), "CAP_SYS_ADMIN must be dropped");
        assert!(drop.contains(&19), "CAP_SYS_PTRACE must be dropped");
        assert!(drop.contains(&40));
        assert!(!drop.contains(&0));
        assert_eq!(capabilities_to_drop(u64::MAX, 40), Vec::<u32>::new());
    }
}
