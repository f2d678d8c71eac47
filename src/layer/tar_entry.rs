//! One tar entry's header as the applier needs it: type, mode, owner, mtime, link target,
//! device numbers, size and xattrs, with PAX records (`uid`, `gid`, `mtime`,
//! `SCHILY.xattr.*`) overriding the USTAR fields. Paths, link names and sizes come through
//! the `tar` crate's reader, which already applies PAX `path`/`linkpath`/`size` and GNU long
//! names. Malformed numbers are errors naming the entry, never panics.

use super::error::LayerError;
use std::io::{self, Read};

/// What one tar entry says, with PAX overrides applied.
pub(crate) struct Header {
    pub display: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub link: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub device: (u32, u32),
    /// Content bytes the entry announces.
    pub size: u64,
}

pub(crate) fn read_header<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    display: String,
) -> Result<Header, LayerError> {
    let bad = |what: &str, e: io::Error| malformed(&display, &format!("{what}: {e}"));
    let h = entry.header();
    let kind = h.entry_type();
    let mode = h.mode().map_err(|e| bad("mode", e))? & 0o7777;
    let mut uid = h.uid().map_err(|e| bad("uid", e))?;
    let mut gid = h.gid().map_err(|e| bad("gid", e))?;
    let mut mtime = i64::try_from(h.mtime().map_err(|e| bad("mtime", e))?).unwrap_or(i64::MAX);
    let is_device = kind.is_character_special() || kind.is_block_special();
    let device = if is_device {
        let major = h.device_major().map_err(|e| bad("device major", e))?.unwrap_or(0);
        let minor = h.device_minor().map_err(|e| bad("device minor", e))?.unwrap_or(0);
        (major, minor)
    } else {
        (0, 0)
    };
    let size = entry.size();
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax header", e))? {
        for record in pax {
            let record = record.map_err(|e| bad("pax record", e))?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| malformed(&display, "pax number is not a number"))
            };
            match key {
                b"uid" => uid = u64::try_from(number()?).unwrap_or(u64::MAX),
                b"gid" => gid = u64::try_from(number()?).unwrap_or(u64::MAX),
                b"mtime" => mtime = number()?,
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(Header { display, kind, mode, uid, gid, mtime, link, xattrs, device, size })
}

fn malformed(path: &str, reason: &str) -> LayerError {
    LayerError::Malformed { path: path.to_string(), reason: reason.to_string() }
}
