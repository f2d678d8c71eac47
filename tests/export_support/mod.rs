//! Shared by the `export_*` integration tests: a tiny image built by hand (layer tars written
//! entry by entry with the `tar` crate, gzip-compressed, stored in a temp `kiln_cache::Root`,
//! config made by `image::derive` from a stage), exports of it, independent tools, and a
//! tree comparison.
#![allow(dead_code)]

use kiln::export::{Exporter, Output, prepare_image};
use kiln::image::manifest::OCI_LAYER_GZIP;
use kiln::image::{ExportImage, ImageConfigFile, LayerBlob, Timestamp, derive};
use kiln_cache::{Digest, Root};
use kiln_frontend::graph::{HistoryEntry, ImageConfig, StageImage};
use kiln_frontend::platform::Platform;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const NAME: &str = "docker.io/library/kiln-export-test:1";
pub const CREATED: i64 = 1_700_000_000;

/// Whether `tool` can be run; when not, fails under KILN_E2E=1 and skips otherwise.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        if std::env::var("KILN_E2E").as_deref() == Ok("1") {
            panic!("{tool} is required (KILN_E2E=1) but is not on PATH; scripts/test installs it");
        }
        eprintln!("skipping: {tool} is not on PATH (set KILN_E2E=1 to make this a failure)");
    }
    found
}

pub use crate::common::tools::stdout_of as run;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

enum Entry<'a> {
    Dir(&'a str, u32, u64),
    File(&'a str, u32, u64, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn layer_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir(path, mode, owner) | Entry::File(path, mode, owner, _) => {
                let data: &[u8] = match entry {
                    Entry::File(_, _, _, data) => data,
                    _ => b"",
                };
                let kind = if data.is_empty() && path.ends_with('/') {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                };
                header.set_entry_type(kind);
                header.set_mode(*mode);
                header.set_uid(*owner);
                header.set_gid(*owner);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, data).unwrap();
            }
            Entry::Symlink(path, target) | Entry::Hardlink(path, target) => {
                let kind = match entry {
                    Entry::Symlink(..) => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                };
                header.set_entry_type(kind);
                header.set_mode(if kind == tar::EntryType::Symlink { 0o777 } else { 0o644 });
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The two layer tars: a base tree, then changes (whiteout, opaque dir, hard link, a new
/// owner, an overwritten file).
pub fn layer_tars() -> [Vec<u8>; 2] {
    use Entry::*;
    let long_name = format!("opt/{}/file", "d".repeat(120));
    let base = layer_tar(&[
        Dir("bin/", 0o755, 0),
        File("bin/tool", 0o755, 0, b"#!/bin/sh\necho tool\n"),
        Dir("data/", 0o755, 0),
        File("data/old1", 0o644, 0, b"old one"),
        File("data/old2", 0o644, 0, b"old two"),
        Dir("etc/", 0o755, 0),
        File("etc/hostname", 0o644, 0, b"kiln\n"),
        Symlink("lib", "usr/lib"),
        Dir("home/", 0o755, 0),
        Dir("home/app/", 0o700, 1000),
        File("home/app/.profile", 0o600, 1000, b"export A=1\n"),
        Dir("tmp/", 0o1777, 0),
        File("tmp/gone", 0o600, 0, b"deleted later"),
        Dir("usr/", 0o755, 0),
        Dir("usr/lib/", 0o755, 0),
        File("usr/lib/libx.so", 0o644, 0, b"\x7fELF"),
    ]);
    let mut top_entries = vec![
        Dir("data/", 0o750, 0),
        File("data/.wh..wh..opq", 0o644, 0, b""),
        File("data/new", 0o640, 0, b"new data"),
        File("etc/hostname", 0o644, 0, b"kiln-2\n"),
        Hardlink("etc/hostname.link", "etc/hostname"),
        Dir("opt/", 0o755, 0),
    ];
    let long_dir = format!("opt/{}/", "d".repeat(120));
    top_entries.push(Dir(&long_dir, 0o755, 0));
    top_entries.push(File(&long_name, 0o644, 0, b"long"));
    top_entries.push(File("tmp/.wh.gone", 0o644, 0, b""));
    let top = layer_tar(&top_entries);
    [base, top]
}

/// A test store with the image's layers in it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: Root,
    pub layers: Vec<LayerBlob>,
    pub config: ImageConfigFile,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("store")).unwrap();
        let layers: Vec<LayerBlob> = layer_tars()
            .iter()
            .map(|tar| {
                let blob = gzip(tar);
                LayerBlob {
                    digest: root.blobs().put_bytes(&blob).unwrap(),
                    diff_id: Digest::of(tar),
                    size: blob.len() as u64,
                    media_type: OCI_LAYER_GZIP.into(),
                }
            })
            .collect();
        let stage = StageImage {
            config: ImageConfig {
                env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into(), "GREETING=hello".into()],
                cmd: Some(vec!["/bin/tool".into()]),
                working_dir: Some("/home/app".into()),
                user: Some("1000".into()),
                labels: BTreeMap::from([("org.example.kiln".into(), "export-test".into())]),
                exposed_ports: BTreeSet::from(["8080/tcp".into()]),
                ..Default::default()
            },
            author: None,
            history: vec![
                HistoryEntry { created_by: "COPY base / # buildkit".into(), empty_layer: false },
                HistoryEntry { created_by: "ENV GREETING=hello".into(), empty_layer: true },
                HistoryEntry { created_by: "RUN change # buildkit".into(), empty_layer: false },
            ],
        };
        let base = ImageConfigFile::scratch(&Platform::new("linux", "amd64", None));
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id).collect();
        let config = derive(&base, &stage, &diff_ids, created()).unwrap();
        Fixture { dir, root, layers, config }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The image `output` needs (its media types, compression and names; [`NAME`] when none).
    pub fn image(&self, output: &Output) -> ExportImage {
        let options = output.image().cloned().unwrap_or_default();
        let blobs = self.root.blobs();
        let names =
            if options.names.is_empty() { vec![NAME.to_string()] } else { options.names.clone() };
        prepare_image(&options, &self.config, &self.layers, names, &blobs, &blobs).unwrap()
    }

    /// Parses `spec` (with `DIR` replaced by the fixture's directory) and exports to it.
    pub fn export(&self, spec: &str) -> (Output, ExportImage, kiln::export::ExportResponse) {
        let spec = spec.replace("DIR", &self.dir.path().display().to_string());
        let output = Output::parse(&spec).unwrap();
        let image = self.image(&output);
        let blobs = self.root.blobs();
        let exporter = Exporter::new(&blobs, self.root.path().join("tmp"), created())
            .source_date_epoch(Some(CREATED))
            .store(&self.root);
        let response = exporter.export(&output, &image).unwrap();
        (output, image, response)
    }
}

pub fn created() -> Timestamp {
    Timestamp::from_unix(CREATED).unwrap()
}

/// One file of a tree, as compared between two unpackings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Vec<u8>,
    pub link: Option<PathBuf>,
    /// Index of the first path in the tree with the same inode (hard links).
    pub same_as: Option<String>,
    /// Non-directories only (directory mtimes change while a tree is unpacked).
    pub mtime: Option<i64>,
}

/// Every entry under `dir` (not `dir` itself) by relative path.
pub fn tree(dir: &Path, owners: bool) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(dir, dir, owners, &mut out, &mut inodes);
    out
}

fn walk(
    base: &Path,
    dir: &Path,
    owners: bool,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let kind = if meta.is_dir() {
            "dir"
        } else if meta.file_type().is_symlink() {
            "symlink"
        } else if meta.is_file() {
            "file"
        } else {
            "other"
        };
        let same_as = if kind == "file" && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            match inodes.get(&key) {
                Some(first) => Some(first.clone()),
                None => {
                    inodes.insert(key, rel.clone());
                    None
                }
            }
        } else {
            None
        };
        let node = Node {
            kind,
            mode: if kind == "symlink" { 0 } else { meta.mode() & 0o7777 },
            uid: if owners { meta.uid() } else { 0 },
            gid: if owners { meta.gid() } else { 0 },
            content: if kind == "file" { fs::read(&path).unwrap() } else { Vec::new() },
            link: (kind == "symlink").then(|| fs::read_link(&path).unwrap()),
            same_as,
            mtime: (kind != "dir").then(|| meta.mtime()),
        };
        out.insert(rel, node);
        if kind == "dir" {
            walk(base, &path, owners, out, inodes);
        }
    }
}

/// The tree the image flattens to, as paths.
pub fn expected_paths() -> Vec<String> {
    let long = "d".repeat(120);
    let mut paths: Vec<String> = [
        "bin",
        "bin/tool",
        "data",
        "data/new",
        "etc",
        "etc/hostname",
        "etc/hostname.link",
        "home",
        "home/app",
        "home/app/.profile",
        "lib",
        "opt",
        "tmp",
        "usr",
        "usr/lib",
        "usr/lib/libx.so",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(format!("opt/{long}"));
    paths.push(format!("opt/{long}/file"));
    paths.sort();
    paths
}
