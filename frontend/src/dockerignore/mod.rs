//! `.dockerignore`: which files of a build context are left out, with BuildKit's exact rules.
//!
//! BuildKit reads the file with moby's `ignorefile.ReadAll` and the client that sends the
//! context applies the patterns with fsutil's filtering walker (`patternmatcher`'s
//! `MatchesUsingParentResults`). This module reproduces both:
//!
//! - **File** ([`IgnoreFile::parse`]): one pattern per line (`\n`, with a `\r` before it
//!   dropped); a UTF-8 BOM at the start is dropped; a line whose first character is `#` is a
//!   comment (`  # x` is the pattern `# x`); blank lines are skipped; a line longer than
//!   65535 bytes is an error, as it is for Go's line scanner. `pattern.rs` tells how a line is
//!   trimmed and cleaned (patterns are always relative to the context root: `/a` is `a`).
//! - **Patterns** ([`Pattern`]): `*`, `?`, `[...]`, `\` escapes and `**`, with the corner cases
//!   of Docker's translation into regular expressions (`glob.rs` lists them). A pattern matches
//!   a path from the context root (`foo` does not match `a/foo`; `**/foo` does).
//! - **Decision** ([`IgnoreFile::is_excluded`]): the last pattern that matches a path *or one
//!   of its parent directories* decides; `!` patterns re-include. Like fsutil's walker, the
//!   decision is made directory by directory from the root, and a pattern counts for a path
//!   only if it matched a parent, or was consulted for the path itself and matched it. A pattern
//!   is consulted only when it could change the running answer (a `!` pattern only while the
//!   path is excluded, a plain one only while it is included). So with `foo/bar` then `!foo`,
//!   `foo/bar` stays excluded: at `foo` nothing was excluded yet so `!foo` was not consulted,
//!   and at `foo/bar` it does not match. (`patternmatcher.MatchesOrParentMatches`, used by
//!   fsutil only to open single files, would say included; the walker decides what is sent.)
//! - **Descent** ([`IgnoreFile::may_reinclude_within`]): fsutil skips an excluded directory
//!   unless some `!` pattern could match beneath it. A walker must still send an excluded
//!   directory (as a directory entry) when something beneath it is sent.
//!
//! The Dockerfile and the ignore file are excluded like any other file when a pattern says so:
//! BuildKit reads the Dockerfile and the ignore file through a separate source that applies no
//! patterns, so excluding them only keeps them out of `COPY . .`.
//!
//! Known differences from Docker, all in patterns no real file uses: an escaped letter, digit
//! or non-ASCII character (`\d`, which Docker's regular expression reads as "a digit"), and
//! `*` or `?` inside `[...]`, are errors here (see [`PatternError`]); a pattern Go's regexp
//! cannot compile (`[z-a]`) is an error at parse time here, while Docker fails only when the
//! pattern is first consulted (never, if no path reaches it); a U+FEFF at the start of a
//! wildcard pattern is a character here, while Docker's scanner drops it.

mod glob;
mod pattern;

pub use glob::PatternError;
pub use pattern::Pattern;

use pattern::LineError;

/// Longest line Go's `bufio.Scanner` reads with its default buffer (the `\n` not counted).
const MAX_LINE_BYTES: usize = 65535;

/// Characters that make fsutil give up its shortcut for `!` patterns (see
/// [`IgnoreFile::may_reinclude_within`]).
const PATTERN_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error("line {line}: `{pattern}` has no pattern after its `!`")]
    EmptyException { line: usize, pattern: String },
    #[error("line {line}: invalid pattern `{pattern}`: {cause}")]
    InvalidPattern { line: usize, pattern: String, cause: PatternError },
    #[error("line {line}: longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: usize },
}

/// The parsed patterns of a `.dockerignore` file, in file order. Files with the same patterns
/// are equal, whatever their comments, blank lines and spelling (`/a/` and `a`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IgnoreFile {
    patterns: Vec<Pattern>,
}

impl IgnoreFile {
    /// Parses `.dockerignore` text (see the module docs for the rules).
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let (text, bom_len) = match text.strip_prefix('\u{feff}') {
            Some(rest) => (rest, '\u{feff}'.len_utf8()),
            None => (text, 0),
        };
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            // Go reads the first line, BOM included, before dropping the BOM.
            let read_len = if index == 0 { raw.len() + bom_len } else { raw.len() };
            if read_len > MAX_LINE_BYTES {
                return Err(IgnoreError::LineTooLong { line });
            }
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.starts_with('#') {
                continue;
            }
            let pattern = || raw.trim().to_string();
            match Pattern::from_line(raw, line) {
                Ok(Some(parsed)) => patterns.push(parsed),
                Ok(None) => {}
                Err(LineError::EmptyException) => {
                    return Err(IgnoreError::EmptyException { line, pattern: pattern() });
                }
                Err(LineError::Invalid(cause)) => {
                    return Err(IgnoreError::InvalidPattern { line, pattern: pattern(), cause });
                }
            }
        }
        Ok(IgnoreFile { patterns })
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `path` (slash-separated, relative to the context root) is left out of the
    /// context. Empty and `.` elements are ignored; the root itself is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut parent_matched = vec![false; self.patterns.len()];
        let mut excluded = false;
        let mut prefix = String::with_capacity(path.len());
        for element in elements(path) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(element);
            excluded = false;
            for (pattern, matched) in self.patterns.iter().zip(parent_matched.iter_mut()) {
                // Consulted only when it could change the answer; a match at a parent sticks.
                if !*matched && pattern.is_exception() == excluded {
                    *matched = pattern.matches(&prefix);
                }
                if *matched {
                    excluded = !pattern.is_exception();
                }
            }
        }
        excluded
    }

    /// For an excluded directory: whether a walker must still look inside it because a `!`
    /// pattern might re-include something there. This is fsutil's rule: if every `!` pattern,
    /// less a trailing `/**` or `/*`, is a plain path, look inside a directory only when it is
    /// one of those paths or on the way to one; if any has wildcards (`*?[]^\`), look inside
    /// every directory; without `!` patterns, never. Skipping is sound: beneath a directory
    /// this answers `false` for, [`is_excluded`](Self::is_excluded) holds for every path.
    pub fn may_reinclude_within(&self, dir: &str) -> bool {
        let mut exceptions = self.patterns.iter().filter(|p| p.is_exception()).peekable();
        let dir = elements(dir).collect::<Vec<_>>().join("/");
        if dir.is_empty() {
            return exceptions.peek().is_some();
        }
        let dir_slash = format!("{dir}/");
        exceptions.any(|p| {
            let text = p.text();
            let text = text.strip_suffix("/**").unwrap_or(text);
            let stem = text.strip_suffix("/*").unwrap_or(text);
            stem.contains(PATTERN_CHARS) || format!("{stem}/").starts_with(&dir_slash)
        })
    }
}

/// The elements of a slash-separated relative path, without empty and `.` elements.
fn elements(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|e| !e.is_empty() && *e != ".")
}

/// The ignore files to try for a Dockerfile, in order; the first that is a regular file is
/// used, alone, even when empty (an empty `app.Dockerfile.dockerignore` means "exclude nothing",
/// as with BuildKit's built-in frontend, which reads it with `io.ReadAll`).
///
/// First `<Dockerfile path>.dockerignore`, which sits next to the Dockerfile (resolve it the way
/// the Dockerfile path is resolved; the Dockerfile need not be inside the context), then
/// `.dockerignore` at the context root. A Dockerfile read from stdin (`-`) has no neighbour.
/// BuildKit names the first candidate after the path as given even when it falls back from
/// `Dockerfile` to a lower-case `dockerfile`.
pub fn ignore_file_candidates(dockerfile_path: &str) -> Vec<String> {
    let root = ".dockerignore".to_string();
    if dockerfile_path == "-" {
        return vec![root];
    }
    vec![format!("{dockerfile_path}.dockerignore"), root]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(file: &IgnoreFile) -> Vec<String> {
        file.patterns().iter().map(Pattern::to_string).collect()
    }

    #[test]
    fn crlf_line_endings() {
        let file = IgnoreFile::parse("a\r\n!b\r\n#c\r\nd\r").unwrap();
        assert_eq!(texts(&file), ["a", "!b", "d"]);
    }

    #[test]
    fn byte_order_mark_only_at_the_start() {
        let file = IgnoreFile::parse("\u{feff}#comment\nfoo").unwrap();
        assert_eq!(texts(&file), ["foo"]);
        let file = IgnoreFile::parse("x\n\u{feff}y").unwrap();
        assert_eq!(texts(&file), ["x", "\u{feff}y"]);
        assert!(file.is_excluded("\u{feff}y") && !file.is_excluded("y"));
    }

    #[test]
    fn lines_longer_than_go_reads_are_errors() {
        let long = |n: usize| "a".repeat(n);
        assert!(IgnoreFile::parse(&long(MAX_LINE_BYTES)).is_ok());
        assert!(IgnoreFile::parse(&format!("{}\r\nb", long(MAX_LINE_BYTES - 1))).is_ok());
        assert_eq!(
            IgnoreFile::parse(&format!("x\n{}\n", long(MAX_LINE_BYTES + 1))),
            Err(IgnoreError::LineTooLong { line: 2 })
        );
        assert_eq!(
            IgnoreFile::parse(&format!("{}\r\n", long(MAX_LINE_BYTES))),
            Err(IgnoreError::LineTooLong { line: 1 })
        );
        let with_bom = format!("\u{feff}{}", long(MAX_LINE_BYTES - 2));
        assert_eq!(IgnoreFile::parse(&with_bom), Err(IgnoreError::LineTooLong { line: 1 }));
        // Comments count too: Go cannot read past them either.
        let comment = format!("#{}", long(MAX_LINE_BYTES));
        assert_eq!(IgnoreFile::parse(&comment), Err(IgnoreError::LineTooLong { line: 1 }));
    }

    /// `*`, `?` and classes match a newline (Go's `[^/]`); `**` does not (Go's `.`), except
    /// where Docker matches without a regular expression (a plain prefix or suffix).
    #[test]
    fn newlines_in_names() {
        let file = IgnoreFile::parse("a*\n?b\n").unwrap();
        assert!(file.is_excluded("a\nx") && file.is_excluded("\nb"));
        let file = IgnoreFile::parse("?**\n**/*z\n").unwrap();
        assert!(file.is_excluded("xy") && !file.is_excluded("x\ny"));
        assert!(file.is_excluded("d/z") && !file.is_excluded("d\ne/z"));
        let file = IgnoreFile::parse("p**\n**/s\n").unwrap();
        assert!(file.is_excluded("p\nq") && file.is_excluded("x\ny/s"));
    }

    #[test]
    fn equality_ignores_spelling_and_comments() {
        let one = IgnoreFile::parse("# deps\n/node_modules/\n\n! ./keep\n").unwrap();
        let two = IgnoreFile::parse("node_modules\n!keep").unwrap();
        assert_eq!(one, two);
        assert_ne!(two, IgnoreFile::parse("node_modules\nkeep").unwrap());
        assert_ne!(two, IgnoreFile::parse("!keep\nnode_modules").unwrap());
    }

    #[test]
    fn paths_are_read_leniently() {
        let file = IgnoreFile::parse("a/b\n!a/b/keep\n").unwrap();
        assert!(file.is_excluded("./a//b/"));
        assert!(!file.is_excluded("a/b/keep/."));
        assert!(!file.is_excluded("") && !file.is_excluded("."));
        assert!(file.may_reinclude_within("./a/b/"));
        assert!(file.may_reinclude_within(""));
        assert!(!IgnoreFile::parse("a").unwrap().may_reinclude_within(""));
    }
}
