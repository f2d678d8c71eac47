//! A busybox base image made from Debian's `busybox-static` — the equivalent of
//! `FROM scratch` + `COPY busybox /bin/` with applet symlinks and minimal `/etc` files —
//! and helpers that push it (single image or multi-platform index) to a test registry.

use super::oci::{BuiltImage, ImageSpec, Layer, LayerBuilder, OCI_INDEX, OCI_MANIFEST, OciLayout};
use super::registry::TestRegistry;
use super::skopeo::{self, CopyOptions};
use serde_json::json;

pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "chown", "cp", "echo", "env", "false", "grep", "id", "ln", "ls",
    "mkdir", "mv", "printf", "pwd", "rm", "sed", "sleep", "stat", "tar", "test", "touch", "true",
    "uname", "wc", "whoami",
];

pub const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

pub fn busybox_layer() -> Layer {
    layer_with(APPLETS, PASSWD, GROUP)
}

/// The busybox layer with these applets linked in `/bin` and these user files.
pub fn layer_with(applets: &[&str], passwd: &str, group: &str) -> Layer {
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static provides /bin/busybox");
    let mut layer = LayerBuilder::new();
    layer.dir("bin", 0o755).file("bin/busybox", 0o755, &busybox);
    for applet in applets {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, passwd.as_bytes())
        .file("etc/group", 0o644, group.as_bytes())
        .dir("root", 0o700)
        .dir("tmp", 0o1777);
    layer.finish()
}

/// The host's architecture as image configs spell it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

pub fn busybox_spec(architecture: &str, variant: Option<&str>) -> ImageSpec {
    ImageSpec {
        os: "linux".into(),
        architecture: architecture.into(),
        variant: variant.map(str::to_string),
        config: json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
            "Labels": {"org.kiln.test": "busybox"},
        }),
        layers: vec![busybox_layer()],
    }
}

/// An image pushed to a test registry.
pub struct Pushed {
    /// `127.0.0.1:<port>/<repository>:<tag>`.
    pub reference: String,
    /// What the registry holds under the tag (may differ from the layout's manifest when
    /// skopeo converted the format).
    pub digest: String,
    pub images: Vec<BuiltImage>,
    /// The index's digest in the layout, for multi-platform pushes.
    pub layout_index: Option<String>,
}

/// Writes `spec` into a fresh layout and pushes it as `<repository>:<tag>`.
pub fn push_image(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    spec: &ImageSpec,
    options: &CopyOptions,
) -> Pushed {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path());
    let image = layout.add_image(spec);
    layout.tag(tag, OCI_MANIFEST, &image.manifest_digest, image.manifest.len());
    let reference = format!("{}/{repository}:{tag}", registry.host);
    let digest = skopeo::copy(dir.path(), tag, &reference, options);
    Pushed { reference, digest, images: vec![image], layout_index: None }
}

/// Pushes the busybox image for the host's architecture.
pub fn push_busybox(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    options: &CopyOptions,
) -> Pushed {
    push_image(registry, repository, tag, &busybox_spec(host_architecture(), None), options)
}

/// The busybox image in [`TestRegistry::shared`], pushed once per test binary.
pub fn shared_busybox() -> &'static Pushed {
    static BASE: std::sync::OnceLock<Pushed> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        push_busybox(TestRegistry::shared(), "busybox", "latest", &CopyOptions::default())
    })
}

/// Pushes an index with one busybox image per `(architecture, variant)`: the same layer,
/// a config (and so a manifest) per platform.
pub fn push_multi_platform(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    platforms: &[(&str, Option<&str>)],
    options: &CopyOptions,
) -> Pushed {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path());
    let layer = busybox_layer();
    let images: Vec<BuiltImage> = platforms
        .iter()
        .map(|(arch, variant)| {
            let mut spec = busybox_spec(arch, *variant);
            spec.layers = vec![layer.clone()];
            layout.add_image(&spec)
        })
        .collect();
    let (index, index_digest) = layout.add_index(&images);
    layout.tag(tag, OCI_INDEX, &index_digest, index.len());
    let reference = format!("{}/{repository}:{tag}", registry.host);
    let options = CopyOptions { all: true, ..*options };
    let digest = skopeo::copy(dir.path(), tag, &reference, &options);
    Pushed { reference, digest, images, layout_index: Some(index_digest) }
}
