//! Times a COPY of many small files into a rootfs of several layers:
//! `cargo run --release --example copy_bench -- [files] [layers]` (as root).

use kiln::fs::{MergedRoot, Time};
use kiln::ops::copy::{CopyOptions, CopySource, copy_into_layer, sha256_content, source_digest};
use kiln_frontend::graph::{CopyOp, CopySourceRef, StepId};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().map(|a| a.parse().expect("files")).unwrap_or(20_000);
    let layers: usize = args.next().map(|a| a.parse().expect("layers")).unwrap_or(5);
    let tmp = tempfile::tempdir().expect("temp dir");
    let context = tmp.path().join("context");
    for i in 0..files {
        let dir = context.join(format!("src/d{}", i / 100));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("f{i}.txt")), format!("file {i}\n")).expect("write");
    }
    let mut dirs = Vec::new();
    for l in 0..layers {
        let dir = tmp.path().join(format!("layer{l}"));
        std::fs::create_dir_all(dir.join("app/src")).expect("mkdir");
        std::fs::create_dir_all(dir.join(format!("usr/l{l}"))).expect("mkdir");
        dirs.push(dir);
    }
    let dest = MergedRoot::new(dirs).expect("dest");
    let source = MergedRoot::plain(&context).expect("context");
    let op = CopyOp {
        dest_parent: StepId(0),
        source: CopySourceRef::Step(StepId(1)),
        sources: vec![".".into()],
        inline_sources: vec![],
        dest: "/app/".into(),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: vec![],
        add: None,
    };
    let start = Instant::now();
    let digest = source_digest(&op, CopySource::Context(&source), &sha256_content).expect("digest");
    println!("digest of {files} files: {:?} ({digest})", start.elapsed());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let start = Instant::now();
    let options = CopyOptions { created_time: Time { sec: 0, nsec: 0 }, ..CopyOptions::default() };
    let report =
        copy_into_layer(&op, CopySource::Context(&source), &dest, &out, &options).expect("copy");
    println!("copy of {} files over {layers} layers: {:?}", report.files, start.elapsed());
}
