//! Running the kiln binary in tests: a state root in a temp dir, builds from a Dockerfile
//! text, and a busybox base image in an OCI layout (so builds need no registry: they use
//! `--build-context base=oci-layout://DIR`).

use super::busybox::{busybox_spec, host_architecture};
use super::oci::{BuiltImage, OCI_MANIFEST, OciLayout};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The kiln binary under test.
pub fn kiln_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

/// Runs `kiln --root ROOT ARGS...` and returns what it did (its stderr echoed for failures).
pub fn kiln(root: &Path, args: &[&str]) -> Output {
    let output = Command::new(kiln_binary()).arg("--root").arg(root).args(args).output().unwrap();
    eprintln!("kiln {args:?}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    output
}

/// Runs kiln and asserts it succeeded; returns its stdout.
#[track_caller]
pub fn kiln_ok(root: &Path, args: &[&str]) -> String {
    let output = kiln(root, args);
    assert!(output.status.success(), "kiln {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Writes a busybox image for the host into a new layout at `dir`, tagged `tag`.
pub fn busybox_layout(dir: &Path, tag: &str) -> BuiltImage {
    let layout = OciLayout::create(dir);
    let image = layout.add_image(&busybox_spec(host_architecture(), None));
    layout.tag(tag, OCI_MANIFEST, &image.manifest_digest, image.manifest.len());
    image
}

/// A build context directory holding `dockerfile` (and the files of `files`).
pub fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        std::fs::write(dir.path().join(path), content).unwrap();
    }
    dir
}

/// Whether the build tests can run: root (for the sandbox's id range) and the tools.
pub fn build_ready(tools: &[&str]) -> bool {
    if !rustix::process::geteuid().is_root() {
        assert!(!super::tools::e2e_required(), "the build tests need root (KILN_E2E=1)");
        eprintln!("skipping: the build tests need root");
        return false;
    }
    super::tools::available(tools)
}

/// `kiln --root ROOT build --progress plain ARGS CONTEXT`, as it ended.
pub fn build(root: &Path, context: &Path, args: &[&str]) -> Output {
    Command::new(kiln_binary())
        .arg("--root")
        .arg(root)
        .arg("build")
        .args(["--progress", "plain"])
        .args(args)
        .arg(context)
        .output()
        .expect("run kiln")
}

/// [`build`] that must succeed; its stdout.
#[track_caller]
pub fn build_ok(root: &Path, context: &Path, args: &[&str]) -> String {
    let output = build(root, context, args);
    assert!(
        output.status.success(),
        "kiln build {args:?} {} failed ({}):\n{}",
        context.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
