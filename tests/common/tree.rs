//! Building file trees from JSON descriptions, and listing trees as text, for the COPY tests
//! and the comparisons of unpacked images.
//!
//! A tree is a list of entries, each a JSON object named by its kind:
//!
//! ```json
//! {"dir": "a/b", "mode": "0700", "owner": "1:2", "mtime": 5, "xattrs": {"user.k": "v"}, "opaque": true}
//! {"file": "a/f", "content": "text", "mode": "0644"}
//! {"symlink": "a/l", "target": "f"}        {"hardlink": "a/g", "target": "a/f"}
//! {"whiteout": "a/gone"}   {"fifo": "a/p"}   {"socket": "a/s"}
//! {"archive": "t.tar.gz", "compression": "gzip", "entries": [ ...tar entries... ]}
//! ```
//!
//! Defaults: mode 0755 (dirs) or 0644, owner 0:0, mtime 1000000000. Directories made
//! implicitly get the defaults. `$HOST` in a symlink target is replaced by the host
//! directory of the test (to check nothing escapes to it).
//!
//! A listing has one line per entry below the root, sorted by path:
//! `d 0755 0:0 1000000000 a/b`, `f 0644 0:0 1000000000 a/f "text"`,
//! `l 0:0 1000000000 a/l -> f`, `h a/g => a/f` (a second name of a file), `p 0644 0:0 ... a/p`,
//! with ` xattr user.k=v` appended per xattr.

use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

pub const DEFAULT_MTIME: i64 = 1_000_000_000;

/// Whether the test may run (root is needed to chown to any id).
pub fn have_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("KILN_E2E").is_some_and(|v| v == "1") {
        panic!("{test} needs root (KILN_E2E=1 makes it mandatory)");
    }
    eprintln!("skipping {test}: needs root");
    false
}

fn parse_owner(text: &str) -> (u32, u32) {
    let (u, g) = text.split_once(':').expect("owner is uid:gid");
    (u.parse().unwrap(), g.parse().unwrap())
}

fn mode_of(entry: &Value, default: u32) -> u32 {
    entry["mode"].as_str().map(|m| u32::from_str_radix(m, 8).unwrap()).unwrap_or(default)
}

/// Metadata applied at the end: path, mode (none for symlinks), owner, mtime, is a symlink.
type Meta = (std::path::PathBuf, Option<u32>, (u32, u32), i64, bool);

/// Builds the tree `entries` in `root` (which must exist).
pub fn build(root: &Path, entries: &[Value], host: &Path) {
    // Metadata is applied after everything exists, deepest first, so creating children
    // does not disturb a directory's mtime.
    let mut metas: Vec<Meta> = Vec::new();
    for entry in entries {
        let obj = entry.as_object().expect("entry is an object");
        let (kind, path) = obj
            .iter()
            .find(|(k, _)| {
                ["dir", "file", "symlink", "hardlink", "whiteout", "fifo", "socket", "archive"]
                    .contains(&k.as_str())
            })
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .expect("entry has a kind");
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        let owner = parse_owner(entry["owner"].as_str().unwrap_or("0:0"));
        let mtime = entry["mtime"].as_i64().unwrap_or(DEFAULT_MTIME);
        match kind {
            "dir" => {
                fs::create_dir_all(&full).unwrap();
                metas.push((full.clone(), Some(mode_of(entry, 0o755)), owner, mtime, false));
                if entry["opaque"].as_bool() == Some(true) {
                    set_xattr(&full, "trusted.overlay.opaque", b"y");
                }
            }
            "file" => {
                let content = entry["content"].as_str().unwrap_or("").as_bytes();
                fs::write(&full, compress(content, entry["compressed"].as_str().unwrap_or("none")))
                    .unwrap();
                metas.push((full.clone(), Some(mode_of(entry, 0o644)), owner, mtime, false));
            }
            "symlink" => {
                let target =
                    entry["target"].as_str().unwrap().replace("$HOST", host.to_str().unwrap());
                std::os::unix::fs::symlink(target, &full).unwrap();
                metas.push((full.clone(), None, owner, mtime, true));
            }
            "hardlink" => {
                fs::hard_link(root.join(entry["target"].as_str().unwrap()), &full).unwrap();
            }
            "whiteout" => mknod(&full, rustix::fs::FileType::CharacterDevice, 0),
            "fifo" => {
                mknod(&full, rustix::fs::FileType::Fifo, 0);
                metas.push((full.clone(), Some(mode_of(entry, 0o644)), owner, mtime, false));
            }
            "socket" => {
                let listener = std::os::unix::net::UnixListener::bind(&full).unwrap();
                drop(listener);
                metas.push((full.clone(), Some(mode_of(entry, 0o755)), owner, mtime, false));
            }
            "archive" => {
                let bytes = archive(entry);
                fs::write(&full, bytes).unwrap();
                metas.push((full.clone(), Some(mode_of(entry, 0o644)), owner, mtime, false));
            }
            _ => unreachable!(),
        }
        if let Some(xattrs) = entry["xattrs"].as_object() {
            for (name, value) in xattrs {
                set_xattr(&full, name, value.as_str().unwrap().as_bytes());
            }
        }
    }
    // Implicit directories (and the root): defaults.
    let explicit: Vec<_> = metas.iter().map(|m| m.0.clone()).collect();
    for dir in walk_dirs(root).into_iter().chain([root.to_path_buf()]) {
        if !explicit.contains(&dir) {
            metas.push((dir, Some(0o755), (0, 0), DEFAULT_MTIME, false));
        }
    }
    metas.sort_by_key(|m| std::cmp::Reverse(m.0.components().count()));
    for (path, mode, (uid, gid), mtime, link) in metas {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).unwrap();
        if let Some(mode) = mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        let t = rustix::fs::Timespec { tv_sec: mtime, tv_nsec: 0 };
        let flags =
            if link { rustix::fs::AtFlags::SYMLINK_NOFOLLOW } else { rustix::fs::AtFlags::empty() };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &rustix::fs::Timestamps { last_access: t, last_modification: t },
            flags,
        )
        .unwrap();
    }
}

fn walk_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for item in fs::read_dir(root).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_dir() {
            out.push(item.path());
            out.extend(walk_dirs(&item.path()));
        }
    }
    out
}

fn mknod(path: &Path, kind: rustix::fs::FileType, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o644),
        dev as _,
    )
    .unwrap();
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, OsStr::new(name), value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// A tar archive (compressed as asked) from `{"entries": [...], "compression": "..."}`.
pub fn archive(spec: &Value) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in spec["entries"].as_array().expect("archive entries") {
        let mut header = tar::Header::new_ustar();
        let (uid, gid) = parse_owner(entry["owner"].as_str().unwrap_or("0:0"));
        header.set_uid(uid as u64);
        header.set_gid(gid as u64);
        header.set_mtime(entry["mtime"].as_i64().unwrap_or(DEFAULT_MTIME) as u64);
        if let Some(path) = entry["dir"].as_str() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode_of(entry, 0o755));
            header.set_size(0);
            builder.append_data(&mut header, path, std::io::empty()).unwrap();
        } else if let Some(path) = entry["file"].as_str() {
            let content = entry["content"].as_str().unwrap_or("").as_bytes();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode_of(entry, 0o644));
            header.set_size(content.len() as u64);
            builder.append_data(&mut header, path, content).unwrap();
        } else if let Some(path) = entry["symlink"].as_str() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, path, entry["target"].as_str().unwrap()).unwrap();
        } else if let Some(path) = entry["hardlink"].as_str() {
            header.set_entry_type(tar::EntryType::Link);
            header.set_mode(mode_of(entry, 0o644));
            header.set_size(0);
            builder.append_link(&mut header, path, entry["target"].as_str().unwrap()).unwrap();
        } else if let Some(path) = entry["raw_name"].as_str() {
            // A name the builder would refuse (`..`, absolute): written into the header as is.
            let content = entry["content"].as_str().unwrap_or("").as_bytes();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(content.len() as u64);
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, content).unwrap();
        } else {
            panic!("unknown archive entry {entry}");
        }
    }
    let tar = builder.into_inner().unwrap();
    compress(&tar, spec["compression"].as_str().unwrap_or("none"))
}

pub fn compress(data: &[u8], how: &str) -> Vec<u8> {
    match how {
        "none" => data.to_vec(),
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bzip2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        other => panic!("unknown compression {other}"),
    }
}

/// The listing of the tree under `root` (see the module docs), with the host directory's
/// path (absolute, or relative as it appears inside the root) written `{HOST}`.
pub fn listing(root: &Path, host: &Path, only_files: bool) -> String {
    let lines = listing_lines(root, Times::All);
    let host_abs = host.to_str().unwrap();
    let host_rel = host_abs.trim_start_matches('/');
    lines
        .into_iter()
        .filter(|line| !only_files || !line.starts_with("d "))
        .map(|line| line.replace(host_abs, "{HOST}").replace(host_rel, "{HOST}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which modification times a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    All,
    /// Not those of directories (they change while a tree is unpacked into them).
    NotDirs,
    /// None: for trees made by different tools at different times.
    None,
}

/// The lines of the listing of the tree under `root` (see the module docs), with the
/// modification times `times` asks for (a line without one lacks that field).
pub fn listing_lines(root: &Path, times: Times) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    list_into(root, root, times, &mut lines, &mut inodes);
    lines
}

fn list_into(
    root: &Path,
    dir: &Path,
    times: Times,
    lines: &mut Vec<String>,
    inodes: &mut HashMap<(u64, u64), String>,
) {
    let mut items: Vec<_> = fs::read_dir(dir).unwrap().map(|i| i.unwrap().path()).collect();
    items.sort();
    for path in items {
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let mtime = match times {
            Times::All => format!(" {}", md.mtime()),
            Times::NotDirs if !ft.is_dir() => format!(" {}", md.mtime()),
            _ => String::new(),
        };
        let meta = format!("{:04o} {}:{}{mtime}", md.mode() & 0o7777, md.uid(), md.gid());
        let mut line = if ft.is_dir() {
            format!("d {meta} {rel}")
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            format!("l {}:{}{mtime} {rel} -> {}", md.uid(), md.gid(), target.display())
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
                    lines.push(format!("h {rel} => {first}"));
                    continue;
                }
                inodes.insert((md.dev(), md.ino()), rel.clone());
            }
            let content = fs::read(&path).unwrap();
            let text = describe(&content);
            format!("f {meta} {rel} {text}")
        } else if ft.is_fifo() {
            format!("p {meta} {rel}")
        } else if ft.is_char_device() {
            format!("c {meta} {rel} {}", md.rdev())
        } else {
            format!("? {meta} {rel}")
        };
        if !ft.is_symlink() {
            for (name, value) in xattrs(&path) {
                line.push_str(&format!(" xattr {name}={value}"));
            }
        }
        lines.push(line);
        if ft.is_dir() {
            list_into(root, &path, times, lines, inodes);
        }
    }
}

/// Short text as a JSON string; anything else (binary, long) as its size and digest.
fn describe(content: &[u8]) -> String {
    match std::str::from_utf8(content) {
        Ok(text)
            if text.len() <= 200
                && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            serde_json::to_string(text).unwrap()
        }
        _ => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(content);
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("<{} bytes sha256:{hex}…>", content.len())
        }
    }
}

fn xattrs(path: &Path) -> Vec<(String, String)> {
    let size = rustix::fs::llistxattr_query(path).unwrap_or(0);
    if size == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).unwrap();
    let mut out = Vec::new();
    for name in buf[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let size = rustix::fs::lgetxattr_query(path, name).unwrap();
        let mut value = vec![0u8; size];
        let n = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        out.push((name.to_string(), String::from_utf8_lossy(&value[..n]).into_owned()));
    }
    out.sort();
    out
}
