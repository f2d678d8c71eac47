//! `type=oci` archives checked with independent tools: `skopeo inspect` reads the archive,
//! `skopeo copy` re-verifies every blob into an OCI layout directory, and `umoci unpack`
//! of that layout gives the same root filesystem as kiln's `type=local` output. Needs
//! `skopeo` and `umoci` (mandatory when KILN_E2E=1).

mod common;
mod export_support;

use export_support::{Fixture, NAME, expected_paths, have_tool, is_root, run, tree};
use kiln_cache::Digest;
use serde_json::Value;
use std::process::Command;

fn inspect(archive: &std::path::Path, extra: &[&str]) -> String {
    let target = format!("oci-archive:{}", archive.display());
    run(Command::new("skopeo").arg("inspect").args(extra).arg(target))
}

#[test]
fn skopeo_inspects_the_oci_archive() {
    if !have_tool("skopeo") {
        return;
    }
    let fx = Fixture::new();
    let (_, image, response) = fx.export("type=oci,dest=DIR/image.tar");
    let archive = fx.path("image.tar");
    let info: Value = serde_json::from_str(&inspect(&archive, &[])).unwrap();
    assert_eq!(info["Digest"], image.manifest_digest.to_string());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(info["Labels"]["org.example.kiln"], "export-test");
    assert_eq!(info["Env"][1], "GREETING=hello");
    let layers: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(info["Layers"], serde_json::json!(layers));
    // The exact bytes kiln wrote come back.
    assert_eq!(inspect(&archive, &["--raw"]).as_bytes(), image.manifest_bytes);
    assert_eq!(inspect(&archive, &["--config", "--raw"]).as_bytes(), image.config_bytes);
    assert_eq!(response.image_digest, Some(image.manifest_digest));
    assert_eq!(response.config_digest, Some(Digest::of(&image.config_bytes)));
    eprintln!(
        "skopeo inspect oci-archive: digest {} and {} layers match",
        info["Digest"],
        layers.len()
    );
}

#[test]
fn skopeo_reads_zstd_uncompressed_and_docker_typed_oci_archives() {
    if !have_tool("skopeo") {
        return;
    }
    let fx = Fixture::new();
    for (spec, layer_type) in [
        (
            "type=oci,dest=DIR/zstd.tar,compression=zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            "type=oci,dest=DIR/plain.tar,compression=uncompressed",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "type=oci,dest=DIR/docker-types.tar,oci-mediatypes=false",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    ] {
        let (_, image, _) = fx.export(spec);
        let dest = spec
            .split(',')
            .nth(1)
            .unwrap()
            .trim_start_matches("dest=")
            .replace("DIR", &fx.dir.path().display().to_string());
        let raw: Value =
            serde_json::from_str(&inspect(std::path::Path::new(&dest), &["--raw"])).unwrap();
        assert_eq!(raw["layers"][0]["mediaType"], layer_type, "{spec}");
        let info: Value = serde_json::from_str(&inspect(std::path::Path::new(&dest), &[])).unwrap();
        assert_eq!(info["Digest"], image.manifest_digest.to_string(), "{spec}");
    }
}

#[test]
fn skopeo_copy_and_umoci_unpack_give_the_local_output_tree() {
    if !have_tool("skopeo") || !have_tool("umoci") {
        return;
    }
    let fx = Fixture::new();
    fx.export("type=oci,dest=DIR/image.tar");
    fx.export("type=local,dest=DIR/local");
    let layout = fx.path("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", fx.path("image.tar").display()))
        .arg(format!("oci:{}:kiln", layout.display())));
    let bundle = fx.path("bundle");
    let mut unpack = Command::new("umoci");
    unpack.args(["unpack"]);
    if !is_root() {
        unpack.arg("--rootless");
    }
    run(unpack.arg("--image").arg(format!("{}:kiln", layout.display())).arg(&bundle));

    let owners = is_root();
    let from_umoci = tree(&bundle.join("rootfs"), owners);
    let from_kiln = tree(&fx.path("local"), owners);
    assert_eq!(from_kiln.keys().cloned().collect::<Vec<_>>(), expected_paths());
    for (path, node) in &from_kiln {
        assert_eq!(Some(node), from_umoci.get(path), "{path} differs between kiln and umoci");
    }
    assert_eq!(from_umoci.len(), from_kiln.len(), "umoci has extra entries");
    if owners {
        assert_eq!(from_kiln["home/app/.profile"].uid, 1000);
    }
    assert_eq!(from_kiln["etc/hostname.link"].same_as.as_deref(), Some("etc/hostname"));
    eprintln!("umoci unpack and type=local agree on {} entries", from_kiln.len());
}

#[test]
fn skopeo_reads_the_local_store_after_type_image() {
    if !have_tool("skopeo") {
        return;
    }
    let fx = Fixture::new();
    let (_, image, _) = fx.export("type=image");
    let target = format!("oci:{}:{NAME}", fx.root.path().display());
    let info: Value =
        serde_json::from_str(&run(Command::new("skopeo").arg("inspect").arg(target))).unwrap();
    assert_eq!(info["Digest"], image.manifest_digest.to_string());
}

#[test]
fn two_stores_give_byte_identical_outputs() {
    // Same inputs in two independent stores (as on two machines), SOURCE_DATE_EPOCH fixed:
    // the same archive and rootfs tar bytes, hence the same digests.
    let one = Fixture::new();
    let two = Fixture::new();
    for spec in [
        "type=oci,dest=DIR/image.tar",
        "type=docker,dest=DIR/docker.tar",
        "type=oci,dest=DIR/zstd.tar,compression=zstd",
        "type=tar,dest=DIR/rootfs.tar",
    ] {
        one.export(spec);
        two.export(spec);
        let file = spec.split(',').nth(1).unwrap().trim_start_matches("dest=DIR/");
        let a = std::fs::read(one.path(file)).unwrap();
        let b = std::fs::read(two.path(file)).unwrap();
        assert!(a == b, "{spec}: outputs differ");
        assert!(!a.is_empty());
    }
}
