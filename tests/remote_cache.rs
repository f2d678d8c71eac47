//! Remote build cache end to end: `--cache-to` in one state root, `--cache-from` in a fresh
//! one, through a directory and through a real registry; what is reused, what runs again,
//! what is downloaded, and what a broken cache does to a build (a warning, nothing more).

mod common;

use common::build::{Build, cached_steps, image_line, steps_run, with_base};
use common::proxy::FaultProxy;
use common::registry::TestRegistry;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

const MULTI_STAGE: &str = "FROM {{base}} AS builder\n\
     WORKDIR /src\n\
     COPY a.txt .\n\
     RUN tr a-z A-Z < a.txt > /A.txt\n\
     FROM {{base}}\n\
     COPY --from=builder /A.txt /A.txt\n\
     COPY b.txt /b.txt\n\
     RUN cat /A.txt /b.txt > /both\n";

/// The context files of [`MULTI_STAGE`].
const FILES: [(&str, &str); 2] = [("a.txt", "abc\n"), ("b.txt", "b1\n")];

fn ready() -> bool {
    common::build::ready()
}

/// A fresh root and context holding `dockerfile` and `files`.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> Build {
    let build = Build::new(dockerfile);
    for (path, content) in files {
        build.write(path, content);
    }
    build
}

fn arg(key: &str, path: &Path) -> String {
    format!("{key}={}", path.display())
}

/// Builds with `--cache-to type=local,dest=DIR,mode=MODE`; returns the log.
fn export_to(build: &Build, dir: &Path, mode: &str) -> String {
    build.ok(&["--cache-to", &format!("{},mode={mode}", arg("type=local,dest", dir))])
}

/// The cache artifact a `type=local` export wrote: (manifest, config).
fn read_local_cache(dir: &Path) -> (Value, Value) {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| {
        let path = dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice::<Value>(&fs::read(path).unwrap()).unwrap()
    };
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// Keys of the records in a state root.
fn record_keys(root: &Path) -> Vec<String> {
    let mut keys: Vec<String> = walk(&root.join("cache/records"))
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    keys.sort();
    keys
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn has_blob(root: &Path, digest: &str) -> bool {
    root.join("blobs/sha256").join(digest.trim_start_matches("sha256:")).exists()
}

#[test]
fn local_round_trip_reuses_every_step_and_gives_the_same_image() {
    if !ready() {
        return;
    }
    let first = context(MULTI_STAGE, &FILES);
    let cache = tempfile::tempdir().unwrap();
    let log = export_to(&first, &cache.path().join("c"), "max");
    assert!(log.contains("exporting cache to client directory"), "{log}");
    let (manifest, config) = read_local_cache(&cache.path().join("c"));
    assert_eq!(manifest["artifactType"], "application/vnd.kiln.cache.v1");
    assert_eq!(config["records"].as_array().unwrap().len(), 6, "every step of both stages");

    let second = context(MULTI_STAGE, &FILES);
    let src = arg("type=local,src", &cache.path().join("c"));
    let hit = second.ok(&["--cache-from", &src]);
    assert_eq!(steps_run(&hit), Vec::<String>::new(), "every step is reused: {hit}");
    assert_eq!(cached_steps(&hit), 6);
    assert_eq!(image_line(&hit), image_line(&log), "the same image as the original build");

    // The records whose layers were downloaded are now local. The builder's never were
    // (the cache knew what COPY --from reads): without --cache-from, only it runs again.
    assert_eq!(
        steps_run(&second.ok(&[])),
        [
            "[builder 2/4] WORKDIR /src",
            "[builder 3/4] COPY a.txt .",
            "[builder 4/4] RUN tr a-z A-Z < a.txt > /A.txt"
        ]
    );

    // One source file changes: only the steps that depend on it run.
    second.write("b.txt", "b2\n");
    let changed = second.ok(&["--cache-from", &src]);
    assert_eq!(
        steps_run(&changed),
        ["[stage-1 3/4] COPY b.txt /b.txt", "[stage-1 4/4] RUN cat /A.txt /b.txt > /both"],
    );
}

/// Builds with `--cache-to type=registry,ref=REGISTRY/NAME:cache,mode=MODE`; returns the
/// reference.
fn push_cache(build: &Build, registry: &str, name: &str, mode: &str) -> String {
    let reference = format!("{registry}/{name}:cache");
    let log = build.ok(&["--cache-to", &format!("type=registry,ref={reference},mode={mode}")]);
    assert!(log.contains("exporting cache to registry"), "{log}");
    reference
}

#[test]
fn registry_round_trip_reuses_every_step_and_gives_the_same_image() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::shared();
    let first = context(MULTI_STAGE, &FILES);
    let reference = push_cache(&first, &registry.host, "round-trip", "max");
    let original = first.ok(&[]);
    // Other tools see an OCI artifact.
    let raw = common::skopeo::inspect_raw(&reference, None);
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.kiln.cache.v1");

    let second = context(MULTI_STAGE, &FILES);
    let hit = second.ok(&["--cache-from", &format!("type=registry,ref={reference}")]);
    assert!(hit.contains(&format!("importing cache manifest from {reference}")), "{hit}");
    assert_eq!(steps_run(&hit), Vec::<String>::new(), "every step is reused: {hit}");
    assert_eq!(image_line(&hit), image_line(&original));

    let third = context(MULTI_STAGE, &[("a.txt", "xyz\n"), ("b.txt", "b1\n")]);
    let changed = third.ok(&["--cache-from", &reference]);
    assert_eq!(
        steps_run(&changed),
        [
            "[builder 3/4] COPY a.txt .",
            "[builder 4/4] RUN tr a-z A-Z < a.txt > /A.txt",
            "[stage-1 2/4] COPY --from=builder /A.txt /A.txt",
            "[stage-1 3/4] COPY b.txt /b.txt",
            "[stage-1 4/4] RUN cat /A.txt /b.txt > /both",
        ],
        "a changed a.txt re-runs what depends on it"
    );
}

#[test]
fn a_fully_cached_build_downloads_only_the_layers_it_needs() {
    if !ready() {
        return;
    }
    // The builder's big layer is copied from and mounted by cached steps: the cache knows
    // the digest of what the COPY reads, so nothing needs its bytes.
    let dockerfile = "FROM {{base}} AS builder\n\
         RUN head -c 2000000 /dev/urandom > /big && echo built > /out\n\
         FROM {{base}}\n\
         COPY --from=builder /out /out\n\
         RUN --mount=type=bind,from=builder,target=/b cat /b/out > /copied\n";
    let first = context(dockerfile, &[]);
    let registry = TestRegistry::shared();
    let reference = push_cache(&first, &registry.host, "lazy", "max");
    let proxy = FaultProxy::start(&registry.host, vec![]);
    let through_proxy = reference.replace(&registry.host, &proxy.host);

    let second = context(dockerfile, &[]);
    let hit = second.ok(&["--cache-from", &through_proxy]);
    assert_eq!(steps_run(&hit), Vec::<String>::new(), "{hit}");

    let cache = tempfile::tempdir().unwrap();
    export_to(&first, cache.path(), "max");
    let big = top_layer(cache.path(), "head -c");
    let own = top_layer(cache.path(), "/copied");
    let downloads: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET") && r.contains("/blobs/"))
        .collect();
    assert!(!downloads.iter().any(|r| r.contains(&big)), "builder layer pulled: {downloads:?}");
    assert!(!has_blob(second.root.path(), &big), "the builder's layer is not in the store");
    assert!(has_blob(second.root.path(), &own), "the image's own layer was fetched");
    assert!(downloads.iter().any(|r| r.contains(&own)), "through the registry: {downloads:?}");
}

/// The digest of the top layer of the record whose description contains `needle`, in the
/// local cache `dir`.
fn top_layer(dir: &Path, needle: &str) -> String {
    let (manifest, config) = read_local_cache(dir);
    let records = config["records"].as_array().unwrap();
    let record = records.iter().find(|r| r["description"].as_str().unwrap().contains(needle));
    let layers = record.expect("the record is exported")["layers"].as_array().unwrap();
    let index = layers.last().unwrap()["layer"].as_u64().unwrap() as usize;
    manifest["layers"][index]["digest"].as_str().unwrap().to_string()
}

#[test]
fn mode_min_exports_only_the_final_image_steps() {
    if !ready() {
        return;
    }
    let first = context(MULTI_STAGE, &FILES);
    let cache = tempfile::tempdir().unwrap();
    export_to(&first, cache.path(), "min");
    let (_, config) = read_local_cache(cache.path());
    let descriptions: Vec<&str> = config["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert_eq!(descriptions.len(), 3, "{descriptions:?}");
    assert!(descriptions.iter().all(|d| d.starts_with("[stage-1")), "{descriptions:?}");

    // The builder stage runs again; the final stage's steps are reused.
    let second = context(MULTI_STAGE, &FILES);
    let log = second.ok(&["--cache-from", &arg("type=local,src", cache.path())]);
    assert_eq!(
        steps_run(&log),
        [
            "[builder 2/4] WORKDIR /src",
            "[builder 3/4] COPY a.txt .",
            "[builder 4/4] RUN tr a-z A-Z < a.txt > /A.txt"
        ]
    );
}

#[test]
fn broken_caches_are_warnings_and_the_build_runs() {
    if !ready() {
        return;
    }
    let first = context(MULTI_STAGE, &FILES);
    let good = tempfile::tempdir().unwrap();
    export_to(&first, good.path(), "max");

    // Incompatible: another format, consistently re-digested.
    let incompatible = tempfile::tempdir().unwrap();
    copy_dir(good.path(), incompatible.path());
    rewrite_config(incompatible.path(), |config| config["format"] = 2.into());
    // Corrupt: the config's bytes no longer match their digest.
    let corrupt = tempfile::tempdir().unwrap();
    copy_dir(good.path(), corrupt.path());
    let (manifest, _) = read_local_cache(corrupt.path());
    let config_path = blob_path(corrupt.path(), manifest["config"]["digest"].as_str().unwrap());
    make_writable(&config_path);
    fs::write(&config_path, b"{\"format\":1,").unwrap();
    // Blobs gone: the records are there, a layer is not.
    let gone = tempfile::tempdir().unwrap();
    copy_dir(good.path(), gone.path());
    let (manifest, _) = read_local_cache(gone.path());
    for layer in manifest["layers"].as_array().unwrap() {
        fs::remove_file(blob_path(gone.path(), layer["digest"].as_str().unwrap())).unwrap();
    }
    let missing_ref = format!("{}/no/such-cache:here", TestRegistry::shared().host);
    let not_a_cache = with_base("{{base}}");

    let second = context(MULTI_STAGE, &FILES);
    let mut args: Vec<String> = Vec::new();
    for source in [
        missing_ref.clone(),
        not_a_cache.clone(),
        arg("type=local,src", &good.path().join("nothing-here")),
        arg("type=local,src", incompatible.path()),
        arg("type=local,src", corrupt.path()),
        arg("type=local,src", gone.path()),
    ] {
        args.extend(["--cache-from".to_string(), source]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = second.ok(&args);
    let warnings: Vec<&str> = log.lines().filter(|l| l.starts_with("WARNING: ")).collect();
    let warned = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(warned(&format!("cannot import cache from {missing_ref}: manifest")), "{warnings:#?}");
    assert!(
        warned(&format!("cannot import cache from {not_a_cache}: not a kiln cache")),
        "{warnings:#?}"
    );
    assert!(warned("nothing-here is not an OCI image layout"), "{warnings:#?}");
    assert!(
        warned("cache format 2 is not one this kiln reads (it reads format 1)"),
        "{warnings:#?}"
    );
    assert!(
        warned(&format!("cannot import cache from {}: blob", corrupt.path().display())),
        "{warnings:#?}"
    );
    assert!(warned("is gone; running the step instead"), "{warnings:#?}");
    assert_eq!(steps_run(&log).len(), 6, "every step ran: {log}");
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status();
    assert!(status.unwrap().success());
}

/// Edits a local cache's config and writes it back with new digests up to index.json.
fn rewrite_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let (mut manifest, mut config) = read_local_cache(dir);
    edit(&mut config);
    let put = |bytes: Vec<u8>| {
        let digest = common::oci::sha256(&bytes);
        fs::write(blob_path(dir, &digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let (digest, size) = put(serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = put(serde_json::to_vec(&manifest).unwrap());
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn cache_keys_do_not_depend_on_where_the_root_or_context_is() {
    if !ready() {
        return;
    }
    let dockerfile = "FROM {{base}}\n\
         WORKDIR /app\n\
         COPY . .\n\
         RUN --mount=type=cache,target=/cache ls /app > /listing\n\
         ADD sub/ /sub/\n";
    let files = [("a.txt", "a\n"), ("sub/b.txt", "b\n")];
    let first = context(dockerfile, &files);
    let second = context(dockerfile, &files);
    assert_ne!(first.root.path(), second.root.path());
    assert_ne!(first.context.path(), second.context.path());
    first.ok(&[]);
    second.ok(&[]);
    let keys = record_keys(first.root.path());
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(keys, record_keys(second.root.path()), "the same keys in both roots");
}

#[test]
fn a_failed_export_fails_the_build_unless_ignored() {
    if !ready() {
        return;
    }
    let build = context("FROM {{base}}\nRUN echo hi > /hi\n", &[]);
    let blocker = build.path("blocker");
    fs::write(&blocker, "a file where the cache directory should be").unwrap();
    let dest = arg("type=local,dest", &blocker);
    let log = build.fails(&["--cache-to", &dest]);
    assert!(
        log.contains(&format!(
            "exporting cache to {}: {} exists and is not a directory",
            blocker.display(),
            blocker.display()
        )),
        "{log}"
    );
    let log = build.ok(&["--cache-to", &format!("{dest},ignore-error=true")]);
    assert!(log.contains("(ignored)"), "{log}");
    let log = build.fails(&["--cache-to", "type=gha"]);
    assert!(
        log.contains("invalid --cache-to \"type=gha\": cache type gha is not supported by kiln"),
        "{log}"
    );
}

#[test]
fn a_builder_stage_base_image_is_never_pulled_when_its_steps_are_cached() {
    if !ready() {
        return;
    }
    let dockerfile = "FROM {{base}} AS builder\n\
         RUN echo built > /out\n\
         FROM scratch\n\
         COPY --from=builder /out /out\n";
    let first = context(dockerfile, &[]);
    let cache = tempfile::tempdir().unwrap();
    export_to(&first, cache.path(), "max");
    let (manifest, config) = read_local_cache(cache.path());
    let run = config["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["description"].as_str().unwrap().contains("RUN echo built"));
    let base_layer = run.unwrap()["layers"][0]["layer"].as_u64().unwrap() as usize;
    let base_digest = manifest["layers"][base_layer]["digest"].as_str().unwrap();

    // A cold state root: not even the base image is there.
    let mut second = context(dockerfile, &[]);
    second.root = tempfile::tempdir().unwrap();
    let log = second.ok(&["--cache-from", &arg("type=local,src", cache.path())]);
    assert_eq!(steps_run(&log), Vec::<String>::new(), "{log}");
    assert!(!has_blob(second.root.path(), base_digest), "the builder's base was pulled: {log}");
    assert!(has_blob(second.root.path(), &top_layer(cache.path(), "COPY --from=builder")));
}

#[test]
fn registry_export_round_trip_and_lazy_layers_are_mounted_not_downloaded() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::shared();
    let reference = format!("{}/pushed/cache:main", registry.host);
    let first = context(MULTI_STAGE, &FILES);
    let log = first.ok(&["--cache-to", &format!("type=registry,ref={reference},mode=max")]);
    assert!(log.contains("exporting cache to registry"), "{log}");

    // A fresh root reuses every step through the registry, and gives the same image.
    let proxy = FaultProxy::start(&registry.host, vec![]);
    let through_proxy = reference.replace(&registry.host, &proxy.host);
    let second = context(MULTI_STAGE, &FILES);
    let other = format!("{}/pushed/other:main", proxy.host);
    let hit = second.ok(&[
        "--cache-from",
        &through_proxy,
        "-o",
        "type=tar,dest=/dev/null",
        "--cache-to",
        &format!("type=registry,ref={other},mode=max"),
    ]);
    assert_eq!(steps_run(&hit), Vec::<String>::new(), "{hit}");
    // The builder's layers were never downloaded: the export mounted them from the cache's
    // repository instead.
    let cache = tempfile::tempdir().unwrap();
    export_to(&first, cache.path(), "max");
    let builder_layer = top_layer(cache.path(), "RUN tr a-z");
    let requests = proxy.requests();
    assert!(
        !requests.iter().any(|r| r.starts_with("GET") && r.contains(&builder_layer)),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST") && r.contains(&builder_layer.replace(':', "%3A"))),
        "{requests:#?}"
    );
    let third = context(MULTI_STAGE, &FILES);
    let again = third.ok(&["--cache-from", &other]);
    assert_eq!(steps_run(&again), Vec::<String>::new(), "the re-exported cache is whole: {again}");
}

#[test]
fn a_push_after_cache_hits_mounts_the_layers_instead_of_downloading_them() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::shared();
    let reference = format!("{}/ci-app/cache:main", registry.host);
    let first = context(MULTI_STAGE, &FILES);
    first.ok(&["--cache-to", &format!("type=registry,ref={reference},mode=max")]);

    // A fresh runner: every step hits, and the push sends no layer it had to download.
    let proxy = FaultProxy::start(&registry.host, vec![]);
    let second = context(MULTI_STAGE, &FILES);
    let image = format!("{}/ci-app/image:1", proxy.host);
    let meta_path = second.root.path().join("meta.json");
    let log = second.ok(&[
        "--cache-from",
        &reference.replace(&registry.host, &proxy.host),
        "-o",
        &format!("type=registry,name={image}"),
        "--metadata-file",
        meta_path.to_str().unwrap(),
    ]);
    assert_eq!(steps_run(&log), Vec::<String>::new(), "{log}");
    let requests = proxy.requests();
    // Reading the cache takes its config blob; no layer is downloaded.
    let cache_manifest: Value =
        serde_json::from_slice(&common::skopeo::inspect_raw(&reference, None)).unwrap();
    let cache_config = cache_manifest["config"]["digest"].as_str().unwrap();
    let layer_downloads: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET") && r.contains("/blobs/") && !r.contains(cache_config))
        .collect();
    assert!(layer_downloads.is_empty(), "layers were downloaded: {layer_downloads:#?}");
    assert!(
        requests.iter().any(|r| r.starts_with("POST") && r.contains("mount=")),
        "{requests:#?}"
    );
    // The pushed image is the one the first build made, whole.
    let original = first.ok(&[]);
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let digest = meta["containerimage.digest"].as_str().unwrap();
    assert!(image_line(&original).contains(digest), "{original}\n{meta}");
    // skopeo reads every blob of it back (and checks their digests).
    let copied = tempfile::tempdir().unwrap();
    let pushed = image.replace(&proxy.host, &registry.host);
    common::skopeo::copy_to_layout(&pushed, &copied.path().join("layout"), "1");
}
