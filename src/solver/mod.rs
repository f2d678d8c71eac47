//! The solver: runs the steps of a build graph that the target needs, reusing cached results.

pub mod key;
pub mod schedule;
