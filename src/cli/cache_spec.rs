//! `--cache-from` and `--cache-to` values, with buildx's syntax (CSV `key=value` fields):
//!
//! ```text
//! --cache-from REF                                   (= type=registry,ref=REF)
//! --cache-from type=registry,ref=REF
//! --cache-from type=local,src=DIR[,tag=TAG][,digest=sha256:…]
//! --cache-to   type=registry,ref=REF[,mode=min|max][,ignore-error=true]
//! --cache-to   type=local,dest=DIR[,tag=TAG][,mode=min|max][,ignore-error=true]
//! ```
//!
//! `oci-mediatypes=true` and `image-manifest=true` are accepted (kiln always writes an OCI
//! image manifest); other BuildKit cache types (`inline`, `gha`, `s3`, `azblob`) and keys are
//! refused with the list of what kiln supports. `tag` defaults to `latest`.

use crate::export::spec::{SpecError, parse_bool, split_fields};
use crate::image::layout::LayoutLocation;
use crate::registry::Reference;
use crate::remote_cache::CacheSource;
use crate::remote_cache::export::{CacheExport, CacheTarget, ExportMode};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a cache flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{flag} {spec:?}: {reason}")]
pub struct CacheSpecError {
    flag: &'static str,
    spec: String,
    reason: String,
}

/// The fields of one spec: `type` and the other keys, each at most once.
fn fields(
    flag: &'static str,
    spec: &str,
) -> Result<(String, BTreeMap<String, String>), CacheSpecError> {
    let error = |reason: String| CacheSpecError { flag, spec: spec.to_string(), reason };
    let fields = split_fields(spec).map_err(|e| error(e.to_string()))?;
    let mut attrs = BTreeMap::new();
    for field in fields {
        let (key, value) =
            field.split_once('=').ok_or_else(|| error(format!("{field:?} is not key=value")))?;
        let key = key.trim().to_lowercase();
        if attrs.insert(key.clone(), value.to_string()).is_some() {
            return Err(error(format!("{key} is given more than once")));
        }
    }
    let kind = attrs
        .remove("type")
        .ok_or_else(|| error("no type= (expected registry or local)".into()))?;
    match kind.as_str() {
        "registry" | "local" => Ok((kind, attrs)),
        "inline" | "gha" | "s3" | "azblob" => Err(error(format!(
            "cache type {kind} is not supported by kiln (use registry or local)"
        ))),
        other => Err(error(format!("unknown cache type {other:?} (expected registry or local)"))),
    }
}

/// Checks that only `valid` keys are left, and that accepted-but-fixed options keep kiln's
/// value.
fn check_keys(
    attrs: &BTreeMap<String, String>,
    valid: &[&str],
    error: &dyn Fn(String) -> CacheSpecError,
) -> Result<(), CacheSpecError> {
    for (key, value) in attrs {
        match key.as_str() {
            "oci-mediatypes" | "image-manifest" => {
                let key: &'static str =
                    if key == "oci-mediatypes" { "oci-mediatypes" } else { "image-manifest" };
                if !parse_bool(key, value).map_err(|e: SpecError| error(e.to_string()))? {
                    return Err(error(format!(
                        "{key}=false is not supported: kiln writes caches as OCI image manifests"
                    )));
                }
            }
            other if valid.contains(&other) => {}
            other => {
                let mut keys = valid.to_vec();
                keys.extend(["oci-mediatypes", "image-manifest"]);
                return Err(error(format!(
                    "unknown key {other:?} (valid keys: {})",
                    keys.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn reference(
    value: Option<&String>,
    error: &dyn Fn(String) -> CacheSpecError,
) -> Result<Reference, CacheSpecError> {
    let value =
        value.filter(|v| !v.is_empty()).ok_or_else(|| error("ref=REF is required".into()))?;
    Reference::parse(value).map_err(|e| error(format!("invalid ref {value:?}: {e}")))
}

fn tag(attrs: &BTreeMap<String, String>) -> String {
    attrs.get("tag").filter(|t| !t.is_empty()).cloned().unwrap_or_else(|| "latest".into())
}

/// One `--cache-from` value.
pub fn parse_cache_from(spec: &str) -> Result<CacheSource, CacheSpecError> {
    const FLAG: &str = "cache-from";
    let error = |reason: String| CacheSpecError { flag: FLAG, spec: spec.to_string(), reason };
    if !spec.contains('=') {
        return Ok(CacheSource::Registry(reference(Some(&spec.to_string()), &error)?));
    }
    let (kind, attrs) = fields(FLAG, spec)?;
    if kind == "registry" {
        check_keys(&attrs, &["ref"], &error)?;
        return Ok(CacheSource::Registry(reference(attrs.get("ref"), &error)?));
    }
    check_keys(&attrs, &["src", "tag", "digest"], &error)?;
    let dir = attrs
        .get("src")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| error("src=DIR is required".into()))?;
    let digest = attrs
        .get("digest")
        .map(|d| d.parse().map_err(|e| error(format!("invalid digest {d:?}: {e}"))))
        .transpose()?;
    Ok(CacheSource::Local(LayoutLocation { dir: PathBuf::from(dir), tag: tag(&attrs), digest }))
}

/// One `--cache-to` value.
pub fn parse_cache_to(spec: &str) -> Result<CacheExport, CacheSpecError> {
    const FLAG: &str = "cache-to";
    let error = |reason: String| CacheSpecError { flag: FLAG, spec: spec.to_string(), reason };
    let (kind, attrs) = fields(FLAG, spec)?;
    let mode = match attrs.get("mode").map(String::as_str) {
        None | Some("min") => ExportMode::Min,
        Some("max") => ExportMode::Max,
        Some(other) => return Err(error(format!("invalid mode {other:?}: expected min or max"))),
    };
    let ignore_error = match attrs.get("ignore-error") {
        Some(value) => parse_bool("ignore-error", value).map_err(|e| error(e.to_string()))?,
        None => false,
    };
    let target = if kind == "registry" {
        check_keys(&attrs, &["ref", "mode", "ignore-error"], &error)?;
        CacheTarget::Registry(reference(attrs.get("ref"), &error)?)
    } else {
        check_keys(&attrs, &["dest", "tag", "mode", "ignore-error"], &error)?;
        let dir = attrs
            .get("dest")
            .filter(|d| !d.is_empty())
            .ok_or_else(|| error("dest=DIR is required".into()))?;
        CacheTarget::Local { dir: PathBuf::from(dir), tag: tag(&attrs) }
    };
    Ok(CacheExport { target, mode, ignore_error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_from_forms() {
        let registry = |r: &str| CacheSource::Registry(Reference::parse(r).unwrap());
        assert_eq!(parse_cache_from("myorg/app:cache").unwrap(), registry("myorg/app:cache"));
        assert_eq!(
            parse_cache_from("type=registry,ref=127.0.0.1:5000/c").unwrap(),
            registry("127.0.0.1:5000/c")
        );
        assert_eq!(
            parse_cache_from("type=local,src=/tmp/c,tag=v2").unwrap(),
            CacheSource::Local(LayoutLocation {
                dir: PathBuf::from("/tmp/c"),
                tag: "v2".into(),
                digest: None
            })
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let CacheSource::Local(location) =
            parse_cache_from(&format!("type=local,src=c,digest={digest}")).unwrap()
        else {
            panic!("not local")
        };
        assert_eq!(location.digest.unwrap().to_string(), digest);
        assert_eq!(location.tag, "latest");
    }

    #[test]
    fn cache_to_forms() {
        let export = parse_cache_to("type=registry,ref=r.io/a/b:c,mode=max").unwrap();
        assert_eq!(export.mode, ExportMode::Max);
        assert!(!export.ignore_error);
        assert_eq!(export.target, CacheTarget::Registry(Reference::parse("r.io/a/b:c").unwrap()));
        let export =
            parse_cache_to("type=local,dest=out,ignore-error=true,oci-mediatypes=true").unwrap();
        assert_eq!(export.mode, ExportMode::Min);
        assert!(export.ignore_error);
        assert_eq!(export.target, CacheTarget::Local { dir: "out".into(), tag: "latest".into() });
    }

    #[test]
    fn bad_specs_say_why() {
        let from = |s: &str| parse_cache_from(s).unwrap_err().to_string();
        let to = |s: &str| parse_cache_to(s).unwrap_err().to_string();
        assert_eq!(to("type=local"), "invalid --cache-to \"type=local\": dest=DIR is required");
        assert_eq!(
            to("type=registry,ref=a,mode=all"),
            "invalid --cache-to \"type=registry,ref=a,mode=all\": invalid mode \"all\": expected min or max"
        );
        assert_eq!(
            to("type=inline"),
            "invalid --cache-to \"type=inline\": cache type inline is not supported by kiln (use registry or local)"
        );
        assert_eq!(
            to("type=local,dest=d,compression=zstd"),
            "invalid --cache-to \"type=local,dest=d,compression=zstd\": unknown key \"compression\" (valid keys: dest, tag, mode, ignore-error, oci-mediatypes, image-manifest)"
        );
        assert_eq!(
            to("type=registry,ref=a,image-manifest=false"),
            "invalid --cache-to \"type=registry,ref=a,image-manifest=false\": image-manifest=false is not supported: kiln writes caches as OCI image manifests"
        );
        assert_eq!(
            from("type=registry"),
            "invalid --cache-from \"type=registry\": ref=REF is required"
        );
        assert_eq!(
            from("src=/x"),
            "invalid --cache-from \"src=/x\": no type= (expected registry or local)"
        );
        assert!(from("Bad Ref").contains("invalid ref \"Bad Ref\""), "{}", from("Bad Ref"));
        assert_eq!(
            from("type=local,src=a,src=b"),
            "invalid --cache-from \"type=local,src=a,src=b\": src is given more than once"
        );
    }
}
