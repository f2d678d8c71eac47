//! Runs every case under `testdata/dockerignore/<case>/`.
//!
//! A case holds `dockerignore` (the file as written) and either `expect` — lines
//! `excluded PATH`, `included PATH` (for `is_excluded`), `descend DIR` or `skip DIR` (for
//! `may_reinclude_within`), `#` comments — or `error`, the exact message `parse` must fail with.
//! Every `expect` was checked against BuildKit's own Go code (ignorefile, patternmatcher, and
//! fsutil's walker logic).

use kiln_frontend::dockerignore::{IgnoreFile, ignore_file_candidates};
use std::fs;
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dockerignore");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    cases.sort();
    cases
}

/// Checks one case; returns how many assertions it made, or what went wrong.
fn run_case(case: &Path) -> Result<usize, String> {
    let read = |name: &str| fs::read_to_string(case.join(name));
    let text = read("dockerignore").map_err(|e| format!("dockerignore: {e}"))?;
    let parsed = IgnoreFile::parse(&text);
    if let Ok(want) = read("error") {
        return match parsed {
            Err(err) if err.to_string() == want.trim_end() => Ok(1),
            Err(err) => Err(format!("error {:?}, want {:?}", err.to_string(), want.trim_end())),
            Ok(file) => Err(format!("parsed to {:?}, want error {want:?}", file.patterns())),
        };
    }
    let file = parsed.map_err(|e| format!("parse: {e}"))?;
    let expect = read("expect").map_err(|e| format!("expect: {e}"))?;
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in expect.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (verb, path) = line.split_once(' ').ok_or(format!("bad expect line {line:?}"))?;
        let (got, want) = match verb {
            "excluded" | "included" => (file.is_excluded(path), verb == "excluded"),
            "descend" | "skip" => (file.may_reinclude_within(path), verb == "descend"),
            _ => return Err(format!("bad expect line {line:?}")),
        };
        checked += 1;
        if got != want {
            failures.push(format!("  {line}: got the opposite"));
        }
    }
    if checked == 0 {
        return Err("expect has no assertions".to_string());
    }
    match failures.is_empty() {
        true => Ok(checked),
        false => Err(failures.join("\n")),
    }
}

#[test]
fn corpus() {
    let mut failures = Vec::new();
    let mut total = 0;
    let cases = cases();
    assert!(cases.len() >= 30, "corpus went missing: {} cases", cases.len());
    for case in &cases {
        match run_case(case) {
            Ok(n) => total += n,
            Err(why) => failures.push(format!("{}:\n{why}", case.display())),
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{} cases, {total} assertions", cases.len());
}

#[test]
fn canonical_patterns() {
    let file = IgnoreFile::parse("# c\n/a//b/../c/\n! ./d \n**/*.go\n!!x\n").unwrap();
    let shown: Vec<String> = file.patterns().iter().map(|p| p.to_string()).collect();
    assert_eq!(shown, ["a/c", "!d", "**/*.go", "!!x"]);
    let lines: Vec<usize> = file.patterns().iter().map(|p| p.line()).collect();
    assert_eq!(lines, [2, 3, 4, 5]);
    assert!(file.patterns()[1].is_exception());
    assert_eq!(file.patterns()[1].text(), "d");
}

#[test]
fn candidates() {
    assert_eq!(
        ignore_file_candidates("build/app.Dockerfile"),
        ["build/app.Dockerfile.dockerignore", ".dockerignore"]
    );
    assert_eq!(ignore_file_candidates("Dockerfile"), ["Dockerfile.dockerignore", ".dockerignore"]);
    assert_eq!(ignore_file_candidates("-"), [".dockerignore"]);
}
