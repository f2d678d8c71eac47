//! Applying layers: round trips through write and apply, whiteouts and opaque dirs in both
//! modes, ownership and modes, and clear errors for broken tars.

mod layer_support;

use kiln::layer::{
    ApplyMode, ApplyOptions, Compression, DiffSource, IdMap, IdRange, LayerError, WriteOptions,
    apply_layer, write_layer,
};
use layer_support::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use tar::EntryType;

fn layer_of(source: DiffSource<'_>) -> Vec<u8> {
    let mut blob = Vec::new();
    let opts = WriteOptions { compression: Compression::Gzip, ..Default::default() };
    write_layer(source, &opts, &mut blob).unwrap();
    blob
}

fn flatten() -> ApplyOptions {
    ApplyOptions::default()
}

/// Every kind of entry, with owners and devices when root.
fn full_tree(root: &Path) {
    make_dir(&root.join("bin"), 0o755);
    write_file(&root.join("bin/suid"), &vec![1u8; 100_000], 0o4755, 1_000_000);
    fs::hard_link(root.join("bin/suid"), root.join("bin/suid2")).unwrap();
    make_dir(&root.join("ro"), 0o555);
    make_dir(&root.join("tmp"), 0o1777);
    write_file(&root.join("attrs"), b"x", 0o600, 1_000_001);
    rustix::fs::setxattr(
        root.join("attrs"),
        "user.mime",
        b"text/plain",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    symlink("../etc/none", root.join("bin/dangling")).unwrap();
    set_mtime(&root.join("bin/dangling"), 1_000_002);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    set_mtime(&root.join("fifo"), 1_000_003);
    if is_root() {
        make_dir(&root.join("dev"), 0o755);
        let null = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("dev/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            null,
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("dev/loop9"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 9),
        )
        .unwrap();
        std::os::unix::fs::lchown(root.join("attrs"), Some(1000), Some(1001)).unwrap();
        std::os::unix::fs::lchown(root.join("bin/dangling"), Some(7), Some(8)).unwrap();
        std::os::unix::fs::lchown(root.join("ro"), Some(33), Some(33)).unwrap();
        // chown clears setuid: the mode must be applied after the owner.
        std::os::unix::fs::lchown(root.join("bin/suid"), Some(0), Some(50)).unwrap();
        fs::set_permissions(root.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        rustix::fs::setxattr(
            root.join("attrs"),
            "trusted.kiln",
            b"t",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        for p in ["dev/null", "dev/loop9", "dev"] {
            set_mtime(&root.join(p), 1_000_004);
        }
    }
    for dir in ["bin", "ro", "tmp"] {
        set_mtime(&root.join(dir), 1_000_005);
    }
}

#[test]
fn round_trip_reproduces_the_tree() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    full_tree(src.path());
    let stats =
        apply_layer(&layer_of(DiffSource::Directory(src.path()))[..], dst.path(), &flatten())
            .unwrap();
    assert_eq!(describe(dst.path(), true), describe(src.path(), true));
    assert_eq!((stats.files, stats.hardlinks, stats.symlinks, stats.fifos), (2, 1, 1, 1));
    assert_eq!(stats.bytes, 100_001);
    assert_eq!(stats.chowns_skipped + stats.xattrs_skipped + stats.devices_skipped, 0);
    if is_root() {
        assert_eq!((stats.directories, stats.devices), (4, 2));
        let md = fs::metadata(dst.path().join("bin/suid")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.gid()), (0o4755, 50));
    }
}

#[test]
fn flatten_walk_diff_onto_lower_gives_upper() {
    let (lower, upper, target) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for root in [lower.path(), upper.path()] {
        full_tree(root);
    }
    // What a build step does to its copy of lower.
    let up = upper.path();
    fs::remove_file(up.join("bin/suid2")).unwrap();
    fs::remove_dir(up.join("tmp")).unwrap();
    write_file(&up.join("tmp"), b"tmp is a file now", 0o644, 5);
    fs::remove_file(up.join("attrs")).unwrap();
    make_dir(&up.join("attrs"), 0o750);
    write_file(&up.join("attrs/inside"), b"i", 0o644, 6);
    fs::set_permissions(up.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    write_file(&up.join("ro/new"), b"new", 0o644, 7);
    fs::set_permissions(up.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(up.join("bin/suid"), fs::Permissions::from_mode(0o755)).unwrap();

    apply_layer(&layer_of(DiffSource::Directory(lower.path()))[..], target.path(), &flatten())
        .unwrap();
    let diff = layer_of(DiffSource::Walk { lower: lower.path(), upper: up });
    let stats = apply_layer(&diff[..], target.path(), &flatten()).unwrap();
    assert_eq!(stats.whiteouts, 1, "{stats:?}");
    assert_eq!(describe(target.path(), false), describe(up, false));
}

#[test]
fn opaque_dir_keeps_only_this_layers_entries_in_flatten() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    make_dir(&t.join("d"), 0o755);
    write_file(&t.join("d/old"), b"lower", 0o644, 1);
    make_dir(&t.join("d/olddir"), 0o755);
    write_file(&t.join("d/olddir/deep"), b"lower", 0o644, 1);
    write_file(&t.join("keep"), b"lower", 0o644, 1);
    write_file(&t.join("gone"), b"lower", 0o644, 1);
    // "-early" sorts before ".wh..wh..opq" and must survive it; "late" comes after.
    let tar = raw_tar(&[
        (b"d/", EntryType::Directory, b"", b""),
        (b"d/-early", EntryType::Regular, b"", b"e"),
        (b"d/.wh..wh..opq", EntryType::Regular, b"", b""),
        (b"d/late", EntryType::Regular, b"", b"l"),
        (b".wh.gone", EntryType::Regular, b"", b""),
        (b".wh.never-existed", EntryType::Regular, b"", b""),
    ]);
    let stats = apply_layer(&tar[..], t, &flatten()).unwrap();
    assert_eq!((stats.opaque_dirs, stats.whiteouts), (1, 2));
    let listing: Vec<String> = describe(t, false).keys().cloned().collect();
    assert_eq!(listing, ["d", "d/-early", "d/late", "keep"]);
}

#[test]
fn overlay_lower_mode_keeps_whiteouts_for_overlayfs() {
    for userxattr in [false, true] {
        if !userxattr && !is_root() {
            skip("overlay_lower_mode (trusted xattr)", "trusted.* xattrs need CAP_SYS_ADMIN");
            continue;
        }
        let target = tempfile::tempdir().unwrap();
        let tar = raw_tar(&[
            (b"etc/", EntryType::Directory, b"", b""),
            (b"etc/.wh.shadow", EntryType::Regular, b"", b""),
            (b"opaque/", EntryType::Directory, b"", b""),
            (b"opaque/.wh..wh..opq", EntryType::Regular, b"", b""),
            (b"opaque/x", EntryType::Regular, b"", b"x"),
        ]);
        let stats = apply_layer(
            &tar[..],
            target.path(),
            &ApplyOptions { mode: ApplyMode::OverlayLower { userxattr }, ..Default::default() },
        )
        .unwrap();
        assert_eq!((stats.whiteouts, stats.opaque_dirs), (1, 1));
        let desc = describe(target.path(), false);
        assert!(desc["etc/shadow"].starts_with("char 0:0 "), "{desc:?}");
        let xattr = if userxattr { "user.overlay.opaque" } else { "trusted.overlay.opaque" };
        assert!(desc["opaque"].ends_with(&format!(" xattr:{xattr}=\"y\"")), "{desc:?}");
        assert_eq!(desc["opaque/x"], format!("file \"x\" mode=644 owner={}", me()));
    }
}

#[test]
fn overlay_private_xattrs_in_a_tar_are_never_applied() {
    let target = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    let body = [
        pax_record("SCHILY.xattr.user.overlay.opaque", "y"),
        pax_record("SCHILY.xattr.user.ok", "1"),
    ]
    .concat();
    tar.extend_from_slice(&raw_header(
        b"PaxHeader",
        EntryType::XHeader,
        b"",
        body.len() as u64,
        0o644,
    ));
    tar.extend_from_slice(&body);
    tar.extend(std::iter::repeat_n(0u8, (512 - body.len() % 512) % 512));
    tar.extend_from_slice(&raw_tar(&[(b"d/", EntryType::Directory, b"", b"")]));
    apply_layer(
        &tar[..],
        target.path(),
        &ApplyOptions { mode: ApplyMode::OverlayLower { userxattr: true }, ..Default::default() },
    )
    .unwrap();
    let desc = describe(target.path(), false);
    assert_eq!(desc["d"], format!("dir mode=755 owner={} xattr:user.ok=\"1\"", me()));
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

#[test]
fn entries_replace_what_is_there() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    make_dir(&t.join("was-dir"), 0o755);
    write_file(&t.join("was-dir/child"), b"c", 0o644, 1);
    write_file(&t.join("was-file"), b"f", 0o644, 1);
    symlink("/etc", t.join("was-link")).unwrap();
    let tar = raw_tar(&[
        (b"was-dir", EntryType::Regular, b"", b"now file"),
        (b"was-file/", EntryType::Directory, b"", b""),
        (b"was-link/", EntryType::Directory, b"", b""),
        (b"was-link/inside", EntryType::Regular, b"", b"in"),
    ]);
    apply_layer(&tar[..], t, &flatten()).unwrap();
    let desc = describe(t, false);
    let listing: Vec<&str> = desc.keys().map(String::as_str).collect();
    assert_eq!(listing, ["was-dir", "was-file", "was-link", "was-link/inside"]);
    assert!(desc["was-dir"].starts_with("file \"now file\""));
    assert!(desc["was-link"].starts_with("dir "));
}

#[test]
fn read_only_dirs_get_their_mode_after_their_contents() {
    let target = tempfile::tempdir().unwrap();
    let mut tar = raw_header(b"ro/", EntryType::Directory, b"", 0, 0o555).to_vec();
    tar.extend_from_slice(&raw_tar(&[(b"ro/f", EntryType::Regular, b"", b"data")]));
    apply_layer(&tar[..], target.path(), &flatten()).unwrap();
    let md = fs::metadata(target.path().join("ro")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.mtime()), (0o555, 1_000_000));
    assert_eq!(fs::read(target.path().join("ro/f")).unwrap(), b"data");
    let made = fs::metadata(target.path()).unwrap();
    assert!(made.is_dir());
}

#[test]
fn missing_parents_are_made_0755() {
    let target = tempfile::tempdir().unwrap();
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let result = apply_layer(
        &raw_tar(&[(b"a/b/c", EntryType::Regular, b"", b"c")])[..],
        target.path(),
        &flatten(),
    );
    rustix::process::umask(old);
    result.unwrap();
    for dir in ["a", "a/b"] {
        let md = fs::metadata(target.path().join(dir)).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o755, "{dir}");
    }
}

#[test]
fn unmapped_owners_are_skipped_and_counted() {
    let target = tempfile::tempdir().unwrap();
    let me = rustix::process::geteuid().as_raw();
    let map = IdMap::new(
        vec![IdRange { container: 0, host: me, len: 1 }],
        vec![IdRange { container: 0, host: rustix::process::getegid().as_raw(), len: 1 }],
    );
    let mut tar = Vec::new();
    let mut h = tar::Header::new_ustar();
    h.set_path("owned").unwrap();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(1234);
    h.set_gid(0);
    h.set_size(0);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&raw_tar(&[(b"root-owned", EntryType::Regular, b"", b"")]));
    let stats =
        apply_layer(&tar[..], target.path(), &ApplyOptions { id_map: map, ..Default::default() })
            .unwrap();
    assert_eq!(stats.chowns_skipped, 1);
    assert_eq!(fs::metadata(target.path().join("owned")).unwrap().uid(), me);
    assert_eq!(fs::metadata(target.path().join("root-owned")).unwrap().uid(), me);
}

#[test]
fn broken_tars_give_errors_naming_the_entry() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let err =
        apply_layer(&raw_tar(&[(b"link", EntryType::Link, b"missing", b"")])[..], t, &flatten())
            .unwrap_err();
    assert!(matches!(&err, LayerError::Apply { path, op: "link", .. } if path == "link"), "{err}");
    assert_eq!(
        err.to_string(),
        "cannot apply tar entry \"link\": link: No such file or directory (os error 2)"
    );

    let err =
        apply_layer(&raw_tar(&[(b"sock", EntryType::new(b'Z'), b"", b"")])[..], t, &flatten())
            .unwrap_err();
    assert_eq!(err.to_string(), "tar entry \"sock\" has unsupported type 'Z'");

    let err =
        apply_layer(&raw_tar(&[(b"x/.wh..", EntryType::Regular, b"", b"")])[..], t, &flatten())
            .unwrap_err();
    assert_eq!(err.to_string(), "malformed tar entry \"x/.wh..\": whiteout names no entry");

    // A file entry cut short.
    let mut cut = raw_tar(&[(b"big", EntryType::Regular, b"", &[9u8; 2000])]);
    cut.truncate(1024);
    let err = apply_layer(&cut[..], t, &flatten()).unwrap_err();
    assert!(err.to_string().starts_with("cannot apply tar entry \"big\": read content:"), "{err}");

    // Garbage that is not a tar.
    let mut junk = vec![0x55u8; 4096];
    junk[0] = b'j';
    let err = apply_layer(&junk[..], t, &flatten()).unwrap_err();
    assert!(matches!(err, LayerError::ReadStream(_)), "{err}");

    let err = apply_layer(&[0x1f, 0x8b, 8, 0, 1, 2][..], t, &flatten()).unwrap_err();
    assert!(matches!(err, LayerError::ReadStream(_)), "{err}");

    let err = apply_layer(&b""[..], Path::new("/nonexistent/kiln-root"), &flatten()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot open target root /nonexistent/kiln-root: No such file or directory (os error 2)"
    );
}

#[test]
fn hostile_noise_never_panics() {
    // Deterministic pseudo-random mutations of a valid layer: errors are fine, panics are not.
    let src = tempfile::tempdir().unwrap();
    full_tree(src.path());
    let mut plain = Vec::new();
    write_layer(
        DiffSource::Directory(src.path()),
        &WriteOptions { compression: Compression::Uncompressed, ..Default::default() },
        &mut plain,
    )
    .unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..200 {
        let mut bytes = plain.clone();
        for _ in 0..(1 + round % 8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bytes.len();
            bytes[at] = (seed >> 32) as u8;
        }
        let target = tempfile::tempdir().unwrap();
        let _ = apply_layer(&bytes[..], target.path(), &flatten());
    }
}
