//! Properties of word expansion that hold for any input: it never panics (whatever the
//! escape character and flags), plain text comes back unchanged, and quoting or escaping
//! makes any text literal.

use kiln_frontend::shell::Lexer;
use proptest::prelude::*;

/// Fragments that reach deep into the expander far more often than random text does.
const FRAGMENTS: &[&str] = &[
    "$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "\\", "`", "'", "\"", "<", "<<", " ", "\t",
    "\n", "a", "X", "1", "@", "*", ".", "[", "]", "=", "안", "\u{feff}", "\u{3000}", "٣", "$X",
    "${X", "${Y:-", "${X#", "${X%%", "${X//", "${X/", "${X:?", "${X:+", "\\*", "\\}", "\\/", "${@",
    "$$",
];

fn env() -> Vec<(String, String)> {
    [("X", "a*b c"), ("Y", ""), ("Z", "\\"), ("1", "one")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lexers() -> Vec<Lexer> {
    let mut all = Vec::new();
    for escape in ['\\', '`'] {
        for flags in 0..16u8 {
            let mut lexer = Lexer::new(escape);
            lexer.raw_quotes = flags & 1 != 0;
            lexer.raw_escapes = flags & 2 != 0;
            lexer.skip_process_quotes = flags & 4 != 0;
            lexer.skip_unset_env = flags & 8 != 0;
            all.push(lexer);
        }
    }
    all
}

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|parts| parts.concat())
}

/// Characters with no meaning to the lexer.
fn plain_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.,:/=@한국어\t\u{3000}-]{0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(word in any::<String>()) {
        let env = env();
        for lexer in lexers() {
            let _ = lexer.process_word(&word, &env);
            let _ = lexer.process_words(&word, &env);
        }
    }

    #[test]
    fn expansion_syntax_never_panics(word in fragments()) {
        let env = env();
        for lexer in lexers() {
            let joined = lexer.process_word(&word, &env);
            let split = lexer.process_words(&word, &env);
            // Both entry points read the same syntax, so they fail on the same inputs.
            prop_assert_eq!(joined.is_ok(), split.is_ok(), "{:?} with {:?}", word, lexer);
        }
    }

    #[test]
    fn plain_text_is_unchanged_and_split_at_white_space(text in plain_text()) {
        let lexer = Lexer::new('\\');
        let expansion = lexer.process_word(&text, &env()).unwrap();
        prop_assert_eq!(&expansion.value, &text);
        prop_assert!(expansion.matched.is_empty() && expansion.unmatched.is_empty());
        let words = lexer.process_words(&text, &env()).unwrap();
        prop_assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn single_quotes_make_text_literal(text in "[^']{0,40}") {
        let lexer = Lexer::new('\\');
        let quoted = format!("'{text}'");
        prop_assert_eq!(lexer.process_word(&quoted, &env()).unwrap().value, text.clone());
        let words = lexer.process_words(&quoted, &env()).unwrap();
        let expected: Vec<String> = if text.is_empty() { vec![] } else { vec![text] };
        prop_assert_eq!(words, expected);
    }

    #[test]
    fn escaping_every_character_makes_text_literal(text in any::<String>(), backtick in any::<bool>()) {
        let escape = if backtick { '`' } else { '\\' };
        let lexer = Lexer::new(escape);
        let escaped: String = text.chars().flat_map(|c| [escape, c]).collect();
        prop_assert_eq!(lexer.process_word(&escaped, &env()).unwrap().value, text.clone());
        let words = lexer.process_words(&escaped, &env()).unwrap();
        let expected: Vec<String> = if text.is_empty() { vec![] } else { vec![text] };
        prop_assert_eq!(words, expected);
    }
}
