//! Re-encoding stored layers when an output asks for another compression
//! (`compression=gzip|zstd|uncompressed` that differs from how a layer was stored).
//!
//! The caller does this before assembling the image: for each layer,
//! [`recompress`] (or [`recompress_all`]) gives a new [`LayerBlob`] stored in the blob store,
//! and the image is assembled from those, so the manifest names the re-encoded blobs.
//!
//! The encoder is the layer module's, with its settings ([`crate::layer::GZIP_LEVEL`],
//! [`crate::layer::ZSTD_LEVEL`], [`crate::layer::ZSTD_WORKERS`]; gzip header mtime 0 and
//! OS 255; zstd without checksum or content size).
//! The encoder is fed in fixed [`CHUNK`]-sized writes whatever the source's decoder yields,
//! so that the result is a function of the uncompressed tar alone, the same whichever
//! compression the stored layer had. (Gzip would not need it: its blocks are cut at input
//! offsets, so a gzip layer kiln wrote is byte for byte its own recompression; zstd's
//! streaming output is not promised to be independent of write boundaries.)
//!
//! Invariant: the uncompressed bytes are hashed on the way through and must equal the
//! layer's `diff_id`, and the source blob is verified against its digest and size; on any
//! mismatch nothing is stored.

use super::ExportError;
use super::source::{BlobSource, VerifyingReader};
use crate::image::LayerBlob;
use crate::image::manifest::layer_compression;
use crate::layer::{Compression, Encoder, decompress};
use kiln_cache::{BlobStore, Hasher};
use rayon::prelude::*;
use std::io::{self, Read, Write};

/// The size of every write into the encoder but the last.
pub const CHUNK: usize = 64 * 1024;

/// `layer` encoded with `target`, stored in `store`. A layer already in `target` is returned
/// as it is. The result has the OCI media type of `target` (assembling the image converts
/// it to Docker types when asked).
pub fn recompress(
    layer: &LayerBlob,
    target: Compression,
    blobs: &dyn BlobSource,
    store: &BlobStore,
) -> Result<LayerBlob, ExportError> {
    if layer_compression(&layer.media_type)? == target {
        return Ok(layer.clone());
    }
    let digest = layer.digest;
    let source = blobs.open(&digest).map_err(|source| ExportError::Blob { digest, source })?;
    let mut verified = VerifyingReader::new(source, digest, layer.size);
    let writer = store.writer().map_err(ExportError::Store)?;
    let mut encoder = Encoder::new(target, writer).map_err(ExportError::Write)?;
    let mut tar_hasher = Hasher::new();
    let copied = (|| -> io::Result<()> {
        let (_, mut tar) = decompress(&mut verified)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = fill(&mut tar, &mut buf)?;
            tar_hasher.update(&buf[..n]);
            encoder.write_all(&buf[..n])?;
            if n < CHUNK {
                return Ok(());
            }
        }
    })();
    if let Some(mismatch) = verified.mismatch() {
        return Err(ExportError::BlobMismatch {
            digest,
            size: layer.size,
            mismatch: mismatch.clone(),
        });
    }
    copied.map_err(|source| ExportError::Read { digest, source })?;
    match verified.finish() {
        Ok(Ok(())) => {}
        Ok(Err(mismatch)) => {
            return Err(ExportError::BlobMismatch { digest, size: layer.size, mismatch });
        }
        Err(source) => return Err(ExportError::Read { digest, source }),
    }
    let diff_id = tar_hasher.finish();
    if diff_id != layer.diff_id {
        return Err(ExportError::DiffIdMismatch {
            digest,
            expected: layer.diff_id,
            actual: diff_id,
        });
    }
    let writer = encoder.finish().map_err(ExportError::Write)?;
    let (new_digest, size) = writer.commit(None).map_err(ExportError::Store)?;
    Ok(LayerBlob { digest: new_digest, diff_id, size, media_type: target.media_type().to_owned() })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// [`recompress`] for every layer; `None` keeps them as they are.
pub fn recompress_all(
    layers: &[LayerBlob],
    target: Option<Compression>,
    blobs: &dyn BlobSource,
    store: &BlobStore,
) -> Result<Vec<LayerBlob>, ExportError> {
    match target {
        None => Ok(layers.to_vec()),
        Some(target) => {
            // Layers are independent: encode them side by side (each stays deterministic).
            layers.par_iter().map(|layer| recompress(layer, target, blobs, store)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::{sample_layers, store_layer};
    use crate::image::manifest::{OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
    use crate::layer::{DiffSource, WriteOptions, write_layer};
    use kiln_cache::{Digest, Root};
    use std::fs;
    use std::io::Write;

    #[test]
    fn every_conversion_keeps_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let store = root.blobs();
        let [tar, _] = sample_layers();
        let gzip = store_layer(&root, &tar, true);
        let plain = recompress(&gzip, Compression::Uncompressed, &store, &store).unwrap();
        assert_eq!(
            (plain.digest, plain.diff_id, plain.size),
            (Digest::of(&tar), gzip.diff_id, tar.len() as u64)
        );
        assert_eq!(plain.media_type, OCI_LAYER);
        assert_eq!(store.read_bytes(&plain.digest).unwrap(), tar);
        let zstd = recompress(&gzip, Compression::Zstd, &store, &store).unwrap();
        assert_eq!((zstd.diff_id, zstd.media_type.as_str()), (gzip.diff_id, OCI_LAYER_ZSTD));
        assert_eq!(&store.read_bytes(&zstd.digest).unwrap()[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        let back = recompress(&zstd, Compression::Gzip, &store, &store).unwrap();
        assert_eq!((back.diff_id, back.media_type.as_str()), (gzip.diff_id, OCI_LAYER_GZIP));
        // Same compression: the layer as it is.
        assert_eq!(recompress(&gzip, Compression::Gzip, &store, &store).unwrap(), gzip);
        let all = recompress_all(
            &[gzip.clone(), plain.clone()],
            Some(Compression::Uncompressed),
            &store,
            &store,
        )
        .unwrap();
        assert_eq!(all, [plain.clone(), plain]);
        assert_eq!(
            recompress_all(std::slice::from_ref(&gzip), None, &store, &store).unwrap(),
            [gzip]
        );
    }

    /// One-shot encoding of `tar` in `CHUNK` writes, for comparison.
    fn encode(compression: Compression, tar: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = Encoder::new(compression, &mut out).unwrap();
        for piece in tar.chunks(chunk) {
            encoder.write_all(piece).unwrap();
        }
        encoder.finish().unwrap();
        out
    }

    #[test]
    fn output_depends_on_the_tar_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("root")).unwrap();
        let store = root.blobs();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(tree.join("a/b/data"), &big).unwrap();
        fs::write(tree.join("file"), b"hello").unwrap();
        let options = WriteOptions {
            compression: Compression::Gzip,
            source_date_epoch: Some(0),
            ..Default::default()
        };
        let mut blob = Vec::new();
        let desc = write_layer(DiffSource::Directory(&tree), &options, &mut blob).unwrap();
        let gzip = LayerBlob {
            digest: store.put_bytes(&blob).unwrap(),
            diff_id: Digest::parse(&desc.diff_id).unwrap(),
            size: desc.size,
            media_type: OCI_LAYER_GZIP.into(),
        };
        let plain = recompress(&gzip, Compression::Uncompressed, &store, &store).unwrap();
        let tar = store.read_bytes(&plain.digest).unwrap();
        let zstd_from_gzip = recompress(&gzip, Compression::Zstd, &store, &store).unwrap();
        let zstd_from_plain = recompress(&plain, Compression::Zstd, &store, &store).unwrap();
        assert_eq!(zstd_from_gzip, zstd_from_plain);
        assert_eq!(
            store.read_bytes(&zstd_from_plain.digest).unwrap(),
            encode(Compression::Zstd, &tar, CHUNK)
        );
        let gzip_from_zstd =
            recompress(&zstd_from_plain, Compression::Gzip, &store, &store).unwrap();
        let gzip_from_plain = recompress(&plain, Compression::Gzip, &store, &store).unwrap();
        assert_eq!(gzip_from_zstd, gzip_from_plain);
        assert_eq!(
            store.read_bytes(&gzip_from_plain.digest).unwrap(),
            encode(Compression::Gzip, &tar, CHUNK)
        );
        // Gzip is cut into blocks at input offsets, whatever the writes: the layer writer's
        // own blob is exactly what recompressing its tar gives.
        assert_eq!(encode(Compression::Gzip, &tar, 512), encode(Compression::Gzip, &tar, CHUNK));
        assert_eq!(gzip_from_plain.digest, gzip.digest);
    }

    #[test]
    fn wrong_diff_id_or_damaged_blob_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let store = root.blobs();
        let [tar, _] = sample_layers();
        let mut gzip = store_layer(&root, &tar, true);
        let before = store.list().unwrap().0;
        let claimed = Digest::of(b"another tar");
        gzip.diff_id = claimed;
        let err = recompress(&gzip, Compression::Uncompressed, &store, &store).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer {} decompresses to {}, not its diff_id {claimed}",
                gzip.digest,
                Digest::of(&tar)
            )
        );
        assert_eq!(store.list().unwrap().0, before, "nothing stored");

        gzip.diff_id = Digest::of(&tar);
        gzip.size -= 1;
        let err = recompress(&gzip, Compression::Zstd, &store, &store).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {} is damaged: it is longer than its {} bytes", gzip.digest, gzip.size)
        );
        assert_eq!(store.list().unwrap().0, before, "nothing stored");
    }
}
