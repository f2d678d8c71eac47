//! Reading a blob by offset for the requests of one upload ([`super::upload`]): a chunk
//! sent again, a resumed session or a new session from byte 0 each need the bytes from
//! some offset.
//!
//! Invariants: the bytes come through the caller's `open`, which verifies them, and the
//! reader is read to its end after the last byte so its verdict on the whole blob is
//! heard; going back reopens the blob and skips ahead (the verifier sees every byte
//! again); the last chunk read stays buffered, so sending it again needs no re-read and
//! memory holds one chunk; a reader that failed is dropped, never read on.

use super::manifest::Descriptor;
use super::upload::OpenBlob;
use std::io::{self, Read};

/// Reads the blob's bytes for the requests of one upload, verified by the caller's
/// reader; keeps the last chunk read, so a request sent again needs no re-read.
pub struct BlobCursor<'u, 'a> {
    open: &'u OpenBlob<'a>,
    descriptor: &'u Descriptor,
    reader: Option<Box<dyn Read + 'a>>,
    /// Offset of the reader in the blob.
    position: u64,
    buffer: Vec<u8>,
    /// Offset of `buffer[0]` in the blob.
    buffer_start: u64,
}

impl<'u, 'a> BlobCursor<'u, 'a> {
    pub fn new(open: &'u OpenBlob<'a>, descriptor: &'u Descriptor) -> Self {
        BlobCursor {
            open,
            descriptor,
            reader: None,
            position: 0,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// Up to `max_len` bytes from `offset` (fewer at the end of the blob, or when the
    /// buffered chunk holds `offset` and ends sooner).
    pub fn bytes_from(&mut self, offset: u64, max_len: u64) -> io::Result<&[u8]> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if offset >= self.buffer_start && offset < buffer_end {
            let from = (offset - self.buffer_start) as usize;
            let to = (offset + max_len).min(buffer_end) - self.buffer_start;
            return Ok(&self.buffer[from..to as usize]);
        }
        let len = max_len.min(self.descriptor.size.saturating_sub(offset));
        if let Err(e) = self.fill(offset, len) {
            // A half-read reader cannot be trusted to go on.
            self.reader = None;
            self.buffer.clear();
            return Err(e);
        }
        Ok(&self.buffer)
    }

    /// Reads `len` bytes at `offset` into the buffer; at the end of the blob, makes the
    /// verifying reader judge it.
    fn fill(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let size = self.descriptor.size;
        self.seek(offset)?;
        self.buffer.clear();
        self.buffer_start = offset;
        let reader = self.reader.as_mut().expect("seek opened the reader");
        let read = reader.by_ref().take(len).read_to_end(&mut self.buffer)? as u64;
        self.position = offset + read;
        if read < len {
            let cause = format!("it ended after {} of its {size} bytes", self.position);
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, cause));
        }
        if self.position == size {
            let mut probe = [0u8; 1];
            if reader.read(&mut probe)? != 0 {
                let cause = format!("it is longer than its {size} bytes");
                return Err(io::Error::new(io::ErrorKind::InvalidData, cause));
            }
        }
        Ok(())
    }

    /// Puts the reader at `offset`, reopening the blob when it is already past it.
    fn seek(&mut self, offset: u64) -> io::Result<()> {
        if self.reader.is_none() || self.position > offset {
            self.reader = Some((self.open)(self.descriptor)?);
            self.position = 0;
        }
        let reader = self.reader.as_mut().expect("the reader is open");
        let skip = offset - self.position;
        let skipped = io::copy(&mut reader.by_ref().take(skip), &mut io::sink())?;
        self.position += skipped;
        if skipped < skip {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob ended early"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::digest::Digest;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn descriptor(bytes: &[u8]) -> Descriptor {
        Descriptor::new("application/octet-stream", Digest::sha256_of(bytes), bytes.len() as u64)
    }

    #[test]
    fn reads_chunks_and_goes_back_by_reopening() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let opened = AtomicUsize::new(0);
        let open = |_: &Descriptor| -> io::Result<Box<dyn Read + '_>> {
            opened.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(&data[..]))
        };
        let descriptor = descriptor(&data);
        let mut cursor = BlobCursor::new(&open, &descriptor);
        let mut read = |at: u64, len: u64| cursor.bytes_from(at, len).unwrap().to_vec();
        assert_eq!(read(0, 300), &data[..300]);
        assert_eq!(read(100, 300), &data[100..300], "from the buffered chunk");
        assert_eq!(read(300, 300), &data[300..600]);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(read(900, 300), &data[900..], "skips ahead, cut at the end");
        assert_eq!(read(50, 10), &data[50..60], "reopens to go back");
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn short_and_long_blobs_are_errors() {
        let data = b"short".to_vec();
        let open = |_: &Descriptor| -> io::Result<Box<dyn Read + '_>> { Ok(Box::new(&data[..])) };
        let mut declared = descriptor(&data);
        declared.size = 10;
        let err = BlobCursor::new(&open, &declared).bytes_from(0, 100).unwrap_err();
        assert_eq!(err.to_string(), "it ended after 5 of its 10 bytes");
        declared.size = 3;
        let err = BlobCursor::new(&open, &declared).bytes_from(0, 100).unwrap_err();
        assert_eq!(err.to_string(), "it is longer than its 3 bytes");
    }
}
