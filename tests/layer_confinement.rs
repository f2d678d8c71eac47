//! Hostile tars must never touch anything outside the directory they are applied to.
//!
//! Each test lays out `tmp/root` (the target) beside `tmp/outside` (a stand-in for the host,
//! with a sentinel file) and `tmp/victim`, applies crafted tars, and checks that everything
//! outside `root` is byte-for-byte as before and that the entries landed inside `root`.

mod layer_support;

use kiln::layer::{ApplyMode, ApplyOptions, LayerError, apply_layer};
use layer_support::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

/// An owned crafted entry: name, type, link target, content.
type Owned = (Vec<u8>, EntryType, Vec<u8>, &'static [u8]);

struct Playground {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

impl Playground {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root = base.join("root");
        fs::create_dir(&root).unwrap();
        fs::create_dir(base.join("outside")).unwrap();
        write_file(&base.join("outside/sentinel"), b"host data", 0o644, 1000);
        write_file(&base.join("victim"), b"host victim", 0o644, 1000);
        Self { _tmp: tmp, base, root }
    }

    /// Everything under the base except `root/`, with mtimes.
    fn host_view(&self) -> BTreeMap<String, String> {
        describe(&self.base, true)
            .into_iter()
            .filter(|(k, _)| k != "root" && !k.starts_with("root/"))
            .collect()
    }

    fn apply(&self, tar: &[u8], mode: ApplyMode) -> Result<kiln::layer::ApplyStats, LayerError> {
        apply_layer(tar, &self.root, &ApplyOptions { mode, ..Default::default() })
    }
}

fn file(name: &[u8], data: &'static [u8]) -> Owned {
    (name.to_vec(), EntryType::Regular, Vec::new(), data)
}

fn link(name: &[u8], kind: EntryType, target: &[u8]) -> Owned {
    (name.to_vec(), kind, target.to_vec(), b"")
}

fn tar_of(entries: &[Owned]) -> Vec<u8> {
    let borrowed: Vec<RawEntry<'_>> =
        entries.iter().map(|(n, k, l, d)| (n.as_slice(), *k, l.as_slice(), *d)).collect();
    raw_tar(&borrowed)
}

fn listing(root: &Path) -> Vec<String> {
    describe(root, false).keys().cloned().collect()
}

#[test]
fn dot_dot_absolute_and_symlink_escapes_land_inside_the_root() {
    let pg = Playground::new();
    let before = pg.host_view();
    let outside_abs = pg.base.join("outside");
    let tar = tar_of(&[
        file(b"../escape", b"1"),
        file(b"../../../../../../kiln-probe-dotdot", b"2"),
        file(b"/abs", b"3"),
        link(b"evil", EntryType::Symlink, b"/"),
        file(b"evil/etc/kiln-probe-evil", b"4"),
        link(b"up", EntryType::Symlink, b"../../.."),
        file(b"up/kiln-probe-up", b"5"),
        link(b"out", EntryType::Symlink, b"../outside"),
        file(b"out/sentinel", b"overwritten?"),
        link(b"hostabs", EntryType::Symlink, outside_abs.as_os_str().as_encoded_bytes()),
        file(b"hostabs/through-abs", b"6"),
        (b"out/newdir/".to_vec(), EntryType::Directory, Vec::new(), b""),
        link(b"out/newdir/chain", EntryType::Symlink, b"../../up/../../.."),
        file(b"out/newdir/chain/kiln-probe-chain", b"7"),
    ]);
    pg.apply(&tar, ApplyMode::Flatten).unwrap();

    assert_eq!(pg.host_view(), before, "nothing outside the root changed");
    for probe in [
        "/kiln-probe-dotdot",
        "/etc/kiln-probe-evil",
        "/kiln-probe-up",
        "/kiln-probe-chain",
        "/abs",
    ] {
        assert!(!Path::new(probe).exists(), "{probe} was written on the host");
    }
    assert!(!pg.base.join("escape").exists());
    let inside = |p: &str| fs::read(pg.root.join(p)).unwrap();
    assert_eq!(inside("escape"), b"1");
    assert_eq!(inside("kiln-probe-dotdot"), b"2");
    assert_eq!(inside("abs"), b"3");
    assert_eq!(inside("etc/kiln-probe-evil"), b"4");
    assert_eq!(inside("kiln-probe-up"), b"5");
    assert_eq!(inside("outside/sentinel"), b"overwritten?");
    let abs_inside = pg.root.join(outside_abs.strip_prefix("/").unwrap());
    assert_eq!(fs::read(abs_inside.join("through-abs")).unwrap(), b"6");
    assert_eq!(inside("kiln-probe-chain"), b"7");
    assert!(pg.root.join("outside/newdir").is_dir());
}

#[test]
fn hard_links_cannot_reach_host_files() {
    let pg = Playground::new();
    let before = pg.host_view();
    // Absolute and climbing link targets name paths inside the root, which do not exist.
    for target in [&b"/etc/passwd"[..], b"../outside/sentinel", b"../../victim"] {
        let err = pg
            .apply(&tar_of(&[link(b"pw", EntryType::Link, target)]), ApplyMode::Flatten)
            .unwrap_err();
        assert!(matches!(&err, LayerError::Apply { path, .. } if path == "pw"), "{err}");
        assert!(!pg.root.join("pw").exists());
    }
    // Through a symlink to the host's directory: the link goes to the copy inside the root.
    let tar = tar_of(&[
        link(b"out", EntryType::Symlink, b"../outside"),
        file(b"out/sentinel", b"inner"),
        link(b"hl", EntryType::Link, b"out/sentinel"),
        link(b"hl2", EntryType::Link, b"../outside/sentinel"),
        link(b"pwlink", EntryType::Symlink, b"/etc/passwd"),
        link(b"hl-to-symlink", EntryType::Link, b"pwlink"),
    ]);
    pg.apply(&tar, ApplyMode::Flatten).unwrap();
    assert_eq!(pg.host_view(), before);
    let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    let inner = pg.root.join("outside/sentinel");
    assert_eq!(ino(&pg.root.join("hl")), ino(&inner));
    assert_eq!(ino(&pg.root.join("hl2")), ino(&inner));
    assert_ne!(ino(&inner), ino(&pg.base.join("outside/sentinel")));
    // A hard link to a symlink is the symlink itself, not its (host) target.
    assert_eq!(fs::read_link(pg.root.join("hl-to-symlink")).unwrap(), Path::new("/etc/passwd"));
    assert_ne!(ino(&pg.root.join("hl-to-symlink")), ino(Path::new("/etc/passwd")));
}

#[test]
fn whiteouts_and_opaque_markers_cannot_delete_host_files() {
    let pg = Playground::new();
    let before = pg.host_view();
    let tar = tar_of(&[
        file(b"../.wh.victim", b""),
        file(b"/.wh.victim", b""),
        link(b"out", EntryType::Symlink, b"../outside"),
        file(b"out/.wh.sentinel", b""),
        link(b"hostroot", EntryType::Symlink, b"/"),
        file(b"hostroot/tmp/.wh..wh..opq", b""),
        file(b"out/.wh..wh..opq", b""),
        file(b"up/../../.wh.elsewhere", b""),
    ]);
    pg.apply(&tar, ApplyMode::Flatten).unwrap();
    assert_eq!(pg.host_view(), before, "host files survived every whiteout");
    assert_eq!(listing(&pg.root), ["hostroot", "out"]);

    // The same tar as an overlay lower layer: whiteout devices, all inside.
    let pg = Playground::new();
    let before = pg.host_view();
    pg.apply(&tar, ApplyMode::OverlayLower { userxattr: true }).unwrap();
    assert_eq!(pg.host_view(), before);
    let desc = describe(&pg.root, false);
    assert!(desc["victim"].starts_with("char 0:0"), "{desc:?}");
    assert!(desc["outside/sentinel"].starts_with("char 0:0"), "{desc:?}");
    assert!(desc["tmp"].contains("xattr:user.overlay.opaque=\"y\""), "{desc:?}");
}

#[test]
fn final_symlinks_are_replaced_not_followed() {
    let pg = Playground::new();
    let before = pg.host_view();
    let victim = pg.base.join("victim");
    let tar = tar_of(&[
        link(b"v", EntryType::Symlink, victim.as_os_str().as_encoded_bytes()),
        file(b"v", b"replaced the link"),
        link(b"d", EntryType::Symlink, b"../outside"),
        (b"d/".to_vec(), EntryType::Directory, Vec::new(), b""),
        link(b"f", EntryType::Symlink, b"../victim"),
        (b"f".to_vec(), EntryType::Fifo, Vec::new(), b""),
    ]);
    pg.apply(&tar, ApplyMode::Flatten).unwrap();
    assert_eq!(pg.host_view(), before);
    let desc = describe(&pg.root, false);
    assert!(desc["v"].starts_with("file \"replaced the link\""), "{desc:?}");
    assert!(desc["d"].starts_with("dir "), "{desc:?}");
    assert!(desc["f"].starts_with("fifo "), "{desc:?}");
}

#[test]
fn proc_symlinks_resolve_inside_the_root() {
    let pg = Playground::new();
    let before = pg.host_view();
    let tar = tar_of(&[
        link(b"self", EntryType::Symlink, b"/proc/self/root"),
        file(b"self/kiln-probe-proc", b"x"),
    ]);
    // "/proc/self/root" resolves inside the root; /proc is not mounted there, so the parent
    // is made as plain directories inside the root.
    pg.apply(&tar, ApplyMode::Flatten).unwrap();
    assert_eq!(pg.host_view(), before);
    assert!(!Path::new("/kiln-probe-proc").exists());
    assert_eq!(fs::read(pg.root.join("proc/self/root/kiln-probe-proc")).unwrap(), b"x");
}
