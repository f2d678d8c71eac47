//! The mounts a sandbox gets, as a plan (pure data, unit-tested) and its execution.
//!
//! What a RUN sees, after BuildKit's runc executor (containerd's default spec):
//! - `/proc`: a fresh procfs of the sandbox's pid namespace (nosuid, nodev, noexec), with
//!   containerd's masked paths (`/proc/kcore`, `/proc/keys`, ... covered by `/dev/null` or an
//!   empty read-only tmpfs) and read-only paths (`/proc/sys`, `/proc/sysrq-trigger`, ...).
//! - `/dev`: a small tmpfs holding `null zero full random urandom tty` bind-mounted from the
//!   host (a user namespace cannot `mknod` devices), a new `devpts` instance at `/dev/pts`
//!   (`ptmxmode=0666`) with the `/dev/ptmx` symlink, `/dev/shm` and `/dev/mqueue`, and the
//!   `fd stdin stdout stderr core` symlinks.
//! - `/sys`: read-only. A fresh sysfs needs a network namespace owned by our user namespace,
//!   so with `network=none` it is a new sysfs; with the host network the kernel refuses that
//!   (EPERM) and, as runc does rootless, the host's `/sys` is bind-mounted recursively
//!   read-only. If even that fails, `/sys` is left empty and a warning says so.
//! - `/etc/hosts` and `/etc/resolv.conf`: kiln's files, bind-mounted read-only.
//! - then the spec's own mounts, in order.
//!
//! Invariant: nothing here touches the host's mount table; every mount is made inside the
//! sandbox's private mount namespace, onto targets resolved inside the rootfs.

use super::confined::{self, Stub, TargetKind};
use super::error::WireError;
use super::mount_api::{self, FsOption};
use super::spec::{Mount, NetworkMode, SandboxSpec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// Device nodes bind-mounted from the host into `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks created in `/dev` (name, target).
pub const DEV_SYMLINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// containerd's default masked paths.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Host-side facts the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountContext {
    /// Whether gid 5 (tty) is mapped, so devpts may use `gid=5`.
    pub tty_gid_mapped: bool,
    /// kiln's generated hosts file and copy of the host's resolv.conf.
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// Throwaway (upper, work) directories, one per `BindOverlay` mount, in spec order.
    pub overlay_dirs: Vec<(PathBuf, PathBuf)>,
}

/// One step of mounting the sandbox's filesystem view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    Proc,
    DevTmpfs,
    DevNode { name: &'static str },
    DevPts { tty_gid: bool },
    DevShm,
    DevMqueue,
    DevSymlink { name: &'static str, to: &'static str },
    Sys { namespaced: bool },
    Mask { path: &'static str },
    ReadOnly { path: &'static str },
    Bind { source: PathBuf, target: String, readonly: bool },
    Overlay { lower: PathBuf, upper: PathBuf, work: PathBuf, target: String, userxattr: bool },
    Tmpfs { target: String, size: Option<u64>, mode: u32 },
}

impl MountStep {
    /// What is mounted, and where (for error messages).
    pub fn describe(&self) -> (String, String) {
        match self {
            MountStep::Proc => ("proc".into(), "/proc".into()),
            MountStep::DevTmpfs => ("tmpfs".into(), "/dev".into()),
            MountStep::DevNode { name } => (format!("bind /dev/{name}"), format!("/dev/{name}")),
            MountStep::DevPts { .. } => ("devpts".into(), "/dev/pts".into()),
            MountStep::DevShm => ("tmpfs".into(), "/dev/shm".into()),
            MountStep::DevMqueue => ("mqueue".into(), "/dev/mqueue".into()),
            MountStep::DevSymlink { name, .. } => ("symlink".into(), format!("/dev/{name}")),
            MountStep::Sys { .. } => ("sysfs".into(), "/sys".into()),
            MountStep::Mask { path } => ("mask".into(), (*path).into()),
            MountStep::ReadOnly { path } => ("read-only bind".into(), (*path).into()),
            MountStep::Bind { source, target, .. } => {
                (format!("bind {}", source.display()), target.clone())
            }
            MountStep::Overlay { lower, target, .. } => {
                (format!("overlay of {}", lower.display()), target.clone())
            }
            MountStep::Tmpfs { target, .. } => ("tmpfs".into(), target.clone()),
        }
    }
}

/// The mount steps for `spec` (pure).
pub fn plan(spec: &SandboxSpec, ctx: &MountContext) -> Vec<MountStep> {
    let mut steps = vec![MountStep::Proc, MountStep::DevTmpfs];
    steps.extend(DEVICES.iter().map(|&name| MountStep::DevNode { name }));
    steps.push(MountStep::DevPts { tty_gid: ctx.tty_gid_mapped });
    steps.push(MountStep::DevShm);
    steps.push(MountStep::DevMqueue);
    steps.extend(DEV_SYMLINKS.iter().map(|&(name, to)| MountStep::DevSymlink { name, to }));
    steps.push(MountStep::Sys { namespaced: spec.network == NetworkMode::None });
    steps.extend(MASKED_PATHS.iter().map(|&path| MountStep::Mask { path }));
    steps.extend(READONLY_PATHS.iter().map(|&path| MountStep::ReadOnly { path }));
    steps.push(MountStep::Bind {
        source: ctx.hosts_file.clone(),
        target: "/etc/hosts".into(),
        readonly: true,
    });
    steps.push(MountStep::Bind {
        source: ctx.resolv_conf.clone(),
        target: "/etc/resolv.conf".into(),
        readonly: true,
    });
    let mut overlay_dirs = ctx.overlay_dirs.iter();
    for mount in &spec.mounts {
        steps.push(match mount {
            Mount::Bind { source, target, readonly } => MountStep::Bind {
                source: source.clone(),
                target: target.clone(),
                readonly: *readonly,
            },
            Mount::BindOverlay { source, target } => {
                let (upper, work) = overlay_dirs.next().cloned().unwrap_or_default();
                MountStep::Overlay {
                    lower: source.clone(),
                    upper,
                    work,
                    target: target.clone(),
                    // Mounted from inside the user namespace, where `trusted.*` xattrs are
                    // out of reach even for a root kiln: overlayfs must use `user.*`.
                    userxattr: true,
                }
            }
            Mount::Tmpfs { target, size, mode } => MountStep::Tmpfs {
                target: target.clone(),
                size: *size,
                mode: mode.unwrap_or(0o1777),
            },
        });
    }
    steps
}

/// Executes mount steps against the rootfs mounted at `root_path` (before `pivot_root`).
pub struct Mounter<'a> {
    pub root: BorrowedFd<'a>,
    pub root_path: &'a Path,
    pub stubs: Vec<Stub>,
    pub warnings: Vec<String>,
}

const NOSUID_NODEV_NOEXEC: MountAttrFlags = MountAttrFlags::MOUNT_ATTR_NOSUID
    .union(MountAttrFlags::MOUNT_ATTR_NODEV)
    .union(MountAttrFlags::MOUNT_ATTR_NOEXEC);

impl Mounter<'_> {
    pub fn run(&mut self, steps: &[MountStep]) -> Result<(), WireError> {
        for step in steps {
            self.apply(step).map_err(|err| {
                let (what, target) = step.describe();
                match err {
                    StepError::Errno(errno) => WireError::mount(what, target, errno),
                    StepError::Wire(wire) => wire,
                }
            })?;
        }
        Ok(())
    }

    fn target(&mut self, path: &str, kind: TargetKind) -> Result<std::os::fd::OwnedFd, StepError> {
        confined::ensure_target(self.root, self.root_path, path, kind, &mut self.stubs)
            .map_err(StepError::Wire)
    }

    fn apply(&mut self, step: &MountStep) -> Result<(), StepError> {
        match step {
            MountStep::Proc => {
                let target = self.target("/proc", TargetKind::Dir)?;
                let mounted = mount_api::new_fs("proc", &[], NOSUID_NODEV_NOEXEC)
                    .and_then(|mnt| mount_api::attach(&mnt, target.as_fd()));
                match mounted {
                    Ok(()) => {}
                    Err(Errno::PERM) => return Err(proc_refused()),
                    Err(err) => return Err(err.into()),
                }
            }
            MountStep::DevTmpfs => {
                let target = self.target("/dev", TargetKind::Dir)?;
                let mnt = mount_api::new_fs(
                    "tmpfs",
                    &[FsOption::value("mode", "755"), FsOption::value("size", "65536k")],
                    MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_STRICTATIME,
                )?;
                mount_api::attach(&mnt, target.as_fd())?;
            }
            MountStep::DevNode { name } => {
                let dev = self.open_dir("/dev")?;
                rustix::fs::openat(
                    &dev,
                    *name,
                    OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o666),
                )?;
                let target = confined::open_in_root(self.root, &format!("/dev/{name}"))?;
                mount_api::bind(&Path::new("/dev").join(name), target.as_fd(), false)?;
            }
            MountStep::DevPts { tty_gid } => {
                let target = self.dev_dir("pts")?;
                let mut options = vec![
                    FsOption::flag("newinstance"),
                    FsOption::value("ptmxmode", "0666"),
                    FsOption::value("mode", "0620"),
                ];
                if *tty_gid {
                    options.push(FsOption::value("gid", "5"));
                }
                let mnt = mount_api::new_fs(
                    "devpts",
                    &options,
                    MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
                )?;
                mount_api::attach(&mnt, target.as_fd())?;
            }
            MountStep::DevShm => {
                let target = self.dev_dir("shm")?;
                let mnt = mount_api::new_fs(
                    "tmpfs",
                    &[FsOption::value("mode", "1777"), FsOption::value("size", "65536k")],
                    NOSUID_NODEV_NOEXEC,
                )?;
                mount_api::attach(&mnt, target.as_fd())?;
            }
            MountStep::DevMqueue => {
                let target = self.dev_dir("mqueue")?;
                match mount_api::new_fs("mqueue", &[], NOSUID_NODEV_NOEXEC) {
                    Ok(mnt) => mount_api::attach(&mnt, target.as_fd())?,
                    // Not every kernel has POSIX message queues; nothing needs them to build.
                    Err(Errno::NODEV) => self.warnings.push("no mqueue filesystem".into()),
                    Err(err) => return Err(err.into()),
                }
            }
            MountStep::DevSymlink { name, to } => {
                let dev = self.open_dir("/dev")?;
                rustix::fs::symlinkat(*to, &dev, *name)?;
            }
            MountStep::Sys { namespaced } => self.mount_sys(*namespaced)?,
            MountStep::Mask { path } => {
                let target = match confined::open_in_root(self.root, path) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(err) => return Err(err.into()),
                };
                if rustix::fs::fstat(&target)?.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    let mnt = mount_api::new_fs(
                        "tmpfs",
                        &[],
                        NOSUID_NODEV_NOEXEC | MountAttrFlags::MOUNT_ATTR_RDONLY,
                    )?;
                    mount_api::attach(&mnt, target.as_fd())?;
                } else {
                    mount_api::bind(Path::new("/dev/null"), target.as_fd(), false)?;
                }
            }
            MountStep::ReadOnly { path } => match confined::open_in_root(self.root, path) {
                Ok(target) => mount_api::make_readonly(target.as_fd())?,
                Err(Errno::NOENT) => {}
                Err(err) => return Err(err.into()),
            },
            MountStep::Bind { source, target, readonly } => {
                let kind = if source.is_dir() { TargetKind::Dir } else { TargetKind::File };
                let target = self.target(target, kind)?;
                mount_api::bind(source, target.as_fd(), *readonly)?;
            }
            MountStep::Overlay { lower, upper, work, target: path, userxattr } => {
                let target = self.target(path, TargetKind::Dir)?;
                let overlaid =
                    super::rootfs::overlay(std::slice::from_ref(lower), upper, work, *userxattr)
                        .and_then(|mnt| mount_api::attach(&mnt, target.as_fd()));
                if let Err(errno) = overlaid {
                    // Where overlayfs refuses the scratch directory's filesystem, as it does
                    // the rootfs's: the writes are thrown away either way, so a copy will do.
                    let copy = work.join("copy");
                    super::copy::copy_merged(std::slice::from_ref(lower), &copy)
                        .map_err(StepError::Wire)?;
                    mount_api::bind(&copy, target.as_fd(), false)?;
                    self.warnings.push(format!(
                        "writable bind mount on {path}: overlay unavailable ({}), using a copy",
                        std::io::Error::from(errno)
                    ));
                }
            }
            MountStep::Tmpfs { target, size, mode } => {
                let target = self.target(target, TargetKind::Dir)?;
                let mut options = vec![FsOption::value("mode", format!("{mode:o}"))];
                if let Some(size) = size {
                    options.push(FsOption::value("size", size.to_string()));
                }
                let mnt = mount_api::new_fs(
                    "tmpfs",
                    &options,
                    MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
                )?;
                mount_api::attach(&mnt, target.as_fd())?;
            }
        }
        Ok(())
    }

    /// A directory inside the `/dev` tmpfs: never a stub, the tmpfs is not part of the rootfs.
    fn dev_dir(&self, name: &str) -> Result<std::os::fd::OwnedFd, StepError> {
        let dev = self.open_dir("/dev")?;
        match rustix::fs::mkdirat(&dev, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => return Err(err.into()),
        }
        Ok(confined::open_in_root(self.root, &format!("/dev/{name}"))?)
    }

    fn open_dir(&self, path: &str) -> Result<std::os::fd::OwnedFd, StepError> {
        let fd = confined::open_in_root(self.root, path)?;
        // O_PATH descriptors cannot be written through; reopen the directory for *at calls.
        Ok(rustix::fs::openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn mount_sys(&mut self, namespaced: bool) -> Result<(), StepError> {
        let target = self.target("/sys", TargetKind::Dir)?;
        let ro = NOSUID_NODEV_NOEXEC | MountAttrFlags::MOUNT_ATTR_RDONLY;
        match mount_api::new_fs("sysfs", &[], ro) {
            Ok(mnt) => return Ok(mount_api::attach(&mnt, target.as_fd())?),
            Err(Errno::PERM) if !namespaced => {}
            Err(err) => return Err(err.into()),
        }
        // The host network namespace is not ours: a new sysfs is refused. Bind the host's
        // /sys read-only instead (runc's rootless behaviour).
        let bound = mount_api::clone_tree(Path::new("/sys")).and_then(|tree| {
            mount_api::set_attrs(tree.as_fd(), ro)?;
            mount_api::attach(&tree, target.as_fd())
        });
        if let Err(err) = bound {
            self.warnings
                .push(format!("/sys left empty: cannot mount sysfs nor bind the host's: {err}"));
        }
        Ok(())
    }
}

/// Why the kernel refused a new procfs (EPERM): in a user namespace it grants one only when
/// a procfs of the same pid namespace is already fully visible in this mount namespace, and
/// container runtimes cover parts of the container's `/proc` (`/proc/kcore`, `/proc/keys`,
/// ... — Docker's, podman's and Kubernetes' default "masked paths"). Say so, with the
/// settings that lift the masks, when that is the case.
fn proc_refused() -> StepError {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(mountinfo) => match covered_proc_paths(&mountinfo) {
            covered if !covered.is_empty() => StepError::Wire(WireError::ProcMasked { covered }),
            _ => StepError::Errno(Errno::PERM),
        },
        Err(_) => StepError::Errno(Errno::PERM),
    }
}

/// Mount points below `/proc` in a `/proc/self/mountinfo` text: what covers parts of this
/// mount namespace's `/proc`, masks (anything but procfs) before read-only re-binds of procfs
/// itself. `binfmt_misc` (and its automounter) sit on a directory procfs keeps empty for
/// them, which the kernel does not count as hiding anything.
pub fn covered_proc_paths(mountinfo: &str) -> Vec<String> {
    let mut covered: Vec<(bool, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let mount_point = line.split(' ').nth(4)?;
            let fs_type = line.split(" - ").nth(1)?.split(' ').next()?;
            let under_proc = mount_point.starts_with("/proc/");
            (under_proc && !matches!(fs_type, "binfmt_misc" | "autofs"))
                .then(|| (fs_type == "proc", mount_point.replace("\\040", " ")))
        })
        .collect();
    covered.sort_by_key(|(is_proc, _)| *is_proc);
    covered.into_iter().map(|(_, path)| path).collect()
}

/// A step failed either with a bare errno (wrapped with the step's description) or with an
/// already-specific error.
enum StepError {
    Errno(Errno),
    Wire(WireError),
}

impl From<Errno> for StepError {
    fn from(errno: Errno) -> Self {
        StepError::Errno(errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{ProcessSpec, RootfsModeRequest, RootfsSpec};

    fn spec(network: NetworkMode, mounts: Vec<Mount>) -> SandboxSpec {
        SandboxSpec {
            rootfs: RootfsSpec {
                lowers: vec![],
                upper: "/u".into(),
                work: "/w".into(),
                mode: RootfsModeRequest::Auto,
            },
            process: ProcessSpec {
                argv: vec!["true".into()],
                env: vec![],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                no_new_privs: false,
            },
            hostname: "kiln".into(),
            network,
            mounts,
        }
    }

    fn ctx() -> MountContext {
        MountContext {
            tty_gid_mapped: false,
            hosts_file: "/s/hosts".into(),
            resolv_conf: "/s/resolv.conf".into(),
            overlay_dirs: vec![("/s/o0/upper".into(), "/s/o0/work".into())],
        }
    }

    #[test]
    fn standard_mounts_come_first_in_dependency_order() {
        let steps = plan(&spec(NetworkMode::Host, vec![]), &ctx());
        let targets: Vec<String> = steps.iter().map(|s| s.describe().1).collect();
        let pos = |t: &str| targets.iter().position(|x| x == t).unwrap();
        assert_eq!(pos("/proc"), 0);
        assert!(pos("/dev") < pos("/dev/null"));
        assert!(pos("/dev/null") < pos("/dev/pts"));
        assert!(pos("/sys") < pos("/sys/firmware"));
        assert!(pos("/proc") < pos("/proc/kcore"));
        assert_eq!(targets[targets.len() - 2..], ["/etc/hosts", "/etc/resolv.conf"]);
        assert!(steps.contains(&MountStep::Sys { namespaced: false }));
        assert!(steps.contains(&MountStep::DevPts { tty_gid: false }));
        assert!(steps.contains(&MountStep::Bind {
            source: "/s/hosts".into(),
            target: "/etc/hosts".into(),
            readonly: true
        }));
        assert_eq!(steps.len(), 2 + 6 + 3 + 6 + 1 + 12 + 5 + 2);
    }

    #[test]
    fn covered_proc_paths_are_the_mounts_below_proc_but_binfmt_misc() {
        let mountinfo = "\
70 47 254:0 /c/rootfs / rw,relatime - ext4 /dev/vda rw
73 70 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
48 73 0:42 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
52 73 0:46 / /proc/acpi ro,relatime - tmpfs tmpfs ro
53 73 0:43 /null /proc/keys rw,nosuid,noexec - tmpfs tmpfs rw,mode=755
54 73 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw,mode=755
55 73 0:50 / /proc/sys/fs/binfmt_misc rw,relatime - autofs systemd-1 rw,fd=32
56 55 0:51 / /proc/sys/fs/binfmt_misc rw,relatime - binfmt_misc binfmt_misc rw
71 70 0:22 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw
72 70 0:23 / /processes rw - tmpfs tmpfs rw
";
        assert_eq!(
            covered_proc_paths(mountinfo),
            ["/proc/acpi", "/proc/keys", "/proc/kcore", "/proc/bus"]
        );
        assert!(covered_proc_paths("73 70 0:42 / /proc rw - proc proc rw\n").is_empty());
    }

    #[test]
    fn spec_mounts_follow_in_order_with_their_options() {
        let mounts = vec![
            Mount::Tmpfs { target: "/tmp".into(), size: Some(1 << 20), mode: None },
            Mount::BindOverlay { source: "/ctx".into(), target: "/src".into() },
            Mount::Bind { source: "/cache".into(), target: "/root/.cache".into(), readonly: false },
        ];
        let steps = plan(&spec(NetworkMode::None, mounts), &ctx());
        assert!(steps.contains(&MountStep::Sys { namespaced: true }));
        assert_eq!(
            steps[steps.len() - 3..],
            [
                MountStep::Tmpfs { target: "/tmp".into(), size: Some(1 << 20), mode: 0o1777 },
                MountStep::Overlay {
                    lower: "/ctx".into(),
                    upper: "/s/o0/upper".into(),
                    work: "/s/o0/work".into(),
                    target: "/src".into(),
                    userxattr: true
                },
                MountStep::Bind {
                    source: "/cache".into(),
                    target: "/root/.cache".into(),
                    readonly: false
                },
            ]
        );
    }
}
