//! Build operations, one module per kind of step: what it does when it runs.
//!
//! - `context`: scanning a local build context (`.dockerignore`, include paths, stat cache)
//!   and the content digests of the files a step selects.
//! - `copy`: `COPY` and `ADD` into a new layer directory, and the content digest of their
//!   sources for cache keys.
//! - `mkdir`: `WORKDIR`'s directory creation into a new layer directory.
//! - `run`: `RUN` in the sandbox; `cache_mount`: its persistent cache directories;
//!   `ssh_forward`: the agent sockets of its ssh mounts.

pub mod cache_mount;
pub mod context;
pub mod copy;
pub mod mkdir;
pub mod run;
pub mod ssh_forward;
