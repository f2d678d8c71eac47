//! Test infrastructure shared by kiln's end-to-end tests: a real registry (Debian's
//! `docker-registry`) in plain-HTTP, htpasswd and TLS variants, OCI image layouts written by
//! hand and pushed with `skopeo` (so tests do not depend on kiln's own push), a busybox base
//! image, and a fault-injecting proxy.
//!
//! Typical use:
//!
//! ```ignore
//! if !common::tools::available(common::tools::REGISTRY_TOOLS) { return; }
//! let registry = common::registry::TestRegistry::plain();        // or ::tls(), ::with_htpasswd(u, p)
//! let pushed = common::busybox::push_busybox(&registry, "busybox", "latest", &Default::default());
//! // pushed.reference = "127.0.0.1:<port>/busybox:latest", pushed.digest, pushed.images[0].layers …
//! let raw = common::skopeo::inspect_raw(&pushed.reference, None); // read back without kiln
//! ```
//!
//! Tests call [`tools::available`] first: when a tool is missing they print why and skip,
//! unless `KILN_E2E=1` (set by `scripts/test`), where a missing tool fails the test.
#![allow(dead_code)]

pub mod at_exit;
pub mod build;
pub mod busybox;
pub mod http;
pub mod kiln;
pub mod oci;
pub mod podman;
pub mod processes;
pub mod proxy;
pub mod registry;
pub mod rootfs;
pub mod skopeo;
pub mod tls;
pub mod token_server;
pub mod tools;
pub mod tree;
pub mod unpack;
pub mod users;
