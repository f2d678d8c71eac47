//! OCI image layouts written by hand: layer tars (the `tar` crate, gzip with `flate2`),
//! config JSON, manifests, indexes and `index.json`, so tests can make any image without
//! kiln's own exporters.
//!
//! ```text
//! DIR/
//! ├── oci-layout            {"imageLayoutVersion":"1.0.0"}
//! ├── index.json            one entry per tag (annotation org.opencontainers.image.ref.name)
//! └── blobs/sha256/<hex>    layers, configs, manifests, indexes
//! ```

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A finished layer: the tar, its gzip, and both digests.
#[derive(Clone, Debug)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
    /// sha256 of the uncompressed tar (the config's `diff_ids`).
    pub diff_id: String,
    /// sha256 of the gzip (the manifest's layer digest).
    pub digest: String,
}

/// Builds a layer tar entry by entry, with fixed owners and times.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        LayerBuilder { tar }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut header, format!("{}/", path.trim_end_matches('/')), std::io::empty())
            .unwrap();
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, content: &[u8]) -> &mut Self {
        let mut header = Self::header(tar::EntryType::Regular, mode, content.len() as u64);
        self.tar.append_data(&mut header, path, content).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn finish(self) -> Layer {
        let tar = self.tar.into_inner().unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&tar).unwrap();
        let gzip = encoder.finish().unwrap();
        Layer { diff_id: sha256(&tar), digest: sha256(&gzip), tar, gzip }
    }
}

/// What an image is made of.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// The config's `config` object (Env, Cmd, …).
    pub config: Value,
    pub layers: Vec<Layer>,
}

/// An image written into a layout.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layers: Vec<Layer>,
    pub spec: ImageSpec,
}

impl BuiltImage {
    pub fn platform(&self) -> Value {
        let mut platform = json!({"architecture": self.spec.architecture, "os": self.spec.os});
        if let Some(variant) = &self.spec.variant {
            platform["variant"] = json!(variant);
        }
        platform
    }
}

/// An OCI image layout directory being written.
pub struct OciLayout {
    pub dir: PathBuf,
    tags: RefCell<Vec<Value>>,
}

impl OciLayout {
    pub fn create(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let layout = OciLayout { dir: dir.to_path_buf(), tags: RefCell::new(Vec::new()) };
        layout.write_index();
        layout
    }

    pub fn add_blob(&self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), bytes).unwrap();
        digest
    }

    pub fn add_image(&self, spec: &ImageSpec) -> BuiltImage {
        let mut config = json!({
            "architecture": spec.architecture,
            "os": spec.os,
            "config": spec.config,
            "rootfs": {"type": "layers", "diff_ids": spec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": spec.layers.iter().map(|_| json!({"created_by": "kiln test helper"})).collect::<Vec<_>>(),
        });
        if let Some(variant) = &spec.variant {
            config["variant"] = json!(variant);
        }
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = self.add_blob(&config);
        let mut layers = Vec::new();
        for layer in &spec.layers {
            self.add_blob(&layer.gzip);
            layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.gzip.len()}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let manifest_digest = self.add_blob(&manifest);
        BuiltImage {
            config,
            config_digest,
            manifest,
            manifest_digest,
            layers: spec.layers.clone(),
            spec: spec.clone(),
        }
    }

    /// Writes an index over `images` (each with its platform) and returns (bytes, digest).
    pub fn add_index(&self, images: &[BuiltImage]) -> (Vec<u8>, String) {
        let manifests: Vec<Value> = images
            .iter()
            .map(|image| {
                json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": image.manifest_digest,
                    "size": image.manifest.len(),
                    "platform": image.platform(),
                })
            })
            .collect();
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        let digest = self.add_blob(&index);
        (index, digest)
    }

    /// Points `tag` in `index.json` at a blob.
    pub fn tag(&self, tag: &str, media_type: &str, digest: &str, size: usize) {
        self.tags.borrow_mut().push(json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": *self.tags.borrow()});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }
}
