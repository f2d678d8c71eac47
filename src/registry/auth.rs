//! Registry authentication: `WWW-Authenticate` challenges, token-server answers, the scopes
//! tokens are asked for, and the cache of tokens per registry and scope.
//!
//! The flow (Docker's): a request answered 401 carries a challenge. `Basic` means sending the
//! user's credentials with each request. `Bearer realm=…,service=…,scope=…` means asking the
//! realm for a token for the scope (with the credentials as Basic auth when there are any,
//! anonymously otherwise) and sending `Authorization: Bearer <token>`. Tokens are cached per
//! (registry, scope) until shortly before they expire. Tokens are secrets: their `Debug`
//! is redacted and they are never put in messages.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed WWW-Authenticate header {header:?}: {reason}")]
    MalformedChallenge { header: String, reason: &'static str },
    #[error("unsupported authentication scheme in WWW-Authenticate header {0:?}")]
    UnsupportedScheme(String),
    #[error("token server {realm} returned HTTP {status}: {detail}")]
    TokenRequest { realm: String, status: u16, detail: String },
    #[error("token server {realm} answered with no token: {reason}")]
    BadTokenResponse { realm: String, reason: String },
    #[error("token server {realm} cannot be reached: {cause}")]
    TokenServerUnreachable { realm: String, cause: String },
    #[error("invalid token realm {0:?}: must be an http or https url")]
    BadRealm(String),
}

/// What a registry demands in a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: Option<String> },
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// What a token grants: `repository:<name>:<actions>`, and for a cross-repository mount
/// also `repository:<source>:pull`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub repository: String,
    pub push: bool,
    /// The repository a blob is mounted from (same registry), read with pull access.
    pub mount_from: Option<String>,
}

impl Scope {
    pub fn pull(repository: &str) -> Self {
        Scope { repository: repository.to_string(), push: false, mount_from: None }
    }

    pub fn push(repository: &str) -> Self {
        Scope { repository: repository.to_string(), push: true, mount_from: None }
    }

    /// This scope plus pull access to `source`, for mounting a blob from it.
    pub fn with_mount_from(&self, source: &str) -> Self {
        Scope { mount_from: Some(source.to_string()), ..self.clone() }
    }

    /// The `scope` values of a token request, one per repository.
    pub fn token_scopes(&self) -> Vec<String> {
        let actions = if self.push { "pull,push" } else { "pull" };
        let mut scopes = vec![format!("repository:{}:{actions}", self.repository)];
        if let Some(source) = self.mount_from.as_ref().filter(|s| **s != self.repository) {
            scopes.push(format!("repository:{source}:pull"));
        }
        scopes
    }

    /// The verb access-denied messages use.
    pub fn action(&self) -> &'static str {
        if self.push { "push" } else { "pull" }
    }
}

impl fmt::Display for Scope {
    /// The token scopes joined by a space, as a `scope` challenge parameter writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token_scopes().join(" "))
    }
}

/// Parses a `WWW-Authenticate` value and returns the challenge kiln answers: Bearer when
/// offered, else Basic.
pub fn parse_challenge(header: &str) -> Result<Challenge, AuthError> {
    let challenges = parse_challenges(header)?;
    let bearer = challenges.iter().find(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if let Some((_, params)) = bearer {
        let get = |key: &str| {
            params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone())
        };
        let realm = get("realm").ok_or_else(|| AuthError::MalformedChallenge {
            header: header.to_string(),
            reason: "bearer challenge without realm",
        })?;
        return Ok(Challenge::Bearer { realm, service: get("service"), scope: get("scope") });
    }
    let basic = challenges.iter().find(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if let Some((_, params)) = basic {
        let realm =
            params.iter().find(|(k, _)| k.eq_ignore_ascii_case("realm")).map(|(_, v)| v.clone());
        return Ok(Challenge::Basic { realm });
    }
    Err(AuthError::UnsupportedScheme(header.to_string()))
}

type Params = Vec<(String, String)>;

/// Splits RFC 9110 challenges: `scheme [param=value|param="quoted", …][, scheme …]`.
fn parse_challenges(header: &str) -> Result<Vec<(String, Params)>, AuthError> {
    let malformed = |reason| AuthError::MalformedChallenge { header: header.to_string(), reason };
    let bytes = header.as_bytes();
    let mut pos = 0;
    let mut challenges: Vec<(String, Params)> = Vec::new();
    let skip = |pos: &mut usize, set: &[u8]| {
        while *pos < bytes.len() && set.contains(&bytes[*pos]) {
            *pos += 1;
        }
    };
    let token = |pos: &mut usize| -> String {
        let start = *pos;
        while *pos < bytes.len() && !b" \t,=\"".contains(&bytes[*pos]) {
            *pos += 1;
        }
        header[start..*pos].to_string()
    };
    loop {
        skip(&mut pos, b" \t,");
        if pos >= bytes.len() {
            break;
        }
        let word = token(&mut pos);
        if word.is_empty() {
            return Err(malformed("unexpected character"));
        }
        let after_word = pos;
        skip(&mut pos, b" \t");
        if pos < bytes.len() && bytes[pos] == b'=' {
            // a parameter of the current challenge
            let Some((_, params)) = challenges.last_mut() else {
                return Err(malformed("parameter before any scheme"));
            };
            pos += 1;
            skip(&mut pos, b" \t");
            let value = if pos < bytes.len() && bytes[pos] == b'"' {
                pos += 1;
                let mut value = String::new();
                let mut closed = false;
                let mut chars = header[pos..].char_indices();
                while let Some((offset, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            pos += offset + 1;
                            closed = true;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                if !closed {
                    return Err(malformed("unterminated quoted string"));
                }
                value
            } else {
                token(&mut pos)
            };
            params.push((word, value));
        } else {
            pos = after_word;
            challenges.push((word, Vec::new()));
        }
    }
    if challenges.is_empty() {
        return Err(malformed("no challenge"));
    }
    Ok(challenges)
}

/// A bearer token; a secret, so its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: String) -> Self {
        BearerToken(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// A token server's answer, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token: BearerToken,
    /// Seconds of validity; at least 60, as the distribution spec says to assume.
    pub expires_in: Duration,
    /// An OAuth2 refresh token, when the server gave one (asked for with
    /// `offline_token=true` at login): kept as the identity token.
    pub refresh_token: Option<BearerToken>,
}

const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Parses a token server's JSON answer: `token` or `access_token` (OAuth2), `expires_in`.
pub fn parse_token_response(realm: &str, body: &[u8]) -> Result<TokenGrant, AuthError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
        refresh_token: Option<String>,
    }
    let bad = |reason: String| AuthError::BadTokenResponse { realm: realm.to_string(), reason };
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid json: {e}")))?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| bad("neither token nor access_token is set".to_string()))?;
    let expires_in = Duration::from_secs(answer.expires_in.unwrap_or(0)).max(MIN_TOKEN_LIFETIME);
    let refresh_token = answer.refresh_token.filter(|t| !t.is_empty()).map(BearerToken);
    Ok(TokenGrant { token: BearerToken(token), expires_in, refresh_token })
}

/// Tokens by (registry, scope), each dropped a little before it expires.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (BearerToken, Instant)>>,
}

/// How long before its expiry a cached token stops being used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

impl TokenCache {
    pub fn get(&self, registry: &str, scope: &str) -> Option<BearerToken> {
        let tokens = self.tokens.lock().unwrap_or_else(|poison| poison.into_inner());
        let (token, valid_until) = tokens.get(&(registry.to_string(), scope.to_string()))?;
        (Instant::now() < *valid_until).then(|| token.clone())
    }

    pub fn insert(&self, registry: &str, scope: &str, grant: &TokenGrant) {
        let valid_until = Instant::now() + grant.expires_in.saturating_sub(EXPIRY_MARGIN);
        let mut tokens = self.tokens.lock().unwrap_or_else(|poison| poison.into_inner());
        tokens
            .insert((registry.to_string(), scope.to_string()), (grant.token.clone(), valid_until));
    }

    pub fn remove(&self, registry: &str, scope: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|poison| poison.into_inner());
        tokens.remove(&(registry.to_string(), scope.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#;
        assert_eq!(
            parse_challenge(header).unwrap(),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            }
        );
    }

    #[test]
    fn parses_basic_and_picks_bearer_among_several() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic { realm: Some("Registry Realm".into()) }
        );
        assert_eq!(parse_challenge("basic").unwrap(), Challenge::Basic { realm: None });
        let both = r#"Basic realm="x", Bearer realm="https://t.example/token", service=reg"#;
        assert_eq!(
            parse_challenge(both).unwrap(),
            Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: Some("reg".into()),
                scope: None
            }
        );
        let escaped = r#"Bearer realm="https://t/a\"b", error="insufficient_scope""#;
        assert!(
            matches!(parse_challenge(escaped).unwrap(), Challenge::Bearer { realm, .. } if realm == "https://t/a\"b")
        );
    }

    #[test]
    fn rejects_malformed_challenges() {
        let err = |h: &str| parse_challenge(h).unwrap_err().to_string();
        assert_eq!(
            err(r#"Bearer service="x""#),
            "malformed WWW-Authenticate header \"Bearer service=\\\"x\\\"\": bearer challenge without realm"
        );
        assert_eq!(
            err(r#"Bearer realm="unterminated"#),
            "malformed WWW-Authenticate header \"Bearer realm=\\\"unterminated\": unterminated quoted string"
        );
        assert_eq!(err("=x"), "malformed WWW-Authenticate header \"=x\": unexpected character");
        assert_eq!(err(""), "malformed WWW-Authenticate header \"\": no challenge");
        assert_eq!(
            err(r#"Negotiate abc"#),
            "unsupported authentication scheme in WWW-Authenticate header \"Negotiate abc\""
        );
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::pull("library/alpine").to_string(), "repository:library/alpine:pull");
        assert_eq!(Scope::push("a/b").to_string(), "repository:a/b:pull,push");
        assert_eq!(Scope::push("a/b").action(), "push");
        let mount = Scope::push("a/b").with_mount_from("c/d");
        assert_eq!(mount.token_scopes(), ["repository:a/b:pull,push", "repository:c/d:pull"]);
        assert_eq!(mount.to_string(), "repository:a/b:pull,push repository:c/d:pull");
        assert_eq!(Scope::push("a").with_mount_from("a").token_scopes().len(), 1);
    }

    #[test]
    fn token_responses() {
        let grant = parse_token_response("r", br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(grant.token.expose(), "abc");
        assert_eq!(grant.expires_in, Duration::from_secs(300));
        assert_eq!(grant.refresh_token, None);
        let grant = parse_token_response("r", br#"{"access_token":"xyz","refresh_token":"again"}"#)
            .unwrap();
        assert_eq!(grant.token.expose(), "xyz");
        assert_eq!(grant.refresh_token.as_ref().map(BearerToken::expose), Some("again"));
        assert_eq!(grant.expires_in, Duration::from_secs(60));
        assert_eq!(format!("{:?}", grant.token), "BearerToken(<redacted>)");
        assert_eq!(
            parse_token_response("https://t", br#"{"token":""}"#).unwrap_err().to_string(),
            "token server https://t answered with no token: neither token nor access_token is set"
        );
        assert!(parse_token_response("r", b"<html>").is_err());
    }

    #[test]
    fn token_cache_per_registry_and_scope() {
        let cache = TokenCache::default();
        let grant = TokenGrant {
            token: BearerToken::new("t1".into()),
            expires_in: Duration::from_secs(60),
            refresh_token: None,
        };
        cache.insert("reg", "repository:a:pull", &grant);
        assert_eq!(cache.get("reg", "repository:a:pull").unwrap().expose(), "t1");
        assert!(cache.get("reg", "repository:b:pull").is_none());
        assert!(cache.get("other", "repository:a:pull").is_none());
        cache.remove("reg", "repository:a:pull");
        assert!(cache.get("reg", "repository:a:pull").is_none());
        let short = TokenGrant {
            token: BearerToken::new("t2".into()),
            expires_in: Duration::from_secs(5),
            refresh_token: None,
        };
        cache.insert("reg", "s", &short);
        assert!(cache.get("reg", "s").is_none(), "a token inside the expiry margin is not used");
    }
}
