//! `kiln images`, `kiln rmi` and `kiln save` end to end: images built with tags are listed
//! as `docker images` lists them, untagged ones disappear from the store's OCI layout (as
//! `skopeo` sees it), and saved archives are read back by `skopeo` and `podman load` with
//! the image's config digest. Builds start from a busybox image in an OCI layout, so no
//! registry is needed.

mod common;

use common::kiln::{build_ready, busybox_layout, context, kiln, kiln_ok};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;

const TOOLS: &[&str] = &["skopeo", "podman", "/bin/busybox"];

/// A state root and a busybox layout to build from.
struct Store {
    root: tempfile::TempDir,
    base: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let base = tempfile::tempdir().unwrap();
        busybox_layout(base.path(), "latest");
        Store { root: tempfile::tempdir().unwrap(), base }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// Builds `dockerfile` with `args` (tags, ...) and returns the image id from --iidfile.
    fn build(&self, dockerfile: &str, files: &[(&str, &str)], args: &[&str]) -> String {
        let ctx = context(dockerfile, files);
        let iid = ctx.path().join("iid");
        let base = format!("base=oci-layout://{}", self.base.path().display());
        let mut all = vec!["build", "--progress", "plain", "--build-context", &base];
        let iid_arg = iid.to_str().unwrap();
        all.extend(["--iidfile", iid_arg]);
        all.extend(args);
        let ctx_arg = ctx.path().to_str().unwrap();
        all.push(ctx_arg);
        kiln_ok(self.root(), &all);
        fs::read_to_string(iid).unwrap()
    }

    fn kiln(&self, args: &[&str]) -> std::process::Output {
        kiln(self.root(), args)
    }

    fn json_rows(&self) -> Vec<Value> {
        kiln_ok(self.root(), &["images", "--format", "json"])
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `skopeo inspect --config oci:ROOT:REF`: the store read as an OCI layout.
    fn skopeo_config(&self, reference: &str) -> Option<Vec<u8>> {
        let target = format!("oci:{}:{reference}", self.root().display());
        let output = Command::new("skopeo")
            .args(["inspect", "--config", "--raw", &target])
            .output()
            .unwrap();
        output.status.success().then_some(output.stdout)
    }
}

fn short(id: &str) -> &str {
    &id.trim_start_matches("sha256:")[..12]
}

fn sha256(bytes: &[u8]) -> String {
    common::oci::sha256(bytes)
}

#[test]
fn images_lists_tagged_builds_and_rmi_untags() {
    if !build_ready(TOOLS) {
        return;
    }
    let store = Store::new();
    let one = store.build("FROM base\nRUN echo one > /one\n", &[], &["-t", "app:1", "-t", "app"]);
    let two = store.build(
        "FROM base\nCOPY two /two\n",
        &[("two", "2\n")],
        &["-t", "ghcr.io/team/tool:2"],
    );
    assert_ne!(one, two);

    // The table: Docker's columns and short names, one row per tag.
    let table = kiln_ok(store.root(), &["images"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split_whitespace().collect()).collect();
    let first_columns: Vec<[&str; 3]> = rows.iter().map(|r| [r[0], r[1], r[2]]).collect();
    assert_eq!(
        first_columns,
        [
            ["app", "1", short(&one)],
            ["app", "latest", short(&one)],
            ["ghcr.io/team/tool", "2", short(&two)]
        ],
        "{table}"
    );
    for line in &lines[1..] {
        assert!(line.contains(" ago "), "CREATED says how long ago: {line}");
        assert!(line.ends_with(" MB") || line.ends_with(" kB"), "SIZE is human: {line}");
    }
    // Column starts line up with the header's.
    let id_column = lines[0].find("IMAGE ID").unwrap();
    assert!(lines[1..].iter().all(
        |l| l[id_column..].starts_with(short(&one)) || l[id_column..].starts_with(short(&two))
    ));

    // JSON lines and ids.
    let json = store.json_rows();
    assert_eq!(json.len(), 3);
    assert_eq!(json[0]["Name"], "docker.io/library/app:1");
    assert_eq!(json[2]["Name"], "ghcr.io/team/tool:2");
    assert_eq!(json[0]["ID"], short(&one));
    let ids = kiln_ok(store.root(), &["images", "-q", "--no-trunc"]);
    assert_eq!(ids, format!("{one}\n{one}\n{two}\n"));

    // An id with two tags needs --force.
    let output = store.kiln(&["rmi", short(&one)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(use --force): the image is tagged app:1, app:latest"), "{stderr}");

    // rmi removes the tag only: the store's layout no longer has it, the other tag stays.
    assert_eq!(sha256(&store.skopeo_config("docker.io/library/app:1").unwrap()), one);
    assert_eq!(kiln_ok(store.root(), &["rmi", "app:1"]), "Untagged: app:1\n");
    assert!(store.skopeo_config("docker.io/library/app:1").is_none(), "skopeo still sees app:1");
    assert_eq!(sha256(&store.skopeo_config("docker.io/library/app:latest").unwrap()), one);
    let names: Vec<Value> = store.json_rows().iter().map(|r| r["Name"].clone()).collect();
    assert_eq!(names, ["docker.io/library/app:latest", "ghcr.io/team/tool:2"]);

    // Unknown references: reported, exit 1; the known ones are still untagged.
    let output = store.kiln(&["rmi", "nope:1", "app"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Untagged: app:latest\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: no such image: docker.io/library/nope:1"), "{stderr}");
    // An invalid reference fails before anything is removed.
    let output = store.kiln(&["rmi", "ghcr.io/team/tool:2", "Bad Name"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid reference \"Bad Name\""));
    assert_eq!(store.json_rows().len(), 1);
    // By id; the blobs stay until a prune.
    assert_eq!(kiln_ok(store.root(), &["rmi", &two]), "Untagged: ghcr.io/team/tool:2\n");
    assert_eq!(kiln_ok(store.root(), &["images"]).lines().count(), 1, "only the header");
    let blob = store.root().join("blobs/sha256").join(one.trim_start_matches("sha256:"));
    assert!(blob.exists(), "rmi leaves blobs to kiln cache prune");
}

fn podman(storage: &Path, args: &[&str]) -> String {
    let output = Command::new("podman")
        .arg("--storage-driver=vfs")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(args)
        .env("TMPDIR", storage)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn save_writes_archives_that_skopeo_and_podman_read() {
    if !build_ready(TOOLS) {
        return;
    }
    let store = Store::new();
    let id = store.build("FROM base\nRUN echo saved > /saved\n", &[], &["-t", "app:1"]);
    let out = tempfile::tempdir().unwrap();
    let oci = out.path().join("app-oci.tar");
    let docker = out.path().join("app-docker.tar");
    kiln_ok(store.root(), &["save", "app:1", "-o", oci.to_str().unwrap()]);
    // "app" is app:latest, which does not exist: nothing is written.
    let output = store.kiln(&["save", "app", "-o", docker.to_str().unwrap(), "--format", "docker"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!docker.exists());
    kiln_ok(store.root(), &["save", "app:1", "--format", "docker", "-o", docker.to_str().unwrap()]);

    // skopeo reads both, with the image's config.
    let skopeo = |target: String, extra: &[&str]| {
        let output =
            Command::new("skopeo").arg("inspect").args(extra).arg(&target).output().unwrap();
        assert!(output.status.success(), "{target}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    };
    let oci_target = format!("oci-archive:{}", oci.display());
    assert_eq!(sha256(&skopeo(oci_target.clone(), &["--config", "--raw"])), id);
    let stored_manifest = {
        let target = format!("oci:{}:docker.io/library/app:1", store.root().display());
        skopeo(target, &["--raw"])
    };
    assert_eq!(skopeo(oci_target, &["--raw"]), stored_manifest, "the stored manifest, unchanged");
    let docker_target = format!("docker-archive:{}", docker.display());
    assert_eq!(sha256(&skopeo(docker_target, &["--config", "--raw"])), id);

    // The OCI index names the image as BuildKit's exporter does.
    let listing = Command::new("tar").arg("-xOf").arg(&oci).arg("index.json").output().unwrap();
    let index: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(annotations["org.opencontainers.image.ref.name"], "1");
    assert_eq!(annotations["io.containerd.image.name"], "docker.io/library/app:1");

    // podman loads both archives as the same image.
    let storage = tempfile::tempdir().unwrap();
    for archive in [&docker, &oci] {
        let loaded = podman(storage.path(), &["load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.contains("app:1"), "{loaded}");
        let inspected =
            podman(storage.path(), &["image", "inspect", "--format", "{{.Id}}", "app:1"]);
        assert_eq!(inspected.trim(), id.trim_start_matches("sha256:"));
    }

    // Saving is deterministic.
    let again = out.path().join("again.tar");
    kiln_ok(store.root(), &["save", "app:1", "-o", again.to_str().unwrap()]);
    assert_eq!(fs::read(&again).unwrap(), fs::read(&oci).unwrap());

    // Unknown image: exit 1, a clear message, no file.
    let missing = out.path().join("missing.tar");
    let output = store.kiln(&["save", "nothing:here", "-o", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no such image: docker.io/library/nothing:here"), "{stderr}");
    assert!(!missing.exists());
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 3, "no temp file is left behind");
}
