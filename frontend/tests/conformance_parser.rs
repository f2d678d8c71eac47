//! Conformance of the syntax layer with BuildKit's parser, on the shared corpora.
//!
//! Corpus: `shared/conformance/buildkit-parser` beside the repository (override with
//! `KILN_CONFORMANCE_DIR`), and `shared/conformance/real-world` beside it. When the corpus is
//! absent the tests print a skip message and pass, unless `KILN_REQUIRE_CONFORMANCE=1`.
//!
//! - `parser/testfiles/*`: the dump of every instruction equals BuildKit's `result`;
//! - `parser/testfiles-negative/*`: parsing fails;
//! - `parser/testfile-line`: instruction spans;
//! - `extra/*/*/oracle.json`: BuildKit's parser output, compared field by field;
//! - `real-world/**/Dockerfile`: every file parses.

use kiln_frontend::syntax::{Node, dump, parse_bytes, to_oracle_json};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The buildkit-parser corpus folder, or `None` (after saying so) when it is absent.
fn corpus() -> Option<PathBuf> {
    let dir = match std::env::var_os("KILN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/buildkit-parser")
        }
    };
    present(dir)
}

/// The real-world corpus, a sibling of the buildkit-parser corpus.
fn real_world_corpus() -> Option<PathBuf> {
    let parser_dir = match std::env::var_os("KILN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/buildkit-parser")
        }
    };
    present(parser_dir.join("../real-world"))
}

fn present(dir: PathBuf) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var("KILN_REQUIRE_CONFORMANCE").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "conformance corpus not found at {} (KILN_REQUIRE_CONFORMANCE=1)",
        dir.display()
    );
    eprintln!("conformance corpus not found at {}, skipped", dir.display());
    None
}

/// Sub-folders of `dir`, sorted.
fn case_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn name(dir: &Path, root: &Path) -> String {
    dir.strip_prefix(root).unwrap_or(dir).display().to_string()
}

#[test]
fn testfiles_dump_as_buildkit() {
    let Some(root) = corpus() else { return };
    let dir = root.join("parser/testfiles");
    let cases = case_dirs(&dir);
    let mut failures = Vec::new();
    for case in &cases {
        let expected = String::from_utf8(read(&case.join("result"))).expect("utf-8 result");
        match parse_bytes(&read(&case.join("Dockerfile"))) {
            Ok(tree) => {
                let actual: String = tree.nodes.iter().map(|node| dump(node) + "\n").collect();
                if actual != expected {
                    failures.push(format!(
                        "{}: dump differs\n--- expected\n{expected}--- actual\n{actual}",
                        name(case, &dir)
                    ));
                }
            }
            Err(err) => failures.push(format!("{}: {} ({})", name(case, &dir), err, err.span())),
        }
    }
    println!("parser testfiles: {}/{} match", cases.len() - failures.len(), cases.len());
    assert_eq!(cases.len(), 33, "the corpus has 33 positive cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_testfiles_fail() {
    let Some(root) = corpus() else { return };
    let dir = root.join("parser/testfiles-negative");
    let cases = case_dirs(&dir);
    let mut parsed = Vec::new();
    for case in &cases {
        let text = read(&case.join("Dockerfile"));
        match parse_bytes(&text) {
            Ok(_) => parsed.push(name(case, &dir)),
            Err(err) => {
                let lines = text.split(|&b| b == b'\n').count().max(1);
                let span = err.span();
                assert!(span.start_line >= 1 && span.end_line <= lines, "{err}: {span} of {lines}");
            }
        }
    }
    println!("parser negative testfiles: {}/{} fail", cases.len() - parsed.len(), cases.len());
    assert_eq!(cases.len(), 4, "the corpus has 4 negative cases");
    assert!(parsed.is_empty(), "these parsed but must fail: {parsed:?}");
}

#[test]
fn testfile_line_spans() {
    let Some(root) = corpus() else { return };
    let tree = parse_bytes(&read(&root.join("parser/testfile-line/Dockerfile"))).unwrap();
    let spans: Vec<(usize, usize)> =
        tree.nodes.iter().map(|node| (node.span.start_line, node.span.end_line)).collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}

/// Fields compared for every instruction (and, recursively, for ONBUILD's `sub`).
const COMPARED: [&str; 10] = [
    "cmd",
    "flags",
    "args",
    "json",
    "start_line",
    "end_line",
    "heredocs",
    "original",
    "dump",
    "sub",
];

/// Describes the first difference between an oracle instruction and ours.
fn instruction_difference(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    for field in COMPARED {
        let (want, got) = (expected.get(field), actual.get(field));
        if field == "sub" {
            match (want, got) {
                (Some(want), Some(got)) => {
                    if let Some(diff) = instruction_difference(want, got, &format!("{at}.sub")) {
                        return Some(diff);
                    }
                }
                (None, None) => {}
                _ => return Some(format!("{at}.sub: expected {want:?}, got {got:?}")),
            }
            continue;
        }
        if want != got {
            return Some(format!("{at}.{field}: expected {want:?}, got {got:?}"));
        }
    }
    None
}

/// Describes the first difference between the oracle and our result for one file.
fn oracle_difference(expected: &Value, actual: &Value) -> Option<String> {
    for field in ["ok", "escape", "warnings"] {
        if expected.get(field) != actual.get(field) {
            return Some(format!(
                "{field}: expected {:?}, got {:?} (error: {:?})",
                expected.get(field),
                actual.get(field),
                actual.get("error")
            ));
        }
    }
    let want = expected["instructions"].as_array().cloned().unwrap_or_default();
    let got = actual["instructions"].as_array().cloned().unwrap_or_default();
    if want.len() != got.len() {
        return Some(format!("{} instructions expected, got {}", want.len(), got.len()));
    }
    want.iter().zip(&got).enumerate().find_map(|(i, (want, got))| {
        instruction_difference(want, got, &format!("instructions[{i}]"))
    })
}

#[test]
fn extra_cases_match_the_oracle() {
    let Some(root) = corpus() else { return };
    let extra = root.join("extra");
    let cases: Vec<PathBuf> =
        ["unit", "integration"].iter().flat_map(|group| case_dirs(&extra.join(group))).collect();
    let mut mismatches = Vec::new();
    for case in &cases {
        let oracle: Value = serde_json::from_slice(&read(&case.join("oracle.json")))
            .unwrap_or_else(|err| panic!("{}: oracle.json: {err}", case.display()));
        let ours = to_oracle_json(&parse_bytes(&read(&case.join("Dockerfile"))));
        if let Some(diff) = oracle_difference(&oracle, &ours) {
            mismatches.push(format!("{}: {diff}", name(case, &extra)));
        }
    }
    let matching = cases.len() - mismatches.len();
    println!("oracle cases: {matching}/{} match", cases.len());
    for mismatch in &mismatches {
        println!("  mismatch {mismatch}");
    }
    assert_eq!(cases.len(), 406, "the corpus has 406 oracle cases");
    assert!(
        matching * 100 >= cases.len() * 99,
        "only {matching}/{} oracle cases match:\n{}",
        cases.len(),
        mismatches.join("\n")
    );
}

/// Every `Dockerfile` under `dir`, at any depth.
fn dockerfiles(dir: &Path, found: &mut Vec<PathBuf>) {
    for case in case_dirs(dir) {
        let file = case.join("Dockerfile");
        if file.is_file() {
            found.push(file);
        } else {
            dockerfiles(&case, found);
        }
    }
}

#[test]
fn real_world_dockerfiles_parse() {
    let Some(root) = real_world_corpus() else { return };
    let mut files = Vec::new();
    dockerfiles(&root, &mut files);
    let mut failures = Vec::new();
    let mut instructions = 0;
    for file in &files {
        match parse_bytes(&read(file)) {
            Ok(tree) => {
                instructions += tree.nodes.len();
                assert!(tree.nodes.iter().all(|node: &Node| node.span.start_line >= 1));
            }
            Err(err) => failures.push(format!("{}: {}: {err}", name(file, &root), err.span())),
        }
    }
    println!(
        "real-world Dockerfiles: {}/{} parse ({instructions} instructions)",
        files.len() - failures.len(),
        files.len()
    );
    assert_eq!(files.len(), 269, "the real-world corpus has 269 Dockerfiles");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_oracle_comparison_sees_differences() {
    let ours = to_oracle_json(&kiln_frontend::syntax::parse("FROM a\nONBUILD RUN <<EOF\nx\nEOF\n"));
    assert_eq!(oracle_difference(&ours, &ours), None);
    let edits: [(&str, Value); 4] = [
        ("/instructions/0/args/0", Value::from("b")),
        ("/instructions/1/sub/cmd", Value::from("copy")),
        ("/instructions/1/heredocs/0/content", Value::from("y\n")),
        ("/instructions/1/end_line", Value::from(3)),
    ];
    for (pointer, value) in edits {
        let mut changed = ours.clone();
        *changed.pointer_mut(pointer).expect(pointer) = value;
        assert!(oracle_difference(&changed, &ours).is_some(), "{pointer} not compared");
    }
    let mut without_sub = ours.clone();
    without_sub["instructions"][1].as_object_mut().unwrap().remove("sub");
    assert!(oracle_difference(&without_sub, &ours).is_some());
}
