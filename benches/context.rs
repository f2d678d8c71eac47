//! Context scan throughput: a synthetic context hashed cold (empty stat cache) and warm (every
//! file known to the stat cache, so nothing is read).
//!
//! The tree is generated once per run under a temporary directory, or in
//! `KILN_BENCH_CONTEXT_DIR` (generated there if missing or empty, then reused). Its shape comes from the environment so a bigger tree can be measured
//! without editing code (see `scripts/bench-context`):
//!
//! - `KILN_BENCH_FILES` — number of files (default 2000)
//! - `KILN_BENCH_MB` — total size in MiB (default 50); sizes are skewed like a real tree,
//!   many small files and a few big ones.
//!
//! `cargo bench --bench context`; each measured iteration is one full
//! `ContextSnapshot::scan`. A "cold" iteration reads every file from the page cache (the
//! tree is read once before measuring), which is what `sha256sum` on the same tree sees too.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::ops::context::{ContextSnapshot, StatCache};
use kiln_frontend::graph::ContextSource;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deterministic pseudo-random generator (xorshift), so every run builds the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// File sizes summing to `total`: most files small, a tail of larger ones.
fn file_sizes(files: u64, total: u64, rng: &mut Rng) -> Vec<u64> {
    let weights: Vec<u64> = (0..files)
        .map(|i| if i % 50 == 0 { 200 + rng.next() % 800 } else { 1 + rng.next() % 20 })
        .collect();
    let sum: u64 = weights.iter().sum();
    weights.iter().map(|w| total * w / sum).collect()
}

/// Writes the tree: files spread over nested directories, mtimes set an hour back so the
/// stat cache trusts them (see the racy-timestamp rule in `stat_cache`).
pub fn generate(root: &Path, files: u64, total_bytes: u64) -> std::io::Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let mut block = vec![0u8; 1 << 20];
    for byte in block.iter_mut() {
        *byte = rng.next() as u8;
    }
    for (i, size) in file_sizes(files, total_bytes, &mut rng).into_iter().enumerate() {
        let dir = root.join(format!("d{:02}/s{:02}", i % 37, (i / 37) % 13));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("file{i:06}.dat"));
        let mut file = std::fs::File::create(&path)?;
        let mut left = size;
        let mut offset = i % 4096;
        while left > 0 {
            let n = left.min((block.len() - offset) as u64) as usize;
            file.write_all(&block[offset..offset + n])?;
            left -= n as u64;
            offset = 0;
        }
        file.set_modified(an_hour_ago)?;
    }
    Ok(())
}

/// The context to scan: `KILN_BENCH_CONTEXT_DIR` if set (generated there first if it is
/// missing or empty, and kept), else a temporary directory.
fn context_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    let files = env_number("KILN_BENCH_FILES", 2000);
    let bytes = env_number("KILN_BENCH_MB", 50) << 20;
    if let Ok(dir) = std::env::var("KILN_BENCH_CONTEXT_DIR") {
        let dir = PathBuf::from(dir);
        let empty = std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
        if empty {
            generate(&dir, files, bytes).expect("generate the context");
        }
        return (dir, None);
    }
    let temp = tempfile::tempdir().expect("temporary directory");
    generate(temp.path(), files, bytes).expect("generate the context");
    (temp.path().to_path_buf(), Some(temp))
}

fn scan(dir: &Path, cache: &mut StatCache) -> ContextSnapshot {
    let source = ContextSource {
        name: "context".into(),
        exclude_patterns: Vec::new(),
        include_paths: vec!["/".into()],
    };
    ContextSnapshot::scan(dir, &source, cache).expect("scan")
}

fn bench_scan(c: &mut Criterion) {
    let (dir, _keep) = context_dir();
    // Fresh files are not trusted by the stat cache until they are older than its racy
    // window (their ctime is now); wait that out so the warm runs measure the warm path.
    std::thread::sleep(Duration::from_millis(200));
    // Once to fill the page cache and learn the size.
    let first = scan(&dir, &mut StatCache::in_memory());
    let bytes = first.stats().file_bytes;
    eprintln!("context: {} files, {} MiB at {}", first.stats().files, bytes >> 20, dir.display());

    let mut group = c.benchmark_group("context_scan");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter(|| {
            let snapshot = scan(&dir, &mut StatCache::in_memory());
            assert_eq!(snapshot.stats().files_hashed, snapshot.stats().files);
            black_box(snapshot.digest_of(&["/"]).expect("digest"))
        })
    });
    let mut warm = StatCache::in_memory();
    scan(&dir, &mut warm);
    group.bench_function("warm", |b| {
        b.iter(|| {
            let snapshot = scan(&dir, &mut warm);
            assert_eq!(snapshot.stats().files_hashed, 0, "every file comes from the stat cache");
            black_box(snapshot.digest_of(&["/"]).expect("digest"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_scan);
criterion_main!(benches);
