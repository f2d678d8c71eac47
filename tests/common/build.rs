//! `kiln build` driven end to end: one registry and one base image per test binary, a fresh
//! state root and context per [`Build`], and readers for what a build produced — the
//! exported rootfs, the OCI image config and layer tars, and the `--progress plain` log.
//!
//! ```ignore
//! if !common::build::ready() { return; }
//! let build = Build::new("FROM {{base}}\nRUN id\n");      // {{base}}: the pushed base image
//! let image = build.image(&[]);                           // -o type=local and -o type=oci
//! assert!(printed(&image.log, "uid=0(root) gid=0(root)"));
//! assert_eq!(image.config["config"]["Cmd"], json!(["sh"]));
//! ```
//!
//! The base (`kiln-test/base:1`) is busybox-static with every applet linked in `/bin`, users
//! `root`, `alice` (1001:1002, also in group `extra` 1500) and `nobody`, `/root` and `/tmp`.
//! The registry and a state root that pulled the base live until the test process exits.

use super::busybox::{BUSYBOX, host_architecture, layer_with};
use super::oci::ImageSpec;
use super::registry::TestRegistry;
use super::tools;
use serde_json::{Value, json};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
     alice:x:1001:1002:alice:/home/alice:/bin/sh\n\
     nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nstaff:x:1002:\nextra:x:1500:alice\nnogroup:x:65534:\n";

pub const TOOLS: &[&str] = &["docker-registry", "skopeo", "setpriv", BUSYBOX];

pub fn kiln() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

/// Root is needed for the sandbox's full id range (rootless has its own tests).
pub fn ready() -> bool {
    if !rustix::process::geteuid().is_root() {
        assert!(!tools::e2e_required(), "the build tests need root (KILN_E2E=1)");
        eprintln!("skipping: the build tests need root");
        return false;
    }
    tools::available(TOOLS)
}

fn busybox_applets() -> Vec<String> {
    let output = Command::new(BUSYBOX).arg("--list").output().expect("run busybox --list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|name| !name.is_empty() && *name != "busybox")
        .map(str::to_string)
        .collect()
}

pub fn base_spec() -> ImageSpec {
    let applets = busybox_applets();
    let applets: Vec<&str> = applets.iter().map(String::as_str).collect();
    ImageSpec {
        os: "linux".into(),
        architecture: host_architecture().into(),
        variant: None,
        config: json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "Labels": {"org.kiln.test": "base"},
        }),
        layers: vec![layer_with(&applets, PASSWD, GROUP)],
    }
}

static REGISTRY: Mutex<Option<TestRegistry>> = Mutex::new(None);
/// A state root that has pulled the base image, copied into every [`Build`]'s root.
static WARM_ROOT: Mutex<Option<tempfile::TempDir>> = Mutex::new(None);

extern "C" fn stop_registry() {
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.take();
    }
    if let Ok(mut root) = WARM_ROOT.lock() {
        root.take();
    }
}

/// The base image's reference, pushed on first use. The registry runs from a thread that
/// never ends (its `--pdeathsig` follows the thread that started it, and test threads end)
/// and is stopped, its storage removed, when the test process exits.
pub fn base_image() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let registry = TestRegistry::plain();
            let pushed = super::busybox::push_image(
                &registry,
                "kiln-test/base",
                "1",
                &base_spec(),
                &Default::default(),
            );
            *REGISTRY.lock().unwrap() = Some(registry);
            // SAFETY: registering a plain function with no arguments; it only takes a lock.
            unsafe { libc::atexit(stop_registry) };
            sender.send(pushed.reference).unwrap();
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("the registry thread pushed the base image")
    })
}

/// Replaces `{{base}}` with the base image's reference.
pub fn with_base(text: &str) -> String {
    text.replace("{{base}}", base_image())
}

/// One build context and one state root.
pub struct Build {
    pub root: tempfile::TempDir,
    pub context: tempfile::TempDir,
}

impl Build {
    /// A context holding `Dockerfile` (with `{{base}}` replaced).
    pub fn new(dockerfile: &str) -> Build {
        let build = Build::empty();
        build.write("Dockerfile", &with_base(dockerfile));
        build
    }

    /// An empty context and a root of its own that holds nothing but the pulled base image
    /// (a copy of a root that pulled it once: pulling it for every build costs seconds).
    pub fn empty() -> Build {
        let build =
            Build { root: tempfile::tempdir().unwrap(), context: tempfile::tempdir().unwrap() };
        let mut warm = WARM_ROOT.lock().unwrap_or_else(|p| p.into_inner());
        if warm.is_none() {
            let seed =
                Build { root: tempfile::tempdir().unwrap(), context: tempfile::tempdir().unwrap() };
            seed.write("Dockerfile", &with_base("FROM {{base}}\n"));
            seed.ok(&["-o", "type=tar,dest=/dev/null"]);
            *warm = Some(seed.root);
        }
        let template = warm.as_ref().unwrap().path();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", template.display()))
            .arg(build.root.path())
            .status()
            .unwrap();
        assert!(copied.success(), "copying the warm state root");
        build
    }

    pub fn path(&self, path: &str) -> PathBuf {
        self.context.path().join(path)
    }

    pub fn write(&self, path: &str, content: &str) {
        self.write_bytes(path, content.as_bytes());
    }

    pub fn write_bytes(&self, path: &str, content: &[u8]) {
        let full = self.path(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }

    /// `kiln --root ROOT build --progress plain ARGS CONTEXT`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["--progress", "plain"];
        all.extend(args);
        self.bare_command(&all)
    }

    /// `kiln --root ROOT build ARGS CONTEXT`: progress as kiln chooses it.
    pub fn bare_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(kiln());
        command
            .arg("--root")
            .arg(self.root.path())
            .arg("build")
            .args(args)
            .arg(self.context.path());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        output_of(self.command(args), args)
    }

    /// [`Build::bare_command`]'s output (stdout and stderr to pipes: no terminal).
    pub fn run_bare(&self, args: &[&str]) -> Output {
        output_of(self.bare_command(args), args)
    }

    /// Builds; asserts success; returns the progress log.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Builds; asserts exit code 1; returns the progress log and error.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(1), "the build should fail with exit code 1");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Builds with `-o type=local` and `-o type=oci` and reads both back.
    #[track_caller]
    pub fn image(&self, args: &[&str]) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let local = format!("type=local,dest={}", dir.path().join("fs").display());
        let oci = format!("type=oci,dest={}", dir.path().join("image.tar").display());
        let mut all = args.to_vec();
        all.extend(["-o", &local, "-o", &oci]);
        let log = self.ok(&all);
        Image::read(dir, log)
    }
}

fn output_of(mut command: Command, args: &[&str]) -> Output {
    let output = command.stdin(Stdio::null()).output().expect("run kiln");
    eprintln!(
        "kiln build {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What one build exported.
pub struct Image {
    /// Holds `fs/` (the rootfs) and `image.tar` (the OCI archive).
    pub dir: tempfile::TempDir,
    pub log: String,
    /// The image config.
    pub config: Value,
    /// The layer tars, uncompressed, base layers first.
    pub layers: Vec<Vec<u8>>,
}

fn archive_member(archive: &Path, name: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy().trim_start_matches("./") == name {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{name} is not in {}", archive.display());
}

fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    archive_member(archive, &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")))
}

fn uncompressed(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    }
}

impl Image {
    fn read(dir: tempfile::TempDir, log: String) -> Image {
        let archive = dir.path().join("image.tar");
        let index: Value = serde_json::from_slice(&archive_member(&archive, "index.json")).unwrap();
        let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: Value = serde_json::from_slice(&blob(&archive, manifest_digest)).unwrap();
        let config =
            serde_json::from_slice(&blob(&archive, manifest["config"]["digest"].as_str().unwrap()))
                .unwrap();
        let layers = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| uncompressed(blob(&archive, layer["digest"].as_str().unwrap())))
            .collect();
        Image { dir, log, config, layers }
    }

    /// The exported rootfs.
    pub fn fs(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    #[track_caller]
    pub fn read_file(&self, path: &str) -> String {
        let full = self.fs().join(path.trim_start_matches('/'));
        fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {path} of the image: {e}"))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.fs().join(path.trim_start_matches('/')).symlink_metadata().is_ok()
    }

    /// `(created_by, empty_layer)` of the history entries after the base image's.
    pub fn history(&self) -> Vec<(String, bool)> {
        // The base has one layer and one history entry.
        self.config["history"].as_array().unwrap()[1..]
            .iter()
            .map(|h| {
                (
                    h["created_by"].as_str().unwrap_or("").to_string(),
                    h["empty_layer"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// Entries of layer `index` (negative: from the end) as `TYPE PATH UID:GID[ -> LINK]`,
    /// TYPE being `f` file, `d` directory, `l` symlink, `h` hard link, `c`/`b` devices,
    /// `p` fifo.
    pub fn layer_entries(&self, index: isize) -> Vec<String> {
        let index = if index < 0 { self.layers.len() as isize + index } else { index };
        let mut tar = tar::Archive::new(&self.layers[index as usize][..]);
        let mut out = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Regular => "f",
                tar::EntryType::Directory => "d",
                tar::EntryType::Symlink => "l",
                tar::EntryType::Link => "h",
                tar::EntryType::Char => "c",
                tar::EntryType::Block => "b",
                tar::EntryType::Fifo => "p",
                _ => "?",
            };
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let mut line =
                format!("{kind} {path} {}:{}", header.uid().unwrap(), header.gid().unwrap());
            if let Some(link) = entry.link_name().unwrap() {
                line.push_str(&format!(" -> {}", link.to_string_lossy()));
            }
            out.push(line);
        }
        out
    }
}

/// Whether a RUN printed `line` (`#N line` in the plain progress log).
pub fn printed(log: &str, line: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with('#') && l.split_once(' ').is_some_and(|(_, rest)| rest == line))
}

/// The lines RUN steps printed (progress lines that are not step headers or statuses).
pub fn output_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
        .filter(|rest| {
            !(rest.starts_with('[')
                || rest == "CACHED"
                || rest.starts_with("DONE ")
                || rest.starts_with("ERROR: "))
        })
        .collect()
}

/// The `image sha256:… (manifest sha256:…)` line a build ends with.
pub fn image_line(log: &str) -> String {
    let line = log.lines().rev().find(|l| l.starts_with("image sha256:"));
    line.expect("the build printed its image").to_string()
}

/// How many steps the log reports as `CACHED`.
pub fn cached_steps(log: &str) -> usize {
    log.lines().filter(|l| l.ends_with(" CACHED")).count()
}

/// The names of the steps that ran (started and not `CACHED`), apart from `FROM` and internal
/// steps, in the order they started.
pub fn steps_run(log: &str) -> Vec<String> {
    let mut started = Vec::new();
    let mut cached = std::collections::BTreeSet::new();
    for line in log.lines() {
        let Some((id, rest)) = line.split_once(' ') else { continue };
        if rest == "CACHED" {
            cached.insert(id.to_string());
        } else if rest.starts_with('[')
            && !rest.starts_with("[internal]")
            && !rest.contains("] FROM ")
        {
            started.push((id.to_string(), rest.to_string()));
        }
    }
    started.into_iter().filter(|(id, _)| !cached.contains(id)).map(|(_, name)| name).collect()
}
