//! Layers from real overlayfs upper directories (root, and rootless with `userxattr`), and
//! overlay lower layers made by `ApplyMode::OverlayLower` mounted for real.
//!
//! Mounting needs root (or a user namespace with overlay support); without it these tests
//! print a skip message, unless KILN_E2E=1 makes them mandatory.

mod layer_support;

use kiln::layer::{
    ApplyMode, ApplyOptions, Compression, DiffSource, LayerError, WriteOptions, apply_layer,
    write_layer,
};
use layer_support::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn mount_overlay(lower: &str, upper: Option<(&Path, &Path)>, merged: &Path) -> Result<(), String> {
    let mut opts = format!("lowerdir={lower}");
    if let Some((upper, work)) = upper {
        opts.push_str(&format!(",upperdir={},workdir={}", upper.display(), work.display()));
    }
    run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(merged))
}

fn umount(path: &Path) {
    run(Command::new("umount").arg(path)).unwrap();
}

/// The base image every test starts from.
fn base(lower: &Path) {
    write_file(&lower.join("a"), b"a", 0o644, 10);
    make_dir(&lower.join("dir"), 0o755);
    write_file(&lower.join("dir/x"), b"x", 0o644, 10);
    write_file(&lower.join("dir/y"), b"y", 0o644, 10);
    make_dir(&lower.join("gone"), 0o755);
    write_file(&lower.join("gone/z"), b"z", 0o644, 10);
    write_file(&lower.join("keep"), b"keep", 0o644, 10);
    make_dir(&lower.join("replace-dir"), 0o755);
    write_file(&lower.join("replace-dir/old"), b"old", 0o644, 10);
}

/// What the RUN step does, as a shell script run inside the merged directory.
const STEP: &str = "rm a && rm dir/x && echo new > dir/new && rm -r gone \
    && rm -r replace-dir && mkdir replace-dir && echo fresh > replace-dir/fresh \
    && echo added > added && chmod 600 keep";

const EXPECTED: [&str; 10] = [
    ".wh.a",
    ".wh.gone",
    "added",
    "dir/",
    "dir/.wh.x",
    "dir/new",
    "keep",
    "replace-dir/",
    "replace-dir/.wh..wh..opq",
    "replace-dir/fresh",
];

fn layer_items(upper: &Path) -> Vec<TarItem> {
    let mut tar = Vec::new();
    let opts = WriteOptions { compression: Compression::Uncompressed, ..Default::default() };
    write_layer(DiffSource::OverlayUpper(upper), &opts, &mut tar).unwrap();
    read_tar(&tar)
}

#[test]
fn overlay_upper_becomes_oci_whiteouts_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for d in ["lower", "upper", "work", "merged", "layer", "work2", "check", "flat"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    base(&t.join("lower"));
    let lower = t.join("lower").display().to_string();
    if let Err(e) =
        mount_overlay(&lower, Some((&t.join("upper"), &t.join("work"))), &t.join("merged"))
    {
        skip(
            "overlay_upper_becomes_oci_whiteouts_and_round_trips",
            &format!("cannot mount overlay: {e}"),
        );
        return;
    }
    let step = run(Command::new("sh").args(["-c", STEP]).current_dir(t.join("merged")));
    let merged_view = describe(&t.join("merged"), false);
    umount(&t.join("merged"));
    step.unwrap();

    let items = layer_items(&t.join("upper"));
    assert_eq!(names(&items), EXPECTED);
    assert!(
        items.iter().all(|i| i.xattrs.iter().all(|(n, _)| !n.contains("overlay."))),
        "{items:?}"
    );
    let keep = items.iter().find(|i| i.name == "keep").unwrap();
    assert_eq!((keep.mode, keep.data.as_slice()), (0o600, &b"keep"[..]));

    // The layer flattened onto the base gives what the step saw.
    let mut blob = Vec::new();
    write_layer(DiffSource::OverlayUpper(&t.join("upper")), &WriteOptions::default(), &mut blob)
        .unwrap();
    apply_layer(&layer_of_dir(&t.join("lower"))[..], &t.join("flat"), &ApplyOptions::default())
        .unwrap();
    apply_layer(&blob[..], &t.join("flat"), &ApplyOptions::default()).unwrap();
    assert_eq!(describe(&t.join("flat"), false), merged_view);

    // The layer unpacked as an overlay lower layer, stacked on the base, shows the same.
    let opts =
        ApplyOptions { mode: ApplyMode::OverlayLower { userxattr: false }, ..Default::default() };
    apply_layer(&blob[..], &t.join("layer"), &opts).unwrap();
    let lowers = format!("{}:{}", t.join("layer").display(), lower);
    mount_overlay(&lowers, None, &t.join("check")).unwrap();
    let stacked = describe(&t.join("check"), false);
    umount(&t.join("check"));
    assert_eq!(stacked, merged_view);
}

fn layer_of_dir(dir: &Path) -> Vec<u8> {
    let mut blob = Vec::new();
    write_layer(DiffSource::Directory(dir), &WriteOptions::default(), &mut blob).unwrap();
    blob
}

#[test]
fn rootless_overlay_with_userxattr() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    base(&t.join("lower"));
    let script = format!(
        "mount -t overlay overlay -o userxattr,lowerdir={l},upperdir={u},workdir={w} {m} && cd {m} && {STEP}",
        l = t.join("lower").display(),
        u = t.join("upper").display(),
        w = t.join("work").display(),
        m = t.join("merged").display(),
    );
    let probe = run(Command::new("unshare").args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        "true",
    ]));
    if let Err(e) = probe {
        skip("rootless_overlay_with_userxattr", &format!("no user namespaces: {e}"));
        return;
    }
    if let Err(e) = run(Command::new("unshare").args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        &script,
    ])) {
        skip(
            "rootless_overlay_with_userxattr",
            &format!("overlay in a user namespace failed: {e}"),
        );
        return;
    }
    let mut buf = [0u8; 8];
    let opaque =
        rustix::fs::lgetxattr(t.join("upper/replace-dir"), "user.overlay.opaque", &mut buf[..]);
    assert_eq!(
        opaque.map(|n| buf[..n].to_vec()),
        Ok(b"y".to_vec()),
        "rootless overlay marks opaque dirs with user.overlay.opaque"
    );
    let items = layer_items(&t.join("upper"));
    assert_eq!(names(&items), EXPECTED);
    assert!(items.iter().all(|i| i.xattrs.is_empty()), "{items:?}");
}

#[test]
fn synthetic_upper_markers() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path();
    let set = |p: &str, name: &str, value: &[u8]| {
        rustix::fs::lsetxattr(up.join(p), name, value, rustix::fs::XattrFlags::empty()).unwrap()
    };
    write_file(&up.join("xattr-whiteout"), b"", 0o644, 5);
    set("xattr-whiteout", "user.overlay.whiteout", b"");
    make_dir(&up.join("opaque"), 0o755);
    set("opaque", "user.overlay.opaque", b"y");
    make_dir(&up.join("has-whiteouts"), 0o755);
    set("has-whiteouts", "user.overlay.opaque", b"x");
    write_file(&up.join("has-whiteouts/f"), b"f", 0o644, 5);
    if is_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            up.join("devwhiteout"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
    }
    let items = layer_items(up);
    let mut expected = vec![
        ".wh.xattr-whiteout",
        "has-whiteouts/",
        "has-whiteouts/f",
        "opaque/",
        "opaque/.wh..wh..opq",
    ];
    if is_root() {
        expected.insert(0, ".wh.devwhiteout");
    }
    assert_eq!(names(&items), expected);
    assert!(items.iter().all(|i| i.xattrs.is_empty()));

    write_file(&up.join("meta"), b"", 0o644, 5);
    set("meta", "user.overlay.metacopy", b"");
    let err = write_layer(DiffSource::OverlayUpper(up), &WriteOptions::default(), &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, LayerError::Overlay { .. }), "{err}");
    assert!(err.to_string().contains("meta cannot be written as a layer: metacopy file"), "{err}");
    fs::remove_file(up.join("meta")).unwrap();

    make_dir(&up.join("moved"), 0o755);
    set("moved", "user.overlay.redirect", b"/elsewhere");
    let err = write_layer(DiffSource::OverlayUpper(up), &WriteOptions::default(), &mut Vec::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("moved cannot be written as a layer: redirected directory"),
        "{err}"
    );
}
