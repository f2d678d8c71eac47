//! Where exporters read blobs from, and the check every blob passes on its way out.
//!
//! [`BlobSource`] is the seam: kiln's [`BlobStore`] implements it, and so can anything else
//! that holds blobs (a test double, a registry-backed lazy source). Exporters never trust
//! it: every blob is read through a [`VerifyingReader`], which fails the read when the bytes
//! are longer or shorter than the descriptor says or hash to another digest, so a damaged
//! store never produces an archive with a wrong blob in it.

use kiln_cache::{BlobStore, Digest, Hasher};
use std::error::Error;
use std::io::{self, Read};

/// An error from a [`BlobSource`], kept whole for the message.
pub type SourceError = Box<dyn Error + Send + Sync>;

/// Read access to blobs by digest, from any thread (exports read layers in parallel).
pub trait BlobSource: Sync {
    /// Opens the blob for streaming.
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, SourceError>;
    /// The blob's size in bytes.
    fn size(&self, digest: &Digest) -> Result<u64, SourceError>;
}

impl BlobSource for BlobStore {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(BlobStore::open(self, digest)?))
    }

    fn size(&self, digest: &Digest) -> Result<u64, SourceError> {
        Ok(BlobStore::size(self, digest)?)
    }
}

/// How a blob failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The stream ended after `actual` of the `expected` bytes.
    Short { actual: u64 },
    /// The stream went on past the `expected` bytes.
    Long,
    /// The bytes hash to `actual`.
    Digest { actual: Digest },
}

/// Passes a blob's bytes through, checking size and digest. The check fails the read that
/// would end the stream, so a consumer that reads to the end sees the failure; callers that
/// stop early (a tar reader at its end marker) call [`VerifyingReader::finish`].
pub struct VerifyingReader<R> {
    inner: R,
    digest: Digest,
    expected: u64,
    read: u64,
    hasher: Option<Hasher>,
    mismatch: Option<Mismatch>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, digest: Digest, expected: u64) -> Self {
        VerifyingReader {
            inner,
            digest,
            expected,
            read: 0,
            hasher: Some(Hasher::new()),
            mismatch: None,
        }
    }

    /// What went wrong, if verification failed.
    pub fn mismatch(&self) -> Option<&Mismatch> {
        self.mismatch.as_ref()
    }

    /// Reads whatever is left and returns the verdict.
    pub fn finish(mut self) -> io::Result<Result<(), Mismatch>> {
        let mut sink = [0u8; 16 * 1024];
        loop {
            match self.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => match self.mismatch.take() {
                    Some(mismatch) => return Ok(Err(mismatch)),
                    None => return Err(err),
                },
            }
        }
        Ok(match self.mismatch {
            Some(mismatch) => Err(mismatch),
            None => Ok(()),
        })
    }

    fn fail(&mut self, mismatch: Mismatch) -> io::Error {
        let message = format!("blob {} failed verification: {mismatch:?}", self.digest);
        self.mismatch = Some(mismatch);
        io::Error::new(io::ErrorKind::InvalidData, message)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.mismatch.is_some() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "blob failed verification"));
        }
        let Some(hasher) = self.hasher.as_mut() else { return Ok(0) };
        // Read one byte past the expected end, to notice a stream that is too long.
        let room = (self.expected - self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            if self.read < self.expected {
                return Err(self.fail(Mismatch::Short { actual: self.read }));
            }
            let actual = self.hasher.take().map(Hasher::finish).unwrap_or(self.digest);
            if actual != self.digest {
                return Err(self.fail(Mismatch::Digest { actual }));
            }
            return Ok(0);
        }
        if self.read + n as u64 > self.expected {
            return Err(self.fail(Mismatch::Long));
        }
        hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        data: &[u8],
        digest: Digest,
        expected: u64,
    ) -> (io::Result<Vec<u8>>, Option<Mismatch>) {
        let mut reader = VerifyingReader::new(data, digest, expected);
        let mut out = Vec::new();
        let result = reader.read_to_end(&mut out).map(|_| out);
        (result, reader.mismatch().cloned())
    }

    #[test]
    fn good_blob_passes_through() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let (out, mismatch) = read_all(&data, Digest::of(&data), data.len() as u64);
        assert_eq!(out.unwrap(), data);
        assert_eq!(mismatch, None);
        let (out, _) = read_all(b"", Digest::of(b""), 0);
        assert_eq!(out.unwrap(), b"");
    }

    #[test]
    fn short_long_and_wrong_blobs_fail() {
        let (out, mismatch) = read_all(b"abc", Digest::of(b"abcd"), 4);
        assert!(out.is_err());
        assert_eq!(mismatch, Some(Mismatch::Short { actual: 3 }));
        let (out, mismatch) = read_all(b"abcde", Digest::of(b"abcd"), 4);
        assert!(out.is_err());
        assert_eq!(mismatch, Some(Mismatch::Long));
        let (out, mismatch) = read_all(b"abce", Digest::of(b"abcd"), 4);
        assert_eq!(out.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(mismatch, Some(Mismatch::Digest { actual: Digest::of(b"abce") }));
    }

    #[test]
    fn finish_checks_the_rest() {
        let mut reader = VerifyingReader::new(&b"abcdef"[..], Digest::of(b"abcdef"), 6);
        let mut first = [0u8; 2];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(reader.finish().unwrap(), Ok(()));
        let mut reader = VerifyingReader::new(&b"abcdeX"[..], Digest::of(b"abcdef"), 6);
        reader.read_exact(&mut first).unwrap();
        assert_eq!(
            reader.finish().unwrap(),
            Err(Mismatch::Digest { actual: Digest::of(b"abcdeX") })
        );
        let reader = VerifyingReader::new(&b"abc"[..], Digest::of(b"abcdef"), 6);
        assert_eq!(reader.finish().unwrap(), Err(Mismatch::Short { actual: 3 }));
    }

    #[test]
    fn blob_store_is_a_source() {
        let dir = tempfile::tempdir().unwrap();
        let root = kiln_cache::Root::open(dir.path()).unwrap();
        let store = root.blobs();
        let digest = store.put_bytes(b"blob").unwrap();
        let source: &dyn BlobSource = &store;
        assert_eq!(source.size(&digest).unwrap(), 4);
        let mut text = String::new();
        source.open(&digest).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "blob");
        let missing = Digest::of(b"missing");
        assert_eq!(
            source.open(&missing).err().unwrap().to_string(),
            format!("blob {missing} not found in the store")
        );
    }
}
