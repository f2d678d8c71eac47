//! Pushing OCI layouts into a registry with `skopeo copy`.

use std::path::Path;
use std::process::Command;

#[derive(Default)]
pub struct CopyOptions<'a> {
    /// `oci` or `v2s2`; `None` keeps the layout's format.
    pub format: Option<&'a str>,
    /// Copy every image of an index (`--all`).
    pub all: bool,
    pub creds: Option<(&'a str, &'a str)>,
}

/// Copies `oci:<layout>:<tag>` to `docker://<destination>` and returns the digest of the
/// manifest (or index) the registry now holds.
pub fn copy(layout: &Path, tag: &str, destination: &str, options: &CopyOptions) -> String {
    let temp = tempfile::tempdir().unwrap();
    let digest_file = temp.path().join("digest");
    let mut command = Command::new("skopeo");
    command
        .args(["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
        .arg(&digest_file)
        // skopeo keeps temporary blobs and its auth file under these
        .env("TMPDIR", temp.path())
        .env("XDG_RUNTIME_DIR", temp.path())
        .env("REGISTRY_AUTH_FILE", temp.path().join("auth.json"));
    if let Some(format) = options.format {
        command.args(["--format", format]);
    }
    if options.all {
        command.arg("--all");
    }
    if let Some((user, password)) = options.creds {
        command.arg("--dest-creds").arg(format!("{user}:{password}"));
    }
    command.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{destination}"));
    let output = command.output().expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo copy to {destination} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&digest_file).expect("skopeo wrote the digest file").trim().to_string()
}

fn skopeo(args: &[&str], temp: &Path) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(args)
        .env("TMPDIR", temp)
        .env("XDG_RUNTIME_DIR", temp)
        .env("REGISTRY_AUTH_FILE", temp.join("auth.json"))
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The exact manifest (or index) bytes the registry holds for `reference`
/// (`127.0.0.1:<port>/repo:tag` or `…@sha256:…`), read by skopeo rather than kiln: for
/// checking what kiln pushed.
pub fn inspect_raw(reference: &str, creds: Option<(&str, &str)>) -> Vec<u8> {
    let temp = tempfile::tempdir().unwrap();
    let creds = creds.map(|(user, password)| format!("--creds={user}:{password}"));
    let mut args = vec!["--insecure-policy", "inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = &creds {
        args.push(creds);
    }
    let target = format!("docker://{reference}");
    args.push(&target);
    skopeo(&args, temp.path())
}

/// Copies `reference` from the registry into the OCI layout `layout` under `tag`.
pub fn copy_to_layout(reference: &str, layout: &Path, tag: &str) {
    let temp = tempfile::tempdir().unwrap();
    let source = format!("docker://{reference}");
    let destination = format!("oci:{}:{tag}", layout.display());
    skopeo(
        &["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", &source, &destination],
        temp.path(),
    );
}
