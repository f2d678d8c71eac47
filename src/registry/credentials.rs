//! Registry credentials from Docker's and podman's configuration files and from
//! `docker-credential-<name>` helper programs.
//!
//! Files, in order; the first one that has credentials for the registry wins:
//! 1. `$REGISTRY_AUTH_FILE` (podman's `auth.json`; an explicit choice, so it comes first),
//! 2. `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json` when `DOCKER_CONFIG` is unset.
//!
//! Inside one file, as the Docker CLI does: `credHelpers[<registry>]` first, then
//! `credsStore`, then the `auths` entry. A helper that answers "credentials not found" falls
//! through to the next source rather than ending the search. `auths` keys may be a registry
//! (`127.0.0.1:5000`), a legacy URL (`https://index.docker.io/v1/`) or, as podman allows, a
//! repository namespace (`quay.io/org`); the longest matching key wins. An entry holds
//! `auth` (base64 `user:password`), `username`/`password`, and/or `identitytoken` (an OAuth2
//! refresh token, which wins when present).
//!
//! Secrets never leave this module except through [`Credential::password`] and
//! [`Credential::identity_token`]; every `Debug` here redacts them, and no error message
//! quotes a secret or a file's content.

use super::reference::DOCKER_HUB;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid credentials file {path}: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("invalid credentials file {path}: not a json object")]
    NotAnObject { path: PathBuf },
    #[error("cannot write credentials file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "invalid credentials file {path}: the auth field of {key:?} is not base64 of user:password"
    )]
    BadAuthField { path: PathBuf, key: String },
    #[error("cannot run credential helper {program} for {server}: {source}")]
    HelperMissing { program: String, server: String, source: std::io::Error },
    #[error("credential helper {program} failed for {server}: {message}")]
    HelperFailed { program: String, server: String, message: String },
    #[error("credential helper {program} gave an invalid answer for {server}: {reason}")]
    HelperAnswer { program: String, server: String, reason: String },
}

/// A secret: a password, or an identity (refresh) token.
#[derive(Clone, PartialEq, Eq)]
enum Secret {
    Password(String),
    IdentityToken(String),
}

/// Credentials for one registry and where they came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    username: String,
    secret: Secret,
    source: String,
}

impl Credential {
    pub fn basic(username: &str, password: &str, source: &str) -> Self {
        Credential {
            username: username.to_string(),
            secret: Secret::Password(password.to_string()),
            source: source.to_string(),
        }
    }

    pub fn with_identity_token(username: &str, token: &str, source: &str) -> Self {
        Credential {
            username: username.to_string(),
            secret: Secret::IdentityToken(token.to_string()),
            source: source.to_string(),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password, for Basic authentication.
    pub fn password(&self) -> Option<&str> {
        match &self.secret {
            Secret::Password(p) => Some(p),
            Secret::IdentityToken(_) => None,
        }
    }

    /// The OAuth2 refresh token, for token servers.
    pub fn identity_token(&self) -> Option<&str> {
        match &self.secret {
            Secret::IdentityToken(t) => Some(t),
            Secret::Password(_) => None,
        }
    }

    /// A file path or `credential helper docker-credential-<name>`: safe to print.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.secret {
            Secret::Password(_) => "password",
            Secret::IdentityToken(_) => "identity token",
        };
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field(kind, &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// What a credential helper's `get` answered.
#[derive(Clone, PartialEq, Eq)]
pub struct HelperAnswer {
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for HelperAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperAnswer")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Runs `docker-credential-<helper> get|store|erase`; a seam so lookups and logins can be
/// tested without programs.
pub trait HelperRunner: Send + Sync {
    /// `Ok(None)` when the helper has no credentials for `server_url`.
    fn get(&self, helper: &str, server_url: &str)
    -> Result<Option<HelperAnswer>, CredentialsError>;
    /// Saves `username`/`secret` for `server_url`.
    fn store(
        &self,
        helper: &str,
        server_url: &str,
        username: &str,
        secret: &str,
    ) -> Result<(), CredentialsError>;
    /// Forgets `server_url`; nothing to forget is not an error.
    fn erase(&self, helper: &str, server_url: &str) -> Result<(), CredentialsError>;
}

/// The real runner: spawns `docker-credential-<helper>` found on `PATH` (or on `path`).
#[derive(Debug, Clone, Default)]
pub struct ProcessHelperRunner {
    /// Replaces `PATH` for finding and running helpers; `None` keeps the process' `PATH`.
    pub path: Option<OsString>,
}

/// What helpers print when they have nothing for a server (docker-credential-helpers).
const NOT_FOUND_MESSAGE: &str = "credentials not found";
const MAX_HELPER_MESSAGE: usize = 300;

impl ProcessHelperRunner {
    /// Runs `docker-credential-<helper> <action>` with `input` on stdin: its stdout, or
    /// `None` when it says it has no credentials for the server. `secret`, if given, is
    /// cut out of any failure message.
    fn run(
        &self,
        helper: &str,
        action: &str,
        server_url: &str,
        input: &[u8],
        secret: Option<&str>,
    ) -> Result<Option<String>, CredentialsError> {
        let program = format!("docker-credential-{helper}");
        let mut command = Command::new(&program);
        command.arg(action).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        let spawn_error = |source| CredentialsError::HelperMissing {
            program: program.clone(),
            server: server_url.to_string(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin closes the pipe; its exit status
            // then tells what happened, so a write error here is not the error to report.
            let _ = stdin.write_all(input);
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(Some(stdout));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut message = format!("{} {}", stdout.trim(), stderr.trim());
        if message.contains(NOT_FOUND_MESSAGE) {
            return Ok(None);
        }
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            message = message.replace(secret, "<redacted>");
        }
        let mut message: String = message.trim().chars().take(MAX_HELPER_MESSAGE).collect();
        if message.is_empty() {
            message = format!("exited with {}", output.status);
        }
        Err(CredentialsError::HelperFailed { program, server: server_url.to_string(), message })
    }
}

impl HelperRunner for ProcessHelperRunner {
    fn get(
        &self,
        helper: &str,
        server_url: &str,
    ) -> Result<Option<HelperAnswer>, CredentialsError> {
        let Some(stdout) = self.run(helper, "get", server_url, server_url.as_bytes(), None)? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let answer: Answer =
            serde_json::from_str(&stdout).map_err(|e| CredentialsError::HelperAnswer {
                program: format!("docker-credential-{helper}"),
                server: server_url.to_string(),
                // serde_json's message names a position, never the content
                reason: format!("not the expected json: {e}"),
            })?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(HelperAnswer { username: answer.username, secret: answer.secret }))
    }

    fn store(
        &self,
        helper: &str,
        server_url: &str,
        username: &str,
        secret: &str,
    ) -> Result<(), CredentialsError> {
        let input = serde_json::json!({
            "ServerURL": server_url,
            "Username": username,
            "Secret": secret,
        });
        self.run(helper, "store", server_url, input.to_string().as_bytes(), Some(secret))?;
        Ok(())
    }

    fn erase(&self, helper: &str, server_url: &str) -> Result<(), CredentialsError> {
        self.run(helper, "erase", server_url, server_url.as_bytes(), None)?;
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Where credentials are looked up.
#[derive(Clone)]
pub struct CredentialStore {
    files: Vec<PathBuf>,
    helpers: Arc<dyn HelperRunner>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore").field("files", &self.files).finish_non_exhaustive()
    }
}

/// The auth files of the precedence list above, from an environment lookup.
pub fn default_auth_files(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(path) = env("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        files.push(PathBuf::from(path));
    }
    files.extend(docker_config_file(env));
    files
}

/// Docker's `config.json`: in `$DOCKER_CONFIG`, else in `~/.docker`.
pub fn docker_config_file(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(dir) = env("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = env("HOME").filter(|p| !p.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

impl CredentialStore {
    /// Docker's and podman's files from this process' environment, helpers from `PATH`.
    pub fn from_env() -> Self {
        CredentialStore::from_vars(|name| std::env::var_os(name))
    }

    /// [`CredentialStore::from_env`] with the environment given as a lookup function.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        CredentialStore::new(default_auth_files(var), Arc::new(ProcessHelperRunner::default()))
    }

    pub fn new(files: Vec<PathBuf>, helpers: Arc<dyn HelperRunner>) -> Self {
        CredentialStore { files, helpers }
    }

    /// No credentials at all: every request is anonymous.
    pub fn anonymous() -> Self {
        CredentialStore::new(Vec::new(), Arc::new(ProcessHelperRunner::default()))
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Credentials for `repository` on `registry` (as written in references, `docker.io`
    /// for Docker Hub), or `None` for anonymous access. Missing files are skipped.
    pub fn lookup(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, CredentialsError> {
        for path in &self.files {
            let file = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CredentialsError::Read { path: path.clone(), source }),
            };
            let parsed: AuthFile = serde_json::from_slice(&file)
                .map_err(|source| CredentialsError::Parse { path: path.clone(), source })?;
            if let Some(found) = self.lookup_in(&parsed, path, registry, repository)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn lookup_in(
        &self,
        file: &AuthFile,
        path: &Path,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, CredentialsError> {
        let wanted = normalize_registry(registry);
        let helper = file
            .cred_helpers
            .iter()
            .find(|(key, name)| !name.is_empty() && normalize_key(key) == wanted)
            .map(|(_, name)| name.as_str());
        for helper in
            helper.into_iter().chain(file.creds_store.as_deref().filter(|s| !s.is_empty()))
        {
            if let Some(found) = self.ask_helper(helper, registry)? {
                return Ok(Some(found));
            }
        }
        from_auths(file, path, &wanted, repository)
    }

    fn ask_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<Credential>, CredentialsError> {
        let server = helper_server_url(registry);
        let Some(answer) = self.helpers.get(helper, &server)? else {
            return Ok(None);
        };
        let source = format!("credential helper docker-credential-{helper}");
        if answer.username == "<token>" {
            return Ok(Some(Credential::with_identity_token("", &answer.secret, &source)));
        }
        Ok(Some(Credential::basic(&answer.username, &answer.secret, &source)))
    }
}

/// The server URL Docker hands helpers: the legacy index URL for Docker Hub, else the host.
fn helper_server_url(registry: &str) -> String {
    if normalize_registry(registry) == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// Docker Hub's several names fold into `docker.io`.
fn normalize_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

/// A key of `auths` or `credHelpers` as a registry or `registry/namespace`: a URL loses its
/// scheme and path (`https://index.docker.io/v1/` → `docker.io`).
pub(super) fn normalize_key(key: &str) -> String {
    let key = key.trim_end_matches('/');
    let without_scheme = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://"));
    match without_scheme {
        Some(rest) => normalize_registry(rest.split('/').next().unwrap_or_default()),
        None => match key.split_once('/') {
            Some((host, namespace)) => format!("{}/{namespace}", normalize_registry(host)),
            None => normalize_registry(key),
        },
    }
}

fn from_auths(
    file: &AuthFile,
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credential>, CredentialsError> {
    // Candidates from most to least specific: registry/a/b, registry/a, registry.
    let mut candidates = Vec::new();
    let mut scope = format!("{registry}/{repository}");
    loop {
        candidates.push(scope.clone());
        match scope.rsplit_once('/') {
            Some((parent, _)) => scope = parent.to_string(),
            None => break,
        }
    }
    for candidate in &candidates {
        for (key, entry) in &file.auths {
            if normalize_key(key) != *candidate {
                continue;
            }
            if let Some(found) = entry_credential(entry, path, key)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

fn entry_credential(
    entry: &AuthEntry,
    path: &Path,
    key: &str,
) -> Result<Option<Credential>, CredentialsError> {
    let source = path.display().to_string();
    let decoded = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
        Some(auth) => Some(decode_auth(auth).ok_or_else(|| CredentialsError::BadAuthField {
            path: path.to_path_buf(),
            key: key.to_string(),
        })?),
        None => None,
    };
    let (username, password) = match decoded {
        Some((user, password)) => (user, Some(password)),
        None => (entry.username.clone().unwrap_or_default(), entry.password.clone()),
    };
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::with_identity_token(&username, token, &source)));
    }
    match password {
        Some(password) if !username.is_empty() || !password.is_empty() => {
            Ok(Some(Credential::basic(&username, &password, &source)))
        }
        _ => Ok(None),
    }
}

/// Decodes `base64(user:password)`, padded or not.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::fake_helpers::FakeHelpers;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn store_with(
        files: &[(&str, String)],
        helpers: Arc<FakeHelpers>,
    ) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let paths = files
            .iter()
            .map(|(name, content)| {
                let path = dir.path().join(name);
                std::fs::write(&path, content).unwrap();
                path
            })
            .collect();
        (dir, CredentialStore::new(paths, helpers))
    }

    #[test]
    fn reads_auths_in_every_form() {
        let config = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
                "127.0.0.1:5000": {"auth": b64("alice:s3cret:with:colons").trim_end_matches('=')},
                "registry.example": {"username": "bob", "password": "pw"},
                "quay.io": {"auth": b64("generic:g")},
                "quay.io/team": {"auth": b64("team:t")},
                "tokens.example": {"auth": b64("carol:"), "identitytoken": "refresh-me"},
                "empty.example": {}
            }
        })
        .to_string();
        let (_dir, store) =
            store_with(&[("config.json", config)], Arc::new(FakeHelpers::default()));
        let get = |reg: &str, repo: &str| store.lookup(reg, repo).unwrap();

        let hub = get("docker.io", "library/alpine").unwrap();
        assert_eq!((hub.username(), hub.password()), ("hubuser", Some("hubpass")));
        let local = get("127.0.0.1:5000", "x").unwrap();
        assert_eq!((local.username(), local.password()), ("alice", Some("s3cret:with:colons")));
        assert!(local.source().ends_with("config.json"));
        let plain = get("registry.example", "a/b").unwrap();
        assert_eq!((plain.username(), plain.password()), ("bob", Some("pw")));
        assert_eq!(get("quay.io", "team/app").unwrap().username(), "team");
        assert_eq!(get("quay.io", "other/app").unwrap().username(), "generic");
        let token = get("tokens.example", "x").unwrap();
        assert_eq!(
            (token.username(), token.identity_token(), token.password()),
            ("carol", Some("refresh-me"), None)
        );
        assert_eq!(get("empty.example", "x"), None);
        assert_eq!(get("127.0.0.1:5001", "x"), None);
    }

    #[test]
    fn helpers_come_before_auths_and_fall_through_when_empty() {
        let config = serde_json::json!({
            "auths": {"127.0.0.1:5000": {"auth": b64("file:filepw")}, "ghcr.io": {"auth": b64("f:g")}},
            "credsStore": "store",
            "credHelpers": {"ghcr.io": "gh", "https://index.docker.io/v1/": "hub"}
        })
        .to_string();
        let helpers = FakeHelpers::default();
        helpers
            .answers
            .lock()
            .unwrap()
            .insert(("gh".into(), "ghcr.io".into()), ("ghuser".into(), "ghtoken".into()));
        helpers.answers.lock().unwrap().insert(
            ("hub".into(), "https://index.docker.io/v1/".into()),
            ("<token>".into(), "idtok".into()),
        );
        helpers
            .answers
            .lock()
            .unwrap()
            .insert(("store".into(), "quay.io".into()), ("q".into(), "qpw".into()));
        let helpers = Arc::new(helpers);
        let (_dir, store) = store_with(&[("config.json", config)], helpers.clone());

        let gh = store.lookup("ghcr.io", "o/r").unwrap().unwrap();
        assert_eq!((gh.username(), gh.password()), ("ghuser", Some("ghtoken")));
        assert_eq!(gh.source(), "credential helper docker-credential-gh");
        let hub = store.lookup("docker.io", "library/alpine").unwrap().unwrap();
        assert_eq!(hub.identity_token(), Some("idtok"));
        let quay = store.lookup("quay.io", "x").unwrap().unwrap();
        assert_eq!(quay.source(), "credential helper docker-credential-store");
        // the store knows nothing of 127.0.0.1:5000: the auths entry answers
        let local = store.lookup("127.0.0.1:5000", "x").unwrap().unwrap();
        assert_eq!(local.username(), "file");
        let calls = helpers.calls.lock().unwrap().clone();
        assert!(calls.contains(&("store".to_string(), "127.0.0.1:5000".to_string())));
    }

    #[test]
    fn earlier_files_win_and_missing_files_are_skipped() {
        let podman =
            serde_json::json!({"auths": {"reg.example": {"auth": b64("podman:p")}}}).to_string();
        let docker = serde_json::json!({"auths": {"reg.example": {"auth": b64("docker:d")}, "other.example": {"auth": b64("o:o")}}}).to_string();
        let (dir, mut store) = store_with(
            &[("auth.json", podman), ("config.json", docker)],
            Arc::new(FakeHelpers::default()),
        );
        store.files.insert(0, dir.path().join("missing.json"));
        assert_eq!(store.lookup("reg.example", "x").unwrap().unwrap().username(), "podman");
        assert_eq!(store.lookup("other.example", "x").unwrap().unwrap().username(), "o");
    }

    #[test]
    fn bad_files_are_errors_without_secrets() {
        let (_dir, store) =
            store_with(&[("config.json", "{not json".into())], Arc::new(FakeHelpers::default()));
        let err = store.lookup("r", "x").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid credentials file ")
                && err.contains("config.json: key must be a string"),
            "{err}"
        );

        let config = serde_json::json!({"auths": {"r.example": {"auth": "!!!not-base64-secret"}}})
            .to_string();
        let (_dir, store) =
            store_with(&[("config.json", config)], Arc::new(FakeHelpers::default()));
        let err = store.lookup("r.example", "x").unwrap_err().to_string();
        assert!(
            err.ends_with(
                "config.json: the auth field of \"r.example\" is not base64 of user:password"
            ),
            "{err}"
        );
        assert!(!err.contains("secret"));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let cred = Credential::basic("alice", "hunter2", "/x/config.json");
        let shown = format!("{cred:?}");
        assert_eq!(
            shown,
            "Credential { username: \"alice\", password: \"<redacted>\", source: \"/x/config.json\" }"
        );
        let token = Credential::with_identity_token("", "tok-123", "helper");
        assert!(!format!("{token:?}").contains("tok-123"));
        let answer = HelperAnswer { username: "u".into(), secret: "sss".into() };
        assert!(!format!("{answer:?}").contains("sss"));
    }

    #[test]
    fn default_file_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            default_auth_files(env(&[("HOME", "/home/u")])),
            vec![PathBuf::from("/home/u/.docker/config.json")]
        );
        assert_eq!(
            default_auth_files(env(&[
                ("HOME", "/home/u"),
                ("DOCKER_CONFIG", "/cfg"),
                ("REGISTRY_AUTH_FILE", "/run/auth.json")
            ])),
            vec![PathBuf::from("/run/auth.json"), PathBuf::from("/cfg/config.json")]
        );
        assert!(default_auth_files(env(&[])).is_empty());
    }

    #[test]
    fn key_normalisation() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_key("quay.io/org/"), "quay.io/org");
        assert_eq!(helper_server_url("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(helper_server_url("localhost:5000"), "localhost:5000");
    }
}
