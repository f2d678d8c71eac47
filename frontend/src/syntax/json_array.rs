//! The JSON (exec) form: `["executable", "arg", ...]`.
//!
//! BuildKit decodes the arguments with Go's `encoding/json`, and what counts as JSON follows
//! from that decoder, so this reader follows it rather than a general JSON library:
//! - the text (leading whitespace skipped) must start with `[` to be a candidate at all;
//! - the whole text must be one JSON value (RFC 8259 grammar, blanks ` \t\n\r` between
//!   tokens and after it, nesting at most 10000 deep); otherwise it is not JSON and the
//!   instruction falls back to its plain form;
//! - a number too large for a 64-bit float makes decoding fail, so it also means "not JSON";
//! - a valid array holding anything but strings is an error ([`JsonArray::NotStrings`]);
//! - string escapes decode as Go does: `\uD800`-style lone surrogates become U+FFFD.
//!
//! The reader never recurses, so deeply nested input cannot exhaust the stack.

/// What the arguments of an instruction are, seen as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonArray {
    /// A JSON array of strings, decoded.
    Strings(Vec<String>),
    /// Valid JSON array with an element that is not a string.
    NotStrings,
    /// Not a JSON array (including invalid JSON): the plain form applies.
    NotJson,
}

const MAX_DEPTH: usize = 10_000;

/// Reads `text` as a JSON array.
pub fn parse_json_array(text: &str) -> JsonArray {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return JsonArray::NotJson;
    }
    let mut reader = Reader { bytes: text.as_bytes(), text, pos: 0 };
    match reader.top_level_array() {
        Ok(Some(strings)) => JsonArray::Strings(strings),
        Ok(None) => JsonArray::NotStrings,
        Err(NotJson) => JsonArray::NotJson,
    }
}

/// Marker: the text is not JSON (or would not decode).
struct NotJson;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Object,
}

struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// The top-level array: `Some(strings)` when every element is a string.
    fn top_level_array(&mut self) -> Result<Option<Vec<String>>, NotJson> {
        self.expect(b'[')?;
        let mut strings = Vec::new();
        let mut all_strings = true;
        self.skip_blanks();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.skip_blanks();
                if self.peek() == Some(b'"') {
                    strings.push(self.string()?);
                } else {
                    all_strings = false;
                    self.value(1)?;
                }
                self.skip_blanks();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(NotJson),
                }
            }
        }
        self.skip_blanks();
        if self.pos != self.bytes.len() {
            return Err(NotJson);
        }
        Ok(all_strings.then_some(strings))
    }

    /// Checks one value of any kind starting at the cursor; `depth` containers enclose it.
    fn value(&mut self, depth: usize) -> Result<(), NotJson> {
        let mut stack: Vec<Container> = Vec::new();
        loop {
            // A value is expected here.
            self.skip_blanks();
            match self.peek() {
                Some(open @ (b'[' | b'{')) => {
                    self.pos += 1;
                    if depth + stack.len() + 1 > MAX_DEPTH {
                        return Err(NotJson);
                    }
                    let container = if open == b'[' { Container::Array } else { Container::Object };
                    stack.push(container);
                    self.skip_blanks();
                    let close = if container == Container::Array { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        stack.pop();
                    } else {
                        if container == Container::Object {
                            self.member_name()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                _ => return Err(NotJson),
            }
            // A value ended: close containers or move to the next element.
            loop {
                let Some(&container) = stack.last() else { return Ok(()) };
                self.skip_blanks();
                let close = if container == Container::Array { b']' } else { b'}' };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if container == Container::Object {
                            self.skip_blanks();
                            self.member_name()?;
                        }
                        break;
                    }
                    Some(byte) if byte == close => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return Err(NotJson),
                }
            }
        }
    }

    /// `"name" :` of an object member.
    fn member_name(&mut self) -> Result<(), NotJson> {
        if self.peek() != Some(b'"') {
            return Err(NotJson);
        }
        self.string()?;
        self.skip_blanks();
        self.expect(b':')
    }

    fn literal(&mut self, word: &str) -> Result<(), NotJson> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, which must fit a 64-bit float.
    fn number(&mut self) -> Result<(), NotJson> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(NotJson),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        let literal = &self.text[start..self.pos];
        match literal.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(()),
            _ => Err(NotJson),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), NotJson> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(NotJson);
        }
        self.digits();
        Ok(())
    }

    /// A string starting at `"`, decoded.
    fn string(&mut self) -> Result<String, NotJson> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(byte) = self.peek() {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                _ => return Err(NotJson),
            }
        }
    }

    /// One escape after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), NotJson> {
        let byte = self.peek().ok_or(NotJson)?;
        self.pos += 1;
        let decoded = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4().ok_or(NotJson)?;
                self.unicode_escape(unit)
            }
            _ => return Err(NotJson),
        };
        out.push(decoded);
        Ok(())
    }

    /// Decodes `\uXXXX` (already read as `unit`), pairing surrogates as Go does.
    fn unicode_escape(&mut self, unit: u32) -> char {
        if !(0xD800..0xE000).contains(&unit) {
            return char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER);
        }
        if (0xD800..0xDC00).contains(&unit) && self.bytes[self.pos..].starts_with(b"\\u") {
            let saved = self.pos;
            self.pos += 2;
            match self.hex4() {
                Some(low @ 0xDC00..0xE000) => {
                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                }
                _ => self.pos = saved,
            }
        }
        char::REPLACEMENT_CHARACTER
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut value = 0;
        for &digit in digits {
            value = value * 16 + (digit as char).to_digit(16)?;
        }
        self.pos += 4;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> JsonArray {
        JsonArray::Strings(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays_of_strings_decode() {
        assert_eq!(parse_json_array(r#"["a", "b"]"#), strings(&["a", "b"]));
        assert_eq!(parse_json_array("  [\t\"a\",\t\"b\"\t]\t"), strings(&["a", "b"]));
        assert_eq!(parse_json_array("[]"), strings(&[]));
        assert_eq!(
            parse_json_array(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u2665"]"#),
            strings(&["\" \\ / \u{8} \u{c} \n \r \t \0 \u{2665}"])
        );
        assert_eq!(parse_json_array(r#"["\ud83d\ude00"]"#), strings(&["\u{1f600}"]));
        assert_eq!(parse_json_array(r#"["\ud83dx\ude00"]"#), strings(&["\u{fffd}x\u{fffd}"]));
        assert_eq!(parse_json_array(r#"["\ud83d\u0041"]"#), strings(&["\u{fffd}A"]));
    }

    #[test]
    fn invalid_json_is_not_json() {
        for text in [
            "echo [",
            "[\"a\"",
            "['a']",
            "[\"a\",]",
            "[\"a\"] x",
            "[01]",
            "[1.]",
            "[\"a\u{1}\"]",
            "[\"\\x\"]",
            "[1e999]",
            "[\"a\", [1e999]]",
            "[\"a\",\u{a0}\"b\"]",
            "[{\"a\" 1}]",
        ] {
            assert_eq!(parse_json_array(text), JsonArray::NotJson, "{text}");
        }
    }

    #[test]
    fn valid_arrays_of_other_values_are_refused() {
        for text in [
            r#"[ "echo", [ "nested json" ] ]"#,
            "[1]",
            "[null]",
            "[true, false]",
            r#"[{"a": [1, {"b": null}]}, "x"]"#,
            "[-0.5e+3]",
        ] {
            assert_eq!(parse_json_array(text), JsonArray::NotStrings, "{text}");
        }
    }

    #[test]
    fn nesting_is_limited_without_recursion() {
        let deep = format!("[{}{}]", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert_eq!(parse_json_array(&deep), JsonArray::NotStrings);
        let too_deep = format!("[{}{}]", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(parse_json_array(&too_deep), JsonArray::NotJson);
        let unclosed = "[".repeat(100_000);
        assert_eq!(parse_json_array(&unclosed), JsonArray::NotJson);
    }
}
