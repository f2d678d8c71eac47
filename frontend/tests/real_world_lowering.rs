//! Every real-world Dockerfile in `../shared/conformance/real-world` parses and lowers:
//! the top-level ones with no build args, those in `needs-build-args/` only with the values
//! in their `BUILD_ARGS` file (and fail without them), the `windows/` ones for windows/amd64.
//! Skipped with a message when the corpus is absent (`KILN_REQUIRE_CONFORMANCE=1` fails).

use kiln_frontend::instructions::parse_dockerfile;
use kiln_frontend::lower::{LowerError, LowerOptions, OfflineResolver, lower};
use kiln_frontend::platform::Platform;
use kiln_frontend::syntax;
use std::fs;
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let dir = match std::env::var_os("KILN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("../real-world"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/real-world"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
        "real-world corpus not found at {}",
        dir.display()
    );
    println!("real-world corpus not found at {}, skipped", dir.display());
    None
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

fn plan(case: &Path, options: &LowerOptions) -> Result<usize, String> {
    let text = fs::read(case.join("Dockerfile")).unwrap();
    let tree = syntax::parse_bytes(&text)
        .map_err(|e| format!("parse: line {}: {e}", e.span().start_line))?;
    let dockerfile = parse_dockerfile(&tree).map_err(|e| format!("instructions: {e}"))?;
    lower(&dockerfile, options, &OfflineResolver)
        .map(|graph| graph.steps.len())
        .map_err(|LowerError { message, span }| format!("lower: {span:?}: {message}"))
}

fn linux_options() -> LowerOptions {
    LowerOptions {
        target_platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    }
}

#[test]
fn top_level_files_lower_without_build_args() {
    let Some(dir) = corpus() else { return };
    let all = cases(&dir);
    let failures: Vec<String> = all
        .iter()
        .filter_map(|case| {
            plan(case, &linux_options()).err().map(|e| format!("{}: {e}", case.display()))
        })
        .collect();
    println!("real-world: {} of {} lowered", all.len() - failures.len(), all.len());
    assert!(all.len() >= 259, "expected 259 top-level files, found {}", all.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn build_arg_files_need_their_args() {
    let Some(dir) = corpus() else { return };
    let all = cases(&dir.join("needs-build-args"));
    assert_eq!(all.len(), 5);
    for case in &all {
        assert!(
            plan(case, &linux_options()).is_err(),
            "{} lowered without its build args",
            case.display()
        );
        let mut options = linux_options();
        for line in fs::read_to_string(case.join("BUILD_ARGS")).unwrap().lines() {
            if let Some((k, v)) = line.split_once('=') {
                options.build_args.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        plan(case, &options).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    }
    println!("real-world needs-build-args: {} of {} lowered with their args", all.len(), all.len());
}

#[test]
fn windows_files_parse_and_lower() {
    let Some(dir) = corpus() else { return };
    let all = cases(&dir.join("windows"));
    assert_eq!(all.len(), 5);
    let options = LowerOptions {
        target_platform: Platform::parse("windows/amd64").unwrap(),
        ..linux_options()
    };
    for case in &all {
        plan(case, &options).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    }
    println!("real-world windows: {} of {} lowered", all.len(), all.len());
}
