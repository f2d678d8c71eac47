//! Layers from one tree: an overlayfs upper directory, or a plain directory taken whole.
//!
//! A plain directory (COPY into a fresh dir, `FROM scratch` + COPY) is written as it is.
//!
//! An overlay upper directory holds the changes a RUN made; overlayfs marks deletions in it,
//! and those marks become OCI whiteouts:
//!
//! | in the upper dir                                             | in the tar                  |
//! |--------------------------------------------------------------|-----------------------------|
//! | char device 0/0 `NAME`                                       | `.wh.NAME`                  |
//! | empty regular file with `{trusted,user}.overlay.whiteout`    | `.wh.NAME`                  |
//! | dir with `trusted.overlay.opaque=y` (root, no `userxattr`)   | `DIR/` and `DIR/.wh..wh..opq` |
//! | dir with `user.overlay.opaque=y` (rootless, `userxattr`)     | `DIR/` and `DIR/.wh..wh..opq` |
//!
//! Overlay-private xattrs never reach the tar. An upper dir made with `metacopy=on` (files
//! whose data stay in the lower layer) or `redirect_dir=on` (renamed directories) cannot be
//! expressed as a layer and is refused: the sandbox mounts without them (the defaults).
//! `opaque=x` (newer kernels: "this dir holds xattr whiteouts") is not an opaque dir.
//!
//! Markers take their parent directory's mtime (clamped like every mtime), so the tar depends
//! only on the tree. Excluded paths are left out with their subtrees.

use super::error::LayerError;
use super::tar_writer::TarWriter;
use super::tree::{self, Child, Exclude, OPAQUE_MARKER};
use super::xattrs::{self, Xattrs};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// How the entries of a tree are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeKind {
    /// Every entry is content.
    Plain,
    /// Overlay whiteouts and opaque dirs become OCI whiteouts.
    OverlayUpper,
}

enum Item {
    Entry { child: Box<Child>, xattrs: Xattrs, opaque: bool },
    Whiteout { name: Vec<u8> },
    OpaqueMarker,
}

/// Writes every entry under `root` (not `root` itself) below the tar prefix `prefix`.
pub(crate) fn write_tree<W: Write>(
    writer: &mut TarWriter<W>,
    root: &Path,
    prefix: &[u8],
    kind: TreeKind,
    exclude: &Exclude,
) -> Result<(), LayerError> {
    let md = std::fs::symlink_metadata(root)
        .map_err(|source| LayerError::ReadTree { path: root.to_path_buf(), source })?;
    visit(writer, root, md.mtime(), prefix, false, kind, exclude)
}

fn visit<W: Write>(
    writer: &mut TarWriter<W>,
    dir: &Path,
    dir_mtime: i64,
    prefix: &[u8],
    opaque: bool,
    kind: TreeKind,
    exclude: &Exclude,
) -> Result<(), LayerError> {
    let mut items: Vec<(Vec<u8>, Item)> = Vec::new();
    for child in tree::children(dir)? {
        if exclude.contains(&tree::join(prefix, &child.name)) || child.md.file_type().is_socket() {
            continue;
        }
        let all = xattrs::read_all(&child.path)
            .map_err(|source| LayerError::ReadTree { path: child.path.clone(), source })?;
        let opaque = match kind {
            TreeKind::Plain => false,
            TreeKind::OverlayUpper => match classify(&child, &all)? {
                Overlay::Whiteout => {
                    let name = tree::whiteout_name(&child.name);
                    items.push((name.clone(), Item::Whiteout { name }));
                    continue;
                }
                Overlay::Entry { opaque } => opaque,
            },
        };
        let xattrs = all.into_iter().filter(|(n, _)| !xattrs::is_excluded(n)).collect();
        let key = tree::sort_key(&child.name, child.md.is_dir());
        items.push((key, Item::Entry { child: Box::new(child), xattrs, opaque }));
    }
    if opaque {
        items.push((OPAQUE_MARKER.to_vec(), Item::OpaqueMarker));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, item) in items {
        match item {
            Item::Whiteout { name } => {
                writer.write_marker(&tree::join(prefix, &name), dir_mtime)?
            }
            Item::OpaqueMarker => {
                writer.write_marker(&tree::join(prefix, OPAQUE_MARKER), dir_mtime)?
            }
            Item::Entry { child, xattrs, opaque } => {
                let name = tree::join(prefix, &child.name);
                writer.write_fs_entry(&name, &child.path, &child.md, &xattrs)?;
                if child.md.is_dir() {
                    visit(writer, &child.path, child.md.mtime(), &name, opaque, kind, exclude)?;
                }
            }
        }
    }
    Ok(())
}

enum Overlay {
    Whiteout,
    Entry { opaque: bool },
}

/// The value of `trusted.overlay.SUFFIX`, else of `user.overlay.SUFFIX`.
fn overlay_xattr<'a>(all: &'a Xattrs, suffix: &str) -> Option<&'a [u8]> {
    let find = |name: String| {
        all.iter().find(|(n, _)| n.as_slice() == name.as_bytes()).map(|(_, v)| v.as_slice())
    };
    find(format!("trusted.overlay.{suffix}")).or_else(|| find(format!("user.overlay.{suffix}")))
}

fn classify(child: &Child, all: &Xattrs) -> Result<Overlay, LayerError> {
    let ft = child.md.file_type();
    if ft.is_char_device() && child.md.rdev() == 0 {
        return Ok(Overlay::Whiteout);
    }
    let refuse = |reason| Err(LayerError::Overlay { path: child.path.clone(), reason });
    if ft.is_file() {
        if child.md.len() == 0 && overlay_xattr(all, "whiteout").is_some() {
            return Ok(Overlay::Whiteout);
        }
        if overlay_xattr(all, "metacopy").is_some() {
            return refuse(
                "metacopy file (its data are in a lower layer); mount with metacopy=off",
            );
        }
    }
    if ft.is_dir() {
        if overlay_xattr(all, "redirect").is_some() {
            return refuse("redirected directory (renamed lower dir); mount with redirect_dir=off");
        }
        return Ok(Overlay::Entry { opaque: overlay_xattr(all, "opaque") == Some(b"y") });
    }
    Ok(Overlay::Entry { opaque: false })
}
