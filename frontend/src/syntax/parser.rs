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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{ArgumentError, Heredoc};

    fn spans(tree: &SyntaxTree) -> Vec<(usize, usize)> {
        tree.nodes.iter().map(|n| (n.span.start_line, n.span.end_line)).collect()
    }

    fn error_lines(text: &str) -> (String, usize, usize) {
        let err = parse(text).unwrap_err();
        (err.to_string(), err.span().start_line, err.span().end_line)
    }

    #[test]
    fn bom_crlf_and_case_insensitive_keywords() {
        let tree = parse("\u{feff}from alpine\r\nRun echo \\\r\n  hi\r\n").unwrap();
        assert_eq!(tree.nodes[0].cmd, "from");
        assert_eq!(tree.nodes[1].cmd, "run");
        assert_eq!(tree.nodes[1].args, ["echo   hi"]);
        assert_eq!(tree.nodes[1].original, "Run echo   hi");
        assert_eq!(spans(&tree), [(1, 1), (2, 3)]);
    }

    #[test]
    fn directives_shape_the_parse() {
        let tree = parse(
            "# Syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM a\nRUN a `\n b \\\n",
        )
        .unwrap();
        assert_eq!(tree.directives.escape, '`');
        assert_eq!(tree.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(tree.directives.check.as_deref(), Some("skip=all"));
        assert_eq!(tree.nodes[1].args, ["a  b \\"]);

        // After an unknown directive or a blank line, `# escape=` is a plain comment.
        for text in ["# foo=bar\n# escape=`\nFROM a\n", "\n# escape=`\nFROM a\n"] {
            assert_eq!(parse(text).unwrap().directives.escape, '\\', "{text:?}");
        }
        assert_eq!(
            error_lines("# escape=`\n#ESCAPE=\\\nFROM a\n"),
            ("only one escape parser directive can be used".into(), 2, 2)
        );
        assert_eq!(
            error_lines("# escape=x\nFROM a\n"),
            ("invalid escape token 'x' does not match ` or \\".into(), 1, 1)
        );
    }

    #[test]
    fn comments_and_blank_lines_inside_continuations() {
        let text =
            "FROM a\nRUN a \\\n# comment\n  b \\\n\n  c\nRUN d \\\n  # indented comment\n  e\n";
        let tree = parse(text).unwrap();
        assert_eq!(tree.nodes[1].args, ["a   b   c"]);
        assert_eq!(tree.nodes[2].args, ["d   e"]);
        assert_eq!(spans(&tree), [(1, 1), (2, 6), (7, 9)]);
        assert_eq!(
            tree.warnings,
            [Warning {
                message: "Empty continuation line found in: RUN a   b   c".into(),
                span: Span::line(6)
            }]
        );
    }

    #[test]
    fn continuation_may_run_into_the_end() {
        let tree = parse("FROM a\nRUN b \\").unwrap();
        assert_eq!(tree.nodes[1].args, ["b"]);
        assert_eq!(spans(&tree), [(1, 1), (2, 2)]);
        let tree = parse("FROM a\n\\\n").unwrap();
        assert_eq!(
            (tree.nodes[1].cmd.as_str(), tree.nodes[1].args.as_slice()),
            ("", &[String::new()][..])
        );
    }

    #[test]
    fn heredocs_collect_bodies_and_extend_the_span() {
        let text = "FROM a\nRUN <<EOF 3<<-'END' cat\necho $x\nEOF\n\tkept\n\tEND\nCOPY [\"<<EOF\", \"/x\"]\n";
        let tree = parse(text).unwrap();
        assert_eq!(
            tree.nodes[1].heredocs,
            [
                Heredoc {
                    name: "EOF".into(),
                    content: "echo $x\n".into(),
                    expand: true,
                    chomp: false,
                    fd: 0
                },
                Heredoc {
                    name: "END".into(),
                    content: "\tkept\n".into(),
                    expand: false,
                    chomp: true,
                    fd: 3
                },
            ]
        );
        assert_eq!(tree.nodes[1].heredocs[1].body(), "kept\n");
        assert!(tree.nodes[2].json);
        assert!(tree.nodes[2].heredocs.is_empty());
        assert_eq!(spans(&tree), [(1, 1), (2, 6), (7, 7)]);
    }

    #[test]
    fn heredoc_bodies_keep_crlf_and_onbuild_keeps_its_bodies() {
        let tree = parse("FROM a\r\nONBUILD RUN <<EOF\r\nx\r\nEOF\r\n").unwrap();
        assert_eq!(tree.nodes[1].heredocs[0].content, "x\r\n");
        assert_eq!(tree.nodes[1].sub.as_ref().unwrap().cmd, "run");
        assert_eq!(spans(&tree), [(1, 1), (2, 4)]);
    }

    #[test]
    fn unterminated_heredoc_points_at_the_rest_of_the_file() {
        assert_eq!(
            error_lines("FROM a\nRUN <<EOF\necho\nEOF2\n"),
            ("unterminated heredoc".into(), 2, 4)
        );
        assert_eq!(error_lines("FROM a\nRUN <<EOF"), ("unterminated heredoc".into(), 2, 2));
    }

    #[test]
    fn files_without_instructions() {
        assert_eq!(error_lines(""), ("file with no instructions".into(), 1, 1));
        assert_eq!(error_lines("# a\n\n# b\n"), ("file with no instructions".into(), 3, 3));
        assert_eq!(error_lines("\u{feff}"), ("file with no instructions".into(), 1, 1));
    }

    #[test]
    fn argument_errors_span_the_instruction() {
        let err = parse("FROM a\nENV a=1 \\\n  b\n").unwrap_err();
        assert_eq!(
            err,
            SyntaxError::Arguments {
                error: ArgumentError::MissingEquals { word: "b".into() },
                span: Span::new(2, 3)
            }
        );
        assert_eq!(
            error_lines("FROM a\nCMD [ \"echo\", [ \"nested\" ] ]\n").0,
            "when using json array syntax, arrays must be comprised of strings only"
        );
    }

    #[test]
    fn over_long_lines_and_invalid_utf8_are_errors() {
        let text = format!("FROM a\nLABEL a={}\n", "x".repeat(super::super::lines::MAX_LINE_LEN));
        assert_eq!(
            error_lines(&text),
            ("dockerfile line greater than max allowed size of 65535".into(), 2, 2)
        );
        let err = parse_bytes(b"FROM a\nRUN \xff\n").unwrap_err();
        assert_eq!(
            (err.to_string(), err.span()),
            ("dockerfile is not valid utf-8".into(), Span::line(2))
        );
    }

    #[test]
    fn unknown_keywords_and_nested_onbuild_are_left_to_later_stages() {
        let tree =
            parse("FROM a\nFNTRYPOINT [\"x\"]\nONBUILD ONBUILD RUN x\nONBUILD FROM b\n").unwrap();
        assert_eq!(tree.nodes[1].args, [""]);
        assert_eq!(tree.nodes[2].sub.as_ref().unwrap().sub.as_ref().unwrap().args, ["x"]);
        assert_eq!(tree.nodes[3].sub.as_ref().unwrap().cmd, "from");
    }
}
