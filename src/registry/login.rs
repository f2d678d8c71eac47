//! Checking credentials against a registry before they are saved, as `docker login` does.
//!
//! The registry's `/v2/` challenge decides: none (an open registry) accepts anything;
//! `Basic` means `GET /v2/` with the credentials must answer 200; `Bearer` means the token
//! server must grant a token for them — asked with `offline_token=true`, no scope, as
//! Docker asks — and `GET /v2/` with that token must answer 200. A refresh token in the
//! token server's answer is handed back to be saved as the identity token instead of the
//! password. Invariant: the secret goes only into `Authorization` headers (marked
//! sensitive) and the token request; no error message carries it.

use super::auth::{BearerToken, Challenge};
use super::authorize::TokenRequest;
use super::client::{RegistryClient, read_error_body};
use super::credentials::Credential;
use super::error::{RegistryError, error_chain};

/// What a successful login gives besides "yes".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginOutcome {
    /// A refresh token to save instead of the password, when the token server gave one.
    pub identity_token: Option<BearerToken>,
}

impl RegistryClient {
    /// Checks `credential` against `registry` (as written in references: `docker.io`,
    /// `127.0.0.1:5000`).
    pub fn login(
        &self,
        registry: &str,
        credential: &Credential,
    ) -> Result<LoginOutcome, RegistryError> {
        let endpoint = self.endpoint(registry)?;
        let failed = |status: u16, detail: String| RegistryError::LoginFailed {
            registry: registry.to_string(),
            status,
            detail,
        };
        let (authorization, identity_token) = match endpoint.challenge() {
            None => return Ok(LoginOutcome::default()),
            Some(Challenge::Basic { .. }) => {
                let password = credential.password().unwrap_or_default();
                (Authorization::Basic(credential.username(), password), None)
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let request = TokenRequest {
                    realm: &realm,
                    service: service.as_deref(),
                    scopes: &[],
                    credential: Some(credential),
                    offline: true,
                };
                let grant = self.fetch_token(&endpoint, &request, &failed)?;
                (Authorization::Bearer(grant.token), grant.refresh_token)
            }
        };
        let url = format!("{}/v2/", endpoint.base_url);
        let response = self
            .send_with_retry(&|| {
                let request = endpoint.http.get(&url);
                match &authorization {
                    Authorization::Basic(user, password) => {
                        request.basic_auth(user, Some(password))
                    }
                    Authorization::Bearer(token) => request.bearer_auth(token.expose()),
                }
            })
            .map_err(|e| RegistryError::Unreachable {
                registry: registry.to_string(),
                cause: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(failed(status, read_error_body(response)));
        }
        Ok(LoginOutcome { identity_token })
    }
}

/// What `GET /v2/` is sent with.
enum Authorization<'a> {
    Basic(&'a str, &'a str),
    Bearer(BearerToken),
}
