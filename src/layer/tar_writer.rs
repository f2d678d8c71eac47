//! The deterministic tar writer: turns filesystem entries, whiteouts and opaque markers into
//! tar records with headers kiln sets itself (the `tar` crate only lays out the header block).
//!
//! Invariants of every tar it writes:
//! - entries come in strictly increasing bytewise order of their tar names; the walkers feed
//!   them so and [`TarWriter`] refuses anything else. Parents come before children because a
//!   parent's name (`a/`) is a prefix of its children's (`a/b`).
//! - names are relative, without `./` or `/`; directories end in `/`.
//! - USTAR headers; a PAX extended header (named `././@PaxHeader`, mode 0644, owner 0, mtime 0)
//!   precedes an entry when its name or link name exceeds 100 bytes, an id, size or mtime
//!   exceeds its octal field, or it has xattrs (`SCHILY.xattr.NAME`). Records are in a fixed
//!   order: `path`, `linkpath`, `uid`, `gid`, `size`, `mtime`, then xattrs by name.
//! - uid/gid are container ids (host ids translated through the [`IdMap`]), uname/gname empty,
//!   mode is the permission bits with setuid/setgid/sticky, mtime in whole seconds clamped to
//!   `SOURCE_DATE_EPOCH` when given (`min(mtime, epoch)`), negative mtimes written as 0.
//! - hard links: the first path (in tar order) of a non-directory with several links is written
//!   with its content; later paths of the same `(dev, ino)` become link entries naming it.
//! - no sparse entries; sockets are never written (the walkers skip them).
//! - file bytes are streamed in 64 KiB chunks; a file whose size changes while it is copied is
//!   an error, never a corrupt entry.

use super::error::LayerError;
use super::idmap::IdMap;
use super::xattrs::Xattrs;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const BLOCK: usize = 512;
const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Writes tar records into `out`.
pub(crate) struct TarWriter<W: Write> {
    out: W,
    epoch: Option<i64>,
    id_map: IdMap,
    links: HashMap<(u64, u64), Vec<u8>>,
    last: Vec<u8>,
    buf: Vec<u8>,
}

/// Owner, mode and time of a record, before id translation and clamping.
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

enum Kind<'a> {
    Regular { size: u64, source: Option<&'a Path> },
    Link(&'a [u8]),
    Symlink(&'a [u8]),
    Char(u32, u32),
    Block(u32, u32),
    Directory,
    Fifo,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W, epoch: Option<i64>, id_map: IdMap) -> Self {
        Self {
            out,
            epoch,
            id_map,
            links: HashMap::new(),
            last: Vec::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Writes the entry found at `fs_path` under the tar name `name` (no trailing `/`; one is
    /// added for directories). Sockets are skipped. `xattrs` are the ones to record.
    pub(crate) fn write_fs_entry(
        &mut self,
        name: &[u8],
        fs_path: &Path,
        md: &Metadata,
        xattrs: &Xattrs,
    ) -> Result<(), LayerError> {
        let ft = md.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let uid = self.id_map.uid_to_container(md.uid()).ok_or(LayerError::UnmappedId {
            path: fs_path.to_path_buf(),
            kind: "uid",
            id: md.uid(),
        })?;
        let gid = self.id_map.gid_to_container(md.gid()).ok_or(LayerError::UnmappedId {
            path: fs_path.to_path_buf(),
            kind: "gid",
            id: md.gid(),
        })?;
        let attrs = Attrs { mode: md.mode() & 0o7777, uid, gid, mtime: md.mtime() };
        if ft.is_dir() {
            let mut dir_name = name.to_vec();
            dir_name.push(b'/');
            return self.record(&dir_name, &attrs, Kind::Directory, xattrs);
        }
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                return self.record(name, &attrs, Kind::Link(&first), xattrs);
            }
            self.links.insert(key, name.to_vec());
        }
        let rdev = md.rdev();
        let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let target;
        let kind = if ft.is_file() {
            Kind::Regular { size: md.len(), source: Some(fs_path) }
        } else if ft.is_symlink() {
            target = std::fs::read_link(fs_path)
                .map_err(|source| LayerError::ReadTree { path: fs_path.to_path_buf(), source })?;
            Kind::Symlink(target.as_os_str().as_encoded_bytes())
        } else if ft.is_char_device() {
            Kind::Char(major, minor)
        } else if ft.is_block_device() {
            Kind::Block(major, minor)
        } else {
            Kind::Fifo
        };
        self.record(name, &attrs, kind, xattrs)
    }

    /// Writes an empty regular file record: a whiteout (`.wh.NAME`) or an opaque marker
    /// (`DIR/.wh..wh..opq`). Owner root, mode 0, `mtime` clamped like any other.
    pub(crate) fn write_marker(&mut self, name: &[u8], mtime: i64) -> Result<(), LayerError> {
        let attrs = Attrs { mode: 0, uid: 0, gid: 0, mtime };
        let kind = Kind::Regular { size: 0, source: None };
        self.record(name, &attrs, kind, &Vec::new())
    }

    /// Writes the end-of-archive blocks and returns the sink.
    pub(crate) fn finish(mut self) -> Result<W, LayerError> {
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(LayerError::Write)?;
        Ok(self.out)
    }

    fn record(
        &mut self,
        name: &[u8],
        attrs: &Attrs,
        kind: Kind<'_>,
        xattrs: &Xattrs,
    ) -> Result<(), LayerError> {
        if name <= self.last.as_slice() {
            return Err(LayerError::Unsorted {
                previous: String::from_utf8_lossy(&self.last).into_owned(),
                path: String::from_utf8_lossy(name).into_owned(),
            });
        }
        self.last = name.to_vec();
        let uid = u64::from(attrs.uid);
        let gid = u64::from(attrs.gid);
        let mtime = self.epoch.map_or(attrs.mtime, |e| attrs.mtime.min(e)).max(0) as u64;
        let size = match kind {
            Kind::Regular { size, .. } => size,
            _ => 0,
        };
        let link_name: &[u8] = match kind {
            Kind::Link(t) | Kind::Symlink(t) => t,
            _ => b"",
        };

        let mut pax: Vec<(Vec<u8>, &[u8])> = Vec::new();
        let (uid_s, gid_s, size_s, mtime_s) =
            (uid.to_string(), gid.to_string(), size.to_string(), mtime.to_string());
        if name.len() > 100 {
            pax.push((b"path".to_vec(), name));
        }
        if link_name.len() > 100 {
            pax.push((b"linkpath".to_vec(), link_name));
        }
        if uid > MAX_OCTAL_7 {
            pax.push((b"uid".to_vec(), uid_s.as_bytes()));
        }
        if gid > MAX_OCTAL_7 {
            pax.push((b"gid".to_vec(), gid_s.as_bytes()));
        }
        if size > MAX_OCTAL_11 {
            pax.push((b"size".to_vec(), size_s.as_bytes()));
        }
        if mtime > MAX_OCTAL_11 {
            pax.push((b"mtime".to_vec(), mtime_s.as_bytes()));
        }
        for (key, value) in xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax.push((k, value));
        }
        if !pax.is_empty() {
            self.write_pax(&pax)?;
        }

        let mut header = tar::Header::new_ustar();
        {
            let ustar = header.as_ustar_mut().ok_or_else(|| internal("ustar header"))?;
            let n = name.len().min(100);
            ustar.name[..n].copy_from_slice(&name[..n]);
            let n = link_name.len().min(100);
            ustar.linkname[..n].copy_from_slice(&link_name[..n]);
        }
        header.set_mode(attrs.mode);
        header.set_uid(if uid > MAX_OCTAL_7 { 0 } else { uid });
        header.set_gid(if gid > MAX_OCTAL_7 { 0 } else { gid });
        header.set_size(if size > MAX_OCTAL_11 { 0 } else { size });
        header.set_mtime(if mtime > MAX_OCTAL_11 { 0 } else { mtime });
        let entry_type = match kind {
            Kind::Regular { .. } => tar::EntryType::Regular,
            Kind::Link(_) => tar::EntryType::Link,
            Kind::Symlink(_) => tar::EntryType::Symlink,
            Kind::Char(..) => tar::EntryType::Char,
            Kind::Block(..) => tar::EntryType::Block,
            Kind::Directory => tar::EntryType::Directory,
            Kind::Fifo => tar::EntryType::Fifo,
        };
        header.set_entry_type(entry_type);
        if let Kind::Char(major, minor) | Kind::Block(major, minor) = kind {
            header.set_device_major(major).map_err(LayerError::Write)?;
            header.set_device_minor(minor).map_err(LayerError::Write)?;
        }
        header.set_cksum();
        self.out.write_all(header.as_bytes()).map_err(LayerError::Write)?;

        if let Kind::Regular { size, source: Some(path) } = kind {
            self.copy_file(path, size)?;
        } else if let Kind::Regular { size, source: None } = kind
            && size != 0
        {
            return Err(internal("marker with content"));
        }
        Ok(())
    }

    fn write_pax(&mut self, records: &[(Vec<u8>, &[u8])]) -> Result<(), LayerError> {
        let mut body = Vec::new();
        for (key, value) in records {
            let base = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = base + 1;
            while base + len.to_string().len() != len {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(len.to_string().as_bytes());
            body.push(b' ');
            body.extend_from_slice(key);
            body.push(b'=');
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut header = tar::Header::new_ustar();
        {
            let ustar = header.as_ustar_mut().ok_or_else(|| internal("ustar header"))?;
            let name = b"././@PaxHeader";
            ustar.name[..name.len()].copy_from_slice(name);
        }
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(body.len() as u64);
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_cksum();
        self.out.write_all(header.as_bytes()).map_err(LayerError::Write)?;
        self.out.write_all(&body).map_err(LayerError::Write)?;
        self.pad(body.len() as u64)
    }

    fn copy_file(&mut self, path: &Path, size: u64) -> Result<(), LayerError> {
        let read_err = |source| LayerError::ReadTree { path: path.to_path_buf(), source };
        let changed = || LayerError::FileChanged { path: path.to_path_buf(), expected: size };
        let mut file = File::open(path).map_err(read_err)?;
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => return Err(changed()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            self.out.write_all(&self.buf[..n]).map_err(LayerError::Write)?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        loop {
            match file.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => return Err(changed()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            }
        }
        self.pad(size)
    }

    fn pad(&mut self, len: u64) -> Result<(), LayerError> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem]).map_err(LayerError::Write)?;
        }
        Ok(())
    }
}

fn internal(what: &str) -> LayerError {
    LayerError::Write(io::Error::other(format!("internal error: {what}")))
}
