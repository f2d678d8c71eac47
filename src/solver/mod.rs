//! The solver: runs the steps of a build graph that the target needs, reusing cached results.
//!
//! - `cancel`: stopping a build on a signal;
//! - `key`: cache keys; `schedule`: dependency-ordered parallel execution;
//! - `engine`: per-step cache lookup and execution; `fs_steps`: COPY/ADD/WORKDIR glue;
//! - `images`: base images from the local store or registries; `rootfs`: layer chains and
//!   their snapshots; `progress`: events and printers.

pub mod cancel;
pub mod engine;
pub mod fs_steps;
pub mod images;
pub mod key;
pub mod progress;
pub mod rootfs;
pub mod schedule;
