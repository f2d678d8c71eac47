//! Text → syntax tree, with BuildKit's exact rules.
//!
//! [`parse`] (or [`parse_bytes`]) reads a whole Dockerfile: parser directives at the top,
//! comments, line continuations, `--flag` words, JSON and plain argument forms, ONBUILD's
//! inner instruction and heredoc bodies. The tree keeps every argument as BuildKit's parser
//! leaves it (quotes and escapes in place); typed meaning is given later by
//! [`crate::instructions`]. Like BuildKit's parser, this layer accepts any keyword and any
//! ONBUILD operand (`ONBUILD ONBUILD`, `ONBUILD FROM` ...): those are refused when the
//! instructions are typed.
//!
//! Modules, in the order the text flows through them:
//! - `lines`: physical lines, comments, continuation rule;
//! - `directives`: `# syntax=` / `# escape=` / `# check=`;
//! - `flags`: keyword, `--flag` words, arguments;
//! - `forms` (with `json_array`): each instruction's argument form;
//! - `heredoc` (with `heredoc_words`): heredoc markers and bodies;
//! - `parser`: the driver;
//! - `oracle`: BuildKit's dump and the conformance JSON.
//!
//! ```
//! use kiln_frontend::syntax::{dump, parse};
//!
//! let tree = parse("FROM alpine\nRUN <<EOF\necho hi\nEOF\n").unwrap();
//! assert_eq!(dump(&tree.nodes[1]), r#"(run "<<EOF")"#);
//! assert_eq!(tree.nodes[1].heredocs[0].content, "echo hi\n");
//! assert_eq!((tree.nodes[1].span.start_line, tree.nodes[1].span.end_line), (2, 4));
//! ```

mod directives;
mod error;
mod flags;
mod forms;
mod heredoc;
mod heredoc_words;
mod json_array;
mod lines;
mod node;
mod oracle;
mod parser;

pub use error::{ArgumentError, SyntaxError};
pub use node::{Directives, Heredoc, Node, SyntaxTree, Warning};
pub use oracle::{dump, go_quote, to_oracle_json};
pub use parser::{parse, parse_bytes};
