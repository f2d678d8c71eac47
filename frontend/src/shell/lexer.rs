//! The expander behind [`Lexer`]: one pass over a word's characters that removes quotes and
//! escapes and expands `$` forms, feeding a [`WordSplitter`] when the caller wants words.
//!
//! Invariants:
//! - The cursor only moves forward; every loop consumes at least one character per turn, so
//!   expansion ends on any input. Recursion happens only for a nested `${...}` word, at most
//!   [`MAX_NESTING`] deep (deeper input is an error rather than a stack overflow; BuildKit,
//!   on Go's growable stacks, has no such limit).
//! - A word inside `${...}` (default, alternative, message, pattern, replacement) is expanded
//!   by the same loop, stopping at its delimiter. Pattern-reading forms (`#`, `%`, `/`) keep
//!   escape characters so the pattern can tell `\*` from `*`; the others drop them. This
//!   escape mode is scoped: it holds while that word is read, quotes inside it included.
//! - If a nested word fails at the end of input, the error reported is the missing delimiter,
//!   as BuildKit reports it.
//! - A leading U+FEFF (byte-order mark) is skipped, as Go's `text/scanner` does for BuildKit.
//! - Every variable looked up is recorded as matched (set) or unmatched (unset).

use std::collections::BTreeSet;

use super::pattern::{self, TrimEnd};
use super::unicode::{is_digit, is_name_char};
use super::words::WordSplitter;
use super::{EnvGetter, Lexer, ShellError};

/// How deeply `${...}` words may nest. Each level costs stack; far beyond any real
/// Dockerfile, yet small enough for a thread with a small stack.
pub(super) const MAX_NESTING: usize = 100;

/// The variables a word looked up.
#[derive(Debug, Default)]
pub(super) struct Lookups {
    pub(super) matched: BTreeSet<String>,
    pub(super) unmatched: BTreeSet<String>,
}

/// Expands `word`; when `splitter` is given, it also receives the words.
pub(super) fn expand(
    lexer: &Lexer,
    word: &str,
    env: &dyn EnvGetter,
    splitter: Option<&mut WordSplitter>,
) -> Result<(String, Lookups), ShellError> {
    let word = word.strip_prefix('\u{feff}').unwrap_or(word);
    let mut expander = Expander {
        lexer,
        env,
        chars: word.chars().collect(),
        pos: 0,
        raw_escapes: lexer.raw_escapes,
        nested_words: 0,
        depth: 0,
        lookups: Lookups::default(),
    };
    let value = expander.read_until(None, lexer.raw_escapes, splitter)?;
    Ok((value, expander.lookups))
}

struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn EnvGetter,
    chars: Vec<char>,
    pos: usize,
    /// Whether escape characters are kept, for the word being read right now.
    raw_escapes: bool,
    /// How many nested `${...}` words have been read; see the quirk in `words.rs`.
    nested_words: u64,
    /// How many nested `${...}` words enclose the cursor.
    depth: usize,
    lookups: Lookups,
}

impl Expander<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    /// Reads up to `stop` (consumed) or, without one, to the end of input.
    fn read_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut splitter: Option<&mut WordSplitter>,
    ) -> Result<String, ShellError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.read_until_inner(stop, &mut splitter);
        self.raw_escapes = saved;
        result
    }

    fn read_until_inner(
        &mut self,
        stop: Option<char>,
        splitter: &mut Option<&mut WordSplitter>,
    ) -> Result<String, ShellError> {
        let mut out = String::new();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(out);
            }
            match c {
                '$' => {
                    let text = self.expansion(splitter, Self::dollar)?;
                    out.push_str(&text);
                    if let Some(words) = splitter.as_deref_mut() {
                        words.push_splittable(&text);
                    }
                }
                '"' if quotes => {
                    let text = self.expansion(splitter, Self::double_quoted)?;
                    out.push_str(&text);
                    if let Some(words) = splitter.as_deref_mut() {
                        words.push_literal(&text);
                    }
                }
                '\'' if quotes => {
                    let text = self.single_quoted()?;
                    out.push_str(&text);
                    if let Some(words) = splitter.as_deref_mut() {
                        words.push_literal(&text);
                    }
                }
                '<' => {
                    let text = self.possible_heredoc();
                    out.push_str(&text);
                    if let Some(words) = splitter.as_deref_mut() {
                        words.push_literal(&text);
                    }
                }
                _ => {
                    self.pos += 1;
                    if c != self.lexer.escape {
                        out.push(c);
                        if let Some(words) = splitter.as_deref_mut() {
                            words.push_splittable_char(c);
                        }
                        continue;
                    }
                    if self.raw_escapes {
                        out.push(c);
                        if let Some(words) = splitter.as_deref_mut() {
                            words.push_literal_char(c);
                        }
                    }
                    // An escape character at the very end escapes nothing and is dropped.
                    let Some(escaped) = self.next_char() else {
                        break;
                    };
                    out.push(escaped);
                    if let Some(words) = splitter.as_deref_mut() {
                        words.push_literal_char(escaped);
                    }
                }
            }
        }
        match stop {
            None => Ok(out),
            Some('/') => Err(ShellError::MissingSlash),
            Some(_) => Err(ShellError::MissingClosingBrace),
        }
    }

    /// Runs `read` (a `$` or `"` form) and applies BuildKit's shared-buffer quirk (see
    /// `words.rs`): if it read a nested `${...}` word, the word in progress is dropped.
    fn expansion(
        &mut self,
        splitter: &mut Option<&mut WordSplitter>,
        read: fn(&mut Self) -> Result<String, ShellError>,
    ) -> Result<String, ShellError> {
        let nested_before = self.nested_words;
        let text = read(self)?;
        if self.nested_words != nested_before
            && let Some(words) = splitter.as_deref_mut()
        {
            words.discard_current();
        }
        Ok(text)
    }

    /// Reads the word inside `${...}` up to `stop`; see the module docs for the error rule.
    fn nested_word(&mut self, stop: char, raw_escapes: bool) -> Result<String, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::TooDeep { limit: MAX_NESTING });
        }
        self.nested_words += 1;
        self.depth += 1;
        let word = self.read_until(Some(stop), raw_escapes, None);
        self.depth -= 1;
        word.map_err(|error| match error {
            ShellError::TooDeep { .. } => error,
            _ if !self.at_end() => error,
            _ if stop == '/' => ShellError::MissingSlash,
            _ => ShellError::MissingClosingBrace,
        })
    }

    /// `'...'`: everything up to the next `'` is literal.
    fn single_quoted(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let mut out = String::new();
        if self.lexer.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next_char() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character escapes only `"`, `$` and itself.
    fn double_quoted(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let mut out = String::new();
        if self.lexer.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let text = self.dollar()?;
                    out.push_str(&text);
                }
                Some(c) => {
                    self.pos += 1;
                    if c != self.lexer.escape {
                        out.push(c);
                        continue;
                    }
                    if self.raw_escapes {
                        out.push(c);
                    }
                    match self.peek() {
                        // Nothing to escape: the missing closing quote is reported next turn.
                        None => {}
                        Some(next) if next == '"' || next == '$' || next == self.lexer.escape => {
                            self.pos += 1;
                            out.push(next);
                        }
                        // Not escapable here: the escape character is an ordinary character.
                        Some(_) => out.push(c),
                    }
                }
            }
        }
    }

    /// `<` is literal; `<<` takes the blanks after it, so they stay in the same word.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.pos += 1;
        let mut out = "<<".to_owned();
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            self.pos += 1;
            out.push(c);
        }
        out
    }

    /// A name after `$` or `${`: a run of digits, one special parameter character, or letters,
    /// digits and `_` not starting with a digit. Empty when none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if is_digit(c) => {
                while let Some(c) = self.peek().filter(|&c| is_digit(c)) {
                    self.pos += 1;
                    name.push(c);
                }
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.pos += 1;
                name.push(c);
            }
            _ => {
                while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
                    self.pos += 1;
                    name.push(c);
                }
            }
        }
        name
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name).map(str::to_owned);
        let set =
            if value.is_some() { &mut self.lookups.matched } else { &mut self.lookups.unmatched };
        set.insert(name.to_owned());
        value
    }

    /// Expands a `$` form; the cursor is on the `$`.
    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ShellError::MissingClosingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next_char() {
            None => Err(ShellError::MissingClosingBrace),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let operator = self.next_char();
                self.with_word(&name, true, operator)
            }
            Some(operator @ ('+' | '-' | '?' | '#' | '%')) => {
                self.with_word(&name, false, Some(operator))
            }
            Some('/') => self.substitute(&name),
            Some(other) => Err(ShellError::UnsupportedModifier { modifier: other.to_string() }),
        }
    }

    /// `${name[:]OPword}` for the operators that take a word; the cursor is after OP.
    /// `colon` means an empty value counts as unset.
    fn with_word(
        &mut self,
        name: &str,
        colon: bool,
        operator: Option<char>,
    ) -> Result<String, ShellError> {
        let mut modifier = String::new();
        if colon {
            modifier.push(':');
        }
        modifier.extend(operator);
        let trims = matches!(operator, Some('#' | '%'));
        if colon && trims {
            return Err(ShellError::UnsupportedModifier { modifier });
        }
        let word = self.nested_word('}', trims)?;
        let looked_up = self.lookup(name);
        if looked_up.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let set = looked_up.is_some();
        let value = looked_up.unwrap_or_default();
        let counts_as_unset = !set || (colon && value.is_empty());
        match operator {
            Some('-') => Ok(if counts_as_unset { word } else { value }),
            Some('+') => Ok(if counts_as_unset { String::new() } else { word }),
            Some('?') if !set => Err(required(name, word, "is not allowed to be unset")),
            Some('?') if counts_as_unset => Err(required(name, word, "is not allowed to be empty")),
            Some('?') => Ok(value),
            // An unset variable trims as the empty string; the pattern must still be valid.
            Some(end @ ('#' | '%')) => {
                let (pattern, longest) = match word.strip_prefix(end) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let end = if end == '#' { TrimEnd::Prefix } else { TrimEnd::Suffix };
                pattern::trim(&value, pattern, end, longest).map_err(|source| {
                    ShellError::InvalidPattern { pattern: pattern.to_owned(), source }
                })
            }
            _ => Err(ShellError::UnsupportedModifier { modifier }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`; the cursor is after
    /// the first `/`.
    fn substitute(&mut self, name: &str) -> Result<String, ShellError> {
        let every = self.peek() == Some('/');
        if every {
            self.pos += 1;
        }
        let pattern = self.nested_word('/', true)?;
        let replacement = self.nested_word('}', true)?;
        let looked_up = self.lookup(name);
        if looked_up.is_none() && self.lexer.skip_unset_env {
            // BuildKit writes a single `/` back even for `//`.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let value = looked_up.unwrap_or_default();
        pattern::replace(&value, &pattern, &replacement, every)
            .map_err(|source| ShellError::InvalidPattern { pattern: pattern.clone(), source })
    }
}

fn required(name: &str, message: String, default: &str) -> ShellError {
    ShellError::Required {
        name: name.to_owned(),
        message: if message.is_empty() { default.to_owned() } else { message },
    }
}
