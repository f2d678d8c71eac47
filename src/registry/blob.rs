//! Blob downloads: streamed into any `Write` sink, verified, resumed, and run in parallel.
//!
//! Invariants: bytes reach the sink in order and exactly once; the digest (in the
//! descriptor's algorithm) and the size are checked over everything written before a
//! download counts as done, and a body longer than the descriptor's size is cut off with an
//! error, so memory and disk stay bounded whatever the registry sends. A download broken
//! mid-way is resumed with `Range: bytes=<received>-`; if the registry ignores the range and
//! sends the whole blob again, the part already written is skipped, not written twice.
//! [`RegistryClient::fetch_blobs`] hands a sink to `finish` only after verification, so a
//! caller can commit it (rename a temp file) knowing its content is right.

use super::auth::Scope;
use super::client::{RegistryClient, header_text};
use super::digest::{Digest, DigestHasher};
use super::error::{RegistryError, error_chain};
use super::manifest::Descriptor;
use super::parallel::for_each_parallel;
use super::reference::Reference;
use reqwest::header::{HeaderMap, HeaderValue, RANGE};
use std::io::{Read, Write};

/// Progress of one blob: bytes received so far out of the descriptor's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlobProgress<'a> {
    pub descriptor: &'a Descriptor,
    pub done: u64,
    pub total: u64,
}

const CHUNK: usize = 64 * 1024;

impl RegistryClient {
    /// Downloads the blob `descriptor` names from `reference`'s repository into `sink`,
    /// verifying its size and digest. On error the sink holds an unverified prefix.
    pub fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        sink: &mut dyn Write,
        progress: &dyn Fn(BlobProgress<'_>),
    ) -> Result<(), RegistryError> {
        let registry = reference.registry();
        let scope = Scope::pull(reference.repository());
        let digest = &descriptor.digest;
        let total = descriptor.size;
        let what = format!("blob {digest} of {}", reference.name());
        let path = format!("/blobs/{digest}");
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut written: u64 = 0;
        let mut failures_without_progress = 0;
        let retry = &self.options.retry;
        progress(BlobProgress { descriptor, done: 0, total });
        loop {
            let mut headers = HeaderMap::new();
            if written > 0 {
                let range = HeaderValue::from_str(&format!("bytes={written}-"))
                    .expect("a range is a valid header value");
                headers.insert(RANGE, range);
            }
            let response = self.send(registry, &scope, &path, &headers)?;
            let status = response.status().as_u16();
            if !(status == 200 || (status == 206 && written > 0)) {
                return Err(self.status_error(registry, &scope, &what, response, |detail| {
                    RegistryError::BlobNotFound {
                        name: reference.name(),
                        digest: digest.clone(),
                        detail,
                    }
                }));
            }
            // Bytes at the start of this body that the sink already has.
            let mut skip = if status == 206 {
                let start = header_text(&response, "content-range")
                    .and_then(|range| content_range_start(&range));
                if start != Some(written) {
                    return Err(RegistryError::Transfer {
                        registry: registry.to_string(),
                        what,
                        cause: format!(
                            "asked to resume at byte {written}, the registry answered with range {start:?}"
                        ),
                    });
                }
                0
            } else {
                written
            };
            let before = written;
            let mut body = response;
            let mut buffer = vec![0u8; CHUNK];
            let outcome = loop {
                let read = match body.read(&mut buffer) {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) => break Err(error_chain(&e)),
                };
                let mut chunk = &buffer[..read];
                if skip > 0 {
                    let skipped = (skip as usize).min(chunk.len());
                    chunk = &chunk[skipped..];
                    skip -= skipped as u64;
                }
                if chunk.is_empty() {
                    continue;
                }
                if written + chunk.len() as u64 > total {
                    return Err(RegistryError::SizeMismatch {
                        what,
                        expected: total,
                        actual: written + chunk.len() as u64,
                    });
                }
                hasher.update(chunk);
                sink.write_all(chunk)
                    .map_err(|source| RegistryError::Sink { digest: digest.clone(), source })?;
                written += chunk.len() as u64;
                progress(BlobProgress { descriptor, done: written, total });
            };
            // All bytes are in (an error after the last byte changes nothing): the digest decides.
            if written == total {
                break;
            }
            // Broken off (an error, or the end of the body before the whole blob): resume,
            // unless the attempts without any progress are used up.
            let cause = match outcome {
                Err(cause) => cause,
                Ok(()) => format!("the body ended after {written} of {total} bytes"),
            };
            if written > before {
                failures_without_progress = 0;
            }
            failures_without_progress += 1;
            if !retry.may_retry(failures_without_progress) {
                return Err(RegistryError::Transfer {
                    registry: registry.to_string(),
                    what,
                    cause,
                });
            }
            retry.wait(failures_without_progress, None);
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(RegistryError::DigestMismatch { what, expected: digest.clone(), actual });
        }
        sink.flush().map_err(|source| RegistryError::Sink { digest: digest.clone(), source })?;
        Ok(())
    }

    /// Whether `reference`'s repository holds the blob (`HEAD`); a missing blob is `false`,
    /// not an error.
    pub fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.has_blob(reference.registry(), &Scope::pull(reference.repository()), digest)
    }

    /// [`RegistryClient::blob_exists`] in `scope`'s repository, asked with its access (a
    /// push asks with its push token rather than getting a second, pull-only one).
    pub(super) fn has_blob(
        &self,
        registry: &str,
        scope: &Scope,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", scope.repository);
        let response = self
            .send_with(registry, scope, &|http, base_url| http.head(format!("{base_url}{path}")))?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => {
                let name = format!("{registry}/{}", scope.repository);
                let what = format!("blob {digest} of {name}");
                Err(self.status_error(registry, scope, &what, response, |detail| {
                    RegistryError::BlobNotFound { name, digest: digest.clone(), detail }
                }))
            }
        }
    }

    /// Downloads a blob into memory; for small blobs (configs) only. `limit` bounds it.
    pub fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if descriptor.size > limit {
            return Err(RegistryError::TooLarge {
                what: format!("blob {} of {}", descriptor.digest, reference.name()),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(descriptor.size as usize);
        self.fetch_blob(reference, descriptor, &mut bytes, &|_| {})?;
        Ok(bytes)
    }

    /// Downloads several blobs on up to `parallel_downloads` threads. For each descriptor,
    /// `open` makes a sink and, once the blob is verified, `finish` receives it. The first
    /// error stops the scheduling of further blobs and is returned.
    pub fn fetch_blobs<S, Open, Finish>(
        &self,
        reference: &Reference,
        descriptors: &[Descriptor],
        open: Open,
        finish: Finish,
        progress: &(dyn Fn(BlobProgress<'_>) + Sync),
    ) -> Result<(), RegistryError>
    where
        S: Write,
        Open: Fn(&Descriptor) -> std::io::Result<S> + Sync,
        Finish: Fn(&Descriptor, S) -> std::io::Result<()> + Sync,
    {
        for_each_parallel(descriptors, self.options.parallel_downloads, |descriptor| {
            let sink_error =
                |source| RegistryError::Sink { digest: descriptor.digest.clone(), source };
            let mut sink = open(descriptor).map_err(sink_error)?;
            self.fetch_blob(reference, descriptor, &mut sink, progress)?;
            finish(descriptor, sink).map_err(sink_error)
        })
    }
}

/// The first byte of a `Content-Range: bytes <start>-<end>/<size>` header.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split(['-', '/']).next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes x-1/2"), None);
    }
}
