//! Answering a registry's authentication challenge for one repository scope: the
//! `Authorization` value to send (Basic credentials, or a Bearer token from the realm's token
//! server, cached per registry and scope) and the token request itself.
//!
//! Invariants: credentials are looked up once per (registry, repository) and client; token
//! requests carry Basic credentials only when the user has a password, an identity token
//! is exchanged with an OAuth2 `refresh_token` POST, and a token server's 401/403 becomes an
//! access-denied error naming where the rejected credentials came from — never the secret.

use super::auth::{AuthError, Challenge, Scope, TokenGrant, parse_token_response};
use super::client::{Endpoint, RegistryClient, read_error_body, read_limited};
use super::credentials::Credential;
use super::error::{AccessDenied, RegistryError, error_chain};
use base64::Engine;

/// The largest token-server answer read.
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;

/// What to ask a token server for.
#[derive(Debug, Clone, Copy)]
pub(super) struct TokenRequest<'a> {
    pub realm: &'a str,
    pub service: Option<&'a str>,
    /// `repository:<name>:<actions>` values; empty at login.
    pub scopes: &'a [String],
    pub credential: Option<&'a Credential>,
    /// Ask for a refresh token too (`offline_token=true`), as `docker login` does.
    pub offline: bool,
}

impl RegistryClient {
    /// The credentials for a repository, looked up once per client.
    pub(super) fn credential(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let key = (registry.to_string(), repository.to_string());
        if let Some(found) = self.credentials.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(found.clone());
        }
        let found = self.options.credentials.lookup(registry, repository)?;
        self.credentials.lock().unwrap_or_else(|p| p.into_inner()).insert(key, found.clone());
        Ok(found)
    }

    /// The `Authorization` value answering `challenge` for `scope`, fetching a token if
    /// needed; `None` when there is nothing to send (Basic without credentials).
    pub(super) fn authorization(
        &self,
        endpoint: &Endpoint,
        scope: &Scope,
        challenge: &Challenge,
        extra_scope: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let registry = &endpoint.registry;
        let credential = self.credential(registry, &scope.repository)?;
        match challenge {
            Challenge::Basic { .. } => Ok(credential.and_then(|c| {
                let password = c.password()?;
                let pair = format!("{}:{password}", c.username());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            })),
            Challenge::Bearer { realm, service, .. } => {
                let scope_text = scope.to_string();
                if let Some(token) = self.tokens.get(registry, &scope_text) {
                    return Ok(Some(format!("Bearer {}", token.expose())));
                }
                let mut scopes = scope.token_scopes();
                for extra in extra_scope.unwrap_or_default().split(' ') {
                    if !extra.is_empty() && !scopes.iter().any(|s| s == extra) {
                        scopes.push(extra.to_string());
                    }
                }
                let request = TokenRequest {
                    realm,
                    service: service.as_deref(),
                    scopes: &scopes,
                    credential: credential.as_ref(),
                    offline: false,
                };
                let source = credential.as_ref().map(|c| c.source().to_string());
                let grant = self.fetch_token(endpoint, &request, &|status, detail| {
                    let denied = AccessDenied::new(scope, registry, status, detail, source.clone());
                    RegistryError::AccessDenied(denied)
                })?;
                self.tokens.insert(registry, &scope_text, &grant);
                Ok(Some(format!("Bearer {}", grant.token.expose())))
            }
        }
    }

    /// Asks the token server for a token. A 401/403 answer becomes `denied(status, detail)`.
    pub(super) fn fetch_token(
        &self,
        endpoint: &Endpoint,
        request: &TokenRequest<'_>,
        denied: &dyn Fn(u16, String) -> RegistryError,
    ) -> Result<TokenGrant, RegistryError> {
        let TokenRequest { realm, service, scopes, credential, offline } = *request;
        let registry = &endpoint.registry;
        let auth_error = |source| RegistryError::Auth { registry: registry.clone(), source };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(auth_error(AuthError::BadRealm(realm.to_string())));
        }
        let refresh_token = credential.and_then(Credential::identity_token);
        let response = self
            .send_with_retry(&|| {
                if let Some(refresh_token) = refresh_token {
                    let mut form: Vec<(&str, &str)> = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh_token),
                        ("client_id", "kiln"),
                    ];
                    if let Some(service) = service {
                        form.push(("service", service));
                    }
                    let joined = scopes.join(" ");
                    if !joined.is_empty() {
                        form.push(("scope", &joined));
                    }
                    return endpoint.http.post(realm).form(&form);
                }
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = service {
                    query.push(("service", service));
                }
                for scope in scopes {
                    query.push(("scope", scope));
                }
                if offline {
                    query.push(("offline_token", "true"));
                    query.push(("client_id", "kiln"));
                }
                let mut request = endpoint.http.get(realm);
                if let Some(credential) = credential.filter(|c| c.password().is_some()) {
                    query.push(("account", credential.username()));
                    request = request.basic_auth(credential.username(), credential.password());
                }
                request.query(&query)
            })
            .map_err(|e| {
                auth_error(AuthError::TokenServerUnreachable {
                    realm: realm.to_string(),
                    cause: error_chain(&e),
                })
            })?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(denied(status, read_error_body(response)));
        }
        if !(200..300).contains(&status) {
            let detail = read_error_body(response);
            return Err(auth_error(AuthError::TokenRequest {
                realm: realm.to_string(),
                status,
                detail,
            }));
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE).map_err(|cause| {
            auth_error(AuthError::BadTokenResponse { realm: realm.to_string(), reason: cause })
        })?;
        parse_token_response(realm, &body).map_err(auth_error)
    }
}
