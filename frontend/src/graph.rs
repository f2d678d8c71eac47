//! The build graph.
