//! Images built by `kiln build` in the hands of other tools: podman runs them (from a docker
//! archive and from an OCI archive), skopeo reads their config and kiln's store, and umoci
//! unpacks them into a runtime bundle whose root filesystem is the tree kiln's own `type=local`
//! output holds and whose process is the one the Dockerfile describes.
//!
//! The image is `testdata/interop/app` (multi-stage, on the busybox base of the shared test
//! registry), built once per test binary into each output; its ENTRYPOINT and CMD print
//! [`GREETING`]. The hand-made images of `tests/export_*.rs` check the exporters' formats;
//! these check what a build makes of a Dockerfile. Needs root, `podman`, `runc`, `skopeo`
//! and `umoci` (mandatory when KILN_E2E=1).

mod common;

use common::at_exit::shared_dir;
use common::busybox::shared_busybox;
use common::podman::{podman, run_options};
use common::tools::{self, stdout_of};
use common::tree::{Times, listing_lines};
use common::unpack::{extract_archive, layout_config, umoci_unpack_bundle};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TOOLS: &[&str] =
    &["docker-registry", "skopeo", "setpriv", "/bin/busybox", "podman", "runc", "umoci", "tar"];

/// What the image's ENTRYPOINT and CMD print, run as its USER in its WORKDIR.
const GREETING: &str = "hello, interop: one two (uid 65534, in /srv/app)\n";
const TAG: &str = "kiln-interop/app:1";
/// The diff id of an empty tar (1024 zero bytes).
const EMPTY_TAR: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

fn ready() -> bool {
    tools::root_and_available("the interop tests", TOOLS)
}

/// The image built once into every output the tests read.
struct Built {
    dir: PathBuf,
    /// `containerimage.digest` of the build into the store.
    store_digest: String,
}

impl Built {
    fn get() -> &'static Built {
        static BUILT: OnceLock<Built> = OnceLock::new();
        BUILT.get_or_init(|| {
            let dir = shared_dir();
            let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/interop/app");
            let base = format!("BASE={}", shared_busybox().reference);
            let root = dir.join("root");
            let build = |extra: &[&str]| {
                let mut args = vec!["--build-arg", &base, "-t", TAG];
                args.extend(extra);
                common::kiln::build_ok(&root, &context, &args);
            };
            let at = |name: &str| dir.join(name).display().to_string();
            build(&["-o", &format!("type=docker,dest={}", at("docker.tar"))]);
            build(&["-o", &format!("type=oci,dest={}", at("oci.tar"))]);
            build(&["-o", &format!("type=local,dest={}", at("local"))]);
            build(&["--metadata-file", &at("store.json")]);
            let metadata: Value =
                serde_json::from_slice(&std::fs::read(dir.join("store.json")).unwrap()).unwrap();
            let store_digest = metadata["containerimage.digest"].as_str().unwrap().to_string();
            Built { dir, store_digest }
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `podman run` of `image` (with `extra` options first) in a fresh store; its stdout.
fn podman_run(store: &Path, extra: &[&str], image: &str) -> String {
    stdout_of(podman(store).arg("run").args(run_options()).args(extra).arg(image))
}

#[test]
fn podman_runs_the_docker_archive() {
    if !ready() {
        return;
    }
    let built = Built::get();
    let store = tempfile::tempdir().unwrap();
    let loaded =
        stdout_of(podman(store.path()).arg("load").arg("-i").arg(built.path("docker.tar")));
    let name = loaded
        .lines()
        .find_map(|line| line.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("podman load named no image: {loaded}"));
    assert!(name.ends_with(TAG), "{name}");
    assert_eq!(podman_run(store.path(), &[], name), GREETING);
    // The command line's arguments replace CMD and go to the ENTRYPOINT.
    let args = stdout_of(podman(store.path()).arg("run").args(run_options()).args([name, "x"]));
    assert_eq!(args, "hello, interop: x (uid 65534, in /srv/app)\n");
}

#[test]
fn podman_runs_the_oci_archive() {
    if !ready() {
        return;
    }
    let built = Built::get();
    let store = tempfile::tempdir().unwrap();
    let image = format!("oci-archive:{}", built.path("oci.tar").display());
    assert_eq!(podman_run(store.path(), &["--quiet"], &image), GREETING);
}

#[test]
fn skopeo_reads_the_config_the_dockerfile_set() {
    if !ready() {
        return;
    }
    let built = Built::get();
    let archive = format!("oci-archive:{}", built.path("oci.tar").display());
    let config: Value = serde_json::from_str(&stdout_of(
        Command::new("skopeo").args(["inspect", "--config"]).arg(&archive),
    ))
    .unwrap();
    let base = &shared_busybox().images[0].spec.config;
    let mut env = base["Env"].as_array().unwrap().clone();
    env.push(json!("NAME=interop"));
    let expected = json!({
        "Env": env,
        "Cmd": ["one", "two"],
        "Entrypoint": ["greet"],
        "WorkingDir": "/srv/app",
        "User": "nobody",
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/data": {}},
        "Labels": {"org.kiln.test": "busybox", "org.example.test": "interop"},
        "StopSignal": "SIGINT",
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&config["config"][field], value, "config field {field}");
    }
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], common::busybox::host_architecture());
    // The base's layer, the two COPYs', the RUN's and WORKDIR's: BuildKit's mkdir of a
    // directory that exists, an empty tar.
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 5);
    assert_eq!(diff_ids[4], EMPTY_TAR);
    // skopeo's summary agrees with the archive's own config.
    let info: Value =
        serde_json::from_str(&stdout_of(Command::new("skopeo").arg("inspect").arg(&archive)))
            .unwrap();
    assert_eq!(info["Env"], config["config"]["Env"]);
    assert_eq!(info["Labels"], config["config"]["Labels"]);
}

#[test]
fn umoci_unpacks_the_oci_archive_to_the_local_output() {
    if !ready() {
        return;
    }
    let built = Built::get();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    extract_archive(&built.path("oci.tar"), &layout);
    let bundle = work.path().join("bundle");
    umoci_unpack_bundle(&layout, "1", &bundle);
    let from_umoci = listing_lines(&bundle.join("rootfs"), Times::NotDirs);
    let from_kiln = listing_lines(&built.path("local"), Times::NotDirs);
    assert_eq!(from_umoci.join("\n"), from_kiln.join("\n"), "umoci unpack and type=local differ");
    // umoci's runtime config: ENTRYPOINT + CMD, WORKDIR, and USER found in the image's
    // /etc/passwd.
    let runtime: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let process = &runtime["process"];
    assert_eq!(process["args"], json!(["greet", "one", "two"]));
    assert_eq!(process["cwd"], "/srv/app");
    assert_eq!(process["user"]["uid"], 65534);
    assert_eq!(process["user"]["gid"], 65534);
    assert!(process["env"].as_array().unwrap().contains(&json!("NAME=interop")), "{process}");
    let line = |path: &str| {
        from_kiln
            .iter()
            .find(|l| l.split(' ').any(|field| field == path))
            .unwrap_or_else(|| panic!("{path} missing from:\n{}", from_kiln.join("\n")))
            .clone()
    };
    assert!(line("srv/app").starts_with("d 0755 65534:65534 "), "{}", line("srv/app"));
    assert!(line("srv/app/greet-link").ends_with(" -> /usr/local/bin/greet"));
    assert!(line("usr/local/bin/greet").starts_with("f 0755 0:0 "));
    assert_eq!(line("usr/share/app/greeting.txt"), "h usr/share/app/greeting.txt => srv/app/hard");
    assert!(!from_kiln.iter().any(|l| l.ends_with(" bin/sed -> busybox")), "bin/sed was deleted");
}

#[test]
fn skopeo_reads_the_image_in_the_store() {
    if !ready() {
        return;
    }
    let built = Built::get();
    let image = format!("oci:{}:docker.io/{TAG}", built.path("root").display());
    let info: Value =
        serde_json::from_str(&stdout_of(Command::new("skopeo").arg("inspect").arg(&image)))
            .unwrap();
    assert_eq!(info["Digest"], built.store_digest);
    assert_eq!(info["Labels"]["org.example.test"], "interop");
    // Its layers are the OCI archive's: the same build, from the cache.
    let layout = tempfile::tempdir().unwrap();
    extract_archive(&built.path("oci.tar"), layout.path());
    let config = layout_config(layout.path(), "1");
    let store = stdout_of(Command::new("skopeo").args(["inspect", "--config"]).arg(&image));
    let store: Value = serde_json::from_str(&store).unwrap();
    assert_eq!(store["rootfs"], config["rootfs"]);
}
