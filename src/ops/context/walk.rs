//! The walk of a context directory: opening its root once, following the symlinks on the way
//! to the include paths, and visiting the tree in sorted order with both filters applied.
//!
//! Invariants:
//! - Every directory is opened relative to its parent's descriptor with `O_NOFOLLOW`, and
//!   every entry is `statx`ed relative to its directory without following symlinks, so the walk
//!   never leaves the context, even if the tree changes while it runs.
//! - Output order is depth-first with the entries of each directory sorted by name bytes; a
//!   directory comes before everything beneath it, so a directory's subtree is one contiguous
//!   run of entries.
//! - A directory that is walked but not selected itself (on the way to an include path, or
//!   excluded with a `!` pattern possibly re-including something beneath) is output exactly
//!   when something beneath it is, as fsutil sends the parents of what it sends.
//! - Entries that vanish between the listing and their `statx` are skipped (they were deleted
//!   during the walk); a directory that cannot be read for lack of permission is an error only
//!   if it is selected itself (fsutil ignores permission errors on paths it skips).

use super::ContextError;
use super::entry::{SkippedEntry, SpecialKind};
use super::filter::{Component, ExcludeState, IncludeFilter, Inclusion};
use super::paths::resolve_link_target;
use super::stat_cache::StatKey;
use kiln_frontend::dockerignore::IgnoreFile;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, StatxFlags};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many symlinks one include path may go through (BuildKit's `maxSymlinkLimit`).
pub const MAX_SYMLINKS: u32 = 255;

/// One entry as the walk saw it, before its content is hashed.
#[derive(Debug)]
pub struct Walked {
    pub path: PathBuf,
    pub kind: WalkedKind,
    pub stat: StatKey,
    pub nlink: u64,
}

#[derive(Debug)]
pub enum WalkedKind {
    Directory,
    File,
    Symlink(PathBuf),
}

/// What a walk produced.
#[derive(Debug, Default)]
pub struct WalkOutput {
    pub entries: Vec<Walked>,
    pub skipped: Vec<SkippedEntry>,
}

/// Resolves the context directory once (relative paths and symlinks included) and opens it.
pub fn open_root(dir: &Path) -> Result<(PathBuf, OwnedFd), ContextError> {
    let root = std::fs::canonicalize(dir).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => ContextError::MissingDir { path: dir.to_path_buf() },
        _ => ContextError::io("resolve the build context", dir.to_path_buf(), err),
    })?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(&root, flags, Mode::empty()).map_err(|errno| match errno {
        rustix::io::Errno::NOTDIR => ContextError::NotADirectory { path: dir.to_path_buf() },
        errno => ContextError::io("open the build context", root.clone(), errno.into()),
    })?;
    Ok((root, fd))
}

/// `lstat` of `name` inside the directory `dir_fd`.
fn stat_at(dir_fd: BorrowedFd<'_>, name: &Path) -> std::io::Result<(StatKey, u64)> {
    let stat = rustix::fs::statx(dir_fd, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)?;
    let nanos = |t: rustix::fs::StatxTimestamp| {
        t.tv_sec.saturating_mul(1_000_000_000).saturating_add(i64::from(t.tv_nsec))
    };
    let key = StatKey {
        dev: (u64::from(stat.stx_dev_major) << 32) | u64::from(stat.stx_dev_minor),
        ino: stat.stx_ino,
        size: stat.stx_size,
        mtime_ns: nanos(stat.stx_mtime),
        ctime_ns: nanos(stat.stx_ctime),
        mode: u32::from(stat.stx_mode),
    };
    Ok((key, u64::from(stat.stx_nlink)))
}

fn read_link_at(dir_fd: BorrowedFd<'_>, name: &Path) -> std::io::Result<PathBuf> {
    let target = rustix::fs::readlinkat(dir_fd, name, Vec::new())?;
    Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
}

/// The names in a directory (without `.` and `..`), sorted by bytes.
fn sorted_names(dir_fd: BorrowedFd<'_>) -> std::io::Result<Vec<Vec<u8>>> {
    let mut dir = Dir::read_from(dir_fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

fn open_dir_at(dir_fd: BorrowedFd<'_>, name: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir_fd, name, flags, Mode::empty())?)
}

/// Adds to `filter` the targets of the symlinks met on the way to its paths (fsutil's
/// `FollowLinks`): COPY follows a symlink named as a source or crossed on the way to one, so
/// what it points to must be in the snapshot too. Targets are resolved inside the context.
/// Paths that do not exist are left as they are; their COPY will fail to find them.
pub fn follow_include_links(root_fd: BorrowedFd<'_>, filter: &mut IncludeFilter) {
    let mut queue: VecDeque<(Vec<Component>, u32)> =
        filter.paths().iter().map(|path| (path.clone(), 0)).collect();
    let mut expanded: Vec<Vec<Component>> = Vec::new();
    while let Some((path, hops)) = queue.pop_front() {
        if filter.includes_everything() {
            return;
        }
        if expanded.contains(&path) {
            continue;
        }
        let mut found = Vec::new();
        expand_links(root_fd, PathBuf::new(), &path, hops, &mut found);
        expanded.push(path);
        for (target, follow) in found {
            filter.push(target.clone());
            if let Follow::Expand(hops) = follow {
                queue.push_back((target, hops));
            }
        }
    }
}

/// What to do with a path found by [`expand_links`] besides including it.
enum Follow {
    /// Look for symlinks on its way too; it is this many links away from an include path.
    Expand(u32),
    /// Nothing: it is a symlink crossed on the way, included as a link.
    Keep,
}

/// Walks `rest` from `current` on disk; for each symlink met, records its resolved target
/// followed by the components after it.
fn expand_links(
    root_fd: BorrowedFd<'_>,
    mut current: PathBuf,
    rest: &[Component],
    hops: u32,
    found: &mut Vec<(Vec<Component>, Follow)>,
) {
    let link_target = |link: &Path, after: &[Component], found: &mut Vec<_>| {
        if hops >= MAX_SYMLINKS {
            return;
        }
        let Ok(target) = read_link_at(root_fd, link) else { return };
        let mut path: Vec<Component> =
            resolve_link_target(link, &target).into_iter().map(Component::Literal).collect();
        path.extend_from_slice(after);
        found.push((path, Follow::Expand(hops + 1)));
        if !after.is_empty() {
            // The link itself is read on the way (fsutil includes it too).
            let link = link.iter().map(|c| Component::Literal(c.as_bytes().to_vec())).collect();
            found.push((link, Follow::Keep));
        }
    };
    for (i, component) in rest.iter().enumerate() {
        match component {
            Component::Literal(name) => {
                let next = current.join(OsStr::from_bytes(name));
                let Ok((stat, _)) = stat_at(root_fd, &next) else { return };
                if FileType::from_raw_mode(stat.mode) == FileType::Symlink {
                    link_target(&next, &rest[i + 1..], found);
                    return;
                }
                current = next;
            }
            Component::Wildcard(wildcard) => {
                let dir = if current.as_os_str().is_empty() {
                    rustix::io::dup(root_fd).map_err(std::io::Error::from)
                } else {
                    open_dir_at(root_fd, &current)
                };
                let Ok(names) = dir.and_then(|fd| sorted_names(fd.as_fd())) else { return };
                for name in names {
                    if !wildcard.matches(&String::from_utf8_lossy(&name)) {
                        continue;
                    }
                    let child = current.join(OsStr::from_bytes(&name));
                    let Ok((stat, _)) = stat_at(root_fd, &child) else { continue };
                    match FileType::from_raw_mode(stat.mode) {
                        FileType::Symlink => link_target(&child, &rest[i + 1..], found),
                        FileType::Directory if i + 1 < rest.len() => {
                            expand_links(root_fd, child, &rest[i + 1..], hops, found)
                        }
                        _ => {}
                    }
                }
                return;
            }
        }
    }
}

/// One directory being walked.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    depth: usize,
    names: Vec<Vec<u8>>,
    next: usize,
    inclusion: Inclusion,
    exclusion: ExcludeState,
    /// The directory's own entry while it is not (yet) output, and the slot it goes in.
    deferred: Option<(usize, Walked)>,
}

/// Walks the tree under `root_fd` (the directory `root`) and returns the selected entries.
pub fn walk(
    root_fd: BorrowedFd<'_>,
    root: &Path,
    ignore: &IgnoreFile,
    include: &IncludeFilter,
) -> Result<WalkOutput, ContextError> {
    let filter_exclusions = !ignore.patterns().is_empty();
    let root_names = sorted_names(root_fd)
        .map_err(|err| ContextError::io("read directory", root.to_path_buf(), err))?;
    let root_dup = rustix::io::dup(root_fd)
        .map_err(|err| ContextError::io("open directory", root.to_path_buf(), err.into()))?;
    let mut stack = vec![Frame {
        fd: root_dup,
        path: PathBuf::new(),
        depth: 0,
        names: root_names,
        next: 0,
        inclusion: include.root(),
        exclusion: ExcludeState::root(ignore),
        deferred: None,
    }];
    // `None` slots are directories that ended up with nothing beneath them to output.
    let mut out: Vec<Option<Walked>> = Vec::new();
    let mut skipped = Vec::new();

    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.get(frame.next) else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let name = PathBuf::from(OsStr::from_bytes(name));
        let path = frame.path.join(&name);
        let inclusion = include.child(&frame.inclusion, frame.depth, name.as_os_str().as_bytes());
        if inclusion == Inclusion::Outside {
            continue;
        }
        let exclusion = if filter_exclusions {
            frame.exclusion.child(ignore, &path.to_string_lossy())
        } else {
            ExcludeState::default()
        };
        let selected = inclusion == Inclusion::Included && !exclusion.excluded;
        let (stat, nlink) = match stat_at(frame.fd.as_fd(), &name) {
            Ok(found) => found,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(ContextError::io("stat", root.join(&path), err)),
        };
        let kind = match FileType::from_raw_mode(stat.mode) {
            FileType::Directory => WalkedKind::Directory,
            FileType::RegularFile => WalkedKind::File,
            FileType::Symlink => match read_link_at(frame.fd.as_fd(), &name) {
                Ok(target) => WalkedKind::Symlink(target),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(ContextError::io("read link", root.join(&path), err)),
            },
            special => {
                if selected {
                    let kind = match special {
                        FileType::Socket => SpecialKind::Socket,
                        FileType::Fifo => SpecialKind::Fifo,
                        FileType::CharacterDevice => SpecialKind::CharDevice,
                        _ => SpecialKind::BlockDevice,
                    };
                    skipped.push(SkippedEntry { path, kind });
                }
                continue;
            }
        };
        let is_dir = matches!(kind, WalkedKind::Directory);
        let entry = Walked { path, kind, stat, nlink };

        if !is_dir {
            if selected {
                emit(&mut stack, &mut out, entry);
            }
            continue;
        }
        let descend =
            !exclusion.excluded || ignore.may_reinclude_within(&entry.path.to_string_lossy());
        if !selected && !descend {
            continue;
        }
        let fd = match open_dir_at(stack.last().expect("in a frame").fd.as_fd(), &name) {
            Ok(fd) => fd,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) if !selected && err.kind() == std::io::ErrorKind::PermissionDenied => continue,
            Err(err) => {
                return Err(ContextError::io("open directory", root.join(&entry.path), err));
            }
        };
        let names = if descend {
            match sorted_names(fd.as_fd()) {
                Ok(names) => names,
                Err(err) if !selected && err.kind() == std::io::ErrorKind::PermissionDenied => {
                    continue;
                }
                Err(err) => {
                    return Err(ContextError::io("read directory", root.join(&entry.path), err));
                }
            }
        } else {
            Vec::new()
        };
        let path = entry.path.clone();
        let depth = stack.last().expect("in a frame").depth + 1;
        let deferred = if selected {
            emit(&mut stack, &mut out, entry);
            None
        } else {
            out.push(None);
            Some((out.len() - 1, entry))
        };
        stack.push(Frame { fd, path, depth, names, next: 0, inclusion, exclusion, deferred });
    }
    let entries = out.into_iter().flatten().collect();
    Ok(WalkOutput { entries, skipped })
}

/// Outputs `entry`, first outputting the directories above it that were waiting for a
/// reason to appear. Those always form the top of the stack: outputting a directory outputs
/// its waiting parents too.
fn emit(stack: &mut [Frame], out: &mut Vec<Option<Walked>>, entry: Walked) {
    for frame in stack.iter_mut().rev() {
        match frame.deferred.take() {
            Some((slot, dir)) => out[slot] = Some(dir),
            None => break,
        }
    }
    out.push(Some(entry));
}
