//! Which namespaces a sandbox gets, and the little setup each needs.
//!
//! Order matters and is fixed by the kernel's ownership rules:
//! 1. the helper unshares the **user** namespace alone and waits for kiln to write its id
//!    maps (a process cannot map ids it does not own; kiln or `newuidmap` must, from outside);
//! 2. it then unshares the **pid** namespace, which applies only to children: its next child
//!    is pid 1;
//! 3. pid 1 unshares **mount, ipc, uts** (and **net** for `network=none`). Created after the
//!    user namespace, they are owned by it, which is what lets pid 1 mount, set the host name
//!    and bring `lo` up without privileges on the host. Being pid 1's alone, the mount
//!    namespace (and every mount in it) disappears when pid 1 exits.

use super::spec::NetworkMode;
use rustix::thread::UnshareFlags;

/// Namespaces pid 1 creates for itself.
pub fn init_namespaces(network: NetworkMode) -> UnshareFlags {
    let base = UnshareFlags::NEWNS | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    match network {
        NetworkMode::Host => base,
        NetworkMode::None => base | UnshareFlags::NEWNET,
    }
}

/// `unshare(2)` for namespace flags only.
pub fn unshare(flags: UnshareFlags) -> std::io::Result<()> {
    debug_assert!(!flags.intersects(UnshareFlags::FILES | UnshareFlags::FS));
    // SAFETY: `unshare_unsafe` is unsafe because CLONE_FILES/CLONE_FS/CLONE_VM would change
    // state other threads rely on; only namespace flags are passed here, and the callers are
    // single-threaded processes (the freshly exec'd helper and its forked pid 1, and kiln
    // re-executed by `crate::userns` before main starts anything).
    unsafe { rustix::thread::unshare_unsafe(flags) }?;
    Ok(())
}

/// Bring the loopback interface of the current (fresh) network namespace up.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a valid descriptor we just opened and own exclusively.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: `ifreq` is plain old data, valid when zeroed.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write a `struct ifreq`, which `req` is; it
    // lives across both calls.
    unsafe {
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_none_adds_a_net_namespace_only() {
        let host = init_namespaces(NetworkMode::Host);
        let none = init_namespaces(NetworkMode::None);
        assert!(!host.contains(UnshareFlags::NEWNET));
        assert!(none.contains(UnshareFlags::NEWNET));
        assert_eq!(none - UnshareFlags::NEWNET, host);
        assert!(host.contains(UnshareFlags::NEWNS | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS));
        assert!(!host.contains(UnshareFlags::NEWUSER));
    }
}
