//! Base images for a build: resolved once (for lowering, which needs their config) and
//! fetched into the store when a step needs their layers.
//!
//! Lookup order for a reference: kiln's local image store (images built earlier with `-t`),
//! then the registry. `oci-layout://DIR[:TAG][@DIGEST]` (a `--build-context` naming an OCI
//! layout) is read from that layout, every blob verified as it is copied into the store. Every manifest and config met is kept in the blob store by its digest,
//! so exports and pushes can refer to base layers. Resolved images are remembered under the
//! pinned reference handed to lowering (`name:tag@sha256:...`), which is what graph steps
//! carry.

use super::engine::ImageProvider;
use super::progress::StepReporter;
use crate::image::layout::{self, Layout, LayoutError, LayoutLocation};
use crate::registry::client::RegistryClient;
use crate::registry::image_config::ImageConfig as ConfigFile;
use crate::registry::manifest::Descriptor;
use crate::registry::reference::Reference;
use crate::remote_cache::{CacheSource, LazyImage};
use indicatif::DecimalBytes;
use kiln_cache::{Digest, LayerRef, Root};
use kiln_frontend::graph::{Healthcheck, ImageConfig};
use kiln_frontend::lower::{ImageResolver, ResolvedImage};
use kiln_frontend::platform::Platform;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How a named context's `oci-layout://DIR[:TAG][@DIGEST]` reaches the resolver.
const OCI_LAYOUT_PREFIX: &str = "oci-layout://";

/// Where a resolved image's blobs come from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// kiln's local store: every blob is there already.
    Store,
    /// A registry: layers are pulled when a step needs them.
    Registry(Reference),
    /// An OCI layout (`oci-layout://` build context): layers are copied in when needed.
    Layout(Layout),
}

/// One resolved image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// What steps carry: `name:tag@sha256:...` or `oci-layout://DIR@sha256:...`.
    pub pinned: String,
    pub origin: Origin,
    pub manifest_digest: String,
    pub config: ConfigFile,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<Descriptor>,
}

pub struct Images<'a> {
    root: &'a Root,
    client: &'a RegistryClient,
    resolved: Mutex<BTreeMap<(String, Platform), BaseImage>>,
}

impl<'a> Images<'a> {
    pub fn new(root: &'a Root, client: &'a RegistryClient) -> Self {
        Images { root, client, resolved: Mutex::new(BTreeMap::new()) }
    }

    /// Resolves `reference` (as written, or already pinned) for `platform`.
    pub fn resolve_image(&self, reference: &str, platform: &Platform) -> Result<BaseImage, String> {
        let key = (reference.to_string(), platform.clone());
        if let Some(found) = self.resolved.lock().unwrap().get(&key) {
            return Ok(found.clone());
        }
        let image = match reference.strip_prefix(OCI_LAYOUT_PREFIX) {
            Some(location) => self.find_in_layout(location, platform).map_err(|e| e.to_string())?,
            None => {
                let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
                match self.find_in_store(&parsed, platform)? {
                    Some(image) => image,
                    None => self.pull_from_registry(&parsed, platform)?,
                }
            }
        };
        let mut resolved = self.resolved.lock().unwrap();
        resolved.insert(key, image.clone());
        resolved.insert((image.pinned.clone(), platform.clone()), image.clone());
        Ok(image)
    }

    fn find_in_store(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Option<BaseImage>, String> {
        let store = self.root.images();
        let descriptor = match reference.digest() {
            Some(_) => None,
            None => store.resolve(&reference.to_string()).map_err(|e| e.to_string())?,
        };
        let Some(descriptor) = descriptor else { return Ok(None) };
        let digest = descriptor.digest().as_ref().parse().map_err(|e| format!("{e}"))?;
        let name = reference.to_string();
        let image = layout::resolve(&self.root.blobs(), &digest, platform, &name)
            .map_err(|e| e.to_string())?;
        Ok(Some(BaseImage {
            pinned: format!("{reference}@{}", image.manifest_digest),
            origin: Origin::Store,
            manifest_digest: image.manifest_digest.to_string(),
            config: image.config,
            config_bytes: image.config_bytes,
            layers: image.manifest.layers,
        }))
    }

    /// `oci-layout://DIR[:TAG][@DIGEST]`: the image in that layout. Its manifests and config
    /// are copied into the store now (exports refer to them), its layers when a step runs.
    fn find_in_layout(
        &self,
        location: &str,
        platform: &Platform,
    ) -> Result<BaseImage, LayoutError> {
        let location = LayoutLocation::parse(location)?;
        let layout = Layout::open(&location.dir)?;
        let digest = layout.find(&location)?;
        let name = format!("{OCI_LAYOUT_PREFIX}{}", location.dir.display());
        let image = layout::resolve(&layout, &digest, platform, &name)?;
        image.store_documents(&self.root.blobs())?;
        Ok(BaseImage {
            pinned: format!("{name}@{}", image.digest),
            origin: Origin::Layout(layout),
            manifest_digest: image.digest.to_string(),
            config: image.config,
            config_bytes: image.config_bytes,
            layers: image.manifest.layers,
        })
    }

    fn pull_from_registry(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<BaseImage, String> {
        let resolved = self.client.resolve_image(reference, platform).map_err(|e| e.to_string())?;
        let blobs = self.root.blobs();
        for manifest in resolved.indexes.iter().chain(std::iter::once(&resolved.manifest)) {
            blobs.put_bytes(&manifest.bytes).map_err(|e| e.to_string())?;
        }
        blobs.put_bytes(&resolved.config.bytes).map_err(|e| e.to_string())?;
        let digest = resolved.digest().to_string();
        let name = reference.to_string();
        let base = name.split('@').next().unwrap_or(&name).to_string();
        Ok(BaseImage {
            pinned: format!("{base}@{digest}"),
            manifest_digest: digest,
            config: resolved.config.config.clone(),
            config_bytes: resolved.config.bytes.clone(),
            layers: resolved.image.layers.clone(),
            origin: Origin::Registry(reference.clone()),
        })
    }
}

/// The lowering view of an image config.
pub fn graph_config(config: &ConfigFile) -> ImageConfig {
    let Some(c) = &config.config else { return ImageConfig::default() };
    ImageConfig {
        user: c.user.clone().filter(|u| !u.is_empty()),
        exposed_ports: c
            .exposed_ports
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default(),
        env: c.env.clone().unwrap_or_default(),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        volumes: c.volumes.as_ref().map(|v| v.keys().cloned().collect()).unwrap_or_default(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        labels: c.labels.clone().unwrap_or_default(),
        stop_signal: c.stop_signal.clone(),
        args_escaped: c.args_escaped.unwrap_or(false),
        healthcheck: c.healthcheck.as_ref().map(|h| Healthcheck {
            test: h.test.clone().unwrap_or_default(),
            interval: h.interval.unwrap_or(0),
            timeout: h.timeout.unwrap_or(0),
            start_period: h.start_period.unwrap_or(0),
            start_interval: h.start_interval.unwrap_or(0),
            retries: h.retries.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
        }),
        on_build: c.on_build.clone().unwrap_or_default(),
        shell: c.shell.clone().unwrap_or_default(),
    }
}

impl ImageResolver for Images<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let image = self.resolve_image(reference, platform)?;
        let image_platform = Platform::new(
            &image.config.os,
            &image.config.architecture,
            image.config.variant.as_deref(),
        );
        Ok(ResolvedImage {
            reference: image.pinned.clone(),
            config: graph_config(&image.config),
            platform: (!image.config.os.is_empty()).then_some(image_platform),
            is_empty: image.layers.is_empty(),
        })
    }
}

impl ImageProvider for Images<'_> {
    fn layers(
        &self,
        reference: &str,
        platform: &Platform,
        report: &StepReporter<'_>,
    ) -> Result<(String, Vec<LayerRef>), String> {
        let image = self.resolve_image(reference, platform)?;
        let blobs = self.root.blobs();
        let missing: Vec<Descriptor> = image
            .layers
            .iter()
            .filter(|d| {
                Digest::parse(&d.digest.to_string()).map(|g| !blobs.contains(&g)).unwrap_or(true)
            })
            .cloned()
            .collect();
        if !missing.is_empty() {
            let total: u64 = missing.iter().map(|d| d.size).sum();
            match &image.origin {
                Origin::Store => {
                    return Err(format!(
                        "image {} is missing layers in the local store: run `kiln cache verify`",
                        image.pinned
                    ));
                }
                Origin::Registry(reference) => {
                    report.note(format!(
                        "pulling {} layer(s), {}",
                        missing.len(),
                        DecimalBytes(total)
                    ));
                    self.client
                        .fetch_blobs(
                            reference,
                            &missing,
                            |_| blobs.writer().map_err(std::io::Error::other),
                            |d, writer| {
                                let expected = Digest::parse(&d.digest.to_string())
                                    .map_err(std::io::Error::other)?;
                                writer
                                    .commit(Some(&expected))
                                    .map(|_| ())
                                    .map_err(std::io::Error::other)
                            },
                            &|p| report.bytes(&p.descriptor.digest.to_string(), p.done, p.total),
                        )
                        .map_err(|e| e.to_string())?;
                }
                Origin::Layout(layout) => {
                    report.note(format!(
                        "copying {} layer(s), {}, from {}",
                        missing.len(),
                        DecimalBytes(total),
                        layout.dir().display()
                    ));
                    for descriptor in &missing {
                        let id = descriptor.digest.to_string();
                        let progress = |n| report.bytes(&id, n, descriptor.size);
                        layout
                            .import_blob(descriptor, &blobs, &progress)
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        Ok((image.manifest_digest.clone(), layer_refs(&image)?))
    }

    fn lazy_layers(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<LazyImage>, String> {
        let image = self.resolve_image(reference, platform)?;
        let source = match &image.origin {
            Origin::Store => return Ok(None),
            Origin::Registry(reference) => CacheSource::Registry(reference.clone()),
            Origin::Layout(layout) => CacheSource::Local(LayoutLocation {
                dir: layout.dir().to_path_buf(),
                tag: "latest".into(),
                digest: None,
            }),
        };
        Ok(Some(LazyImage {
            digest: image.manifest_digest.clone(),
            layers: layer_refs(&image)?,
            source,
        }))
    }
}

/// The layers of a resolved image as the store records them.
fn layer_refs(image: &BaseImage) -> Result<Vec<LayerRef>, String> {
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(format!(
            "image {}: {} layers but {} diff_ids",
            image.pinned,
            image.layers.len(),
            diff_ids.len()
        ));
    }
    image
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| {
            Ok(LayerRef {
                diff_id: Digest::parse(&diff_id.to_string()).map_err(|e| e.to_string())?,
                blob: Digest::parse(&d.digest.to_string()).map_err(|e| e.to_string())?,
                media_type: d.media_type.clone(),
                size: d.size,
                created: None,
            })
        })
        .collect()
}
