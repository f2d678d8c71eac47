//! Word expansion and splitting with BuildKit's rules (`frontend/dockerfile/shell` there).
//!
//! The parser leaves instruction arguments exactly as written; this module turns one such word
//! into its value: quotes and escapes are removed and variables are expanded from an
//! [`EnvGetter`]. [`Lexer::process_word`] gives the value as one string together with the
//! variables it looked up; [`Lexer::process_words`] also splits the result into words at
//! unquoted white space (after expansion, as a shell does).
//!
//! ```
//! use kiln_frontend::shell::Lexer;
//!
//! let env = vec![("NAME".to_string(), "kiln".to_string())];
//! let lexer = Lexer::new('\\');
//! let expanded = lexer.process_word("hello-${NAME:-world}-${TAG:-latest}", &env).unwrap();
//! assert_eq!(expanded.value, "hello-kiln-latest");
//! assert!(expanded.matched.contains("NAME") && expanded.unmatched.contains("TAG"));
//! assert_eq!(lexer.process_words(r#"a "b c" $NAME"#, &env).unwrap(), ["a", "b c", "kiln"]);
//! ```
//!
//! Supported syntax:
//! - quotes: `'...'` (everything literal), `"..."` (only `$` expands; the escape character
//!   escapes `"`, `$` and itself, and stays literal before anything else);
//! - the escape character (`\`, or `` ` `` under `# escape=``) makes the next character literal;
//!   a trailing escape character is dropped;
//! - `$name`, `${name}`, and in braces `:-` `-` `:+` `+` `:?` `?` (default, alternative,
//!   required), `#` `##` `%` `%%` (trim a shell pattern, see `pattern.rs`),
//!   `/p/r` `//p/r` (replace); the word after the operator is itself expanded, so forms nest;
//! - positional (`$1`, `${001}`) and special (`$@ $* $# $? $- $$ $! $0`) parameters are
//!   looked up by that name like any other, so they are normally empty;
//! - `$` not followed by a name stays `$`;
//! - `<<` followed by blanks is kept together with the next word (heredoc markers).
//!
//! Invariants:
//! - Expansion is one left-to-right pass over the characters; it never panics. `${...}`
//!   forms may nest up to 100 levels ([`ShellError::TooDeep`] beyond that).
//! - Errors carry no position: callers know which word and line they expanded and add that
//!   (BuildKit's wording is `failed to process "<word>": <error>`).
//! - Where BuildKit has quirks (documented where they are reproduced: `words.rs`,
//!   `pattern.rs`, `lexer.rs`), kiln reproduces them, so that a Dockerfile means the same to
//!   both. Results agree with BuildKit's lexer on its own vectors and on recorded outputs for
//!   random words (`testdata/shell`). Only some error texts differ: `${NAME` at the end of
//!   input reports the missing `}` (BuildKit: "unsupported modifier (\u{FFFD})"), and an
//!   invalid `%` pattern is quoted as written (BuildKit quotes it reversed).

mod env;
mod lexer;
mod pattern;
mod unicode;
mod words;

use std::collections::BTreeSet;

pub use env::EnvGetter;
pub use pattern::PatternError;

/// How words are expanded. The defaults ([`Lexer::new`]) are those for instruction arguments;
/// the flags select BuildKit's variants used for heredocs and parser look-ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` or `` ` `` (the `# escape=` parser directive).
    pub escape: char,
    /// Keep quote characters in the output (BuildKit `RawQuotes`).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub raw_escapes: bool,
    /// Treat `'` and `"` as ordinary characters (BuildKit `SkipProcessQuotes`).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written (BuildKit `SkipUnsetEnv`).
    pub skip_unset_env: bool,
}

/// The result of [`Lexer::process_word`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WordExpansion {
    /// The expanded word.
    pub value: String,
    /// Variables that were looked up and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// Why a word could not be expanded. Messages follow BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingClosingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${V<modifier>...}` with an operator BuildKit does not support (`:=`, `:#`, `${V.}`...).
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier { modifier: String },
    /// `${V?message}` / `${V:?message}` on an unset (or, with `:`, empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    /// More nested `${...}` words than kiln accepts (a guard against stack exhaustion).
    #[error("substitutions nested more than {limit} levels deep")]
    TooDeep { limit: usize },
    #[error("invalid pattern ({pattern}) in substitution: {source}")]
    InvalidPattern { pattern: String, source: PatternError },
}

impl Lexer {
    /// A lexer with the given escape character and BuildKit's default behaviour.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string (BuildKit `ProcessWordWithMatches`), reporting which
    /// variables it looked up.
    pub fn process_word(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<WordExpansion, ShellError> {
        let (value, lookups) = lexer::expand(self, word, env, None)?;
        Ok(WordExpansion { value, matched: lookups.matched, unmatched: lookups.unmatched })
    }

    /// Expands `word` and splits the result at unquoted white space (BuildKit `ProcessWords`).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        let mut splitter = words::WordSplitter::default();
        lexer::expand(self, word, env, Some(&mut splitter))?;
        Ok(splitter.finish())
    }
}

#[cfg(test)]
mod tests;
