//! Properties of the syntax layer on generated input: it never panics, every error points at
//! lines of the input, and every instruction's span lies within the input, in order.

use kiln_frontend::syntax::{SyntaxError, SyntaxTree, dump, parse_bytes, to_oracle_json};
use proptest::prelude::*;

/// Lines of the input as an editor counts them (a last line without newline counts).
fn line_count(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let lines = line_count(bytes);
    let result: Result<SyntaxTree, SyntaxError> = parse_bytes(bytes);
    match &result {
        Ok(tree) => {
            prop_assert!(!tree.nodes.is_empty());
            let mut previous_end = 0;
            for node in &tree.nodes {
                let span = node.span;
                prop_assert!(span.start_line > previous_end, "{span:?} after line {previous_end}");
                prop_assert!(span.start_line <= span.end_line && span.end_line <= lines);
                previous_end = span.end_line;
                prop_assert!(dump(node).starts_with('('));
            }
            for warning in &tree.warnings {
                prop_assert!(warning.span.start_line >= 1 && warning.span.end_line <= lines);
            }
        }
        Err(err) => {
            let span = err.span();
            prop_assert!(span.start_line >= 1, "{err}: {span:?}");
            prop_assert!(span.start_line <= span.end_line, "{err}: {span:?}");
            prop_assert!(span.end_line <= lines.max(1), "{err}: {span:?} of {lines} lines");
            prop_assert!(!err.to_string().is_empty());
        }
    }
    let json = to_oracle_json(&result);
    prop_assert_eq!(json["ok"].as_bool(), Some(result.is_ok()));
    Ok(())
}

const TOKENS: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "LABEL",
    "ARG",
    "ONBUILD",
    "HEALTHCHECK",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "VOLUME",
    "EXPOSE",
    "USER",
    "WORKDIR",
    "MAINTAINER",
    "STOPSIGNAL",
    "onbuild run",
    "bogus",
    " ",
    " ",
    "\t",
    "\\",
    "`",
    "\n",
    "\n",
    "\r\n",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "<<\"EOF\"",
    "3<<EOF",
    "<< END",
    "EOF",
    "\tEOF",
    "END",
    "'",
    "\"",
    "[",
    "]",
    ",",
    "\"a\"",
    "#",
    "# escape=`",
    "# escape=\\",
    "#syntax=x",
    "# check=a",
    "--flag=",
    "--",
    "--mount=type=bind,source=\"a b\"",
    "=",
    "a",
    "b=c",
    "$x",
    "${x:-y}",
    "${",
    "}",
    "\u{a0}",
    "é",
    "\u{feff}",
    "\u{b}",
    "\0",
    "1",
    "null",
    "{",
    ":",
    "\\u0041",
    "\\ud800",
    "NONE",
    "[\"a\", \"b\"]",
    "[1]",
    "[[",
    "<",
    "-",
];

fn dockerfile_ish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60)
        .prop_map(|tokens| tokens.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes)?;
    }

    #[test]
    fn dockerfile_like_text_never_panics(bytes in dockerfile_ish()) {
        check(&bytes)?;
    }

    #[test]
    fn a_valid_start_keeps_spans_in_order(bytes in dockerfile_ish()) {
        let mut text = b"# escape=\\\nFROM scratch\n".to_vec();
        text.extend(bytes);
        check(&text)?;
    }
}

#[test]
fn line_count_counts_an_unterminated_last_line() {
    assert_eq!(line_count(b""), 0);
    assert_eq!(line_count(b"a"), 1);
    assert_eq!(line_count(b"a\n"), 1);
    assert_eq!(line_count(b"a\nb"), 2);
}
