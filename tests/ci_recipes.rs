//! docs/ci.md's recipes, run: `scripts/ci-recipes` executes their command lines as the
//! unprivileged `kilntest` user against a registry with TLS and a password, with the kiln
//! binary under test (see the script for what it checks).

mod common;

use std::process::Command;

#[test]
fn the_ci_recipes_run_as_an_unprivileged_user() {
    let tools = [
        "docker-registry",
        "htpasswd",
        "openssl",
        "skopeo",
        "setpriv",
        "newuidmap",
        "newgidmap",
        "/bin/busybox",
    ];
    if !common::tools::root_and_available("the CI recipes", &tools) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ci-recipes");
    let output = Command::new("bash")
        .arg(script)
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .output()
        .expect("run scripts/ci-recipes");
    let log = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scripts/ci-recipes failed ({}):\n{log}", output.status);
    eprintln!("{log}");
}
