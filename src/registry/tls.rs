//! TLS settings for registry connections, behind a small trait ([`TlsPolicy`]).
//!
//! TLS is rustls on the `ring` provider. [`SystemTls`] trusts the system's roots plus any
//! extra CA files it was given (`KILN_REGISTRY_CA_FILE`, a `:`-separated list of PEM files),
//! plus, per registry, the CAs of its `certs.d` directories, and presents the client
//! certificate found there (see [`certs_dir`](super::certs_dir)), as Docker does.
//! A configuration with `verify == false` (registries listed as insecure) accepts any
//! certificate but still checks the handshake's signatures (and still presents a client
//! certificate).

use super::certs_dir::{default_certs_dirs, load_registry_certs, read_certs};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA certificates from {path}: {reason}")]
    BadCaFile { path: PathBuf, reason: String },
    #[error("CA file {0} holds no certificate")]
    EmptyCaFile(PathBuf),
    #[error("cannot set up TLS: {0}")]
    Setup(String),
    #[error("client certificate {} has no key {}", cert.display(), key.display())]
    MissingClientKey { cert: PathBuf, key: PathBuf },
    #[error("client key {} has no certificate {}", key.display(), cert.display())]
    MissingClientCert { key: PathBuf, cert: PathBuf },
    #[error("invalid client certificate {}: {reason}", cert.display())]
    BadClientCert { cert: PathBuf, reason: String },
}

/// Gives the rustls configuration for connections to one registry.
pub trait TlsPolicy: Send + Sync + fmt::Debug {
    /// `registry` is `host[:port]` as in references; `verify` is false for insecure registries.
    fn client_config(&self, registry: &str, verify: bool)
    -> Result<rustls::ClientConfig, TlsError>;
}

/// The environment variable naming extra CA files (PEM, `:`-separated).
pub const CA_FILE_ENV: &str = "KILN_REGISTRY_CA_FILE";

/// System roots plus extra CA files, plus each registry's `certs.d` files.
#[derive(Debug)]
pub struct SystemTls {
    extra_ca_files: Vec<PathBuf>,
    certs_dirs: Vec<PathBuf>,
    roots: OnceLock<Result<Arc<RootCertStore>, TlsError>>,
}

impl SystemTls {
    /// No `certs.d` directories: the same roots for every registry.
    pub fn new(extra_ca_files: Vec<PathBuf>) -> Self {
        SystemTls::with_certs_dirs(extra_ca_files, Vec::new())
    }

    /// Also reads per-registry files from `certs_dirs` (see [`certs_dir`](super::certs_dir)).
    pub fn with_certs_dirs(extra_ca_files: Vec<PathBuf>, certs_dirs: Vec<PathBuf>) -> Self {
        SystemTls { extra_ca_files, certs_dirs, roots: OnceLock::new() }
    }

    /// Extra CA files from `KILN_REGISTRY_CA_FILE`, the default `certs.d` directories.
    pub fn from_env() -> Self {
        SystemTls::from_vars(|name| std::env::var_os(name))
    }

    /// [`SystemTls::from_env`] with the environment given as a lookup function.
    pub fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let files = var(CA_FILE_ENV)
            .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
            .unwrap_or_default();
        SystemTls::with_certs_dirs(files, default_certs_dirs(var))
    }

    pub fn extra_ca_files(&self) -> &[PathBuf] {
        &self.extra_ca_files
    }

    pub fn certs_dirs(&self) -> &[PathBuf] {
        &self.certs_dirs
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        self.roots.get_or_init(|| self.load_roots().map(Arc::new)).clone()
    }

    fn load_roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped, as every TLS client does: a registry
        // signed by a missing root then fails its handshake with a clear error.
        let system = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(system.certs);
        for path in &self.extra_ca_files {
            add_roots(&mut roots, read_certs(path)?, path)?;
        }
        Ok(roots)
    }
}

fn add_roots(
    roots: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    path: &std::path::Path,
) -> Result<(), TlsError> {
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| TlsError::BadCaFile { path: path.to_path_buf(), reason: e.to_string() })?;
    }
    Ok(())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsPolicy for SystemTls {
    fn client_config(
        &self,
        registry: &str,
        verify: bool,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider();
        let registry_certs = load_registry_certs(&self.certs_dirs, registry)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = if verify {
            let mut roots = self.roots()?;
            if !registry_certs.ca_certs.is_empty() {
                let mut extended = (*roots).clone();
                for cert in registry_certs.ca_certs {
                    extended.add(cert).map_err(|e| TlsError::Setup(e.to_string()))?;
                }
                roots = Arc::new(extended);
            }
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
        };
        match registry_certs.client {
            None => Ok(builder.with_no_client_auth()),
            Some(identity) => {
                builder.with_client_auth_cert(identity.chain, identity.key).map_err(|e| {
                    TlsError::BadClientCert { cert: identity.cert_file, reason: e.to_string() }
                })
            }
        }
    }
}

/// For insecure registries only: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_from_the_environment() {
        let tls =
            SystemTls::from_vars(|name| (name == CA_FILE_ENV).then(|| "/a.pem::/b.pem".into()));
        assert_eq!(tls.extra_ca_files(), [PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]);
        assert!(SystemTls::from_vars(|_| None).extra_ca_files().is_empty());
    }

    #[test]
    fn bad_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let tls = SystemTls::new(vec![empty.clone()]);
        assert_eq!(
            tls.client_config("r", true).unwrap_err().to_string(),
            format!("CA file {} holds no certificate", empty.display())
        );
        let missing = dir.path().join("missing.pem");
        let err =
            SystemTls::new(vec![missing.clone()]).client_config("r", true).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read CA certificates from {}: ", missing.display())),
            "{err}"
        );
        // unverified configurations need no roots
        assert!(SystemTls::new(vec![missing]).client_config("r", false).is_ok());
    }
}
