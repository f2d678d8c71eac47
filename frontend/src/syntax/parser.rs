//! The driver: physical lines → logical lines → nodes, with directives and heredocs.
//!
//! Rules (BuildKit's `Parse`):
//! - a UTF-8 byte-order mark at the start is dropped;
//! - leading blanks of a line are dropped; comment lines and blank lines between
//!   instructions are skipped; directives are read from the top (see [`super::directives`]);
//! - a line ending in the escape character continues on the next line; inside a continued
//!   instruction, comment lines are dropped and blank lines are dropped with a warning
//!   ("Empty continuation line found in: ..."); continuation lines keep their leading blanks;
//!   a continuation may run into the end of the file;
//! - an instruction's span runs from its first line to its last, heredoc bodies included.
//!
//! Invariant: on success the tree holds at least one node, and every top-level node has a
//! span within the input; every error carries a span within the input (line 1 at least).

use super::directives::{DirectiveError, DirectiveReader};
use super::error::SyntaxError;
use super::forms::node_from_line;
use super::heredoc::{MarkerError, markers, read_body};
use super::lines::{PhysicalLines, is_blank, is_comment, trim_continuation, trim_newline};
use super::node::{Directives, Node, SyntaxTree, Warning};
use crate::Span;

/// Instructions whose plain form takes heredocs (also when they are ONBUILD's).
const HEREDOC_INSTRUCTIONS: [&str; 3] = ["add", "copy", "run"];

/// Parses Dockerfile text into a syntax tree.
pub fn parse(text: &str) -> Result<SyntaxTree, SyntaxError> {
    let mut lines = PhysicalLines::new(text);
    let mut directive_reader = DirectiveReader::default();
    let mut directives = Directives::default();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();

    while let Some(raw) = lines.next_line() {
        let line_number = lines.count();
        let first = trim_newline(raw).trim_start();
        let directive = directive_reader.read(first).map_err(|err| match err {
            DirectiveError::Duplicate(name) => {
                SyntaxError::DuplicateDirective { name, span: Span::line(line_number) }
            }
        })?;
        if let Some(directive) = directive {
            match directive.name.as_str() {
                "escape" => directives.escape = escape_token(&directive.value, line_number)?,
                "syntax" => directives.syntax = Some(directive.value),
                _ => directives.check = Some(directive.value),
            }
        }
        let escape = directives.escape;
        let first = if is_comment(first) { "" } else { first };
        let start_line = line_number;
        let (text, mut ended) = trim_continuation(first, escape);
        if ended && text.is_empty() {
            continue;
        }
        let mut logical = text.to_string();
        let mut had_blank_line = false;
        while !ended {
            let Some(raw) = lines.next_line() else { break };
            if is_comment(raw) {
                continue;
            }
            let line = trim_newline(raw);
            if is_blank(line) {
                had_blank_line = true;
                continue;
            }
            let (text, end) = trim_continuation(line, escape);
            logical.push_str(text);
            ended = end;
        }

        if had_blank_line {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {logical}"),
                span: Span::line(lines.count()),
            });
        }

        let mut node = node_from_line(&logical, escape).map_err(|error| {
            SyntaxError::Arguments { error, span: Span::new(start_line, lines.count()) }
        })?;
        if takes_heredocs(&node) && logical.contains("<<") {
            let mut heredocs = markers(&logical).map_err(|MarkerError { word, reason }| {
                SyntaxError::HeredocWord {
                    word,
                    reason,
                    span: Span::new(start_line, lines.count()),
                }
            })?;
            for heredoc in &mut heredocs {
                if !read_body(heredoc, &mut lines) {
                    return Err(SyntaxError::UnterminatedHeredoc {
                        span: Span::new(start_line, lines.count()),
                    });
                }
            }
            node.heredocs = heredocs;
        }
        node.span = Span::new(start_line, lines.count());
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(SyntaxError::NoInstructions { span: Span::line(lines.count().max(1)) });
    }
    if let Some(line) = lines.too_long() {
        return Err(SyntaxError::LineTooLong { span: Span::line(line) });
    }
    Ok(SyntaxTree { nodes, directives, warnings })
}

/// Parses Dockerfile bytes; they must be UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<SyntaxTree, SyntaxError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            Err(SyntaxError::InvalidUtf8 { span: Span::line(line) })
        }
    }
}

fn escape_token(value: &str, line: usize) -> Result<char, SyntaxError> {
    match value {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(SyntaxError::InvalidEscape { value: value.to_string(), span: Span::line(line) }),
    }
}

/// Whether heredoc markers on the node's line count: RUN/COPY/ADD in plain form, directly
/// or as ONBUILD's instruction.
fn takes_heredocs(node: &Node) -> bool {
    let target = match (&node.cmd[..], &node.sub) {
        ("onbuild", Some(sub)) => sub,
        _ => node,
    };
    HEREDOC_INSTRUCTIONS.contains(&target.cmd.as_str()) && !target.json
}
