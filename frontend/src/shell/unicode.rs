//! The character classes BuildKit's lexer is written against, which are Go's `unicode`
//! predicates rather than Rust's.
//!
//! Invariants:
//! - [`is_letter`] is Unicode general category L (Lu, Ll, Lt, Lm, Lo), like Go's
//!   `unicode.IsLetter`. Rust's `char::is_alphabetic` is wider (it also takes Nl and combining
//!   marks), so it must not be used for names.
//! - [`is_digit`] is category Nd, like Go's `unicode.IsDigit` (Rust's `is_numeric` also takes Nl
//!   and No).
//! - [`is_space`] is the Unicode White_Space property, like Go's `unicode.IsSpace`; Rust's
//!   `char::is_whitespace` is defined the same way.

use std::sync::LazyLock;

use regex::Regex;

static LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A\p{L}\z").expect("static letter class compiles"));
static DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A\p{Nd}\z").expect("static digit class compiles"));

/// Whether `c` is a letter (general category L).
pub(super) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    LETTER.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Whether `c` is a decimal digit (general category Nd), in any script.
pub(super) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    DIGIT.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Whether `c` separates words when an expansion is split.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Whether `c` can continue a variable name (`$name`, `${name}`) once it has started.
pub(super) fn is_name_char(c: char) -> bool {
    c == '_' || is_letter(c) || is_digit(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_follow_category_l_not_alphabetic() {
        for c in ['a', 'Z', 'é', 'ª', 'µ', '한', 'ж', 'ǅ'] {
            assert!(is_letter(c), "{c:?}");
        }
        // Nl (letter numbers) and combining marks are alphabetic in Rust but not letters in Go.
        for c in ['Ⅻ', '\u{0301}', '_', '1', ' ', '$'] {
            assert!(!is_letter(c), "{c:?}");
        }
    }

    #[test]
    fn digits_are_decimal_digits_in_any_script() {
        for c in ['0', '9', '٣', '७'] {
            assert!(is_digit(c), "{c:?}");
        }
        for c in ['²', 'Ⅻ', '½', 'a'] {
            assert!(!is_digit(c), "{c:?}");
        }
    }

    #[test]
    fn spaces_are_unicode_white_space() {
        for c in [' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{85}', '\u{a0}', '\u{3000}'] {
            assert!(is_space(c), "{c:?}");
        }
        for c in ['\u{200b}', 'x', '\0'] {
            assert!(!is_space(c), "{c:?}");
        }
    }
}
