//! Blob uploads, as the distribution spec describes them and as registries in the wild
//! answer them.
//!
//! One blob goes up in this order, each step skipped when an earlier one settled it:
//! 1. `HEAD /v2/<name>/blobs/<digest>`: the repository has it already — nothing to send.
//! 2. `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>` for each repository of
//!    the same registry known to hold it: `201` means mounted; `202` means the registry
//!    declined and opened an upload session instead, which step 3 uses.
//! 3. `POST /v2/<name>/blobs/uploads/` opens a session; a blob up to
//!    [`ClientOptions::upload_chunk_size`](super::ClientOptions) goes in one
//!    `PUT <location>?digest=<digest>`; a larger one in `PATCH` chunks (`Content-Range`) of
//!    that size — or of the registry's `OCI-Chunk-Min-Length`, if larger; halved when the
//!    registry answers `413` — and a final empty `PUT …?digest=`.
//!
//! Invariants:
//! - the bytes sent are read through the caller's `open`, which verifies them; a blob
//!   whose stored bytes are damaged fails the push rather than uploading them;
//! - every `Location` is resolved against the URL of the request that returned it
//!   (relative or absolute, as registries differ), and the `digest` parameter is added to
//!   whatever query it carries; credentials go only to the registry's own origin;
//! - any 2xx is success where the spec says 201 or 202, and a missing
//!   `Docker-Content-Digest` is accepted; one that names another digest is an error;
//! - a chunk is never blindly sent twice: after a failed `PATCH` the session's status
//!   (`GET <location>`, `Range: 0-<last>`) says where to go on, and a session the registry
//!   has lost or refuses (distribution drops one that a broken chunk left half-written)
//!   is replaced by a new one, from byte 0. Attempts without progress are bounded by the
//!   retry policy; waits follow its backoff and `Retry-After`;
//! - at most one chunk of the blob is held in memory ([`BlobCursor`]).

use super::auth::Scope;
use super::blob_cursor::BlobCursor;
use super::client::{RegistryClient, header_text, read_error_body, retry_after_of};
use super::digest::Digest;
use super::error::{RegistryError, error_chain};
use super::manifest::Descriptor;
use super::reference::Reference;
use reqwest::Url;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use std::io::{self, Read};
use std::time::Duration;

/// Opens the bytes of a blob, verified, from the start; called again when an upload
/// starts over.
pub type OpenBlob<'a> = dyn Fn(&Descriptor) -> io::Result<Box<dyn Read + 'a>> + Sync + 'a;

/// How a blob got into the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// It was there already.
    Existed,
    /// Mounted from another repository of the registry.
    Mounted { from: String },
    /// Its bytes were sent.
    Uploaded,
}

/// The smallest chunk a `413 Payload Too Large` answer can shrink uploads to.
const MIN_CHUNK_SIZE: u64 = 64 * 1024;
const OCTET_STREAM: &str = "application/octet-stream";
/// Bytes per second an upload may slow down to before a request carrying them times out.
const SLOWEST_UPLOAD_RATE: u64 = 16 * 1024;
const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";
pub(super) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// An upload session: where to send the next request.
#[derive(Debug, Clone)]
struct Session {
    url: Url,
    /// The smallest chunk the registry takes (`OCI-Chunk-Min-Length` of the answer that
    /// opened the session).
    min_chunk: Option<u64>,
}

/// Why an attempt failed (boxed: errors are large and attempts return often), and what to
/// do about it.
struct Failure {
    error: Box<RegistryError>,
    next: NextStep,
}

enum NextStep {
    /// Give up: access denied, a request the registry will never accept, unreadable data.
    GiveUp,
    /// Try again (after the session's status is known), waiting at least `retry_after`.
    Retry { retry_after: Option<Duration> },
    /// The registry refused the chunk's size: send smaller chunks.
    SmallerChunks,
}

impl Failure {
    fn new(error: RegistryError, next: NextStep) -> Self {
        Failure { error: Box::new(error), next }
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Unreachable { .. } => {
                Failure::new(error, NextStep::Retry { retry_after: None })
            }
            other => Failure::new(other, NextStep::GiveUp),
        }
    }
}

/// One blob going to one repository.
struct Upload<'u, 'a> {
    target: &'u Reference,
    scope: Scope,
    descriptor: &'u Descriptor,
    open: &'u OpenBlob<'a>,
    what: String,
}

impl<'u, 'a> Upload<'u, 'a> {
    fn new(target: &'u Reference, descriptor: &'u Descriptor, open: &'u OpenBlob<'a>) -> Self {
        Upload {
            target,
            scope: Scope::push(target.repository()),
            descriptor,
            open,
            what: format!("blob {} to {}", descriptor.digest, target.name()),
        }
    }
}

impl RegistryClient {
    /// Puts the blob `descriptor` names into `target`'s repository (see the module docs),
    /// trying a mount from each repository of `mount_from` (same registry) first.
    /// `progress(done, total)` follows the bytes the registry acknowledged.
    pub fn upload_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        open: &OpenBlob<'_>,
        mount_from: &[String],
        progress: &dyn Fn(u64, u64),
    ) -> Result<BlobOutcome, RegistryError> {
        let upload = Upload::new(target, descriptor, open);
        match self.has_blob(target.registry(), &upload.scope, &descriptor.digest) {
            Ok(true) => {
                progress(descriptor.size, descriptor.size);
                return Ok(BlobOutcome::Existed);
            }
            Ok(false) => {}
            // A refused HEAD has no body to say why: the upload's POST will say it (or
            // succeed, on a registry that lets pushers write but not look).
            Err(RegistryError::AccessDenied(_)) => {}
            Err(error) => return Err(error),
        }
        let mut declined_session = None;
        for from in mount_from.iter().filter(|from| *from != target.repository()) {
            match self.mount(&upload, from)? {
                Mount::Done => {
                    progress(descriptor.size, descriptor.size);
                    return Ok(BlobOutcome::Mounted { from: from.clone() });
                }
                Mount::Declined(session) => {
                    declined_session = session;
                    if declined_session.is_some() {
                        break;
                    }
                }
            }
        }
        self.send_blob(&upload, declined_session, progress)?;
        Ok(BlobOutcome::Uploaded)
    }

    /// Tries `POST …/blobs/uploads/?mount=&from=`.
    fn mount(&self, upload: &Upload<'_, '_>, from: &str) -> Result<Mount, RegistryError> {
        let registry = upload.target.registry();
        let scope = upload.scope.with_mount_from(from);
        let path = format!("/v2/{}/blobs/uploads/", upload.target.repository());
        let digest = upload.descriptor.digest.to_string();
        let response = self.send_with(registry, &scope, &|http, base_url| {
            http.post(format!("{base_url}{path}"))
                .query(&[("mount", digest.as_str()), ("from", from)])
                .header(reqwest::header::CONTENT_LENGTH, "0")
        })?;
        match response.status().as_u16() {
            201 => {
                check_announced_digest(&response, &upload.descriptor.digest, &upload.what)?;
                Ok(Mount::Done)
            }
            200..=299 => Ok(Mount::Declined(self.session_from(upload, &response).ok())),
            // Not allowed to read `from`, or a registry without mounts: upload instead.
            _ => Ok(Mount::Declined(None)),
        }
    }

    /// Uploads the bytes (see the module docs for the retry and resume rules).
    fn send_blob(
        &self,
        upload: &Upload<'_, '_>,
        mut session: Option<Session>,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(), RegistryError> {
        let size = upload.descriptor.size;
        let retry = &self.options.retry;
        let mut chunk_size = self.options.upload_chunk_size.max(MIN_CHUNK_SIZE);
        // The smallest chunk the registry said it takes.
        let mut registry_min = 0;
        let mut data = BlobCursor::new(upload.open, upload.descriptor);
        // Bytes of the blob the current session holds, and the most any session held.
        let mut acknowledged = 0;
        let mut high_water = 0;
        let mut failures_without_progress = 0;
        loop {
            let mut current = match session.take() {
                Some(current) => current,
                None => {
                    acknowledged = 0;
                    self.start_session(upload)?
                }
            };
            registry_min = registry_min.max(current.min_chunk.unwrap_or(0));
            chunk_size = chunk_size.max(registry_min);
            let chunked = size > chunk_size || acknowledged > 0;
            let result = if chunked {
                self.put_chunks(upload, &mut current, &mut data, chunk_size, &mut acknowledged)
            } else {
                self.put_whole(upload, &current, &mut data)
            };
            let (error, retry_after) = match result {
                Ok(()) => {
                    progress(size, size);
                    return Ok(());
                }
                Err(Failure { error, next: NextStep::GiveUp }) => return Err(*error),
                Err(Failure { error, next: NextStep::SmallerChunks }) => {
                    let smaller = (chunk_size.min(size) / 2).max(MIN_CHUNK_SIZE);
                    if smaller >= chunk_size.min(size) || smaller < registry_min {
                        return Err(*error);
                    }
                    chunk_size = smaller;
                    // A refused chunk left nothing behind: go on with the session.
                    session = chunked.then_some(current);
                    continue;
                }
                Err(Failure { error, next: NextStep::Retry { retry_after } }) => {
                    (error, retry_after)
                }
            };
            progress(acknowledged, size);
            // Where does the session stand? Go on from there, or start a new one.
            session = if chunked {
                match self.session_status(upload, &current, acknowledged) {
                    Some((resumed, held)) if held <= size => {
                        acknowledged = held;
                        Some(resumed)
                    }
                    _ => None,
                }
            } else {
                None
            };
            // Progress is getting further than ever: a session that breaks at the same
            // point each time, or is lost each time, does not go on forever.
            if acknowledged > high_water {
                high_water = acknowledged;
                failures_without_progress = 0;
            }
            failures_without_progress += 1;
            if !retry.may_retry(failures_without_progress) {
                return Err(*error);
            }
            retry.wait(failures_without_progress, retry_after);
        }
    }

    /// `POST …/blobs/uploads/`: a new session.
    fn start_session(&self, upload: &Upload<'_, '_>) -> Result<Session, RegistryError> {
        let registry = upload.target.registry();
        let path = format!("/v2/{}/blobs/uploads/", upload.target.repository());
        let response = self.send_with(registry, &upload.scope, &|http, base_url| {
            http.post(format!("{base_url}{path}")).header(reqwest::header::CONTENT_LENGTH, "0")
        })?;
        if !response.status().is_success() {
            return Err(self.upload_status_error(upload, response));
        }
        self.session_from(upload, &response)
    }

    /// The session a response's `Location` names, resolved against its URL, with the
    /// minimum chunk size it gives.
    fn session_from(
        &self,
        upload: &Upload<'_, '_>,
        response: &Response,
    ) -> Result<Session, RegistryError> {
        let location = header_text(response, LOCATION.as_str());
        let url =
            location.as_deref().and_then(|l| response.url().join(l).ok()).ok_or_else(|| {
                RegistryError::BadLocation {
                    registry: upload.target.registry().to_string(),
                    what: upload.what.clone(),
                    location: location.clone(),
                }
            })?;
        let min_chunk = header_text(response, CHUNK_MIN_LENGTH).and_then(|v| v.trim().parse().ok());
        Ok(Session { url, min_chunk })
    }

    /// One `PUT <location>?digest=` carrying the whole blob.
    fn put_whole(
        &self,
        upload: &Upload<'_, '_>,
        session: &Session,
        data: &mut BlobCursor<'_, '_>,
    ) -> Result<(), Failure> {
        let body = data.bytes_from(0, upload.descriptor.size).map_err(unreadable(upload))?;
        let body = body.to_vec();
        self.finish(upload, session, body)
    }

    /// `PATCH`es from `acknowledged` to the end, then the final `PUT`; `session` follows
    /// the registry's answers, so after a failure it is the last one known good.
    fn put_chunks(
        &self,
        upload: &Upload<'_, '_>,
        session: &mut Session,
        data: &mut BlobCursor<'_, '_>,
        chunk_size: u64,
        acknowledged: &mut u64,
    ) -> Result<(), Failure> {
        let size = upload.descriptor.size;
        while *acknowledged < size {
            let start = *acknowledged;
            let chunk = data.bytes_from(start, chunk_size).map_err(unreadable(upload))?.to_vec();
            let end = start + chunk.len() as u64;
            let timeout = self.body_timeout(chunk.len());
            let response = self.send_to_session(upload, session, &|http, url| {
                http.patch(url)
                    .timeout(timeout)
                    .header(CONTENT_TYPE, OCTET_STREAM)
                    .header("Content-Range", format!("{start}-{}", end - 1))
                    .body(chunk.clone())
            })?;
            if !response.status().is_success() {
                return Err(self.classify(upload, response));
            }
            // The registry's own count wins when it gives a sensible one.
            let held = header_text(&response, "range")
                .and_then(|range| held_bytes(&range, end))
                .filter(|held| *held > start)
                .unwrap_or(end);
            if held > end {
                let cause = format!("the registry claims {held} bytes after {end} were sent");
                let error = self.transfer_error(upload, cause);
                return Err(Failure::new(error, NextStep::Retry { retry_after: None }));
            }
            if let Ok(next) = self.session_from(upload, &response) {
                *session = next;
            }
            *acknowledged = held;
        }
        self.finish(upload, session, Vec::new())
    }

    /// `PUT <location>?digest=<digest>` with `body` (the whole blob, or nothing after chunks).
    fn finish(
        &self,
        upload: &Upload<'_, '_>,
        session: &Session,
        body: Vec<u8>,
    ) -> Result<(), Failure> {
        let mut url = session.url.clone();
        url.query_pairs_mut().append_pair("digest", &upload.descriptor.digest.to_string());
        let finish = Session { url, min_chunk: None };
        let timeout = self.body_timeout(body.len());
        let response = self.send_to_session(upload, &finish, &|http, url| {
            http.put(url).timeout(timeout).header(CONTENT_TYPE, OCTET_STREAM).body(body.clone())
        })?;
        if !response.status().is_success() {
            return Err(self.classify(upload, response));
        }
        check_announced_digest(&response, &upload.descriptor.digest, &upload.what)
            .map_err(|error| Failure::new(error, NextStep::GiveUp))
    }

    /// `GET <location>`: the session to go on with and how many bytes it holds; `None`
    /// when the registry does not know it (any more) or does not say. `acknowledged` is
    /// what it last confirmed.
    fn session_status(
        &self,
        upload: &Upload<'_, '_>,
        session: &Session,
        acknowledged: u64,
    ) -> Option<(Session, u64)> {
        let response = self.send_to_session(upload, session, &|http, url| http.get(url)).ok()?;
        if !response.status().is_success() {
            return None;
        }
        let held = held_bytes(&header_text(&response, "range")?, acknowledged)?;
        let next = self.session_from(upload, &response).unwrap_or_else(|_| session.clone());
        Some((next, held))
    }

    /// Sends a request to a session URL once: with the repository's credentials when the
    /// URL is on the registry's own origin, without any otherwise.
    fn send_to_session(
        &self,
        upload: &Upload<'_, '_>,
        session: &Session,
        build: &dyn Fn(&Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let registry = upload.target.registry();
        let endpoint = self.endpoint(registry)?;
        let same_origin =
            Url::parse(&endpoint.base_url).is_ok_and(|base| base.origin() == session.url.origin());
        if same_origin {
            return self.send_once_with(registry, &upload.scope, &|http, _| {
                build(http, session.url.clone())
            });
        }
        build(&endpoint.http, session.url.clone()).send().map_err(|e| RegistryError::Unreachable {
            registry: registry.to_string(),
            cause: error_chain(&e),
        })
    }

    /// The limit for a request carrying `len` bytes: the client's timeout (which covers
    /// sending the body too) plus the time the body takes at [`SLOWEST_UPLOAD_RATE`].
    fn body_timeout(&self, len: usize) -> Duration {
        self.options.timeout + Duration::from_secs(len as u64 / SLOWEST_UPLOAD_RATE)
    }

    /// What a failed answer on a session means (see the module docs).
    fn classify(&self, upload: &Upload<'_, '_>, response: Response) -> Failure {
        let status = response.status().as_u16();
        let retry_after = retry_after_of(&response);
        let error = self.upload_status_error(upload, response);
        match status {
            413 => Failure::new(error, NextStep::SmallerChunks),
            // 400/404: the session is gone or spoiled; 416: out of step; 408/429/5xx: later.
            400 | 404 | 408 | 416 | 429 | 500..=599 => {
                Failure::new(error, NextStep::Retry { retry_after })
            }
            _ => Failure::new(error, NextStep::GiveUp),
        }
    }

    fn upload_status_error(&self, upload: &Upload<'_, '_>, response: Response) -> RegistryError {
        let registry = upload.target.registry();
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return self.status_error(registry, &upload.scope, &upload.what, response, |_| {
                unreachable!("only 404 calls not_found")
            });
        }
        RegistryError::Status {
            registry: registry.to_string(),
            what: format!("upload of {}", upload.what),
            status,
            detail: read_error_body(response),
        }
    }

    fn transfer_error(&self, upload: &Upload<'_, '_>, cause: String) -> RegistryError {
        RegistryError::Upload {
            registry: upload.target.registry().to_string(),
            what: upload.what.clone(),
            cause,
        }
    }
}

/// A blob that cannot be read (or fails verification) ends the upload.
fn unreadable(upload: &Upload<'_, '_>) -> impl Fn(io::Error) -> Failure {
    let digest = upload.descriptor.digest.clone();
    move |source| {
        Failure::new(RegistryError::Source { digest: digest.clone(), source }, NextStep::GiveUp)
    }
}

enum Mount {
    Done,
    /// Not mounted; the session the registry opened instead, if it did.
    Declined(Option<Session>),
}

/// A `Docker-Content-Digest` answer must name the digest sent, when there is one.
pub(super) fn check_announced_digest(
    response: &Response,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let announced = header_text(response, DOCKER_CONTENT_DIGEST);
    match announced.as_deref().map(str::trim).and_then(|a| a.parse::<Digest>().ok()) {
        Some(actual) if actual != *expected => Err(RegistryError::DigestMismatch {
            what: format!("{what} (the registry's Docker-Content-Digest)"),
            expected: expected.clone(),
            actual,
        }),
        _ => Ok(()),
    }
}

/// The bytes a session holds from its `Range: 0-<last>` header (`bytes=0-<last>` too).
/// `0-0` means one byte by the spec, but distribution also writes it for an empty session:
/// it is read as `known` bytes when that is 0 (nothing was confirmed yet), else as one.
fn held_bytes(range: &str, known: u64) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (first, last) = range.split_once('-')?;
    if first.trim() != "0" {
        return None;
    }
    match last.trim().parse::<u64>().ok()? {
        0 if known == 0 => Some(0),
        last => Some(last + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ranges() {
        assert_eq!(held_bytes("0-99", 50), Some(100));
        assert_eq!(held_bytes("bytes=0-0", 1), Some(1));
        assert_eq!(held_bytes("0-0", 0), Some(0), "distribution's empty session");
        assert_eq!(held_bytes(" 0-1023 ", 0), Some(1024));
        assert_eq!(held_bytes("5-10", 0), None);
        assert_eq!(held_bytes("garbage", 0), None);
    }
}
