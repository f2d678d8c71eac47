//! Properties of the context source over random trees: narrowing a scan to the paths a COPY
//! reads never changes what that COPY sees, and digests do not depend on where the tree is.

use kiln::ops::context::{ContextSnapshot, StatCache};
use kiln_frontend::graph::ContextSource;
use proptest::prelude::*;
use std::os::unix::fs::symlink;
use std::path::Path;

#[derive(Debug, Clone)]
enum Node {
    File(u8),
    Dir,
    Link(&'static str),
}

const NAMES: &[&str] = &["a", "b", "c.go", "d.txt", "e"];
const TARGETS: &[&str] = &["a", "../a", "/b", "c.go", "a/d.txt", "/", "..", "missing", "e/e", "."];
const EXCLUDES: &[&str] = &["a", "*.go", "!a/d.txt", "e", "!e/*", "b/**", "!**/c.go", "*/d.txt"];
const SOURCES: &[&str] = &[
    ".", "a", "b", "a/b", "a/d.txt", "*.go", "a/*", "*/d.txt", "b/../a", "e", "e/*", "?", "[ab]",
    "a/b/c.go", "*/*/*", "e/e/e",
];

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        3 => any::<u8>().prop_map(Node::File),
        2 => Just(Node::Dir),
        2 => prop::sample::select(TARGETS).prop_map(Node::Link),
    ]
}

fn tree() -> impl Strategy<Value = Vec<(Vec<&'static str>, Node)>> {
    prop::collection::vec((prop::collection::vec(prop::sample::select(NAMES), 1..4), node()), 1..25)
}

/// Creates what it can of `tree` under `root` (entries whose parent is not a directory are
/// left out).
fn build(root: &Path, tree: &[(Vec<&'static str>, Node)]) {
    for (path, node) in tree {
        let full = path.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        if std::fs::symlink_metadata(&full).is_ok() {
            continue;
        }
        let parent = full.parent().unwrap();
        if std::fs::create_dir_all(parent).is_err() {
            continue;
        }
        let _ = match node {
            Node::File(byte) => std::fs::write(&full, [*byte; 3]),
            Node::Dir => std::fs::create_dir(&full),
            Node::Link(target) => symlink(target, &full),
        };
    }
}

fn scan(dir: &Path, includes: &[String]) -> ContextSnapshot {
    scan_with(dir, &[], includes)
}

fn scan_with(dir: &Path, excludes: &[&str], includes: &[String]) -> ContextSnapshot {
    let source = ContextSource {
        name: "context".into(),
        exclude_patterns: excludes.iter().map(|s| s.to_string()).collect(),
        include_paths: includes.to_vec(),
    };
    ContextSnapshot::scan(dir, &source, &mut StatCache::in_memory()).unwrap()
}

/// What the frontend puts in `include_paths` for a COPY source.
fn include_path(source: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn narrowed_scans_see_what_the_copy_sees(
        tree in tree(),
        sources in prop::collection::vec(prop::sample::select(SOURCES), 1..3),
        excludes in prop::collection::vec(prop::sample::select(EXCLUDES), 0..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &tree);
        let full = scan_with(dir.path(), &excludes, &["/".to_string()]);
        let includes: Vec<String> = sources.iter().map(|s| include_path(s)).collect();
        let narrow = scan_with(dir.path(), &excludes, &includes);
        // Whatever the narrowed scan keeps, the full one keeps identically.
        for entry in narrow.files() {
            prop_assert_eq!(Some(entry), full.entry(&entry.path));
        }
        let expected = full.digest_of(&sources).map_err(|e| e.to_string());
        let actual = narrow.digest_of(&sources).map_err(|e| e.to_string());
        prop_assert_eq!(actual, expected, "includes {:?}, narrowed entries {:?}", includes,
            narrow.files().map(|e| e.path.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn digests_do_not_depend_on_the_location(tree in tree(), source in prop::sample::select(SOURCES)) {
        let parent = tempfile::tempdir().unwrap();
        let first = parent.path().join("x");
        std::fs::create_dir(&first).unwrap();
        build(&first, &tree);
        let before = scan(&first, &["/".to_string()]).digest_of(&[source]).map_err(|e| e.to_string());
        let second = parent.path().join("y/z");
        std::fs::create_dir(parent.path().join("y")).unwrap();
        std::fs::rename(&first, &second).unwrap();
        let after = scan(&second, &["/".to_string()]).digest_of(&[source]).map_err(|e| e.to_string());
        prop_assert_eq!(after, before);
    }
}
