//! The error every registry operation returns, and the decoding of a registry's own error
//! body (`{"errors":[{"code":…,"message":…}]}`) into the words Docker prints.
//!
//! Each variant names what the user needs to act: the registry, the repository or reference,
//! the HTTP status and what the registry said. Credentials never appear in any message.

use super::auth::{AuthError, Scope};
use super::credentials::CredentialsError;
use super::digest::Digest;
use super::endpoint::EndpointError;
use super::manifest::ManifestError;
use super::platform_select::PlatformSelectError;
use super::reference::ReferenceError;
use super::tls::TlsError;
use serde::Deserialize;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot reach registry {registry}: {cause}")]
    Unreachable { registry: String, cause: String },
    #[error(
        "registry {registry} does not answer like a registry: GET {url} returned HTTP {status}"
    )]
    NotARegistry { registry: String, url: String, status: u16 },
    #[error("{0}")]
    AccessDenied(AccessDenied),
    #[error("manifest for {reference} not found: {detail}")]
    ManifestNotFound { reference: String, detail: String },
    #[error("blob {digest} not found in {name}: {detail}")]
    BlobNotFound { name: String, digest: Digest, detail: String },
    #[error("registry {registry} returned HTTP {status} for {what}: {detail}")]
    Status { registry: String, what: String, status: u16, detail: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("invalid manifest for {reference}: {source}")]
    Manifest { reference: String, source: ManifestError },
    #[error("invalid image config {digest} of {reference}: {source}")]
    Config { reference: String, digest: Digest, source: serde_json::Error },
    #[error(transparent)]
    Platform(#[from] PlatformSelectError),
    #[error("authentication with registry {registry} failed: {source}")]
    Auth { registry: String, source: AuthError },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot write blob {digest}: {source}")]
    Sink { digest: Digest, source: std::io::Error },
    #[error("download of {what} from registry {registry} failed: {cause}")]
    Transfer { registry: String, what: String, cause: String },
    #[error("cannot set up the http client for registry {registry}: {cause}")]
    HttpClient { registry: String, cause: String },
    #[error("{origin}: {source}")]
    Settings { origin: String, source: EndpointError },
    #[error("upload of {what} to registry {registry} failed: {cause}")]
    Upload { registry: String, what: String, cause: String },
    #[error(
        "registry {registry} gave no usable upload location for {what} (Location: {location:?})"
    )]
    BadLocation { registry: String, what: String, location: Option<String> },
    #[error("cannot read blob {digest} to push it: {source}")]
    Source { digest: Digest, source: std::io::Error },
    #[error(
        "cannot push {reference}: it names digest {named}, but the image's manifest is {actual}"
    )]
    PushDigest { reference: String, named: Digest, actual: Digest },
    #[error("login to registry {registry} failed: {detail} (HTTP {status})")]
    LoginFailed { registry: String, status: u16, detail: String },
}

/// What was refused, by whom, and whether credentials were offered (and from where).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDenied {
    /// `pull` or `push`.
    pub action: &'static str,
    /// `registry/repository`.
    pub name: String,
    pub registry: String,
    pub status: u16,
    /// The registry's words, e.g. `unauthorized: authentication required`.
    pub detail: String,
    /// Where the rejected credentials came from; `None` when the request was anonymous.
    pub credentials_source: Option<String>,
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} access denied for {}: {} (HTTP {}; ",
            self.action, self.name, self.detail, self.status
        )?;
        match &self.credentials_source {
            Some(source) => write!(
                f,
                "the credentials for registry {} from {source} were rejected)",
                self.registry
            ),
            None => write!(f, "no credentials configured for registry {})", self.registry),
        }
    }
}

impl AccessDenied {
    /// A refusal of `scope` on `registry`.
    pub fn new(
        scope: &Scope,
        registry: &str,
        status: u16,
        detail: String,
        credentials_source: Option<String>,
    ) -> Self {
        AccessDenied {
            action: scope.action(),
            name: format!("{registry}/{}", scope.repository),
            registry: registry.to_string(),
            status,
            detail,
            credentials_source,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The longest piece of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY: usize = 200;

/// Turns an error response into words: the registry's `errors[]` as Docker prints them
/// (`unauthorized: authentication required`), a token server's `details`, a short quote of
/// any other body, or the status' reason phrase when the body is empty.
pub fn describe_error_body(status: u16, body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let entries: Vec<String> = parsed
            .errors
            .iter()
            .filter(|e| !e.code.is_empty() || !e.message.is_empty())
            .map(|e| {
                let code = e.code.to_lowercase().replace('_', " ");
                match (code.is_empty(), e.message.is_empty()) {
                    (false, false) => format!("{code}: {}", e.message),
                    (false, true) => code,
                    _ => e.message.clone(),
                }
            })
            .collect();
        if !entries.is_empty() {
            return entries.join("; ");
        }
        if let Some(text) = parsed.details.or(parsed.detail).or(parsed.message).or(parsed.error) {
            return text;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return reason_phrase(status).to_string();
    }
    let mut quoted: String = text.chars().take(MAX_QUOTED_BODY).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted.replace(['\n', '\r'], " ")
}

fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("no reason given")
}

/// The chain of an error and its sources, joined with `: `, skipping repeats (reqwest and
/// hyper often repeat the inner message in the outer one).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_read_like_docker() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"x","Action":"pull"}]}]}"#;
        assert_eq!(describe_error_body(401, body), "unauthorized: authentication required");
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"},{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
        assert_eq!(
            describe_error_body(404, body),
            "manifest unknown: manifest unknown; name unknown: repository name not known to registry"
        );
        assert_eq!(
            describe_error_body(401, br#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
    }

    #[test]
    fn other_bodies_are_quoted_or_named_by_status() {
        assert_eq!(describe_error_body(503, b""), "Service Unavailable");
        assert_eq!(describe_error_body(502, b"  bad gateway\n"), "bad gateway");
        let long = "x".repeat(500);
        let described = describe_error_body(500, long.as_bytes());
        assert_eq!(described.chars().count(), MAX_QUOTED_BODY + 1);
        assert!(described.ends_with('…'));
    }

    #[test]
    fn access_denied_names_registry_and_credential_source() {
        let mut denied = AccessDenied {
            action: "pull",
            name: "127.0.0.1:5000/x".into(),
            registry: "127.0.0.1:5000".into(),
            status: 401,
            detail: "unauthorized: authentication required".into(),
            credentials_source: None,
        };
        assert_eq!(
            denied.to_string(),
            "pull access denied for 127.0.0.1:5000/x: unauthorized: authentication required (HTTP 401; no credentials configured for registry 127.0.0.1:5000)"
        );
        denied.credentials_source = Some("/home/u/.docker/config.json".into());
        assert_eq!(
            denied.to_string(),
            "pull access denied for 127.0.0.1:5000/x: unauthorized: authentication required (HTTP 401; the credentials for registry 127.0.0.1:5000 from /home/u/.docker/config.json were rejected)"
        );
    }
}
