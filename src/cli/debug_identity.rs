//! `kiln debug whoami` and `kiln debug touch`: show and exercise the identity the engine runs
//! with (inside kiln's user namespace when started unprivileged, see [`crate::userns`]).
//!
//! Hidden tools for end-to-end tests and for diagnosing a rootless set-up: `whoami` prints
//! the ids, the privilege context and the id maps; `touch` creates a file, a whiteout device
//! or an opaque directory owned by given ids, the way layer unpacking will.

use crate::userns::{self, IdentityContext};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// `kiln debug whoami`: one `key value` line per fact, id maps last.
pub fn whoami() -> anyhow::Result<ExitCode> {
    let context = IdentityContext::detect()?;
    let mut out = String::new();
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    let (euid, egid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    writeln!(out, "uid {uid}\ngid {gid}\neuid {euid}\negid {egid}")?;
    let name = match context {
        IdentityContext::InitialRoot => "initial-root",
        IdentityContext::NestedRoot(_) => "nested-root",
        IdentityContext::Unprivileged => "unprivileged",
    };
    writeln!(out, "context {name}")?;
    writeln!(out, "invoking-uid {}", userns::invoking_uid())?;
    writeln!(out, "overlay-xattrs {}", userns::overlay_xattr_prefix())?;
    for (file, key) in [("uid_map", "uid-map"), ("gid_map", "gid-map")] {
        let path = PathBuf::from("/proc/self").join(file);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        for entry in userns::identity::parse_id_map(&text, &path)? {
            writeln!(out, "{key} {} {} {}", entry.container, entry.host, entry.count)?;
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EntryKind {
    /// An empty regular file, mode 0644
    File,
    /// An overlay whiteout: character device 0/0
    Whiteout,
    /// A directory, mode 0755, marked opaque with `<overlay xattr prefix>opaque=y`
    OpaqueDir,
}

#[derive(Debug, Args)]
pub struct TouchArgs {
    /// The entry to create (it must not exist)
    path: PathBuf,
    /// UID:GID to own it
    #[arg(long, default_value = "0:0")]
    owner: String,
    #[arg(long, value_enum, default_value = "file")]
    kind: EntryKind,
}

/// `kiln debug touch`.
pub fn touch(args: &TouchArgs) -> anyhow::Result<ExitCode> {
    let Some((uid, gid)) = args.owner.split_once(':') else {
        bail!("--owner {:?}: expected UID:GID", args.owner);
    };
    let uid: u32 = uid.parse().with_context(|| format!("--owner {:?}: invalid uid", args.owner))?;
    let gid: u32 = gid.parse().with_context(|| format!("--owner {:?}: invalid gid", args.owner))?;
    let path = &args.path;
    let shown = path.display();
    match args.kind {
        EntryKind::File => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(path)
                .with_context(|| format!("create {shown}"))?;
        }
        EntryKind::Whiteout => {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .with_context(|| format!("create whiteout {shown}"))?;
        }
        EntryKind::OpaqueDir => {
            std::fs::create_dir(path).with_context(|| format!("create {shown}"))?;
            let name = format!("{}opaque", userns::overlay_xattr_prefix());
            rustix::fs::lsetxattr(path, &name, b"y", rustix::fs::XattrFlags::empty())
                .with_context(|| format!("set {name} on {shown}"))?;
        }
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {shown} to {uid}:{gid}"))?;
    Ok(ExitCode::SUCCESS)
}
