//! Named build contexts that are images (`--build-context NAME=oci-layout://DIR[:TAG]` and
//! `NAME=docker-image://REF`) end to end: `FROM NAME`, `COPY --from=NAME` and
//! `RUN --mount=from=NAME` read the image, layouts written by kiln (`-o type=oci`, unpacked
//! with tar) and by `skopeo copy` are both read, and a damaged or unknown layout fails the
//! build with a message naming the cause.

mod common;

use common::busybox::push_busybox;
use common::kiln::{build_ready, busybox_layout, context, kiln, kiln_ok};
use common::registry::TestRegistry;
use std::fs;
use std::path::Path;
use std::process::Command;

const TOOLS: &[&str] = &["skopeo", "tar", "/bin/busybox"];

const USES_TOOLS: &str = "FROM base\n\
    COPY --from=tools /data/hello.txt /hello.txt\n\
    RUN --mount=from=tools,target=/t cat /t/data/hello.txt | tr a-z A-Z > /via-mount\n";

/// Builds `dockerfile` into a `type=local` directory with the given contexts; returns the
/// directory and kiln's stderr when the build succeeded, the stderr as error otherwise.
fn build_local(
    root: &Path,
    dockerfile: &str,
    contexts: &[String],
) -> Result<tempfile::TempDir, String> {
    let ctx = context(dockerfile, &[]);
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().join("fs").display());
    let mut args = vec!["build", "--progress", "plain", "-o", &dest];
    for value in contexts {
        args.extend(["--build-context", value]);
    }
    let ctx_arg = ctx.path().to_str().unwrap();
    args.push(ctx_arg);
    let output = kiln(root, &args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(0) => Ok(out),
        Some(1) => Err(stderr),
        other => panic!("kiln exited with {other:?}: {stderr}"),
    }
}

fn assert_used_tools(out: &Path) {
    let fs = out.join("fs");
    assert_eq!(fs::read_to_string(fs.join("hello.txt")).unwrap(), "hello\n", "COPY --from");
    assert_eq!(fs::read_to_string(fs.join("via-mount")).unwrap(), "HELLO\n", "RUN --mount=from");
    assert!(fs.join("bin/busybox").exists(), "FROM the layout's busybox");
}

#[test]
fn oci_layouts_serve_from_copy_from_and_run_mounts() {
    if !build_ready(TOOLS) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let base_dir = tempfile::tempdir().unwrap();
    let base = busybox_layout(base_dir.path(), "v1");
    let base_context = format!("base=oci-layout://{}:v1", base_dir.path().display());

    // A layout written by kiln itself: `-o type=oci`, unpacked with tar.
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("tools.tar");
    let ctx = context("FROM base\nRUN mkdir /data && echo hello > /data/hello.txt\n", &[]);
    let dest = format!("type=oci,dest={}", archive.display());
    kiln_ok(
        root.path(),
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "tools:7",
            "-o",
            &dest,
            "--build-context",
            &base_context,
            ctx.path().to_str().unwrap(),
        ],
    );
    let tools_dir = work.path().join("tools");
    fs::create_dir(&tools_dir).unwrap();
    let untar = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&tools_dir).status();
    assert!(untar.unwrap().success());

    // By tag (the ref.name kiln wrote), in a fresh root so every blob comes from the layouts.
    let fresh = tempfile::tempdir().unwrap();
    let tools_context = format!("tools=oci-layout://{}:7", tools_dir.display());
    let out = build_local(fresh.path(), USES_TOOLS, &[base_context.clone(), tools_context]);
    assert_used_tools(out.unwrap().path());

    // By digest, and with the default tag `latest` falling back to the only entry.
    let pinned =
        format!("base=oci-layout://{}@{}", base_dir.path().display(), base.manifest_digest);
    let tools_default = format!("tools=oci-layout://{}", tools_dir.display());
    let out = build_local(root.path(), USES_TOOLS, &[pinned, tools_default]);
    assert_used_tools(out.unwrap().path());
}

#[test]
fn damaged_or_unknown_layouts_fail_with_the_cause() {
    if !build_ready(TOOLS) {
        return;
    }
    let layout_dir = tempfile::tempdir().unwrap();
    let image = busybox_layout(layout_dir.path(), "v1");
    let dockerfile = "FROM base\nRUN true\n";
    let cases: Vec<(String, String)> = vec![
        (
            format!("base=oci-layout://{}", layout_dir.path().join("missing").display()),
            "is not an OCI image layout: no such directory".to_string(),
        ),
        (
            format!("base=oci-layout://{}@sha256:{}", layout_dir.path().display(), "0".repeat(64)),
            format!("blob sha256:{} is not in {}", "0".repeat(64), layout_dir.path().display()),
        ),
    ];
    for (value, message) in cases {
        let root = tempfile::tempdir().unwrap();
        let stderr =
            build_local(root.path(), dockerfile, std::slice::from_ref(&value)).unwrap_err();
        assert!(stderr.contains(&message), "{value}: expected {message:?} in:\n{stderr}");
    }

    // Two tags and neither asked for: the message lists what is there.
    let layout = common::oci::OciLayout::create(&layout_dir.path().join("two"));
    let second = layout.add_image(&common::busybox::busybox_spec("amd64", None));
    layout.tag("a", common::oci::OCI_MANIFEST, &second.manifest_digest, second.manifest.len());
    layout.tag("b", common::oci::OCI_MANIFEST, &second.manifest_digest, second.manifest.len());
    let root = tempfile::tempdir().unwrap();
    let value = format!("base=oci-layout://{}:c", layout.dir.display());
    let stderr = build_local(root.path(), dockerfile, &[value]).unwrap_err();
    let message =
        format!("no image tagged \"c\" in OCI layout {} (tags: a, b)", layout.dir.display());
    assert!(stderr.contains(&message), "{stderr}");

    // A layer whose bytes changed is refused, and nothing of it enters the store.
    let layer = &image.layers[0].digest;
    let path = layout_dir.path().join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let root = tempfile::tempdir().unwrap();
    let value = format!("base=oci-layout://{}:v1", layout_dir.path().display());
    let stderr = build_local(root.path(), dockerfile, &[value]).unwrap_err();
    assert!(
        stderr.contains(&format!("blob {layer} in")) && stderr.contains("is damaged"),
        "{stderr}"
    );
    let stored = root.path().join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    assert!(!stored.exists(), "a damaged blob entered the store");
}

#[test]
fn registry_images_as_docker_image_and_skopeo_made_layouts() {
    if !build_ready(&["docker-registry", "skopeo", "setpriv", "/bin/busybox"]) {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = push_busybox(&registry, "busybox", "1.0", &Default::default());
    let tools = tempfile::tempdir().unwrap();
    common::skopeo::copy_to_layout(&pushed.reference, tools.path(), "bb");

    // `docker-image://` resolves through the registry; the skopeo layout by its tag.
    let root = tempfile::tempdir().unwrap();
    let dockerfile = "FROM base\n\
        COPY --from=tools /bin/busybox /copied-busybox\n\
        RUN echo built > /marker\n";
    let contexts = [
        format!("base=docker-image://{}", pushed.reference),
        format!("tools=oci-layout://{}:bb", tools.path().display()),
    ];
    let out = build_local(root.path(), dockerfile, &contexts).unwrap();
    let fs = out.path().join("fs");
    assert_eq!(fs::read_to_string(fs.join("marker")).unwrap(), "built\n");
    assert_eq!(fs::read(fs.join("copied-busybox")).unwrap(), fs::read("/bin/busybox").unwrap());
    drop(registry);
}
