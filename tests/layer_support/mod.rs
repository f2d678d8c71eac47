//! Helpers shared by the `layer_*` integration tests: building trees with exact metadata,
//! reading tars back, crafting raw (hostile) tar entries, and describing trees for comparison.
#![allow(dead_code)]

use rustix::fs::{AtFlags, Timespec, Timestamps};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `uid:gid` of the test process: the owner of whatever it makes (and of unpacked entries
/// whose tar owner it may not set).
pub fn me() -> String {
    format!("{}:{}", rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
}

/// True when tests that need privileges or kernel features must not be skipped.
pub fn e2e_required() -> bool {
    std::env::var("KILN_E2E").is_ok_and(|v| v == "1")
}

/// Skips (returns true) with a message, unless KILN_E2E=1 makes the test mandatory.
pub fn skip(test: &str, why: &str) -> bool {
    if e2e_required() {
        panic!("{test}: {why} (KILN_E2E=1 requires it)");
    }
    eprintln!("skipping {test}: {why} (set KILN_E2E=1 to require it)");
    true
}

pub fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec { tv_sec: secs, tv_nsec: 0 };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps { last_access: t, last_modification: t },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

pub fn write_file(path: &Path, content: &[u8], mode: u32, mtime: i64) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, mtime);
}

pub fn make_dir(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// One tar entry as read back: name, type byte, mode, uid, gid, mtime, size, link, xattrs, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarItem {
    pub name: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub data: Vec<u8>,
}

/// Reads an uncompressed tar with the `tar` crate (reading only; never its unpack).
pub fn read_tar(bytes: &[u8]) -> Vec<TarItem> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let h = entry.header().clone();
        let link = entry.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                if let Some(n) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((n.to_string(), r.value_bytes().to_vec()));
                }
            }
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push(TarItem {
            name,
            kind: char::from(h.entry_type().as_byte()),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            xattrs,
            data,
        });
    }
    out
}

pub fn names(items: &[TarItem]) -> Vec<&str> {
    items.iter().map(|i| i.name.as_str()).collect()
}

/// A USTAR header block for a crafted entry, with the raw name and link bytes as given
/// (the `tar` crate's builder refuses `..` and absolute names; hostile tars need them).
pub fn raw_header(
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    size: u64,
    mode: u32,
) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().unwrap();
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h.set_size(size);
    h.set_cksum();
    *h.as_bytes()
}

/// A crafted entry: raw name, type, raw link target, content.
pub type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// Builds a tar from `(name, kind, link, data)` entries, names and links taken raw.
pub fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mode = if kind.is_dir() { 0o755 } else { 0o644 };
        out.extend_from_slice(&raw_header(name, *kind, link, data.len() as u64, mode));
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// What a tree holds, path by path: type, mode, owner, content or link target, xattrs
/// (user.* and security.capability), and a hard link group id (smallest path sharing the inode).
pub fn describe(root: &Path, with_mtime: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut paths = Vec::new();
    collect(root, root, &mut paths);
    paths.sort();
    for rel in paths {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            format!("file {:?}", String::from_utf8_lossy(&fs::read(&path).unwrap()))
        } else if ft.is_char_device() {
            format!("char {}:{}", rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
        } else if ft.is_block_device() {
            format!("block {}:{}", rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "other".to_string()
        };
        let link_group = if !ft.is_dir() && md.nlink() > 1 {
            let first = inodes.entry((md.dev(), md.ino())).or_insert_with(|| rel.clone());
            format!(" link-group={first}")
        } else {
            String::new()
        };
        let mtime = if with_mtime && !ft.is_symlink() {
            format!(" mtime={}", md.mtime())
        } else {
            String::new()
        };
        let xattrs = xattr_list(&path);
        out.insert(
            rel.clone(),
            format!(
                "{what} mode={:o} owner={}:{}{link_group}{mtime}{xattrs}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            ),
        );
    }
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            collect(root, &path, out);
        }
    }
}

fn xattr_list(path: &Path) -> String {
    let mut buf = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut buf[..]) else { return String::new() };
    let mut names: Vec<&[u8]> = buf[..n].split(|b| *b == 0).filter(|n| !n.is_empty()).collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let mut value = vec![0u8; 4096];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        out.push_str(&format!(
            " xattr:{}={:?}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(&value[..len])
        ));
    }
    out
}

/// Reads all of `reader` into a vector.
pub fn read_all(mut reader: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    out
}
