//! `kiln build` end to end: a busybox base pushed to a real `docker-registry`, builds run by
//! the kiln binary, results checked by what a user sees — files of the image, its config,
//! what was cached, exit codes and messages, and (where installed) independent tools.

mod common;

use common::build::{cached_steps, image_line, steps_run as step_names_run};
use common::busybox::push_busybox;
use common::registry::TestRegistry;
use common::tools;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOOLS: &[&str] = &["docker-registry", "skopeo", "setpriv", "/bin/busybox"];

fn kiln() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

/// Root is needed for the sandbox's full id range in these tests (rootless has its own test).
fn ready() -> bool {
    tools::root_and_available("the build tests", TOOLS)
}

struct Build {
    root: tempfile::TempDir,
    context: tempfile::TempDir,
    registry: TestRegistry,
    base: String,
}

impl Build {
    fn new(dockerfile: &str) -> Build {
        let registry = TestRegistry::plain();
        let pushed = push_busybox(&registry, "busybox", "latest", &Default::default());
        let build = Build {
            root: tempfile::tempdir().unwrap(),
            context: tempfile::tempdir().unwrap(),
            registry,
            base: pushed.reference,
        };
        build.write("Dockerfile", &dockerfile.replace("BASE", &build.base));
        build
    }

    fn write(&self, path: &str, content: &str) {
        let full = self.context.path().join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }

    fn run_with_root(&self, root: &Path, args: &[&str]) -> Output {
        let output = Command::new(kiln())
            .arg("--root")
            .arg(root)
            .arg("build")
            .args(["--progress", "plain"])
            .args(args)
            .arg(self.context.path())
            .output()
            .unwrap();
        eprintln!(
            "kiln build {args:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_root(self.root.path(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "build failed");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Builds and exports the rootfs; returns its directory.
    fn rootfs(&self, args: &[&str]) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().join("fs").display());
        let mut all = args.to_vec();
        all.extend(["-o", &dest]);
        self.ok(&all);
        out
    }
}

#[test]
fn builds_a_multi_stage_image_from_a_registry_base() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM BASE AS build\n\
         WORKDIR /src\n\
         COPY app.txt .\n\
         RUN mkdir -p /out && tr a-z A-Z < app.txt > /out/APP.TXT && chown 1234:2345 /out/APP.TXT\n\
         FROM BASE AS unused\n\
         RUN exit 42\n\
         FROM BASE\n\
         COPY --from=build /out/ /opt/\n\
         RUN rm /bin/sed && echo done > /marker\n\
         ENV GREETING=hi\n\
         USER nobody\n\
         CMD [\"cat\", \"/opt/APP.TXT\"]\n",
    );
    build.write("app.txt", "hello kiln\n");
    let out = build.rootfs(&[]);
    let fs = out.path().join("fs");
    assert_eq!(fs::read_to_string(fs.join("opt/APP.TXT")).unwrap(), "HELLO KILN\n");
    let meta = fs::metadata(fs.join("opt/APP.TXT")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345), "ownership set by RUN chown is kept");
    assert_eq!(fs::read_to_string(fs.join("marker")).unwrap(), "done\n");
    assert!(fs.join("bin/busybox").exists());
    assert!(!fs.join("bin/sed").exists(), "a file deleted by RUN is gone (whiteout applied)");
    assert!(!fs.join("src").exists(), "the build stage's files stay out of the final image");

    // The OCI archive is read by skopeo, with the config the Dockerfile says.
    let archive = out.path().join("image.tar");
    build.ok(&["-t", "app:1", "-o", &format!("type=oci,dest={}", archive.display())]);
    let inspect = Command::new("skopeo")
        .args(["inspect", "--config", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(config["config"]["User"], "nobody");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/opt/APP.TXT"]));
    assert!(config["config"]["Env"].as_array().unwrap().iter().any(|e| e == "GREETING=hi"));
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(history.iter().any(|h| h.starts_with("RUN /bin/sh -c rm /bin/sed")), "{history:?}");
    drop(build.registry);
}

#[test]
fn cache_follows_content_not_mtime() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM BASE\n\
         COPY a.txt /a.txt\n\
         RUN cat /a.txt > /copy-of-a\n\
         COPY b.txt /b.txt\n\
         RUN cat /b.txt > /copy-of-b\n",
    );
    build.write("a.txt", "a1\n");
    build.write("b.txt", "b1\n");
    let first = build.ok(&[]);
    assert_eq!(cached_steps(&first), 0, "a fresh root caches nothing");
    // The COPY records keep each source's digest, to tell later which one changed.
    let records = Command::new("grep")
        .args(["-rlF", r#""sources":[{"path":"b.txt","digest":"sha256:"#])
        .arg(build.root.path().join("cache/records"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&records.stdout).lines().count(),
        1,
        "one COPY b.txt record"
    );
    let again = build.ok(&[]);
    assert_eq!(step_names_run(&again), Vec::<String>::new(), "an unchanged rebuild runs nothing");
    assert_eq!(cached_steps(&again), 4);
    // As with BuildKit, layers keep the time they were made: the same image, byte for byte.
    assert_eq!(image_line(&again), image_line(&first), "a cached rebuild gives the same image");

    // Only the modification time changes: still all cached.
    let b = build.context.path().join("b.txt");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    fs::File::options().write(true).open(&b).unwrap().set_modified(later).unwrap();
    assert_eq!(step_names_run(&build.ok(&[])), Vec::<String>::new(), "mtime-only changes hit");

    // b's content changes: the steps from COPY b.txt on run again, those before stay cached.
    build.write("b.txt", "b2\n");
    let changed = build.ok(&[]);
    assert_eq!(
        step_names_run(&changed),
        ["[4/5] COPY b.txt /b.txt", "[5/5] RUN cat /b.txt > /copy-of-b"],
        "only the changed COPY and what follows re-run"
    );
    assert_eq!(cached_steps(&changed), 2);

    // --no-cache runs everything, and still records.
    assert_eq!(step_names_run(&build.ok(&["--no-cache"])).len(), 4);
}

#[test]
fn source_date_epoch_gives_the_same_image_in_two_fresh_roots() {
    if !ready() {
        return;
    }
    let build =
        Build::new("FROM BASE\nCOPY f /f\nRUN echo built > /g && touch /h\nCMD [\"true\"]\n");
    build.write("f", "content\n");
    let digest = |root: &Path| {
        let iid = root.join("iid");
        let meta = root.join("meta.json");
        let output = build.run_with_root(
            &root.join("state"),
            &[
                "--build-arg",
                "SOURCE_DATE_EPOCH=1700000000",
                "--metadata-file",
                meta.to_str().unwrap(),
                "--iidfile",
                iid.to_str().unwrap(),
            ],
        );
        assert!(output.status.success());
        let meta: serde_json::Value = serde_json::from_slice(&fs::read(meta).unwrap()).unwrap();
        (
            fs::read_to_string(iid).unwrap(),
            meta["containerimage.digest"].as_str().unwrap().to_string(),
        )
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = digest(a.path());
    let second = digest(b.path());
    assert_eq!(first, second, "same inputs, same SOURCE_DATE_EPOCH, same image and manifest");
    assert!(first.1.starts_with("sha256:"));
}

#[test]
fn secrets_reach_the_command_but_never_the_image_or_the_store() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM BASE\n\
         RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /checked\n\
         RUN --mount=type=secret,id=token,env=TOKEN echo -n \"$TOKEN\" | sha256sum | cut -c1-64 > /checked-env\n",
    );
    let secret = tempfile::NamedTempFile::new().unwrap();
    fs::write(secret.path(), "s3cr3t-v4lue").unwrap();
    let spec = format!("id=token,src={}", secret.path().display());
    let out = build.rootfs(&["--secret", &spec]);
    // The Dockerfile never names the value (a step's text is kept in the cache index): the
    // steps record its sha256, which must be the secret's.
    let expected = "8fc72cfd7a91177d2946599f2135f3d324baaa5fdb5c843aa971784afdb4269f\n";
    assert_eq!(fs::read_to_string(out.path().join("fs/checked")).unwrap(), expected);
    assert_eq!(fs::read_to_string(out.path().join("fs/checked-env")).unwrap(), expected);
    assert!(!out.path().join("fs/run/secrets/token").exists(), "no secret file in the image");
    let grep = Command::new("grep")
        .args(["-rlaF", "s3cr3t-v4lue"])
        .arg(build.root.path())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "secret found in the store: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    // Without the secret, a required one fails the build.
    let build2 = Build::new("FROM BASE\nRUN --mount=type=secret,id=missing,required true\n");
    let output = build2.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("secret missing not found"));
}

#[test]
fn errors_name_the_cause_exit_1_and_write_nothing() {
    if !ready() {
        return;
    }
    let cases = [
        ("FROM BASE\nCOPY missing.txt /x\n", "missing.txt"),
        ("FROM BASE\nRUN exit 3\n", "did not complete successfully: exit code: 3"),
        ("FROM BASE\nRUNN true\n", "Dockerfile:2: unknown instruction: RUNN"),
        ("FROM 127.0.0.1:1/nothing-here\n", "127.0.0.1:1/nothing-here"),
    ];
    for (dockerfile, message) in cases {
        let build = Build::new(dockerfile);
        let dest = build.root.path().join("out.tar");
        let output = build.run(&["-o", &format!("type=oci,dest={}", dest.display())]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{dockerfile}");
        assert!(stderr.contains(message), "{dockerfile}: expected {message:?} in:\n{stderr}");
        assert!(!dest.exists(), "{dockerfile}: a failed build wrote its output");
    }
    let build = Build::new("FROM BASE AS a\nRUN true\n");
    let output = build.run(&["--target", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("target stage \"nope\" could not be found")
    );
}

#[test]
fn cache_mounts_persist_between_builds_and_stay_out_of_layers() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM BASE\n\
         ARG N\n\
         RUN --mount=type=cache,target=/cache echo $N >> /cache/log && cp /cache/log /seen\n",
    );
    build.rootfs(&["--build-arg", "N=1"]);
    let out = build.rootfs(&["--build-arg", "N=2"]);
    assert_eq!(fs::read_to_string(out.path().join("fs/seen")).unwrap(), "1\n2\n");
    assert!(!out.path().join("fs/cache/log").exists(), "cache contents are not in the image");
}
