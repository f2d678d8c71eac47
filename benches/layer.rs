//! Writing a layer of N small files, gzip and zstd, into a sink that discards the bytes.
//! Small on purpose: it tracks the per-entry cost (walk, headers, hashing, compression).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::layer::{Compression, DiffSource, WriteOptions, write_layer};
use std::fs;

const FILES: usize = 200;
const FILE_SIZE: usize = 4096;

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for d in 0..10 {
        let sub = dir.path().join(format!("dir{d:02}"));
        fs::create_dir(&sub).expect("mkdir");
        for f in 0..FILES / 10 {
            let content: Vec<u8> =
                (0..FILE_SIZE).map(|i| ((i * 31 + f * 7 + d) % 251) as u8).collect();
            fs::write(sub.join(format!("file{f:03}")), content).expect("write");
        }
    }
    dir
}

fn write_layers(c: &mut Criterion) {
    let dir = tree();
    let mut group = c.benchmark_group("write_layer");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(3));
    group.throughput(Throughput::Bytes((FILES * FILE_SIZE) as u64));
    for (name, compression) in [("gzip", Compression::Gzip), ("zstd", Compression::Zstd)] {
        let opts = WriteOptions { compression, source_date_epoch: Some(0), ..Default::default() };
        group.bench_function(format!("{FILES}_files_{name}"), |b| {
            b.iter(|| {
                write_layer(DiffSource::Directory(dir.path()), &opts, std::io::sink())
                    .expect("layer")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, write_layers);
criterion_main!(benches);
