//! Differential test against Buildah: every `testdata/differential/<case>/` is built by kiln
//! and by `buildah bud` (1.28, vfs storage, chroot isolation, its own store), both on the
//! busybox base of the shared test registry (the Dockerfiles start `ARG BASE` / `FROM
//! ${BASE}`), and the two images must agree:
//!
//! - the root filesystem, each image unpacked by `umoci raw unpack` and listed with
//!   [`common::tree`] (paths, types, modes, owners, contents, symlink targets, hard links,
//!   xattrs; not modification times);
//! - the config fields in [`FIELDS`].
//!
//! A case directory is the build context (less the two files below), plus:
//! - `context.json` (optional): more context entries, as [`common::tree::build`] makes them
//!   (hard links, archives, owners, modes: what git does not keep);
//! - `buildah-differs.json` (optional): where buildah and BuildKit (whose semantics kiln
//!   follows) differ for this case, each difference with why BuildKit's answer is the one
//!   kiln must give: `[{"why": "...", "tree": [{"buildah": LINE, "buildkit": LINE}],
//!   "config": [{"field": "Env", "buildah": VALUE, "buildkit": VALUE}]}]`. A `null` line is an
//!   entry the builder does not make. Buildah's answer must be what the file says (so that a
//!   stale entry fails); it is then replaced by BuildKit's before comparing.
//!
//! Differences every case can show, handled here rather than per case:
//! - buildah labels its images `io.buildah.version`;
//! - buildah's RUN leaves the mount points it had to create in the layer — empty `/dev`,
//!   `/proc`, `/sys`, `/run` directories, empty `/etc/hosts`, `/etc/hostname` and
//!   `/etc/resolv.conf` — where BuildKit removes empty mount stubs after the command
//!   (`executor/stubs.go`, MountStubsCleaner), as kiln's sandbox does ([`BUILDAH_RUN_STUBS`]).
//!
//! `KILN_DIFFERENTIAL_CASES=a,b` runs only those cases. Needs root, `buildah`, `umoci`,
//! `skopeo` and `docker-registry` (mandatory when KILN_E2E=1).

mod common;

use common::busybox::shared_busybox;
use common::tools::{self, stdout_of};
use common::tree::{Times, listing_lines};
use common::unpack::{extract_archive, layout_config, umoci_unpack};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] =
    &["docker-registry", "skopeo", "setpriv", "/bin/busybox", "buildah", "umoci", "tar", "cp"];

/// The config fields compared.
const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
];

/// The mount points buildah's RUN creates when the root lacks them, and leaves behind.
const BUILDAH_RUN_STUBS: &[&str] =
    &["dev", "proc", "sys", "run", "etc/hosts", "etc/hostname", "etc/resolv.conf"];

const BUILDAH_LABEL: &str = "io.buildah.version";

/// Files of a case directory that are not part of the build context.
const CASE_FILES: &[&str] = &["context.json", "buildah-differs.json"];

/// What is compared of an image.
struct Image {
    /// Listing lines, sorted.
    tree: Vec<String>,
    /// The compared config fields (`null` when absent).
    config: serde_json::Map<String, Value>,
}

impl Image {
    fn read(layout: &Path, tag: &str, rootfs: &Path) -> Image {
        umoci_unpack(layout, tag, rootfs);
        let mut tree = listing_lines(rootfs, Times::None);
        tree.sort();
        let config = layout_config(layout, tag);
        let config = FIELDS
            .iter()
            .map(|field| (field.to_string(), config["config"][field].clone()))
            .collect();
        Image { tree, config }
    }
}

/// A buildah with its own store.
struct Buildah {
    dir: PathBuf,
}

impl Buildah {
    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .env("TMPDIR", self.dir.join("tmp"));
        command
    }

    /// Builds `context` and writes the image into the layout `layout` as `latest`.
    fn build(&self, name: &str, context: &Path, build_arg: &str, layout: &Path) {
        std::fs::create_dir_all(self.dir.join("tmp")).unwrap();
        let image = format!("localhost/differential-{name}");
        stdout_of(
            self.command()
                .args(["bud", "--isolation", "chroot", "--tls-verify=false", "--quiet"])
                .args(["--build-arg", build_arg, "-t", &image])
                .arg(context),
        );
        let destination = format!("oci:{}:latest", layout.display());
        stdout_of(self.command().args(["push", "--quiet", &image, &destination]));
    }
}

fn ready() -> bool {
    tools::root_and_available("the differential tests", TOOLS)
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/differential");
    let only = std::env::var("KILN_DIFFERENTIAL_CASES").ok();
    let only: Option<BTreeSet<&str>> = only.as_deref().map(|o| o.split(',').collect());
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            only.as_ref().is_none_or(|only| only.contains(name))
        })
        .collect();
    cases.sort();
    cases
}

/// The build context of a case: its directory without the test's own files, plus the
/// entries of `context.json`.
fn make_context(case: &Path, context: &Path) {
    std::fs::create_dir_all(context).unwrap();
    stdout_of(Command::new("cp").arg("-a").arg(case.join(".")).arg(context));
    for file in CASE_FILES {
        let _ = std::fs::remove_file(context.join(file));
    }
    if let Ok(text) = std::fs::read_to_string(case.join("context.json")) {
        let entries: Vec<Value> = serde_json::from_str(&text).unwrap();
        common::tree::build(context, &entries, context);
    }
}

/// The path a listing line is about.
fn line_path(line: &str) -> &str {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields[0] {
        "h" => fields[1],
        "l" => fields[2],
        _ => fields[3],
    }
}

/// Takes out of `buildah` what every case may show (see the module docs).
fn remove_buildah_extras(buildah: &mut Image, kiln: &Image) -> Vec<String> {
    let mut problems = Vec::new();
    let labels = &mut buildah.config["Labels"];
    if labels.as_object_mut().and_then(|l| l.remove(BUILDAH_LABEL)).is_none() {
        problems.push(format!("buildah's image has no {BUILDAH_LABEL} label"));
    }
    if labels.as_object().is_some_and(|l| l.is_empty()) {
        *labels = Value::Null;
    }
    let kiln_paths: BTreeSet<&str> = kiln.tree.iter().map(|l| line_path(l)).collect();
    let empty_stub = |line: &String| {
        let path = line_path(line);
        let empty = match &line[..2] {
            "d " => !buildah.tree.iter().any(|l| line_path(l).starts_with(&format!("{path}/"))),
            "f " => line.ends_with(" \"\""),
            _ => false,
        };
        BUILDAH_RUN_STUBS.contains(&path) && empty && !kiln_paths.contains(path)
    };
    let stubs: Vec<String> = buildah.tree.iter().filter(|l| empty_stub(l)).cloned().collect();
    buildah.tree.retain(|line| !stubs.contains(line));
    problems
}

/// Replaces buildah's answers by BuildKit's where the case says they differ.
fn apply_known_differences(case: &Path, buildah: &mut Image) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(case.join("buildah-differs.json")) else {
        return Vec::new();
    };
    let differences: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut problems = Vec::new();
    for difference in &differences {
        assert!(difference["why"].is_string(), "{}: a difference without why", case.display());
        for change in difference["tree"].as_array().into_iter().flatten() {
            if let Some(line) = change["buildah"].as_str() {
                let before = buildah.tree.len();
                buildah.tree.retain(|l| l != line);
                if buildah.tree.len() == before {
                    problems.push(format!("stale known difference: buildah has no {line:?}"));
                }
            }
            if let Some(line) = change["buildkit"].as_str() {
                buildah.tree.push(line.to_string());
            }
        }
        for change in difference["config"].as_array().into_iter().flatten() {
            let field = change["field"].as_str().unwrap();
            if buildah.config[field] != change["buildah"] {
                problems.push(format!(
                    "stale known difference: buildah's {field} is {}, not {}",
                    buildah.config[field], change["buildah"]
                ));
            }
            buildah.config[field] = change["buildkit"].clone();
        }
    }
    buildah.tree.sort();
    problems
}

/// How kiln's image differs from buildah's once the known differences are accounted for.
fn compare(buildah: &Image, kiln: &Image) -> Vec<String> {
    let mut problems = Vec::new();
    let buildah_lines: BTreeSet<&String> = buildah.tree.iter().collect();
    let kiln_lines: BTreeSet<&String> = kiln.tree.iter().collect();
    let only = |a: &BTreeSet<&String>, b: &BTreeSet<&String>| -> String {
        a.difference(b).map(|l| format!("\n    {l}")).collect()
    };
    if buildah.tree != kiln.tree {
        problems.push(format!(
            "root filesystems differ\n  only buildah's:{}\n  only kiln's:{}",
            only(&buildah_lines, &kiln_lines),
            only(&kiln_lines, &buildah_lines)
        ));
    }
    for field in FIELDS {
        if buildah.config[*field] != kiln.config[*field] {
            problems.push(format!(
                "config {field} differs\n  buildah: {}\n  kiln:    {}",
                buildah.config[*field], kiln.config[*field]
            ));
        }
    }
    problems
}

#[test]
fn kiln_builds_what_buildah_builds_except_where_buildkit_differs() {
    if !ready() {
        return;
    }
    let build_arg = format!("BASE={}", shared_busybox().reference);
    let work = tempfile::tempdir().unwrap();
    let buildah = Buildah { dir: work.path().join("buildah") };
    let kiln_root = work.path().join("kiln");
    let mut failures = Vec::new();
    let cases = case_dirs();
    assert!(!cases.is_empty(), "no cases selected");
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        eprintln!("case {name}");
        let dir = work.path().join("cases").join(name);
        let context = dir.join("context");
        make_context(case, &context);
        // The builders share nothing but the registry: run them side by side.
        let (kiln_layout, buildah_layout) = (dir.join("kiln"), dir.join("buildah"));
        std::thread::scope(|scope| {
            let kiln = scope.spawn(|| {
                let archive = dir.join("kiln.tar");
                let tag = format!("differential/{name}:latest");
                let output = format!("type=oci,dest={}", archive.display());
                let args = ["--build-arg", &build_arg, "-t", &tag, "-o", &output];
                common::kiln::build_ok(&kiln_root, &context, &args);
                extract_archive(&archive, &kiln_layout);
            });
            buildah.build(name, &context, &build_arg, &buildah_layout);
            kiln.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
        let kiln = Image::read(&kiln_layout, "latest", &dir.join("kiln-rootfs"));
        let mut buildah = Image::read(&buildah_layout, "latest", &dir.join("buildah-rootfs"));
        let mut problems = remove_buildah_extras(&mut buildah, &kiln);
        problems.extend(apply_known_differences(case, &mut buildah));
        problems.extend(compare(&buildah, &kiln));
        if !problems.is_empty() {
            failures.push(format!("{name}:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
