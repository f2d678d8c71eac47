//! [`RegistryClient`]: HTTP to registries — options, endpoint discovery (`/v2/` ping,
//! HTTPS/HTTP per [`endpoint`](super::endpoint) rules), the authorized request loop, and
//! retries. Manifests are fetched in [`pull`](super::pull), blobs in [`blob`](super::blob),
//! challenges answered in [`authorize`](super::authorize).
//!
//! Invariants: every request for repository content goes through `send_with`, which
//! attaches the credentials or token for that repository's scope and answers a 401
//! challenge once by authenticating again; a push (later) uses it with [`Scope::push`].
//! The client is `Sync`: parallel downloads share one.

use super::auth::{Challenge, Scope, TokenCache, parse_challenge};
use super::credentials::{Credential, CredentialStore};
use super::endpoint::{
    INSECURE_REGISTRIES_ENV, InsecureRegistries, Scheme, api_host, endpoint_policy,
};
use super::error::{AccessDenied, RegistryError, describe_error_body, error_chain};
use super::retry::{RetryPolicy, parse_retry_after};
use super::tls::{SystemTls, TlsPolicy};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The default [`ClientOptions::upload_chunk_size`]: 8 MiB, above the 5 MiB minimum some
/// registries (ECR) demand of every chunk but the last.
pub const DEFAULT_UPLOAD_CHUNK_SIZE: u64 = 8 * 1024 * 1024;

/// Everything a [`RegistryClient`] is configured with.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub credentials: CredentialStore,
    pub insecure: InsecureRegistries,
    pub tls: Arc<dyn TlsPolicy>,
    pub retry: RetryPolicy,
    /// Limit for connecting, for receiving response headers, and for each read of a body.
    pub timeout: Duration,
    /// Blobs downloaded at once by [`RegistryClient::fetch_blobs`].
    pub parallel_downloads: usize,
    /// Blobs uploaded at once by a push.
    pub parallel_uploads: usize,
    /// Blobs up to this size are uploaded in one `PUT`; larger ones in `PATCH` chunks of
    /// this size (or the registry's minimum chunk size, if larger). Each upload holds one
    /// chunk in memory.
    pub upload_chunk_size: u64,
    pub user_agent: String,
}

impl Default for ClientOptions {
    /// Anonymous, nothing insecure, system CAs only.
    fn default() -> Self {
        ClientOptions {
            credentials: CredentialStore::anonymous(),
            insecure: InsecureRegistries::default(),
            tls: Arc::new(SystemTls::new(Vec::new())),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            parallel_downloads: 4,
            parallel_uploads: 4,
            upload_chunk_size: DEFAULT_UPLOAD_CHUNK_SIZE,
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl ClientOptions {
    /// Credentials from Docker's and podman's files, insecure registries from
    /// `KILN_INSECURE_REGISTRIES`, extra CAs from `KILN_REGISTRY_CA_FILE` and per-registry
    /// CAs and client certificates from `certs.d` directories (see [`tls`](super::tls)).
    pub fn from_env() -> Result<Self, RegistryError> {
        ClientOptions::from_vars(|name| std::env::var_os(name))
    }

    /// [`ClientOptions::from_env`] with the environment given as a lookup function.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self, RegistryError> {
        let insecure = match var(INSECURE_REGISTRIES_ENV) {
            Some(list) => {
                InsecureRegistries::from_list(&list.to_string_lossy()).map_err(|source| {
                    RegistryError::Settings { origin: INSECURE_REGISTRIES_ENV.to_string(), source }
                })?
            }
            None => InsecureRegistries::default(),
        };
        Ok(ClientOptions {
            credentials: CredentialStore::from_vars(&var),
            insecure,
            tls: Arc::new(SystemTls::from_vars(&var)),
            ..ClientOptions::default()
        })
    }
}

/// One registry's resolved endpoint: base URL, HTTP client, and its last auth challenge.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) registry: String,
    pub(super) base_url: String,
    pub(super) http: Client,
    challenge: Mutex<Option<Challenge>>,
}

impl Endpoint {
    pub(super) fn challenge(&self) -> Option<Challenge> {
        self.challenge.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_challenge(&self, challenge: Challenge) {
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(challenge);
    }
}

/// A client for any number of registries; cheap to share between threads.
#[derive(Debug)]
pub struct RegistryClient {
    pub(super) options: ClientOptions,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    pub(super) credentials: Mutex<HashMap<(String, String), Option<Credential>>>,
    pub(super) tokens: TokenCache,
}

/// The longest wait for the HTTPS probe of a registry that may fall back to plain HTTP.
const HTTPS_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest error body read to explain a failure.
const MAX_ERROR_BODY: u64 = 64 * 1024;

impl RegistryClient {
    pub fn new(options: ClientOptions) -> Self {
        RegistryClient {
            options,
            endpoints: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            tokens: TokenCache::default(),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The endpoint of `registry`, pinging it the first time.
    pub(super) fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>, RegistryError> {
        if let Some(found) = self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).get(registry)
        {
            return Ok(found.clone());
        }
        // Pinged outside the lock: two threads may both ping a new registry; both answers
        // are equally good and the last one is kept.
        let endpoint = Arc::new(self.ping(registry)?);
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    fn http_client(&self, registry: &str, verify_tls: bool) -> Result<Client, RegistryError> {
        let tls = self.options.tls.client_config(registry, verify_tls)?;
        Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.options.timeout)
            .connect_timeout(self.options.timeout)
            .user_agent(self.options.user_agent.clone())
            .build()
            .map_err(|e| RegistryError::HttpClient {
                registry: registry.to_string(),
                cause: error_chain(&e),
            })
    }

    /// `GET /v2/` over each allowed scheme until one answers like a registry, retrying
    /// transient failures.
    fn ping(&self, registry: &str) -> Result<Endpoint, RegistryError> {
        let policy = endpoint_policy(registry, &self.options.insecure);
        let host = api_host(registry);
        let http = self.http_client(registry, policy.verify_tls)?;
        let retry = &self.options.retry;
        let mut attempt = 1;
        loop {
            let mut failures: Vec<String> = Vec::new();
            let mut transient = false;
            let mut retry_after = None;
            let mut last_status = None;
            for &scheme in &policy.schemes {
                let base_url = format!("{}://{host}", scheme.as_str());
                let url = format!("{base_url}/v2/");
                let mut request = http.get(&url);
                if scheme == Scheme::Https && policy.schemes.len() > 1 {
                    // A plain-HTTP server may sit silent on a TLS hello: do not let the
                    // probe wait the whole operation timeout before falling back.
                    request = request.timeout(self.options.timeout.min(HTTPS_PROBE_TIMEOUT));
                }
                let response = match request.send() {
                    Ok(response) => response,
                    Err(e) => {
                        transient |= is_transient(&e);
                        failures.push(format!("{url}: {}", error_chain(&e)));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let speaks_registry = status == 200
                    || status == 401
                    || response.headers().contains_key("docker-distribution-api-version");
                if RetryPolicy::is_retryable_status(status) {
                    transient = true;
                    retry_after = retry_after_of(&response);
                    let detail = read_error_body(response);
                    failures.push(format!("{url}: HTTP {status}: {detail}"));
                    last_status = Some((url, status, detail));
                    continue;
                }
                if scheme == Scheme::Http && !speaks_registry {
                    failures.push(format!("{url}: HTTP {status}, not a registry"));
                    continue;
                }
                let challenge = if status == 401 {
                    let header =
                        response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
                    match header.map(parse_challenge).transpose() {
                        Ok(challenge) => challenge,
                        Err(source) => {
                            return Err(RegistryError::Auth {
                                registry: registry.to_string(),
                                source,
                            });
                        }
                    }
                } else {
                    None
                };
                return Ok(Endpoint {
                    registry: registry.to_string(),
                    base_url,
                    http,
                    challenge: Mutex::new(challenge),
                });
            }
            if transient && retry.may_retry(attempt) {
                retry.wait(attempt, retry_after);
                attempt += 1;
                continue;
            }
            if let Some((url, status, detail)) = last_status {
                let what = format!("GET {url}");
                return Err(RegistryError::Status {
                    registry: registry.to_string(),
                    what,
                    status,
                    detail,
                });
            }
            let mut cause = failures.join("; ");
            if cause.contains("InvalidContentType") && policy.schemes == [Scheme::Https] {
                cause.push_str(&format!(
                    " (if it serves plain http, allow that with --insecure-registry {registry})"
                ));
            } else if cause.contains("certificate") && policy.verify_tls {
                cause.push_str(&format!(" (put its CA certificate in ~/.config/kiln/certs.d/{registry}/ca.crt or /etc/docker/certs.d/{registry}/ca.crt, or give it with KILN_REGISTRY_CA_FILE, or allow it with --insecure-registry {registry})"));
            }
            return Err(RegistryError::Unreachable { registry: registry.to_string(), cause });
        }
    }

    /// Sends a request, retrying transient failures and retryable statuses.
    pub(super) fn send_with_retry(
        &self,
        build: &dyn Fn() -> RequestBuilder,
    ) -> Result<Response, reqwest::Error> {
        self.send_with_policy(&self.options.retry, build)
    }

    fn send_with_policy(
        &self,
        retry: &RetryPolicy,
        build: &dyn Fn() -> RequestBuilder,
    ) -> Result<Response, reqwest::Error> {
        let mut attempt = 1;
        loop {
            match build().send() {
                Ok(response)
                    if RetryPolicy::is_retryable_status(response.status().as_u16())
                        && retry.may_retry(attempt) =>
                {
                    let retry_after = retry_after_of(&response);
                    drop(response);
                    retry.wait(attempt, retry_after);
                }
                Ok(response) => return Ok(response),
                Err(e) if is_transient(&e) && retry.may_retry(attempt) => retry.wait(attempt, None),
                Err(e) => return Err(e),
            }
            attempt += 1;
        }
    }

    /// Sends `GET <base>/v2/<repository><path>` with the scope's authorization, answering
    /// one 401 challenge. Non-success answers are returned for the caller to judge.
    pub(super) fn send(
        &self,
        registry: &str,
        scope: &Scope,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response, RegistryError> {
        let path = format!("/v2/{}{path}", scope.repository);
        self.send_with(registry, scope, &|http, base_url| {
            http.get(format!("{base_url}{path}")).headers(headers.clone())
        })
    }

    /// Sends the request `build` makes (from the registry's HTTP client and base URL, e.g.
    /// `https://host:port`) with the authorization for `scope`, retrying transient failures
    /// and answering one 401 challenge; `build` may be called several times, so the request
    /// must be repeatable. This is the one door to a repository: pull uses it with
    /// [`Scope::pull`], push with [`Scope::push`].
    pub(super) fn send_with(
        &self,
        registry: &str,
        scope: &Scope,
        build: &dyn Fn(&Client, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_authorized(registry, scope, &self.options.retry, build)
    }

    /// [`RegistryClient::send_with`] without retries: for requests that may have changed
    /// the registry's state when they failed half-way (a blob chunk), which the caller
    /// checks before sending again.
    pub(super) fn send_once_with(
        &self,
        registry: &str,
        scope: &Scope,
        build: &dyn Fn(&Client, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_authorized(registry, scope, &RetryPolicy::none(), build)
    }

    fn send_authorized(
        &self,
        registry: &str,
        scope: &Scope,
        retry: &RetryPolicy,
        build: &dyn Fn(&Client, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let endpoint = self.endpoint(registry)?;
        let mut authorization = match endpoint.challenge() {
            Some(challenge) => self.authorization(&endpoint, scope, &challenge, None)?,
            None => None,
        };
        let mut answered_challenge = false;
        loop {
            let response = self
                .send_with_policy(retry, &|| {
                    let mut request = build(&endpoint.http, &endpoint.base_url);
                    if let Some(value) = &authorization
                        && let Ok(mut value) = HeaderValue::from_str(value)
                    {
                        value.set_sensitive(true);
                        request = request.header(AUTHORIZATION, value);
                    }
                    request
                })
                .map_err(|e| RegistryError::Unreachable {
                    registry: registry.to_string(),
                    cause: error_chain(&e),
                })?;
            if response.status().as_u16() != 401 || answered_challenge {
                return Ok(response);
            }
            answered_challenge = true;
            let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
            let Some(challenge) = header.and_then(|h| parse_challenge(h).ok()) else {
                return Ok(response);
            };
            let challenge_scope = match &challenge {
                Challenge::Bearer { scope, .. } => scope.clone(),
                Challenge::Basic { .. } => None,
            };
            endpoint.set_challenge(challenge.clone());
            self.tokens.remove(registry, &scope.to_string());
            let renewed =
                self.authorization(&endpoint, scope, &challenge, challenge_scope.as_deref())?;
            if renewed.is_none() || renewed == authorization {
                return Ok(response);
            }
            authorization = renewed;
        }
    }

    /// Turns an unsuccessful answer into an error; 404 is the caller's `not_found`.
    pub(super) fn status_error(
        &self,
        registry: &str,
        scope: &Scope,
        what: &str,
        response: Response,
        not_found: impl FnOnce(String) -> RegistryError,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let detail = read_error_body(response);
        match status {
            401 | 403 => {
                let credentials_source = self
                    .credential(registry, &scope.repository)
                    .ok()
                    .flatten()
                    .map(|c| c.source().to_string());
                RegistryError::AccessDenied(AccessDenied::new(
                    scope,
                    registry,
                    status,
                    detail,
                    credentials_source,
                ))
            }
            404 => not_found(detail),
            _ => RegistryError::Status {
                registry: registry.to_string(),
                what: what.to_string(),
                status,
                detail,
            },
        }
    }
}

pub(super) fn header_text(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(super) fn retry_after_of(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// Connection-level failures worth another attempt; certificate problems are not.
pub(super) fn is_transient(error: &reqwest::Error) -> bool {
    let chain = error_chain(error);
    if chain.contains("certificate") || chain.contains("InvalidContentType") {
        return false;
    }
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

pub(super) const LIMIT_EXCEEDED: &str = "body exceeds the size limit";

/// Reads a body of at most `limit` bytes.
pub(super) fn read_limited(response: Response, limit: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    response.take(limit + 1).read_to_end(&mut bytes).map_err(|e| error_chain(&e))?;
    if bytes.len() as u64 > limit {
        return Err(LIMIT_EXCEEDED.to_string());
    }
    Ok(bytes)
}

/// Reads an error body (bounded) and describes it.
pub(super) fn read_error_body(response: Response) -> String {
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    let _ = response.take(MAX_ERROR_BODY).read_to_end(&mut bytes);
    describe_error_body(status, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<RegistryClient>();
    }

    #[test]
    fn options_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        let options = ClientOptions::from_vars(vars(&[
            ("KILN_INSECURE_REGISTRIES", "myreg:5000,10.0.0.0/8"),
            ("DOCKER_CONFIG", "/cfg"),
            ("HOME", "/home/u"),
        ]))
        .unwrap();
        assert!(options.insecure.contains("myreg:5000"));
        assert!(options.insecure.contains("10.2.3.4:443"));
        assert!(!options.insecure.contains("myreg:5001"));
        assert_eq!(options.credentials.files(), [std::path::PathBuf::from("/cfg/config.json")]);
        assert_eq!(options.parallel_downloads, 4);

        let err =
            ClientOptions::from_vars(vars(&[("KILN_INSECURE_REGISTRIES", "a:b")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "KILN_INSECURE_REGISTRIES: invalid insecure registry \"a:b\": expected host, host:port or an ip range like 10.0.0.0/8"
        );
    }
}
