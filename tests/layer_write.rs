//! Writing layers: determinism, the exact bytes of a tiny layer, PAX, hard links, excludes,
//! id translation, and the walk diff between two trees.

mod layer_support;

use kiln::layer::{
    Compression, DiffSource, Exclude, IdMap, IdRange, LayerError, WriteOptions, write_layer,
};
use layer_support::*;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Maps the current user to container root, so owners are 0 whoever runs the tests.
fn me_as_root() -> IdMap {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    IdMap::new(
        vec![IdRange { container: 0, host: uid, len: 1 }],
        vec![IdRange { container: 0, host: gid, len: 1 }],
    )
}

fn options(compression: Compression, epoch: Option<i64>) -> WriteOptions {
    WriteOptions {
        compression,
        source_date_epoch: epoch,
        id_map: me_as_root(),
        ..Default::default()
    }
}

fn tar_of(source: DiffSource<'_>, opts: &WriteOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = WriteOptions { compression: Compression::Uncompressed, ..opts.clone() };
    write_layer(source, &opts, &mut out).unwrap();
    out
}

fn tiny_tree(root: &Path) {
    make_dir(&root.join("d"), 0o755);
    write_file(&root.join("d/f"), b"hi", 0o644, 2000);
    symlink("d/f", root.join("l")).unwrap();
    set_mtime(&root.join("l"), 3000);
    set_mtime(&root.join("d"), 1000);
}

#[test]
fn tiny_layer_has_exact_header_fields() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_tree(tmp.path());
    let mut blob = Vec::new();
    let desc = write_layer(
        DiffSource::Directory(tmp.path()),
        &options(Compression::Uncompressed, None),
        &mut blob,
    )
    .unwrap();
    assert_eq!(blob.len(), 512 * 4 + 1024, "d/, d/f + one data block, l, end blocks");
    assert_eq!(desc.size, blob.len() as u64);
    assert_eq!(desc.media_type, "application/vnd.oci.image.layer.v1.tar");
    let hex = |b: &[u8]| {
        format!(
            "sha256:{}",
            Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    };
    assert_eq!(desc.diff_id, hex(&blob));
    assert_eq!(desc.digest, desc.diff_id);

    let field = |block: usize, range: std::ops::Range<usize>| &blob[block * 512..][range];
    let padded = |s: &[u8], len: usize| {
        let mut v = s.to_vec();
        v.resize(len, 0);
        v
    };
    // (block, name, mode, size, mtime, typeflag, linkname)
    type Row<'a> = (usize, &'a [u8], &'a [u8], &'a [u8], &'a [u8], u8, &'a [u8]);
    let expected: [Row<'_>; 3] = [
        (0, b"d/", b"0000755\0", b"00000000000\0", b"00000001750\0", b'5', b""),
        (1, b"d/f", b"0000644\0", b"00000000002\0", b"00000003720\0", b'0', b""),
        (3, b"l", b"0000777\0", b"00000000000\0", b"00000005670\0", b'2', b"d/f"),
    ];
    for (block, name, mode, size, mtime, kind, link) in expected {
        assert_eq!(field(block, 0..100), padded(name, 100), "name of block {block}");
        assert_eq!(field(block, 100..108), mode, "mode of {name:?}");
        assert_eq!(field(block, 108..116), b"0000000\0", "uid of {name:?}");
        assert_eq!(field(block, 116..124), b"0000000\0", "gid of {name:?}");
        assert_eq!(field(block, 124..136), size, "size of {name:?}");
        assert_eq!(field(block, 136..148), mtime, "mtime of {name:?}");
        assert_eq!(field(block, 156..157), [kind], "type of {name:?}");
        assert_eq!(field(block, 157..257), padded(link, 100), "link of {name:?}");
        assert_eq!(field(block, 257..265), b"ustar\x0000", "magic of {name:?}");
        assert_eq!(field(block, 265..329), [0u8; 64], "uname/gname of {name:?} empty");
        assert_eq!(field(block, 345..512), [0u8; 167], "prefix of {name:?} unused");
        let sum: u32 = (0..512)
            .map(|i| {
                if (148..156).contains(&i) {
                    u32::from(b' ')
                } else {
                    u32::from(blob[block * 512 + i])
                }
            })
            .sum();
        let stored = std::str::from_utf8(field(block, 148..155)).unwrap();
        assert_eq!(field(block, 155..156), [0u8], "checksum of {name:?} ends in NUL");
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum, "checksum of {name:?}");
    }
    assert_eq!(&blob[2 * 512..2 * 512 + 2], b"hi");
    assert!(blob[2 * 512 + 2..3 * 512].iter().all(|b| *b == 0));
    assert!(blob[4 * 512..].iter().all(|b| *b == 0));
    // Pinned: any change to the layout of layers changes every cache key and image digest.
    assert_eq!(
        desc.diff_id,
        "sha256:911e3121d7e454788c1fc7bb072264c633af4750105722736920ef633a2605d0"
    );
}

#[test]
fn epoch_clamps_later_mtimes_only() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_tree(tmp.path());
    let tar =
        tar_of(DiffSource::Directory(tmp.path()), &options(Compression::Uncompressed, Some(2500)));
    let items = read_tar(&tar);
    let times: Vec<(&str, u64)> = items.iter().map(|i| (i.name.as_str(), i.mtime)).collect();
    assert_eq!(times, [("d/", 1000), ("d/f", 2000), ("l", 2500)]);
}

/// A tree with every kind of entry kiln writes unprivileged, created in `order`.
fn rich_tree(root: &Path, order: &[usize], mtime: i64) {
    let long_dir = "x".repeat(90);
    let steps: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| {
            make_dir(&root.join("etc"), 0o755);
            write_file(&root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n", 0o644, mtime);
        }),
        Box::new(|| {
            make_dir(&root.join("bin"), 0o755);
            write_file(&root.join("bin/tool"), &vec![7u8; 70_000], 0o4755, mtime);
            fs::hard_link(root.join("bin/tool"), root.join("bin/tool-alias")).unwrap();
        }),
        Box::new(|| symlink("/etc/passwd", root.join("passwd-link")).unwrap()),
        Box::new(|| {
            let dir = root.join(&long_dir);
            make_dir(&dir, 0o700);
            write_file(&dir.join("y".repeat(40)), b"long", 0o600, mtime);
            symlink("z".repeat(150), dir.join("long-target")).unwrap();
        }),
        Box::new(|| {
            write_file(&root.join("attrs"), b"a", 0o640, mtime);
            rustix::fs::setxattr(
                root.join("attrs"),
                "user.b",
                b"2",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
            rustix::fs::setxattr(
                root.join("attrs"),
                "user.a",
                b"1",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }),
        Box::new(|| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                root.join("pipe"),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap()
        }),
    ];
    for &i in order {
        steps[i]();
    }
    for dir in ["etc", "bin", long_dir.as_str()] {
        set_mtime(&root.join(dir), mtime);
    }
    set_mtime(&root.join("passwd-link"), mtime);
    set_mtime(&root.join(&long_dir).join("long-target"), mtime);
    set_mtime(&root.join("pipe"), mtime);
}

#[test]
fn same_tree_gives_identical_blobs_whatever_the_creation_order_and_late_mtimes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rich_tree(a.path(), &[0, 1, 2, 3, 4, 5], 1_700_000_000);
    rich_tree(b.path(), &[5, 3, 1, 4, 0, 2], 1_800_000_000);
    let epoch = Some(1_600_000_000);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
        let opts = options(compression, epoch);
        let (mut blob_a, mut blob_b) = (Vec::new(), Vec::new());
        let da = write_layer(DiffSource::Directory(a.path()), &opts, &mut blob_a).unwrap();
        let db = write_layer(DiffSource::Directory(b.path()), &opts, &mut blob_b).unwrap();
        assert_eq!(da, db, "{compression:?}");
        assert!(blob_a == blob_b, "{compression:?} blobs differ");
        let again = write_layer(DiffSource::Directory(a.path()), &opts, &mut Vec::new()).unwrap();
        assert_eq!(again, da);
    }
    // Without the epoch, the different mtimes show.
    let opts = options(Compression::Uncompressed, None);
    let da = write_layer(DiffSource::Directory(a.path()), &opts, &mut Vec::new()).unwrap();
    let db = write_layer(DiffSource::Directory(b.path()), &opts, &mut Vec::new()).unwrap();
    assert_ne!(da.diff_id, db.diff_id);
}

#[test]
fn diff_id_is_the_same_for_every_compression() {
    let tmp = tempfile::tempdir().unwrap();
    rich_tree(tmp.path(), &[0, 1, 2, 3, 4, 5], 1_700_000_000);
    let mut ids = Vec::new();
    for (compression, magic, media) in [
        (Compression::Gzip, &[0x1f, 0x8b][..], "application/vnd.oci.image.layer.v1.tar+gzip"),
        (
            Compression::Zstd,
            &[0x28, 0xb5, 0x2f, 0xfd][..],
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        let mut blob = Vec::new();
        let d =
            write_layer(DiffSource::Directory(tmp.path()), &options(compression, None), &mut blob)
                .unwrap();
        assert!(blob.starts_with(magic));
        assert_eq!(d.media_type, media);
        assert_ne!(d.digest, d.diff_id);
        assert_eq!(d.size, blob.len() as u64);
        ids.push(d.diff_id);
    }
    let plain =
        tar_of(DiffSource::Directory(tmp.path()), &options(Compression::Uncompressed, None));
    let hex: String = Sha256::digest(&plain).iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(ids, [format!("sha256:{hex}"), format!("sha256:{hex}")]);
}

#[test]
fn rich_tree_entries_pax_and_hard_links() {
    let tmp = tempfile::tempdir().unwrap();
    rich_tree(tmp.path(), &[0, 1, 2, 3, 4, 5], 1_700_000_000);
    let items = read_tar(&tar_of(
        DiffSource::Directory(tmp.path()),
        &options(Compression::Uncompressed, None),
    ));
    let long_dir = "x".repeat(90);
    let long_file = format!("{long_dir}/{}", "y".repeat(40));
    let long_link = format!("{long_dir}/long-target");
    assert_eq!(
        names(&items),
        [
            "attrs",
            "bin/",
            "bin/tool",
            "bin/tool-alias",
            "etc/",
            "etc/passwd",
            "passwd-link",
            "pipe",
            &format!("{long_dir}/"),
            &long_link,
            &long_file,
        ]
    );
    let by = |n: &str| items.iter().find(|i| i.name == n).unwrap();
    assert_eq!(
        by("attrs").xattrs,
        [("user.a".into(), b"1".to_vec()), ("user.b".into(), b"2".to_vec())]
    );
    assert_eq!(
        (by("bin/tool").kind, by("bin/tool").mode, by("bin/tool").data.len()),
        ('0', 0o4755, 70_000)
    );
    assert_eq!(
        (by("bin/tool-alias").kind, by("bin/tool-alias").link.as_deref()),
        ('1', Some("bin/tool"))
    );
    assert!(by("bin/tool-alias").data.is_empty());
    assert_eq!(by("passwd-link").link.as_deref(), Some("/etc/passwd"));
    assert_eq!(by("pipe").kind, '6');
    assert_eq!(by(&long_file).data, b"long");
    assert_eq!(by(&long_link).link.as_deref(), Some("z".repeat(150).as_str()));
    assert!(items.iter().all(|i| i.uid == 0 && i.gid == 0));
}

#[test]
fn excluded_paths_sockets_and_overlay_xattrs_stay_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    make_dir(&root.join("etc"), 0o755);
    write_file(&root.join("etc/hosts"), b"", 0o644, 1);
    write_file(&root.join("etc/motd"), b"hi", 0o644, 1);
    fs::create_dir_all(root.join("run/secrets/deep")).unwrap();
    write_file(&root.join("run/keep"), b"", 0o644, 1);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    for name in ["user.overlay.origin", "user.keep"] {
        rustix::fs::setxattr(root.join("etc/motd"), name, b"x", rustix::fs::XattrFlags::empty())
            .unwrap();
    }
    let opts = WriteOptions {
        exclude: ["/etc/hosts", "/run/secrets"].into_iter().collect::<Exclude>(),
        ..options(Compression::Uncompressed, None)
    };
    let items = read_tar(&tar_of(DiffSource::Directory(root), &opts));
    assert_eq!(names(&items), ["etc/", "etc/motd", "run/", "run/keep"]);
    assert_eq!(
        items[1].xattrs,
        [("user.keep".to_string(), b"x".to_vec())],
        "overlay-private xattrs are never written"
    );
}

#[test]
fn host_owners_become_container_ids() {
    if !is_root() {
        skip("host_owners_become_container_ids", "needs root to chown");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_file(&root.join("app"), b"x", 0o644, 1);
    std::os::unix::fs::lchown(root.join("app"), Some(100_005), Some(100_007)).unwrap();
    let map = IdMap::parse("0 100000 65536\n", "0 100000 65536\n").unwrap();
    let opts = WriteOptions { id_map: map, ..options(Compression::Uncompressed, None) };
    let items = read_tar(&tar_of(DiffSource::Directory(root), &opts));
    assert_eq!((items[0].uid, items[0].gid), (5, 7));

    std::os::unix::fs::lchown(root.join("app"), Some(42), None).unwrap();
    let err = write_layer(DiffSource::Directory(root), &opts, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, LayerError::UnmappedId { kind: "uid", id: 42, .. }), "{err}");
    assert!(
        err.to_string().ends_with("app: host uid 42 has no container id in the id map"),
        "{err}"
    );
}

#[test]
fn large_ids_go_into_pax_records() {
    if !is_root() {
        skip("large_ids_go_into_pax_records", "needs root to chown");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    write_file(&tmp.path().join("big"), b"x", 0o644, 1);
    std::os::unix::fs::lchown(tmp.path().join("big"), Some(3_000_000), Some(3_000_001)).unwrap();
    let opts =
        WriteOptions { id_map: IdMap::identity(), ..options(Compression::Uncompressed, None) };
    let tar = tar_of(DiffSource::Directory(tmp.path()), &opts);
    let pax = String::from_utf8_lossy(&tar[512..1024]).into_owned();
    assert!(pax.starts_with("15 uid=3000000\n15 gid=3000001\n"), "{pax:?}");
    assert_eq!(tar[156], b'x');
}

/// Two trees: `lower` as a base image, `upper` after a build step changed it.
fn walk_pair(lower: &Path, upper: &Path) {
    for root in [lower, upper] {
        write_file(&root.join("a"), b"1", 0o644, 100);
        make_dir(&root.join("b"), 0o755);
        write_file(&root.join("b/x"), b"x", 0o644, 100);
        write_file(&root.join("b/y"), b"y", 0o644, 100);
        make_dir(&root.join("same"), 0o755);
        write_file(&root.join("same/keep"), b"k", 0o644, 100);
        write_file(&root.join("m"), b"m", 0o644, 100);
        symlink("t", root.join("e")).unwrap();
    }
    write_file(&lower.join("c"), b"c", 0o644, 100);
    make_dir(&lower.join("d"), 0o755);
    write_file(&lower.join("d/z"), b"z", 0o644, 100);

    write_file(&upper.join("a"), b"2", 0o644, 100); // same size and mtime, new bytes
    fs::remove_file(upper.join("b/x")).unwrap();
    write_file(&upper.join("b/new"), b"n", 0o644, 100);
    make_dir(&upper.join("c"), 0o755);
    write_file(&upper.join("c/inner"), b"i", 0o644, 100);
    write_file(&upper.join("d"), b"now a file", 0o644, 100);
    fs::remove_file(upper.join("e")).unwrap();
    symlink("u", upper.join("e")).unwrap();
    set_mtime(&upper.join("same/keep"), 999); // mtime alone is no change
    fs::set_permissions(upper.join("m"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    write_file(&upper.join("n"), b"added", 0o644, 100);
}

#[test]
fn walk_diff_writes_changes_whiteouts_and_changed_parents() {
    let (lower, upper) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    walk_pair(lower.path(), upper.path());
    let source = DiffSource::Walk { lower: lower.path(), upper: upper.path() };
    let items = read_tar(&tar_of(source, &options(Compression::Uncompressed, None)));
    assert_eq!(names(&items), ["a", "b/", "b/.wh.x", "b/new", "c/", "c/inner", "d", "e", "m", "n"]);
    let by = |n: &str| items.iter().find(|i| i.name == n).unwrap();
    assert_eq!(by("a").data, b"2");
    assert_eq!((by("b/.wh.x").kind, by("b/.wh.x").data.len()), ('0', 0));
    assert_eq!(by("d").data, b"now a file");
    assert_eq!(by("e").link.as_deref(), Some("u"));
    assert_eq!(by("m").mode, 0o600);
}

#[test]
fn walk_diff_of_identical_trees_is_empty() {
    let (lower, upper) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rich_tree(lower.path(), &[0, 1, 2, 3, 4, 5], 1_700_000_000);
    rich_tree(upper.path(), &[5, 4, 3, 2, 1, 0], 1_700_000_500);
    let source = DiffSource::Walk { lower: lower.path(), upper: upper.path() };
    let tar = tar_of(source, &options(Compression::Uncompressed, None));
    assert_eq!(tar, vec![0u8; 1024]);
}

#[test]
fn unreadable_source_names_the_path() {
    let err = write_layer(
        DiffSource::Directory(Path::new("/nonexistent/kiln-layer-src")),
        &WriteOptions::default(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read /nonexistent/kiln-layer-src: No such file or directory (os error 2)"
    );
}
