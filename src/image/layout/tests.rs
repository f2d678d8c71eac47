use super::*;
use serde_json::json;
use std::fs;

/// A layout written by hand: `blob` stores bytes, `tag` adds an index.json entry.
struct TestLayout {
    dir: tempfile::TempDir,
    entries: Vec<serde_json::Value>,
}

impl TestLayout {
    fn new() -> TestLayout {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        let layout = TestLayout { dir, entries: Vec::new() };
        layout.write_index();
        layout
    }

    fn blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        fs::write(self.dir.path().join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        digest
    }

    /// An image with one layer `content`, for `arch`; returns the manifest digest and size.
    fn image(&self, content: &[u8], arch: &str) -> (Digest, u64) {
        let layer = self.blob(content);
        let diff_id = Digest::sha256_of(content);
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
        })
        .to_string();
        let config_digest = self.blob(config.as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": content.len()}]
        })
        .to_string();
        (self.blob(manifest.as_bytes()), manifest.len() as u64)
    }

    fn index(&self, entries: &[(Digest, u64, &str)]) -> (Digest, u64) {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(digest, size, arch)| {
                json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": size,
                       "platform": {"os": "linux", "architecture": arch}})
            })
            .collect();
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string();
        (self.blob(index.as_bytes()), index.len() as u64)
    }

    fn tag(&mut self, digest: &Digest, size: u64, annotations: serde_json::Value) {
        self.entries.push(json!({
            "mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": size,
            "annotations": annotations
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.entries});
        fs::write(self.dir.path().join("index.json"), index.to_string()).unwrap();
    }

    fn open(&self) -> Layout {
        Layout::open(self.dir.path()).unwrap()
    }
}

use crate::registry::manifest::{OCI_INDEX, OCI_MANIFEST};

fn amd64() -> Platform {
    Platform::new("linux", "amd64", None)
}

fn location(text: &str) -> LayoutLocation {
    LayoutLocation::parse(text).unwrap()
}

#[test]
fn locations_split_as_buildx_does() {
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        location("/l"),
        LayoutLocation { dir: "/l".into(), tag: "latest".into(), digest: None }
    );
    assert_eq!(location("/l:v1").tag, "v1");
    assert_eq!(location("rel/dir:v1").dir, PathBuf::from("rel/dir"));
    let pinned = location(&format!("/l:v1@{digest}"));
    assert_eq!((pinned.dir.to_str(), pinned.tag.as_str()), (Some("/l"), "v1"));
    assert_eq!(pinned.digest.unwrap().to_string(), digest);
    assert_eq!(location(&format!("/l@{digest}")).tag, "latest");
    // A colon in a parent directory is not a tag.
    assert_eq!(location("/a:b/layout").dir, PathBuf::from("/a:b/layout"));
    assert_eq!(location("/a:b/layout:t").dir, PathBuf::from("/a:b/layout"));
    let err = LayoutLocation::parse("/l@sha256:xyz").unwrap_err();
    assert!(err.to_string().starts_with("invalid digest \"sha256:xyz\" in oci-layout reference"));
}

#[test]
fn finds_by_name_then_tag_then_single_entry() {
    let mut layout = TestLayout::new();
    let (one, one_size) = layout.image(b"one", "amd64");
    let (two, two_size) = layout.image(b"two", "amd64");
    layout.tag(&one, one_size, json!({ANNOTATION_REF_NAME: "v1"}));
    // Alone in the index, any tag finds it.
    assert_eq!(layout.open().find(&location("x:whatever")).unwrap(), one);
    layout.tag(&two, two_size, json!({ANNOTATION_REF_NAME: "v2", ANNOTATION_IMAGE_NAME: "v1"}));
    let opened = layout.open();
    assert_eq!(opened.find(&location("x:v1")).unwrap(), two, "the full name is looked up first");
    assert_eq!(opened.find(&location("x:v2")).unwrap(), two);
    let err = opened.find(&location("x:v3")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no image tagged \"v3\" in OCI layout {} (tags: v1, v2)",
            layout.dir.path().display()
        )
    );
    let pinned = location(&format!("x:v3@{one}"));
    assert_eq!(opened.find(&pinned).unwrap(), one, "a digest needs no tag");
}

#[test]
fn resolves_through_an_index_for_the_platform() {
    let mut layout = TestLayout::new();
    let (amd, amd_size) = layout.image(b"amd", "amd64");
    let (arm, arm_size) = layout.image(b"arm", "arm64");
    let (index, index_size) =
        layout.index(&[(arm, arm_size, "arm64"), (amd.clone(), amd_size, "amd64")]);
    layout.tag(&index, index_size, json!({ANNOTATION_REF_NAME: "latest"}));
    let opened = layout.open();
    let digest = opened.find(&location("x")).unwrap();
    let image = resolve(&opened, &digest, &amd64(), "x").unwrap();
    assert_eq!(image.digest, index);
    assert_eq!(image.manifest_digest, amd);
    assert_eq!(image.indexes.len(), 1);
    assert_eq!(image.config.architecture, "amd64");
    assert_eq!(image.manifest.layers[0].digest, Digest::sha256_of(b"amd"));
    let err = resolve(&opened, &digest, &Platform::new("linux", "s390x", None), "x").unwrap_err();
    assert!(err.to_string().contains("no matching manifest for linux/s390x"), "{err}");
}

#[test]
fn damaged_or_missing_blobs_are_refused() {
    let mut layout = TestLayout::new();
    let (digest, size) = layout.image(b"layer", "amd64");
    layout.tag(&digest, size, json!({}));
    let opened = layout.open();
    let image = resolve(&opened, &digest, &amd64(), "x").unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let root = kiln_cache::Root::open(store_dir.path()).unwrap();
    let layer = &image.manifest.layers[0];

    // A layer whose bytes changed: nothing enters the store.
    let path = layout.dir.path().join("blobs/sha256").join(layer.digest.hex());
    fs::write(&path, b"LAYER").unwrap();
    let err = opened.import_blob(layer, &root.blobs(), &|_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {} in {} is damaged: its bytes hash to {}",
            layer.digest,
            layout.dir.path().display(),
            Digest::sha256_of(b"LAYER")
        )
    );
    fs::write(&path, b"lay").unwrap();
    let err = opened.import_blob(layer, &root.blobs(), &|_| {}).unwrap_err();
    assert!(err.to_string().ends_with("it has 3 bytes but its descriptor says 5"), "{err}");
    assert!(!root.blobs().contains(&store_digest(&layer.digest).unwrap()));

    // The good bytes are imported, with progress.
    fs::write(&path, b"layer").unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    opened.import_blob(layer, &root.blobs(), &|n| seen.lock().unwrap().push(n)).unwrap();
    assert_eq!(seen.into_inner().unwrap(), [5]);
    assert!(root.blobs().contains(&store_digest(&layer.digest).unwrap()));

    // A manifest that does not hash to its name.
    fs::write(layout.dir.path().join("blobs/sha256").join(digest.hex()), b"{}").unwrap();
    let err = resolve(&opened, &digest, &amd64(), "x").unwrap_err();
    assert!(matches!(err, LayoutError::BlobDamaged { .. }), "{err}");
    fs::remove_file(layout.dir.path().join("blobs/sha256").join(digest.hex())).unwrap();
    let err = resolve(&opened, &digest, &amd64(), "x").unwrap_err();
    assert_eq!(err.to_string(), format!("blob {digest} is not in {}", layout.dir.path().display()));
}

#[test]
fn not_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let err = Layout::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} is not an OCI image layout: it has no oci-layout file", dir.path().display())
    );
    let missing = dir.path().join("nope");
    let err = Layout::open(&missing).unwrap_err();
    assert!(err.to_string().ends_with("is not an OCI image layout: no such directory"));
    fs::write(dir.path().join("oci-layout"), b"{}").unwrap();
    let err = Layout::open(dir.path()).unwrap_err();
    assert!(err.to_string().ends_with("oci-layout has no imageLayoutVersion"));
}
