//! One `.dockerignore` pattern: how a line becomes a pattern, and how a pattern matches a path.
//!
//! A line goes through the two normalisations Docker applies, in order (BuildKit reads the file
//! with `ignorefile.ReadAll`, then fsutil compiles the result with `patternmatcher.New`):
//!
//! 1. trim whitespace; a leading `!` marks an exception and is trimmed again; the rest is
//!    cleaned like Go's `filepath.Clean` and one leading `/` is dropped, so `/a//b/../c/` is `a/c`;
//! 2. the result (with its `!`) is trimmed and cleaned once more — which is why `foo /` means
//!    `foo` and a lone `!/` is an error — and then the `!` is split off.
//!
//! Invariants of a [`Pattern`]: its [`text`](Pattern::text) passed Go's `filepath.Match` syntax
//! check and compiled; it starts with `!` only when the line had two. Two patterns are equal
//! (and hash alike) when their canonical text is, whatever lines they came from.
//!
//! Like Docker, a pattern matches in one of four ways, decided by where its wildcards are:
//! none at all — the path equals the text; only a final `**` — the path starts with the text
//! before it (`foo**` matches `foobar`); only a leading `**` — the path ends with the text after
//! it (so `**foo` matches `xfoo`, while `**foo*` does not); otherwise the wildcard matcher in
//! [`super::glob`].

use super::glob::{self, PatternError, Token};
use std::fmt;

#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exception: bool,
    line: usize,
    /// Derived from `text`, so left out of equality.
    matcher: Matcher,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        (self.exception, &self.text) == (other.exception, &other.text)
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.exception, &self.text).hash(state);
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    /// The text before the final `**`.
    Prefix(String),
    /// The text after the leading `**`.
    Suffix(String),
    Glob(Vec<Token>),
}

/// Why a line is not a valid pattern (the caller adds the line number).
pub(super) enum LineError {
    EmptyException,
    Invalid(PatternError),
}

impl Pattern {
    /// The cleaned pattern, without its `!`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` pattern, which re-includes what it matches.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// The line of the file the pattern came from, counting from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether `path` itself (not a parent of it) matches this pattern.
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix(head) => path.starts_with(head.as_str()),
            Matcher::Suffix(tail) => {
                path.ends_with(tail.as_str()) || tail.strip_prefix('/') == Some(path)
            }
            Matcher::Glob(tokens) => glob::matches(tokens, path),
        }
    }

    /// Parses one line that is not a comment; `None` when it holds no pattern.
    pub(super) fn from_line(raw: &str, line: usize) -> Result<Option<Pattern>, LineError> {
        let Some(spec) = read_all_form(raw) else { return Ok(None) };
        // patternmatcher.New: trim and clean again, then split off the `!`.
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let spec = clean(spec);
        let (exception, text) = match spec.strip_prefix('!') {
            Some("") => return Err(LineError::EmptyException),
            Some(text) => (true, text),
            None => (false, spec.as_str()),
        };
        glob::check_match_syntax(text).map_err(LineError::Invalid)?;
        let matcher = Matcher::for_text(text).map_err(LineError::Invalid)?;
        Ok(Some(Pattern { text: text.to_string(), exception, line, matcher }))
    }
}

/// `ignorefile.ReadAll`'s form of a line (comments already dropped): trimmed, `!` split off and
/// trimmed again, cleaned, one leading `/` dropped, `!` put back. `None` for a blank line.
fn read_all_form(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (bang, rest) = match trimmed.strip_prefix('!') {
        Some(rest) => ("!", rest.trim()),
        None => ("", trimmed),
    };
    if rest.is_empty() {
        return Some(bang.to_string());
    }
    let cleaned = clean(rest);
    let relative = match cleaned.strip_prefix('/') {
        Some(relative) if !relative.is_empty() => relative,
        _ => &cleaned,
    };
    Some(format!("{bang}{relative}"))
}

impl Matcher {
    fn for_text(text: &str) -> Result<Self, PatternError> {
        let wildcard = |c| matches!(c, '*' | '?' | '\\' | '[' | ']');
        if !text.contains(wildcard) {
            return Ok(Matcher::Exact);
        }
        if let Some(head) = text.strip_suffix("**")
            && !head.is_empty()
            && !head.contains(wildcard)
        {
            return Ok(Matcher::Prefix(head.to_string()));
        }
        if let Some(tail) = text.strip_prefix("**")
            && !tail.contains(wildcard)
        {
            return Ok(Matcher::Suffix(tail.to_string()));
        }
        glob::tokenize(text).map(Matcher::Glob)
    }
}

/// Go's `filepath.Clean` for `/`-separated paths: collapse repeated `/`, drop `.` elements and
/// trailing `/`, resolve `name/..`, drop `..` right after a leading `/`; `""` becomes `.`.
pub(super) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The canonical form: `!` for an exception, then the cleaned text.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.exception { "!" } else { "" };
        write!(f, "{bang}{}", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn clean_follows_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/../b", "../../b"),
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/a/b/../../..", "/"),
            ("!../x", "!../x"),
            ("!/", "!"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }
}
