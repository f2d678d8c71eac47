//! The word splitter BuildKit's parser uses to find heredoc markers on a line.
//!
//! BuildKit runs its shell lexer over the whole instruction line, with no variables set and
//! unset variables left as written, to cut the line into words; a word of the form
//! `[fd]<<[-]NAME` then opens a heredoc. This module reproduces that lexer for that purpose
//! only (word expansion proper lives in [`crate::shell`]):
//! - blanks split words; `<<` and the blanks after it stay glued to the next word;
//! - `'...'` and `"..."` group; with `raw_quotes` the quote characters are kept;
//! - the escape character `\` takes the next character literally; with `raw_escapes` the
//!   escape is kept too;
//! - `$name`, `${name}`, `${name:-word}`, `${name/a/b}` ... are kept as written (variables
//!   are never set here), and malformed `${` forms are errors;
//! - quirk kept on purpose: a `${name<op>word}` inside a word drops what the word held
//!   before it, as BuildKit's lexer does (its nested scan reuses the word buffer).
//!
//! An error (unbalanced quote, malformed `${`) means "no words": callers treat the line as
//! having no heredoc, except where BuildKit reports the error (see [`super::heredoc`]).
//!
//! Nested `${...${...}}` references are scanned recursively; past [`MAX_NESTING`] levels the
//! text is refused as malformed (BuildKit has no limit), so that no input can exhaust the
//! stack.

const ESCAPE: char = '\\';

/// How deeply `${...}` references may nest.
pub const MAX_NESTING: usize = 100;

/// Options of one lexer run.
#[derive(Debug, Clone, Copy)]
pub struct LexOptions {
    pub raw_quotes: bool,
    pub raw_escapes: bool,
}

/// Splits `text` into words by the rules above.
pub fn split_words(text: &str, options: LexOptions) -> Result<Vec<String>, String> {
    // Like Go's text scanner under BuildKit's lexer, a leading byte-order mark is skipped.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        raw_quotes: options.raw_quotes,
        raw_escapes: options.raw_escapes,
        buffer: String::new(),
        depth: 0,
    };
    let (_, words) = lexer.scan_until(None, options.raw_escapes)?;
    Ok(words)
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// The word being built, shared by nested scans (see the quirk in the module docs).
    buffer: String,
    /// How many `${...}` scans enclose the current one.
    depth: usize,
}

/// Words completed by one scan; the word in progress lives in [`Lexer::buffer`].
#[derive(Default)]
struct Words {
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buffer: &mut String, c: char) {
        if c.is_whitespace() {
            if self.in_word && !buffer.is_empty() {
                self.done.push(std::mem::take(buffer));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(buffer, c);
        }
    }

    fn add_raw_char(&mut self, buffer: &mut String, c: char) {
        buffer.push(c);
        self.in_word = true;
    }

    fn add_text(&mut self, buffer: &mut String, text: &str) {
        for c in text.chars() {
            self.add_char(buffer, c);
        }
    }

    fn add_raw_text(&mut self, buffer: &mut String, text: &str) {
        buffer.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self, buffer: &mut String) -> Vec<String> {
        if !buffer.is_empty() {
            self.done.push(std::mem::take(buffer));
        }
        self.done
    }
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Scans to `stop` (consumed) or to the end of input when `stop` is `None`. Returns the
    /// text as read and the words it splits into.
    fn scan_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved_raw_escapes = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.scan_until_inner(stop);
        self.raw_escapes = saved_raw_escapes;
        result
    }

    fn scan_until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut text = String::new();
        let mut words = Words::default();
        self.buffer.clear();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                let words = words.finish(&mut self.buffer);
                return Ok((text, words));
            }
            match c {
                '$' => {
                    let piece = self.dollar()?;
                    text.push_str(&piece);
                    words.add_text(&mut self.buffer, &piece);
                }
                '<' => {
                    let piece = self.possible_heredoc();
                    text.push_str(&piece);
                    words.add_raw_text(&mut self.buffer, &piece);
                }
                '\'' => {
                    let piece = self.single_quoted()?;
                    text.push_str(&piece);
                    words.add_raw_text(&mut self.buffer, &piece);
                }
                '"' => {
                    let piece = self.double_quoted()?;
                    text.push_str(&piece);
                    words.add_raw_text(&mut self.buffer, &piece);
                }
                _ => {
                    self.pos += 1;
                    if c == ESCAPE {
                        if self.raw_escapes {
                            words.add_raw_char(&mut self.buffer, c);
                            text.push(c);
                        }
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(&mut self.buffer, escaped);
                        text.push(escaped);
                    } else {
                        words.add_char(&mut self.buffer, c);
                        text.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        let words = words.finish(&mut self.buffer);
        Ok((text, words))
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(mut c) => {
                    self.pos += 1;
                    if c == ESCAPE {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next @ ('"' | '$' | ESCAPE)) => {
                                self.pos += 1;
                                c = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// `$...` with no variable set: the reference comes back as written.
    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let op = self.next();
        match op {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut modifier = String::from(op.unwrap_or_default());
                let mut op = op;
                let null_is_unset = op == Some(':');
                if null_is_unset {
                    op = self.next();
                    modifier.push(op.unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                let raw_escapes = matches!(op, Some('#' | '%'));
                if null_is_unset && raw_escapes {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let word = self.nested_until('}', raw_escapes)?;
                Ok(format!("${{{name}{modifier}{word}}}"))
            }
            Some('/') => {
                if self.peek() == Some('/') {
                    self.pos += 1;
                }
                let pattern = self.nested_until('/', true).map_err(|err| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".into()
                    } else {
                        err
                    }
                })?;
                let replacement = self.nested_until('}', true)?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            other => Err(format!(
                "unsupported modifier ({}) in substitution",
                other.unwrap_or(char::REPLACEMENT_CHARACTER)
            )),
        }
    }

    /// A nested scan inside `${...}`; running off the end is a missing `}`.
    fn nested_until(&mut self, stop: char, raw_escapes: bool) -> Result<String, String> {
        if self.depth >= MAX_NESTING {
            return Err(format!("variable references nested more than {MAX_NESTING} deep"));
        }
        self.depth += 1;
        let scanned = self.scan_until(Some(stop), raw_escapes);
        self.depth -= 1;
        match scanned {
            Ok((text, _)) => Ok(text),
            Err(_) if self.peek().is_none() && stop == '}' => {
                Err("syntax error: missing '}'".into())
            }
            Err(err) => Err(err),
        }
    }

    /// A variable name: digits, one special parameter, or letters/digits/underscores.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(digit) = self.peek().filter(|d| d.is_numeric()) {
                    self.pos += 1;
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                name.push(c);
                return name;
            }
            if !(c.is_alphabetic() || c.is_numeric() || c == '_') {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    /// `<` or `<<` followed by its blanks, kept together with the next word.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            self.pos += 1;
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: LexOptions = LexOptions { raw_quotes: true, raw_escapes: true };
    const COOKED: LexOptions = LexOptions { raw_quotes: false, raw_escapes: false };

    fn words(text: &str, options: LexOptions) -> Vec<String> {
        split_words(text, options).unwrap()
    }

    #[test]
    fn heredoc_markers_stay_glued_to_their_word() {
        assert_eq!(words("RUN cat << EOF > x", RAW), ["RUN", "cat", "<< EOF", ">", "x"]);
        assert_eq!(words("RUN 3<<-'E F' a<b", RAW), ["RUN", "3<<-'E F'", "a<b"]);
        assert_eq!(words(r#"COPY <<"EOF" /x"#, COOKED), ["COPY", "<<EOF", "/x"]);
    }

    #[test]
    fn escapes_and_quotes() {
        assert_eq!(words(r"a\ b", RAW), [r"a\ b"]);
        assert_eq!(words(r"a\ b", COOKED), ["a b"]);
        assert_eq!(words(r#""a\xb""#, RAW), [r#""a\\xb""#]);
        assert_eq!(words(r#""a\"b""#, COOKED), [r#"a"b"#]);
        assert_eq!(words("'x y' z", COOKED), ["x y", "z"]);
        assert_eq!(words(r"a\", COOKED), ["a"]);
    }

    #[test]
    fn variables_are_kept_as_written() {
        assert_eq!(words("$HOME ${A} ${B:-x y} $", COOKED), ["$HOME", "${A}", "${B:-x", "y}", "$"]);
        assert_eq!(words("${A//b/c}", COOKED), ["${A/b/c}"]);
        assert_eq!(words("pre${A:-x}", COOKED), ["${A:-x}"]);
        assert_eq!(words("$1x $@", COOKED), ["$1x", "$@"]);
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        assert_eq!(words(&nested(MAX_NESTING), COOKED), [nested(MAX_NESTING)]);
        assert!(split_words(&nested(MAX_NESTING + 1), COOKED).is_err());
        assert!(split_words(&"${a:-".repeat(20_000), RAW).is_err());
    }

    #[test]
    fn malformed_input_is_an_error() {
        for text in ["'open", "\"open", "${", "${}", "${:a}", "${a", "${a:#x}", "${a!}", "${a/b"] {
            assert!(split_words(text, RAW).is_err(), "{text}");
        }
    }
}
