//! What an export reports, and the `--iidfile` and `--metadata-file` files made from it.
//!
//! The keys are BuildKit's exporter response keys, written as `docker buildx build` writes
//! them: `--metadata-file` is a JSON object with sorted keys and two-space indentation
//! (Go's `json.MarshalIndent`), `containerimage.descriptor` as an object (buildx decodes it),
//! digests as strings; `--iidfile` holds the image id without a newline, which buildx takes
//! to be the config digest (Docker's image id) whenever an image was exported.

use super::ExportError;
use super::destination::write_file_atomically;
use super::spec::Output;
use crate::image::Descriptor;
use kiln_cache::Digest;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub const KEY_IMAGE_DIGEST: &str = "containerimage.digest";
pub const KEY_CONFIG_DIGEST: &str = "containerimage.config.digest";
pub const KEY_DESCRIPTOR: &str = "containerimage.descriptor";
pub const KEY_IMAGE_NAME: &str = "image.name";

/// The result of one export. Outputs without an image (`local`, `tar`) report nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportResponse {
    /// The manifest digest.
    pub image_digest: Option<Digest>,
    pub config_digest: Option<Digest>,
    /// The manifest descriptor as the output recorded it.
    pub descriptor: Option<Descriptor>,
    /// The names the image was exported under, comma-separated.
    pub image_name: Option<String>,
}

impl ExportResponse {
    /// The image id buildx prints and writes to `--iidfile`: the config digest, else the
    /// manifest digest.
    pub fn image_id(&self) -> Option<Digest> {
        self.config_digest.or(self.image_digest)
    }

    /// The `--metadata-file` document.
    pub fn metadata_json(&self) -> Result<Vec<u8>, ExportError> {
        let encode = |source| ExportError::Encode { what: "metadata file", source };
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        if let Some(digest) = self.image_digest {
            map.insert(KEY_IMAGE_DIGEST, Value::String(digest.to_string()));
        }
        if let Some(digest) = self.config_digest {
            map.insert(KEY_CONFIG_DIGEST, Value::String(digest.to_string()));
        }
        if let Some(descriptor) = &self.descriptor {
            map.insert(KEY_DESCRIPTOR, serde_json::to_value(descriptor).map_err(encode)?);
        }
        if let Some(name) = &self.image_name {
            map.insert(KEY_IMAGE_NAME, Value::String(name.clone()));
        }
        serde_json::to_vec_pretty(&map).map_err(encode)
    }
}

/// Refuses `--iidfile` together with outputs that produce no image, before anything is
/// built (as buildx refuses it with `type=local` and `type=tar`).
pub fn check_iidfile_outputs(outputs: &[Output]) -> Result<(), ExportError> {
    match outputs.iter().find(|output| !output.produces_image()) {
        Some(output) => Err(ExportError::IidfileWithoutImage { kind: output.kind() }),
        None => Ok(()),
    }
}

/// Writes `--iidfile`. Fails (writing nothing) when the export produced no image.
pub fn write_iidfile(path: &Path, response: &ExportResponse) -> Result<(), ExportError> {
    let id = response.image_id().ok_or(ExportError::NoImageId)?;
    write_file_atomically(path, |out| {
        out.write_all(id.to_string().as_bytes()).map_err(ExportError::Write)
    })
}

/// Writes `--metadata-file`.
pub fn write_metadata_file(path: &Path, response: &ExportResponse) -> Result<(), ExportError> {
    let bytes = response.metadata_json()?;
    write_file_atomically(path, |out| out.write_all(&bytes).map_err(ExportError::Write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::{ANNOTATION_CREATED, OCI_MANIFEST};

    fn response() -> ExportResponse {
        let mut descriptor = Descriptor::new(OCI_MANIFEST, Digest::of(b"m"), 123);
        descriptor.annotations.insert(ANNOTATION_CREATED.into(), "2024-01-01T00:00:00Z".into());
        ExportResponse {
            image_digest: Some(Digest::of(b"m")),
            config_digest: Some(Digest::of(b"c")),
            descriptor: Some(descriptor),
            image_name: Some("docker.io/library/a:1,docker.io/library/a:2".into()),
        }
    }

    #[test]
    fn metadata_file_as_buildx_writes_it() {
        let text = String::from_utf8(response().metadata_json().unwrap()).unwrap();
        let expected = format!(
            r#"{{
  "containerimage.config.digest": "{c}",
  "containerimage.descriptor": {{
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "{m}",
    "size": 123,
    "annotations": {{
      "org.opencontainers.image.created": "2024-01-01T00:00:00Z"
    }}
  }},
  "containerimage.digest": "{m}",
  "image.name": "docker.io/library/a:1,docker.io/library/a:2"
}}"#,
            c = Digest::of(b"c"),
            m = Digest::of(b"m")
        );
        assert_eq!(text, expected);
        assert_eq!(ExportResponse::default().metadata_json().unwrap(), b"{}");
    }

    #[test]
    fn iidfile_needs_image_outputs() {
        let outputs =
            [Output::parse("type=oci,dest=f").unwrap(), Output::parse("type=image").unwrap()];
        check_iidfile_outputs(&outputs).unwrap();
        check_iidfile_outputs(&[]).unwrap();
        for (spec, kind) in [("type=local,dest=d", "local"), ("type=tar,dest=f", "tar")] {
            let outputs = [Output::parse("type=image").unwrap(), Output::parse(spec).unwrap()];
            let err = check_iidfile_outputs(&outputs).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "type=local and type=tar outputs produce no image, so --iidfile cannot be used with type={kind}"
                )
            );
        }
    }

    #[test]
    fn files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let iid = dir.path().join("iid");
        write_iidfile(&iid, &response()).unwrap();
        assert_eq!(std::fs::read_to_string(&iid).unwrap(), Digest::of(b"c").to_string());
        let only_manifest =
            ExportResponse { image_digest: Some(Digest::of(b"m")), ..Default::default() };
        write_iidfile(&iid, &only_manifest).unwrap();
        assert_eq!(std::fs::read_to_string(&iid).unwrap(), Digest::of(b"m").to_string());

        let err = write_iidfile(&dir.path().join("none"), &ExportResponse::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the output produced no image, so there is no image id for --iidfile"
        );
        assert!(!dir.path().join("none").exists());

        let meta = dir.path().join("meta.json");
        write_metadata_file(&meta, &response()).unwrap();
        let value: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        assert_eq!(value[KEY_DESCRIPTOR]["size"], 123);
        assert_eq!(value[KEY_IMAGE_DIGEST], Digest::of(b"m").to_string());
    }
}
