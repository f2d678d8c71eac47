//! Layer streams in every supported compression are told apart by their first bytes and
//! unpack to the same tree.

mod layer_support;

use kiln::layer::{ApplyOptions, DetectedCompression, apply_layer, decompress};
use layer_support::*;
use std::io::Write;
use tar::EntryType;

fn plain_tar() -> Vec<u8> {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let big: &'static [u8] = Box::leak(big.into_boxed_slice());
    raw_tar(&[
        (b"etc/", EntryType::Directory, b"", b""),
        (b"etc/os-release", EntryType::Regular, b"", b"ID=kiln\n"),
        (b"usr/lib/blob", EntryType::Regular, b"", big),
        (b"lib", EntryType::Symlink, b"usr/lib", b""),
    ])
}

fn compressed(kind: DetectedCompression, tar: &[u8]) -> Vec<u8> {
    match kind {
        DetectedCompression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        DetectedCompression::Zstd => zstd::encode_all(tar, 3).unwrap(),
        DetectedCompression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        DetectedCompression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        DetectedCompression::Uncompressed => tar.to_vec(),
    }
}

#[test]
fn every_format_is_detected_and_applies_to_the_same_tree() {
    let tar = plain_tar();
    let mut trees = Vec::new();
    for kind in [
        DetectedCompression::Gzip,
        DetectedCompression::Zstd,
        DetectedCompression::Bzip2,
        DetectedCompression::Xz,
        DetectedCompression::Uncompressed,
    ] {
        let blob = compressed(kind, &tar);
        let (detected, reader) = decompress(&blob[..]).unwrap();
        assert_eq!(detected, kind);
        assert!(read_all(reader) == tar, "{kind:?} decodes to the tar");

        let target = tempfile::tempdir().unwrap();
        let stats = apply_layer(&blob[..], target.path(), &ApplyOptions::default()).unwrap();
        assert_eq!((stats.files, stats.symlinks, stats.bytes), (2, 1, 200_008), "{kind:?}");
        // Parents the tar does not list (usr/, usr/lib/) are made now: compare without mtimes.
        trees.push(describe(target.path(), false));
        let md = std::fs::metadata(target.path().join("etc/os-release")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&md), 1_000_000);
    }
    assert!(trees.windows(2).all(|w| w[0] == w[1]));
    assert!(trees[0]["etc/os-release"].starts_with("file \"ID=kiln\\n\" mode=644 "));
    assert_eq!(
        trees[0]["lib"].split(' ').take(3).collect::<Vec<_>>(),
        ["symlink", "->", "usr/lib"]
    );
    assert!(trees[0]["usr/lib"].starts_with("dir mode=755 "));
}

#[test]
fn concatenated_gzip_members_are_one_stream() {
    let tar = plain_tar();
    let (a, b) = tar.split_at(10_000);
    let mut blob = compressed(DetectedCompression::Gzip, a);
    blob.extend(compressed(DetectedCompression::Gzip, b));
    let target = tempfile::tempdir().unwrap();
    let stats = apply_layer(&blob[..], target.path(), &ApplyOptions::default()).unwrap();
    assert_eq!(stats.files, 2);
}

#[test]
fn corrupt_compressed_streams_are_errors() {
    let tar = plain_tar();
    for kind in [
        DetectedCompression::Gzip,
        DetectedCompression::Zstd,
        DetectedCompression::Bzip2,
        DetectedCompression::Xz,
    ] {
        let mut blob = compressed(kind, &tar);
        let mid = blob.len() / 2;
        blob.truncate(mid);
        let target = tempfile::tempdir().unwrap();
        let err = apply_layer(&blob[..], target.path(), &ApplyOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot read layer stream") || msg.contains("read content"),
            "{kind:?}: {msg}"
        );
    }
}
