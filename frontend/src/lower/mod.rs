//! Lowering stages to the build graph.
