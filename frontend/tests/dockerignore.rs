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

mod properties {
    use kiln_frontend::dockerignore::IgnoreFile;
    use proptest::prelude::*;

    /// Lines built from the pieces patterns are made of, so that many of them parse.
    fn pattern_line() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "b", "ab", "*", "**", "?", "/", "[ab]", "[^a]", "[a-b]", "\\*", ".", "..", "^",
            "!", " ", "[", "]", "\\", "#", "-", "é",
        ]);
        let pieces = prop::collection::vec(piece, 0..6);
        (prop::bool::weighted(0.4), pieces).prop_map(|(exception, pieces)| {
            format!("{}{}", if exception { "!" } else { "" }, pieces.concat())
        })
    }

    fn ignore_text() -> impl Strategy<Value = String> {
        prop::collection::vec(pattern_line(), 0..6).prop_map(|lines| lines.join("\n"))
    }

    /// Valid lines over a small alphabet, so that patterns often match [`path`]s.
    fn dense_ignore_text() -> impl Strategy<Value = String> {
        let piece =
            prop::sample::select(vec!["a", "b", "a/b", "b/a", "*", "**", "/", "?", "[ab]", "[^a]"]);
        let line = (prop::bool::weighted(0.4), prop::collection::vec(piece, 1..4));
        let line = line.prop_map(|(exception, pieces)| {
            format!("{}{}", if exception { "!" } else { "" }, pieces.concat())
        });
        prop::collection::vec(line, 1..6).prop_map(|lines| lines.join("\n"))
    }

    /// Every path of one to three elements named `a`, `b` or `ab`.
    fn universe() -> Vec<String> {
        let names = ["a", "b", "ab"];
        let mut paths: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        for depth in 1..3 {
            let shorter: Vec<String> =
                paths.iter().filter(|p| p.matches('/').count() == depth - 1).cloned().collect();
            for p in shorter {
                paths.extend(names.iter().map(|n| format!("{p}/{n}")));
            }
        }
        paths
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), path in any::<String>()) {
            if let Ok(file) = IgnoreFile::parse(&text) {
                let _ = file.is_excluded(&path);
                let _ = file.may_reinclude_within(&path);
            }
        }

        #[test]
        fn pattern_like_text_never_panics(text in ignore_text(), path in any::<String>()) {
            if let Ok(file) = IgnoreFile::parse(&text) {
                let _ = file.is_excluded(&path);
                let _ = file.may_reinclude_within(&path);
            }
        }

        /// What a walker relies on: below an excluded directory it may skip, everything is
        /// excluded. Checked for every pair of paths in a small universe.
        #[test]
        fn skipped_directories_hold_only_excluded_paths(text in dense_ignore_text()) {
            let Ok(file) = IgnoreFile::parse(&text) else { return Ok(()) };
            let universe = universe();
            for dir in universe.iter().filter(|d| file.is_excluded(d)) {
                if file.may_reinclude_within(dir) {
                    continue;
                }
                for below in &universe {
                    let inside = format!("{dir}/{below}");
                    prop_assert!(file.is_excluded(&inside), "{} is included", inside);
                }
            }
        }

        /// The canonical text parses back to the same pattern, unless it starts with what a
        /// line cannot start with (`#` is a comment, whitespace is trimmed).
        #[test]
        fn canonical_text_round_trips(text in ignore_text()) {
            if let Ok(file) = IgnoreFile::parse(&text) {
                for pattern in file.patterns() {
                    let shown = pattern.to_string();
                    if shown.starts_with('#') || pattern.text().starts_with(char::is_whitespace) {
                        continue;
                    }
                    let again = IgnoreFile::parse(&shown).unwrap();
                    prop_assert_eq!(again.patterns().len(), 1);
                    prop_assert_eq!(again.patterns()[0].text(), pattern.text());
                    prop_assert_eq!(again.patterns()[0].is_exception(), pattern.is_exception());
                }
            }
        }
    }
}
