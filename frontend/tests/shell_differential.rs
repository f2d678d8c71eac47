//! kiln's lexer against outputs recorded from BuildKit's lexer on 1130 random words
//! (`testdata/shell/buildkit-lexer-outputs.jsonl`, see the README there): the value, the
//! matched and unmatched names, the split words, and whether each entry point fails.

use kiln_frontend::shell::Lexer;
use serde_json::Value;

const CORPUS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/shell/buildkit-lexer-outputs.jsonl");

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array of strings")
        .iter()
        .map(|item| item.as_str().expect("string").to_owned())
        .collect()
}

fn lexer_for(case: &Value) -> Lexer {
    let escape = case["escape"].as_str().and_then(|e| e.chars().next()).expect("escape");
    let mut lexer = Lexer::new(escape);
    for flag in strings(&case["flags"]) {
        match flag.as_str() {
            "raw_quotes" => lexer.raw_quotes = true,
            "raw_escapes" => lexer.raw_escapes = true,
            "skip_process_quotes" => lexer.skip_process_quotes = true,
            "skip_unset_env" => lexer.skip_unset_env = true,
            other => panic!("unknown flag {other:?}"),
        }
    }
    lexer
}

#[test]
fn matches_recorded_buildkit_outputs() {
    let text = std::fs::read_to_string(CORPUS).unwrap_or_else(|e| panic!("{CORPUS}: {e}"));
    let mut failures = Vec::new();
    let mut total = 0;
    for (index, line) in text.lines().enumerate() {
        let case: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", index + 1));
        total += 1;
        let word = case["word"].as_str().expect("word");
        let lexer = lexer_for(&case);
        let env: Vec<(String, String)> = case["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|pair| {
                let pair = strings(pair);
                (pair[0].clone(), pair[1].clone())
            })
            .collect();

        let joined = lexer.process_word(word, &env);
        let joined_ok = match (&joined, case.get("error")) {
            (Err(_), Some(_)) => true,
            (Ok(got), None) => {
                got.value == case["value"].as_str().expect("value")
                    && got.matched.iter().cloned().collect::<Vec<_>>() == strings(&case["matched"])
                    && got.unmatched.iter().cloned().collect::<Vec<_>>()
                        == strings(&case["unmatched"])
            }
            _ => false,
        };
        let split = lexer.process_words(word, &env);
        let split_ok = match (&split, case.get("words_error")) {
            (Err(_), Some(_)) => true,
            (Ok(got), None) => *got == strings(&case["words"]),
            _ => false,
        };
        if !(joined_ok && split_ok) {
            failures.push(format!(
                "line {}: {word:?} with {lexer:?}\n  process_word: {joined:?}\n  process_words: {split:?}\n  expected: {line}",
                index + 1
            ));
        }
    }
    println!("buildkit-lexer-outputs: {}/{total} agree", total - failures.len());
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert!(total >= 1000, "corpus looks truncated: {total} cases");
}
