//! The build context source against real directories: what a scan selects, what changes a
//! COPY's digest and what does not, the stat cache, and the errors.

use kiln::ops::context::{ContextError, ContextSnapshot, EntryKind, SpecialKind, StatCache};
use kiln_cache::Digest;
use kiln_frontend::graph::ContextSource;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temporary context directory with helpers to fill it.
struct Context {
    dir: tempfile::TempDir,
}

impl Context {
    fn new() -> Context {
        Context { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, content: &str) -> &Self {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        self
    }

    fn link(&self, rel: &str, target: &str) -> &Self {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        symlink(target, &path).unwrap();
        self
    }

    fn chmod(&self, rel: &str, mode: u32) -> &Self {
        fs::set_permissions(self.path().join(rel), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Sets a file's mtime an hour back.
    fn age(&self, rel: &str) -> &Self {
        let file = fs::File::options().write(true).open(self.path().join(rel)).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
        self
    }
}

fn source(excludes: &[&str], includes: &[&str]) -> ContextSource {
    ContextSource {
        name: "context".into(),
        exclude_patterns: excludes.iter().map(|s| s.to_string()).collect(),
        include_paths: includes.iter().map(|s| s.to_string()).collect(),
    }
}

fn scan(dir: &Path, excludes: &[&str], includes: &[&str]) -> ContextSnapshot {
    ContextSnapshot::scan(dir, &source(excludes, includes), &mut StatCache::in_memory()).unwrap()
}

fn paths(snapshot: &ContextSnapshot) -> Vec<String> {
    snapshot.files().map(|e| e.path.to_string_lossy().into_owned()).collect()
}

fn digest(dir: &Path, excludes: &[&str], sources: &[&str]) -> Digest {
    scan(dir, excludes, &["/"]).digest_of(sources).unwrap()
}

/// Lets the timestamps of files written so far fall out of the stat cache's racy window.
fn settle() {
    std::thread::sleep(Duration::from_millis(150));
}

#[test]
fn walk_is_sorted_and_records_metadata() {
    let ctx = Context::new();
    ctx.write("b.txt", "bee").write("a/z", "zed").write("a.txt", "ay").link("a/l", "../b.txt");
    ctx.chmod("a.txt", 0o4750);
    let snapshot = scan(ctx.path(), &[], &["/"]);
    assert_eq!(paths(&snapshot), ["a", "a/l", "a/z", "a.txt", "b.txt"]);
    let a_txt = snapshot.entry(Path::new("a.txt")).unwrap();
    assert_eq!(a_txt.mode, 0o4750);
    assert_eq!((a_txt.uid, a_txt.gid), (0, 0));
    assert_eq!(a_txt.kind, EntryKind::File { size: 2, digest: Digest::of(b"ay") });
    let link = snapshot.entry(Path::new("a/l")).unwrap();
    assert_eq!(link.kind, EntryKind::Symlink { target: PathBuf::from("../b.txt") });
    assert!(snapshot.entry(Path::new("a")).unwrap().is_dir());
    assert_eq!(snapshot.stats().files, 3);
    assert_eq!(snapshot.stats().file_bytes, 8);
    assert_eq!(snapshot.stats().files_hashed, 3);
}

#[test]
fn dockerignore_excluded_files_do_not_count() {
    let ctx = Context::new();
    ctx.write("src/main.rs", "fn main() {}")
        .write("target/debug/app", "binary")
        .write("x.log", "1");
    let excludes = ["target", "*.log"];
    let snapshot = scan(ctx.path(), &excludes, &["/"]);
    assert_eq!(paths(&snapshot), ["src", "src/main.rs"]);

    let before = digest(ctx.path(), &excludes, &["."]);
    ctx.write("target/debug/app", "other binary").write("x.log", "2").write("y.log", "new");
    assert_eq!(digest(ctx.path(), &excludes, &["."]), before);
    ctx.write("src/main.rs", "fn main() { }");
    assert_ne!(digest(ctx.path(), &excludes, &["."]), before);
}

#[test]
fn exception_reincludes_inside_an_excluded_directory() {
    let ctx = Context::new();
    ctx.write("node_modules/pkg/index.js", "x")
        .write("node_modules/keep/README.md", "keep me")
        .write("node_modules/keep/other.js", "y")
        .write("app.js", "app");
    let snapshot = scan(ctx.path(), &["node_modules", "!node_modules/keep/README.md"], &["/"]);
    // The excluded directories on the way are recorded as parents of what is kept.
    assert_eq!(
        paths(&snapshot),
        ["app.js", "node_modules", "node_modules/keep", "node_modules/keep/README.md"]
    );

    // With a wildcard exception every excluded directory is looked into, and only those
    // with something kept appear.
    let snapshot = scan(ctx.path(), &["node_modules", "!**/*.md"], &["/"]);
    assert_eq!(
        paths(&snapshot),
        ["app.js", "node_modules", "node_modules/keep", "node_modules/keep/README.md"]
    );

    // fsutil's order rule: a later `!` for a parent does not bring back an earlier exclusion.
    let snapshot = scan(ctx.path(), &["node_modules/pkg", "!node_modules"], &["/"]);
    assert!(!paths(&snapshot).contains(&"node_modules/pkg/index.js".to_string()));
    assert!(paths(&snapshot).contains(&"node_modules/keep/other.js".to_string()));
}

#[test]
fn include_paths_narrow_the_scan_and_the_digest() {
    let ctx = Context::new();
    ctx.write("src/lib.rs", "lib").write("docs/guide.md", "guide").write("go.mod", "module x");
    let snapshot = scan(ctx.path(), &[], &["/go.mod", "/src"]);
    assert_eq!(paths(&snapshot), ["go.mod", "src", "src/lib.rs"]);
    assert_eq!(snapshot.stats().files_hashed, 2, "docs/guide.md is never read");

    let copy_src = |dir: &Path| scan(dir, &[], &["/src"]).digest_of(&["/src"]).unwrap();
    let before = copy_src(ctx.path());
    ctx.write("docs/guide.md", "changed").write("go.mod", "module y").write("new.txt", "n");
    assert_eq!(copy_src(ctx.path()), before);
    ctx.write("src/new.rs", "new");
    assert_ne!(copy_src(ctx.path()), before);
}

#[test]
fn nested_include_paths_keep_their_parent_directories() {
    let ctx = Context::new();
    ctx.write("a/b/c.txt", "c").write("a/b/d.txt", "d").write("a/e.txt", "e");
    let snapshot = scan(ctx.path(), &[], &["/a/b/c.txt"]);
    assert_eq!(paths(&snapshot), ["a", "a/b", "a/b/c.txt"]);
}

#[test]
fn wildcard_include_paths_and_sources() {
    let ctx = Context::new();
    ctx.write("main.go", "package main")
        .write("util.go", "package main // util")
        .write("README.md", "readme")
        .write("cmd/api/main.go", "api")
        .write("cmd/cli/main.go", "cli")
        .write("cmd/cli/extra.go", "extra");
    let snapshot = scan(ctx.path(), &[], &["/*.go", "/cmd/*/main.go"]);
    assert_eq!(
        paths(&snapshot),
        ["cmd", "cmd/api", "cmd/api/main.go", "cmd/cli", "cmd/cli/main.go", "main.go", "util.go"]
    );
    let matches = snapshot.resolve_source("/cmd/*/main.go").unwrap();
    let matched: Vec<_> = matches.iter().map(|m| m.path.to_string_lossy().into_owned()).collect();
    assert_eq!(matched, ["cmd/api/main.go", "cmd/cli/main.go"]);

    let go_files = |dir: &Path| scan(dir, &[], &["/*.go"]).digest_of(&["/*.go"]).unwrap();
    let before = go_files(ctx.path());
    ctx.write("README.md", "changed readme").write("cmd/api/main.go", "changed");
    assert_eq!(go_files(ctx.path()), before);
    ctx.write("util.go", "package main // changed");
    assert_ne!(go_files(ctx.path()), before);
    ctx.write("util.go", "package main // util");
    assert_eq!(go_files(ctx.path()), before);
    ctx.write("new.go", "package main");
    assert_ne!(go_files(ctx.path()), before, "a new match changes the digest");

    // No match is not an error (BuildKit allows empty wildcards); a malformed one is.
    assert_eq!(snapshot.resolve_source("/*.rs").unwrap(), []);
    let err = snapshot.resolve_source("/[.go").unwrap_err();
    assert_eq!(err.to_string(), "invalid COPY source \"/[.go\": `[` has no closing `]`");
}

#[test]
fn mtime_only_change_keeps_the_digest() {
    let ctx = Context::new();
    ctx.write("a.txt", "same").write("b.txt", "other");
    settle();
    let mut cache = StatCache::in_memory();
    let all = source(&[], &["/"]);
    let first = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    ctx.age("a.txt");
    settle();
    let second = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(second.digest_of(&["."]).unwrap(), first.digest_of(&["."]).unwrap());
    // Only the touched file is read again (its stat changed); the other comes from the cache.
    assert_eq!(second.stats().files_hashed, 1);
    assert_eq!(second.stats().stat_cache_hits, 1);
    assert_ne!(
        second.entry(Path::new("a.txt")).unwrap().mtime_ns,
        first.entry(Path::new("a.txt")).unwrap().mtime_ns
    );
}

#[test]
fn warm_scan_reads_no_file() {
    let ctx = Context::new();
    for i in 0..50 {
        ctx.write(&format!("dir{}/file{i}", i % 5), &format!("content {i}"));
    }
    settle();
    let mut cache = StatCache::in_memory();
    let all = source(&[], &["/"]);
    let cold = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(cold.stats().files_hashed, 50);
    let warm = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(warm.stats().files_hashed, 0);
    assert_eq!(warm.stats().bytes_hashed, 0);
    assert_eq!(warm.stats().stat_cache_hits, 50);
    assert_eq!(warm.digest_of(&["."]).unwrap(), cold.digest_of(&["."]).unwrap());
}

#[test]
fn stat_cache_persists_between_processes() {
    let ctx = Context::new();
    ctx.write("a", "1").write("b/c", "2");
    settle();
    let cache_dir = tempfile::tempdir().unwrap();
    let all = source(&[], &["/"]);
    let mut cache = StatCache::open(cache_dir.path()).unwrap();
    let cold = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    cache.save().unwrap();
    drop(cache);

    let mut reopened = StatCache::open(cache_dir.path()).unwrap();
    let warm = ContextSnapshot::scan(ctx.path(), &all, &mut reopened).unwrap();
    assert_eq!(warm.stats().files_hashed, 0);
    assert_eq!(warm.digest_of(&["."]).unwrap(), cold.digest_of(&["."]).unwrap());
    assert!(reopened.notes().is_empty());
}

#[test]
fn racy_files_are_hashed_again() {
    let ctx = Context::new();
    ctx.write("settled", "old");
    settle();
    // A file whose timestamps are not older than the scan (here an mtime ahead of the clock,
    // so the test does not depend on how fast it runs; a file written just before the scan
    // is in the same position, see the stat_cache unit tests for the exact window).
    ctx.write("racy", "just written");
    let racy = fs::File::options().write(true).open(ctx.path().join("racy")).unwrap();
    racy.set_modified(SystemTime::now() + Duration::from_secs(3600)).unwrap();
    let mut cache = StatCache::in_memory();
    let all = source(&[], &["/"]);
    let first = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(first.stats().files_hashed, 2);
    // Not trusted: a same-size rewrite that kept its timestamps would be seen.
    let second = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(second.stats().files_hashed, 1);
    assert_eq!(second.stats().stat_cache_hits, 1);
    // Once its timestamps are in the past, it is remembered like the other.
    ctx.age("racy");
    settle();
    let third = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(third.stats().files_hashed, 1, "remembered by this scan, not before");
    let fourth = ContextSnapshot::scan(ctx.path(), &all, &mut cache).unwrap();
    assert_eq!(fourth.stats().files_hashed, 0);
}

#[test]
fn content_mode_and_link_changes_change_the_digest() {
    let ctx = Context::new();
    ctx.write("app/run.sh", "echo hi").link("app/current", "run.sh").write("app/data", "x");
    let base = digest(ctx.path(), &[], &["app"]);

    ctx.write("app/run.sh", "echo ho");
    let content = digest(ctx.path(), &[], &["app"]);
    assert_ne!(content, base);

    ctx.chmod("app/run.sh", 0o755);
    let mode = digest(ctx.path(), &[], &["app"]);
    assert_ne!(mode, content);

    ctx.link("app/current", "data");
    let link = digest(ctx.path(), &[], &["app"]);
    assert_ne!(link, mode);

    ctx.chmod("app", 0o700);
    assert_ne!(digest(ctx.path(), &[], &["app"]), link, "directory mode counts");

    // A rename is a different selection.
    let before_rename = digest(ctx.path(), &[], &["app"]);
    fs::rename(ctx.path().join("app/data"), ctx.path().join("app/data2")).unwrap();
    assert_ne!(digest(ctx.path(), &[], &["app"]), before_rename);
}

#[test]
fn moving_the_context_keeps_the_digest() {
    let parent = tempfile::tempdir().unwrap();
    let first = parent.path().join("one");
    fs::create_dir(&first).unwrap();
    fs::write(first.join("a.txt"), "a").unwrap();
    fs::create_dir(first.join("sub")).unwrap();
    fs::write(first.join("sub/b.txt"), "b").unwrap();
    symlink("../a.txt", first.join("sub/link")).unwrap();
    let before = digest(&first, &[], &["."]);
    let before_sub = digest(&first, &[], &["sub"]);

    let second = parent.path().join("elsewhere/deeper/two");
    fs::create_dir_all(second.parent().unwrap()).unwrap();
    fs::rename(&first, &second).unwrap();
    assert_eq!(digest(&second, &[], &["."]), before);
    assert_eq!(digest(&second, &[], &["sub"]), before_sub);
}

#[test]
fn context_given_as_relative_path_or_symlink() {
    let parent = tempfile::tempdir().unwrap();
    let real = parent.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("f"), "x").unwrap();
    let alias = parent.path().join("alias");
    symlink(&real, &alias).unwrap();
    let via_link = scan(&alias, &[], &["/"]);
    assert_eq!(via_link.root(), real.canonicalize().unwrap());

    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(&real, &cwd);
    let via_relative = scan(&relative, &[], &["/"]);
    assert_eq!(via_relative.root(), via_link.root());
    assert_eq!(via_relative.digest_of(&["."]).unwrap(), via_link.digest_of(&["."]).unwrap());
}

/// `path` relative to `base` (both absolute), with `..` as needed.
fn pathdiff(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for component in &path[common..] {
        out.push(component);
    }
    out
}

#[test]
fn symlinked_sources_are_followed_inside_the_context() {
    let ctx = Context::new();
    ctx.write("real/inner.txt", "inner")
        .write("other.txt", "other")
        .link("current", "real")
        .link("abs", "/real/inner.txt")
        .link("escape", "../../../../real");
    // The include path names the link; the scan follows it to keep the target.
    let snapshot = scan(ctx.path(), &[], &["/current"]);
    assert_eq!(paths(&snapshot), ["current", "real", "real/inner.txt"]);
    let matches = snapshot.resolve_source("current").unwrap();
    assert_eq!(matches[0].path, Path::new("current"));
    assert_eq!(matches[0].resolved, Path::new("real"));

    let copy_current = |dir: &Path| scan(dir, &[], &["/current"]).digest_of(&["current"]).unwrap();
    let before = copy_current(ctx.path());
    ctx.write("real/inner.txt", "changed");
    assert_ne!(copy_current(ctx.path()), before, "the target's content counts");

    // Absolute targets and `..` stay inside the context.
    let all = scan(ctx.path(), &[], &["/"]);
    assert_eq!(all.resolve_source("abs").unwrap()[0].resolved, Path::new("real/inner.txt"));
    assert_eq!(
        all.resolve_source("escape/inner.txt").unwrap()[0].resolved,
        Path::new("real/inner.txt")
    );
    assert_eq!(all.digest_of(&["abs"]).unwrap(), all.digest_of(&["abs"]).unwrap());
}

#[test]
fn links_crossed_on_the_way_to_an_include_path_are_kept() {
    let ctx = Context::new();
    ctx.write("vendor/lib/foo/a.txt", "a")
        .write("vendor/lib/bar/b.txt", "b")
        .write("vendor/other.txt", "o")
        .link("lib", "vendor/lib");
    let snapshot = scan(ctx.path(), &[], &["/lib/foo"]);
    assert_eq!(
        paths(&snapshot),
        ["lib", "vendor", "vendor/lib", "vendor/lib/foo", "vendor/lib/foo/a.txt"]
    );
    let matches = snapshot.resolve_source("lib/foo").unwrap();
    assert_eq!(matches[0].resolved, Path::new("vendor/lib/foo"));
    assert_eq!(
        snapshot.digest_of(&["lib/foo"]).unwrap(),
        scan(ctx.path(), &[], &["/"]).digest_of(&["lib/foo"]).unwrap(),
        "the narrowed scan gives the same digest as a full one"
    );
}

#[test]
fn dangling_and_outside_links_are_not_found() {
    let ctx = Context::new();
    ctx.link("host", "/etc").link("loop", "loop").link("dangling", "nowhere");
    ctx.link("root", "/root");
    let snapshot = scan(ctx.path(), &[], &["/"]);
    // `/etc` means the context's own `/etc`: here nothing, ...
    let err = snapshot.digest_of(&["host/passwd"]).unwrap_err();
    assert_eq!(err.to_string(), "\"/host/passwd\": not found in build context \"context\"");
    // ... or the link itself, a loop (as BuildKit's rootPath finds too).
    let err = snapshot.digest_of(&["root/.ssh"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"/root/.ssh\": too many levels of symbolic links in build context \"context\""
    );
    let err = snapshot.digest_of(&["dangling"]).unwrap_err();
    assert_eq!(err.to_string(), "\"/dangling\": not found in build context \"context\"");
    let err = snapshot.digest_of(&["loop"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"/loop\": too many levels of symbolic links in build context \"context\""
    );
    let err = snapshot.digest_of(&["missing/file"]).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { ref path, .. } if path == "/missing/file"));
}

#[test]
fn excluded_sources_are_not_found() {
    let ctx = Context::new();
    ctx.write("secret.env", "TOKEN=x").write("app.py", "print()");
    let snapshot = scan(ctx.path(), &["*.env"], &["/"]);
    let err = snapshot.digest_of(&["secret.env"]).unwrap_err();
    assert_eq!(err.to_string(), "\"/secret.env\": not found in build context \"context\"");
}

#[test]
fn special_files_are_skipped_and_reported() {
    let ctx = Context::new();
    ctx.write("regular", "r");
    rustix::fs::mkfifoat(rustix::fs::CWD, ctx.path().join("pipe"), 0o644.into()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(ctx.path().join("sock")).unwrap();
    let snapshot = scan(ctx.path(), &[], &["/"]);
    assert_eq!(paths(&snapshot), ["regular"]);
    let skipped: Vec<_> = snapshot
        .skipped()
        .iter()
        .map(|s| (s.path.to_string_lossy().into_owned(), s.kind))
        .collect();
    assert_eq!(
        skipped,
        [("pipe".to_string(), SpecialKind::Fifo), ("sock".to_string(), SpecialKind::Socket)]
    );
    // Excluded special files are not even reported.
    assert!(scan(ctx.path(), &["pipe", "sock"], &["/"]).skipped().is_empty());
}

#[test]
fn large_files_are_hashed_in_full() {
    let ctx = Context::new();
    // Not a multiple of the read buffer, and bigger than several of them.
    let content: Vec<u8> = (0..(3 << 20) + 12345).map(|i: u32| (i * 7 + i / 1000) as u8).collect();
    fs::write(ctx.path().join("big.bin"), &content).unwrap();
    let snapshot = scan(ctx.path(), &[], &["/"]);
    let entry = snapshot.entry(Path::new("big.bin")).unwrap();
    assert_eq!(
        entry.kind,
        EntryKind::File { size: content.len() as u64, digest: Digest::of(&content) }
    );
}

/// The digest is exactly the documented encoding (module docs of `ops::context`).
#[test]
fn digest_follows_the_documented_encoding() {
    let ctx = Context::new();
    ctx.write("app/f", "hi").link("app/l", "f");
    ctx.chmod("app/f", 0o640).chmod("app", 0o755);
    let snapshot = scan(ctx.path(), &[], &["/"]);

    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    }
    fn header(out: &mut Vec<u8>, tag: u8, path: &[u8], mode: u32) {
        out.push(tag);
        bytes(out, path);
        out.extend_from_slice(&mode.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    let mut expected = Vec::new();
    bytes(&mut expected, b"kiln.context.selection.v1");
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.push(b'S');
    bytes(&mut expected, b"/app/");
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.push(b'M');
    bytes(&mut expected, b"app");
    expected.extend_from_slice(&3u64.to_le_bytes());
    header(&mut expected, b'D', b"", 0o755);
    header(&mut expected, b'F', b"f", 0o640);
    expected.extend_from_slice(&2u64.to_le_bytes());
    expected.extend_from_slice(Digest::of(b"hi").as_bytes());
    header(&mut expected, b'L', b"l", 0o777);
    bytes(&mut expected, b"f");
    assert_eq!(snapshot.digest_of(&["/app/"]).unwrap(), Digest::of(&expected));
}

#[test]
fn source_order_and_spelling_are_part_of_the_digest() {
    let ctx = Context::new();
    ctx.write("a", "1").write("b", "2");
    let snapshot = scan(ctx.path(), &[], &["/"]);
    let ab = snapshot.digest_of(&["a", "b"]).unwrap();
    assert_ne!(ab, snapshot.digest_of(&["b", "a"]).unwrap());
    assert_ne!(snapshot.digest_of(&["a"]).unwrap(), snapshot.digest_of(&["[a]"]).unwrap());
    assert_eq!(ab, snapshot.digest_of(&["a", "b"]).unwrap());
}

#[test]
fn errors_name_the_path() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("nope");
    let err = ContextSnapshot::scan(&missing, &source(&[], &["/"]), &mut StatCache::in_memory())
        .unwrap_err();
    assert_eq!(err.to_string(), format!("build context {}: no such directory", missing.display()));

    let file = parent.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = ContextSnapshot::scan(&file, &source(&[], &["/"]), &mut StatCache::in_memory())
        .unwrap_err();
    assert_eq!(err.to_string(), format!("build context {} is not a directory", file.display()));

    let err =
        ContextSnapshot::scan(parent.path(), &source(&["!"], &["/"]), &mut StatCache::in_memory())
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid .dockerignore of build context \"context\": line 1: `!` has no pattern after its `!`"
    );
}

/// Runs `test` as the unprivileged user `nobody` (root reads everything regardless of
/// permissions): re-runs this test binary through `setpriv` when we are root.
fn as_unprivileged(name: &str, dir: &Path, test: impl FnOnce()) {
    if !rustix::process::geteuid().is_root() {
        test();
        return;
    }
    if std::env::var_os("KILN_TEST_AS_NOBODY").is_some() {
        panic!("still root after setpriv");
    }
    let mut mode = dir.to_path_buf();
    while mode.parent().is_some() {
        // The temporary directories must be traversable by nobody.
        let perms = fs::metadata(&mode).unwrap().permissions().mode();
        if perms & 0o005 != 0o005 {
            fs::set_permissions(&mode, fs::Permissions::from_mode(perms | 0o005)).unwrap();
        }
        mode.pop();
    }
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("KILN_TEST_AS_NOBODY", dir)
        .status()
        .expect("setpriv (util-linux) runs");
    assert!(status.success(), "{name} failed as nobody");
}

#[test]
fn unreadable_files_are_errors_naming_them() {
    let (dir, _keep) = match std::env::var_os("KILN_TEST_AS_NOBODY") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let ctx = Context::new();
            ctx.write("ok.txt", "fine").write("locked.txt", "secret").chmod("locked.txt", 0o000);
            ctx.write("private/x", "x").chmod("private", 0o000);
            (ctx.path().to_path_buf(), Some(ctx))
        }
    };
    as_unprivileged("unreadable_files_are_errors_naming_them", &dir, || {
        let all = source(&["private"], &["/"]);
        let err = ContextSnapshot::scan(&dir, &all, &mut StatCache::in_memory()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("permission denied: cannot read {}", dir.join("locked.txt").display())
        );
        // An excluded directory nobody can read is no problem; a selected one is.
        let readable = source(&["private", "locked.txt"], &["/"]);
        let snapshot = ContextSnapshot::scan(&dir, &readable, &mut StatCache::in_memory()).unwrap();
        assert_eq!(paths(&snapshot), ["ok.txt"]);
        let with_private = source(&["locked.txt"], &["/"]);
        let err =
            ContextSnapshot::scan(&dir, &with_private, &mut StatCache::in_memory()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("permission denied: cannot open directory {}", dir.join("private").display())
        );
    });
}
