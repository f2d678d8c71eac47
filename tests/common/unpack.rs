//! Reading images with tools independent of kiln: GNU `tar` turns an OCI archive into an
//! image layout, `umoci` turns a layout's image into a root filesystem (or a runtime bundle), and the
//! config is read by following the layout's `index.json` to the manifest and its config.

use super::tools::stdout_of;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Extracts an OCI archive (a tar of an image layout) into `layout`, which is created.
pub fn extract_archive(archive: &Path, layout: &Path) {
    std::fs::create_dir_all(layout).unwrap();
    stdout_of(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(layout));
}

/// `umoci raw unpack` of the image tagged `tag` in `layout` into `rootfs` (which must not
/// exist): the layers applied in order, whiteouts honoured, owners kept (as root).
pub fn umoci_unpack(layout: &Path, tag: &str, rootfs: &Path) {
    umoci(&["raw", "unpack"], layout, tag, rootfs);
}

/// `umoci unpack`: a runtime bundle in `bundle` (which must not exist), the root filesystem
/// in `rootfs/` and, in `config.json`, the runtime config umoci derives from the image's
/// (its process args, cwd, user looked up in the image's `/etc/passwd`, env).
pub fn umoci_unpack_bundle(layout: &Path, tag: &str, bundle: &Path) {
    umoci(&["unpack"], layout, tag, bundle);
}

fn umoci(subcommand: &[&str], layout: &Path, tag: &str, dest: &Path) {
    let image = format!("{}:{tag}", layout.display());
    let mut command = Command::new("umoci");
    command.args(subcommand);
    if !rustix::process::geteuid().is_root() {
        command.arg("--rootless");
    }
    stdout_of(command.arg("--image").arg(image).arg(dest));
}

/// A blob of `layout` as JSON.
pub fn blob_json(layout: &Path, digest: &str) -> Value {
    let (algorithm, hex) = digest.split_once(':').expect("algorithm:hex");
    let bytes = std::fs::read(layout.join("blobs").join(algorithm).join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The config of the image tagged `tag` (`org.opencontainers.image.ref.name`) in `layout`.
pub fn layout_config(layout: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no image tagged {tag:?} in {}: {index}", layout.display()));
    let manifest = blob_json(layout, descriptor["digest"].as_str().unwrap());
    blob_json(layout, manifest["config"]["digest"].as_str().unwrap())
}
