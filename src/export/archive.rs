//! Image archives: an OCI image layout as one tar stream (`type=oci`), and the same plus
//! `docker save`'s `manifest.json` (`type=docker`), which both `docker load` and `podman
//! load` read. This is the shape BuildKit's exporters (through containerd's archive
//! writer) and Docker 25+'s `docker save` produce:
//!
//! ```text
//! blobs/                      dir 0755
//! blobs/sha256/               dir 0755
//! blobs/sha256/<hex>          0444: the manifest, the config and every layer, once each
//! index.json                  0644: one manifest descriptor per name, annotated with
//!                             io.containerd.image.name (full name),
//!                             org.opencontainers.image.ref.name (tag) and
//!                             org.opencontainers.image.created; without names, one
//!                             descriptor annotated with the creation time only
//! manifest.json               0644, docker only: [{"Config","Layers","RepoTags"}]
//! oci-layout                  0444: {"imageLayoutVersion":"1.0.0"}
//! ```
//!
//! Determinism: entries are sorted by name (as containerd sorts them), headers are ustar
//! with uid/gid 0, no user or group names and mtime 0, and the JSON files are canonical, so
//! an image and its names and creation time give the same bytes every time.
//!
//! Layers are copied as stored (compressed); each blob is verified against its descriptor
//! while it streams into the archive.

use super::ExportError;
use super::names::{familiar_name, oci_ref_name};
use super::source::{BlobSource, VerifyingReader};
use crate::image::canonical::to_canonical_bytes;
use crate::image::manifest::{ANNOTATION_CREATED, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::image::{Descriptor, ExportImage, Index, Timestamp};
use kiln_cache::{Digest, IMAGE_LAYOUT_VERSION};
use serde::Serialize;
use std::io::Write;

/// Which archive to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout.
    Oci,
    /// An OCI image layout plus `manifest.json` for `docker load`.
    Docker,
}

/// One `manifest.json` entry of `docker save`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

enum Content {
    Directory,
    Bytes(Vec<u8>),
    Blob { digest: Digest, size: u64 },
}

struct Record {
    name: String,
    mode: u32,
    content: Content,
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The `index.json` entries for `image`: one per name, or one unnamed.
pub fn index_descriptors(image: &ExportImage, created: Timestamp) -> Vec<Descriptor> {
    let mut base = image.manifest_descriptor();
    base.annotations.insert(ANNOTATION_CREATED.to_owned(), created.rfc3339_seconds());
    if image.names.is_empty() {
        return vec![base];
    }
    image
        .names
        .iter()
        .map(|name| {
            let mut descriptor = base.clone();
            descriptor.annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), name.clone());
            descriptor.annotations.insert(ANNOTATION_REF_NAME.to_owned(), oci_ref_name(name));
            descriptor
        })
        .collect()
}

/// Writes `image` as an archive of `format` into `sink`, reading layers from `blobs`.
/// `created` goes into the index's `org.opencontainers.image.created` annotations.
pub fn write_archive(
    format: ArchiveFormat,
    image: &ExportImage,
    blobs: &dyn BlobSource,
    created: Timestamp,
    sink: impl Write,
) -> Result<(), ExportError> {
    image.check()?;
    let encode = |what, source| ExportError::Encode { what, source };
    let mut records = vec![
        Record { name: "blobs/".into(), mode: 0o755, content: Content::Directory },
        Record { name: "blobs/sha256/".into(), mode: 0o755, content: Content::Directory },
        Record {
            name: blob_path(&image.manifest_digest),
            mode: 0o444,
            content: Content::Bytes(image.manifest_bytes.clone()),
        },
        Record {
            name: blob_path(&image.config_digest),
            mode: 0o444,
            content: Content::Bytes(image.config_bytes.clone()),
        },
        Record {
            name: "oci-layout".into(),
            mode: 0o444,
            content: Content::Bytes(
                format!("{{\"imageLayoutVersion\":\"{IMAGE_LAYOUT_VERSION}\"}}").into_bytes(),
            ),
        },
    ];
    for layer in &image.layers {
        records.push(Record {
            name: blob_path(&layer.digest),
            mode: 0o444,
            content: Content::Blob { digest: layer.digest, size: layer.size },
        });
    }
    let index = Index::new(index_descriptors(image, created)).to_bytes()?;
    records.push(Record { name: "index.json".into(), mode: 0o644, content: Content::Bytes(index) });
    if format == ArchiveFormat::Docker {
        let entry = DockerManifestEntry {
            config: blob_path(&image.config_digest),
            repo_tags: image.names.iter().map(|name| familiar_name(name)).collect(),
            layers: image.layers.iter().map(|layer| blob_path(&layer.digest)).collect(),
        };
        let bytes = to_canonical_bytes(&[entry]).map_err(|e| encode("manifest.json", e))?;
        records.push(Record {
            name: "manifest.json".into(),
            mode: 0o644,
            content: Content::Bytes(bytes),
        });
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records.dedup_by(|a, b| a.name == b.name);

    let mut tar = tar::Builder::new(sink);
    for record in records {
        write_record(&mut tar, record, blobs)?;
    }
    tar.into_inner().map_err(ExportError::Write)?.flush().map_err(ExportError::Write)?;
    Ok(())
}

fn header(
    name: &str,
    mode: u32,
    size: u64,
    kind: tar::EntryType,
) -> Result<tar::Header, ExportError> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name).map_err(ExportError::Write)?;
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header.set_entry_type(kind);
    header.set_cksum();
    Ok(header)
}

fn write_record<W: Write>(
    tar: &mut tar::Builder<W>,
    record: Record,
    blobs: &dyn BlobSource,
) -> Result<(), ExportError> {
    match record.content {
        Content::Directory => {
            let header = header(&record.name, record.mode, 0, tar::EntryType::Directory)?;
            tar.append(&header, std::io::empty()).map_err(ExportError::Write)
        }
        Content::Bytes(bytes) => {
            let header =
                header(&record.name, record.mode, bytes.len() as u64, tar::EntryType::Regular)?;
            tar.append(&header, &bytes[..]).map_err(ExportError::Write)
        }
        Content::Blob { digest, size } => {
            let header = header(&record.name, record.mode, size, tar::EntryType::Regular)?;
            let source =
                blobs.open(&digest).map_err(|source| ExportError::Blob { digest, source })?;
            let mut reader = VerifyingReader::new(source, digest, size);
            match tar.append(&header, &mut reader) {
                Ok(()) => Ok(()),
                Err(err) => Err(match reader.mismatch() {
                    Some(mismatch) => {
                        ExportError::BlobMismatch { digest, size, mismatch: mismatch.clone() }
                    }
                    None => ExportError::Write(err),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::sample_image;
    use crate::image::MediaTypes;
    use kiln_cache::Root;
    use std::io::Read;

    struct Listed {
        name: String,
        mode: u32,
        kind: tar::EntryType,
        uid: u64,
        gid: u64,
        mtime: u64,
        data: Vec<u8>,
    }

    fn list(archive: &[u8]) -> Vec<Listed> {
        let mut reader = tar::Archive::new(archive);
        reader
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                Listed {
                    name: entry.path().unwrap().to_string_lossy().into_owned(),
                    mode: header.mode().unwrap(),
                    kind: header.entry_type(),
                    uid: header.uid().unwrap(),
                    gid: header.gid().unwrap(),
                    mtime: header.mtime().unwrap(),
                    data,
                }
            })
            .collect()
    }

    fn created() -> Timestamp {
        Timestamp::from_unix(1_700_000_000).unwrap()
    }

    fn write(format: ArchiveFormat, image: &ExportImage, root: &Root) -> Vec<u8> {
        let mut out = Vec::new();
        write_archive(format, image, &root.blobs(), created(), &mut out).unwrap();
        out
    }

    #[test]
    fn oci_archive_layout_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let image = sample_image(&root, MediaTypes::Oci, &["docker.io/library/app:1"]);
        let bytes = write(ArchiveFormat::Oci, &image, &root);
        let entries = list(&bytes);
        let mut blob_names: Vec<String> = [image.manifest_digest, image.config_digest]
            .iter()
            .chain(image.layers.iter().map(|l| &l.digest))
            .map(blob_path)
            .collect();
        blob_names.sort();
        let mut expected: Vec<String> = vec!["blobs/".into(), "blobs/sha256/".into()];
        expected.extend(blob_names);
        expected.extend(["index.json".into(), "oci-layout".into()]);
        assert_eq!(entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), expected);
        for entry in &entries {
            assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, 0), "{}", entry.name);
            let (mode, kind) = match entry.name.as_str() {
                "blobs/" | "blobs/sha256/" => (0o755, tar::EntryType::Directory),
                "index.json" => (0o644, tar::EntryType::Regular),
                _ => (0o444, tar::EntryType::Regular),
            };
            assert_eq!((entry.mode, entry.kind), (mode, kind), "{}", entry.name);
            if let Some(hex) = entry.name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(Digest::of(&entry.data).hex(), hex, "blob content matches its name");
            }
        }
        let layout = entries.iter().find(|e| e.name == "oci-layout").unwrap();
        assert_eq!(layout.data, br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = entries.iter().find(|e| e.name == "index.json").unwrap();
        let expected_index = format!(
            concat!(
                r#"{{"manifests":[{{"annotations":{{"io.containerd.image.name":"docker.io/library/app:1","#,
                r#""org.opencontainers.image.created":"2023-11-14T22:13:20Z","#,
                r#""org.opencontainers.image.ref.name":"1"}},"#,
                r#""digest":"{}","mediaType":"application/vnd.oci.image.manifest.v1+json","size":{}}}],"#,
                r#""mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#
            ),
            image.manifest_digest,
            image.manifest_bytes.len()
        );
        assert_eq!(String::from_utf8(index.data.clone()).unwrap(), expected_index);
        // Deterministic.
        assert_eq!(write(ArchiveFormat::Oci, &image, &root), bytes);
    }

    #[test]
    fn unnamed_and_multi_named_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let image = sample_image(&root, MediaTypes::Oci, &[]);
        let descriptors = index_descriptors(&image, created());
        assert_eq!(descriptors.len(), 1);
        assert_eq!(descriptors[0].annotations.keys().collect::<Vec<_>>(), [ANNOTATION_CREATED]);
        let image =
            sample_image(&root, MediaTypes::Oci, &["docker.io/library/a:1", "ghcr.io/o/b:2"]);
        let descriptors = index_descriptors(&image, created());
        let names: Vec<(&str, &str)> = descriptors
            .iter()
            .map(|d| {
                (
                    d.annotations[ANNOTATION_IMAGE_NAME].as_str(),
                    d.annotations[ANNOTATION_REF_NAME].as_str(),
                )
            })
            .collect();
        assert_eq!(names, [("docker.io/library/a:1", "1"), ("ghcr.io/o/b:2", "2")]);
        assert!(descriptors.iter().all(|d| d.digest == image.manifest_digest));
    }

    #[test]
    fn docker_archive_has_manifest_json() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let image =
            sample_image(&root, MediaTypes::Docker, &["docker.io/library/app:1", "ghcr.io/o/b:2"]);
        let bytes = write(ArchiveFormat::Docker, &image, &root);
        let entries = list(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(&names[names.len() - 3..], ["index.json", "manifest.json", "oci-layout"]);
        let manifest = entries.iter().find(|e| e.name == "manifest.json").unwrap();
        assert_eq!(manifest.mode, 0o644);
        let expected = format!(
            r#"[{{"Config":"blobs/sha256/{}","Layers":["blobs/sha256/{}","blobs/sha256/{}"],"RepoTags":["app:1","ghcr.io/o/b:2"]}}]"#,
            image.config_digest.hex(),
            image.layers[0].digest.hex(),
            image.layers[1].digest.hex()
        );
        assert_eq!(String::from_utf8(manifest.data.clone()).unwrap(), expected);
        let index = entries.iter().find(|e| e.name == "index.json").unwrap();
        assert!(
            String::from_utf8_lossy(&index.data)
                .contains(r#""mediaType":"application/vnd.docker.distribution.manifest.v2+json""#)
        );
        assert_eq!(write(ArchiveFormat::Docker, &image, &root), bytes);
    }

    #[test]
    fn repeated_layers_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut image = sample_image(&root, MediaTypes::Oci, &[]);
        let mut config = crate::image::ImageConfigFile::parse(&image.config_bytes).unwrap();
        image.layers.push(image.layers[0].clone());
        config.rootfs.diff_ids.push(image.layers[0].diff_id);
        let image = ExportImage::assemble(&config, image.layers, MediaTypes::Oci, vec![]).unwrap();
        let entries = list(&write(ArchiveFormat::Oci, &image, &root));
        let blob_entries =
            entries.iter().filter(|e| e.name.starts_with("blobs/sha256/") && e.name.len() > 13);
        assert_eq!(blob_entries.count(), 4, "manifest, config and two distinct layers");
    }

    #[test]
    fn damaged_or_missing_blobs_fail_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let image = sample_image(&root, MediaTypes::Oci, &[]);
        let layer = image.layers[1].clone();
        let path = root.blobs().path(&layer.digest);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let err = write_archive(ArchiveFormat::Oci, &image, &root.blobs(), created(), Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {} is damaged: its bytes hash to {}", layer.digest, Digest::of(&bytes))
        );
        std::fs::write(&path, &bytes[..10]).unwrap();
        let err = write_archive(ArchiveFormat::Oci, &image, &root.blobs(), created(), Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "blob {} is damaged: it ends after 10 of its {} bytes",
                layer.digest, layer.size
            )
        );
        std::fs::remove_file(&path).unwrap();
        let err = write_archive(ArchiveFormat::Oci, &image, &root.blobs(), created(), Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read blob {0}: blob {0} not found in the store", layer.digest)
        );
    }
}
