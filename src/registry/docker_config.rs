//! Saving and forgetting credentials the way `docker login` and `docker logout` do, in the
//! same `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) and
//! the same `docker-credential-*` helpers, so Docker, buildx, podman and kiln share them.
//!
//! The server's key is Docker's: `https://index.docker.io/v1/` for Docker Hub, otherwise
//! the bare `host[:port]` (a URL given at login loses its scheme and path). Where a
//! credential goes, as Docker decides it: `credHelpers[<key>]`, else `credsStore`, else the
//! file itself. With a helper, the secret goes to `docker-credential-<name> store` and the
//! file keeps an empty `auths[<key>]` entry (as Docker's native store leaves it); without
//! one, `auths[<key>]` gets `auth` = base64 `user:password` — or, for an identity token,
//! base64 `user:` and `identitytoken`.
//!
//! Invariants: every other field of the file is kept as it was (order included); the file
//! is replaced atomically (temp file in its directory, renamed over it — through a
//! symlink to its target), mode 0600, its directory created 0700 when missing; no error
//! message quotes a secret or the file's content.

use super::credentials::{CredentialsError, HelperRunner, ProcessHelperRunner, normalize_key};
use base64::Engine;
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Docker Hub's key in `config.json` and for credential helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A server as `kiln login`/`logout` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginServer {
    /// The key in `auths` and for helpers.
    pub key: String,
    /// The registry to talk to, as references write it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
}

impl LoginServer {
    /// Docker Hub when `server` is missing or one of its names; otherwise its host.
    pub fn parse(server: Option<&str>) -> LoginServer {
        let host = server.map(|s| {
            let s = s.trim();
            let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
            s.split('/').next().unwrap_or_default().to_ascii_lowercase()
        });
        match host.as_deref() {
            None
            | Some("" | "docker.io" | "index.docker.io" | "registry-1.docker.io")
            | Some("registry.hub.docker.com") => LoginServer {
                key: DOCKER_HUB_SERVER.to_string(),
                registry: "docker.io".to_string(),
            },
            Some(host) => LoginServer { key: host.to_string(), registry: host.to_string() },
        }
    }
}

/// What is saved besides the user name.
#[derive(Clone, Copy)]
pub enum SavedSecret<'a> {
    Password(&'a str),
    /// An OAuth2 refresh token from the registry's token server.
    IdentityToken(&'a str),
}

/// Where a login was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedIn {
    /// In the file itself: the secret is readable by anyone who can read it.
    File(PathBuf),
    /// With `docker-credential-<name>`.
    Helper(String),
}

/// Docker's `config.json` and the helpers it names.
#[derive(Clone)]
pub struct DockerConfig {
    path: PathBuf,
    helpers: Arc<dyn HelperRunner>,
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerConfig").field("path", &self.path).finish_non_exhaustive()
    }
}

impl DockerConfig {
    pub fn new(path: PathBuf, helpers: Arc<dyn HelperRunner>) -> Self {
        DockerConfig { path, helpers }
    }

    /// The file of this process' environment (`DOCKER_CONFIG`, `HOME`), helpers from `PATH`.
    pub fn from_env() -> Option<Self> {
        let path = super::credentials::docker_config_file(|name| std::env::var_os(name))?;
        Some(DockerConfig::new(path, Arc::new(ProcessHelperRunner::default())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves a login for `server` (see the module docs for where it goes).
    pub fn save(
        &self,
        server: &LoginServer,
        username: &str,
        secret: SavedSecret<'_>,
    ) -> Result<SavedIn, CredentialsError> {
        let mut file = self.read()?;
        let helper = helper_for(&file, &server.key);
        let entry = match &helper {
            Some(helper) => {
                let (user, secret) = match secret {
                    SavedSecret::Password(password) => (username, password),
                    SavedSecret::IdentityToken(token) => ("<token>", token),
                };
                self.helpers.store(helper, &server.key, user, secret)?;
                Map::new()
            }
            None => {
                let engine = base64::engine::general_purpose::STANDARD;
                let mut entry = Map::new();
                let (password, token) = match secret {
                    SavedSecret::Password(password) => (password, None),
                    SavedSecret::IdentityToken(token) => ("", Some(token)),
                };
                entry.insert("auth".into(), engine.encode(format!("{username}:{password}")).into());
                if let Some(token) = token {
                    entry.insert("identitytoken".into(), token.into());
                }
                entry
            }
        };
        let auths = auths_of(&mut file, &self.path)?;
        // Older spellings of the same server (`https://host`, `host/v2/`) would shadow or
        // contradict the new entry: they go.
        let wanted = normalize_key(&server.key);
        auths.retain(|key, _| key == &server.key || normalize_key(key) != wanted);
        auths.insert(server.key.clone(), Value::Object(entry));
        self.write(&file)?;
        Ok(match helper {
            Some(helper) => SavedIn::Helper(helper),
            None => SavedIn::File(self.path.clone()),
        })
    }

    /// Forgets `server`: its `auths` entries (any spelling) and the helper's copy. Whether
    /// the file had an entry for it.
    pub fn erase(&self, server: &LoginServer) -> Result<bool, CredentialsError> {
        let mut file = self.read()?;
        if let Some(helper) = helper_for(&file, &server.key) {
            self.helpers.erase(&helper, &server.key)?;
        }
        let wanted = normalize_key(&server.key);
        let auths = auths_of(&mut file, &self.path)?;
        let before = auths.len();
        auths.retain(|key, _| normalize_key(key) != wanted);
        let found = auths.len() != before;
        if found {
            self.write(&file)?;
        }
        Ok(found)
    }

    /// The file as a JSON object; an empty one when it does not exist.
    fn read(&self) -> Result<Map<String, Value>, CredentialsError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(source) => return Err(CredentialsError::Read { path: self.path.clone(), source }),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(CredentialsError::NotAnObject { path: self.path.clone() }),
            Err(source) => Err(CredentialsError::Parse { path: self.path.clone(), source }),
        }
    }

    /// Replaces the file atomically, indented with tabs as Docker writes it.
    fn write(&self, file: &Map<String, Value>) -> Result<(), CredentialsError> {
        // Through a symlink (a config file kept elsewhere) to the file it names.
        let target = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(&self.path)
                .map_err(|source| CredentialsError::Write { path: self.path.clone(), source })?,
            _ => self.path.clone(),
        };
        let write_error = |source| CredentialsError::Write { path: target.clone(), source };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(write_error)?;
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        serde::Serialize::serialize(file, &mut serializer)
            .map_err(std::io::Error::other)
            .map_err(write_error)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".config.json-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir)
            .map_err(write_error)?;
        temp.write_all(&bytes).map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&target).map_err(|e| write_error(e.error))?;
        Ok(())
    }
}

/// The helper that holds `key`'s credentials, if any (`credHelpers`, then `credsStore`).
fn helper_for(file: &Map<String, Value>, key: &str) -> Option<String> {
    let wanted = normalize_key(key);
    let named = file.get("credHelpers").and_then(Value::as_object).and_then(|helpers| {
        helpers
            .get(key)
            .or_else(|| helpers.iter().find(|(k, _)| normalize_key(k) == wanted).map(|(_, v)| v))
    });
    named
        .or_else(|| file.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// The `auths` object, created when missing.
fn auths_of<'f>(
    file: &'f mut Map<String, Value>,
    path: &Path,
) -> Result<&'f mut Map<String, Value>, CredentialsError> {
    let auths = file.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    if auths.is_null() {
        *auths = Value::Object(Map::new());
    }
    auths.as_object_mut().ok_or_else(|| CredentialsError::NotAnObject { path: path.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::credentials::CredentialStore;
    use crate::registry::fake_helpers::FakeHelpers;

    #[test]
    fn servers_as_docker_names_them() {
        let hub =
            LoginServer { key: DOCKER_HUB_SERVER.to_string(), registry: "docker.io".to_string() };
        for name in [None, Some("docker.io"), Some("https://index.docker.io/v1/"), Some("")] {
            assert_eq!(LoginServer::parse(name), hub, "{name:?}");
        }
        let local = LoginServer::parse(Some("https://127.0.0.1:5000/v2/"));
        assert_eq!(
            (local.key.as_str(), local.registry.as_str()),
            ("127.0.0.1:5000", "127.0.0.1:5000")
        );
        assert_eq!(LoginServer::parse(Some("GHCR.io")).key, "ghcr.io");
    }

    fn config(dir: &Path, helpers: Arc<FakeHelpers>) -> DockerConfig {
        DockerConfig::new(dir.join("docker/config.json"), helpers)
    }

    #[test]
    fn saves_in_the_file_keeping_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let helpers = Arc::new(FakeHelpers::default());
        let docker = config(dir.path(), helpers.clone());
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(
            docker.path(),
            r#"{"psFormat":"table","auths":{"http://127.0.0.1:5000/v2/":{"auth":"b2xkOm9sZA=="},"other":{}},"zzz":1}"#,
        )
        .unwrap();
        let server = LoginServer::parse(Some("127.0.0.1:5000"));
        let saved = docker.save(&server, "alice", SavedSecret::Password("s3cret")).unwrap();
        assert_eq!(saved, SavedIn::File(docker.path().to_path_buf()));
        let text = std::fs::read_to_string(docker.path()).unwrap();
        assert_eq!(
            text,
            "{\n\t\"psFormat\": \"table\",\n\t\"auths\": {\n\t\t\"other\": {},\n\t\t\"127.0.0.1:5000\": {\n\t\t\t\"auth\": \"YWxpY2U6czNjcmV0\"\n\t\t}\n\t},\n\t\"zzz\": 1\n}"
        );
        let mode = std::fs::metadata(docker.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // what kiln reads back
        let store = CredentialStore::new(vec![docker.path().to_path_buf()], helpers.clone());
        let found = store.lookup("127.0.0.1:5000", "app").unwrap().unwrap();
        assert_eq!((found.username(), found.password()), ("alice", Some("s3cret")));

        let hub = LoginServer::parse(None);
        docker.save(&hub, "bob", SavedSecret::IdentityToken("refresh")).unwrap();
        let found = store.lookup("docker.io", "library/x").unwrap().unwrap();
        assert_eq!((found.username(), found.identity_token()), ("bob", Some("refresh")));

        assert!(docker.erase(&server).unwrap());
        assert!(!docker.erase(&server).unwrap(), "nothing left to erase");
        assert_eq!(store.lookup("127.0.0.1:5000", "app").unwrap(), None);
        assert!(helpers.changes.lock().unwrap().is_empty(), "no helper configured");
    }

    #[test]
    fn a_missing_file_and_directory_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let docker = config(dir.path(), Arc::new(FakeHelpers::default()));
        docker.save(&LoginServer::parse(Some("r:1")), "u", SavedSecret::Password("p")).unwrap();
        let mode = std::fs::metadata(dir.path().join("docker")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let value: Value = serde_json::from_slice(&std::fs::read(docker.path()).unwrap()).unwrap();
        assert_eq!(value["auths"]["r:1"]["auth"], "dTpw");
    }

    #[test]
    fn helpers_keep_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let helpers = Arc::new(FakeHelpers::default());
        let docker = config(dir.path(), helpers.clone());
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(docker.path(), r#"{"credsStore":"store","credHelpers":{"ghcr.io":"gh"}}"#)
            .unwrap();
        let ghcr = LoginServer::parse(Some("ghcr.io"));
        assert_eq!(
            docker.save(&ghcr, "me", SavedSecret::Password("pat")).unwrap(),
            SavedIn::Helper("gh".into())
        );
        let hub = LoginServer::parse(None);
        assert_eq!(
            docker.save(&hub, "me", SavedSecret::IdentityToken("tok")).unwrap(),
            SavedIn::Helper("store".into())
        );
        let value: Value = serde_json::from_slice(&std::fs::read(docker.path()).unwrap()).unwrap();
        assert_eq!(value["auths"], serde_json::json!({"ghcr.io": {}, DOCKER_HUB_SERVER: {}}));
        let answers = helpers.answers.lock().unwrap().clone();
        assert_eq!(answers[&("gh".into(), "ghcr.io".into())], ("me".into(), "pat".into()));
        assert_eq!(
            answers[&("store".into(), DOCKER_HUB_SERVER.into())],
            ("<token>".into(), "tok".into())
        );
        assert!(docker.erase(&ghcr).unwrap());
        assert_eq!(
            helpers.changes.lock().unwrap().last().unwrap(),
            &("erase".to_string(), "gh".to_string(), "ghcr.io".to_string())
        );
    }

    #[test]
    fn bad_files_are_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let docker = config(dir.path(), Arc::new(FakeHelpers::default()));
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(docker.path(), r#"["secret-looking"]"#).unwrap();
        let err = docker.save(&LoginServer::parse(None), "u", SavedSecret::Password("p"));
        assert_eq!(
            err.unwrap_err().to_string(),
            format!("invalid credentials file {}: not a json object", docker.path().display())
        );
    }
}
