//! The syntax tree: what BuildKit's parser produces, flattened into plain data.

use crate::Span;
use serde::Serialize;

/// A parsed Dockerfile: its instructions in order, the directives that shaped parsing, and
/// the warnings the parser raised (BuildKit's "Empty continuation line" and friends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxTree {
    pub nodes: Vec<Node>,
    pub directives: Directives,
    pub warnings: Vec<Warning>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`) read from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// The escape and line-continuation character: `\` (default) or `` ` ``.
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { escape: '\\', syntax: None, check: None }
    }
}

/// Something the parser accepted but BuildKit warns about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// BuildKit's text, e.g. `Empty continuation line found in: RUN a   b`.
    pub message: String,
    /// Where BuildKit locates it: the last line of the instruction.
    pub span: Span,
}

/// One instruction as the parser leaves it.
///
/// Invariants: `cmd` is lower case; `args` keep quotes and escapes (they are removed later
/// by word expansion) except for the JSON form, whose strings are already decoded; `sub` is
/// set only for `onbuild`; `heredocs` only for instructions that accept them (RUN, COPY, ADD,
/// and ONBUILD whose `sub` is one of them: the bodies stay on the ONBUILD node, as in
/// BuildKit). Unknown keywords get the single argument `""`, as BuildKit's parser gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The lower-cased instruction keyword: `from`, `run`, ...
    pub cmd: String,
    /// `--name[=value]` words that came before the arguments, in order, as written.
    pub flags: Vec<String>,
    /// The arguments, split by the instruction's own rule (see BuildKit's line parsers).
    pub args: Vec<String>,
    /// The instruction of an `ONBUILD`.
    pub sub: Option<Box<Node>>,
    /// Whether the arguments were written in JSON (exec) form.
    pub json: bool,
    /// The instruction's text as one logical line (continuations joined, comments dropped).
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    /// Lines the instruction spans, heredoc bodies included.
    pub span: Span,
}

/// A heredoc body collected for an instruction: `<<EOF`, `<<-EOF`, `3<<"EOF"` ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, unquoted.
    pub name: String,
    /// The body as written, byte for byte: every line with its ending (CRLF kept), leading
    /// tabs included even when `chomp` (see [`Heredoc::body`]).
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from each body line.
    pub chomp: bool,
    /// The file descriptor written before `<<` (0 when none was given; saturates at
    /// `u32::MAX`).
    pub fd: u32,
}

impl Heredoc {
    /// The body as the instruction uses it: with `chomp` (`<<-`), leading tabs are removed
    /// from every line; otherwise the content unchanged.
    pub fn body(&self) -> std::borrow::Cow<'_, str> {
        if !self.chomp {
            return std::borrow::Cow::Borrowed(&self.content);
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        std::borrow::Cow::Owned(out)
    }
}
