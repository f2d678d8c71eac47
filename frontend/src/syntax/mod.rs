//! Text → syntax tree, with BuildKit's exact rules.
//!
//! See [`parse`]. The tree keeps every argument as the parser leaves it; typed meaning is
//! given later by [`crate::instructions`].

mod node;

pub use node::{Directives, Heredoc, Node, SyntaxTree, Warning};
