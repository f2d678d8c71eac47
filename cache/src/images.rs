//! The image store: tagged images listed in the root's `index.json`, which together with
//! `oci-layout` and `blobs/` makes the root an OCI image layout (`skopeo inspect
//! oci:ROOT:REF` and `umoci` read it).
//!
//! Each tag is one entry of the index's `manifests` whose annotation
//! `org.opencontainers.image.ref.name` holds the full reference
//! (`docker.io/library/app:latest`); a reference names at most one entry.
//!
//! Invariants:
//! - `index.json` changes only by read-modify-write under the index lock plus a lease
//!   (`locks/index`, see `lock.rs`), written via temp file + fsync + rename, so concurrent
//!   taggers never lose each other's tags and readers never see a torn file;
//! - its bytes are deterministic: canonical JSON (object keys sorted, no whitespace), entries
//!   sorted by reference then digest; the same tags give the same bytes;
//! - a tag only points at a manifest blob present in the store with the declared size.

use crate::digest::Digest;
use crate::error::{CacheError, IoContext, Result};
use crate::fsutil;
use crate::layout::Root;
use crate::lock::{self, Mode};
use oci_spec::image::Descriptor;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs;

/// The annotation that holds a tag's reference.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// `index.json` of a store without tags.
pub(crate) const EMPTY_INDEX: &[u8] =
    br#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;

/// Access to the tagged images. Obtained from [`Root::images`].
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: Root,
}

/// `index.json` as read: its top-level fields (kept as they are) and its entries.
pub(crate) struct IndexFile {
    top: Map<String, Value>,
    pub(crate) entries: Vec<Descriptor>,
}

impl ImageStore {
    pub(crate) fn new(root: Root) -> ImageStore {
        ImageStore { root }
    }

    /// Points `reference` at `manifest` (replacing what it pointed at). The manifest blob
    /// must be in the store with the descriptor's size. The descriptor's other annotations
    /// are kept; its ref-name annotation is set to `reference`. Takes a lease, so it must not
    /// be called while this process holds the exclusive root lock.
    pub fn tag(&self, reference: &str, manifest: Descriptor) -> Result<()> {
        check_reference(reference)?;
        let digest = Digest::try_from(manifest.digest())?;
        let actual = self.root.blobs().size(&digest)?;
        if actual != manifest.size() {
            return Err(CacheError::SizeMismatch { digest, declared: manifest.size(), actual });
        }
        let mut manifest = manifest;
        let mut annotations = manifest.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.to_owned(), reference.to_owned());
        manifest.set_annotations(Some(annotations));
        self.modify(|entries| {
            entries.retain(|entry| ref_name(entry) != Some(reference));
            entries.push(manifest);
        })
        .map(|_| ())
    }

    /// Removes the tag `reference`. Returns whether it existed. Blobs stay until `prune`.
    pub fn untag(&self, reference: &str) -> Result<bool> {
        self.modify(|entries| {
            let before = entries.len();
            entries.retain(|entry| ref_name(entry) != Some(reference));
            entries.len() != before
        })
    }

    /// The manifest descriptor `reference` points at.
    pub fn resolve(&self, reference: &str) -> Result<Option<Descriptor>> {
        let index = self.read()?;
        Ok(index.entries.into_iter().find(|entry| ref_name(entry) == Some(reference)))
    }

    /// Every tag with its descriptor, sorted by reference.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = self.read()?;
        let mut tags: Vec<(String, Descriptor)> = index
            .entries
            .into_iter()
            .filter_map(|entry| Some((ref_name(&entry)?.to_owned(), entry)))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }

    /// Reads and parses `index.json`.
    pub(crate) fn read(&self) -> Result<IndexFile> {
        let path = &self.root.paths().index_json;
        let corrupt = |reason: String| CacheError::Corrupt {
            what: "image index",
            path: path.clone(),
            reason,
        };
        let bytes = fs::read(path).at("read", path)?;
        let Value::Object(mut top) =
            serde_json::from_slice(&bytes).map_err(|err| corrupt(err.to_string()))?
        else {
            return Err(corrupt("not a json object".into()));
        };
        let entries = match top.remove("manifests") {
            None | Some(Value::Null) => Vec::new(),
            Some(manifests) => serde_json::from_value(manifests)
                .map_err(|err| corrupt(format!("bad \"manifests\": {err}")))?,
        };
        Ok(IndexFile { top, entries })
    }

    /// Read-modify-write of `index.json` under the index lock and a lease.
    fn modify<T>(&self, change: impl FnOnce(&mut Vec<Descriptor>) -> T) -> Result<T> {
        let _lease = self.root.lease()?;
        let _lock = lock::acquire(&self.root.paths().index_lock, Mode::Exclusive, &mut || {})?;
        let mut index = self.read()?;
        let result = change(&mut index.entries);
        let bytes = index.into_bytes()?;
        let paths = self.root.paths();
        fsutil::write_atomic(&paths.tmp, &paths.index_json, &bytes)?;
        Ok(result)
    }
}

impl IndexFile {
    fn into_bytes(mut self) -> Result<Vec<u8>> {
        let encode = |source| CacheError::Encode { what: "image index", source };
        self.entries.sort_by(|a, b| {
            (ref_name(a), a.digest().to_string()).cmp(&(ref_name(b), b.digest().to_string()))
        });
        let mut top = self.top;
        top.insert("manifests".into(), serde_json::to_value(&self.entries).map_err(encode)?);
        top.entry("schemaVersion").or_insert(Value::from(2));
        top.entry("mediaType").or_insert(Value::from("application/vnd.oci.image.index.v1+json"));
        serde_json::to_vec(&canonical(Value::Object(top))).map_err(encode)
    }
}

/// The reference an index entry is tagged with.
pub(crate) fn ref_name(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations()
        .as_ref()
        .and_then(|a: &HashMap<String, String>| a.get(REF_NAME_ANNOTATION))
        .map(String::as_str)
}

/// `value` with every object's keys in sorted order (serde_json keeps insertion order).
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// A reference must be non-empty printable text without whitespace; its grammar (and
/// normalisation to `docker.io/library/...`) is the engine's business.
fn check_reference(reference: &str) -> Result<()> {
    let invalid =
        |reason| Err(CacheError::InvalidReference { reference: reference.to_owned(), reason });
    if reference.is_empty() {
        return invalid("empty");
    }
    if reference.len() > 4096 {
        return invalid("longer than 4096 bytes");
    }
    if reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("contains whitespace or control characters");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    pub(crate) fn manifest_descriptor(root: &Root, manifest: &[u8]) -> Descriptor {
        let digest = root.blobs().put_bytes(manifest).unwrap();
        Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, &digest)
    }

    #[test]
    fn tag_resolve_list_untag() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let images = root.images();
        let one = manifest_descriptor(&root, b"{\"one\":1}");
        let two = manifest_descriptor(&root, b"{\"two\":2}");
        images.tag("docker.io/library/b:latest", one.clone()).unwrap();
        images.tag("docker.io/library/a:latest", two.clone()).unwrap();
        images.tag("docker.io/library/b:latest", two.clone()).unwrap();

        let listed = images.list().unwrap();
        let refs: Vec<&str> = listed.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(refs, ["docker.io/library/a:latest", "docker.io/library/b:latest"]);
        let resolved = images.resolve("docker.io/library/b:latest").unwrap().unwrap();
        assert_eq!(resolved.digest(), two.digest());
        assert_eq!(ref_name(&resolved), Some("docker.io/library/b:latest"));
        assert_eq!(images.resolve("docker.io/library/c:latest").unwrap(), None);

        assert!(images.untag("docker.io/library/b:latest").unwrap());
        assert!(!images.untag("docker.io/library/b:latest").unwrap());
        assert_eq!(images.list().unwrap().len(), 1);
    }

    #[test]
    fn index_bytes_are_canonical_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let one = manifest_descriptor(&root, b"m1");
        let mut with_annotation = one.clone();
        with_annotation.set_annotations(Some(HashMap::from([
            ("z.last".to_owned(), "1".to_owned()),
            ("a.first".to_owned(), "2".to_owned()),
        ])));
        root.images().tag("x:2", with_annotation.clone()).unwrap();
        root.images().tag("x:1", one.clone()).unwrap();
        let bytes = fs::read(root.path().join("index.json")).unwrap();
        let digest = Digest::of(b"m1");
        let expected = format!(
            concat!(
                r#"{{"manifests":["#,
                r#"{{"annotations":{{"org.opencontainers.image.ref.name":"x:1"}},"digest":"{d}","mediaType":"application/vnd.oci.image.manifest.v1+json","size":2}},"#,
                r#"{{"annotations":{{"a.first":"2","org.opencontainers.image.ref.name":"x:2","z.last":"1"}},"digest":"{d}","mediaType":"application/vnd.oci.image.manifest.v1+json","size":2}}"#,
                r#"],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#
            ),
            d = digest
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);

        // Same tags, other order, other root: same bytes.
        let dir2 = tempfile::tempdir().unwrap();
        let root2 = Root::open(dir2.path()).unwrap();
        manifest_descriptor(&root2, b"m1");
        root2.images().tag("x:1", one).unwrap();
        root2.images().tag("x:2", with_annotation).unwrap();
        assert_eq!(fs::read(root2.path().join("index.json")).unwrap(), expected.as_bytes());
    }

    #[test]
    fn tag_checks_reference_and_blob() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let good = manifest_descriptor(&root, b"m");
        let err = root.images().tag("", good.clone()).unwrap_err();
        assert_eq!(err.to_string(), "invalid image reference \"\": empty");
        let err = root.images().tag("a b", good.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid image reference \"a b\": contains whitespace or control characters"
        );
        let missing = Digest::of(b"absent");
        let err = root
            .images()
            .tag("x", Descriptor::new(MediaType::ImageManifest, 6, &missing))
            .unwrap_err();
        assert_eq!(err.to_string(), format!("blob {missing} not found in the store"));
        let mut wrong_size = good;
        wrong_size.set_size(99);
        let err = root.images().tag("x", wrong_size).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("descriptor of {} says 99 bytes but the stored blob has 1", Digest::of(b"m"))
        );
        assert_eq!(fs::read(root.path().join("index.json")).unwrap(), EMPTY_INDEX);
    }

    #[test]
    fn foreign_entries_and_fields_survive_and_corrupt_index_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let desc = manifest_descriptor(&root, b"m");
        let untagged = serde_json::to_string(&desc).unwrap();
        fs::write(
            root.path().join("index.json"),
            format!(r#"{{"schemaVersion":2,"annotations":{{"k":"v"}},"manifests":[{untagged}]}}"#),
        )
        .unwrap();
        root.images().tag("t", desc.clone()).unwrap();
        let index: Value =
            serde_json::from_slice(&fs::read(root.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["annotations"]["k"], "v");
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

        fs::write(root.path().join("index.json"), b"[]").unwrap();
        let err = root.images().list().unwrap_err();
        assert!(err.to_string().ends_with("index.json: not a json object"), "{err}");
    }

    #[test]
    fn concurrent_taggers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let desc = manifest_descriptor(&root, b"m");
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (root, desc) = (root.clone(), desc.clone());
                scope.spawn(move || {
                    for i in 0..10 {
                        root.images().tag(&format!("img:{t}-{i}"), desc.clone()).unwrap();
                    }
                });
            }
        });
        assert_eq!(root.images().list().unwrap().len(), 40);
    }
}
