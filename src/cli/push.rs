//! `kiln push REF`: pushes an image of the local store to its registry, as `docker push`
//! does; and what `kiln build` shares with it: the registry client the global flags
//! configure, and push events shown as progress.
//!
//! The image keeps its stored bytes, so the pushed digest is the one `kiln images` and the
//! build reported. Progress goes to stderr in the `--progress` format (one step, BuildKit
//! style); on success stdout gets Docker's last line, `TAG: digest: sha256:… size: N`.

use super::images::{full_reference, open_store};
use crate::export::{BlobSource, Pusher, RegistryPusher};
use crate::image::local;
use crate::registry::endpoint::InsecureRegistries;
use crate::registry::push::PushEvent;
use crate::registry::upload::BlobOutcome;
use crate::registry::{ClientOptions, Reference, RegistryClient};
use crate::solver::progress::{Event, Printer, ProgressMode, ProgressSink, StepTimer};
use anyhow::bail;
use clap::Args;
use kiln_frontend::platform::Platform;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push (NAME[:TAG]), as tagged in the local store
    #[arg(value_name = "REF")]
    reference: String,
    /// Progress output: auto|plain|tty|rawjson|quiet
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Print only the pushed reference with its digest
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(
    args: PushArgs,
    root_dir: Option<&Path>,
    insecure: &[String],
) -> anyhow::Result<ExitCode> {
    let name = full_reference(&args.reference)?;
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::parse(&args.progress, std::io::stderr().is_terminal())
            .map_err(anyhow::Error::msg)?
    };
    let root = open_store(root_dir)?;
    let _lease = root.lease()?;
    let Some((_, image)) = local::load(&root, &name, &Platform::host())? else {
        bail!("no such image: {name} (kiln images lists the local store)");
    };
    let client = registry_client(insecure)?;
    let printer = Printer::new(mode, std::io::stderr());
    let step = 1;
    let timer = StepTimer::start(&printer, step, &format!("pushing {name}"));
    let report = |event: PushEvent<'_>| report_push(&printer, step, event);
    let pusher = RegistryPusher::new(&client).progress(&report);
    let blobs = root.blobs();
    let source: &(dyn BlobSource + Sync) = &blobs;
    if let Err(err) = pusher.push(std::slice::from_ref(&name), &image, source) {
        printer.emit(Event::Failed { step, error: err.to_string() });
        bail!("cannot push {name}: {err}");
    }
    timer.done();
    let reference = Reference::parse(&name)?;
    if args.quiet {
        println!("{}@{}", reference.name(), image.manifest_digest);
    } else {
        println!(
            "{}: digest: {} size: {}",
            reference.manifest_reference(),
            image.manifest_digest,
            image.manifest_bytes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry client of a command: credentials, TLS and insecure registries from the
/// environment, plus `--insecure-registry`.
pub(super) fn registry_client(insecure: &[String]) -> anyhow::Result<RegistryClient> {
    let mut options = ClientOptions::from_env()?;
    options.insecure.extend(InsecureRegistries::new(insecure)?);
    Ok(RegistryClient::new(options))
}

/// Shows a push event as part of `step`: byte counts per blob, a note per blob and
/// manifest, in BuildKit's words.
pub(super) fn report_push(sink: &dyn ProgressSink, step: usize, event: PushEvent<'_>) {
    let text = match event {
        PushEvent::BlobProgress { descriptor, done, .. } => {
            let id = descriptor.digest.to_string();
            sink.emit(Event::Progress { step, id, current: done, total: descriptor.size });
            return;
        }
        PushEvent::BlobDone { target, descriptor, outcome } => match outcome {
            BlobOutcome::Existed => {
                format!("blob {} already exists in {}", descriptor.digest, target.name())
            }
            BlobOutcome::Mounted { from } => {
                format!("blob {} mounted from {from} into {}", descriptor.digest, target.name())
            }
            BlobOutcome::Uploaded => {
                format!("blob {} pushed to {}", descriptor.digest, target.name())
            }
        },
        PushEvent::ManifestPushed { target, digest } => {
            format!("pushing manifest for {target}@{digest} done")
        }
    };
    sink.emit(Event::Note { step, text });
}
