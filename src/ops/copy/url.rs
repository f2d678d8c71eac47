//! `ADD <url>`: downloading a file, with BuildKit's naming and checksum rules.
//!
//! - The file is named after the last segment of the URL's path, percent-decoded
//!   (`__unnamed__` when there is none); the destination rules then apply as for a local
//!   file.
//! - Its mode is 0600 (BuildKit's HTTP source), its mtime the `Last-Modified` header when
//!   there is one.
//! - `--checksum=ALG:HEX` (`sha256`, `sha384` or `sha512`) is checked against the bytes
//!   received; a mismatch names both digests. The file is streamed to a temporary file while
//!   it is hashed, so memory stays bounded; it is removed when the [`Download`] is dropped.
//! - Only `2xx` answers are files; anything else is an error naming the status.

use super::CopyError;
use crate::fs::Time;
use reqwest::blocking::Client;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A downloaded URL source.
#[derive(Debug, Clone)]
pub struct Download {
    pub url: String,
    /// The name the file gets in the image (before the destination rules).
    pub file_name: String,
    /// The downloaded bytes on the host.
    pub path: PathBuf,
    pub last_modified: Option<Time>,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    _temp: Arc<tempfile::TempPath>,
}

/// An HTTP client for URL sources: rustls on `ring`, the system's trusted roots.
pub fn default_http_client() -> Result<Client, CopyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate the system store holds but rustls cannot parse is skipped.
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CopyError::HttpClient(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| CopyError::HttpClient(error_chain(&e)))
}

/// Downloads `url` into a temporary file in `dir`, checking `checksum` when given.
pub fn download(
    client: &Client,
    url: &str,
    checksum: Option<&str>,
    dir: &Path,
) -> Result<Download, CopyError> {
    let expected = checksum.map(Checksum::parse).transpose()?;
    let fail = |reason: String| CopyError::Download { url: url.to_string(), reason };
    let mut response = client.get(url).send().map_err(|e| fail(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("invalid response status {}", status.as_u16())));
    }
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Time { sec: d.as_secs() as i64, nsec: 0 });
    let mut temp = tempfile::Builder::new()
        .prefix(".kiln-download-")
        .tempfile_in(dir)
        .map_err(|e| fail(format!("create temporary file in {}: {e}", dir.display())))?;
    let mut hashers = Hashers::new(expected.as_ref().map(|c| c.algorithm));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("read body: {e}"))),
        };
        hashers.update(&buf[..n]);
        temp.write_all(&buf[..n]).map_err(|e| fail(format!("write temporary file: {e}")))?;
    }
    temp.flush().map_err(|e| fail(format!("write temporary file: {e}")))?;
    let (digest, checked) = hashers.finish();
    if let Some(expected) = expected {
        let got = checked.expect("a checked digest is computed when a checksum is given");
        if got != expected.text {
            return Err(CopyError::ChecksumMismatch {
                url: url.to_string(),
                got,
                expected: expected.text,
            });
        }
    }
    let path = temp.into_temp_path();
    Ok(Download {
        url: url.to_string(),
        file_name: file_name(url),
        path: path.to_path_buf(),
        last_modified,
        digest,
        _temp: Arc::new(path),
    })
}

/// The last segment of the URL's path, percent-decoded; `__unnamed__` when there is none.
pub(super) fn file_name(url: &str) -> String {
    let path = reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
    let decoded = percent_decode(&path);
    let base = decoded.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if base.is_empty() || base == "." || base == ".." {
        "__unnamed__".to_string()
    } else {
        base.to_string()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

/// A parsed `--checksum`.
#[derive(Debug, Clone)]
struct Checksum {
    algorithm: Algorithm,
    /// `alg:hex`, lower case.
    text: String,
}

impl Checksum {
    fn parse(text: &str) -> Result<Self, CopyError> {
        let bad = |reason: &str| CopyError::Checksum {
            checksum: text.to_string(),
            reason: reason.to_string(),
        };
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(bad("invalid checksum digest format"));
        };
        let (algorithm, len) = match algorithm {
            "sha256" => (Algorithm::Sha256, 64),
            "sha384" => (Algorithm::Sha384, 96),
            "sha512" => (Algorithm::Sha512, 128),
            _ => return Err(bad("unsupported digest algorithm")),
        };
        if hex.len() != len
            || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("invalid checksum digest length or characters"));
        }
        Ok(Checksum { algorithm, text: text.to_string() })
    }
}

struct Hashers {
    sha256: Sha256,
    check: Option<Algorithm>,
    sha384: Option<Sha384>,
    sha512: Option<Sha512>,
}

impl Hashers {
    fn new(check: Option<Algorithm>) -> Self {
        Hashers {
            sha256: Sha256::new(),
            check,
            sha384: (check == Some(Algorithm::Sha384)).then(Sha384::new),
            sha512: (check == Some(Algorithm::Sha512)).then(Sha512::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = self.sha384.as_mut() {
            h.update(bytes);
        }
        if let Some(h) = self.sha512.as_mut() {
            h.update(bytes);
        }
    }

    /// `sha256:<hex>`, and the digest in the checksum's algorithm (when one was given).
    fn finish(self) -> (String, Option<String>) {
        let sha256 = format!("sha256:{}", hex(&self.sha256.finalize()));
        let checked = match self.check {
            None => None,
            Some(Algorithm::Sha256) => Some(sha256.clone()),
            Some(Algorithm::Sha384) => {
                self.sha384.map(|h| format!("sha384:{}", hex(&h.finalize())))
            }
            Some(Algorithm::Sha512) => {
                self.sha512.map(|h| format!("sha512:{}", hex(&h.finalize())))
            }
        };
        (sha256, checked)
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error and its causes, `: `-joined (reqwest hides the useful part in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url_path() {
        assert_eq!(file_name("http://h/a/b/tool.tar.gz"), "tool.tar.gz");
        assert_eq!(file_name("http://h/a/b/"), "b");
        assert_eq!(file_name("http://h/"), "__unnamed__");
        assert_eq!(file_name("http://h"), "__unnamed__");
        assert_eq!(file_name("https://h/x/na%20me.txt?q=1#f"), "na me.txt");
        assert_eq!(file_name("https://h/x/%2e%2e"), "__unnamed__");
    }

    #[test]
    fn checksums_are_validated_before_use() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert!(Checksum::parse(&ok).is_ok());
        let msg = |text: &str| Checksum::parse(text).unwrap_err().to_string();
        assert!(msg(&"a".repeat(64)).contains("invalid checksum digest format"));
        assert!(msg(&format!("md5:{}", "a".repeat(32))).contains("unsupported digest algorithm"));
        assert!(msg("sha256:abc").contains("length"));
        assert!(msg(&format!("sha256:{}", "A".repeat(64))).contains("characters"));
    }
}
