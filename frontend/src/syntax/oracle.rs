//! Printing the tree in BuildKit's formats, for `kiln debug parse` and the conformance tests.
//!
//! - [`dump`]: one instruction as a line of BuildKit's AST dump (`parser/testfiles/*/result`):
//!   `(cmd ["--flag" ...] "arg" ...)`, strings quoted as Go's `strconv.Quote` does, ONBUILD
//!   as `(onbuild (run "x"))`.
//! - [`to_oracle_json`]: the JSON object of the conformance corpus (`oracle.json`).
//!
//! Known difference: Go also escapes code points unassigned in its Unicode tables; this
//! quoting escapes controls, format and private-use characters, non-characters and
//! separators other than the ASCII space, but prints unassigned code points as they are.

use super::error::SyntaxError;
use super::node::{Node, SyntaxTree};
use serde_json::{Value, json};

/// One instruction as a line of BuildKit's AST dump, parentheses included.
pub fn dump(node: &Node) -> String {
    format!("({})", dump_inner(node))
}

/// The dump without its outer parentheses (the `dump` field of the oracle).
fn dump_inner(node: &Node) -> String {
    let mut out = node.cmd.clone();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|flag| go_quote(flag)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&go_quote(arg));
    }
    if let Some(sub) = &node.sub {
        out.push(' ');
        out.push_str(&dump(sub));
    }
    // BuildKit trims the dump: an empty keyword leaves no leading blank.
    out.trim().to_string()
}

/// The conformance oracle's JSON for a parse result.
pub fn to_oracle_json(result: &Result<SyntaxTree, SyntaxError>) -> Value {
    match result {
        Ok(tree) => json!({
            "ok": true,
            "escape": tree.directives.escape.to_string(),
            "warnings": tree.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>(),
            "instructions": tree.nodes.iter().map(node_json).collect::<Vec<_>>(),
        }),
        Err(err) => {
            let span = err.span();
            json!({
                "ok": false,
                "error": err.to_string(),
                "error_lines": (span.start_line..=span.end_line).collect::<Vec<_>>(),
                "escape": null,
                "warnings": [],
                "instructions": [],
            })
        }
    }
}

fn node_json(node: &Node) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("cmd".into(), json!(node.cmd));
    object.insert("flags".into(), json!(node.flags));
    object.insert("args".into(), json!(node.args));
    if let Some(sub) = &node.sub {
        object.insert("sub".into(), node_json(sub));
    }
    object.insert("json".into(), json!(node.json));
    object.insert("start_line".into(), json!(node.span.start_line));
    object.insert("end_line".into(), json!(node.span.end_line));
    let heredocs: Vec<Value> = node
        .heredocs
        .iter()
        .map(|h| {
            json!({
                "name": h.name,
                "content": h.content,
                "expand": h.expand,
                "chomp": h.chomp,
                "fd": h.fd,
            })
        })
        .collect();
    object.insert("heredocs".into(), Value::Array(heredocs));
    object.insert("original".into(), json!(node.original));
    object.insert("dump".into(), json!(dump_inner(node)));
    Value::Object(object)
}

/// Quotes `text` as Go's `strconv.Quote`: `\a \b \f \n \r \t \v \\ \"` escapes, `\xNN` for
/// other ASCII controls, `\uNNNN`/`\UNNNNNNNN` for other characters that do not print.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ if is_go_printable(c) => out.push(c),
            _ if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            _ if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            _ => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` for assigned characters: letters, marks, numbers, punctuation,
/// symbols and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let code = c as u32;
    let format_or_private = matches!(
        code,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            | 0xF0000..=0x10FFFF
    );
    let noncharacter = (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE;
    !format_or_private && !noncharacter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    #[test]
    fn quoting_follows_go() {
        assert_eq!(go_quote("a \"b\" \\ ♥"), r#""a \"b\" \\ ♥""#);
        assert_eq!(go_quote("\u{8}\u{c}\n\r\t\0\u{7f}\u{b}\u{7}"), r#""\b\f\n\r\t\x00\x7f\v\a""#);
        assert_eq!(go_quote("\u{a0}\u{200b}\u{feff}\u{e000}"), r#""\u00a0\u200b\ufeff\ue000""#);
        assert_eq!(go_quote("\u{f0000}é😀"), "\"\\U000f0000é😀\"");
    }

    #[test]
    fn dump_lines() {
        let tree =
            parse("FROM a\nCOPY --from=b --chmod=1 x y\nONBUILD RUN [\"c\"]\nFOO bar\n\\").unwrap();
        let lines: Vec<String> = tree.nodes.iter().map(dump).collect();
        assert_eq!(
            lines,
            [
                r#"(from "a")"#,
                r#"(copy ["--from=b" "--chmod=1"] "x" "y")"#,
                r#"(onbuild (run "c"))"#,
                r#"(foo "")"#,
                r#"("")"#,
            ]
        );
    }

    #[test]
    fn oracle_json_shape() {
        let value = to_oracle_json(&parse("ONBUILD\nRUN <<EOF\nhi\nEOF\n"));
        assert_eq!(value["ok"], true);
        assert_eq!(value["escape"], "\\");
        let onbuild = &value["instructions"][0];
        assert!(onbuild.get("sub").is_none());
        assert_eq!(onbuild["dump"], "onbuild");
        let run = &value["instructions"][1];
        assert_eq!((run["start_line"].as_u64(), run["end_line"].as_u64()), (Some(2), Some(4)));
        assert_eq!(run["heredocs"][0]["content"], "hi\n");

        let failed = to_oracle_json(&parse("# only a comment\n"));
        assert_eq!(failed["ok"], false);
        assert_eq!(failed["error"], "file with no instructions");
        assert_eq!(failed["error_lines"], json!([1]));
    }
}
