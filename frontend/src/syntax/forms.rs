//! Per-instruction argument forms: how the text after the keyword and flags becomes `args`.
//!
//! BuildKit's dispatch table, by lower-cased keyword:
//!
//! | keywords | form |
//! |---|---|
//! | `run`, `cmd`, `entrypoint`, `shell` | JSON array, else the whole text as one argument |
//! | `add`, `copy`, `volume` | JSON array, else split at blanks |
//! | `from`, `expose` | split at blanks |
//! | `user`, `workdir`, `maintainer`, `stopsignal` | the whole text as one argument |
//! | `env`, `label` | `name=value` words, or legacy `name value`: triples name, value, separator |
//! | `arg` | words (quotes kept) |
//! | `healthcheck` | first word, then the rest as for `cmd` |
//! | `onbuild` | the rest is an instruction of its own, in `sub` |
//! | anything else | no arguments but one empty string (errors come later, at dispatch) |
//!
//! Invariants: an empty argument text yields no arguments (except for unknown keywords);
//! arguments keep quotes and escapes, except JSON strings, which are decoded; ONBUILD nests
//! at most [`MAX_ONBUILD_NESTING`] levels.

use super::error::ArgumentError;
use super::flags::{is_byte_blank, is_separator, split_command};
use super::json_array::{JsonArray, parse_json_array};
use super::node::Node;
use crate::Span;

/// How many ONBUILD keywords may precede an instruction. BuildKit's parser has no limit, but
/// its next stage refuses `ONBUILD ONBUILD`; the limit bounds recursion here and in every
/// consumer of [`Node::sub`].
pub const MAX_ONBUILD_NESTING: usize = 16;

/// The arguments of an instruction as its form splits them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Arguments {
    args: Vec<String>,
    json: bool,
    sub: Option<Box<Node>>,
}

impl Arguments {
    fn plain(args: Vec<String>) -> Self {
        Arguments { args, json: false, sub: None }
    }
}

/// Builds the node of one logical line (no lines, no heredocs yet).
pub fn node_from_line(line: &str, escape: char) -> Result<Node, ArgumentError> {
    node_at_depth(line, escape, 0)
}

/// [`node_from_line`] for a line under `depth` ONBUILD keywords.
fn node_at_depth(line: &str, escape: char, depth: usize) -> Result<Node, ArgumentError> {
    let parts = split_command(line, escape);
    let cmd = go_lowercase(parts.keyword);
    let rest = parts.args;
    let arguments = match cmd.as_str() {
        "run" | "cmd" | "entrypoint" | "shell" => maybe_json(rest)?,
        "add" | "copy" | "volume" => maybe_json_list(rest)?,
        "from" | "expose" => Arguments::plain(split_at_blanks(rest)),
        "user" | "workdir" | "maintainer" | "stopsignal" => Arguments::plain(whole(rest)),
        "env" => name_values(rest, "env", escape)?,
        "label" => name_values(rest, "label", escape)?,
        "arg" => Arguments::plain(words(rest, escape)),
        "healthcheck" => health_config(rest)?,
        "onbuild" => sub_command(rest, escape, depth)?,
        _ => Arguments::plain(vec![String::new()]),
    };
    Ok(Node {
        cmd,
        flags: parts.flags,
        args: arguments.args,
        sub: arguments.sub,
        json: arguments.json,
        original: line.to_string(),
        heredocs: Vec::new(),
        span: Span::default(),
    })
}

/// Lower-cases as Go's `strings.ToLower` does (one character for one character).
pub fn go_lowercase(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            _ => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

fn whole(rest: &str) -> Vec<String> {
    if rest.is_empty() { Vec::new() } else { vec![rest.to_string()] }
}

fn split_at_blanks(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_separator).filter(|word| !word.is_empty()).map(str::to_string).collect()
}

/// JSON array of strings, or the whole text as one argument.
fn maybe_json(rest: &str) -> Result<Arguments, ArgumentError> {
    if rest.is_empty() {
        return Ok(Arguments::default());
    }
    match parse_json_array(rest) {
        JsonArray::Strings(args) => Ok(Arguments { args, json: true, sub: None }),
        JsonArray::NotStrings => Err(ArgumentError::NotStringArray),
        JsonArray::NotJson => Ok(Arguments::plain(whole(rest))),
    }
}

/// JSON array of strings, or the text split at blanks.
fn maybe_json_list(rest: &str) -> Result<Arguments, ArgumentError> {
    match parse_json_array(rest) {
        JsonArray::Strings(args) => Ok(Arguments { args, json: true, sub: None }),
        JsonArray::NotStrings => Err(ArgumentError::NotStringArray),
        JsonArray::NotJson => Ok(Arguments::plain(split_at_blanks(rest))),
    }
}

/// `HEALTHCHECK NONE` / `HEALTHCHECK CMD ...`: the first word, then a command. BuildKit finds
/// the word's end byte by byte: only ASCII blanks count (see [`super::flags`]).
fn health_config(rest: &str) -> Result<Arguments, ArgumentError> {
    let first_end = rest.find(is_byte_blank).unwrap_or(rest.len());
    if first_end == 0 {
        return Ok(Arguments::default());
    }
    let (kind, command) = rest.split_at(first_end);
    let mut arguments = maybe_json(command.trim_start_matches(is_byte_blank))?;
    arguments.args.insert(0, kind.to_string());
    Ok(arguments)
}

/// `ONBUILD INSTRUCTION ...`: the inner instruction, parsed as a line of its own.
fn sub_command(rest: &str, escape: char, depth: usize) -> Result<Arguments, ArgumentError> {
    if rest.is_empty() {
        return Ok(Arguments::default());
    }
    if depth >= MAX_ONBUILD_NESTING {
        return Err(ArgumentError::OnbuildTooDeep { limit: MAX_ONBUILD_NESTING });
    }
    let sub = node_at_depth(rest, escape, depth + 1)?;
    Ok(Arguments { args: Vec::new(), json: false, sub: Some(Box::new(sub)) })
}

/// `ENV`/`LABEL`: `name=value ...`, or the legacy `name value` when the first word has no
/// `=`. Each pair becomes three arguments: name, value, and the separator (`=` or empty).
fn name_values(
    rest: &str,
    instruction: &'static str,
    escape: char,
) -> Result<Arguments, ArgumentError> {
    let words = words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Arguments::default());
    };
    if !first.contains('=') {
        let Some(split) = rest.find(is_separator) else {
            return Err(ArgumentError::MissingValue { instruction });
        };
        let name = &rest[..split];
        let value = rest[split..].trim_start_matches(is_separator);
        return Ok(Arguments::plain(vec![name.to_string(), value.to_string(), String::new()]));
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(ArgumentError::MissingEquals { word });
        };
        args.extend([name.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Arguments::plain(args))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quoted(char),
}

/// Splits at whitespace outside quotes; quotes and escapes stay in the words. The escape
/// character keeps the next character in the word (inside `'...'` it is literal); an escape
/// at the very end is dropped.
pub fn words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while i < chars.len() {
        let mut c = chars[i];
        let is_last = i + 1 == chars.len();
        i += 1;
        if phase == Phase::Spaces {
            if c.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        // The block above leaves the phase at Word or Quoted.
        match phase {
            Phase::Spaces | Phase::Word => {
                if c.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quoted(c);
                    blank_ok = true;
                }
                if c == escape {
                    if is_last {
                        continue;
                    }
                    word.push(c);
                    c = chars[i];
                    i += 1;
                }
                word.push(c);
            }
            Phase::Quoted(quote) => {
                if c == quote {
                    phase = Phase::Word;
                }
                if c == escape && quote != '\'' {
                    if is_last {
                        phase = Phase::Word;
                        continue;
                    }
                    word.push(c);
                    c = chars[i];
                    i += 1;
                }
                word.push(c);
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(line: &str) -> Node {
        node_from_line(line, '\\').unwrap()
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let cases: [(&str, &[&str]); 8] = [
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            (r#"foo bar "abc xyz""#, &["foo", "bar", r#""abc xyz""#]),
            (r#"föo bàr "âbc xÿz""#, &["föo", "bàr", r#""âbc xÿz""#]),
            (r#"a="" b='x\' c="\"y""#, &[r#"a="""#, r#"b='x\'"#, r#"c="\"y""#]),
            ("a\\", &["a"]),
        ];
        for (input, expected) in cases {
            assert_eq!(words(input, '\\'), expected, "{input}");
        }
    }

    #[test]
    fn forms_by_keyword() {
        assert_eq!(node("RUN [\"a\", \"b\"]").args, ["a", "b"]);
        assert!(node("RUN [\"a\", \"b\"]").json);
        assert_eq!(node("RUN [\"a\", ").args, ["[\"a\","]);
        assert_eq!(node("COPY a  b\tc").args, ["a", "b", "c"]);
        assert_eq!(node("WORKDIR /a b").args, ["/a b"]);
        assert_eq!(node("ENV a=1 b=\"2 3\"").args, ["a", "1", "=", "b", "\"2 3\"", "="]);
        assert_eq!(node("ENV a  1 2").args, ["a", "1 2", ""]);
        assert_eq!(node("ARG a b=2").args, ["a", "b=2"]);
        assert_eq!(node("HEALTHCHECK CMD [\"x\"]").args, ["CMD", "x"]);
        assert_eq!(node("HEALTHCHECK NONE").args, ["NONE"]);
        assert_eq!(node("HEALTHCHECK CMD \u{a0}x").args, ["CMD", "\u{a0}x"]);
        assert_eq!(node("Bogus x y").args, [""]);
        assert_eq!(node("Bogus").cmd, "bogus");
        assert_eq!(node("CMD").args, Vec::<String>::new());
        let onbuild = node("ONBUILD RUN --mount=a x");
        assert_eq!(onbuild.args, Vec::<String>::new());
        let sub = onbuild.sub.unwrap();
        assert_eq!(
            (sub.cmd.as_str(), sub.flags.as_slice()),
            ("run", &["--mount=a".to_string()][..])
        );
        assert_eq!(sub.original, "RUN --mount=a x");
    }

    #[test]
    fn argument_errors() {
        assert_eq!(
            node_from_line("ENV PATH", '\\'),
            Err(ArgumentError::MissingValue { instruction: "env" })
        );
        assert_eq!(
            node_from_line("LABEL a=b c", '\\'),
            Err(ArgumentError::MissingEquals { word: "c".into() })
        );
        assert_eq!(node_from_line("CMD [1]", '\\'), Err(ArgumentError::NotStringArray));
        assert_eq!(node_from_line("ONBUILD COPY [[]]", '\\'), Err(ArgumentError::NotStringArray));
        let nested = |depth: usize| format!("{}RUN x", "ONBUILD ".repeat(depth));
        assert!(node_from_line(&nested(MAX_ONBUILD_NESTING), '\\').is_ok());
        assert_eq!(
            node_from_line(&nested(MAX_ONBUILD_NESTING + 1), '\\'),
            Err(ArgumentError::OnbuildTooDeep { limit: MAX_ONBUILD_NESTING })
        );
        assert!(node_from_line(&"ONBUILD ".repeat(8000), '\\').is_err());
    }
}
