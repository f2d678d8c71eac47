//! `RUN --mount` end to end, for the mounts that need more than one build or something
//! outside the Dockerfile: cache mounts across builds, secrets from files and the
//! environment, and a real `ssh-agent` forwarded with `--ssh` (bind and tmpfs mounts are
//! cases in `testdata/build`).

mod common;

use common::build::{Build, printed, ready};
use common::tools;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[test]
fn cache_mounts_persist_by_id_and_start_from_their_source() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM {{base}} AS seed\n\
         RUN mkdir /src && echo seeded > /src/start.txt\n\
         FROM {{base}}\n\
         ARG N\n\
         RUN --mount=type=cache,target=/c,id=shared,uid=1001,gid=1002,mode=0750 \
             echo \"owner: $(stat -c '%u:%g %a' /c)\" && echo $N >> /c/log && echo \"log: $(cat /c/log | tr '\\n' ' ')\"\n\
         RUN --mount=type=cache,target=/same,id=shared echo \"same id: $(cat /same/log | tr '\\n' ' ')\"\n\
         RUN --mount=type=cache,target=/by-target echo $N >> /by-target/log && echo \"by target: $(cat /by-target/log | tr '\\n' ' ')\"\n\
         RUN --mount=type=cache,target=/seeded,from=seed,source=/src \
             echo $N >> /seeded/runs && echo \"seeded: $(cat /seeded/start.txt) runs: $(cat /seeded/runs | tr '\\n' ' ')\"\n\
         RUN --mount=type=cache,target=/ro,id=shared,readonly touch /ro/x 2>/dev/null || echo \"read-only cache\"\n\
         RUN --mount=type=cache,target=/locked,id=locked,sharing=locked --mount=type=cache,target=/private,sharing=private \
             touch /locked/ok /private/ok && echo \"locked and private\"\n",
    );
    let first = build.image(&["--build-arg", "N=1"]);
    for line in [
        "owner: 1001:1002 750",
        "log: 1 ",
        "same id: 1 ",
        "by target: 1 ",
        "seeded: seeded runs: 1 ",
        "read-only cache",
        "locked and private",
    ] {
        assert!(printed(&first.log, line), "{line:?} not printed:\n{}", first.log);
    }
    let second = build.image(&["--build-arg", "N=2"]);
    for line in ["log: 1 2 ", "same id: 1 2 ", "by target: 1 2 ", "seeded: seeded runs: 1 2 "] {
        assert!(printed(&second.log, line), "{line:?} not printed:\n{}", second.log);
    }
    for path in ["/c", "/same", "/by-target", "/seeded", "/ro", "/locked", "/private"] {
        assert!(!second.exists(path), "{path}: cache mounts leave nothing in the image");
    }
}

#[test]
fn secrets_from_files_and_the_environment() {
    if !ready() {
        return;
    }
    let build = Build::new(
        "FROM {{base}}\n\
         RUN --mount=type=secret,id=file-secret echo \"default path: $(stat -c '%u:%g %a' /run/secrets/file-secret) $(cat /run/secrets/file-secret | wc -c)\"\n\
         RUN --mount=type=secret,id=file-secret,target=/etc/app/key,uid=1001,gid=1500,mode=0440 \
             echo \"custom: $(stat -c '%u:%g %a' /etc/app/key)\"\n\
         RUN --mount=type=secret,id=env-secret,env=TOKEN \
             echo \"env length: ${#TOKEN} file: $(test -e /run/secrets/env-secret && echo yes || echo no)\"\n\
         RUN --mount=type=secret,id=env-secret,env=TOKEN,target=/tok echo \"both: ${#TOKEN} $(cat /tok | wc -c)\"\n\
         RUN --mount=type=secret,id=absent echo \"optional: $(test -e /run/secrets/absent && echo yes || echo no)\"\n",
    );
    let scratch = tempfile::tempdir().unwrap();
    let secret_file = scratch.path().join("secret-file");
    fs::write(&secret_file, "file-secret-value").unwrap();
    let out = scratch.path().join("out");
    let file_spec = format!("id=file-secret,src={}", secret_file.display());
    let output = build
        .command(&[
            "--secret",
            &file_spec,
            "--secret",
            "id=env-secret,env=KILN_TEST_SECRET",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ])
        .env("KILN_TEST_SECRET", "env-secret-value!")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    eprintln!("{log}");
    let leaked = Command::new("grep").args(["-rlaF", "secret-value"]).arg(&out).output().unwrap();
    assert!(output.status.success());
    for line in [
        "default path: 0:0 400 17",
        "custom: 1001:1500 440",
        "env length: 17 file: no",
        "both: 17 17",
        "optional: no",
    ] {
        assert!(printed(&log, line), "{line:?} not printed");
    }
    assert!(leaked.stdout.is_empty(), "a secret value reached the image");

    let required =
        Build::new("FROM {{base}}\nRUN --mount=type=secret,id=needed,required=true true\n");
    assert!(required.fails(&[]).contains("secret needed not found"));
}

/// A running `ssh-agent` holding one new key, stopped on drop.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(keygen.success());
        let socket = dir.path().join("agent.sock");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "ssh-agent", "-D", "-a"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up =
            common::processes::wait_until(std::time::Duration::from_secs(10), || socket.exists());
        assert!(up, "ssh-agent did not create its socket");
        let add = Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &socket).output().unwrap();
        assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
        Agent { child, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the host's `ssh-add` and the libraries it loads into `dir`; returns the dynamic
/// loader's file name (the command is `/tools/LOADER --library-path /tools /tools/ssh-add`).
fn copy_ssh_add(dir: &Path) -> String {
    fs::create_dir_all(dir).unwrap();
    let ssh_add = tools::find("ssh-add").unwrap();
    let ldd = Command::new("ldd").arg(&ssh_add).output().unwrap();
    let mut loader = None;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let library = match words.as_slice() {
            [_, "=>", path, ..] if path.starts_with('/') => Path::new(path),
            [path, ..] if path.starts_with('/') => {
                loader = Some(Path::new(path).file_name().unwrap().to_string_lossy().into_owned());
                Path::new(path)
            }
            _ => continue,
        };
        fs::copy(library, dir.join(library.file_name().unwrap())).unwrap();
    }
    fs::copy(&ssh_add, dir.join("ssh-add")).unwrap();
    loader.expect("ssh-add is dynamically linked")
}

#[test]
fn ssh_agent_is_forwarded_with_the_socket_the_mount_asks_for() {
    if !ready() || !tools::available(&["ssh-agent", "ssh-add", "ssh-keygen", "ldd"]) {
        return;
    }
    let agent = Agent::start();
    let build = Build::empty();
    let loader = copy_ssh_add(&build.path("tools"));
    build.write(
        "Dockerfile",
        &common::build::with_base(&format!(
            "FROM {{{{base}}}}\n\
             RUN --mount=type=ssh --mount=type=bind,source=tools,target=/tools \
                 echo \"sock: $SSH_AUTH_SOCK $(stat -c '%u:%g %a %F' $SSH_AUTH_SOCK)\" && \
                 /tools/{loader} --library-path /tools /tools/ssh-add -l\n\
             RUN --mount=type=ssh,target=/agent.sock,uid=1001,gid=1500,mode=0660 \
                 echo \"custom: $SSH_AUTH_SOCK $(stat -c '%u:%g %a' /agent.sock)\"\n\
             RUN --mount=type=ssh,id=unforwarded echo \"optional: $(test -S $SSH_AUTH_SOCK && echo yes || echo no)\"\n"
        )),
    );
    let spec = format!("default={}", agent.socket().display());
    let log = build.ok(&["--ssh", &spec, "-o", "type=tar,dest=/dev/null"]);
    assert!(printed(&log, "sock: /run/buildkit/ssh_agent.0 0:0 600 socket"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("kiln-test-key (ED25519)")),
        "ssh-add -l inside the build lists the agent's key"
    );
    assert!(printed(&log, "custom: /agent.sock 1001:1500 660"));
    assert!(printed(&log, "optional: no"));

    let required = Build::new("FROM {{base}}\nRUN --mount=type=ssh,required=true true\n");
    assert!(required.fails(&[]).contains("no SSH key \"default\" forwarded"));
}
