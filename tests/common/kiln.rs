//! Running the kiln binary the way a user does.

use std::path::Path;
use std::process::{Command, Output};

pub fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

/// `kiln --root ROOT build --progress plain ARGS CONTEXT`, as it ended.
pub fn build(root: &Path, context: &Path, args: &[&str]) -> Output {
    kiln()
        .arg("--root")
        .arg(root)
        .arg("build")
        .args(["--progress", "plain"])
        .args(args)
        .arg(context)
        .output()
        .expect("run kiln")
}

/// [`build`] that must succeed; its stdout.
#[track_caller]
pub fn build_ok(root: &Path, context: &Path, args: &[&str]) -> String {
    let output = build(root, context, args);
    assert!(
        output.status.success(),
        "kiln build {args:?} {} failed ({}):\n{}",
        context.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
