//! Build arguments: the predefined platform args, `--build-arg` overrides, global (pre-FROM)
//! ARGs, and the proxy variables that reach RUN without being declared.

use super::{LowerError, LowerOptions};
use crate::instructions::{Command, Instruction};
use crate::platform::Platform;
use crate::shell::Lexer;

/// An ordered environment: setting an existing key replaces its value in place.
pub type Env = Vec<(String, String)>;

pub fn set(env: &mut Env, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

pub fn get<'e>(env: &'e Env, key: &str) -> Option<&'e str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Args that are always defined, whether or not the Dockerfile declares them.
pub const PREDEFINED: &[&str] = &[
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// Build args that RUN sees without an ARG, and that stay out of history and cache keys.
pub const PROXY_ARGS: &[&str] =
    &["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"];

pub fn is_proxy_arg(key: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(key))
}

/// Values of the predefined args, overridden by `--build-arg`.
pub fn predefined(options: &LowerOptions, target_stage: &str) -> Env {
    let format = |p: &Platform| p.to_string();
    let build = &options.build_platform;
    let target = &options.target_platform;
    let values = [
        ("BUILDPLATFORM", format(build)),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", format(target)),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
        ("TARGETSTAGE", target_stage.to_string()),
    ];
    let mut env = Env::new();
    for (key, value) in values {
        let value = options.build_args.get(key).cloned().unwrap_or(value);
        set(&mut env, key, &value);
    }
    env
}

/// Adds the global ARGs (those before the first FROM) to `env`: a `--build-arg` value wins,
/// else the default expanded with the args before it; an ARG with neither stays undefined.
pub fn add_meta_args(
    env: &mut Env,
    meta_args: &[Command],
    options: &LowerOptions,
    lexer: &Lexer,
) -> Result<(), LowerError> {
    for command in meta_args {
        let Instruction::Arg { args } = &command.instruction else { continue };
        for arg in args {
            let value = match (options.build_args.get(&arg.key), &arg.default) {
                (Some(value), _) => Some(value.clone()),
                (None, Some(default)) => Some(
                    lexer
                        .process_word(default, env)
                        .map_err(|e| LowerError::at(command.span, e.to_string()))?
                        .value,
                ),
                (None, None) => None,
            };
            if let Some(value) = value {
                set(env, &arg.key, &value);
            }
        }
    }
    Ok(())
}

/// `KEY=value` proxy variables given as build args, in a stable order.
pub fn proxy_env(options: &LowerOptions) -> Vec<String> {
    options
        .build_args
        .iter()
        .filter(|(k, _)| is_proxy_arg(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}
