//! Every Dockerfile instruction end to end: the kiln binary builds against a real registry,
//! and the tests check what a user sees — the image config and history (from the OCI
//! archive), files of the exported rootfs, layer tar entries, RUN output in the plain
//! progress log, and error messages.
//!
//! Most cases are data: `testdata/build/<case>/` holds a context (with `Dockerfile`) and
//! `expected.json` (see `testdata/build/README.md`); `KILN_BUILD_CASE=<name>` runs one.
//! What needs several builds or a server (ONBUILD through the store, parallel stages,
//! `-f -`, platforms) is written out below.

mod common;

use common::build::{Build, Image, output_lines, printed, ready, with_base};
use common::busybox::host_architecture;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/build")
}

/// Copies a case's context into the build's context; text files get `{{base}}` replaced.
fn copy_context(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let target = to.join(&name);
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_context(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            let bytes = fs::read(entry.path()).unwrap();
            match String::from_utf8(bytes) {
                Ok(text) => fs::write(&target, with_base(&text)).unwrap(),
                Err(e) => fs::write(&target, e.into_bytes()).unwrap(),
            }
            let mode = entry.metadata().unwrap().mode();
            fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn check_file(image: &Image, path: &str, want: &Value) {
    let full = image.fs().join(path.trim_start_matches('/'));
    let Some(want) = want.as_object() else {
        assert!(full.symlink_metadata().is_err(), "{path} should not exist in the image");
        return;
    };
    let meta = full.symlink_metadata().unwrap_or_else(|e| panic!("{path}: {e}"));
    for (field, value) in want {
        let value = value.as_str().unwrap();
        match field.as_str() {
            "content" => assert_eq!(fs::read_to_string(&full).unwrap(), value, "{path} content"),
            "mode" => assert_eq!(format!("{:o}", meta.mode() & 0o7777), value, "{path} mode"),
            "owner" => {
                assert_eq!(format!("{}:{}", meta.uid(), meta.gid()), value, "{path} owner")
            }
            "kind" => {
                let kind = if meta.is_dir() {
                    "dir"
                } else if meta.is_symlink() {
                    "symlink"
                } else {
                    "file"
                };
                assert_eq!(kind, value, "{path} kind");
            }
            "target" => {
                assert_eq!(fs::read_link(&full).unwrap().to_string_lossy(), value, "{path} link")
            }
            other => panic!("unknown file field {other:?}"),
        }
    }
}

fn run_case(dir: &Path) {
    let text = with_base(&fs::read_to_string(dir.join("expected.json")).unwrap())
        .replace("{{arch}}", host_architecture());
    let expected: Value = serde_json::from_str(&text).unwrap();
    let build = Build::empty();
    copy_context(dir, build.context.path());
    fs::remove_file(build.path("expected.json")).unwrap();
    let context = build.context.path().to_string_lossy().into_owned();
    let args: Vec<String> =
        strings(&expected["args"]).iter().map(|a| a.replace("{{context}}", &context)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(error) = expected["error"].as_str() {
        let log = build.fails(&args);
        assert!(log.contains(error), "expected {error:?} in:\n{log}");
        for text in strings(&expected["not_printed"]) {
            assert!(!log.contains(&text), "{text:?} should not be in the log");
        }
        return;
    }
    let image = build.image(&args);
    for (key, want) in expected["config"].as_object().into_iter().flatten() {
        assert_eq!(&image.config["config"][key], want, "config field {key}");
    }
    for (key, want) in expected["image"].as_object().into_iter().flatten() {
        assert_eq!(&image.config[key], want, "image field {key}");
    }
    if let Some(history) = expected["history"].as_array() {
        let want: Vec<(String, bool)> = history
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_bool().unwrap()))
            .collect();
        assert_eq!(image.history(), want, "history after the base image's");
    }
    for (path, want) in expected["files"].as_object().into_iter().flatten() {
        check_file(&image, path, want);
    }
    for line in strings(&expected["printed"]) {
        assert!(
            printed(&image.log, &line),
            "RUN should have printed {line:?}; it printed {:#?}",
            output_lines(&image.log)
        );
    }
    for text in strings(&expected["not_printed"]) {
        assert!(!image.log.contains(&text), "{text:?} should not be in the log");
    }
    if expected.get("last_layer").is_some() {
        assert_eq!(image.layer_entries(-1), strings(&expected["last_layer"]), "last layer");
    }
}

#[test]
fn instruction_cases() {
    if !ready() {
        return;
    }
    let only = std::env::var("KILN_BUILD_CASE").ok();
    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut failed = Vec::new();
    let mut ran = 0;
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        eprintln!("=== case {name}");
        ran += 1;
        if std::panic::catch_unwind(|| run_case(&case)).is_err() {
            failed.push(name);
        }
    }
    assert!(ran > 0, "no case ran");
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}
