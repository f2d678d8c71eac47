//! Heredocs: finding `[fd]<<[-]WORD` markers on an instruction line and reading the bodies.
//!
//! Rules (BuildKit's):
//! - only RUN, COPY and ADD (also under ONBUILD) in their plain form take heredocs; the JSON
//!   form takes `<<` literally;
//! - the line is cut into words by BuildKit's shell lexer ([`super::heredoc_words`]) with
//!   quotes and escapes kept; if the line cannot be cut (an unbalanced quote), it has no
//!   heredoc;
//! - a word `[digits]<<[-][blanks]WORD` with no further `<` in it is a marker; the digits are
//!   the file descriptor, `-` asks for leading tabs to be stripped (`chomp`), and WORD must be
//!   a single word once its quotes are removed; any quoting in WORD turns expansion off;
//! - bodies follow the instruction line in marker order, each up to a line equal to its WORD
//!   (line ending removed; leading tabs removed first when chomping). The body keeps its
//!   lines byte for byte, endings included: tab stripping is applied later through
//!   [`Heredoc::body`].
//!
//! Invariant: a returned marker has a non-empty name.

use super::heredoc_words::{LexOptions, split_words};
use super::lines::{PhysicalLines, trim_newline};
use super::node::Heredoc;

/// Why a marker's word could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerError {
    pub word: String,
    pub reason: String,
}

/// The heredoc markers of an instruction line, in order, with empty contents.
pub fn markers(line: &str) -> Result<Vec<Heredoc>, MarkerError> {
    let raw = LexOptions { raw_quotes: true, raw_escapes: true };
    let Ok(words) = split_words(line, raw) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for word in &words {
        if let Some(heredoc) = marker(word)? {
            found.push(heredoc);
        }
    }
    Ok(found)
}

/// Reads one word as a heredoc marker.
fn marker(word: &str) -> Result<Option<Heredoc>, MarkerError> {
    let digits_len = word.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, after) = word.split_at(digits_len);
    let Some(after) = after.strip_prefix("<<") else { return Ok(None) };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, after),
    };
    let rest = after.trim_start_matches([' ', '\t', '\n', '\x0c', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }

    let failed = |reason: String| MarkerError { word: rest.to_string(), reason };
    let cooked = LexOptions { raw_quotes: false, raw_escapes: false };
    let names = split_words(rest, cooked).map_err(failed)?;
    let [name] = names.as_slice() else { return Ok(None) };
    let quoted = LexOptions { raw_quotes: true, raw_escapes: false };
    let raw_names = split_words(rest, quoted).map_err(failed)?;
    let [raw_name] = raw_names.as_slice() else {
        return Err(failed("internal lexing of heredoc produced inconsistent results".into()));
    };

    let quote_count = |text: &str| text.chars().filter(|c| matches!(c, '\'' | '"')).count();
    // Out-of-range descriptors saturate, as BuildKit's unsigned parse does.
    let fd = if digits.is_empty() { 0 } else { digits.parse::<u32>().unwrap_or(u32::MAX) };
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quote_count(name) == quote_count(raw_name),
        chomp,
        fd,
    }))
}

/// Reads the body of `heredoc` from `lines` up to its terminator line (consumed, not kept).
/// Returns false when the input ended first.
pub fn read_body(heredoc: &mut Heredoc, lines: &mut PhysicalLines<'_>) -> bool {
    while let Some(line) = lines.next_line() {
        let mut candidate = trim_newline(line);
        if heredoc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == heredoc.name {
            return true;
        }
        heredoc.content.push_str(line);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heredoc(name: &str, expand: bool, chomp: bool, fd: u32) -> Heredoc {
        Heredoc { name: name.into(), content: String::new(), expand, chomp, fd }
    }

    #[test]
    fn markers_on_a_line() {
        assert_eq!(
            markers("RUN <<EOF 3<<-'END' cat"),
            Ok(vec![heredoc("EOF", true, false, 0), heredoc("END", false, true, 3)])
        );
        assert_eq!(markers(r#"COPY << "a b" /x"#), Ok(vec![heredoc("a b", false, false, 0)]));
        assert_eq!(markers(r#"RUN <<E"O"F"#), Ok(vec![heredoc("EOF", false, false, 0)]));
        assert_eq!(markers("RUN 99999999999<<X"), Ok(vec![heredoc("X", true, false, u32::MAX)]));
    }

    #[test]
    fn words_that_are_not_markers() {
        for line in [
            "RUN echo '<<EOF'",
            "RUN cat<<EOF",
            "RUN <<",
            "RUN <<EOF<<END",
            "RUN <<EOF 'unbalanced",
            "RUN <<${A:-x}",
        ] {
            assert_eq!(markers(line), Ok(vec![]), "{line}");
        }
    }

    #[test]
    fn bodies_end_at_their_terminator() {
        let mut lines = PhysicalLines::new("a\r\n\tb\n\tEOF\nnext\n");
        let mut doc = heredoc("EOF", true, true, 0);
        assert!(read_body(&mut doc, &mut lines));
        assert_eq!(doc.content, "a\r\n\tb\n");
        assert_eq!(lines.next_line(), Some("next\n"));

        let mut lines = PhysicalLines::new("a\n\tEOF\n");
        let mut doc = heredoc("EOF", true, false, 0);
        assert!(!read_body(&mut doc, &mut lines));
        assert_eq!(doc.content, "a\n\tEOF\n");
    }
}
