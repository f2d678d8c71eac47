//! `type=docker` archives checked with independent tools: `podman load` (into a private
//! store: `--root`/`--runroot` in a temp dir, vfs driver) loads the image under its name
//! with kiln's config, and `skopeo inspect docker-archive:` reads `manifest.json`. Needs
//! `podman` and `skopeo` (mandatory when KILN_E2E=1).

mod common;
mod export_support;

use common::podman::podman;
use export_support::{Fixture, NAME, have_tool, run};
use serde_json::Value;
use std::process::Command;

#[test]
fn podman_loads_the_docker_archive() {
    if !have_tool("podman") {
        return;
    }
    let fx = Fixture::new();
    let (_, image, _) = fx.export(r#"type=docker,dest=DIR/image.tar,"name=docker.io/library/kiln-export-test:1,quay.io/kiln/other:2""#);
    let store = fx.path("podman");
    let loaded = run(podman(&store).arg("load").arg("-i").arg(fx.path("image.tar")));
    eprintln!("podman load said: {}", loaded.trim());
    let mut names: Vec<&str> =
        loaded.lines().filter_map(|line| line.strip_prefix("Loaded image: ")).collect();
    names.sort();
    // manifest.json holds Docker's familiar names (`kiln-export-test:1`, as `docker save`
    // and BuildKit write them). docker load reads them as docker.io names; podman may
    // qualify a name without registry with `localhost/` instead (its convention; 4.3 does
    // so when an archive has several names).
    assert_eq!(names.len(), 2, "{loaded}");
    assert!(names[0] == NAME || names[0] == "localhost/kiln-export-test:1", "{loaded}");
    assert_eq!(names[1], "quay.io/kiln/other:2");

    let inspected = run(podman(&store).args(["image", "inspect", names[0]]));
    let info: Value = serde_json::from_str(&inspected).unwrap();
    let info = &info[0];
    assert_eq!(info["Id"], image.config_digest.hex(), "podman's image id is the config digest");
    assert_eq!(info["Config"]["Env"][1], "GREETING=hello");
    assert_eq!(info["Config"]["Cmd"][0], "/bin/tool");
    assert_eq!(info["Config"]["WorkingDir"], "/home/app");
    assert_eq!(info["Config"]["User"], "1000");
    assert_eq!(info["Labels"]["org.example.kiln"], "export-test");
    assert_eq!(info["Architecture"], "amd64");
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(info["RootFS"]["Layers"], serde_json::json!(diff_ids));
    let history =
        run(podman(&store).args(["history", "--no-trunc", "--format", "{{.CreatedBy}}", names[1]]));
    assert_eq!(
        history.lines().collect::<Vec<_>>(),
        ["RUN change # buildkit", "ENV GREETING=hello", "COPY base / # buildkit"]
    );
}

#[test]
fn podman_loads_uncompressed_and_oci_typed_docker_archives() {
    if !have_tool("podman") {
        return;
    }
    let fx = Fixture::new();
    for (spec, file) in [
        ("type=docker,dest=DIR/plain.tar,compression=uncompressed", "plain.tar"),
        (
            "type=docker,dest=DIR/oci-types.tar,oci-mediatypes=true,name=example.com/k/oci:3",
            "oci-types.tar",
        ),
    ] {
        let (_, image, _) = fx.export(spec);
        let store = fx.path(&format!("podman-{file}"));
        let loaded = run(podman(&store).arg("load").arg("-i").arg(fx.path(file)));
        let name = loaded.lines().find_map(|line| line.strip_prefix("Loaded image: ")).unwrap();
        let info: Value =
            serde_json::from_str(&run(podman(&store).args(["image", "inspect", name]))).unwrap();
        assert_eq!(info[0]["Id"], image.config_digest.hex(), "{spec}");
        eprintln!("podman load of {file}: {name}");
    }
}

#[test]
fn skopeo_reads_the_docker_archive() {
    if !have_tool("skopeo") {
        return;
    }
    let fx = Fixture::new();
    let (_, image, _) = fx.export("type=docker,dest=DIR/image.tar");
    let target = format!("docker-archive:{}", fx.path("image.tar").display());
    let info: Value =
        serde_json::from_str(&run(Command::new("skopeo").arg("inspect").arg(&target))).unwrap();
    assert_eq!(info["RepoTags"], serde_json::json!([]), "skopeo lists tags of registries only");
    assert_eq!(info["Env"][1], "GREETING=hello");
    // docker-archive: skopeo re-derives the manifest from manifest.json and the config.
    let config = run(Command::new("skopeo").args(["inspect", "--config", "--raw"]).arg(&target));
    assert_eq!(config.as_bytes(), image.config_bytes);
    let oci_view = format!("oci-archive:{}", fx.path("image.tar").display());
    let raw = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(&oci_view));
    assert_eq!(raw.as_bytes(), image.manifest_bytes, "the same tar is an OCI layout too");
    let manifest: Value = serde_json::from_slice(&image.manifest_bytes).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
}
