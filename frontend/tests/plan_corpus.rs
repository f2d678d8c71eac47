//! Data-driven lowering tests: every `testdata/plan/<case>/` holds a `Dockerfile` and what
//! lowering must make of it — `graph.json` (the whole graph) or `error.txt` (`line N: cause`,
//! or just the cause for build-wide errors). Optional inputs:
//! - `options.json`: `{"target": "...", "build_args": {...}, "platform": "os/arch",
//!   "dockerignore": [...], "named_contexts": {"name": "local" | "docker-image://REF"}}`
//! - `images.json`: the fake registry: `{"REF": {"env": [...], "on_build": [...],
//!   "working_dir": "...", "user": "...", "shell": [...], "empty": false,
//!   "platform": "os/arch"}}`; an image not listed fails to resolve.
//!
//! Set `KILN_BLESS=1` to (re)write the expected files from the current output.

use kiln_frontend::graph::ImageConfig;
use kiln_frontend::instructions::parse_dockerfile;
use kiln_frontend::lower::{ImageResolver, LowerOptions, NamedContext, ResolvedImage, lower};
use kiln_frontend::platform::Platform;
use kiln_frontend::syntax;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

struct FakeResolver(BTreeMap<String, Value>);

impl ImageResolver for FakeResolver {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        let Some(image) = self.0.get(reference) else {
            return Err(format!("{reference}: not found"));
        };
        let strings = |key: &str| -> Vec<String> {
            image[key]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let text = |key: &str| image[key].as_str().map(str::to_string);
        let config = ImageConfig {
            env: strings("env"),
            on_build: strings("on_build"),
            shell: strings("shell"),
            working_dir: text("working_dir"),
            user: text("user"),
            ..Default::default()
        };
        Ok(ResolvedImage {
            reference: format!("docker.io/library/{reference}"),
            config,
            platform: text("platform").map(|p| Platform::parse(&p).expect("images.json platform")),
            is_empty: image["empty"].as_bool().unwrap_or(false),
        })
    }
}

fn options(case: &Path) -> LowerOptions {
    let mut options = LowerOptions {
        target_platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    };
    let Ok(text) = fs::read_to_string(case.join("options.json")) else { return options };
    let json: Value = serde_json::from_str(&text).expect("options.json is JSON");
    options.target = json["target"].as_str().map(str::to_string);
    if let Some(args) = json["build_args"].as_object() {
        for (k, v) in args {
            options.build_args.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    if let Some(p) = json["platform"].as_str() {
        options.target_platform = Platform::parse(p).unwrap();
    }
    if let Some(patterns) = json["dockerignore"].as_array() {
        options.dockerignore =
            patterns.iter().map(|p| p.as_str().unwrap_or_default().to_string()).collect();
    }
    if let Some(named) = json["named_contexts"].as_object() {
        for (name, value) in named {
            let value = value.as_str().unwrap_or_default();
            let context = match value.strip_prefix("docker-image://") {
                Some(reference) => NamedContext::Image(reference.to_string()),
                None => NamedContext::Local,
            };
            options.named_contexts.insert(name.clone(), context);
        }
    }
    options
}

/// What the case produces: the graph as pretty JSON, or the error line.
fn run_case(case: &Path) -> Result<String, String> {
    let text = fs::read_to_string(case.join("Dockerfile")).expect("case has a Dockerfile");
    let tree = syntax::parse(&text).map_err(|e| format!("line {}: {e}", e.span().start_line))?;
    let dockerfile =
        parse_dockerfile(&tree).map_err(|e| format!("line {}: {e}", e.span.start_line))?;
    let images: BTreeMap<String, Value> = fs::read_to_string(case.join("images.json"))
        .map(|t| serde_json::from_str(&t).expect("images.json is JSON"))
        .unwrap_or_default();
    let graph =
        lower(&dockerfile, &options(case), &FakeResolver(images)).map_err(|e| match e.span {
            Some(span) => format!("line {}: {e}", span.start_line),
            None => e.to_string(),
        })?;
    Ok(serde_json::to_string_pretty(&graph).unwrap() + "\n")
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/plan");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("testdata/plan exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn plan_corpus() {
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 20, "expected the plan corpus, found {} cases", all.len());
    for case in &all {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (file, actual) = match run_case(case) {
            Ok(graph) => ("graph.json", graph),
            Err(error) => ("error.txt", error + "\n"),
        };
        let other = if file == "graph.json" { "error.txt" } else { "graph.json" };
        if bless {
            fs::write(case.join(file), &actual).unwrap();
            let _ = fs::remove_file(case.join(other));
            continue;
        }
        match fs::read_to_string(case.join(file)) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{name}: {file} differs\n--- expected\n{expected}\n--- actual\n{actual}"
            )),
            Err(_) => {
                failures.push(format!("{name}: produced {file} but expected {other}:\n{actual}"))
            }
        }
    }
    println!("plan corpus: {} cases, {} failed", all.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
