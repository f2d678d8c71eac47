//! The [`Exporter`] dispatch: every output type end to end on a hand-made image.

use super::testutil::sample_image;
use super::*;
use crate::image::manifest::ANNOTATION_IMAGE_NAME;
use std::cell::RefCell as Cell;
use std::fs;
use std::rc::Rc;

fn created() -> Timestamp {
    Timestamp::from_unix(1_700_000_000).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    root: Root,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("root")).unwrap();
        Fixture { dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A `Write` whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct Shared(Rc<Cell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn oci_to_file_and_stdout_give_the_same_bytes() {
    let fx = Fixture::new();
    let blobs = fx.root.blobs();
    let image = sample_image(&fx.root, MediaTypes::Oci, &["docker.io/library/app:1"]);
    let stdout = Shared::default();
    let exporter =
        Exporter::new(&blobs, fx.path("root/tmp"), created()).stdout(Box::new(stdout.clone()));
    let dest = fx.path("out/app.tar");
    let spec = format!("type=oci,dest={}", dest.display());
    let response = exporter.export(&Output::parse(&spec).unwrap(), &image).unwrap();
    exporter.export(&Output::parse("type=oci,dest=-").unwrap(), &image).unwrap();
    let file = fs::read(&dest).unwrap();
    assert_eq!(file, *stdout.0.borrow());
    let mut expected_file = Vec::new();
    write_archive(ArchiveFormat::Oci, &image, &blobs, created(), &mut expected_file).unwrap();
    assert_eq!(file, expected_file);

    assert_eq!(response.image_digest, Some(image.manifest_digest));
    assert_eq!(response.config_digest, Some(image.config_digest));
    assert_eq!(response.image_name.as_deref(), Some("docker.io/library/app:1"));
    let descriptor = response.descriptor.unwrap();
    assert_eq!(descriptor.digest, image.manifest_digest);
    assert_eq!(descriptor.annotations[ANNOTATION_CREATED], "2023-11-14T22:13:20Z");
    assert!(!descriptor.annotations.contains_key(ANNOTATION_IMAGE_NAME));
}

#[test]
fn docker_local_and_tar_outputs() {
    let fx = Fixture::new();
    let blobs = fx.root.blobs();
    let exporter = Exporter::new(&blobs, fx.path("root/tmp"), created()).source_date_epoch(Some(5));
    let docker = sample_image(&fx.root, MediaTypes::Docker, &["docker.io/library/app:1"]);
    let dest = fx.path("docker.tar");
    exporter
        .export(&Output::parse(&format!("type=docker,dest={}", dest.display())).unwrap(), &docker)
        .unwrap();
    let mut archive = tar::Archive::new(fs::File::open(&dest).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"manifest.json".to_string()));

    let oci = sample_image(&fx.root, MediaTypes::Oci, &[]);
    let local = fx.path("rootfs");
    let response = exporter
        .export(&Output::parse(&format!("type=local,dest={}", local.display())).unwrap(), &oci)
        .unwrap();
    assert_eq!(response, ExportResponse::default());
    assert_eq!(fs::read(local.join("etc/hostname")).unwrap(), b"kiln-2\n");
    assert!(!local.join("tmp/gone").exists());

    let tar_dest = fx.path("rootfs.tar");
    exporter
        .export(&Output::parse(&format!("type=tar,dest={}", tar_dest.display())).unwrap(), &oci)
        .unwrap();
    let mut archive = tar::Archive::new(fs::File::open(&tar_dest).unwrap());
    let mut count = 0;
    for entry in archive.entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 5);
        count += 1;
    }
    assert_eq!(count, 12);
}

struct RecordingPusher {
    pushed: Cell<Vec<(String, Digest)>>,
    fail: bool,
}

impl Pusher for RecordingPusher {
    fn push(
        &self,
        names: &[String],
        image: &ExportImage,
        blobs: &(dyn BlobSource + Sync),
    ) -> Result<(), SourceError> {
        if self.fail {
            return Err("401 unauthorized".into());
        }
        for layer in &image.layers {
            assert_eq!(blobs.size(&layer.digest)?, layer.size);
        }
        for name in names {
            self.pushed.borrow_mut().push((name.to_owned(), image.manifest_digest));
        }
        Ok(())
    }
}

#[test]
fn image_and_registry_outputs() {
    let fx = Fixture::new();
    let blobs = fx.root.blobs();
    let pusher = RecordingPusher { pushed: Cell::new(vec![]), fail: false };
    let image =
        sample_image(&fx.root, MediaTypes::Oci, &["docker.io/library/app:1", "ghcr.io/o/app:1"]);

    let exporter =
        Exporter::new(&blobs, fx.path("root/tmp"), created()).store(&fx.root).pusher(&pusher);
    let response = exporter.export(&Output::parse("type=image").unwrap(), &image).unwrap();
    assert_eq!(response.image_name.as_deref(), Some("docker.io/library/app:1,ghcr.io/o/app:1"));
    assert!(response.descriptor.unwrap().annotations.is_empty());
    let tagged = fx.root.images().resolve("ghcr.io/o/app:1").unwrap().unwrap();
    assert_eq!(tagged.digest().to_string(), image.manifest_digest.to_string());
    assert!(pusher.pushed.borrow().is_empty());

    exporter.export(&Output::parse("type=image,push=true").unwrap(), &image).unwrap();
    exporter.export(&Output::parse("type=registry").unwrap(), &image).unwrap();
    let pushed: Vec<String> = pusher.pushed.borrow().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        pushed,
        [
            "docker.io/library/app:1",
            "ghcr.io/o/app:1",
            "docker.io/library/app:1",
            "ghcr.io/o/app:1"
        ]
    );
}

#[test]
fn image_output_errors() {
    let fx = Fixture::new();
    let blobs = fx.root.blobs();
    let image = sample_image(&fx.root, MediaTypes::Oci, &["docker.io/library/app:1"]);
    let bare = Exporter::new(&blobs, fx.path("root/tmp"), created());
    let err = bare.export(&Output::parse("type=image").unwrap(), &image).unwrap_err();
    assert_eq!(err.to_string(), "type=image needs kiln's image store, and none was given");
    let err = bare.export(&Output::parse("type=registry").unwrap(), &image).unwrap_err();
    assert_eq!(err.to_string(), "pushing needs a registry client, and none was given");

    let failing = RecordingPusher { pushed: Cell::new(vec![]), fail: true };
    let exporter = Exporter::new(&blobs, fx.path("root/tmp"), created()).pusher(&failing);
    let err = exporter.export(&Output::parse("type=registry").unwrap(), &image).unwrap_err();
    assert_eq!(err.to_string(), "cannot push docker.io/library/app:1: 401 unauthorized");
    let unnamed = sample_image(&fx.root, MediaTypes::Oci, &[]);
    let err = exporter.export(&Output::parse("type=registry").unwrap(), &unnamed).unwrap_err();
    assert_eq!(
        err.to_string(),
        "type=registry pushes to a registry and needs a name (name=REF or -t)"
    );
}

#[test]
fn image_must_be_assembled_for_the_output() {
    let fx = Fixture::new();
    let blobs = fx.root.blobs();
    let exporter = Exporter::new(&blobs, fx.path("root/tmp"), created());
    let oci = sample_image(&fx.root, MediaTypes::Oci, &[]);
    let dest = fx.path("x.tar");
    let err = exporter
        .export(&Output::parse(&format!("type=docker,dest={}", dest.display())).unwrap(), &oci)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the image was assembled with OCI media types but the output asks for Docker"
    );
    let err = exporter
        .export(
            &Output::parse(&format!("type=oci,dest={},compression=zstd", dest.display())).unwrap(),
            &oci,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "layer {} is not stored with compression=zstd as the output asks; recompress it first",
            oci.layers[0].digest
        )
    );
    assert!(!dest.exists());

    // After recompressing, the same output works.
    let layers =
        recompress_all(&oci.layers, Some(crate::layer::Compression::Zstd), &blobs, &blobs).unwrap();
    let config = crate::image::ImageConfigFile::parse(&oci.config_bytes).unwrap();
    let zstd = ExportImage::assemble(&config, layers, MediaTypes::Oci, vec![]).unwrap();
    exporter
        .export(
            &Output::parse(&format!("type=oci,dest={},compression=zstd", dest.display())).unwrap(),
            &zstd,
        )
        .unwrap();
    assert!(dest.exists());
}

#[test]
fn failed_exports_write_nothing() {
    let fx = Fixture::new();
    let blobs = fx.root.blobs();
    let exporter = Exporter::new(&blobs, fx.path("root/tmp"), created());
    let image = sample_image(&fx.root, MediaTypes::Oci, &[]);
    fs::remove_file(blobs.path(&image.layers[1].digest)).unwrap();
    let out = fx.path("out");
    fs::create_dir(&out).unwrap();
    for spec in ["type=oci,dest=OUT/a.tar", "type=tar,dest=OUT/b.tar", "type=local,dest=OUT/dir"] {
        let spec = spec.replace("OUT", &out.display().to_string());
        let err = exporter.export(&Output::parse(&spec).unwrap(), &image).unwrap_err();
        assert!(err.to_string().contains(&image.layers[1].digest.to_string()), "{spec}: {err}");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "{spec} left something behind");
    }
    assert_eq!(fs::read_dir(fx.path("root/tmp")).unwrap().count(), 0, "scratch trees removed");
}
