//! `kiln build`: flags resolved once into [`BuildSettings`], then lower → solve → export.
//!
//! Nothing is written to any output until every step succeeded: outputs are written through
//! temporary files renamed into place by the exporters, and the local store is tagged last.
//!
//! A failed step is reported at its Dockerfile line, as parse errors are. SIGINT (Ctrl-C),
//! SIGTERM and SIGHUP cancel the build: running RUN sandboxes are killed, temp files
//! removed, and kiln exits with 128 + the signal's number (130 for Ctrl-C), as the docker
//! CLI does, after `error: build canceled: received SIGINT`.

use super::diagnostic::DockerfileError;
use super::plan::{PlanArgs, PlanInput, plan_with};
use crate::export::push::base_mount_sources;
use crate::export::{Exporter, Output, RegistryPusher, prepare_image};
use crate::image::{ImageConfigFile, LayerBlob, NewLayer, Timestamp, derive_timed};
use crate::layer::Compression;
use crate::registry::reference::Reference;
use crate::solver::cancel::{Cancel, Canceled};
use crate::solver::engine::{BuildError, Engine, EngineOptions, SecretSource, StepOutput};
use crate::solver::images::Images;
use crate::solver::progress::{Event, Printer, ProgressMode, ProgressSink, StepTimer};
use crate::solver::schedule::run_graph;
use anyhow::{Context as _, bail};
use clap::Args;
use kiln_cache::Root;
use kiln_frontend::graph::Graph;
use kiln_frontend::instructions::NetworkMode;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Name and optionally a tag (NAME[:TAG]); repeatable
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Output destination: type=oci|docker|local|tar|image|registry[,dest=..][,name=..]
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Shorthand for --output=type=registry
    #[arg(long)]
    push: bool,
    /// Do not use the cache when building (results are still recorded)
    #[arg(long)]
    no_cache: bool,
    /// External cache source: REF, type=registry,ref=REF or type=local,src=DIR; repeatable
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Cache export: type=registry,ref=REF or type=local,dest=DIR [,mode=min|max]; repeatable
    #[arg(long = "cache-to")]
    cache_to: Vec<String>,
    /// Secret to expose to RUN --mount=type=secret: id=ID[,src=PATH|,env=VAR]
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// SSH agent socket to forward: default|ID[=SOCKET]
    #[arg(long = "ssh")]
    ssh: Vec<String>,
    /// Networking mode for RUN: default|none|host
    #[arg(long, default_value = "default")]
    network: String,
    /// Metadata label for the image: KEY=VALUE
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Progress output: auto|plain|tty|rawjson|quiet
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Write the image id (config digest) to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Write build result metadata to the file
    #[arg(long = "metadata-file")]
    metadata_file: Option<PathBuf>,
    /// Suppress the build output and print the image id on success
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn run(
    args: BuildArgs,
    root_dir: Option<&Path>,
    insecure: &[String],
) -> anyhow::Result<ExitCode> {
    // First, while kiln has a single thread: every thread must inherit the blocked signals.
    let cancel = watch_for_cancel();
    check_context_dir(&args.plan.context)?;
    let context_paths = args.plan.build_context_paths();
    let mut input = args.plan.resolve()?;
    input.options.default_network = match args.network.as_str() {
        "default" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => bail!("invalid --network {other:?}: expected default, none or host"),
    };
    for label in &args.labels {
        let (key, value) = label
            .split_once('=')
            .with_context(|| format!("invalid --label {label:?}: expected KEY=VALUE"))?;
        input.options.labels.insert(key.to_string(), value.to_string());
    }
    let names: Vec<String> = args
        .tags
        .iter()
        .map(|tag| {
            Reference::parse(tag)
                .map(|r| r.to_string())
                .map_err(|e| anyhow::anyhow!("invalid tag {tag:?}: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut outputs: Vec<Output> = args
        .outputs
        .iter()
        .map(|spec| Output::parse(spec).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    if args.push {
        outputs.push(Output::parse("type=registry")?);
    }
    if outputs.is_empty() {
        outputs.push(Output::parse("type=image")?);
    }
    if args.iidfile.is_some() {
        crate::export::check_iidfile_outputs(&outputs)?;
    }
    // remote cache: flags checked before any work.
    let cache_from = args
        .cache_from
        .iter()
        .map(|spec| super::cache_spec::parse_cache_from(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|spec| super::cache_spec::parse_cache_to(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::parse(&args.progress, std::io::stderr().is_terminal())
            .map_err(anyhow::Error::msg)?
    };
    let source_date_epoch = source_date_epoch(&input.options.build_args)?;
    let options = EngineOptions {
        no_cache: args.no_cache,
        compression: Compression::Gzip,
        source_date_epoch,
        secrets: parse_secrets(&args.secrets)?,
        ssh: parse_ssh(&args.ssh)?,
        context_dirs: context_dirs(
            &args.plan.context,
            &input.options.named_contexts,
            &context_paths,
        ),
    };

    let root = Root::open(super::cache::state_root_path(root_dir)?)
        .context("opening kiln's state root")?;
    let _lease = root.lease()?;
    let client = super::push::registry_client(insecure)?;
    let images = Images::new(&root, &client);
    let graph = plan_with(&input, &images)?;
    let printer = Printer::new(mode, std::io::stderr());
    for warning in &graph.warnings {
        printer.emit(Event::Message { text: format!("WARNING: {}", warning.message) });
    }
    // remote cache: --cache-from (ignored with --no-cache, as BuildKit does).
    let imported = match args.no_cache {
        true => crate::remote_cache::ImportedCache::default(),
        false => super::build_cache::import(&cache_from, &client, &printer),
    };
    let remote_cache = crate::remote_cache::CacheSession::new(&root, &client, &printer, imported);
    let engine = Engine {
        root: &root,
        graph: &graph,
        images: &images,
        progress: &printer,
        options: &options,
        stat_cache: std::sync::Mutex::new(crate::ops::context::StatCache::open(
            &root.path().join("stat-cache"),
        )?),
        cancel: &cancel,
        remote_cache: &remote_cache,
    };
    let parallelism = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
    let results =
        run_graph(&graph, &engine, parallelism).map_err(|e| step_error(&input, &graph, e))?;
    if let Ok(mut cache) = engine.stat_cache.into_inner() {
        // A stat cache that cannot be saved only costs re-hashing next time.
        if let Err(err) = cache.save() {
            printer.emit(Event::Message { text: format!("WARNING: {err}") });
        }
    }

    let target = graph.target_stage();
    let StepOutput::Rootfs(rootfs) = &results[target.root.0] else {
        bail!("the target stage has no filesystem");
    };
    let epoch = source_date_epoch.map(Timestamp::from_unix).transpose()?;
    let base = match &target.base_image {
        Some(pinned) => {
            let image =
                images.resolve_image(pinned, &target.platform).map_err(anyhow::Error::msg)?;
            ImageConfigFile::parse(&image.config_bytes)?
        }
        None => ImageConfigFile::scratch(&target.platform),
    };
    let base_layers = base.rootfs.diff_ids.len();
    if rootfs.layers.len() < base_layers {
        bail!("the target's layers do not start with its base image's");
    }
    let new_layers: Vec<NewLayer> = rootfs.layers[base_layers..]
        .iter()
        .map(|l| NewLayer { diff_id: l.diff_id, created: l.created.clone() })
        .collect();
    let mut config = derive_timed(&base, &target.image, &new_layers, epoch)?;
    if args.plan.platform_requested() {
        label_with_platform(&mut config, &graph.platform);
    }
    // Outputs are stamped with the image's own time, so equal images give equal archives.
    let created = config
        .created
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
        .or(epoch)
        .unwrap_or_else(Timestamp::now);
    let stored: Vec<LayerBlob> = rootfs
        .layers
        .iter()
        .map(|l| LayerBlob {
            digest: l.blob,
            diff_id: l.diff_id,
            size: l.size,
            media_type: l.media_type.clone(),
        })
        .collect();
    let blobs = root.blobs();
    // Pushes report as part of the output step running them.
    let push_step = AtomicUsize::new(0);
    let report_push = |event: crate::registry::push::PushEvent<'_>| {
        super::push::report_push(&printer, push_step.load(SeqCst), event)
    };
    let base_blobs = rootfs.layers[..base_layers].iter().map(|l| l.blob);
    let mut mount_sources = base_mount_sources(target.base_image.as_deref(), base_blobs);
    // remote cache: layers of cache hits may be mounted from the cache's repositories.
    for (digest, repositories) in super::build_cache::mount_sources(&remote_cache, &rootfs.layers) {
        mount_sources.entry(digest).or_default().extend(repositories);
    }
    let pusher = RegistryPusher::new(&client).mount_sources(mount_sources).progress(&report_push);
    let work_dir = root.work_dir()?;
    let mut last = None;
    let mut image_id = None;
    for (i, output) in outputs.iter().enumerate() {
        // Each output is a progress step after the graph's, as BuildKit shows its exporters.
        let step = graph.steps.len() + 1 + i;
        cancel.check()?;
        let timer = StepTimer::start(&printer, step, export_step_name(output));
        push_step.store(step, SeqCst);
        let exported = (|| {
            // remote cache: layers of cache hits are fetched when an output needs them; a
            // push reads a layer only when the registry has it neither already nor by mount.
            let lazy = crate::remote_cache::export::LazyBlobs::new(
                &remote_cache,
                crate::solver::progress::StepReporter::new(&printer, step),
            );
            let source: &dyn crate::export::BlobSource = match output {
                Output::Registry { .. } => &lazy,
                _ => {
                    super::build_cache::fetch_layers(
                        &remote_cache,
                        &rootfs.layers,
                        &printer,
                        step,
                    )?;
                    &blobs
                }
            };
            let exporter = Exporter::new(source, &work_dir, created)
                .source_date_epoch(source_date_epoch)
                .store(&root)
                .pusher(&pusher);
            let options = output.image().cloned().unwrap_or_default();
            let output_names = if options.names.is_empty() {
                names.clone()
            } else {
                options
                    .names
                    .iter()
                    .map(|n| {
                        Reference::parse(n)
                            .map(|r| r.to_string())
                            .map_err(|e| anyhow::anyhow!("invalid name {n:?}: {e}"))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let image = prepare_image(&options, &config, &stored, output_names, source, &blobs)?;
            let response = exporter.export(output, &image)?;
            anyhow::Ok((image, response))
        })();
        let (image, response) = match exported {
            Ok(done) => done,
            Err(err) => {
                printer.emit(Event::Failed { step, error: format!("{err:#}") });
                return Err(err);
            }
        };
        if output.produces_image() {
            let note = |text: String| printer.emit(Event::Note { step, text });
            note(format!("writing image {} done", image.manifest_digest));
            for name in &image.names {
                note(format!("naming to {name} done"));
            }
        }
        timer.done();
        image_id = Some((image.config_digest, image.manifest_digest));
        last = Some(response);
    }
    // remote cache: --cache-to, after every output succeeded; then keep used records.
    let first_cache_step = graph.steps.len() + 1 + outputs.len();
    let report_cache_push = |step, event: crate::registry::push::PushEvent<'_>| {
        super::push::report_push(&printer, step, event)
    };
    let uploader = crate::remote_cache::registry_upload::RegistryCacheUploader::new(&client)
        .progress(&report_cache_push);
    super::build_cache::export_all(
        &cache_to,
        &graph,
        &remote_cache,
        &uploader,
        &printer,
        first_cache_step,
    )?;
    super::build_cache::persist(&remote_cache, &printer);
    if let Some(response) = &last {
        if let Some(path) = &args.iidfile {
            crate::export::write_iidfile(path, response)?;
        }
        if let Some(path) = &args.metadata_file {
            crate::export::write_metadata_file(path, response)?;
        }
    }
    if let Some((config_digest, manifest_digest)) = image_id {
        if args.quiet {
            println!("{config_digest}");
        } else {
            printer.emit(Event::Message {
                text: format!("image {config_digest} (manifest {manifest_digest})"),
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// BuildKit's name for an exporter's progress step.
fn export_step_name(output: &Output) -> &'static str {
    match output {
        Output::Oci { .. } => "exporting to oci image format",
        Output::Docker { .. } => "exporting to docker image format",
        Output::Local { .. } => "exporting to client directory",
        Output::Tar { .. } => "exporting to client tarball",
        Output::Image { .. } | Output::Registry { .. } => "exporting to image",
    }
}

/// The context must be a directory (BuildKit's wording); checked before the Dockerfile is
/// looked for in it, so that a mistyped path is named as such.
fn check_context_dir(context: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(context) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            bail!("unable to prepare context: context must be a directory: {}", context.display())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("unable to prepare context: path {:?} not found", context.display().to_string())
        }
        Err(err) => bail!("unable to prepare context: {}: {err}", context.display()),
    }
}

/// How long kiln waits after a termination signal for the build to stop by itself before
/// it exits anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Cancels the build on SIGINT, SIGTERM or SIGHUP: running sandboxes are killed at once and
/// the build stops with [`Canceled`] after cleaning up. A step that cannot be interrupted
/// (a pull, a large COPY) does not hold kiln hostage: after [`CANCEL_GRACE`] it exits
/// anyway, leaving only temp entries that a later run sweeps (sandboxes die with it).
/// Further signals change nothing (the watcher is waiting out the grace period): a
/// terminal's Ctrl-C reaches a rootless kiln twice, from the terminal and forwarded by its
/// parent.
fn watch_for_cancel() -> Arc<Cancel> {
    let cancel = Arc::new(Cancel::default());
    let watcher = Arc::clone(&cancel);
    super::signals::watch(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], move |signal| {
        watcher.cancel(signal);
        std::thread::sleep(CANCEL_GRACE);
        let canceled = Canceled { signal };
        eprintln!("error: {canceled}; still busy after {}s, exiting", CANCEL_GRACE.as_secs());
        std::process::exit(canceled.exit_code().into());
    });
    cancel
}

/// A failed step as users read it: the Dockerfile line it comes from and the cause, shown
/// like a parse error (BuildKit's `Dockerfile:3` with the source excerpt); steps with no
/// line (internal ones) are named instead.
fn step_error(input: &PlanInput, graph: &Graph, error: BuildError) -> anyhow::Error {
    match error {
        BuildError::Canceled(canceled) => canceled.into(),
        BuildError::Step { step, name, message } => {
            match graph.step(step).meta.span.filter(|span| span.is_known()) {
                Some(span) => DockerfileError::new(
                    &input.dockerfile_name,
                    &input.dockerfile_text,
                    Some(span),
                    &message,
                )
                .into(),
                None => anyhow::anyhow!("{name}: {message}"),
            }
        }
    }
}

/// An explicit `--platform` is the image's platform even when the base image is for
/// another one (BuildKit labels the result with the target and warns about the base).
fn label_with_platform(config: &mut ImageConfigFile, platform: &kiln_frontend::platform::Platform) {
    let same = config.os == platform.os && config.architecture == platform.architecture;
    config.os = platform.os.clone();
    config.architecture = platform.architecture.clone();
    if platform.variant.is_some() || !same {
        config.variant = platform.variant.clone().unwrap_or_default();
    }
    if !same {
        config.os_version.clear();
    }
}

fn source_date_epoch(build_args: &BTreeMap<String, String>) -> anyhow::Result<Option<i64>> {
    let value = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {v:?}: expected seconds since 1970")
        }),
    }
}

/// `--secret id=ID[,src=PATH|,source=PATH|,env=VAR]`; with neither, the file or environment
/// variable named like the id.
pub fn parse_secrets(values: &[String]) -> anyhow::Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for value in values {
        let (mut id, mut source) = (None, None);
        for field in value.split(',') {
            let (key, v) = field.split_once('=').with_context(|| {
                format!("invalid --secret {value:?}: {field:?} is not KEY=VALUE")
            })?;
            match key {
                "id" => id = Some(v.to_string()),
                "src" | "source" => source = Some(SecretSource::File(PathBuf::from(v))),
                "env" => source = Some(SecretSource::Env(v.to_string())),
                "type" if v == "file" || v == "env" => {}
                _ => bail!("invalid --secret {value:?}: unknown key {key:?}"),
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .with_context(|| format!("invalid --secret {value:?}: id is required"))?;
        let source = source.unwrap_or_else(|| {
            if std::env::var_os(&id).is_some() {
                SecretSource::Env(id.clone())
            } else {
                SecretSource::File(PathBuf::from(&id))
            }
        });
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ssh default` (the agent in `$SSH_AUTH_SOCK`) or `--ssh ID=SOCKET`.
pub fn parse_ssh(values: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for value in values {
        let (id, socket) = match value.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let socket = std::env::var_os("SSH_AUTH_SOCK")
                    .with_context(|| format!("--ssh {value}: SSH_AUTH_SOCK is not set"))?;
                (value.clone(), PathBuf::from(socket))
            }
        };
        if !socket.exists() {
            bail!("--ssh {value}: {} does not exist", socket.display());
        }
        out.insert(id, socket);
    }
    Ok(out)
}

fn context_dirs(
    main: &Path,
    named: &BTreeMap<String, kiln_frontend::lower::NamedContext>,
    paths: &BTreeMap<String, PathBuf>,
) -> BTreeMap<String, PathBuf> {
    let mut dirs = BTreeMap::new();
    dirs.insert("context".to_string(), main.to_path_buf());
    for (name, kind) in named {
        if let (kiln_frontend::lower::NamedContext::Local, Some(path)) = (kind, paths.get(name)) {
            dirs.insert(name.clone(), path.clone());
        }
    }
    dirs
}
