//! Shell patterns in `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}` and `${V//p/r}`.
//!
//! A pattern is translated to a regular expression and matched leftmost-first, which is what
//! BuildKit does (Go's `regexp` and the `regex` crate agree on leftmost-first semantics).
//!
//! Pattern language (BuildKit's, a subset of POSIX shell patterns):
//! - `*` matches any run of characters: lazily for the shortest forms (`#`, `%`), greedily for
//!   the longest forms (`##`, `%%`) and for replacement;
//! - `?` matches one character (never a newline, like `.` in both regex engines);
//! - `\*`, `\?` and `\\` match the character itself; `\}` and `\/` are the `${...}` syntax
//!   escaping its delimiters and match `}` and `/`; any other escape is an error;
//! - everything else is literal, including `[` and `]`: BuildKit has no bracket expressions.
//!
//! Invariants:
//! - A leading U+FEFF in the pattern is ignored, as Go's `text/scanner` (which BuildKit reads
//!   patterns with) skips a byte-order mark.
//! - Suffix trimming reverses the value and the pattern (keeping `\x` pairs in order) and
//!   trims a prefix, so "shortest suffix" is found by a leftmost search.
//! - Replacing every match follows Go's `ReplaceAllString`: an empty match right after a
//!   previous match is not replaced, and the replacement is a template in which `$$` is `$`,
//!   `$0`/`${0}` is the matched text and any other `$name`/`${name}` is empty (the generated
//!   regex has no groups). Replacing the first match inserts the replacement literally.
//! - Nothing here panics: a pattern too large for the regex engine is an error.

use regex::{Regex, RegexBuilder};

use super::unicode::{is_digit, is_letter};

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("invalid escape '\\{0}'")]
    InvalidEscape(char),
    #[error("pattern ends with an escape character")]
    TrailingEscape,
    #[error("pattern too complex: {0}")]
    TooComplex(String),
}

/// Which end of the value a trim removes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrimEnd {
    Prefix,
    Suffix,
}

/// `${V#p}` / `${V##p}` (prefix) and `${V%p}` / `${V%%p}` (suffix): removes the shortest
/// (or, with `longest`, the longest) match of `pattern` from one end of `value`.
pub(super) fn trim(
    value: &str,
    pattern: &str,
    end: TrimEnd,
    longest: bool,
) -> Result<String, PatternError> {
    match end {
        TrimEnd::Prefix => trim_prefix(value, pattern, longest),
        TrimEnd::Suffix => {
            let reversed_value: String = value.chars().rev().collect();
            let trimmed = trim_prefix(&reversed_value, &reverse_pattern(pattern), longest)?;
            Ok(trimmed.chars().rev().collect())
        }
    }
}

/// `${V/p/r}` (first match only, `r` literal) and `${V//p/r}` (every match, `r` a template).
pub(super) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    every: bool,
) -> Result<String, PatternError> {
    let regex = compile(pattern, true, false)?;
    if !every {
        return Ok(match regex.find(value) {
            Some(found) => {
                let mut out = String::with_capacity(value.len() + replacement.len());
                out.push_str(&value[..found.start()]);
                out.push_str(replacement);
                out.push_str(&value[found.end()..]);
                out
            }
            None => value.to_owned(),
        });
    }

    let mut out = String::with_capacity(value.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some(found) = regex.find_at(value, search) else {
            break;
        };
        out.push_str(&value[last_end..found.start()]);
        // An empty match touching the previous match would replace the same spot twice.
        if found.end() > last_end || found.start() == 0 {
            expand_template(replacement, found.as_str(), &mut out);
        }
        last_end = found.end();
        let width = value[search..].chars().next().map_or(0, char::len_utf8);
        search = if search + width > found.end() {
            search + width
        } else if search + 1 > found.end() {
            search + 1
        } else {
            found.end()
        };
    }
    out.push_str(&value[last_end..]);
    Ok(out)
}

fn trim_prefix(value: &str, pattern: &str, longest: bool) -> Result<String, PatternError> {
    let regex = compile(pattern, longest, true)?;
    Ok(match regex.find(value) {
        Some(found) => value[found.end()..].to_owned(),
        None => value.to_owned(),
    })
}

fn compile(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, PatternError> {
    let source = to_regex_source(pattern, greedy, anchored)?;
    RegexBuilder::new(&source).build().map_err(|error| PatternError::TooComplex(error.to_string()))
}

/// The regex source equivalent to `pattern` (see the module docs for the language).
fn to_regex_source(pattern: &str, greedy: bool, anchored: bool) -> Result<String, PatternError> {
    let pattern = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let any_run = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(any_run),
            '?' => out.push('.'),
            '\\' => match chars.peek().copied() {
                // The escape belonged to the `${...}` syntax; the delimiter itself follows.
                Some('}' | '/') => {}
                Some(escaped @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push('\\');
                    out.push(escaped);
                }
                Some(other) => return Err(PatternError::InvalidEscape(other)),
                None => return Err(PatternError::TrailingEscape),
            },
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Reverses a pattern character by character, keeping each `\x` escape pair in order
/// (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let mut units: Vec<String> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let mut unit = String::from(c);
        if c == '\\'
            && let Some(escaped) = chars.next()
        {
            unit.push(escaped);
        }
        units.push(unit);
    }
    units.into_iter().rev().collect()
}

/// Appends `template` to `out` with Go's `Regexp.Expand` rules for a regex without groups.
fn expand_template(template: &str, matched: &str, out: &mut String) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_reference(rest) {
            Some((name, after)) => {
                // Only group 0 (the whole match) exists; other numbers and names are empty.
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Splits `name` or `{name}` off the text after a `$`, or `None` when it is not a reference.
fn template_reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c == '_' || is_letter(c) || is_digit(c)))
        .map_or(body.len(), |(index, _)| index);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    let after = if braced { after.strip_prefix('}')? } else { after };
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_escaped_regexes() {
        assert_eq!(to_regex_source("*", true, true).unwrap(), "^.*");
        assert_eq!(to_regex_source("*", false, false).unwrap(), ".*?");
        assert_eq!(to_regex_source("?", true, true).unwrap(), "^.");
        assert_eq!(to_regex_source(r"\*", true, true).unwrap(), r"^\*");
        assert_eq!(
            to_regex_source(r"(()[]{\}^$.\*\?|\\", true, true).unwrap(),
            r"^\(\(\)\[\]\{\}\^\$\.\*\?\|\\"
        );
        assert_eq!(to_regex_source(r"a\/b", true, false).unwrap(), "a/b");
        assert_eq!(to_regex_source("\u{feff}x", true, false).unwrap(), "x");
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert_eq!(to_regex_source("\\", true, true), Err(PatternError::TrailingEscape));
        assert_eq!(to_regex_source("\\x", true, true), Err(PatternError::InvalidEscape('x')));
        assert_eq!(to_regex_source("\\\\\\", true, true), Err(PatternError::TrailingEscape));
    }

    #[test]
    fn reversing_keeps_escape_pairs() {
        assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
        assert_eq!(reverse_pattern(r"\\\ab"), r"b\a\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("👽\\🚀🖖"), "🖖\\🚀👽");
        assert_eq!(reverse_pattern(r"\\b"), r"b\\");
    }

    #[test]
    fn trims_shortest_and_longest() {
        let t = |v, p, end, longest| trim(v, p, end, longest).unwrap();
        assert_eq!(t("xxyy", "*x*y", TrimEnd::Prefix, false), "y");
        assert_eq!(t("xxyy", "*", TrimEnd::Prefix, false), "xxyy");
        assert_eq!(t("xxyy", "*x", TrimEnd::Prefix, true), "yy");
        assert_eq!(t("xxyy", "x", TrimEnd::Suffix, false), "xxyy");
        assert_eq!(t("a.b.c", ".*", TrimEnd::Suffix, false), "a.b");
        assert_eq!(t("a.b.c", ".*", TrimEnd::Suffix, true), "a");
        assert_eq!(t("a***yy*", r"\**\*", TrimEnd::Suffix, true), "a");
        assert_eq!(t("안녕하세요", "*하", TrimEnd::Prefix, false), "세요");
    }

    #[test]
    fn replaces_first_literally_and_all_as_template() {
        assert_eq!(replace("banana", "a", "<$0>", false).unwrap(), "b<$0>nana");
        assert_eq!(replace("banana", "a", "<$0>", true).unwrap(), "b<a>n<a>n<a>");
        assert_eq!(replace("banana", "a", "$$", true).unwrap(), "b$n$n$");
        assert_eq!(replace("banana", "a", "[$x]", true).unwrap(), "b[]n[]n[]");
        assert_eq!(replace("banana", "a", "${0}$", true).unwrap(), "ba$na$na$");
        assert_eq!(replace("banana", "a", "$00", true).unwrap(), "bnn");
        assert_eq!(replace("banana", "a", "${0", true).unwrap(), "b${0n${0n${0");
    }

    #[test]
    fn empty_matches_follow_go() {
        assert_eq!(replace("xxyy", "", "ww", false).unwrap(), "wwxxyy");
        assert_eq!(replace("xxyy", "", "-", true).unwrap(), "-x-x-y-y-");
        // `*` matches everything, and the empty match at the end is not replaced again.
        assert_eq!(replace("ab", "*", "R", true).unwrap(), "R");
        assert_eq!(replace("", "*", "R", true).unwrap(), "R");
        assert_eq!(replace("한국", "", ".", true).unwrap(), ".한.국.");
    }
}
