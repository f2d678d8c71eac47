//! Remote build cache: `--cache-to` writes the cache records a build used to a registry or a
//! local directory, `--cache-from` lets another machine (or a fresh state root) reuse them.
//!
//! # The cache artifact
//!
//! One OCI image manifest whose config maps cache keys to layer chains, and whose layers
//! are every layer blob those chains name (see [`format`](mod@format) for every field):
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//! ├── artifactType: application/vnd.kiln.cache.v1
//! ├── config ──▶ application/vnd.kiln.cache.config.v1+json
//! │              {
//! │                "format": 1,                       bumped when this layout changes
//! │                "keyVersion": "kiln-cache-key-v1", solver::key::KEY_VERSION
//! │                "layers": [                        one per manifest layer, same order
//! │                  {"blob": "sha256:…", "diffId": "sha256:…"}, …
//! │                ],
//! │                "records": [                       sorted by key
//! │                  {"key": "<64 hex>", "description": "RUN make", "created": 1700000000,
//! │                   "layers": [{"layer": 0}, {"layer": 3, "created": "2024-…Z"}]}, …
//! │                ]
//! │              }
//! └── layers ──▶ [layer blobs exactly as kiln stores them (tar+gzip …), each once]
//! ```
//!
//! A record's `layers` is the whole chain of the step's root filesystem, bottom first (base
//! image layers included), each with the time the step first made it (kept so that a hit
//! gives the same image digest as the original build).
//!
//! - `type=registry,ref=REF`: the manifest is pushed under `REF`'s tag, its blobs into
//!   `REF`'s repository.
//! - `type=local,dest=DIR`: `DIR` is an OCI image layout; `index.json` names the manifest
//!   with `org.opencontainers.image.ref.name` = the `tag=` attribute (default `latest`),
//!   replacing an entry of that name and keeping any other ([`layout_writer`]).
//!
//! The same records always give the same bytes (records sorted by key, layers in order of
//! first use, no timestamps of the export itself), so re-exporting an unchanged cache
//! pushes nothing new.
//!
//! # Import and laziness
//!
//! [`import::ImportedCache::load`] reads each `--cache-from` manifest and config (small documents, never a
//! layer) into an [`import::ImportedCache`]. A problem with one — missing, unreachable,
//! corrupt, another format or key version — is a warning naming the reference and the
//! cause, and the build goes on without it.
//!
//! The engine asks the local index first and the imported records on a miss
//! ([`session::CacheSession::lookup`]). A remote hit hands the step's dependents *lazy*
//! layers: their snapshot paths are where the snapshot will be, but neither the blob nor
//! the snapshot is fetched. Before a hit is taken, the blobs it names that are not local
//! are checked to exist at their source (`HEAD` for registries), so a cache whose blobs
//! were deleted gives a miss and a warning, not a failure later. Bytes are fetched only
//! when something needs them ([`session::CacheSession::materialize`]):
//! - a step that executes (RUN, COPY, WORKDIR's mkdir) needs every filesystem it reads:
//!   blobs are downloaded and snapshots unpacked;
//! - a COPY from another stage needs that stage's files to compute its key;
//! - exporting the image needs the final image's blobs (not their snapshots).
//!
//! With a cache imported, base images are lazy as well: `FROM` resolves the image (manifest
//! and config) and its layers come from its registry or OCI layout only when read
//! ([`session::CacheSession::lazy_image`]), so the base of a stage whose steps all hit is
//! never pulled.
//!
//! Imported records are not written into the local index when hit: the index only holds
//! records whose blobs are all in the local store (`CacheIndex::put` checks that). At the
//! end of a build, every imported record that was used and whose blobs have all been
//! downloaded by then is put into the local index ([`session::CacheSession::persist`]), so
//! the next build on this root hits locally without `--cache-from`.
//!
//! # Export
//!
//! The engine notes every record it reused or made ([`session::UsedRecords`]).
//! `mode=max` exports all of them; `mode=min` (the default, as in BuildKit) only those of
//! the steps whose layers make up the final image ([`export::select`]). Blobs not in the
//! local store (lazy hits) are downloaded from their source for a local export; a registry
//! export goes through the [`upload::CacheUploader`] seam ([`registry_upload`] over kiln's
//! push), which checks what the target repository already holds, and mounts what a
//! repository of the same registry holds, before asking for bytes.
//!
//! # Portability
//!
//! Cache keys ([`crate::solver::key`]) cover content, never host paths, the state root or
//! times, so two machines building the same inputs compute the same keys (a test builds in
//! two roots and contexts in different directories and compares the keys).

pub mod export;
pub mod fetch;
pub mod format;
pub mod import;
pub mod layout_writer;
pub mod registry_upload;
pub mod session;
pub mod upload;

pub use format::{CONFIG_MEDIA_TYPE, FormatError};
pub use import::{CacheSource, ImportedCache};
pub use session::{CacheSession, LazyImage, UsedRecords};

#[cfg(test)]
mod tests;
