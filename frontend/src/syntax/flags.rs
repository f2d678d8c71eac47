//! Splitting a logical line into its keyword, its `--flag` words and the rest.
//!
//! Rules (BuildKit's `splitCommand` / `extractBuilderFlags`):
//! - the keyword is the first run of non-blank text; the rest starts after the blanks that
//!   follow it (blanks here are space, tab, `\v`, `\f`, `\r`);
//! - words at the start of the rest that begin with `--` are flags; the first word that does
//!   not ends the flags and everything from it on is the arguments;
//! - a lone `--` ends the flags and is dropped;
//! - inside a flag, quotes group (and are removed) and the escape character takes the next
//!   character literally (and is removed), so `--mount=source="a b"` is one flag
//!   `--mount=source=a b`.
//!
//! BuildKit scans flags byte by byte. For ASCII text that is the same as scanning characters
//! with ASCII whitespace as blanks, which is what this module does ([`is_byte_blank`]). Where
//! they part: BuildKit turns non-ASCII text inside a flag into Latin-1 mojibake (`é` becomes
//! `Ã©`) and splits words inside characters whose UTF-8 encoding holds the bytes 0x85 or
//! 0xA0; here non-ASCII characters stay intact and are never blanks.
//!
//! Invariant: the returned arguments are trimmed of surrounding whitespace.

/// Blanks that separate words in BuildKit's whitespace-split forms (no newline: lines have
/// none).
pub fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// Whitespace as BuildKit's byte-wise scans see it, for ASCII characters: space, `\t`,
/// `\n`, `\v`, `\f`, `\r`.
pub fn is_byte_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// A logical line taken apart: keyword as written, flags, trimmed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine<'a> {
    pub keyword: &'a str,
    pub flags: Vec<String>,
    pub args: &'a str,
}

/// Splits a logical line into keyword, flags and arguments.
pub fn split_command(line: &str, escape: char) -> CommandLine<'_> {
    let line = line.trim();
    let keyword_end = line.find(is_separator).unwrap_or(line.len());
    let keyword = &line[..keyword_end];
    let after = line[keyword_end..].trim_start_matches(is_separator);
    if keyword_end == line.len() {
        return CommandLine { keyword, flags: Vec::new(), args: "" };
    }
    let (args, flags) = extract_flags(after, escape);
    CommandLine { keyword, flags, args: args.trim() }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quoted(char),
}

/// Takes the leading `--flag` words off `text`; returns the remaining text and the flags.
fn extract_flags(text: &str, escape: char) -> (&str, Vec<String>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while i < chars.len() {
        let (at, mut c) = chars[i];
        let is_last = i + 1 == chars.len();
        i += 1;
        if phase == Phase::Spaces {
            if is_byte_blank(c) {
                continue;
            }
            let starts_flag = c == '-' && chars.get(i).is_some_and(|&(_, next)| next == '-');
            if !starts_flag {
                return (&text[at..], flags);
            }
            phase = Phase::Word;
        }
        // The block above leaves the phase at Word or Quoted.
        match phase {
            Phase::Spaces | Phase::Word => {
                if is_byte_blank(c) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&text[at..], flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(word.clone());
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quoted(c);
                    blank_ok = true;
                    continue;
                }
                if c == escape {
                    if is_last {
                        continue;
                    }
                    c = chars[i].1;
                    i += 1;
                }
                word.push(c);
            }
            Phase::Quoted(quote) => {
                if c == quote {
                    phase = Phase::Word;
                    continue;
                }
                if c == escape {
                    if is_last {
                        phase = Phase::Word;
                        continue;
                    }
                    c = chars[i].1;
                    i += 1;
                }
                word.push(c);
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(word);
    }
    ("", flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> (String, Vec<String>, String) {
        let parts = split_command(line, '\\');
        (parts.keyword.to_string(), parts.flags, parts.args.to_string())
    }

    fn owned(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn keyword_flags_and_arguments() {
        assert_eq!(split("  RUN  echo hi  "), ("RUN".into(), vec![], "echo hi".into()));
        assert_eq!(split("CMD"), ("CMD".into(), vec![], "".into()));
        assert_eq!(
            split("COPY --from=a --chown=1:1 src dst"),
            ("COPY".into(), owned(&["--from=a", "--chown=1:1"]), "src dst".into())
        );
        assert_eq!(
            split("COPY --doit=true -- foo /tmp/"),
            ("COPY".into(), owned(&["--doit=true"]), "foo /tmp/".into())
        );
        assert_eq!(split("CMD --doit -- [ ]"), ("CMD".into(), owned(&["--doit"]), "[ ]".into()));
        assert_eq!(split("RUN --"), ("RUN".into(), vec![], "".into()));
        assert_eq!(split("RUN -x --y"), ("RUN".into(), vec![], "-x --y".into()));
    }

    #[test]
    fn quotes_and_escapes_inside_flags_are_removed() {
        assert_eq!(
            split(r#"RUN --mount=type=bind,source="a b" ls"#).1,
            owned(&["--mount=type=bind,source=a b"])
        );
        assert_eq!(split(r"RUN --mount=target=C:\cache x").1, owned(&["--mount=target=C:cache"]));
        assert_eq!(split(r#"RUN --a="" x"#).1, owned(&["--a="]));
        assert_eq!(split(r#"RUN --a='x \' y' z"#).1, owned(&["--a=x ' y"]));
        assert_eq!(split(r#"RUN --a="unterminated"#).1, owned(&["--a=unterminated"]));
        assert_eq!(split("RUN \u{a0}--a b"), ("RUN".into(), vec![], "--a b".into()));
        assert_eq!(split("RUN --a=é\u{a0} b").1, owned(&["--a=é\u{a0}"]));
    }
}
