//! Finding the external programs end-to-end tests need, and the skip-or-fail rule.

use std::path::{Path, PathBuf};

/// Whether missing tools must fail tests (`KILN_E2E=1`, as `scripts/test` sets).
pub fn e2e_required() -> bool {
    std::env::var("KILN_E2E").is_ok_and(|v| v == "1")
}

/// The full path of a program: `name` itself when it contains a `/`, else found on `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// True when every tool is there. Otherwise prints which are missing and returns false,
/// or panics when `KILN_E2E=1`.
#[track_caller]
pub fn available(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| find(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let caller = std::panic::Location::caller();
    let message = format!(
        "{caller}: missing {} (Debian packages: docker-registry skopeo busybox-static apache2-utils openssl util-linux podman runc buildah umoci)",
        missing.join(", ")
    );
    if e2e_required() {
        panic!("KILN_E2E=1 but {message}");
    }
    // Straight to the stderr handle: libtest hides eprintln! output of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping end-to-end test: {message}");
    false
}

/// True when the test runs as root and every tool is there; otherwise says why and returns
/// false, or panics when `KILN_E2E=1`. `what` names the tests in the message.
#[track_caller]
pub fn root_and_available(what: &str, tools: &[&str]) -> bool {
    if !rustix::process::geteuid().is_root() {
        assert!(!e2e_required(), "{what} need root (KILN_E2E=1)");
        eprintln!("skipping: {what} need root");
        return false;
    }
    available(tools)
}

/// The tools a registry test needs.
pub const REGISTRY_TOOLS: &[&str] = &["docker-registry", "skopeo", "setpriv", "/bin/busybox"];

/// Runs `command`; its stdout when it succeeds, else the test fails with its stderr.
#[track_caller]
pub fn stdout_of(command: &mut std::process::Command) -> String {
    let output = command.output().unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
