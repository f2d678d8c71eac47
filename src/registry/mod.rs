//! Pulling images from and pushing them to OCI and Docker registries, and logging in.
//!
//! The pieces, each in its own module:
//! - [`reference`](mod@reference): `alpine` → `docker.io/library/alpine:latest`, Docker's parsing rules;
//!   [`digest`]: validated `sha256:…` digests and hashing.
//! - [`client`]: [`RegistryClient`] — endpoints (HTTPS, plain HTTP only for loopback and
//!   insecure registries, see [`endpoint`]), TLS ([`tls`]: system roots plus per-registry
//!   CAs and client certificates from `certs.d`, see [`certs_dir`]),
//!   authentication ([`auth`]: Basic and Bearer token challenges, token cache per
//!   repository scope; [`authorize`]: answering them, token requests) with credentials
//!   from Docker/podman files and helpers ([`credentials`]), retries with backoff
//!   ([`retry`]).
//! - [`manifest`]: manifest, index and descriptor types; [`platform_select`]: picking the
//!   platform's manifest from an index.
//! - [`pull`]: verified manifest fetches and [`RegistryClient::resolve_image`] —
//!   reference + platform → manifest, config ([`image_config`]) and layer descriptors.
//! - [`blob`]: streaming, verified, resumable, parallel blob downloads ([`parallel`]: the
//!   worker pool downloads and uploads share).
//! - [`push`]: [`RegistryClient::push_image`] — blobs into every target repository, then
//!   the manifest under every tag; [`upload`]: one blob (existence check, cross-repository
//!   mount, monolithic or chunked upload, resume and retry, registry quirks).
//! - [`login`]: checking credentials as `docker login` does; [`docker_config`]: saving
//!   and erasing them in Docker's `config.json` or its credential helper.
//! - [`error`]: [`RegistryError`], whose messages name the registry, repository, HTTP
//!   status and the registry's own words.
//!
//! Choices, and why:
//! - Own reference parser and manifest/config serde types rather than `oci-spec`: the
//!   config must keep Docker's fields that `oci-spec` drops (`Healthcheck`, `OnBuild`, …)
//!   and every unknown field, manifests are kept as received bytes anyway, and `oci-spec`'s
//!   builder/getter proc-macro stack costs more build time than these few types.
//! - Own credential code rather than the `docker_credential` crate: that crate ignores
//!   `username`/`password` entries and podman's namespaced keys, derives `Debug` on the
//!   password, and cannot run helpers from a chosen `PATH` (which the tests need).
//! - TLS is rustls on `ring` (no aws-lc C build); plain HTTP only for loopback and listed
//!   insecure registries, as documented in [`endpoint`].
//!
//! ```no_run
//! use kiln::registry::{ClientOptions, Reference, RegistryClient};
//! use kiln_frontend::platform::Platform;
//!
//! let client = RegistryClient::new(ClientOptions::from_env()?);
//! let reference = Reference::parse("alpine:3.20")?;
//! let image = client.resolve_image(&reference, &Platform::host())?;
//! for layer in image.layers() {
//!     let mut file = std::fs::File::create(layer.digest.hex())?;
//!     client.fetch_blob(&reference, layer, &mut file, &|_| {})?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
pub mod authorize;
pub mod blob;
pub mod blob_cursor;
pub mod certs_dir;
pub mod client;
pub mod credentials;
pub mod digest;
pub mod docker_config;
pub mod endpoint;
pub mod error;
#[cfg(test)]
pub(crate) mod fake_helpers;
pub mod image_config;
pub mod login;
pub mod manifest;
pub mod parallel;
pub mod platform_select;
pub mod pull;
pub mod push;
pub mod reference;
pub mod retry;
pub mod tls;
pub mod upload;

pub use blob::BlobProgress;
pub use client::{ClientOptions, RegistryClient};
pub use credentials::{Credential, CredentialStore};
pub use digest::Digest;
pub use endpoint::InsecureRegistries;
pub use error::RegistryError;
pub use manifest::{Descriptor, FetchedManifest, ImageIndex, ImageManifest, ManifestKind};
pub use pull::ResolvedImage;
pub use reference::Reference;
pub use retry::RetryPolicy;
pub use tls::{SystemTls, TlsPolicy};
