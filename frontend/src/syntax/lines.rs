//! Physical lines and the rules that join them into logical lines.
//!
//! [`PhysicalLines`] hands out the input's lines one at a time, each with its line ending
//! (`\n`, and the `\r` before it when the file uses CRLF), and counts them: after `next`
//! returned a line, [`PhysicalLines::count`] is that line's 1-based number. A line of
//! [`MAX_LINE_LEN`] bytes or more (ending excluded) stops the reader as BuildKit's line scanner
//! stops; [`PhysicalLines::too_long`] then names the line.
//!
//! The helpers below decide what a line means for logical-line assembly: comments (`#` as
//! the first non-blank character), blank lines, and the continuation rule (the escape
//! character as the last non-blank character, unless it is itself escaped).

/// Lines of this many bytes or more are refused, as BuildKit's scanner refuses them.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// The UTF-8 byte-order mark, dropped from the start of the first line.
const BOM: char = '\u{feff}';

/// A cursor over the input's physical lines.
pub struct PhysicalLines<'a> {
    rest: &'a str,
    count: usize,
    too_long: Option<usize>,
}

impl<'a> PhysicalLines<'a> {
    pub fn new(text: &'a str) -> Self {
        PhysicalLines { rest: text, count: 0, too_long: None }
    }

    /// The next line with its ending; `None` at end of input or after an over-long line.
    pub fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() || self.too_long.is_some() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        if trim_newline(line).len() >= MAX_LINE_LEN {
            self.too_long = Some(self.count + 1);
            return None;
        }
        self.rest = rest;
        self.count += 1;
        if self.count == 1 {
            return Some(line.strip_prefix(BOM).unwrap_or(line));
        }
        Some(line)
    }

    /// How many lines were handed out: the number of the last one.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The number of the line that was too long to read, if reading stopped on one.
    pub fn too_long(&self) -> Option<usize> {
        self.too_long
    }
}

/// The line without its ending: every trailing `\r` and `\n` removed.
pub fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Whether the first non-blank character of the line is `#`.
pub fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Whether the line holds nothing but blanks.
pub fn is_blank(line: &str) -> bool {
    trim_newline(line).trim_start().is_empty()
}

/// Removes a line-continuation escape from the end of `line` (already without its ending).
///
/// The escape character continues the line when only spaces and tabs follow it and it is
/// not preceded by another escape character. The escape and the blanks after it are removed;
/// everything before it is kept. Returns the remaining text and whether the logical line
/// ends here.
pub fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() {
        return ("", false);
    }
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_endings_and_lose_the_bom() {
        let mut lines = PhysicalLines::new("\u{feff}FROM a\r\nRUN b\nCMD c");
        assert_eq!(lines.next_line(), Some("FROM a\r\n"));
        assert_eq!(lines.count(), 1);
        assert_eq!(lines.next_line(), Some("RUN b\n"));
        assert_eq!(lines.next_line(), Some("CMD c"));
        assert_eq!(lines.count(), 3);
        assert_eq!(lines.next_line(), None);
        assert_eq!(lines.too_long(), None);
    }

    #[test]
    fn an_over_long_line_stops_the_reader() {
        let text = format!("FROM a\n{}\nRUN b\n", "x".repeat(MAX_LINE_LEN));
        let mut lines = PhysicalLines::new(&text);
        assert_eq!(lines.next_line(), Some("FROM a\n"));
        assert_eq!(lines.next_line(), None);
        assert_eq!(lines.too_long(), Some(2));
        assert_eq!(lines.count(), 1);

        let text = format!("{}\n", "x".repeat(MAX_LINE_LEN - 1));
        assert!(PhysicalLines::new(&text).next_line().is_some());
    }

    #[test]
    fn continuation_needs_an_unescaped_escape_at_the_end() {
        assert_eq!(trim_continuation("RUN a \\", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a\\  \t", '\\'), ("RUN a", false));
        assert_eq!(trim_continuation("\\ ", '\\'), ("", false));
        assert_eq!(trim_continuation("RUN a \\\\", '\\'), ("RUN a \\\\", true));
        assert_eq!(trim_continuation("RUN a `", '`'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a \\", '`'), ("RUN a \\", true));
        assert_eq!(trim_continuation("RUN a", '\\'), ("RUN a", true));
    }

    #[test]
    fn comments_and_blank_lines() {
        assert!(is_comment("  # x"));
        assert!(!is_comment("RUN # x"));
        assert!(is_blank(" \t\r\n"));
        assert!(!is_blank(" x\n"));
    }
}
