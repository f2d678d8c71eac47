//! Differential check against an independent parser, the `parse-dockerfile` crate, on the
//! real-world corpus (`shared/conformance/real-world`, see `conformance_parser.rs` for how it
//! is found): both must see the same instructions, on the same lines, with the same flags.
//!
//! The crate is not BuildKit; where it is known to read a file differently, the file is
//! listed in [`KNOWN_DIFFERENCES`] with the reason, and the test checks that the list stays
//! exact (a listed file that starts to agree must be removed from it).

use kiln_frontend::syntax::parse_bytes;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Files the other parser reads differently, by case folder, with the reason.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "needs-build-args/youki-dev--youki--cross__Dockerfile.musl",
    "parse-dockerfile takes heredocs only at the start of RUN's command, not in `cat <<'EOF' > f`, \
     so it reads the body as instructions",
)];

fn real_world_corpus() -> Option<PathBuf> {
    let parser_dir = match std::env::var_os("KILN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/buildkit-parser")
        }
    };
    let dir = parser_dir.join("../real-world");
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

fn dockerfiles(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    entries.sort();
    for case in entries {
        let file = case.join("Dockerfile");
        if file.is_file() {
            found.push(file);
        } else {
            dockerfiles(&case, found);
        }
    }
}

/// One instruction as both parsers can describe it: keyword, first line, flags.
type Summary = (String, usize, Vec<String>);

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// What `parse-dockerfile` sees, through its serde form: each instruction is tagged with
/// `kind` and holds its keyword's byte span under the lower-cased kind.
fn theirs(text: &str) -> Result<Vec<Summary>, String> {
    let dockerfile = parse_dockerfile::parse(text).map_err(|err| err.to_string())?;
    let value = serde_json::to_value(&dockerfile.instructions).map_err(|err| err.to_string())?;
    let mut summaries = Vec::new();
    for instruction in value.as_array().into_iter().flatten() {
        let kind = instruction["kind"].as_str().unwrap_or_default().to_lowercase();
        let start = instruction[&kind]["span"]["start"].as_u64().ok_or("no keyword span")?;
        let flags = instruction
            .get("options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|flag| {
                let name = flag["name"]["value"].as_str().unwrap_or_default();
                match flag["value"].get("value").and_then(Value::as_str) {
                    Some(value) => format!("--{name}={value}"),
                    None => format!("--{name}"),
                }
            })
            .collect();
        summaries.push((kind, line_of(text, start as usize), flags));
    }
    Ok(summaries)
}

#[test]
fn real_world_files_read_the_same_by_an_independent_parser() {
    let Some(root) = real_world_corpus() else { return };
    let mut files = Vec::new();
    dockerfiles(&root, &mut files);
    let mut differences = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8(bytes.clone()).expect("utf-8 Dockerfile");
        let ours: Vec<Summary> = parse_bytes(&bytes)
            .unwrap_or_else(|err| panic!("{}: {err}", file.display()))
            .nodes
            .iter()
            .map(|node| (node.cmd.clone(), node.span.start_line, node.flags.clone()))
            .collect();
        let case = file.parent().unwrap().strip_prefix(&root).unwrap().display().to_string();
        match theirs(&text) {
            Ok(theirs) if theirs == ours => {}
            Ok(theirs) => {
                let at = ours.iter().zip(&theirs).position(|(a, b)| a != b);
                differences.push((
                    case,
                    format!(
                        "first difference at {at:?}: {} vs {} instructions",
                        ours.len(),
                        theirs.len()
                    ),
                ));
            }
            Err(err) => differences.push((case, format!("parse-dockerfile failed: {err}"))),
        }
    }
    println!(
        "parse-dockerfile agrees on {}/{} real-world Dockerfiles",
        files.len() - differences.len(),
        files.len()
    );
    let known: Vec<&str> = KNOWN_DIFFERENCES.iter().map(|(case, _)| *case).collect();
    let unexpected: Vec<_> =
        differences.iter().filter(|(case, _)| !known.contains(&case.as_str())).collect();
    assert!(unexpected.is_empty(), "unexpected differences: {unexpected:#?}");
    let found: Vec<&str> = differences.iter().map(|(case, _)| case.as_str()).collect();
    let stale: Vec<_> = known.iter().filter(|case| !found.contains(case)).collect();
    assert!(stale.is_empty(), "listed as differing but now agreeing: {stale:?}");
}
