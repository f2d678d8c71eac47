//! The flattened root filesystem of an image: `type=local` (a directory) and `type=tar`
//! (one tar stream).
//!
//! Both unpack the layers bottom-up with the layer module's confined
//! `apply_layer(.., ApplyMode::Flatten)` into a fresh directory, so whiteouts delete what
//! lower layers made and no entry can reach outside the target, whatever the tars say.
//! `type=tar` then writes that tree with the layer module's deterministic tar writer
//! (`DiffSource::Directory`, uncompressed, mtimes clamped to `SOURCE_DATE_EPOCH`).
//!
//! Ownership is kept when the process may chown (as root, or as root of kiln's user
//! namespace, where the engine runs); device nodes need `mknod`, and are skipped (and
//! counted in the returned stats) where the kernel refuses it, as in rootless BuildKit.
//!
//! Every layer blob is verified (size and digest) while it is read.

use super::ExportError;
use super::source::{BlobSource, VerifyingReader};
use crate::image::ExportImage;
use crate::layer::{
    ApplyMode, ApplyOptions, ApplyStats, Compression, DiffSource, IdMap, WriteOptions, apply_layer,
    write_layer,
};
use std::io::Write;
use std::path::Path;

/// Applies every layer of `image`, bottom first, onto `dir` (an existing, normally empty,
/// directory). Returns the stats of all layers summed.
pub fn flatten_into(
    image: &ExportImage,
    blobs: &dyn BlobSource,
    dir: &Path,
    id_map: &IdMap,
) -> Result<ApplyStats, ExportError> {
    let options = ApplyOptions { mode: ApplyMode::Flatten, id_map: id_map.clone() };
    let mut total = ApplyStats::default();
    for layer in &image.layers {
        let digest = layer.digest;
        let source = blobs.open(&digest).map_err(|source| ExportError::Blob { digest, source })?;
        let mut reader = VerifyingReader::new(source, digest, layer.size);
        let applied = apply_layer(&mut reader, dir, &options);
        if let Some(mismatch) = reader.mismatch() {
            return Err(ExportError::BlobMismatch {
                digest,
                size: layer.size,
                mismatch: mismatch.clone(),
            });
        }
        let stats = applied.map_err(|source| ExportError::Apply { digest, source })?;
        // The tar may end before the blob does (padding after the end marker): check the rest.
        match reader.finish() {
            Ok(Ok(())) => {}
            Ok(Err(mismatch)) => {
                return Err(ExportError::BlobMismatch { digest, size: layer.size, mismatch });
            }
            Err(err) => return Err(ExportError::Read { digest, source: err }),
        }
        add_stats(&mut total, &stats);
    }
    Ok(total)
}

/// Writes the flattened root filesystem of `image` as one uncompressed tar into `sink`,
/// unpacking it first in a temporary directory under `scratch`.
pub fn write_rootfs_tar(
    image: &ExportImage,
    blobs: &dyn BlobSource,
    scratch: &Path,
    id_map: &IdMap,
    source_date_epoch: Option<i64>,
    sink: impl Write,
) -> Result<ApplyStats, ExportError> {
    let tree =
        tempfile::Builder::new().prefix(".kiln-rootfs-").tempdir_in(scratch).map_err(|source| {
            ExportError::Io { op: "create a directory in", path: scratch.to_path_buf(), source }
        })?;
    let stats = flatten_into(image, blobs, tree.path(), id_map)?;
    let options = WriteOptions {
        compression: Compression::Uncompressed,
        source_date_epoch,
        id_map: id_map.clone(),
        ..Default::default()
    };
    write_layer(DiffSource::Directory(tree.path()), &options, sink)
        .map_err(|source| ExportError::WriteTree { source })?;
    Ok(stats)
}

fn add_stats(total: &mut ApplyStats, one: &ApplyStats) {
    total.entries += one.entries;
    total.directories += one.directories;
    total.files += one.files;
    total.symlinks += one.symlinks;
    total.hardlinks += one.hardlinks;
    total.devices += one.devices;
    total.fifos += one.fifos;
    total.whiteouts += one.whiteouts;
    total.opaque_dirs += one.opaque_dirs;
    total.bytes += one.bytes;
    total.devices_skipped += one.devices_skipped;
    total.chowns_skipped += one.chowns_skipped;
    total.xattrs_skipped += one.xattrs_skipped;
    total.entries_skipped += one.entries_skipped;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::sample_image;
    use crate::image::MediaTypes;
    use kiln_cache::Root;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn flatten_applies_whiteouts_opaque_dirs_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("root")).unwrap();
        let image = sample_image(&root, MediaTypes::Oci, &[]);
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        let stats = flatten_into(&image, &root.blobs(), &tree, &IdMap::identity()).unwrap();
        assert_eq!((stats.whiteouts, stats.opaque_dirs, stats.hardlinks), (1, 1, 1));
        let mut names: Vec<String> = walk(&tree);
        names.sort();
        assert_eq!(
            names,
            [
                "bin",
                "bin/tool",
                "data",
                "data/new",
                "etc",
                "etc/hostname",
                "etc/hostname.link",
                "lib",
                "tmp",
                "usr",
                "usr/lib",
                "usr/lib/libx.so"
            ]
        );
        assert_eq!(fs::read(tree.join("etc/hostname")).unwrap(), b"kiln-2\n");
        let a = fs::metadata(tree.join("etc/hostname")).unwrap();
        let b = fs::metadata(tree.join("etc/hostname.link")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert_eq!(fs::read_link(tree.join("lib")).unwrap(), Path::new("usr/lib"));
        assert_eq!(fs::metadata(tree.join("data")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(fs::metadata(tree.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(fs::metadata(tree.join("bin/tool")).unwrap().mode() & 0o7777, 0o755);
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            out.push(name.clone());
            if entry.file_type().unwrap().is_dir() {
                out.extend(walk(&entry.path()).into_iter().map(|child| format!("{name}/{child}")));
            }
        }
        out
    }

    #[test]
    fn rootfs_tar_is_the_flattened_tree_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("root")).unwrap();
        let image = sample_image(&root, MediaTypes::Oci, &[]);
        let mut first = Vec::new();
        write_rootfs_tar(
            &image,
            &root.blobs(),
            &dir.path().join("root/tmp"),
            &IdMap::identity(),
            Some(1_000),
            &mut first,
        )
        .unwrap();
        let mut second = Vec::new();
        write_rootfs_tar(
            &image,
            &root.blobs(),
            &dir.path().join("root/tmp"),
            &IdMap::identity(),
            Some(1_000),
            &mut second,
        )
        .unwrap();
        assert!(first == second, "same image, same tar");
        let mut archive = tar::Archive::new(&first[..]);
        let mut listed = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = String::new();
            entry.read_to_string(&mut data).unwrap();
            assert_eq!(
                header.mtime().unwrap(),
                1_000,
                "{name}: mtime clamped to SOURCE_DATE_EPOCH"
            );
            listed.push((name, header.entry_type(), data));
        }
        let names: Vec<&str> = listed.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin/",
                "bin/tool",
                "data/",
                "data/new",
                "etc/",
                "etc/hostname",
                "etc/hostname.link",
                "lib",
                "tmp/",
                "usr/",
                "usr/lib/",
                "usr/lib/libx.so"
            ]
        );
        let link = listed.iter().find(|(n, _, _)| n == "etc/hostname.link").unwrap();
        assert_eq!(link.1, tar::EntryType::Link);
        let hostname = listed.iter().find(|(n, _, _)| n == "etc/hostname").unwrap();
        assert_eq!(hostname.2, "kiln-2\n");
        let scratch_left: Vec<_> = fs::read_dir(dir.path().join("root/tmp")).unwrap().collect();
        assert!(scratch_left.is_empty(), "the unpacked tree is removed");
    }

    #[test]
    fn damaged_layer_stops_the_flatten() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("root")).unwrap();
        let mut image = sample_image(&root, MediaTypes::Oci, &[]);
        // Declare a wrong digest for a stored blob: the bytes read do not hash to it.
        let other = root.blobs().put_bytes(b"not a layer").unwrap();
        let wrong = image.layers[0].digest;
        fs::copy(root.blobs().path(&other), dir.path().join("x")).unwrap();
        image.layers[0].digest = other;
        image.layers[0].size = 11;
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        // The blob is intact but is no tar: unpacking fails with the layer's digest named.
        let err = flatten_into(&image, &root.blobs(), &tree, &IdMap::identity()).unwrap_err();
        assert!(err.to_string().starts_with(&format!("cannot unpack layer {other}: ")), "{err}");
        // A size that disagrees with the blob is found while reading.
        image.layers[0].digest = wrong;
        image.layers[0].size = 3;
        let err = flatten_into(&image, &root.blobs(), &tree, &IdMap::identity()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {wrong} is damaged: it is longer than its 3 bytes")
        );
    }
}
