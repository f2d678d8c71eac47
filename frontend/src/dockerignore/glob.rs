//! The wildcard part of a `.dockerignore` pattern: syntax checks and the matcher.
//!
//! Docker checks a pattern twice. First against Go's `filepath.Match` grammar
//! ([`check_match_syntax`]); then, when the pattern has wildcards, it translates it character by
//! character into an anchored regular expression and matches paths with that. [`tokenize`]
//! reads a pattern the way that regular expression reads it, so the matcher gives Docker's answer
//! for the quirky corners too:
//!
//! - `*` and `?` never match `/`; a `[...]` class, negated or not, may.
//! - `**` followed by more pattern is `(.*/)?` — nothing, or any run of characters ending in `/`
//!   — whether or not a `/` follows it in the pattern (`a**b` matches `ab` and `a/x/b`, not
//!   `axb`). A final `**` is `.*`. Both stop at a newline, as `.` does in Go's regexp.
//! - `[!a]` is the class of `!` and `a` (only `^` negates); `[[:digit:]]` is a POSIX class.
//! - A bare `^` stays an anchor in the regular expression, so it holds only at the start of the
//!   path ([`Token::TextStart`]); `a^*` never matches.
//!
//! Where Docker's translation produces something other than the literal reading, and a user
//! could not have meant it, parsing fails instead ([`PatternError::UnsupportedEscape`],
//! [`PatternError::WildcardInClass`]); where the regular expression would not compile at all,
//! parsing fails ([`PatternError::ReversedRange`], [`PatternError::UnknownPosixClass`],
//! [`PatternError::UnterminatedClass`]) — Docker fails the build too, though only once the
//! pattern is first consulted for some path.
//!
//! Invariant: [`matches`] runs in time linear in `path length × token count` (a set-of-states
//! simulation, no backtracking, no recursion), so no pattern or path can make it blow up.

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("`[` has no closing `]`")]
    UnterminatedClass,
    #[error("`\\` at the end escapes nothing")]
    TrailingBackslash,
    #[error("`{0}` where a character of a `[...]` class is expected (a literal `{0}` is `\\{0}`)")]
    MisplacedInClass(char),
    #[error("range `{lo}-{hi}` in a `[...]` class runs backwards")]
    ReversedRange { lo: char, hi: char },
    #[error("unknown character class `[:{0}:]`")]
    UnknownPosixClass(String),
    #[error(
        "`{0}` inside `[...]` is not supported: docker turns it into a wildcard inside the class, \
         which garbles the class (write `\\{0}` for the character)"
    )]
    WildcardInClass(char),
    #[error(
        "escape `\\{0}` is not supported: docker hands it to a regular expression, where it does \
         not mean `{0}` (write `{0}` without the `\\`)"
    )]
    UnsupportedEscape(char),
}

/// One step of a wildcard pattern, as Docker's regular expression reads it.
#[derive(Debug, Clone)]
pub(super) enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` with more pattern after it: nothing, or any run of non-newline characters ending
    /// in `/`.
    AnyDirs,
    /// `**` at the end: any run of non-newline characters.
    AnyTail,
    Class(Class),
    /// A bare `^`: holds only at the start of the path.
    TextStart,
}

#[derive(Debug, Clone)]
pub(super) struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    /// `[:name:]` (or `[:^name:]` when `negated`); `name` is one of [`POSIX_CLASSES`].
    Posix {
        name: &'static str,
        negated: bool,
    },
}

const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Go's regexp POSIX classes, which are ASCII-only.
fn posix_contains(name: &str, c: char) -> bool {
    match name {
        "alnum" => c.is_ascii_alphanumeric(),
        "alpha" => c.is_ascii_alphabetic(),
        "ascii" => c.is_ascii(),
        "blank" => c == ' ' || c == '\t',
        "cntrl" => c.is_ascii_control(),
        "digit" => c.is_ascii_digit(),
        "graph" => c.is_ascii_graphic(),
        "lower" => c.is_ascii_lowercase(),
        "print" => c.is_ascii_graphic() || c == ' ',
        "punct" => c.is_ascii_punctuation(),
        "space" => matches!(c, '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' '),
        "upper" => c.is_ascii_uppercase(),
        "word" => c.is_ascii_alphanumeric() || c == '_',
        "xdigit" => c.is_ascii_hexdigit(),
        _ => false,
    }
}

impl Class {
    fn contains(&self, c: char) -> bool {
        let hit = self.items.iter().any(|item| match *item {
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Posix { name, negated } => posix_contains(name, c) != negated,
        });
        hit != self.negated
    }
}

/// Checks `pattern` against Go's `filepath.Match` grammar, which Docker applies to every
/// pattern before anything else: `\` must escape something, and a `[` opens a non-empty class
/// of characters and `lo-hi` ranges, closed by `]`, in which an unescaped `-` or `]` cannot
/// stand where a character is expected.
pub(super) fn check_match_syntax(pattern: &str) -> Result<(), PatternError> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return Err(PatternError::TrailingBackslash),
            '[' => {
                chars.next_if_eq(&'^');
                let mut ranges = 0;
                while chars.next_if(|&c| c == ']' && ranges > 0).is_none() {
                    class_char(&mut chars)?;
                    if chars.next_if_eq(&'-').is_some() {
                        class_char(&mut chars)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One class character for [`check_match_syntax`]; like Go, it must not end the pattern.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars>) -> Result<(), PatternError> {
    match chars.next() {
        None => return Err(PatternError::UnterminatedClass),
        Some(c @ ('-' | ']')) => return Err(PatternError::MisplacedInClass(c)),
        Some('\\') if chars.next().is_none() => return Err(PatternError::UnterminatedClass),
        Some(_) => {}
    }
    match chars.peek() {
        None => Err(PatternError::UnterminatedClass),
        Some(_) => Ok(()),
    }
}

/// Reads a pattern that passed [`check_match_syntax`] as Docker's regular expression does.
pub(super) fn tokenize(pattern: &str) -> Result<Vec<Token>, PatternError> {
    let mut tokens = Vec::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let token = match c {
            '*' => match rest.strip_prefix('*') {
                Some(after) => {
                    rest = after.strip_prefix('/').unwrap_or(after);
                    if rest.is_empty() { Token::AnyTail } else { Token::AnyDirs }
                }
                None => Token::Star,
            },
            '?' => Token::AnyChar,
            '^' => Token::TextStart,
            '\\' => Token::Literal(escaped(&mut rest)?),
            '[' => Token::Class(class(&mut rest)?),
            c => Token::Literal(c),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// The character after a `\`. Go's regexp takes an escaped ASCII punctuation or control
/// character literally; an escaped letter or digit is a class (`\d`), an assertion (`\b`), a
/// control character (`\n`) or an error, and an escaped non-ASCII character is an error.
fn escaped(rest: &mut &str) -> Result<char, PatternError> {
    let c = rest.chars().next().ok_or(PatternError::TrailingBackslash)?;
    *rest = &rest[c.len_utf8()..];
    if c.is_ascii() && !c.is_ascii_alphanumeric() {
        Ok(c)
    } else {
        Err(PatternError::UnsupportedEscape(c))
    }
}

/// A `[...]` class after its `[`, with the rules of Go's regexp: a `]` first is a character,
/// `[:name:]` is a POSIX class when a `:]` follows, `lo-hi` is a range unless `-` comes last.
fn class(rest: &mut &str) -> Result<Class, PatternError> {
    let negated = match rest.strip_prefix('^') {
        Some(after) => {
            *rest = after;
            true
        }
        None => false,
    };
    let mut items = Vec::new();
    let mut first = true;
    loop {
        if !first && let Some(after) = rest.strip_prefix(']') {
            *rest = after;
            return Ok(Class { negated, items });
        }
        first = false;
        if rest.len() > 2
            && let Some(after) = rest.strip_prefix("[:")
            && let Some(end) = after.find(":]")
        {
            let (negated, name) = match &after[..end] {
                name if name.starts_with('^') => (true, &name[1..]),
                name => (false, name),
            };
            let known = POSIX_CLASSES.iter().find(|known| **known == name);
            let name = *known.ok_or_else(|| PatternError::UnknownPosixClass(name.to_string()))?;
            items.push(ClassItem::Posix { name, negated });
            *rest = &after[end + 2..];
            continue;
        }
        let lo = class_member(rest)?;
        let mut hi = lo;
        let mut after_dash = rest.chars();
        if after_dash.next() == Some('-') && after_dash.next().is_some_and(|c| c != ']') {
            *rest = &rest[1..];
            hi = class_member(rest)?;
            if hi < lo {
                return Err(PatternError::ReversedRange { lo, hi });
            }
        }
        items.push(ClassItem::Range(lo, hi));
    }
}

fn class_member(rest: &mut &str) -> Result<char, PatternError> {
    let c = rest.chars().next().ok_or(PatternError::UnterminatedClass)?;
    *rest = &rest[c.len_utf8()..];
    match c {
        '\\' => escaped(rest),
        '*' | '?' => Err(PatternError::WildcardInClass(c)),
        c => Ok(c),
    }
}

/// Whether the whole of `path` matches `tokens`.
pub(super) fn matches(tokens: &[Token], path: &str) -> bool {
    let mut states = States::new(tokens.len());
    states.enter(tokens, 0, true);
    for c in path.chars() {
        let mut next = States::new(tokens.len());
        for &k in &states.outer {
            let Some(token) = tokens.get(k) else { continue };
            match token {
                Token::Literal(l) if c == *l => next.enter(tokens, k + 1, false),
                Token::AnyChar if c != '/' => next.enter(tokens, k + 1, false),
                Token::Class(class) if class.contains(c) => next.enter(tokens, k + 1, false),
                Token::Star if c != '/' => next.enter(tokens, k, false),
                Token::AnyTail if c != '\n' => next.enter(tokens, k, false),
                Token::AnyDirs => next.step_dirs(tokens, k, c),
                _ => {}
            }
        }
        for &k in &states.inner {
            next.step_dirs(tokens, k, c);
        }
        if next.outer.is_empty() && next.inner.is_empty() {
            return false;
        }
        states = next;
    }
    states.outer.contains(&tokens.len())
}

/// The simulation's state set: `outer` holds `k` when `tokens[..k]` matched the text read so
/// far; `inner` holds the index of an [`Token::AnyDirs`] that has read characters but not yet
/// a closing `/`. Each index appears at most once in each list.
struct States {
    outer: Vec<usize>,
    inner: Vec<usize>,
    in_outer: Vec<bool>,
    in_inner: Vec<bool>,
}

impl States {
    fn new(tokens: usize) -> Self {
        States {
            outer: Vec::new(),
            inner: Vec::new(),
            in_outer: vec![false; tokens + 1],
            in_inner: vec![false; tokens + 1],
        }
    }

    /// Adds state `k` and every state reachable from it without reading a character.
    fn enter(&mut self, tokens: &[Token], mut k: usize, at_start: bool) {
        while !self.in_outer[k] {
            self.in_outer[k] = true;
            self.outer.push(k);
            match tokens.get(k) {
                Some(Token::Star | Token::AnyDirs | Token::AnyTail) => k += 1,
                Some(Token::TextStart) if at_start => k += 1,
                _ => return,
            }
        }
    }

    /// [`Token::AnyDirs`] at `k` reads `c`: `.` takes anything but a newline, and a `/` may
    /// also close the group.
    fn step_dirs(&mut self, tokens: &[Token], k: usize, c: char) {
        if c != '\n' && !self.in_inner[k] {
            self.in_inner[k] = true;
            self.inner.push(k);
        }
        if c == '/' {
            self.enter(tokens, k + 1, false);
        }
    }
}
