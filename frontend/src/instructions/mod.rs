//! Syntax nodes → typed instructions, grouped into build stages.
//!
//! [`parse_dockerfile`] reads a [`SyntaxTree`] into a [`Dockerfile`]: the global `ARG`s before
//! the first `FROM`, then one [`Stage`] per `FROM` with its [`Command`]s. Each instruction's
//! flags are checked against the flags it accepts and its arguments against its shape; the
//! error names the instruction's lines.
//!
//! Invariants: words are kept *unexpanded* (as written, quotes included, except the JSON form
//! whose strings are decoded); expansion with ARG/ENV happens during lowering, where the
//! environment is known. `RUN --mount` values are kept as written for the same reason and are
//! parsed by [`mount::parse_mount`] once expanded. Stage names are lower case.

mod csv;
pub mod duration;
mod error;
pub mod flags;
pub mod mount;
mod parse;
mod suggest;

pub use error::InstructionError;
pub use mount::{Mount, MountType, Sharing};
pub(crate) use parse::heredoc_word;
pub use parse::{parse_dockerfile, parse_instruction};
pub use suggest::did_you_mean as suggest_name;

use crate::Span;
use serde::Serialize;

/// A whole Dockerfile, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM`: visible in `FROM` lines, and in stages that redeclare them.
    pub meta_args: Vec<Command>,
    pub stages: Vec<Stage>,
    /// The escape character the file declared (`\` or `` ` ``).
    pub escape: char,
}

/// One build stage: a `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position among the file's stages, from 0 (what `COPY --from=0` refers to).
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The base: an image reference, an earlier stage's name, or `scratch` (unexpanded).
    pub base: String,
    /// `FROM --platform=...` (unexpanded).
    pub platform: Option<String>,
    pub commands: Vec<Command>,
    pub span: Span,
    pub original: String,
}

impl Stage {
    /// How progress output names the stage: its name, or its index.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub instruction: Instruction,
    pub span: Span,
    /// The instruction's text on one line, as BuildKit shows it in history and progress.
    pub original: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Instruction {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Env(KeyValues),
    Label(KeyValues),
    Maintainer { name: String },
    Add(Add),
    Copy(Copy),
    Workdir { path: String },
    User { user: String },
    Volume { paths: Vec<String> },
    Expose { ports: Vec<String> },
    StopSignal { signal: String },
    Arg { args: Vec<ArgDeclaration> },
    Shell { shell: Vec<String> },
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
}

impl Instruction {
    /// The upper-case keyword, as in error messages and history.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer { .. } => "MAINTAINER",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Workdir { .. } => "WORKDIR",
            Instruction::User { .. } => "USER",
            Instruction::Volume { .. } => "VOLUME",
            Instruction::Expose { .. } => "EXPOSE",
            Instruction::StopSignal { .. } => "STOPSIGNAL",
            Instruction::Arg { .. } => "ARG",
            Instruction::Shell { .. } => "SHELL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
        }
    }
}

/// `KEY=VALUE` pairs of ENV and LABEL (legacy `ENV KEY value` has `legacy_form` set).
pub type KeyValues = Vec<KeyValue>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written as `KEY value` rather than `KEY=value`.
    pub legacy_form: bool,
}

/// One name of an `ARG`, with its default when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDeclaration {
    pub key: String,
    pub default: Option<String>,
}

/// The command of RUN, CMD and ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string, to be run by the stage's SHELL.
    pub args: Vec<String>,
    /// True for the shell form.
    pub prepend_shell: bool,
    /// Heredoc bodies that go with the command (RUN only).
    pub files: Vec<InlineFile>,
}

/// A heredoc body attached to RUN (fed to the command) or COPY/ADD (a source file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    pub name: String,
    /// The body, with leading tabs already removed for `<<-`.
    pub data: String,
    /// Whether ARG/ENV expansion applies to the body (unquoted delimiter).
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: CommandLine,
    /// `--mount` values as written; parsed by [`mount::parse_mount`] after expansion.
    pub mounts: Vec<String>,
    /// `--network`: `default`, `none` or `host`.
    pub network: Option<NetworkMode>,
    /// `--security`: `sandbox` (default) or `insecure`.
    pub security: Option<SecurityMode>,
    /// `--device` requests (CDI device names).
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Device {
    pub name: String,
    pub required: bool,
}

/// Sources and destination shared by COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcesAndDest {
    /// Source paths (or URLs for ADD), unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`).
    pub inline_sources: Vec<InlineFile>,
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub paths: SourcesAndDest,
    /// `--from`: a stage name, a stage index, or an image reference.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub paths: SourcesAndDest,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: Option<bool>,
    pub checksum: Option<String>,
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    Check(HealthcheckConfig),
}

/// Durations in nanoseconds, 0 meaning "inherit the default", as in Docker's image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckConfig {
    /// `["CMD", argv...]` for the exec form, `["CMD-SHELL", "command"]` for the shell form.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger as it is stored in the image config and run in child builds.
    pub expression: String,
}
