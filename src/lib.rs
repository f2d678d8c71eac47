//! kiln: a daemonless, rootless, Dockerfile-compatible container image builder.
//!
//! The binary is a thin shim over [`cli`]. The Dockerfile frontend lives in the
//! `kiln-frontend` crate, the content-addressed store in `kiln-cache`.

pub mod cli;
pub mod export;
pub mod fs;
pub mod image;
pub mod layer;
pub mod ops;
pub mod registry;
pub mod remote_cache;
pub mod sandbox;
pub mod solver;
pub mod userns;
