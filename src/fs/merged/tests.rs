use super::*;
use crate::fs::testutil::*;
use std::io::Read;

struct Stack {
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
}

/// `n` empty layer directories, top first.
fn stack(n: usize) -> Stack {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..n).map(|i| tmp.path().join(format!("l{i}"))).collect();
    for dir in &dirs {
        mkdir(dir);
    }
    Stack { _tmp: tmp, dirs }
}

impl Stack {
    fn root(&self) -> MergedRoot {
        MergedRoot::new(self.dirs.clone()).unwrap()
    }
}

fn names(root: &MergedRoot, path: &str) -> Vec<String> {
    root.read_dir(path)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .collect()
}

fn read(root: &MergedRoot, path: &str) -> String {
    let mut text = String::new();
    root.open_file(path).unwrap().read_to_string(&mut text).unwrap();
    text
}

#[test]
fn higher_layers_win_and_directories_merge() {
    let s = stack(3);
    write(&s.dirs[2].join("etc/os-release"), "bottom");
    write(&s.dirs[2].join("etc/hosts"), "hosts");
    write(&s.dirs[1].join("etc/os-release"), "middle");
    write(&s.dirs[0].join("etc/motd"), "top");
    let root = s.root();
    assert_eq!(names(&root, "/etc"), ["hosts", "motd", "os-release"]);
    assert_eq!(read(&root, "/etc/os-release"), "middle");
    let entry = root.lookup("/etc/os-release", false).unwrap().unwrap();
    assert_eq!(entry.host_path().unwrap(), s.dirs[1].join("etc/os-release"));
    assert_eq!(entry.kind(), FileKind::File);
    // The directory's metadata is the top one's.
    let etc = root.lookup("/etc", false).unwrap().unwrap();
    assert_eq!(etc.host_path().unwrap(), s.dirs[0].join("etc"));
}

#[test]
fn a_non_directory_hides_lower_directories() {
    let s = stack(3);
    write(&s.dirs[2].join("x/deep"), "bottom");
    write(&s.dirs[1].join("x"), "a file now");
    mkdir(&s.dirs[0].join("x"));
    write(&s.dirs[0].join("x/new"), "top");
    let root = s.root();
    // The top dir does not merge through the middle file into the bottom dir.
    assert_eq!(names(&root, "/x"), ["new"]);
    assert!(root.lookup("/x/deep", false).unwrap().is_none());
}

#[test]
fn whiteouts_hide_lower_entries() {
    if !have_root("whiteouts_hide_lower_entries") {
        return;
    }
    let s = stack(2);
    write(&s.dirs[1].join("var/cache/apt/pkg"), "x");
    write(&s.dirs[1].join("var/log/syslog"), "x");
    write(&s.dirs[1].join("var/tmp/a"), "x");
    write(&s.dirs[1].join("var/keep"), "x");
    mkdir(&s.dirs[0].join("var"));
    // Kind 1: a character device 0/0.
    whiteout(&s.dirs[0].join("var/cache"));
    // Kind 2: an empty file with the whiteout xattr, trusted and user namespaces.
    write(&s.dirs[0].join("var/log"), "");
    set_xattr(&s.dirs[0].join("var/log"), "trusted.overlay.whiteout", b"");
    write(&s.dirs[0].join("var/tmp"), "");
    set_xattr(&s.dirs[0].join("var/tmp"), "user.overlay.whiteout", b"");
    let root = s.root();
    assert_eq!(names(&root, "/var"), ["keep"]);
    assert!(root.lookup("/var/cache/apt/pkg", false).unwrap().is_none());
    assert!(root.lookup("/var/log", false).unwrap().is_none());
    // An empty file without the xattr is just an empty file.
    write(&s.dirs[0].join("var/empty"), "");
    assert_eq!(root.lookup("/var/empty", false).unwrap().unwrap().kind(), FileKind::File);
}

#[test]
fn opaque_directories_hide_everything_below() {
    if !have_root("opaque_directories_hide_everything_below") {
        return;
    }
    let s = stack(3);
    for layer in [1, 2] {
        write(&s.dirs[layer].join(format!("t/from{layer}")), "x");
        write(&s.dirs[layer].join(format!("u/from{layer}")), "x");
    }
    write(&s.dirs[0].join("t/top"), "x");
    write(&s.dirs[0].join("u/top"), "x");
    set_xattr(&s.dirs[0].join("t"), "trusted.overlay.opaque", b"y");
    // Opaque in the middle: the top merges with the middle only.
    set_xattr(&s.dirs[1].join("u"), "user.overlay.opaque", b"y");
    let root = s.root();
    assert_eq!(names(&root, "/t"), ["top"]);
    assert_eq!(names(&root, "/u"), ["from1", "top"]);
    // `opaque=x` (xattr whiteouts inside) is not opaque.
    let s2 = stack(2);
    write(&s2.dirs[1].join("v/low"), "x");
    write(&s2.dirs[0].join("v/high"), "x");
    set_xattr(&s2.dirs[0].join("v"), "trusted.overlay.opaque", b"x");
    assert_eq!(names(&s2.root(), "/v"), ["high", "low"]);
}

#[test]
fn plain_directories_have_no_overlay_markers() {
    if !have_root("plain_directories_have_no_overlay_markers") {
        return;
    }
    let s = stack(1);
    whiteout(&s.dirs[0].join("dev0"));
    mkdir(&s.dirs[0].join("d"));
    write(&s.dirs[0].join("d/f"), "x");
    set_xattr(&s.dirs[0].join("d"), "trusted.overlay.opaque", b"y");
    let root = MergedRoot::plain(&s.dirs[0]).unwrap();
    assert_eq!(root.lookup("/dev0", false).unwrap().unwrap().kind(), FileKind::CharDevice);
    assert_eq!(names(&root, "/d"), ["f"]);
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let s = stack(2);
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret"), "host secret");
    write(&s.dirs[1].join("usr/lib/libc.so"), "libc");
    symlink("usr/lib", &s.dirs[1].join("lib"));
    symlink("/usr/lib/libc.so", &s.dirs[0].join("abs"));
    symlink("../../../../../../usr/lib/libc.so", &s.dirs[0].join("climb"));
    symlink(outside.path().join("secret").to_str().unwrap(), &s.dirs[0].join("host"));
    symlink("../lib", &s.dirs[0].join("usr/rel"));
    let root = s.root();
    assert_eq!(read(&root, "/lib/libc.so"), "libc");
    assert_eq!(read(&root, "/abs"), "libc");
    assert_eq!(read(&root, "/climb"), "libc");
    assert_eq!(read(&root, "/usr/rel/libc.so"), "libc");
    assert_eq!(
        root.resolve("/usr/rel/libc.so", true).unwrap().path.to_string(),
        "/usr/lib/libc.so"
    );
    // A symlink to a host path is resolved inside the root, where there is nothing.
    let host = root.resolve("/host", true).unwrap();
    assert!(host.entry.is_none());
    assert_eq!(host.path, RootPath::lexical(outside.path().join("secret").as_os_str()));
    // Not following the final component gives the link itself.
    let link = root.lookup("/lib", false).unwrap().unwrap();
    assert_eq!(link.kind(), FileKind::Symlink);
    assert_eq!(root.read_link("/lib").unwrap(), "usr/lib");
    // `..` in the looked-up path is physical: it leaves the directory the link led to.
    assert_eq!(root.resolve("/lib/../x", false).unwrap().path.to_string(), "/usr/x");
    assert_eq!(
        root.resolve("/../../lib/libc.so", true).unwrap().path.to_string(),
        "/usr/lib/libc.so"
    );
}

#[test]
fn missing_components_make_the_rest_lexical() {
    let s = stack(1);
    write(&s.dirs[0].join("file"), "x");
    symlink("/nowhere/sub", &s.dirs[0].join("dangling"));
    let root = s.root();
    let resolved = root.resolve("/a/b/../c", true).unwrap();
    assert_eq!(resolved.path.to_string(), "/a/c");
    assert!(resolved.entry.is_none());
    let resolved = root.resolve("/dangling/x", true).unwrap();
    assert_eq!(resolved.path.to_string(), "/nowhere/sub/x");
    assert!(matches!(root.resolve("/file/x", true), Err(FsError::NotADirectory { .. })));
}

#[test]
fn symlink_loops_are_errors() {
    let s = stack(1);
    symlink("b", &s.dirs[0].join("a"));
    symlink("a", &s.dirs[0].join("b"));
    symlink("self/x", &s.dirs[0].join("self"));
    // A chain of exactly MAX_SYMLINKS links resolves; one more does not.
    for i in 0..MAX_SYMLINKS {
        symlink(&format!("c{}", i + 1), &s.dirs[0].join(format!("c{i}")));
    }
    write(&s.dirs[0].join(format!("c{MAX_SYMLINKS}")), "end");
    symlink("c0", &s.dirs[0].join("c-1"));
    let root = s.root();
    let err = root.resolve("/a", true).unwrap_err();
    assert!(matches!(err, FsError::SymlinkLoop { .. }), "{err}");
    assert!(err.to_string().ends_with("too many levels of symbolic links"));
    assert!(matches!(root.resolve("/self", true), Err(FsError::SymlinkLoop { .. })));
    assert_eq!(read(&root, "/c0"), "end");
    assert!(matches!(root.resolve("/c-1", true), Err(FsError::SymlinkLoop { .. })));
    // Not following the final link is no loop.
    assert!(root.resolve("/a", false).unwrap().entry.is_some());
}

#[test]
fn resolution_below_a_base_uses_it_as_the_root() {
    let s = stack(1);
    write(&s.dirs[0].join("srv/data/etc/conf"), "inner");
    write(&s.dirs[0].join("etc/conf"), "outer");
    symlink("/etc", &s.dirs[0].join("srv/data/link"));
    let root = s.root();
    let base = RootPath::lexical("/srv/data");
    let resolved = root.resolve_in(&base, "link/conf", true).unwrap();
    assert_eq!(resolved.path.to_string(), "/srv/data/etc/conf");
    let resolved = root.resolve_in(&base, "../../../etc/conf", true).unwrap();
    assert_eq!(resolved.path.to_string(), "/srv/data/etc/conf");
}

#[test]
fn an_empty_stack_is_an_empty_root() {
    let root = MergedRoot::new(Vec::new()).unwrap();
    let top = root.root().unwrap();
    assert!(top.is_dir());
    assert!(top.host_path().is_none());
    assert!(root.read_dir("/").unwrap().is_empty());
    assert!(root.lookup("/etc/passwd", true).unwrap().is_none());
}

#[test]
fn ignore_patterns_hide_context_paths() {
    let s = stack(1);
    write(&s.dirs[0].join("src/main.rs"), "x");
    write(&s.dirs[0].join("target/debug/app"), "x");
    write(&s.dirs[0].join("target/keep.txt"), "x");
    write(&s.dirs[0].join("notes.md"), "x");
    symlink("target/debug/app", &s.dirs[0].join("link"));
    let ignore = IgnoreFile::parse("target\n!target/keep.txt\n*.md\n").unwrap();
    let root = MergedRoot::plain(&s.dirs[0]).unwrap().with_ignore(ignore);
    assert_eq!(names(&root, "/"), ["link", "src", "target"]);
    assert_eq!(names(&root, "/target"), ["keep.txt"]);
    assert!(root.lookup("/link", true).unwrap().is_none(), "links cannot reach ignored files");
}

#[test]
fn a_file_replaced_after_lookup_is_not_read() {
    let s = stack(1);
    write(&s.dirs[0].join("f"), "original");
    let root = s.root();
    let entry = root.lookup("/f", false).unwrap().unwrap();
    write(&s.dirs[0].join("g"), "other");
    std::fs::rename(s.dirs[0].join("g"), s.dirs[0].join("f")).unwrap();
    assert!(matches!(entry.open(), Err(FsError::Changed { .. })));
}

#[test]
fn a_host_symlink_swapped_into_a_layer_is_not_followed() {
    let s = stack(1);
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret"), "host secret");
    write(&s.dirs[0].join("d/secret"), "inside");
    let root = s.root();
    let entry = root.lookup("/d/secret", false).unwrap().unwrap();
    // The directory on the way is swapped for a symlink to the host after the lookup.
    std::fs::rename(s.dirs[0].join("d"), s.dirs[0].join("d.old")).unwrap();
    symlink(outside.path().to_str().unwrap(), &s.dirs[0].join("d"));
    let err = entry.open().unwrap_err();
    assert!(matches!(err, FsError::Io { .. }), "{err}");
}

#[test]
fn xattrs_of_files_and_directories() {
    let s = stack(1);
    write(&s.dirs[0].join("f"), "x");
    set_xattr(&s.dirs[0].join("f"), "user.a", b"1");
    set_xattr(&s.dirs[0].join("f"), "user.b", b"2");
    let root = s.root();
    let entry = root.lookup("/f", false).unwrap().unwrap();
    assert_eq!(
        entry.xattrs().unwrap(),
        vec![(b"user.a".to_vec(), b"1".to_vec()), (b"user.b".to_vec(), b"2".to_vec())]
    );
}
