//! `kiln debug plan`: the build graph the frontend makes of a Dockerfile and context, as JSON.
//!
//! Base images are not looked up: every image resolves to itself with an empty config
//! ([`OfflineResolver`]), so the plan shows what the Dockerfile itself says.

use super::diagnostic::DockerfileError;
use anyhow::Context as _;
use clap::Args;
use kiln_frontend::dockerignore::IgnoreFile;
use kiln_frontend::instructions::parse_dockerfile;
use kiln_frontend::lower::{LowerOptions, NamedContext, OfflineResolver, lower};
use kiln_frontend::platform::Platform;
use kiln_frontend::syntax;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Dockerfile (default: CONTEXT/Dockerfile; `-` reads standard input)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Stage to build (default: the last)
    #[arg(long)]
    target: Option<String>,
    /// KEY=VALUE, or KEY to take the value from the environment
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// Target platform, os/arch[/variant] (default: the host's)
    #[arg(long)]
    platform: Option<String>,
    /// NAME=PATH | NAME=docker-image://REF | NAME=oci-layout://PATH[:TAG]
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// The build context directory
    pub(super) context: PathBuf,
}

/// Everything `kiln build` and `kiln debug plan` read before lowering, resolved once.
pub struct PlanInput {
    pub dockerfile_name: String,
    pub dockerfile_text: String,
    pub options: LowerOptions,
}

impl PlanArgs {
    /// Host directories of `--build-context NAME=PATH` local contexts.
    pub fn build_context_paths(&self) -> BTreeMap<String, PathBuf> {
        self.build_contexts
            .iter()
            .filter_map(|value| value.split_once('='))
            .filter(|(_, source)| !source.contains("://"))
            .map(|(name, source)| (name.to_string(), PathBuf::from(source)))
            .collect()
    }

    /// Whether `--platform` was given (the image is then labelled with it, as BuildKit does).
    pub fn platform_requested(&self) -> bool {
        self.platform.is_some()
    }

    pub fn resolve(&self) -> anyhow::Result<PlanInput> {
        let (name, text) = read_dockerfile(self.file.as_deref(), &self.context)?;
        let mut options = LowerOptions { target: self.target.clone(), ..Default::default() };
        if let Some(platform) = &self.platform {
            options.target_platform = Platform::parse(platform)?;
        }
        options.build_args = parse_build_args(&self.build_args)?;
        options.named_contexts = parse_named_contexts(&self.build_contexts)?;
        options.dockerignore = read_dockerignore(&self.context, &name)?;
        Ok(PlanInput { dockerfile_name: name, dockerfile_text: text, options })
    }
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let input = args.resolve()?;
    let graph = plan(&input)?;
    for warning in &graph.warnings {
        match warning.span {
            Some(span) => eprintln!(
                "warning: {}:{}: {}",
                input.dockerfile_name, span.start_line, warning.message
            ),
            None => eprintln!("warning: {}", warning.message),
        }
    }
    println!("{}", serde_json::to_string_pretty(&graph)?);
    Ok(ExitCode::SUCCESS)
}

/// Parses and lowers without looking base images up.
pub fn plan(input: &PlanInput) -> Result<kiln_frontend::graph::Graph, DockerfileError> {
    plan_with(input, &OfflineResolver)
}

/// Parses and lowers, turning every frontend error into a located diagnostic.
pub fn plan_with(
    input: &PlanInput,
    resolver: &dyn kiln_frontend::lower::ImageResolver,
) -> Result<kiln_frontend::graph::Graph, DockerfileError> {
    let (file, text) = (&input.dockerfile_name, &input.dockerfile_text);
    let tree = syntax::parse(text)
        .map_err(|e| DockerfileError::new(file, text, Some(e.span()), &e.to_string()))?;
    let dockerfile = parse_dockerfile(&tree)
        .map_err(|e| DockerfileError::new(file, text, Some(e.span), &e.message))?;
    lower(&dockerfile, &input.options, resolver)
        .map_err(|e| DockerfileError::new(file, text, e.span, &e.message))
}

fn read_dockerfile(file: Option<&Path>, context: &Path) -> anyhow::Result<(String, String)> {
    if file == Some(Path::new("-")) {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the Dockerfile from stdin")?;
        return Ok(("Dockerfile".into(), text));
    }
    let path = file.map(Path::to_path_buf).unwrap_or_else(|| context.join("Dockerfile"));
    let bytes = std::fs::read(&path)
        .with_context(|| format!("failed to read dockerfile {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the Dockerfile is not valid UTF-8", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// `<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's `.dockerignore`.
fn read_dockerignore(context: &Path, dockerfile: &str) -> anyhow::Result<Vec<String>> {
    let beside = format!("{dockerfile}.dockerignore");
    let in_context = context.join(".dockerignore");
    for path in [PathBuf::from(beside), in_context] {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let ignore = IgnoreFile::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                // Display keeps an exception's `!` (`text` is the pattern without it).
                return Ok(ignore.patterns().iter().map(ToString::to_string).collect());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(Vec::new())
}

pub fn parse_build_args(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some(("", _)) => anyhow::bail!("invalid --build-arg {arg:?}: the name is empty"),
            Some((key, value)) => {
                out.insert(key.to_string(), value.to_string());
            }
            None => {
                if let Ok(value) = std::env::var(arg) {
                    out.insert(arg.clone(), value);
                }
            }
        }
    }
    Ok(out)
}

pub fn parse_named_contexts(values: &[String]) -> anyhow::Result<BTreeMap<String, NamedContext>> {
    let mut out = BTreeMap::new();
    for value in values {
        let Some((name, source)) =
            value.split_once('=').filter(|(n, s)| !n.is_empty() && !s.is_empty())
        else {
            anyhow::bail!("invalid --build-context {value:?}: expected NAME=VALUE");
        };
        let context = if let Some(reference) = source.strip_prefix("docker-image://") {
            NamedContext::Image(reference.to_string())
        } else if let Some(layout) = source.strip_prefix("oci-layout://") {
            NamedContext::OciLayout(layout.to_string())
        } else if source.contains("://") {
            anyhow::bail!("invalid --build-context {value:?}: unsupported source {source:?}");
        } else {
            NamedContext::Local
        };
        out.insert(name.to_string(), context);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::read_dockerignore;

    #[test]
    fn dockerignore_exceptions_keep_their_bang() {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join(".dockerignore"), "# c\n*.env\n!keep.env\n/logs/\n")
            .unwrap();
        let dockerfile = context.path().join("Dockerfile").display().to_string();
        let patterns = read_dockerignore(context.path(), &dockerfile).unwrap();
        assert_eq!(patterns, ["*.env", "!keep.env", "logs"]);
    }
}
