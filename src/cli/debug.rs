//! `kiln debug ...`: print what the frontend makes of its inputs.

use anyhow::Context;
use clap::Subcommand;
use kiln_frontend::platform::Platform;
use kiln_frontend::syntax::{self, SyntaxError};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a platform string normalised (the host's when none is given)
    Platform {
        /// os[/arch[/variant]]
        platform: Option<String>,
    },
    /// Print the build graph of a Dockerfile as JSON (base images are not looked up)
    Plan(super::plan::PlanArgs),
    /// Print a Dockerfile's syntax tree as BuildKit's parser sees it
    Parse {
        /// Print the conformance JSON (`ok`, `error`, `escape`, `warnings`, `instructions`)
        /// instead of BuildKit's dump lines
        #[arg(long)]
        json: bool,
        /// The Dockerfile (`-` reads standard input)
        file: PathBuf,
    },
    /// Run one command in a sandbox over the given layers (for testing the sandbox)
    #[command(hide = true)]
    Run(Box<super::debug_run::DebugRunArgs>),
    /// Print kiln's identity as the engine sees it: ids, id maps, privilege context
    #[command(hide = true)]
    Whoami,
    /// Create an empty file owned by the given ids, as the engine would (for testing ids)
    #[command(hide = true)]
    Touch(super::debug_identity::TouchArgs),
}

impl DebugCommand {
    /// Whether the command runs engine code that needs root over the id range.
    pub fn needs_root_in_userns(&self) -> bool {
        match self {
            DebugCommand::Run(args) => !args.no_userns,
            DebugCommand::Whoami | DebugCommand::Touch(_) => true,
            DebugCommand::Platform { .. } | DebugCommand::Plan(_) | DebugCommand::Parse { .. } => {
                false
            }
        }
    }
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCommand::Platform { platform } => {
            let platform = match platform {
                Some(text) => Platform::parse(&text)?,
                None => Platform::host(),
            };
            println!("{platform}");
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::Plan(args) => super::plan::run(args),
        DebugCommand::Parse { json, file } => parse(&file, json),
        DebugCommand::Run(args) => super::debug_run::run(*args),
        DebugCommand::Whoami => super::debug_identity::whoami(),
        DebugCommand::Touch(args) => super::debug_identity::touch(&args),
    }
}

/// `kiln debug parse`: exit 0 when the file parses, 1 (with the error) when it does not.
fn parse(file: &PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let (name, bytes) = if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("reading the Dockerfile from stdin")?;
        ("<stdin>".to_string(), bytes)
    } else {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        (file.display().to_string(), bytes)
    };
    let result = syntax::parse_bytes(&bytes);

    let mut out = std::io::stdout().lock();
    if json {
        let value = syntax::to_oracle_json(&result);
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        if let Err(err) = &result {
            eprintln!("error: {}", located(&name, err));
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match result {
        Ok(tree) => {
            for warning in &tree.warnings {
                eprintln!("warning: {name}: {}: {}", warning.span, warning.message);
            }
            for node in &tree.nodes {
                writeln!(out, "{}", syntax::dump(node))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => Err(anyhow::anyhow!(located(&name, &err))),
    }
}

/// `FILE: line N: message`.
fn located(name: &str, err: &SyntaxError) -> String {
    format!("{name}: {}: {err}", err.span())
}
