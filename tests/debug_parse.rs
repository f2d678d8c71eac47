//! `kiln debug parse`: dump lines, the conformance JSON, and errors naming file and line.

use assert_cmd::Command;

fn kiln() -> Command {
    Command::cargo_bin("kiln").expect("the kiln binary")
}

#[test]
fn prints_buildkit_dump_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM alpine\nCOPY --chown=1:1 a b\nONBUILD RUN [\"x\"]\n").unwrap();
    let output = kiln().args(["debug", "parse"]).arg(&file).output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "(from \"alpine\")\n(copy [\"--chown=1:1\"] \"a\" \"b\")\n(onbuild (run \"x\"))\n"
    );
}

#[test]
fn reads_stdin_and_prints_json() {
    let output = kiln()
        .args(["debug", "parse", "--json", "-"])
        .write_stdin("FROM a\nRUN <<EOF\nhi\nEOF\n")
        .output()
        .unwrap();
    assert!(output.status.success());
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["ok"], true);
    assert_eq!(value["instructions"][1]["heredocs"][0]["content"], "hi\n");
    assert_eq!(value["instructions"][1]["end_line"], 4);
}

#[test]
fn a_syntax_error_exits_1_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM a\nRUN <<EOF\nno end\n").unwrap();
    let output = kiln().args(["debug", "parse"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr, format!("error: {}: lines 2-3: unterminated heredoc\n", file.display()));

    let output = kiln().args(["debug", "parse", "--json"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["error"], "unterminated heredoc");
    assert_eq!(value["error_lines"], serde_json::json!([2, 3]));
}

#[test]
fn a_missing_file_is_an_error() {
    let output = kiln().args(["debug", "parse", "/nonexistent/Dockerfile"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr).unwrap().contains("reading /nonexistent/Dockerfile"));
}
