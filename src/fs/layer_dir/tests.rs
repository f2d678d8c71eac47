use super::*;
use crate::fs::testutil::*;
use std::os::unix::fs::MetadataExt;

struct Setup {
    _tmp: tempfile::TempDir,
    lower: PathBuf,
    out: PathBuf,
    host: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, out, host) =
        (tmp.path().join("lower"), tmp.path().join("out"), tmp.path().join("host"));
    for dir in [&lower, &out, &host] {
        mkdir(dir);
    }
    Setup { _tmp: tmp, lower, out, host }
}

impl Setup {
    fn layer(&self) -> LayerDir {
        LayerDir::open(&self.out, &MergedRoot::new(vec![self.lower.clone()]).unwrap()).unwrap()
    }
}

fn meta(mode: u32, uid: u32) -> NewMeta {
    NewMeta::simple(mode, uid, uid, Time { sec: 777, nsec: 5 })
}

fn p(path: &str) -> RootPath {
    RootPath::lexical(path)
}

#[test]
fn existing_directories_are_replicated_with_their_metadata() {
    if !have_root("layer replication") {
        return;
    }
    let s = setup();
    mkdir(&s.lower.join("usr/lib"));
    std::os::unix::fs::chown(s.lower.join("usr/lib"), Some(7), Some(8)).unwrap();
    set_xattr(&s.lower.join("usr/lib"), "user.keep", b"1");
    set_xattr(&s.lower.join("usr/lib"), "trusted.overlay.opaque", b"y");
    let mut layer = s.layer();
    let made = layer.ensure_dir(&p("/usr/lib/new/deeper"), Some(&meta(0o750, 3))).unwrap();
    assert_eq!(made, [p("/usr/lib/new"), p("/usr/lib/new/deeper")]);
    layer.finish().unwrap();
    let md = std::fs::metadata(s.out.join("usr/lib")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (7, 8, 0o755));
    let fd = rustix::fs::open(s.out.join("usr/lib"), OFlags::RDONLY, Mode::empty()).unwrap();
    assert_eq!(xattr::read_all(&fd).unwrap(), vec![(b"user.keep".to_vec(), b"1".to_vec())]);
    let md = std::fs::metadata(s.out.join("usr/lib/new/deeper")).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777, md.mtime(), md.mtime_nsec()), (3, 0o750, 777, 5));
    // Without a template, a missing directory is an error, and a file on the way too.
    let mut layer = s.layer();
    assert!(layer.ensure_dir(&p("/nope/x"), None).is_err());
    write(&s.lower.join("file"), "x");
    assert!(matches!(
        layer.ensure_dir(&p("/file/x"), Some(&meta(0o755, 0))),
        Err(FsError::NotADirectory { .. })
    ));
}

#[test]
fn files_links_and_nodes_get_their_metadata() {
    if !have_root("layer writes") {
        return;
    }
    let s = setup();
    write(&s.lower.join("etc/shadow"), "lower secret");
    let mut layer = s.layer();
    layer.ensure_dir(&p("/etc"), None).unwrap();
    let bytes = layer
        .write_file(&p("/etc/motd"), Content::Reader(&mut &b"hello"[..]), &meta(0o4755, 9))
        .unwrap();
    assert_eq!(bytes, 5);
    layer.symlink(&p("/etc/link"), OsStr::new("motd"), &meta(0o777, 9)).unwrap();
    layer.hardlink(&p("/etc/motd"), &p("/etc/motd2")).unwrap();
    // A link to a file only the root below has copies it up first.
    layer.hardlink(&p("/etc/shadow"), &p("/etc/shadow2")).unwrap();
    assert!(layer.node(&p("/etc/fifo"), FileKind::Fifo, 0, &meta(0o600, 9)).unwrap());
    // A 0/0 character device would read as a whiteout: skipped and counted.
    assert!(!layer.node(&p("/etc/wh"), FileKind::CharDevice, 0, &meta(0o600, 0)).unwrap());
    let stats = layer.finish().unwrap();
    assert_eq!(stats.devices_skipped, 1);
    let md = std::fs::metadata(s.out.join("etc/motd")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.mtime(), md.nlink()), (0o4755, 9, 777, 2));
    let md = std::fs::symlink_metadata(s.out.join("etc/link")).unwrap();
    assert_eq!((md.uid(), md.mtime()), (9, 777));
    assert_eq!(std::fs::read_to_string(s.out.join("etc/shadow2")).unwrap(), "lower secret");
    assert_eq!(std::fs::metadata(s.out.join("etc/shadow")).unwrap().nlink(), 2);
    assert!(!s.out.join("etc/wh").exists());
}

#[test]
fn removal_only_touches_the_layer_and_times_are_set_last() {
    if !have_root("layer removal") {
        return;
    }
    let s = setup();
    write(&s.lower.join("d/lowfile"), "x");
    let mut layer = s.layer();
    layer.ensure_dir(&p("/d/sub"), Some(&meta(0o755, 0))).unwrap();
    layer.write_file(&p("/d/sub/f"), Content::Reader(&mut &b"x"[..]), &meta(0o644, 0)).unwrap();
    layer.remove(&p("/d/sub")).unwrap();
    layer.remove(&p("/d/lowfile")).unwrap();
    assert!(layer.in_layer(&p("/d")).unwrap());
    assert!(!layer.in_layer(&p("/d/sub")).unwrap());
    assert!(s.lower.join("d/lowfile").exists(), "the root below is never written");
    layer.set_dir_times(&p("/d"), Time { sec: 10, nsec: 0 }, Time { sec: 20, nsec: 0 });
    layer.write_file(&p("/d/late"), Content::Reader(&mut &b"x"[..]), &meta(0o644, 0)).unwrap();
    layer.finish().unwrap();
    assert_eq!(std::fs::metadata(s.out.join("d")).unwrap().mtime(), 20);
}

#[test]
fn symlinks_planted_in_the_layer_are_never_followed_for_writing() {
    if !have_root("layer confinement") {
        return;
    }
    let s = setup();
    // Something (a race, a bug) put a symlink to the host where a directory was expected.
    symlink(s.host.to_str().unwrap(), &s.out.join("x"));
    let mut layer = s.layer();
    let err = layer.write_file(&p("/x/file"), Content::Reader(&mut &b"x"[..]), &meta(0o644, 0));
    assert!(err.is_err());
    assert!(layer.ensure_dir(&p("/x/sub"), Some(&meta(0o755, 0))).is_err());
    assert!(layer.create_dir(&p("/x/sub"), &meta(0o755, 0)).is_err());
    assert!(layer.symlink(&p("/x/l"), OsStr::new("t"), &meta(0o777, 0)).is_err());
    // Replacing the final component replaces the link itself, never its target.
    symlink(s.host.join("target").to_str().unwrap(), &s.out.join("y"));
    layer.remove(&p("/y")).unwrap();
    layer.write_file(&p("/y"), Content::Reader(&mut &b"mine"[..]), &meta(0o644, 0)).unwrap();
    assert!(std::fs::read_dir(&s.host).unwrap().next().is_none(), "the host directory was written");
    assert_eq!(std::fs::read_to_string(s.out.join("y")).unwrap(), "mine");
    // Resolution in the live view follows the planted link inside the root instead.
    let resolved = layer.resolve(&RootPath::root(), "/x/file", true).unwrap();
    assert_eq!(resolved.path, RootPath::lexical(s.host.join("file").as_os_str()));
}
