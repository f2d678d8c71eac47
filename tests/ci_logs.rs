//! The log and exit-code shape CI systems rely on: without a terminal, the default progress
//! (`auto`) is the plain one; kiln's own lines carry no ANSI escapes and no carriage returns
//! (RUN output is passed through as the command wrote it, as BuildKit does); a failed build
//! exits 1 and its error — `Dockerfile:N: cause` and the lines at fault — comes last.

mod common;

use common::build::{Build, ready};
use std::process::Output;

/// Asserts that kiln wrote no escape sequence and no carriage return, on either stream.
#[track_caller]
fn assert_no_terminal_codes(output: &Output) {
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains('\x1b'), "an escape sequence on {name}: {text:?}");
        assert!(!text.contains('\r'), "a carriage return on {name}: {text:?}");
    }
}

/// Whether every line is a plain progress line (`#N ...`) or a build-level message.
fn plain_shape(log: &str) -> bool {
    log.lines().all(|line| {
        line.starts_with('#')
            || line.starts_with("image sha256:")
            || line.starts_with("warning: ")
            || line.starts_with("error: ")
    })
}

#[test]
fn without_a_terminal_auto_and_tty_progress_are_plain() {
    if !ready() {
        return;
    }
    let build =
        Build::new("FROM {{base}}\nRUN echo one && echo two >&2\nRUN printf 'no newline'\n");
    // The last, `--no-cache`, runs every RUN again: its log has their output.
    let mut log = String::new();
    for args in [&[][..], &["--progress", "auto"], &["--progress", "tty"], &["--no-cache"]] {
        let output = build.run_bare(args);
        assert!(output.status.success(), "{args:?}");
        assert_no_terminal_codes(&output);
        log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(plain_shape(&log), "{args:?} gives plain progress: {log}");
        assert!(log.lines().any(|line| line.starts_with("#1 [1/3] FROM ")), "{log}");
    }
    for line in ["one", "two", "no newline"] {
        assert!(common::build::printed(&log, line), "{line:?} in {log}");
    }
}

#[test]
fn a_failed_build_exits_1_with_the_dockerfile_error_last() {
    if !ready() {
        return;
    }
    let build = Build::new("FROM {{base}}\nRUN echo before\nRUN echo failing >&2 && exit 3\n");
    let output = build.run_bare(&["--progress", "plain"]);
    assert_eq!(output.status.code(), Some(1));
    assert_no_terminal_codes(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = log.lines().collect();
    let error = lines.iter().position(|line| line.starts_with("error: ")).expect("an error line");
    assert!(
        lines[error].ends_with(
            "/Dockerfile:3: process \"/bin/sh -c echo failing >&2 && exit 3\" did not complete \
             successfully: exit code: 3"
        ),
        "{}",
        lines[error]
    );
    // After it only the snippet: ` --> FILE:3:1`, `  |`, `3 | RUN ...`, `  | ^^^`.
    for line in &lines[error + 1..] {
        let trimmed = line.trim_start();
        assert!(
            trimmed.starts_with("-->") || trimmed.starts_with('|') || trimmed.starts_with("3 |"),
            "nothing but the snippet follows the error: {line:?} in\n{log}"
        );
    }
    assert!(lines[..error].iter().all(|line| line.starts_with('#')), "{log}");
    assert!(common::build::printed(&log, "failing"), "the command's output is shown: {log}");
}

#[test]
fn a_failed_push_exits_1_with_its_error_last() {
    if !ready() {
        return;
    }
    let build = Build::new("FROM {{base}}\nRUN echo hi > /f\n");
    let output = build.run_bare(&["--progress", "plain", "--push", "-t", "127.0.0.1:1/x:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert_no_terminal_codes(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    let last = log.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains("127.0.0.1:1"), "{log}");
    assert!(log.lines().filter(|line| line.starts_with("error: ")).count() == 1, "{log}");
}
