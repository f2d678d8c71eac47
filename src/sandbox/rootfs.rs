//! The sandbox's root filesystem: an overlay of the layers (or a merged copy), then
//! `pivot_root` into it.
//!
//! Who mounts the overlay: a root kiln mounts it in the helper *before* entering the user
//! namespace ([`premount_as_root`]), so overlayfs acts with real root credentials and uses
//! `trusted.overlay.*` xattrs, like image layers unpacked as root; rootless, pid 1 mounts it
//! from inside the user namespace with `userxattr` (`user.overlay.*`). "Root" means real root
//! here ([`crate::userns::IdentityContext::InitialRoot`]): uid 0 inside kiln's own user
//! namespace cannot write `trusted.*` and takes the rootless path, like its layer snapshots
//! ([`crate::userns::overlay_xattr_prefix`]).
//!
//! Overlay options: every lower layer is added with `lowerdir+` (Linux ≥ 6.5), one value per
//! layer, so neither the 4 KiB mount-data limit nor `:`/`,` in paths get in the way. Each value
//! is limited by the kernel to 255 bytes. Rootless, overlayfs must keep its whiteout and opaque
//! markers in `user.overlay.*` xattrs (`userxattr`): `trusted.*` needs CAP_SYS_ADMIN in the
//! initial user namespace. As root the default `trusted.overlay.*` is used, which is what
//! image layers unpacked as root carry.
//!
//! Fallback ("copy" mode): when the overlay cannot be mounted (old kernel, upper on a
//! filesystem overlayfs refuses), the merged lower trees are copied to `<work>/rootfs` and the
//! command runs there; the caller then computes the layer by walking and diffing that tree.
//!
//! `pivot_root(".", ".")` followed by a lazy unmount of `.` detaches the host's root without
//! needing a `put_old` directory inside the image (which would be a stub in the layer).

use super::copy;
use super::error::WireError;
use super::mount_api::{self, FsOption};
use super::spec::{RootfsModeRequest, RootfsSpec};
use rustix::io::Errno;
use rustix::mount::{MountAttrFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How the rootfs was assembled for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsMode {
    /// The command's changes are in the overlay upper directory, in overlay form.
    Overlay,
    /// The command ran in a merged copy at `root`; the caller diffs it against the lowers
    /// (and removes it afterwards).
    Copy { root: PathBuf },
}

/// The overlay options for `lowers` (topmost first).
pub fn overlay_options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    userxattr: bool,
) -> Vec<FsOption> {
    let mut options: Vec<FsOption> =
        lowers.iter().map(|lower| FsOption::value("lowerdir+", lower.to_string_lossy())).collect();
    options.push(FsOption::value("upperdir", upper.to_string_lossy()));
    options.push(FsOption::value("workdir", work.to_string_lossy()));
    if userxattr {
        options.push(FsOption::flag("userxattr"));
    }
    options
}

/// A detached overlay mount.
pub fn overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    userxattr: bool,
) -> Result<OwnedFd, Errno> {
    mount_api::new_fs(
        "overlay",
        &overlay_options(lowers, upper, work, userxattr),
        MountAttrFlags::empty(),
    )
}

/// How pid 1 should get its overlay rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayPlan {
    /// Mount it now, from inside the user namespace (`userxattr`): kiln is not root.
    MountWithUserXattr,
    /// kiln is root: the helper already mounted it (with `trusted.*` xattrs) before entering
    /// the user namespace, and pid 1's mount namespace inherited it.
    Premounted,
    /// kiln is root and the helper's attempt failed with this errno.
    PremountFailed(i32),
    /// Copy mode was requested.
    Skip,
}

/// As root, before unsharing the user namespace: give the helper a private mount namespace
/// and mount the overlay rootfs there with root's credentials, so that overlayfs keeps its
/// markers in `trusted.overlay.*` (which no process in a user namespace may write). Pid 1's
/// mount namespace, created later, starts as a copy of this one.
pub fn premount_as_root(spec: &RootfsSpec, mountpoint: &Path, empty_lower: &Path) -> OverlayPlan {
    if spec.mode == RootfsModeRequest::Copy {
        return OverlayPlan::Skip;
    }
    let attempt = || -> Result<(), Errno> {
        super::namespaces::unshare(rustix::thread::UnshareFlags::NEWNS)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::PERM))?;
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::PRIVATE
                | rustix::mount::MountPropagationFlags::REC,
        )?;
        let target = open_dir_path(mountpoint)?;
        let mnt = overlay(&lowers_or_empty(spec, empty_lower), &spec.upper, &spec.work, false)?;
        mount_api::attach(&mnt, target.as_fd())
    };
    match attempt() {
        Ok(()) => OverlayPlan::Premounted,
        Err(errno) => OverlayPlan::PremountFailed(errno.raw_os_error()),
    }
}

fn lowers_or_empty(spec: &RootfsSpec, empty_lower: &Path) -> Vec<PathBuf> {
    if spec.lowers.is_empty() { vec![empty_lower.to_path_buf()] } else { spec.lowers.clone() }
}

fn open_dir_path(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

/// Mount the rootfs onto `mountpoint` (an empty host directory) according to `plan`, or fall
/// back to a merged copy. `empty_lower` stands in for the lower layers when there are none
/// (overlayfs needs at least one).
pub fn mount_rootfs(
    spec: &RootfsSpec,
    mountpoint: &Path,
    empty_lower: &Path,
    plan: OverlayPlan,
    warnings: &mut Vec<String>,
) -> Result<RootfsMode, WireError> {
    let target = open_dir_path(mountpoint)
        .map_err(|e| WireError::setup(format!("open {}", mountpoint.display()), e))?;
    let as_root = matches!(plan, OverlayPlan::PremountFailed(_));
    let failure = match plan {
        OverlayPlan::Premounted => {
            // Inherited from a more privileged mount namespace, the overlay is locked, and
            // pivot_root refuses a locked new root (EINVAL); a bind of it made here is not.
            mount_api::bind(mountpoint, target.as_fd(), false)
                .map_err(|e| WireError::mount("bind of the overlay rootfs", "/", e))?;
            return Ok(RootfsMode::Overlay);
        }
        OverlayPlan::Skip => None,
        OverlayPlan::PremountFailed(errno) => Some(Errno::from_raw_os_error(errno)),
        OverlayPlan::MountWithUserXattr => {
            let mounted =
                overlay(&lowers_or_empty(spec, empty_lower), &spec.upper, &spec.work, true)
                    .and_then(|mnt| mount_api::attach(&mnt, target.as_fd()));
            match mounted {
                Ok(()) => return Ok(RootfsMode::Overlay),
                Err(errno) => Some(errno),
            }
        }
    };
    if let Some(errno) = failure {
        if spec.mode == RootfsModeRequest::Overlay {
            return Err(WireError::mount("overlay", "/", errno));
        }
        warnings.push(copy_fallback_warning(errno, as_root));
    }
    let root = spec.work.join("rootfs");
    copy::copy_merged(&spec.lowers, &root)?;
    mount_api::bind(&root, target.as_fd(), false)
        .map_err(|e| WireError::mount(format!("bind {}", root.display()), "/", e))?;
    Ok(RootfsMode::Copy { root })
}

/// What the copy fallback costs and how to avoid it, given why overlay failed.
pub fn copy_fallback_warning(errno: Errno, as_root: bool) -> String {
    let why = std::io::Error::from(errno);
    let avoid = if as_root && errno == Errno::PERM {
        // Real root mounts the overlay before entering the user namespace, which takes
        // CAP_SYS_ADMIN: a container's root usually lacks it.
        "as root, overlay needs CAP_SYS_ADMIN, which a container's root usually lacks: \
         run kiln as an ordinary user with /etc/subuid ranges instead"
    } else {
        "overlay needs Linux 6.5 or later and a state root (--root) on a filesystem such as \
         ext4, xfs or tmpfs, not on overlayfs"
    };
    format!(
        "overlay rootfs unavailable ({why}): RUN works on a copy of its rootfs, which is slower; {avoid}"
    )
}

/// Make `new_root` the root of this mount namespace and detach the old root.
pub fn pivot_into(new_root: &Path) -> Result<(), WireError> {
    let step = |what: &str, e: Errno| WireError::setup(what.to_owned(), e);
    rustix::process::chdir(new_root).map_err(|e| step("chdir to rootfs", e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| step("pivot_root", e))?;
    // The old root now sits on top of "."; detach it (lazily: it is busy until we leave it).
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(|e| step("detach old root", e))?;
    rustix::process::chdir("/").map_err(|e| step("chdir /", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_fallback_warning_says_how_to_avoid_it() {
        let as_root = copy_fallback_warning(Errno::PERM, true);
        assert!(as_root.contains("CAP_SYS_ADMIN"), "{as_root}");
        let on_overlayfs = copy_fallback_warning(Errno::INVAL, false);
        assert!(on_overlayfs.starts_with("overlay rootfs unavailable ("), "{on_overlayfs}");
        assert!(on_overlayfs.contains("not on overlayfs"), "{on_overlayfs}");
    }

    #[test]
    fn overlay_options_add_each_lower_then_upper_work() {
        let options = overlay_options(
            &["/l/top".into(), "/l/a,b:c".into()],
            Path::new("/u"),
            Path::new("/w"),
            true,
        );
        assert_eq!(
            options,
            [
                FsOption::value("lowerdir+", "/l/top"),
                FsOption::value("lowerdir+", "/l/a,b:c"),
                FsOption::value("upperdir", "/u"),
                FsOption::value("workdir", "/w"),
                FsOption::flag("userxattr"),
            ]
        );
        let as_root = overlay_options(&["/l".into()], Path::new("/u"), Path::new("/w"), false);
        assert!(!as_root.contains(&FsOption::flag("userxattr")));
    }
}
