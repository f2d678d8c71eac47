//! COPY/ADD behaviour, data-driven: every `testdata/copy/<case>/` holds a `spec.json` and an
//! `expected` file.
//!
//! `spec.json`:
//! - `source`: `"context"` (default), `"rootfs"` or `"none"`; `context` (a tree) or
//!   `source_layers` (trees, top first) describe it (see `common` for trees);
//! - `dest_layers`: the destination rootfs (trees, top first; none = scratch);
//! - `op`: the COPY op's fields (`sources`, `inline` `[{"name", "data"}]`, `dest`, `chown`,
//!   `chmod`, `parents`, `exclude`, `add` `{"unpack", "checksum"}`);
//! - `warnings` (optional): the report's warnings, exactly.
//!
//! `expected`: the listing of the layer directory (see `common`; only non-directories when
//! `only_files` is set), or `error: MESSAGE` with the exact error text. Made directories
//! get the time 1700000000.
//!
//! Every case also has a host directory (`$HOST` in symlink targets) holding one file: after
//! the copy it must hold exactly that file, so a case that tries to escape fails loudly.
//!
//! Set `KILN_BLESS=1` to write `expected` from the current result (review every change).

mod common;

use common::tree::{build, have_root, listing};
use kiln::fs::{MergedRoot, Time};
use kiln::ops::copy::{CopyOptions, CopySource, copy_into_layer};
use kiln_frontend::graph::{AddOptions, CopyOp, CopySourceRef, InlineSource, StepId};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

const CREATED: i64 = 1_700_000_000;

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

pub fn op_from(json: &Value) -> CopyOp {
    CopyOp {
        dest_parent: StepId(0),
        source: CopySourceRef::Step(StepId(1)),
        sources: strings(&json["sources"]),
        inline_sources: json["inline"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| InlineSource {
                        name: i["name"].as_str().unwrap().to_string(),
                        data: i["data"].as_str().unwrap().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        dest: json["dest"].as_str().expect("op.dest").to_string(),
        chown: json["chown"].as_str().map(str::to_string),
        chmod: json["chmod"].as_str().map(str::to_string),
        link: json["link"].as_bool().unwrap_or(false),
        parents: json["parents"].as_bool().unwrap_or(false),
        exclude: strings(&json["exclude"]),
        add: json.get("add").filter(|a| !a.is_null()).map(|a| AddOptions {
            unpack: a["unpack"].as_bool(),
            checksum: a["checksum"].as_str().map(str::to_string),
            keep_git_dir: None,
        }),
    }
}

fn layers(base: &Path, name: &str, trees: &Value, host: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, tree) in trees.as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let dir = base.join(format!("{name}{i}"));
        fs::create_dir_all(&dir).unwrap();
        build(&dir, tree.as_array().expect("a tree is a list"), host);
        out.push(dir);
    }
    out
}

fn run_case(case: &Path) -> Result<(), String> {
    let spec: Value = serde_json::from_str(&fs::read_to_string(case.join("spec.json")).unwrap())
        .map_err(|e| format!("spec.json: {e}"))?;
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret"), "host").unwrap();
    let dest_layers = layers(tmp.path(), "dest", &spec["dest_layers"], &host);
    let dest_root = MergedRoot::new(dest_layers).unwrap();
    let kind = spec["source"].as_str().unwrap_or("context");
    let source_root = match kind {
        "context" => {
            let dir = tmp.path().join("context");
            fs::create_dir_all(&dir).unwrap();
            build(&dir, spec["context"].as_array().map(Vec::as_slice).unwrap_or_default(), &host);
            Some(MergedRoot::plain(&dir).unwrap())
        }
        "rootfs" => {
            Some(MergedRoot::new(layers(tmp.path(), "src", &spec["source_layers"], &host)).unwrap())
        }
        _ => None,
    };
    let source = match (kind, &source_root) {
        ("context", Some(root)) => CopySource::Context(root),
        ("rootfs", Some(root)) => CopySource::Rootfs(root),
        _ => CopySource::None,
    };
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let options =
        CopyOptions { created_time: Time { sec: CREATED, nsec: 0 }, ..CopyOptions::default() };
    let op = op_from(&spec["op"]);
    let actual = match copy_into_layer(&op, source, &dest_root, &out, &options) {
        Ok(report) => {
            let want: Vec<String> = strings(&spec["warnings"]);
            if report.warnings != want {
                return Err(format!("warnings: got {:?}, want {want:?}", report.warnings));
            }
            listing(&out, &host, spec["only_files"].as_bool() == Some(true))
        }
        Err(e) => format!("error: {e}"),
    };
    let host_listing: Vec<_> =
        fs::read_dir(&host).unwrap().map(|e| e.unwrap().file_name()).collect();
    if host_listing != [std::ffi::OsString::from("secret")]
        || fs::read(host.join("secret")).unwrap() != b"host"
    {
        return Err(format!("the host directory was touched: {host_listing:?}"));
    }
    let expected_path = case.join("expected");
    if std::env::var_os("KILN_BLESS").is_some() {
        fs::write(&expected_path, format!("{actual}\n")).unwrap();
        return Ok(());
    }
    let expected = fs::read_to_string(&expected_path).map_err(|e| format!("expected: {e}"))?;
    let expected = expected.trim_end();
    if actual.trim_end() != expected {
        return Err(format!("--- expected\n{expected}\n--- actual\n{actual}"));
    }
    Ok(())
}

#[test]
fn copy_cases() {
    if !have_root("copy_cases") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/copy");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("testdata/copy exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("spec.json").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus went missing: {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(case) {
            failures.push(format!("== {}\n{e}", case.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---- ADD <url>, against a local server ----

mod url {
    use super::common::http::{Response, Server};
    use super::common::tree::{archive, have_root, listing};
    use super::*;
    use kiln::ops::copy::{CopyError, CopyReport, download};
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const LAST_MODIFIED_SECS: i64 = 784111777;

    fn add(
        sources: &[&str],
        dest: &str,
        chmod: Option<&str>,
        unpack: Option<bool>,
        checksum: Option<&str>,
    ) -> CopyOp {
        op_from(&json!({
            "sources": sources,
            "dest": dest,
            "chmod": chmod,
            "add": {"unpack": unpack, "checksum": checksum},
        }))
    }

    fn run(op: &CopyOp, options: CopyOptions) -> (Result<CopyReport, CopyError>, String) {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        let dest = MergedRoot::new(Vec::new()).unwrap();
        let options = CopyOptions {
            created_time: Time { sec: CREATED, nsec: 0 },
            download_dir: Some(tmp.path().to_path_buf()),
            ..options
        };
        let result = copy_into_layer(op, CopySource::None, &dest, &out, &options);
        let files = listing(&out, Path::new("/nonexistent-host"), false);
        // Downloads go to temporary files that are gone once the copy is done.
        let left: Vec<_> =
            fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("out")], "temporary downloads left behind");
        (result, files)
    }

    fn server() -> Server {
        let tarball = archive(
            &json!({"compression": "gzip", "entries": [{"file": "foo", "content": "content0"}]}),
        );
        Server::start(HashMap::from([
            (
                "/dir/file.txt".to_string(),
                Response::ok(b"content1").header("Last-Modified", LAST_MODIFIED),
            ),
            ("/plain".to_string(), Response::ok(b"no date")),
            ("/t.tar.gz".to_string(), Response::ok(&tarball)),
            ("/name%20with%20space.txt".to_string(), Response::ok(b"spaced")),
        ]))
    }

    fn sha256(bytes: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    #[test]
    fn a_url_is_downloaded_into_a_directory_dest_with_0600_and_last_modified() {
        if !have_root("url download") {
            return;
        }
        let server = server();
        let op = add(&[&server.url("/dir/file.txt")], "/downloads/", None, None, None);
        let (result, files) = run(&op, CopyOptions::default());
        let report = result.unwrap();
        assert_eq!(report.downloads, 1);
        assert_eq!(
            files,
            format!(
                "d 0755 0:0 {CREATED} downloads\nf 0600 0:0 {LAST_MODIFIED_SECS} downloads/file.txt \"content1\""
            )
        );
    }

    #[test]
    fn a_url_to_a_file_dest_without_date_gets_the_creation_time_and_chmod() {
        if !have_root("url to a file") {
            return;
        }
        let server = server();
        let op = add(&[&server.url("/plain")], "/tmp/foo1", Some("644"), None, None);
        let (result, files) = run(&op, CopyOptions::default());
        result.unwrap();
        assert_eq!(
            files,
            format!("d 0644 0:0 {CREATED} tmp\nf 0644 0:0 {CREATED} tmp/foo1 \"no date\"")
        );
        let op = add(&[&server.url("/name%20with%20space.txt")], "/", None, None, None);
        let (result, files) = run(&op, CopyOptions::default());
        result.unwrap();
        assert_eq!(files, format!("f 0600 0:0 {CREATED} name with space.txt \"spaced\""));
    }

    #[test]
    fn checksums_are_verified() {
        if !have_root("url checksums") {
            return;
        }
        let server = server();
        let url = server.url("/dir/file.txt");
        let good = sha256(b"content1");
        let (result, files) =
            run(&add(&[&url], "/tmp/foo", None, None, Some(&good)), CopyOptions::default());
        result.unwrap();
        assert!(files.ends_with("tmp/foo \"content1\""), "{files}");
        let bad = sha256(b"");
        let (result, files) =
            run(&add(&[&url], "/tmp/foo", None, None, Some(&bad)), CopyOptions::default());
        assert_eq!(
            result.unwrap_err().to_string(),
            format!("digest mismatch for {url}: {good} (expected: {bad})")
        );
        assert_eq!(files, "", "nothing is written when a download fails its checksum");
        let (result, _) = run(
            &add(&[&url], "/tmp/foo", None, None, Some("md5:7e55db001d319a94b0b713529a756623")),
            CopyOptions::default(),
        );
        assert!(result.unwrap_err().to_string().contains("unsupported digest algorithm"));
    }

    #[test]
    fn url_archives_are_extracted_only_when_asked() {
        if !have_root("url archives") {
            return;
        }
        let server = server();
        let url = server.url("/t.tar.gz");
        let (result, files) = run(&add(&[&url], "/", None, None, None), CopyOptions::default());
        result.unwrap();
        assert!(files.starts_with("f 0600 0:0 "), "{files}");
        assert!(files.contains(" t.tar.gz <"), "{files}");
        let (result, files) =
            run(&add(&[&url], "/dest/", None, Some(true), None), CopyOptions::default());
        result.unwrap();
        assert_eq!(
            files,
            format!("d 0755 0:0 {CREATED} dest\nf 0644 0:0 1000000000 dest/foo \"content0\"")
        );
    }

    #[test]
    fn http_errors_name_the_status() {
        if !have_root("url errors") {
            return;
        }
        let server = server();
        let url = server.url("/missing");
        let (result, files) = run(&add(&[&url], "/x", None, None, None), CopyOptions::default());
        assert_eq!(
            result.unwrap_err().to_string(),
            format!("download {url}: invalid response status 404")
        );
        assert_eq!(files, "");
        // Nothing listens on port 9 of localhost: a connection error, not a panic.
        let (result, _) =
            run(&add(&["http://127.0.0.1:9/x"], "/x", None, None, None), CopyOptions::default());
        assert!(matches!(result.unwrap_err(), CopyError::Download { .. }));
    }

    #[test]
    fn predownloaded_urls_are_not_fetched_again() {
        if !have_root("url predownloaded") {
            return;
        }
        let server = server();
        let url = server.url("/dir/file.txt");
        let scratch = tempfile::tempdir().unwrap();
        let client = kiln::ops::copy::default_http_client().unwrap();
        let fetched = download(&client, &url, None, scratch.path()).unwrap();
        assert_eq!(fetched.digest, sha256(b"content1"));
        assert_eq!(fetched.file_name, "file.txt");
        assert_eq!(fetched.last_modified, Some(Time { sec: LAST_MODIFIED_SECS, nsec: 0 }));
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        let options = CopyOptions { downloads: vec![fetched.clone()], ..CopyOptions::default() };
        let (result, files) = run(&add(&[&url], "/d/", None, None, None), options);
        result.unwrap();
        assert!(files.ends_with("d/file.txt \"content1\""), "{files}");
        assert_eq!(server.requests.load(Ordering::SeqCst), 1, "the server was asked again");
        let path = fetched.path.clone();
        drop(fetched);
        assert!(!path.exists(), "the download is removed with its last handle");
    }
}

// ---- source digests for cache keys ----

mod digest {
    use super::common::tree::{build, have_root};
    use super::*;
    use kiln::fs::{Entry, FsError};
    use kiln::ops::copy::{sha256_content, source_digest, source_digests};
    use serde_json::{Value, json};
    use std::cell::RefCell;

    fn op(sources: &[&str], exclude: &[&str], parents: bool) -> CopyOp {
        op_from(&json!({"sources": sources, "dest": "/d/", "exclude": exclude, "parents": parents}))
    }

    /// The digest of `tree` as a build context (or as a one-layer rootfs).
    fn digest_of(tree: Value, op: &CopyOp, rootfs: bool) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ctx");
        fs::create_dir(&dir).unwrap();
        build(&dir, tree.as_array().unwrap(), tmp.path());
        if rootfs {
            let root = MergedRoot::new(vec![dir]).unwrap();
            source_digest(op, CopySource::Rootfs(&root), &sha256_content).unwrap()
        } else {
            let root = MergedRoot::plain(&dir).unwrap();
            source_digest(op, CopySource::Context(&root), &sha256_content).unwrap()
        }
    }

    fn base() -> Value {
        json!([
            {"dir": "app", "mode": "0755"},
            {"file": "app/main.c", "content": "int main;", "owner": "1000:1000"},
            {"file": "app/README", "content": "read me"},
            {"symlink": "app/link", "target": "main.c"},
            {"file": "other", "content": "not selected"}
        ])
    }

    fn with(f: impl FnOnce(&mut Vec<Value>)) -> Value {
        let mut tree = base().as_array().unwrap().clone();
        f(&mut tree);
        Value::Array(tree)
    }

    #[test]
    fn digests_cover_content_type_mode_names_and_links_but_not_times() {
        if !have_root("digests") {
            return;
        }
        let op = op(&["app"], &[], false);
        let reference = digest_of(base(), &op, false);
        assert!(reference.starts_with("sha256:") && reference.len() == 71, "{reference}");
        // Same inputs, another directory, other mtimes: same digest.
        let retimed = with(|t| {
            for entry in t.iter_mut() {
                entry["mtime"] = json!(42);
            }
        });
        assert_eq!(digest_of(retimed, &op, false), reference);
        // Outside the selection: no effect.
        assert_eq!(digest_of(with(|t| t[4]["content"] = json!("changed")), &op, false), reference);
        // Each of these changes the digest, and differently from each other.
        let changed = [
            with(|t| t[1]["content"] = json!("int main();")),
            with(|t| t[1]["mode"] = json!("0600")),
            with(|t| t[2]["file"] = json!("app/README.md")),
            with(|t| t[3]["target"] = json!("README")),
            with(|t| t[0]["mode"] = json!("0700")),
            with(|t| t.push(json!({"file": "app/new", "content": ""}))),
            with(|t| t[1]["xattrs"] = json!({"user.k": "v"})),
            with(|t| {
                t[2] = json!({"hardlink": "app/README", "target": "app/main.c"});
            }),
            with(|t| t[3] = json!({"file": "app/link", "content": "main.c"})),
        ];
        let mut seen = vec![reference.clone()];
        for (i, tree) in changed.into_iter().enumerate() {
            let digest = digest_of(tree, &op, false);
            assert!(!seen.contains(&digest), "change {i} did not change the digest");
            seen.push(digest);
        }
    }

    #[test]
    fn owners_count_only_where_they_are_kept() {
        if !have_root("digest owners") {
            return;
        }
        let op = op(&["app"], &[], false);
        let chowned = with(|t| t[1]["owner"] = json!("0:0"));
        // A context's files become 0:0 in the image: their owners do not matter.
        assert_eq!(digest_of(base(), &op, false), digest_of(chowned.clone(), &op, false));
        // A stage's files keep their owners.
        assert_ne!(digest_of(base(), &op, true), digest_of(chowned, &op, true));
    }

    #[test]
    fn selection_rules_shape_the_digest() {
        if !have_root("digest selection") {
            return;
        }
        let excluding = op(&["app"], &["*.c"], false);
        let reference = digest_of(base(), &excluding, false);
        assert_eq!(
            digest_of(with(|t| t[1]["content"] = json!("excluded anyway")), &excluding, false),
            reference
        );
        assert_ne!(
            digest_of(with(|t| t[2]["content"] = json!("kept")), &excluding, false),
            reference
        );
        // Wildcards: the matched names are part of the digest.
        let wild = op(&["app/*.c"], &[], false);
        assert_ne!(
            digest_of(with(|t| t[1]["file"] = json!("app/main2.c")), &wild, false),
            digest_of(base(), &wild, false)
        );
        // `--parents` keeps paths: the same file under another parent differs.
        let parents = op(&["*/README"], &[], true);
        let moved = with(|t| {
            t[2]["file"] = json!("lib/README");
        });
        assert_ne!(digest_of(moved, &parents, false), digest_of(base(), &parents, false));
        // No match: a digest, not an error; a missing plain path: the copy's error.
        let none = digest_of(base(), &op(&["nomatch*"], &[], false), false);
        assert_ne!(none, digest_of(base(), &op(&["app"], &[], false), false));
        let tmp = tempfile::tempdir().unwrap();
        let root = MergedRoot::plain(tmp.path()).unwrap();
        let err = source_digest(
            &op(&["missing"], &[], false),
            CopySource::Context(&root),
            &sha256_content,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "failed to compute cache key: \"/missing\": not found");
    }

    #[test]
    fn a_caller_hasher_sees_every_selected_file_once() {
        if !have_root("digest hasher") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path(), base().as_array().unwrap(), tmp.path());
        let root = MergedRoot::plain(tmp.path()).unwrap();
        let seen = RefCell::new(Vec::new());
        let counting = |entry: &Entry| -> Result<[u8; 32], FsError> {
            let host = entry.host_path().unwrap();
            assert!(host.starts_with(tmp.path()));
            seen.borrow_mut().push((entry.path().to_string(), entry.stat().size));
            sha256_content(entry)
        };
        let op = op(&["app", "other"], &[], false);
        let with_counter = source_digest(&op, CopySource::Context(&root), &counting).unwrap();
        assert_eq!(
            with_counter,
            source_digest(&op, CopySource::Context(&root), &sha256_content).unwrap()
        );
        assert_eq!(
            *seen.borrow(),
            [
                ("/app/README".to_string(), 7),
                ("/app/main.c".to_string(), 9),
                ("/other".to_string(), 12)
            ]
        );
    }

    #[test]
    fn per_source_digests_tell_which_source_changed() {
        if !have_root("per-source digests") {
            return;
        }
        let op = op(&["app", "other"], &[], false);
        let digests_of = |tree: Value| {
            let tmp = tempfile::tempdir().unwrap();
            build(tmp.path(), tree.as_array().unwrap(), tmp.path());
            let root = MergedRoot::plain(tmp.path()).unwrap();
            let digests = source_digests(&op, CopySource::Context(&root), &sha256_content).unwrap();
            let total = source_digest(&op, CopySource::Context(&root), &sha256_content).unwrap();
            assert_eq!(digests.total, total);
            digests
        };
        let before = digests_of(base());
        let names: Vec<&str> = before.per_source.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["app", "other"]);
        let after = digests_of(with(|tree| {
            tree[4] = json!({"file": "other", "content": "changed"});
        }));
        assert_ne!(before.total, after.total);
        assert_eq!(before.per_source[0], after.per_source[0], "app did not change");
        assert_ne!(before.per_source[1], after.per_source[1], "other did");
    }
}
