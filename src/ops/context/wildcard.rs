//! COPY source wildcards: Go's `filepath.Match` for one path component.
//!
//! BuildKit resolves a COPY source like `src/*.go` by splitting it at the first component with
//! a wildcard, resolving the part before it (following symlinks), and matching the rest with
//! Go's `filepath.Match` against the paths beneath. Because `*`, `?` and `[...]` never match
//! `/` there, matching is component by component, which is what this module does.
//!
//! The grammar, as in Go:
//!
//! - `*` — any run of characters; `?` — any one character;
//! - `[`, an optional `^`, one or more `c` or `lo-hi`, then `]` — a character class (`^`
//!   negates; `!` does **not** negate, unlike the shell);
//! - `\c` — the character `c`, inside or outside a class.
//!
//! Go reports a malformed pattern (`[`, `[]`, `[a-]`, a trailing `\`) as `ErrBadPattern` and
//! BuildKit then silently matches nothing; here parsing fails with a [`WildcardError`] so the
//! user learns why.
//!
//! Invariant: [`Wildcard::matches`] runs in `O(name × pattern)` time (the classic
//! last-star backtracking, which never revisits more than one star).

/// Why a wildcard component is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WildcardError {
    #[error("`[` has no closing `]`")]
    UnterminatedClass,
    #[error("`[]` is an empty character class")]
    EmptyClass,
    #[error("`{0}` cannot start a range in a `[...]` class (escape it as `\\{0}`)")]
    MisplacedInClass(char),
    #[error("range `{lo}-{hi}` in a `[...]` class runs backwards")]
    ReversedRange { lo: char, hi: char },
    #[error("`\\` at the end escapes nothing")]
    TrailingBackslash,
}

/// Whether a component has an unescaped `*`, `?` or `[` (Go's `containsWildcards` in
/// BuildKit's copy code). A component without one is a literal name, backslashes included.
pub fn contains_wildcards(component: &str) -> bool {
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// One parsed wildcard component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    Star,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

impl Wildcard {
    /// Parses one component (no `/` expected; a `/` would only ever be a literal character).
    pub fn parse(component: &str) -> Result<Wildcard, WildcardError> {
        let mut tokens = Vec::new();
        let mut chars = component.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::Star,
                '?' => Token::AnyChar,
                '\\' => Token::Literal(chars.next().ok_or(WildcardError::TrailingBackslash)?),
                '[' => parse_class(&mut chars)?,
                c => Token::Literal(c),
            };
            // Runs of stars mean the same as one star.
            if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                tokens.push(token);
            }
        }
        Ok(Wildcard { tokens })
    }

    /// Whether `name` (one component) matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let tokens = &self.tokens;
        let (mut t, mut n) = (0, 0);
        // Where to resume after the most recent star: (token after it, name position).
        let mut resume: Option<(usize, usize)> = None;
        while n < name.len() {
            let step = match tokens.get(t) {
                Some(Token::Star) => {
                    resume = Some((t + 1, n));
                    t += 1;
                    continue;
                }
                Some(token) => token.matches_char(name[n]),
                None => false,
            };
            if step {
                t += 1;
                n += 1;
            } else if let Some((star_next, star_at)) = resume {
                // Let the star swallow one more character and try again.
                t = star_next;
                n = star_at + 1;
                resume = Some((star_next, star_at + 1));
            } else {
                return false;
            }
        }
        tokens[t..].iter().all(|token| *token == Token::Star)
    }
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyChar => c != '/',
            Token::Star => unreachable!("stars are handled by the matcher loop"),
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// Parses a class after its `[`, up to and including the `]`.
fn parse_class(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Token, WildcardError> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        match chars.peek() {
            None => return Err(WildcardError::UnterminatedClass),
            Some(']') if !ranges.is_empty() => {
                chars.next();
                return Ok(Token::Class { negated, ranges });
            }
            Some(']') => return Err(WildcardError::EmptyClass),
            Some(_) => {}
        }
        let lo = class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() { class_char(chars)? } else { lo };
        if hi < lo {
            return Err(WildcardError::ReversedRange { lo, hi });
        }
        ranges.push((lo, hi));
    }
}

/// One character of a class (Go's `getEsc`): `-` and `]` must be escaped where a range bound
/// is expected.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, WildcardError> {
    match chars.next() {
        None => Err(WildcardError::UnterminatedClass),
        Some(c @ ('-' | ']')) => Err(WildcardError::MisplacedInClass(c)),
        Some('\\') => chars.next().ok_or(WildcardError::UnterminatedClass),
        Some(c) => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Wildcard::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("*.go", "main.go"));
        assert!(matches("*.go", ".go"));
        assert!(!matches("*.go", "main.rs"));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("*", ""));
        assert!(matches("**", "anything"));
        assert!(matches("?", "x"));
        assert!(!matches("?", ""));
        assert!(!matches("?", "xy"));
        assert!(matches("?é", "xé"));
        assert!(matches("*a", "aaaa"));
        assert!(!matches("a*", "ba"));
    }

    #[test]
    fn classes_as_go_reads_them() {
        assert!(matches("[abc]x", "bx"));
        assert!(!matches("[abc]x", "dx"));
        assert!(matches("[a-c]", "b"));
        assert!(matches("[^a-c]", "d"));
        assert!(!matches("[^a-c]", "b"));
        // `!` is an ordinary character in Go's classes.
        assert!(matches("[!a]", "!"));
        assert!(!matches("[!a]", "b"));
        assert!(matches("[\\]]", "]"));
        assert!(matches("[\\-]", "-"));
        assert!(matches("file[0-9][0-9]", "file42"));
    }

    #[test]
    fn escapes() {
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "x"));
        assert!(matches("a\\?b", "a?b"));
        assert!(!matches("a\\?b", "axb"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert_eq!(Wildcard::parse("[").unwrap_err(), WildcardError::UnterminatedClass);
        assert_eq!(Wildcard::parse("[a").unwrap_err(), WildcardError::UnterminatedClass);
        assert_eq!(Wildcard::parse("[]").unwrap_err(), WildcardError::EmptyClass);
        assert_eq!(Wildcard::parse("[^]").unwrap_err(), WildcardError::EmptyClass);
        assert_eq!(Wildcard::parse("[a-]").unwrap_err(), WildcardError::MisplacedInClass(']'));
        assert_eq!(Wildcard::parse("[-a]").unwrap_err(), WildcardError::MisplacedInClass('-'));
        assert_eq!(
            Wildcard::parse("[z-a]").unwrap_err(),
            WildcardError::ReversedRange { lo: 'z', hi: 'a' }
        );
        assert_eq!(Wildcard::parse("a\\").unwrap_err(), WildcardError::TrailingBackslash);
    }

    #[test]
    fn wildcard_detection() {
        assert!(contains_wildcards("*.go"));
        assert!(contains_wildcards("a?"));
        assert!(contains_wildcards("[ab]"));
        assert!(!contains_wildcards("main.go"));
        assert!(!contains_wildcards("a\\*b"));
        assert!(!contains_wildcards("odd]name"));
    }

    #[test]
    fn long_names_do_not_blow_up() {
        let pattern = Wildcard::parse("*a*a*a*a*a*a*b").unwrap();
        let name = "a".repeat(5000);
        assert!(!pattern.matches(&name));
    }
}
