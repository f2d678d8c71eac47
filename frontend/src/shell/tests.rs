//! Behaviour of [`Lexer`] that BuildKit's own lexer tests pin down (matched/unmatched sets,
//! patterns, raw quotes and escapes, skipping unset variables), in kiln's words, plus the
//! quirks kiln reproduces on purpose.

use std::collections::BTreeSet;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn word(input: &str, pairs: &[(&str, &str)]) -> Result<WordExpansion, ShellError> {
    Lexer::new('\\').process_word(input, &env(pairs))
}

/// Expands `input` and checks the value and both look-up sets.
#[track_caller]
fn check(input: &str, pairs: &[(&str, &str)], value: &str, matched: &[&str], unmatched: &[&str]) {
    let got = word(input, pairs).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    assert_eq!(got.value, value, "value of {input:?}");
    assert_eq!(got.matched, set(matched), "matched of {input:?}");
    assert_eq!(got.unmatched, set(unmatched), "unmatched of {input:?}");
}

#[track_caller]
fn fails(input: &str, pairs: &[(&str, &str)]) -> ShellError {
    match word(input, pairs) {
        Ok(got) => panic!("{input:?} expanded to {:?}, expected an error", got.value),
        Err(error) => error,
    }
}

const FOO_BAR: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];

#[test]
fn records_set_and_unset_lookups() {
    check("x", &[("DUMMY", "dummy")], "x", &[], &[]);
    check("x ${UNUSED}", &[("DUMMY", "dummy")], "x ", &[], &["UNUSED"]);
    check("x ${FOO}", &[("FOO", "y")], "x y", &["FOO"], &[]);
    check("$FOO$FOO", &[("FOO", "y")], "yy", &["FOO"], &[]);
}

#[test]
fn default_and_alternative_values() {
    check("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", FOO_BAR, "xxx  ccc", &["FOO", "BAR"], &["BAZ"]);
    check("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", FOO_BAR, "xxx bbb ccc", &["FOO", "BAR"], &["BAZ"]);
    check("${FOO:-}", FOO_BAR, "xxx", &["FOO"], &[]);
    check("${FOO:-}", &[], "", &[], &["FOO"]);
    check("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", FOO_BAR, "aaa bbb ", &["FOO", "BAR"], &["BAZ"]);
    check("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", FOO_BAR, "aaa  ", &["FOO", "BAR"], &["BAZ"]);
}

#[test]
fn nested_words_expand() {
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        word(release, &pairs).unwrap().value
    };
    assert_eq!(
        with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
        "something-v1.2.3.linux-arm-v7.tar.gz"
    );
    assert_eq!(
        with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
    assert_eq!(with(&[("TARGETARCH", "arm64")]), "something-v1.2.3.linux-arm64.tar.gz");
    // The word of an unused branch is still expanded, so its variables are recorded.
    check("${FOO:-$BAR}", FOO_BAR, "xxx", &["FOO", "BAR"], &[]);
}

#[test]
fn required_variables() {
    check("${FOO?aaa}", FOO_BAR, "xxx", &["FOO"], &[]);
    check("${BAR?bbb}", FOO_BAR, "", &["BAR"], &[]);
    check("${FOO:?aaa}", FOO_BAR, "xxx", &["FOO"], &[]);
    assert_eq!(
        fails("${BAZ?ccc}", FOO_BAR),
        ShellError::Required { name: "BAZ".into(), message: "ccc".into() }
    );
    assert_eq!(fails("${BAR:?bbb}", FOO_BAR).to_string(), "BAR: bbb");
    assert_eq!(fails("${BAZ:?}", FOO_BAR).to_string(), "BAZ: is not allowed to be unset");
    assert_eq!(fails("${BAR:?}", FOO_BAR).to_string(), "BAR: is not allowed to be empty");
    // The message is itself expanded.
    let message = "${VAR:?message here$ARG}";
    assert_eq!(word(message, &[("VAR", "plain"), ("ARG", "x")]).unwrap().value, "plain");
    assert_eq!(fails(message, &[("VAR", ""), ("ARG", "x")]).to_string(), "VAR: message herex");
    assert_eq!(fails(message, &[("ARG", "x")]).to_string(), "VAR: message herex");
    let unset_only = "${VAR?message here$ARG}";
    assert_eq!(word(unset_only, &[("VAR", ""), ("ARG", "x")]).unwrap().value, "");
    assert_eq!(fails(unset_only, &[("ARG", "x")]).to_string(), "VAR: message herex");
}

#[test]
fn unsupported_modifiers_fail() {
    for input in ["${FOO=aaa}", "${FOO=:aaa}", "${FOO=}", "${FOO:=x}", "${FOO:YYY}", "${FOO.}"] {
        assert!(matches!(fails(input, FOO_BAR), ShellError::UnsupportedModifier { .. }), "{input}");
    }
    assert_eq!(
        fails("${FOO:=x}", FOO_BAR).to_string(),
        "unsupported modifier (:=) in substitution"
    );
    for input in ["${FOO:#}", "${FOO:##}", "${FOO:%}", "${FOO:%%}"] {
        assert!(matches!(fails(input, &[]), ShellError::UnsupportedModifier { .. }), "{input}");
    }
}

#[test]
fn trims_prefixes_and_suffixes() {
    let foo = |value: &'static str| vec![("FOO", value)];
    check(r"${FOO#()[]{\}^$.\*\?|\\}", &foo(r"()[]{}^$.*?|\x"), "x", &["FOO"], &[]);
    check(r"${FOO%%\**}", &foo("xx**"), "xx", &["FOO"], &[]);
    check("${FOO#*x*y}", &foo("xxyy"), "y", &["FOO"], &[]);
    check("${FOO#*}", &foo("xxyy"), "xxyy", &["FOO"], &[]);
    check("${FOO#}", &foo("xxyy"), "xxyy", &["FOO"], &[]);
    check("${FOO##*x}", &foo("xxyy"), "yy", &["FOO"], &[]);
    check("${FOO##}", &foo("xxyy"), "xxyy", &["FOO"], &[]);
    check(r"${FOO#?\?}", &foo("???y"), "?y", &["FOO"], &[]);
    check(r"${FOO%%\**\*}", &foo("a***yy*"), "a", &["FOO"], &[]);
    check("${FOO%}", &foo("xxyy"), "xxyy", &["FOO"], &[]);
    check("${FOO%.*}", &foo("a.tar.gz"), "a.tar", &["FOO"], &[]);
    check("${FOO%%.*}", &foo("a.tar.gz"), "a", &["FOO"], &[]);
    check("${ABC:-.}${FOO%x}${ABC:-.}", &foo("xxyy"), ".xxyy.", &["FOO"], &["ABC"]);
    let bar = |value: &'static str| vec![("FOO", "xxyy"), ("BAR", value)];
    check("${FOO#$BAR}", &bar("x"), "xyy", &["FOO", "BAR"], &[]);
    check("${FOO#$BAR}", &bar(""), "xxyy", &["FOO", "BAR"], &[]);
    check("${FOO%%$BAR}", &bar(""), "xxyy", &["FOO", "BAR"], &[]);
    // `##` can come from an expansion: the operator is decided on the expanded word.
    check("${FOO#$BAR}", &bar("#*x"), "yy", &["FOO", "BAR"], &[]);
    // Brackets are literal, as in BuildKit.
    check("${FOO#[ab]}", &[("FOO", "[ab]c")], "c", &["FOO"], &[]);
    // Unset variables trim as empty, but the pattern must still be valid.
    check("${NOPE#x}", &[], "", &[], &["NOPE"]);
    let error = fails(r"${NOPE#\x}", &[]);
    assert_eq!(
        error,
        ShellError::InvalidPattern {
            pattern: r"\x".into(),
            source: PatternError::InvalidEscape('x')
        }
    );
    assert_eq!(error.to_string(), r"invalid pattern (\x) in substitution: invalid escape '\x'");
}

#[test]
fn replaces_matches() {
    let wildcards = [("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")];
    check(
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        &wildcards,
        "/foo.*/*.txt - /foo..*.txt",
        &["FOO", "NEEDLE"],
        &[],
    );
    let slashes = [("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")];
    check(
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        &slashes,
        "/tmp/bar.txt - /bar.txt",
        &["FOO", "NEEDLE"],
        &[],
    );
    let single = [("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")];
    check(
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        &single,
        "/foo/b/c.txt - /foo/c.txt",
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    );
    let scheme = [("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")];
    check(
        "${FOO/$NEEDLE/$REPLACEMENT}",
        &scheme,
        "https://google.de",
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    );
    // Escaped delimiters: the pattern keeps `\/` (meaning `/`), the replacement keeps `\/`.
    check(r"${FOO//\//\/}", &[("FOO", "/tmp/foo.txt")], r"\/tmp\/foo.txt", &["FOO"], &[]);
    check("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy", &["FOO", "BAR"], &[]);
    check("${FOO///}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]);
    check("${FOO///}", &[], "", &[], &["FOO"]);
    assert_eq!(fails("${FOO//ww}", &[("FOO", "xxyy")]), ShellError::MissingSlash);
    assert_eq!(fails("${FOO//}", &[("FOO", "xxyy")]), ShellError::MissingSlash);
    assert_eq!(fails("${FOO/a/b", &[]), ShellError::MissingClosingBrace);
}

#[test]
fn syntax_errors() {
    assert_eq!(fails("${", &[]), ShellError::MissingClosingBrace);
    assert_eq!(fails("${FOO", &[]), ShellError::MissingClosingBrace);
    assert_eq!(fails("${FOO:-x", &[]), ShellError::MissingClosingBrace);
    assert_eq!(fails("${}", &[]), ShellError::BadSubstitution);
    assert_eq!(fails("${:-x}", &[]), ShellError::BadSubstitution);
    assert_eq!(fails("${{x}", &[]), ShellError::BadSubstitution);
    assert_eq!(fails("'abc", &[]), ShellError::UnterminatedSingleQuote);
    assert_eq!(fails("\"abc", &[]), ShellError::UnterminatedDoubleQuote);
    assert_eq!(
        fails("\"abc", &[]).to_string(),
        "unexpected end of statement while looking for matching double-quote"
    );
    // Inside a `${...}` word, running out of input reports the missing brace.
    assert_eq!(fails("${FOO:-\"abc", &[]), ShellError::MissingClosingBrace);
    assert_eq!(fails("${FOO:-${BAR:?gone}", &[]), ShellError::MissingClosingBrace);
    assert_eq!(fails("${FOO:-${BAR:?gone}}x", &[]).to_string(), "BAR: gone");
}

#[test]
fn quotes_and_escapes() {
    let lexer = Lexer::new('\\');
    let expand = |input: &str| lexer.process_word(input, &env(&[("V", "v")])).unwrap().value;
    assert_eq!(expand(r#"a'b c'"d $V \" \$V \\ \x""#), r#"ab cd v " $V \ \x"#);
    assert_eq!(expand(r"'\$V'"), r"\$V");
    assert_eq!(expand(r"a\ b\$V\\"), r"a b$V\");
    assert_eq!(expand(r"trailing\"), "trailing");
    assert_eq!(expand("$ $. ${V}$"), "$ $. v$");
}

#[test]
fn backtick_escape() {
    let lexer = Lexer::new('`');
    let pairs = env(&[("V", "v")]);
    let expand = |input: &str| lexer.process_word(input, &pairs).unwrap().value;
    assert_eq!(expand(r"C:\path\$V"), r"C:\path\v");
    assert_eq!(expand("`$V"), "$V");
    assert_eq!(expand("a``b"), "a`b");
    assert_eq!(expand(r#""`"`$V``\""#), r#""$V`\"#);
    assert_eq!(expand("end`"), "end");
    assert_eq!(lexer.process_words("a` b c", &pairs).unwrap(), ["a b", "c"]);
}

#[test]
fn raw_quotes_and_escapes_are_kept() {
    let pairs = env(&[("V", "v")]);
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    assert_eq!(lexer.process_word(r#"'a$V'"b$V"c"#, &pairs).unwrap().value, r#"'a$V'"bv"c"#);
    lexer.raw_quotes = false;
    lexer.raw_escapes = true;
    assert_eq!(lexer.process_word(r"a\$V\\", &pairs).unwrap().value, r"a\$V\\");
    // In double quotes a non-escapable character keeps the escape twice (once raw, once literal).
    assert_eq!(lexer.process_word(r#""\t\$V""#, &pairs).unwrap().value, r"\\t\$V");
    // Words after `:-` are read without raw escapes; patterns are always read with them.
    assert_eq!(lexer.process_word(r"${X:-a\$b}", &pairs).unwrap().value, "a$b");
}

#[test]
fn skip_process_quotes_treats_quotes_as_characters() {
    let mut lexer = Lexer::new('\\');
    lexer.skip_process_quotes = true;
    let pairs = env(&[("V", "v w")]);
    assert_eq!(lexer.process_word(r#"'$V' "x""#, &pairs).unwrap().value, r#"'v w' "x""#);
    assert_eq!(lexer.process_words(r#"'$V' "x""#, &pairs).unwrap(), ["'v", "w'", "\"x\""]);
}

#[test]
fn skip_unset_env_leaves_unset_references() {
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let pairs = env(&[("SET", "yes"), ("EMPTY", "")]);
    let expand = |input: &str| lexer.process_word(input, &pairs).unwrap();
    assert_eq!(expand("$SET $NOPE ${NOPE}").value, "yes $NOPE ${NOPE}");
    assert_eq!(expand("${NOPE:-$SET} ${EMPTY:-d}").value, "${NOPE:-yes} d");
    assert_eq!(
        expand("${NOPE#x} ${NOPE//a/b} ${NOPE:?m}").value,
        "${NOPE#x} ${NOPE/a/b} ${NOPE:?m}"
    );
    // Even an unsupported modifier is left alone when the variable is unset.
    assert_eq!(expand("${NOPE:=x}").value, "${NOPE:=x}");
    assert!(lexer.process_word("${SET:=x}", &pairs).is_err());
    let got = expand("$SET$NOPE");
    assert_eq!(got.matched, set(&["SET"]));
    assert_eq!(got.unmatched, set(&["NOPE"]));
}

#[test]
fn splits_words_after_expansion() {
    let lexer = Lexer::new('\\');
    let pairs = env(&[("SPACE", "a  b"), ("EMPTY", "")]);
    let words = |input: &str| lexer.process_words(input, &pairs).unwrap();
    assert_eq!(words("x$SPACE\"$SPACE\" 'q  r'"), ["xa", "ba  b", "q  r"]);
    assert_eq!(words("$EMPTY '' \"\" z"), ["z"]);
    assert_eq!(words("cat <<  EOF >out"), ["cat", "<<  EOF", ">out"]);
    assert!(words("   ").is_empty());
}

#[test]
fn nested_word_drops_the_word_in_progress_when_splitting() {
    // BuildKit quirk (see words.rs): the split words lose text before a nested `${...}` word,
    // while the joined value does not.
    let lexer = Lexer::new('\\');
    let pairs = env(&[("P", "80")]);
    assert_eq!(lexer.process_words("hello${X:-a}b c", &pairs).unwrap(), ["ab", "c"]);
    // Text already inside the quotes is the quote's own and survives; text before it does not.
    assert_eq!(lexer.process_words("x \"y${P#8}z\"", &pairs).unwrap(), ["x", "y0z"]);
    assert_eq!(lexer.process_words("ab\"c${X:-d}e\"", &pairs).unwrap(), ["cde"]);
    assert_eq!(lexer.process_words("a$P b${P}", &pairs).unwrap(), ["a80", "b80"]);
    assert_eq!(lexer.process_word("hello${X:-a}b", &pairs).unwrap().value, "helloab");
}

#[test]
fn parameters_and_names() {
    let pairs = [("1", "one"), ("@", "at"), ("안녕", "hi"), ("_x9", "u")];
    let expand = |input: &str| word(input, &pairs).unwrap().value;
    assert_eq!(expand("$1 ${1}x $12 $@@ ${@}"), "one onex  at@ at");
    assert_eq!(expand("$안녕! $_x9."), "hi! u.");
    // A name cannot start with a digit: `$1a` is `$1` then `a`.
    assert_eq!(expand("$1a"), "onea");
    assert_eq!(word("$9x", &[]).unwrap().unmatched, set(&["9"]));
}

#[test]
fn byte_order_mark_at_start_is_skipped() {
    assert_eq!(word("\u{feff}a\u{feff}", &[]).unwrap().value, "a\u{feff}");
}

#[test]
fn nesting_is_bounded() {
    let limit = super::lexer::MAX_NESTING;
    let nested = |levels: usize| format!("{}x{}", "\"${A:-".repeat(levels), "}\"".repeat(levels));
    assert_eq!(word(&nested(limit), &[]).unwrap().value, "x");
    assert_eq!(fails(&nested(limit + 1), &[]), ShellError::TooDeep { limit });
    // Far deeper input is an error, not a stack overflow.
    assert_eq!(fails(&"${A:-".repeat(100_000), &[]), ShellError::TooDeep { limit });
}
