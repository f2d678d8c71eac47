//! Command-line interface: clap types, and the dispatch of each subcommand.
//!
//! Arguments are parsed once here; each subcommand resolves them into its own settings
//! before doing any work. Errors reach [`main`] as `anyhow::Error` and become exit code 1
//! (clap's usage errors keep clap's exit code 2); a build canceled by a signal exits with
//! 128 + its number.

mod build;
mod build_cache;
mod cache;
mod cache_spec;
mod debug;
mod debug_identity;
mod debug_run;
mod diagnostic;
mod images;
mod login;
mod plan;
mod push;
mod rmi;
mod save;
mod signals;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Daemonless, rootless, Dockerfile-compatible image builder"
)]
pub struct Cli {
    /// State root: image store and build cache [default: /var/lib/kiln as root, else
    /// $XDG_DATA_HOME/kiln or ~/.local/share/kiln]
    #[arg(long, global = true, env = "KILN_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    /// Registry that may be reached over plain HTTP or with an unverified certificate
    /// (HOST[:PORT] or an IP range); repeatable
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "KILN_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    insecure_registries: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile and a context directory
    Build(Box<build::BuildArgs>),
    /// Inspect how kiln reads a Dockerfile
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Manage the build cache and store: du, prune, verify
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// List the images in the local store
    Images(images::ImagesArgs),
    /// Remove tags from the local store (blobs go at the next `kiln cache prune`)
    Rmi(rmi::RmiArgs),
    /// Write an image of the local store as an OCI or docker archive
    Save(save::SaveArgs),
    /// Push an image of the local store to its registry
    Push(push::PushArgs),
    /// Log in to a registry (saved where Docker keeps its credentials)
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Internal: the sandbox helper kiln re-executes itself as (spec on descriptor 3)
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit,
}

impl Command {
    /// Whether the command must run as root over a full id range (it touches the state root
    /// or runs the engine): an unprivileged kiln then re-executes itself in a user namespace.
    fn needs_root_in_userns(&self) -> bool {
        match self {
            Command::Build(_) | Command::Cache(_) => true,
            Command::Debug(cmd) => cmd.needs_root_in_userns(),
            // They read the store and rewrite index.json: no id range needed.
            Command::Images(_) | Command::Rmi(_) | Command::Save(_) | Command::Push(_) => false,
            Command::Login(_) | Command::Logout(_) => false,
            Command::SandboxInit => false,
        }
    }
}

/// Entry point of the `kiln` binary.
pub fn main() -> ExitCode {
    // Before anything else, while single-threaded: a kiln re-executed by
    // `ensure_root_or_reexec` enters its user namespace here.
    if let Err(err) = crate::userns::complete_reexec() {
        if !err.is_reported_by_parent() {
            eprintln!("error: {err}");
        }
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if cli.command.needs_root_in_userns() {
        match crate::userns::ensure_root_or_reexec(std::env::args_os()) {
            Ok(None) => {}
            Ok(Some(code)) => return code,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match cli.command {
        Command::Build(args) => build::run(*args, cli.root.as_deref(), &cli.insecure_registries),
        Command::Debug(cmd) => debug::run(cmd),
        Command::Cache(cmd) => cache::run(cmd, cli.root.as_deref()),
        Command::Images(args) => images::run(args, cli.root.as_deref()),
        Command::Rmi(args) => rmi::run(args, cli.root.as_deref()),
        Command::Save(args) => save::run(args, cli.root.as_deref()),
        Command::Push(args) => push::run(args, cli.root.as_deref(), &cli.insecure_registries),
        Command::Login(args) => login::login(args, &cli.insecure_registries),
        Command::Logout(args) => login::logout(args),
        Command::SandboxInit => return ExitCode::from(crate::sandbox::init::main() as u8),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(canceled) = err.downcast_ref::<crate::solver::cancel::Canceled>() {
                eprintln!("error: {canceled}");
                return ExitCode::from(canceled.exit_code());
            }
            match err.downcast_ref::<diagnostic::DockerfileError>() {
                // Already rendered with its title and source lines.
                Some(located) => eprintln!("{located}"),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
