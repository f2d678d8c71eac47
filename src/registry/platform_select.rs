//! Choosing the manifest for a platform from an image index or Docker manifest list, with
//! containerd's compatibility rules (which BuildKit uses for `FROM`).
//!
//! A wanted platform accepts, in order of preference: itself; for `amd64/vN` the lower
//! `amd64` levels, then `386`; for `arm/vN` the lower `arm` variants down to `v5`; for
//! `arm64` (`v8` when unspecified) the lower `arm64` levels down to `v8`, then `arm/v8`…`v5`.
//! Variants compare after defaulting (`arm64` = `arm64/v8`, `arm` = `arm/v7`). Entries
//! that are not runnable images (attestations, `unknown/unknown`) are never chosen; entries
//! without a platform are accepted last, as containerd does. Among equally good entries the
//! first in the index wins.

use super::manifest::{
    DOCKER_MANIFEST, Descriptor, ImageIndex, OCI_INDEX, OCI_MANIFEST, PlatformSpec,
};
use kiln_frontend::platform::Platform;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformSelectError {
    #[error("no matching manifest for {wanted} in the manifest list entries of {reference} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatch { wanted: String, reference: String, available: Vec<String> },
}

/// The platform a descriptor's `platform` object describes, normalised.
pub fn descriptor_platform(spec: &PlatformSpec) -> Platform {
    Platform::new(&spec.os, &spec.architecture, spec.variant.as_deref())
}

/// Platforms `wanted` can run, best first.
pub fn compatible_platforms(wanted: &Platform) -> Vec<Platform> {
    let os = wanted.os.as_str();
    let level = |variant: Option<&str>| {
        variant.and_then(|v| v.strip_prefix('v')).and_then(|n| n.parse::<u32>().ok())
    };
    let mut vector = vec![wanted.clone()];
    match wanted.architecture.as_str() {
        "amd64" => {
            if let Some(n) = level(wanted.effective_variant()) {
                vector.extend(
                    (1..n).rev().map(|v| Platform::new(os, "amd64", Some(&format!("v{v}")))),
                );
            }
            vector.push(Platform::new(os, "386", None));
        }
        "arm" => {
            if let Some(n) = level(wanted.effective_variant()) {
                vector
                    .extend((5..n).rev().map(|v| Platform::new(os, "arm", Some(&format!("v{v}")))));
            }
        }
        "arm64" => {
            if let Some(n) = level(wanted.effective_variant()).filter(|n| *n >= 8) {
                vector.extend(
                    (8..n).rev().map(|v| Platform::new(os, "arm64", Some(&format!("v{v}")))),
                );
                vector.extend(
                    (5..=8).rev().map(|v| Platform::new(os, "arm", Some(&format!("v{v}")))),
                );
            }
        }
        _ => {}
    }
    vector
}

fn same_platform(a: &Platform, b: &Platform) -> bool {
    a.os == b.os
        && a.architecture == b.architecture
        && a.effective_variant() == b.effective_variant()
}

fn is_runnable_manifest(descriptor: &Descriptor) -> bool {
    let is_attestation = descriptor
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"));
    let unknown = descriptor
        .platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown");
    let manifest_type = matches!(
        descriptor.media_type.as_str(),
        OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | super::manifest::DOCKER_MANIFEST_LIST
    );
    manifest_type && !is_attestation && !unknown
}

/// The best entry of `index` for `wanted`, or an error listing what the index offers.
/// `reference` is only used in the error message.
pub fn select_manifest<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, PlatformSelectError> {
    let entries: Vec<&Descriptor> =
        index.manifests.iter().filter(|d| is_runnable_manifest(d)).collect();
    for candidate in compatible_platforms(wanted) {
        let found = entries.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| same_platform(&descriptor_platform(p), &candidate))
        });
        if let Some(found) = found {
            return Ok(found);
        }
    }
    if let Some(untyped) = entries.iter().find(|d| d.platform.is_none()) {
        return Ok(untyped);
    }
    let mut available: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| descriptor_platform(p).to_string())
        .collect();
    available.dedup();
    Err(PlatformSelectError::NoMatch {
        wanted: wanted.to_string(),
        reference: reference.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(n: u8, platform: Option<(&str, &str, Option<&str>)>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)).parse().unwrap(),
            size: 100,
            urls: None,
            annotations: None,
            platform: platform.map(|(os, arch, variant)| PlatformSpec {
                architecture: arch.into(),
                os: os.into(),
                os_version: None,
                os_features: None,
                variant: variant.map(str::to_string),
                features: None,
            }),
            artifact_type: None,
            extra: Default::default(),
        }
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: entries,
            annotations: None,
            extra: Default::default(),
        }
    }

    fn pick(index: &ImageIndex, wanted: &str) -> Result<u8, String> {
        select_manifest(index, &Platform::parse(wanted).unwrap(), "reg/x:tag")
            .map(|d| u8::from_str_radix(&d.digest.hex()[..2], 16).unwrap())
            .map_err(|e| e.to_string())
    }

    fn typical() -> ImageIndex {
        let mut attestation = entry(9, Some(("unknown", "unknown", None)));
        attestation.annotations = Some(BTreeMap::from([(
            "vnd.docker.reference.type".to_string(),
            "attestation-manifest".to_string(),
        )]));
        index(vec![
            attestation,
            entry(1, Some(("linux", "amd64", None))),
            entry(2, Some(("linux", "arm64", Some("v8")))),
            entry(3, Some(("linux", "arm", Some("v7")))),
            entry(4, Some(("linux", "arm", Some("v6")))),
            entry(5, Some(("windows", "amd64", None))),
        ])
    }

    #[test]
    fn exact_and_default_variant_matches() {
        let idx = typical();
        assert_eq!(pick(&idx, "linux/amd64"), Ok(1));
        assert_eq!(pick(&idx, "linux/arm64"), Ok(2), "arm64 means arm64/v8");
        assert_eq!(pick(&idx, "linux/arm64/v8"), Ok(2));
        assert_eq!(pick(&idx, "linux/arm"), Ok(3), "arm means arm/v7");
        assert_eq!(pick(&idx, "linux/arm/v6"), Ok(4));
        assert_eq!(pick(&idx, "windows/amd64"), Ok(5));
    }

    #[test]
    fn entry_without_variant_matches_default() {
        let idx = index(vec![
            entry(1, Some(("linux", "arm64", None))),
            entry(2, Some(("linux", "arm", None))),
        ]);
        assert_eq!(pick(&idx, "linux/arm64/v8"), Ok(1));
        assert_eq!(pick(&idx, "linux/arm/v7"), Ok(2));
    }

    #[test]
    fn compatible_fallbacks_in_order() {
        let idx = index(vec![
            entry(1, Some(("linux", "arm", Some("v5")))),
            entry(2, Some(("linux", "arm", Some("v6")))),
        ]);
        assert_eq!(pick(&idx, "linux/arm64"), Ok(2), "arm64 runs arm/v6 before arm/v5");
        assert_eq!(pick(&idx, "linux/arm/v7"), Ok(2));
        let idx = index(vec![
            entry(1, Some(("linux", "386", None))),
            entry(2, Some(("linux", "amd64", Some("v2")))),
        ]);
        assert_eq!(pick(&idx, "linux/amd64/v3"), Ok(2));
        assert_eq!(pick(&idx, "linux/amd64"), Ok(1), "amd64 (v1) cannot run amd64/v2 but runs 386");
        assert_eq!(
            compatible_platforms(&Platform::parse("linux/arm64").unwrap())
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
        );
    }

    #[test]
    fn no_match_lists_available_platforms() {
        assert_eq!(
            pick(&typical(), "linux/s390x"),
            Err("no matching manifest for linux/s390x in the manifest list entries of reg/x:tag (available: linux/amd64, linux/arm64, linux/arm/v7, linux/arm/v6, windows/amd64)".into())
        );
        assert_eq!(
            pick(&index(vec![]), "linux/amd64"),
            Err("no matching manifest for linux/amd64 in the manifest list entries of reg/x:tag (available: none)".into())
        );
    }

    #[test]
    fn entries_without_platform_come_last() {
        let idx = index(vec![entry(1, None), entry(2, Some(("linux", "amd64", None)))]);
        assert_eq!(pick(&idx, "linux/amd64"), Ok(2));
        assert_eq!(pick(&idx, "linux/riscv64"), Ok(1));
    }
}
