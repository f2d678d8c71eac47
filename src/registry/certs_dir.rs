//! Per-registry TLS files in `certs.d` directories, laid out as Docker reads them:
//!
//! ```text
//! <certs.d>/
//! └── <host>[:<port>]/        the registry as written in references (127.0.0.1:5000)
//!     ├── ca.crt              *.crt: CA certificates trusted for this registry (PEM)
//!     ├── client.cert         *.cert: a client certificate chain (PEM) …
//!     └── client.key          … and its private key, same base name with .key
//! ```
//!
//! The directories searched, in order: `$XDG_CONFIG_HOME/kiln/certs.d` (default
//! `~/.config/kiln/certs.d`), `/etc/docker/certs.d`, `/etc/containers/certs.d`. CAs of every
//! directory add to the system roots; the first client pair found (by directory, then file
//! name) is presented. As Docker does, a `.cert` without its `.key` (or the reverse) is an
//! error rather than silently ignored. Key files are read here and never printed.

use super::tls::TlsError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The system-wide `certs.d` directories, after the user's.
const SYSTEM_CERTS_DIRS: [&str; 2] = ["/etc/docker/certs.d", "/etc/containers/certs.d"];

/// The `certs.d` directories for an environment (see the module docs).
pub fn default_certs_dirs(var: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let config_home =
        var("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
            var("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config"))
        });
    let mut dirs: Vec<PathBuf> =
        config_home.map(|home| home.join("kiln").join("certs.d")).into_iter().collect();
    dirs.extend(SYSTEM_CERTS_DIRS.iter().map(PathBuf::from));
    dirs
}

/// A client certificate chain and its key. The key's `Debug` shows nothing of it.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The `.cert` file, for messages.
    pub cert_file: PathBuf,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

/// What the `certs.d` directories hold for one registry.
#[derive(Debug, Default)]
pub struct RegistryCerts {
    pub ca_certs: Vec<CertificateDer<'static>>,
    pub client: Option<ClientIdentity>,
}

/// Reads the files for `registry` (`host[:port]`) from every directory of `dirs` that has
/// a subdirectory for it. Missing directories are skipped.
pub fn load_registry_certs(dirs: &[PathBuf], registry: &str) -> Result<RegistryCerts, TlsError> {
    let mut found = RegistryCerts::default();
    // A registry name never holds a path separator, but a bad one must not escape the dir.
    if registry.is_empty() || registry.contains('/') || registry.starts_with('.') {
        return Ok(found);
    }
    for dir in dirs {
        let host_dir = dir.join(registry);
        let entries = match std::fs::read_dir(&host_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(bad_file(&host_dir, e.to_string())),
        };
        let mut files: Vec<PathBuf> = entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_file(&host_dir, e.to_string()))?
            .into_iter()
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for file in &files {
            match file.extension().and_then(|e| e.to_str()) {
                Some("crt") => found.ca_certs.extend(read_certs(file)?),
                Some("cert") => {
                    let key = file.with_extension("key");
                    if !key.is_file() {
                        return Err(TlsError::MissingClientKey { cert: file.clone(), key });
                    }
                    if found.client.is_none() {
                        let chain = read_certs(file)?;
                        let key = PrivateKeyDer::from_pem_file(&key)
                            .map_err(|e| bad_file(&key, e.to_string()))?;
                        found.client = Some(ClientIdentity { chain, key, cert_file: file.clone() });
                    }
                }
                Some("key") => {
                    let cert = file.with_extension("cert");
                    if !cert.is_file() {
                        return Err(TlsError::MissingClientCert { key: file.clone(), cert });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

fn bad_file(path: &Path, reason: String) -> TlsError {
    TlsError::BadCaFile { path: path.to_path_buf(), reason }
}

/// Every certificate of a PEM file; a file without one is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_file(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::EmptyCaFile(path.to_path_buf()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            default_certs_dirs(vars(&[("HOME", "/home/u")])),
            [
                PathBuf::from("/home/u/.config/kiln/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d")
            ]
        );
        assert_eq!(
            default_certs_dirs(vars(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/cfg")]))[0],
            PathBuf::from("/cfg/kiln/certs.d")
        );
        assert_eq!(default_certs_dirs(vars(&[])).len(), 2);
    }

    #[test]
    fn unpaired_client_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg:5000");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("client.cert"), "x").unwrap();
        let dirs = [dir.path().to_path_buf()];
        assert_eq!(
            load_registry_certs(&dirs, "reg:5000").unwrap_err().to_string(),
            format!(
                "client certificate {} has no key {}",
                host.join("client.cert").display(),
                host.join("client.key").display()
            )
        );
        std::fs::rename(host.join("client.cert"), host.join("other.key")).unwrap();
        assert_eq!(
            load_registry_certs(&dirs, "reg:5000").unwrap_err().to_string(),
            format!(
                "client key {} has no certificate {}",
                host.join("other.key").display(),
                host.join("other.cert").display()
            )
        );
        // other registries and missing directories are fine
        let found = load_registry_certs(&dirs, "reg:5001").unwrap();
        assert!(found.ca_certs.is_empty() && found.client.is_none());
        assert!(load_registry_certs(&dirs, "../etc").unwrap().client.is_none());
        std::fs::write(host.join("ca.crt"), "not pem").unwrap();
        std::fs::remove_file(host.join("other.key")).unwrap();
        assert_eq!(
            load_registry_certs(&dirs, "reg:5000").unwrap_err().to_string(),
            format!("CA file {} holds no certificate", host.join("ca.crt").display())
        );
    }
}
