//! Every Dockerfile instruction end to end: the kiln binary builds against a real registry,
//! and the tests check what a user sees — the image config and history (from the OCI
//! archive), files of the exported rootfs, layer tar entries, RUN output in the plain
//! progress log, and error messages.
//!
//! Most cases are data: `testdata/build/<case>/` holds a context (with `Dockerfile`) and
//! `expected.json` (see `testdata/build/README.md`); `KILN_BUILD_CASE=<name>` runs one.
//! What needs several builds or a server (ONBUILD through the store, parallel stages,
//! `-f -`, platforms) is written out below.

mod common;

use common::build::{Build, Image, output_lines, printed, ready, with_base};
use common::busybox::host_architecture;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/build")
}

/// Copies a case's context into the build's context; text files get `{{base}}` replaced.
fn copy_context(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let target = to.join(&name);
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_context(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            let bytes = fs::read(entry.path()).unwrap();
            match String::from_utf8(bytes) {
                Ok(text) => fs::write(&target, with_base(&text)).unwrap(),
                Err(e) => fs::write(&target, e.into_bytes()).unwrap(),
            }
            let mode = entry.metadata().unwrap().mode();
            fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn check_file(image: &Image, path: &str, want: &Value) {
    let full = image.fs().join(path.trim_start_matches('/'));
    let Some(want) = want.as_object() else {
        assert!(full.symlink_metadata().is_err(), "{path} should not exist in the image");
        return;
    };
    let meta = full.symlink_metadata().unwrap_or_else(|e| panic!("{path}: {e}"));
    for (field, value) in want {
        let value = value.as_str().unwrap();
        match field.as_str() {
            "content" => assert_eq!(fs::read_to_string(&full).unwrap(), value, "{path} content"),
            "mode" => assert_eq!(format!("{:o}", meta.mode() & 0o7777), value, "{path} mode"),
            "owner" => {
                assert_eq!(format!("{}:{}", meta.uid(), meta.gid()), value, "{path} owner")
            }
            "kind" => {
                let kind = if meta.is_dir() {
                    "dir"
                } else if meta.is_symlink() {
                    "symlink"
                } else {
                    "file"
                };
                assert_eq!(kind, value, "{path} kind");
            }
            "target" => {
                assert_eq!(fs::read_link(&full).unwrap().to_string_lossy(), value, "{path} link")
            }
            other => panic!("unknown file field {other:?}"),
        }
    }
}

fn run_case(dir: &Path) {
    let text = with_base(&fs::read_to_string(dir.join("expected.json")).unwrap())
        .replace("{{arch}}", host_architecture());
    let expected: Value = serde_json::from_str(&text).unwrap();
    let build = Build::empty();
    copy_context(dir, build.context.path());
    fs::remove_file(build.path("expected.json")).unwrap();
    let context = build.context.path().to_string_lossy().into_owned();
    let args: Vec<String> =
        strings(&expected["args"]).iter().map(|a| a.replace("{{context}}", &context)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(error) = expected["error"].as_str() {
        let log = build.fails(&args);
        assert!(log.contains(error), "expected {error:?} in:\n{log}");
        for text in strings(&expected["not_printed"]) {
            assert!(!log.contains(&text), "{text:?} should not be in the log");
        }
        return;
    }
    let image = build.image(&args);
    for (key, want) in expected["config"].as_object().into_iter().flatten() {
        assert_eq!(&image.config["config"][key], want, "config field {key}");
    }
    for (key, want) in expected["image"].as_object().into_iter().flatten() {
        assert_eq!(&image.config[key], want, "image field {key}");
    }
    if let Some(history) = expected["history"].as_array() {
        let want: Vec<(String, bool)> = history
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_bool().unwrap()))
            .collect();
        assert_eq!(image.history(), want, "history after the base image's");
    }
    for (path, want) in expected["files"].as_object().into_iter().flatten() {
        check_file(&image, path, want);
    }
    for line in strings(&expected["printed"]) {
        assert!(
            printed(&image.log, &line),
            "RUN should have printed {line:?}; it printed {:#?}",
            output_lines(&image.log)
        );
    }
    for text in strings(&expected["not_printed"]) {
        assert!(!image.log.contains(&text), "{text:?} should not be in the log");
    }
    if expected.get("last_layer").is_some() {
        assert_eq!(image.layer_entries(-1), strings(&expected["last_layer"]), "last layer");
    }
}

#[test]
fn instruction_cases() {
    if !ready() {
        return;
    }
    let only = std::env::var("KILN_BUILD_CASE").ok();
    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut failed = Vec::new();
    let mut ran = 0;
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        eprintln!("=== case {name}");
        ran += 1;
        if std::panic::catch_unwind(|| run_case(&case)).is_err() {
            failed.push(name);
        }
    }
    assert!(ran > 0, "no case ran");
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

#[test]
fn onbuild_triggers_run_when_a_later_build_uses_the_image() {
    if !ready() {
        return;
    }
    let parent = Build::new(
        "FROM {{base}}\n\
         ONBUILD ARG WHO=child\n\
         ONBUILD RUN echo \"trigger ran for $WHO\" > /trigger-ran\n\
         ONBUILD COPY from-child-context.txt /copied-by-trigger\n\
         CMD [\"parent-cmd\"]\n",
    );
    let log = parent.ok(&["-t", "kiln-test/parent:1"]);
    assert!(!log.contains("trigger ran"), "ONBUILD does not run in the image that declares it");

    // The child builds in the same state root, where the parent is in the local store.
    let child = Build { root: parent.root, context: tempfile::tempdir().unwrap() };
    child.write("Dockerfile", "FROM kiln-test/parent:1\nRUN cat /trigger-ran /copied-by-trigger\n");
    child.write("from-child-context.txt", "from the child's context\n");
    let image = child.image(&[]);
    assert!(image.log.contains("[2/4] ONBUILD RUN echo \"trigger ran for $WHO\""), "{}", image.log);
    assert!(image.log.contains("[3/4] ONBUILD COPY from-child-context.txt /copied-by-trigger"));
    assert!(printed(&image.log, "trigger ran for child"));
    assert!(printed(&image.log, "from the child's context"));
    assert_eq!(image.config["config"]["OnBuild"], Value::Null, "triggers are consumed");
    assert_eq!(image.config["config"]["Cmd"], serde_json::json!(["parent-cmd"]));
    let history: Vec<String> = image.history().into_iter().map(|(h, _)| h).collect();
    assert!(
        history.ends_with(&[
            "CMD [\"parent-cmd\"]".to_string(),
            "ARG WHO=child".to_string(),
            "RUN |1 WHO=child /bin/sh -c echo \"trigger ran for $WHO\" > /trigger-ran # buildkit"
                .to_string(),
            "COPY from-child-context.txt /copied-by-trigger # buildkit".to_string(),
            "RUN |1 WHO=child /bin/sh -c cat /trigger-ran /copied-by-trigger # buildkit"
                .to_string(),
        ]),
        "{history:#?}"
    );
}

/// Seconds since boot with centiseconds, as a RUN sees the clock.
fn uptime(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn independent_stages_run_in_parallel_and_unused_ones_not_at_all() {
    if !ready() {
        return;
    }
    // Both stages sleep between recording their start and end; run one after the other, one
    // would start after the other ended.
    let build = Build::new(
        "FROM {{base}} AS left\n\
         RUN cat /proc/uptime > /start && sleep 2 && echo left && cat /proc/uptime > /end\n\
         FROM {{base}} AS right\n\
         RUN cat /proc/uptime > /start && sleep 2 && echo right && cat /proc/uptime > /end\n\
         FROM {{base}} AS unused\n\
         RUN echo UNUSED-STAGE-RAN\n\
         FROM {{base}}\n\
         COPY --from=left /start /left-start\n\
         COPY --from=left /end /left-end\n\
         COPY --from=right /start /right-start\n\
         COPY --from=right /end /right-end\n",
    );
    let image = build.image(&[]);
    assert!(!image.log.contains("UNUSED-STAGE-RAN"), "a stage the target does not need ran");
    assert!(printed(&image.log, "left") && printed(&image.log, "right"));
    let time = |name: &str| uptime(&image.read_file(name));
    let (left, right) =
        ((time("left-start"), time("left-end")), (time("right-start"), time("right-end")));
    assert!(
        left.0 < right.1 && right.0 < left.1,
        "the stages did not overlap: left {left:?}, right {right:?}"
    );
}

#[test]
fn a_rebuild_runs_only_what_its_changed_inputs_reach() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM {{base}}\n\
         RUN echo first > /first\n\
         COPY a.txt /a.txt\n\
         ARG LATE\n\
         RUN echo \"late=$LATE\" > /late\n\
         COPY --link b.txt /b.txt\n",
    );
    build.write("a.txt", "a\n");
    build.write("b.txt", "b\n");
    let first = build.ok(&["--build-arg", "LATE=1"]);
    assert_eq!(common::build::cached_steps(&first), 0);
    let again = build.ok(&["--build-arg", "LATE=1"]);
    assert_eq!(common::build::cached_steps(&again), 4, "an unchanged rebuild is all cached");
    // The ARG is declared after the first two steps: only the steps that see it run again,
    // and a `--link` layer does not depend on what lies below it.
    let changed = build.image(&["--build-arg", "LATE=2"]);
    assert_eq!(common::build::steps_run(&changed.log), ["[4/5] RUN echo \"late=$LATE\" > /late"]);
    assert_eq!(changed.read_file("/late"), "late=2\n");
    assert_eq!(changed.read_file("/b.txt"), "b\n");
    // A file's content, not its time, decides.
    build.write("a.txt", "a\n");
    assert!(common::build::steps_run(&build.ok(&["--build-arg", "LATE=2"])).is_empty());
    build.write("a.txt", "changed\n");
    assert_eq!(
        common::build::steps_run(&build.ok(&["--build-arg", "LATE=2"])),
        ["[3/5] COPY a.txt /a.txt", "[4/5] RUN echo \"late=$LATE\" > /late"]
    );
}

#[test]
fn dockerfile_from_stdin() {
    if !ready() {
        return;
    }
    let build = Build::empty();
    build.write("ctx.txt", "from the context\n");
    // `--build-arg KEY` alone takes the value from kiln's environment.
    let mut command = build.command(&["-f", "-", "--build-arg", "FROM_ENV"]);
    command.env("FROM_ENV", "from the environment").stdin(std::process::Stdio::piped());
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let dockerfile =
        "FROM {{base}}\nARG FROM_ENV\nCOPY ctx.txt /\nRUN cat /ctx.txt && echo \"$FROM_ENV\"\n";
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), with_base(dockerfile).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(printed(&log, "from the context"), "{log}");
    assert!(printed(&log, "from the environment"), "{log}");
}

#[test]
fn add_downloads_urls_and_checks_checksums() {
    if !ready() {
        return;
    }
    let body = b"downloaded over http\n";
    let server = common::http::Server::start(
        [
            ("/files/plain.txt".to_string(), common::http::Response::ok(body)),
            (
                "/files/dated.txt".to_string(),
                common::http::Response::ok(body)
                    .header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ),
        ]
        .into(),
    );
    let sha = common::oci::sha256(body);
    let build = Build::new(&format!(
        "FROM {{{{base}}}}\n\
         ADD {plain} /downloads/\n\
         ADD --checksum={sha} {plain} /checked.txt\n\
         ADD --chown=alice --chmod=0640 {dated} /dated.txt\n",
        plain = server.url("/files/plain.txt"),
        dated = server.url("/files/dated.txt"),
    ));
    let image = build.image(&[]);
    assert_eq!(image.read_file("/downloads/plain.txt"), "downloaded over http\n");
    assert_eq!(image.read_file("/checked.txt"), "downloaded over http\n");
    let meta = |path: &str| fs::symlink_metadata(image.fs().join(path)).unwrap();
    assert_eq!(meta("downloads/plain.txt").mode() & 0o7777, 0o600, "BuildKit writes URLs 0600");
    let dated = meta("dated.txt");
    assert_eq!((dated.uid(), dated.gid(), dated.mode() & 0o7777), (1001, 1002, 0o640));
    assert_eq!(dated.mtime(), 1_700_000_000, "Last-Modified becomes the file's time");

    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = Build::new(&format!(
        "FROM {{{{base}}}}\nADD --checksum={wrong} {} /x\n",
        server.url("/files/plain.txt")
    ));
    let log = bad.fails(&[]);
    assert!(
        log.contains(&format!(
            "digest mismatch for {}: {sha} (expected: {wrong})",
            server.url("/files/plain.txt")
        )),
        "{log}"
    );
    let missing = Build::new(&format!("FROM {{{{base}}}}\nADD {} /x\n", server.url("/nope")));
    assert!(missing.fails(&[]).contains("404"));
}

#[test]
fn platform_flag_sets_the_image_platform_and_foreign_binaries_fail_clearly() {
    if !ready() {
        return;
    }
    let (host, foreign, machine) = match host_architecture() {
        "arm64" => ("arm64", "amd64", 62u16),
        other => (other, "arm64", 183u16),
    };
    // The host's own platform, said explicitly, is the default.
    let build =
        Build::new("FROM {{base}}\nARG TARGETPLATFORM\nRUN echo \"target=$TARGETPLATFORM\"\n");
    let image = build.image(&["--platform", &format!("linux/{host}")]);
    assert!(printed(&image.log, &format!("target=linux/{host}")));
    assert_eq!(image.config["architecture"], host);

    // Another platform, cross-built the usual way: the RUN stage is on the build platform,
    // sees the target in TARGET*, and the result is an image for the target — labelled so
    // even on a base image that exists for the host only, as BuildKit labels it.
    let build = Build::new(
        "FROM --platform=$BUILDPLATFORM {{base}} AS build\n\
         ARG TARGETPLATFORM TARGETARCH BUILDPLATFORM\n\
         RUN echo \"built on $BUILDPLATFORM for $TARGETPLATFORM ($TARGETARCH)\" > /out\n\
         FROM {{base}}\n\
         COPY --from=build /out /out\n",
    );
    let image = build.image(&["--platform", &format!("linux/{foreign}")]);
    assert_eq!(
        image.read_file("/out"),
        format!("built on linux/{host} for linux/{foreign} ({foreign})\n")
    );
    assert_eq!(
        (image.config["os"].as_str(), image.config["architecture"].as_str()),
        (Some("linux"), Some(foreign))
    );

    // A RUN whose shell is a binary for the other architecture (an ELF header is enough: the
    // kernel refuses it) fails with a message that says why, unless an emulator is registered.
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(64, 0);
    elf[16] = 2; // ET_EXEC
    elf[18..20].copy_from_slice(&machine.to_le_bytes());
    let build = Build::new("FROM scratch\nCOPY --chmod=755 sh /bin/sh\nRUN true\n");
    build.write_bytes("sh", &elf);
    let emulated = fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|entries| {
            entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("qemu-"))
        })
        .unwrap_or(false);
    if emulated {
        eprintln!("binfmt_misc has qemu handlers: not checking the foreign-binary error");
        return;
    }
    let log = build.fails(&["--platform", &format!("linux/{foreign}")]);
    assert!(log.contains("exec format error"), "{log}");
    assert!(log.contains(&format!("linux/{foreign}")) && log.contains("emulat"), "{log}");
}
