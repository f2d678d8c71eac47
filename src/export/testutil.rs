//! Small images built by hand for the export tests: layer tars written entry by entry with
//! the `tar` crate (so whiteouts, opaque markers and hard links are exactly as given),
//! gzip-compressed, stored in a temp `kiln_cache::Root`.

use crate::image::config::{ImageConfigFile, RootFs};
use crate::image::manifest::{OCI_LAYER, OCI_LAYER_GZIP};
use crate::image::{ExportImage, LayerBlob, MediaTypes};
use kiln_cache::{Digest, Root};
use std::io::Write;

pub(crate) enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// An uncompressed layer tar of `entries`, in the order given.
pub(crate) fn layer_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        let (path, data): (&str, &[u8]) = match entry {
            Entry::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (path, b"")
            }
            Entry::File(path, mode, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (path, data)
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
            Entry::Hardlink(path, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
        };
        header.set_path(path).unwrap();
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Stores `tar` (gzip-compressed when `compress`) and describes it.
pub(crate) fn store_layer(root: &Root, tar: &[u8], compress: bool) -> LayerBlob {
    let blob = if compress { gzip(tar) } else { tar.to_vec() };
    let digest = root.blobs().put_bytes(&blob).unwrap();
    LayerBlob {
        digest,
        diff_id: Digest::of(tar),
        size: blob.len() as u64,
        media_type: if compress { OCI_LAYER_GZIP } else { OCI_LAYER }.to_owned(),
    }
}

/// The two-layer image the export tests use: a base tree, then a layer that deletes a file
/// (whiteout), empties a directory (opaque marker), adds a hard link and changes a file.
pub(crate) fn sample_layers() -> [Vec<u8>; 2] {
    use Entry::*;
    let base = layer_tar(&[
        Dir("bin/", 0o755),
        File("bin/tool", 0o755, b"#!/bin/sh\necho tool\n"),
        Dir("data/", 0o755),
        File("data/old1", 0o644, b"old one"),
        File("data/old2", 0o644, b"old two"),
        Dir("etc/", 0o755),
        File("etc/hostname", 0o644, b"kiln\n"),
        Symlink("lib", "usr/lib"),
        Dir("tmp/", 0o1777),
        File("tmp/gone", 0o600, b"deleted later"),
        Dir("usr/", 0o755),
        Dir("usr/lib/", 0o755),
        File("usr/lib/libx.so", 0o644, b"\x7fELF"),
    ]);
    let top = layer_tar(&[
        Dir("data/", 0o750),
        File("data/.wh..wh..opq", 0o644, b""),
        File("data/new", 0o640, b"new data"),
        File("etc/hostname", 0o644, b"kiln-2\n"),
        Hardlink("etc/hostname.link", "etc/hostname"),
        File("tmp/.wh.gone", 0o644, b""),
    ]);
    [base, top]
}

/// `sample_layers` stored gzip-compressed in `root`, assembled as one image.
pub(crate) fn sample_image(root: &Root, media_types: MediaTypes, names: &[&str]) -> ExportImage {
    let layers: Vec<LayerBlob> =
        sample_layers().iter().map(|tar| store_layer(root, tar, true)).collect();
    let config = ImageConfigFile {
        created: Some("2024-01-01T00:00:00Z".into()),
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: layers.iter().map(|l| l.diff_id).collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    let names = names.iter().map(|name| name.to_string()).collect();
    ExportImage::assemble(&config, layers, media_types, names).unwrap()
}
