//! `type=tar` and `type=local`: the flattened root filesystem, checked with GNU `tar -tvf`
//! (an independent reader of the stream) and against the tree on disk.

mod common;
mod export_support;

use export_support::{CREATED, Fixture, expected_paths, have_tool, is_root, run, tree};
use std::process::Command;

#[test]
fn gnu_tar_lists_the_rootfs_tar() {
    if !have_tool("tar") {
        return;
    }
    let fx = Fixture::new();
    fx.export("type=tar,dest=DIR/rootfs.tar");
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(fx.path("rootfs.tar")));
    eprintln!("tar -tvf:\n{listing}");
    let lines: Vec<&str> = listing.lines().collect();
    let names: Vec<String> = lines
        .iter()
        .map(|line| {
            let name = line.split_whitespace().nth(5).unwrap();
            name.trim_end_matches('/').to_owned()
        })
        .collect();
    assert_eq!(names, expected_paths(), "sorted entries, nothing deleted by a whiteout");
    let line =
        |name: &str| *lines.iter().find(|l| l.split_whitespace().nth(5) == Some(name)).unwrap();
    let fields = |name: &str| line(name).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    // modes and owners as the layers say.
    assert_eq!(fields("bin/tool")[..2], ["-rwxr-xr-x".to_string(), "0/0".to_string()]);
    assert_eq!(fields("tmp/")[0], "drwxrwxrwt");
    assert_eq!(fields("data/")[0], "drwxr-x---");
    assert_eq!(
        fields("data/new")[..3],
        ["-rw-r-----".to_string(), "0/0".to_string(), "8".to_string()]
    );
    if is_root() {
        assert_eq!(fields("home/app/.profile")[1], "1000/1000");
    }
    assert!(
        line("lib").starts_with("lrwxrwxrwx") && line("lib").ends_with("lib -> usr/lib"),
        "{}",
        line("lib")
    );
    assert!(
        line("etc/hostname.link").ends_with("etc/hostname.link link to etc/hostname"),
        "{}",
        line("etc/hostname.link")
    );
    // mtimes: those from the layers (2020) are kept; directories whose mtime changed while
    // unpacking (etc/ gained a link) are clamped to SOURCE_DATE_EPOCH (CREATED).
    assert_eq!(CREATED, 1_700_000_000);
    let (from_layers, epoch) = ("2020-09-13 12:26:40", "2023-11-14 22:13:20");
    for l in &lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let mtime = format!("{} {}", fields[3], fields[4]);
        if fields[0].starts_with('d') {
            assert!(mtime == from_layers || mtime == epoch, "{l}");
        } else {
            assert_eq!(mtime, from_layers, "{l}");
        }
    }
    assert!(line("etc/").contains(epoch), "{}", line("etc/"));
    let content =
        run(Command::new("tar").args(["-xOf"]).arg(fx.path("rootfs.tar")).arg("etc/hostname"));
    assert_eq!(content, "kiln-2\n");
}

#[test]
fn local_output_is_the_flattened_tree() {
    let fx = Fixture::new();
    fx.export("type=local,dest=DIR/out");
    let tree = tree(&fx.path("out"), is_root());
    assert_eq!(tree.keys().cloned().collect::<Vec<_>>(), expected_paths());
    assert_eq!(tree["etc/hostname"].content, b"kiln-2\n");
    assert_eq!(tree["data/new"].mode, 0o640);
    assert_eq!(tree["tmp"].mode, 0o1777);
    assert_eq!(tree["lib"].link.as_deref(), Some(std::path::Path::new("usr/lib")));
    assert_eq!(tree["etc/hostname.link"].same_as.as_deref(), Some("etc/hostname"));
    // The file mtimes come from the layer tars.
    assert_eq!(tree["bin/tool"].mtime, Some(1_600_000_000));

    // Exporting again into the same directory merges: files of the user stay.
    std::fs::write(fx.path("out/user-file"), b"mine").unwrap();
    fx.export("type=local,dest=DIR/out");
    assert_eq!(std::fs::read(fx.path("out/user-file")).unwrap(), b"mine");
    assert_eq!(std::fs::read(fx.path("out/etc/hostname")).unwrap(), b"kiln-2\n");
}
