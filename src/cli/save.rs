//! `kiln save REF [-o FILE] [--format oci|docker]`: writes a stored image as an archive,
//! with the same exporters as `kiln build -o type=oci|docker`.
//!
//! `oci` (the default) is an OCI image layout tarball whose `index.json` names the image
//! (`org.opencontainers.image.ref.name` = the tag, `io.containerd.image.name` = the full
//! name); `docker` adds `manifest.json` so `docker load` and `podman load` read it. The
//! image keeps its stored bytes, so its config and manifest digests are the store's.
//! The file is written through a temp file renamed into place: nothing is left on failure.
//! Without `-o` the archive goes to stdout, unless stdout is a terminal.

use super::images::{full_reference, open_store};
use crate::export::{Destination, Exporter, ImageOutput, Output};
use crate::image::Timestamp;
use crate::image::local;
use anyhow::bail;
use clap::{Args, ValueEnum};
use kiln_frontend::platform::Platform;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The image to save (NAME[:TAG])
    #[arg(value_name = "REF")]
    reference: String,
    /// Write to FILE (`-` = stdout) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value_t = SaveFormat::Oci)]
    format: SaveFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SaveFormat {
    /// OCI image layout tarball
    Oci,
    /// docker-loadable tarball (OCI layout plus manifest.json)
    Docker,
}

pub fn run(args: SaveArgs, root_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let reference = full_reference(&args.reference)?;
    let dest = match args.output.as_deref() {
        Some(path) if path != Path::new("-") => Destination::File(path.to_path_buf()),
        _ if std::io::stdout().is_terminal() => {
            bail!("refusing to write an image archive to a terminal: use -o FILE or redirect")
        }
        _ => Destination::Stdout,
    };
    let root = open_store(root_dir)?;
    let _lease = root.lease()?;
    let Some((stored, image)) = local::load(&root, &reference, &Platform::host())? else {
        bail!("no such image: {reference}");
    };
    let options = ImageOutput {
        names: image.names.clone(),
        compression: None,
        media_types: image.media_types,
    };
    let output = match args.format {
        SaveFormat::Oci => Output::Oci { dest, image: options },
        SaveFormat::Docker => Output::Docker { dest, image: options },
    };
    let blobs = root.blobs();
    // The layout's creation annotation is the image's, so saving twice gives the same bytes.
    let created = stored.created.unwrap_or_else(Timestamp::now);
    Exporter::new(&blobs, root.path().join("tmp"), created).export(&output, &image)?;
    Ok(ExitCode::SUCCESS)
}
