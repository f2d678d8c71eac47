//! Compression of layer streams, and the digests computed while they are written.
//!
//! Writing: the tar bytes go through one pipeline, in a single streaming pass:
//!
//! ```text
//! tar bytes ─▶ sha256 (diff_id) ─▶ encoder (gzip | zstd | none) ─▶ sha256 + byte count (digest, size) ─▶ sink
//! ```
//!
//! Invariants:
//! - deterministic: the same tar bytes give byte-identical blobs. Gzip uses level 6 (zlib's
//!   and Go's `DefaultCompression`, which BuildKit uses), header mtime 0, no file name, OS
//!   byte 255 ("unknown", as Go writes it), deflated in fixed-size blocks on every core
//!   (`parallel_gzip`: pigz's scheme, one gzip member whose bytes do not depend on the core
//!   count). Zstd uses level 3 with a fixed worker count
//!   ([`ZSTD_WORKERS`]), no checksum and no content size (the stream's length is not known
//!   up front); its output does not depend on the worker count.
//! - bounded memory: the encoders keep a window or a bounded batch of blocks; nothing
//!   buffers a whole layer.
//!
//! Reading: [`decompress`] sniffs the first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`, bzip2
//! `BZh`, xz `fd 37 7a 58 5a 00`) and otherwise takes the stream as an uncompressed tar.

use sha2::{Digest as _, Sha256};
use std::io::{self, BufWriter, Read, Write};

/// Gzip level: zlib's default, the one Go's `gzip.DefaultCompression` (BuildKit) uses.
pub const GZIP_LEVEL: u32 = 6;
/// Zstd level: zstd's default, the one BuildKit uses for `compression=zstd`.
pub const ZSTD_LEVEL: i32 = 3;
/// Zstd worker threads. With the frame settings used here (no checksum, no content size)
/// zstd's output is the same for any worker count, single-threaded included (a test checks
/// it); the count is fixed anyway so the blob never depends on the machine.
pub const ZSTD_WORKERS: u32 = 2;

/// Compression of a layer blob kiln writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer blob with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Compression of a tar stream being read, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedCompression {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    Uncompressed,
}

impl DetectedCompression {
    /// Tells the compression from the first bytes of a stream (6 are enough).
    pub fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if magic.starts_with(b"BZh") {
            Self::Bzip2
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else {
            Self::Uncompressed
        }
    }
}

/// Wraps `reader` in the decoder its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(
    mut reader: R,
) -> io::Result<(DetectedCompression, Box<dyn Read + 'a>)> {
    let mut magic = [0u8; 6];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let kind = DetectedCompression::detect(&magic[..filled]);
    let whole = io::Cursor::new(magic[..filled].to_vec()).chain(reader);
    let decoded: Box<dyn Read + 'a> = match kind {
        DetectedCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        DetectedCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        DetectedCompression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        DetectedCompression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
        DetectedCompression::Uncompressed => Box::new(whole),
    };
    Ok((kind, decoded))
}

/// Counts and hashes the bytes passing through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The `sha256:<hex>` digest and byte count so far, and the inner writer.
    pub(crate) fn finish(self) -> (String, u64, W) {
        (format_digest(&self.hasher.finalize()), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn format_digest(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(7 + bytes.len() * 2);
    out.push_str("sha256:");
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The encoder of a [`Compression`], with kiln's fixed settings (see the module docs).
pub(crate) enum Encoder<W: Write> {
    Gzip(super::parallel_gzip::ParallelGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, sink: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => {
                Encoder::Gzip(super::parallel_gzip::ParallelGzEncoder::new(sink, GZIP_LEVEL))
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL)?;
                encoder.multithread(ZSTD_WORKERS)?;
                encoder.include_checksum(false)?;
                encoder.include_contentsize(false)?;
                Encoder::Zstd(encoder)
            }
            Compression::Uncompressed => Encoder::Plain(sink),
        })
    }

    /// Ends the stream and hands back the sink, flushed.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(mut w) => w.flush().map(|()| w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// The digests and size of a finished blob.
pub(crate) struct BlobSums {
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
}

/// The writing pipeline: hash the tar, compress it, hash and count the blob, write the sink.
pub(crate) struct BlobPipeline<W: Write> {
    tar: HashingWriter<Encoder<HashingWriter<BufWriter<W>>>>,
}

impl<W: Write> BlobPipeline<W> {
    pub(crate) fn new(compression: Compression, sink: W) -> io::Result<Self> {
        let blob = HashingWriter::new(BufWriter::with_capacity(64 * 1024, sink));
        Ok(Self { tar: HashingWriter::new(Encoder::new(compression, blob)?) })
    }

    /// Ends the compressed stream, flushes the sink and returns the sums.
    pub(crate) fn finish(self) -> io::Result<BlobSums> {
        let (diff_id, _, encoder) = self.tar.finish();
        let blob = encoder.finish()?;
        let (digest, size, mut sink) = blob.finish();
        sink.flush()?;
        Ok(BlobSums { diff_id, digest, size })
    }
}

impl<W: Write> Write for BlobPipeline<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tar.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tar.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect()
    }

    fn blob(compression: Compression, data: &[u8]) -> (BlobSums, Vec<u8>) {
        let mut out = Vec::new();
        let mut pipe = BlobPipeline::new(compression, &mut out).unwrap();
        pipe.write_all(data).unwrap();
        let sums = pipe.finish().unwrap();
        (sums, out)
    }

    #[test]
    fn digests_cover_tar_and_blob_bytes() {
        let data = sample();
        for compression in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
            let (sums, out) = blob(compression, &data);
            assert_eq!(sums.diff_id, format_digest(&Sha256::digest(&data)));
            assert_eq!(sums.digest, format_digest(&Sha256::digest(&out)));
            assert_eq!(sums.size, out.len() as u64);
            let (kind, mut reader) = decompress(&out[..]).unwrap();
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{compression:?} round trip ({kind:?})");
        }
        let (sums, _) = blob(Compression::Uncompressed, &data);
        assert_eq!(sums.diff_id, sums.digest);
    }

    #[test]
    fn gzip_header_is_fixed() {
        let (_, out) = blob(Compression::Gzip, b"hello");
        // magic, deflate, no flags, mtime 0, xfl, os 255
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let (_, again) = blob(Compression::Gzip, b"hello");
        assert_eq!(out, again);
    }

    #[test]
    fn zstd_output_does_not_depend_on_thread_scheduling() {
        let data = sample();
        let (first, _) = blob(Compression::Zstd, &data);
        for _ in 0..3 {
            assert_eq!(blob(Compression::Zstd, &data).0.digest, first.digest);
        }
    }

    #[test]
    fn zstd_output_is_the_same_for_any_worker_count() {
        let data: Vec<u8> =
            (0..1_000_000u32).flat_map(|i| (i.wrapping_mul(7919) % 1021).to_le_bytes()).collect();
        let encode = |workers: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
            e.multithread(workers).unwrap();
            e.include_checksum(false).unwrap();
            e.include_contentsize(false).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let fixed = encode(ZSTD_WORKERS);
        for workers in [0, 1, 4] {
            assert!(encode(workers) == fixed, "zstd output with {workers} workers differs");
        }
        let (_, ours) = blob(Compression::Zstd, &data);
        assert!(ours == fixed);
    }

    #[test]
    fn detection_by_magic() {
        assert_eq!(DetectedCompression::detect(&[0x1f, 0x8b, 8]), DetectedCompression::Gzip);
        assert_eq!(
            DetectedCompression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            DetectedCompression::Zstd
        );
        assert_eq!(DetectedCompression::detect(b"BZh91AY"), DetectedCompression::Bzip2);
        assert_eq!(
            DetectedCompression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            DetectedCompression::Xz
        );
        assert_eq!(DetectedCompression::detect(b"etc/"), DetectedCompression::Uncompressed);
        assert_eq!(DetectedCompression::detect(b""), DetectedCompression::Uncompressed);
    }

    #[test]
    fn short_streams_pass_through_uncompressed() {
        let (kind, mut reader) = decompress(&b"abc"[..]).unwrap();
        assert_eq!(kind, DetectedCompression::Uncompressed);
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"abc");
    }
}
