//! kiln's Dockerfile frontend: text in, an inert build graph out.
//!
//! The frontend is pure. It reads only the text and data it is handed, and never touches the
//! filesystem, the network or processes. Facts about the outside world that lowering needs
//! (a base image's config and ONBUILD triggers) come through [`lower::ImageResolver`], which the
//! engine implements.
//!
//! The pipeline has four stages, each keeping source spans so every error names its lines:
//!
//! 1. [`syntax`] — text → syntax tree: parser directives, comments, line continuations,
//!    heredocs, `--flag` words, JSON/shell forms. Arguments stay as the parser leaves them
//!    (quotes and escapes in place), exactly as BuildKit's parser does.
//! 2. [`shell`] — word expansion and splitting (`$VAR`, `${VAR:-x}`, quotes, escapes) with
//!    BuildKit's rules.
//! 3. [`instructions`] — syntax nodes → typed [`instructions::Instruction`]s grouped into
//!    [`instructions::Stage`]s, with typed flags (`--mount`, `--chown`, ...).
//! 4. [`lower`] — stages → [`graph::Graph`] of [`graph::Step`]s for the target, with ARG
//!    scoping, stage pruning, ONBUILD triggers and `.dockerignore` selection.
//!
//! ```
//! let tree = kiln_frontend::syntax::parse("FROM busybox\nRUN echo hi\n").unwrap();
//! assert_eq!(tree.nodes[1].cmd, "run");
//! assert_eq!(tree.nodes[1].args, ["echo hi"]);
//! ```

pub mod dockerignore;
pub mod graph;
pub mod instructions;
pub mod lower;
pub mod platform;
pub mod shell;
pub mod span;
pub mod syntax;

pub use span::Span;
