//! Parser directives: `# syntax=...`, `# escape=...`, `# check=...` at the top of the file.
//!
//! Rules (BuildKit's): directives are comment lines of the form `# name = value` and count
//! only before anything else. The first line that is not such a comment — an instruction, a
//! blank line, a plain comment, or a directive with an unknown name — ends the directive
//! section for good; the unknown directive itself is then just a comment. Names are
//! case-insensitive; each may appear once. The value is the rest of the line with blanks
//! around it trimmed.

/// The directive names BuildKit knows.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// One directive read from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
}

/// Why a directive line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveError {
    Duplicate(String),
}

/// Reads directives line by line until the directive section ends.
#[derive(Debug, Default)]
pub struct DirectiveReader {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveReader {
    /// Looks at one line (ending and leading blanks removed). Returns the directive it holds,
    /// if the directive section is still open and the line is a known directive.
    pub fn read(&mut self, line: &str) -> Result<Option<Directive>, DirectiveError> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = line.strip_prefix('#').and_then(|rest| split_directive(rest))
        else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(DirectiveError::Duplicate(name));
        }
        self.seen.push(name.clone());
        Ok(Some(Directive { name, value: value.to_string() }))
    }
}

/// Blanks as BuildKit's directive pattern sees them (`\s`: no vertical tab).
fn is_pattern_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Splits `  name = value  ` into its name (a letter then letters/digits) and its non-empty
/// value; `None` when the text is not of that shape.
fn split_directive(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let name_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = text.split_at(name_len);
    let after_equals = rest.trim_start_matches(is_pattern_blank).strip_prefix('=')?;
    // The value holds at least one character and no blanks around it; when only blanks follow
    // `=`, the last of them is the value (the pattern's lazy match leaves exactly that one).
    let value = after_equals.trim_matches(is_pattern_blank);
    let value = if value.is_empty() {
        let last = after_equals.chars().next_back()?;
        &after_equals[after_equals.len() - last.len_utf8()..]
    } else {
        value
    };
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(lines: &[&str]) -> Result<Vec<Directive>, DirectiveError> {
        let mut reader = DirectiveReader::default();
        let mut found = Vec::new();
        for line in lines {
            found.extend(reader.read(line)?);
        }
        Ok(found)
    }

    fn directive(name: &str, value: &str) -> Directive {
        Directive { name: name.into(), value: value.into() }
    }

    #[test]
    fn names_are_case_insensitive_and_values_trimmed() {
        assert_eq!(
            read_all(&["# EScape = ` ", "#syntax=docker/dockerfile:1 // x"]),
            Ok(vec![directive("escape", "`"), directive("syntax", "docker/dockerfile:1 // x")])
        );
    }

    #[test]
    fn the_section_ends_at_the_first_other_line() {
        assert_eq!(read_all(&["# key = FOO bar", "# escape=`"]), Ok(vec![]));
        assert_eq!(read_all(&["", "# escape=`"]), Ok(vec![]));
        assert_eq!(read_all(&["# just a comment", "# escape=`"]), Ok(vec![]));
        assert_eq!(read_all(&["FROM a", "# escape=`"]), Ok(vec![]));
        assert_eq!(read_all(&["# escape="]), Ok(vec![]));
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(
            read_all(&["# check=skip=all", "# CHECK=error=true"]),
            Err(DirectiveError::Duplicate("check".into()))
        );
    }

    #[test]
    fn a_value_of_blanks_keeps_the_last_one() {
        assert_eq!(split_directive("escape= \t"), Some(("escape", "\t")));
        assert_eq!(split_directive("1a=b"), None);
        assert_eq!(split_directive("a1 =b"), Some(("a1", "b")));
    }
}
