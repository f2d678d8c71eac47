//! BuildKit's word-expansion vectors (`shell/envVarTest`, `shell/wordsTest` of the shared
//! conformance corpus) run against kiln's lexer. Every vector for all platforms (A) and unix
//! (U) must pass; windows-only vectors (W) are skipped.
//!
//! The corpus lives outside the repository. Its `buildkit-parser` folder is found at
//! `$KILN_CONFORMANCE_DIR` or next to the workspace (`../shared/conformance/buildkit-parser`).
//! When it is absent the tests print a skip notice, unless `KILN_REQUIRE_CONFORMANCE=1`, which
//! makes them fail.

use std::path::PathBuf;

use kiln_frontend::shell::Lexer;

fn corpus_file(name: &str) -> Option<String> {
    let shell_dir = match std::env::var_os("KILN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("shell"),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/buildkit-parser/shell"
        )),
    };
    let path = shell_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) => {
            if std::env::var("KILN_REQUIRE_CONFORMANCE").as_deref() == Ok("1") {
                panic!(
                    "conformance corpus required but not readable at {}: {error}",
                    path.display()
                );
            }
            eprintln!("skipped: corpus not found at {} ({error})", path.display());
            None
        }
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn env_var_test_vectors() {
    let Some(text) = corpus_file("envVarTest") else {
        return;
    };
    let env = pairs(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]);
    let lexer = Lexer::new('\\');
    let (mut passed, mut total, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "envVarTest:{number}: expected PLATFORM|input|expected");
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "A" | "U" => {}
            "W" => {
                skipped += 1;
                continue;
            }
            other => panic!("envVarTest:{number}: unknown platform {other:?}"),
        }
        total += 1;
        let got = lexer.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(expansion), expected) => expected != "error" && expansion.value == expected,
            (Err(_), _) => false,
        };
        if ok {
            passed += 1;
        } else {
            failures
                .push(format!("envVarTest:{number}: {input:?} expected {expected:?}, got {got:?}"));
        }
    }
    println!("envVarTest: {passed}/{total} passed, {skipped} windows-only skipped");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(total > 200, "envVarTest looks truncated: {total} vectors");
}

#[test]
fn words_test_vectors() {
    let Some(text) = corpus_file("wordsTest") else {
        return;
    };
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut passed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let assignment = assignment.trim_start_matches(' ');
            let (key, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.push((key.to_owned(), value.to_owned()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 2, "wordsTest:{number}: expected exactly one |");
        let input = fields[0].trim();
        let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        total += 1;
        let got = match lexer.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_owned()],
        };
        if got == expected {
            passed += 1;
        } else {
            failures
                .push(format!("wordsTest:{number}: {input:?} expected {expected:?}, got {got:?}"));
        }
    }
    println!("wordsTest: {passed}/{total} passed");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(total > 20, "wordsTest looks truncated: {total} vectors");
}
