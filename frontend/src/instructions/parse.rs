//! One syntax [`Node`] → one typed [`Instruction`], and a whole tree → [`Dockerfile`].

use super::flags::{FlagKind, FlagSet};
use super::suggest::did_you_mean;
use super::*;
use crate::syntax::{Heredoc, Node, SyntaxTree};

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Reads the whole tree: global ARGs, then stages.
pub fn parse_dockerfile(tree: &SyntaxTree) -> Result<Dockerfile, InstructionError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &tree.nodes {
        if node.cmd == "from" {
            let (name, base, platform) = parse_from(node)?;
            stages.push(Stage {
                index: stages.len(),
                name,
                base,
                platform,
                commands: Vec::new(),
                span: node.span,
                original: node.original.clone(),
            });
            continue;
        }
        let command = parse_instruction(node)?;
        match stages.last_mut() {
            Some(stage) => stage.commands.push(command),
            None if matches!(command.instruction, Instruction::Arg { .. }) => {
                meta_args.push(command)
            }
            None => {
                return Err(InstructionError::new(
                    node.span,
                    format!(
                        "no build stage in current context: {} must come after a FROM",
                        command.instruction.keyword()
                    ),
                ));
            }
        }
    }
    if stages.is_empty() {
        let span = tree.nodes.last().map(|n| n.span).unwrap_or(Span::line(1));
        return Err(InstructionError::new(span, "the Dockerfile has no FROM instruction"));
    }
    check_unique_stage_names(&stages)?;
    Ok(Dockerfile { meta_args, stages, escape: tree.directives.escape })
}

fn check_unique_stage_names(stages: &[Stage]) -> Result<(), InstructionError> {
    for (i, stage) in stages.iter().enumerate() {
        let Some(name) = &stage.name else { continue };
        if stages[..i].iter().any(|s| s.name.as_deref() == Some(name)) {
            return Err(InstructionError::new(
                stage.span,
                format!("duplicate stage name {name:?}"),
            ));
        }
    }
    Ok(())
}

/// `FROM [--platform=P] base [AS name]` → (name, base, platform).
fn parse_from(node: &Node) -> Result<(Option<String>, String, Option<String>), InstructionError> {
    let err = |m: String| InstructionError::new(node.span, m);
    let mut flags = FlagSet::new(&[("platform", FlagKind::String)]);
    flags.parse(&node.flags).map_err(err)?;
    let name = match node.args.as_slice() {
        [_] => None,
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            if !valid_stage_name(&lower) {
                return Err(err(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                )));
            }
            Some(lower)
        }
        _ => return Err(err("FROM requires either one or three arguments".into())),
    };
    Ok((name, node.args[0].clone(), flags.string("platform")))
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Reads one instruction other than FROM.
pub fn parse_instruction(node: &Node) -> Result<Command, InstructionError> {
    let instruction = read_instruction(node).map_err(|m| InstructionError::new(node.span, m))?;
    Ok(Command { instruction, span: node.span, original: node.original.clone() })
}

fn read_instruction(node: &Node) -> Result<Instruction, String> {
    let args = &node.args;
    let no_flags = || FlagSet::new(&[]).parse(&node.flags);
    Ok(match node.cmd.as_str() {
        "env" => {
            no_flags()?;
            Instruction::Env(key_values(args, "ENV")?)
        }
        "label" => {
            no_flags()?;
            Instruction::Label(key_values(args, "LABEL")?)
        }
        "maintainer" => {
            no_flags()?;
            Instruction::Maintainer { name: exactly_one(args, "MAINTAINER")? }
        }
        "workdir" => {
            no_flags()?;
            Instruction::Workdir { path: exactly_one(args, "WORKDIR")? }
        }
        "user" => {
            no_flags()?;
            Instruction::User { user: exactly_one(args, "USER")? }
        }
        "stopsignal" => {
            no_flags()?;
            Instruction::StopSignal { signal: exactly_one(args, "STOPSIGNAL")? }
        }
        "expose" => {
            no_flags()?;
            at_least_one(args, "EXPOSE")?;
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose { ports }
        }
        "volume" => {
            no_flags()?;
            at_least_one(args, "VOLUME")?;
            let paths: Vec<String> = args.iter().map(|v| v.trim().to_string()).collect();
            if paths.iter().any(String::is_empty) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume { paths }
        }
        "arg" => {
            no_flags()?;
            at_least_one(args, "ARG")?;
            let args = args
                .iter()
                .map(|arg| match arg.split_once('=') {
                    Some(("", _)) => Err("ARG names can not be blank".to_string()),
                    Some((key, value)) => {
                        Ok(ArgDeclaration { key: key.into(), default: Some(value.into()) })
                    }
                    None => Ok(ArgDeclaration { key: arg.clone(), default: None }),
                })
                .collect::<Result<_, _>>()?;
            Instruction::Arg { args }
        }
        "shell" => {
            no_flags()?;
            if args.is_empty() {
                return Err("SHELL requires at least one argument".into());
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            Instruction::Shell { shell: args.clone() }
        }
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(command_line(node))
        }
        "run" => read_run(node)?,
        "copy" => read_copy(node)?,
        "add" => read_add(node)?,
        "healthcheck" => read_healthcheck(node)?,
        "onbuild" => read_onbuild(node)?,
        "from" => return Err("FROM is not allowed here".into()),
        other => {
            let upper = other.to_ascii_uppercase();
            let hint = did_you_mean(&upper, KEYWORDS)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            return Err(format!("unknown instruction: {upper}{hint}"));
        }
    })
}

fn exactly_one(args: &[String], keyword: &str) -> Result<String, String> {
    match args {
        [one] => Ok(one.clone()),
        _ => Err(format!("{keyword} requires exactly one argument")),
    }
}

fn at_least_one(args: &[String], keyword: &str) -> Result<(), String> {
    if args.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    Ok(())
}

/// ENV and LABEL arguments come from the parser as (key, value, separator) triples.
fn key_values(args: &[String], keyword: &str) -> Result<KeyValues, String> {
    at_least_one(args, keyword)?;
    if !args.len().is_multiple_of(3) {
        return Err(format!("bad input to {keyword}, too many arguments"));
    }
    args.chunks(3)
        .map(|triple| {
            if triple[0].is_empty() {
                return Err(format!("{keyword} names can not be blank"));
            }
            Ok(KeyValue {
                key: triple[0].clone(),
                value: triple[1].clone(),
                legacy_form: triple[2].is_empty(),
            })
        })
        .collect()
}

fn command_line(node: &Node) -> CommandLine {
    let args = if node.json || node.args.is_empty() {
        node.args.clone()
    } else {
        vec![node.args.join(" ")]
    };
    let files = node
        .heredocs
        .iter()
        .map(|h| InlineFile { name: h.name.clone(), data: chomp(h), expand: h.expand })
        .collect();
    CommandLine { args, prepend_shell: !node.json, files }
}

/// The heredoc's body, with leading tabs removed from every line for `<<-`.
fn chomp(heredoc: &Heredoc) -> String {
    if !heredoc.chomp {
        return heredoc.content.clone();
    }
    heredoc.content.split_inclusive('\n').map(|line| line.trim_start_matches('\t')).collect()
}

fn read_run(node: &Node) -> Result<Instruction, String> {
    let mut flags = FlagSet::new(&[
        ("mount", FlagKind::List),
        ("network", FlagKind::String),
        ("security", FlagKind::String),
        ("device", FlagKind::List),
    ]);
    flags.parse(&node.flags)?;
    let network = flags
        .string("network")
        .map(|value| match value.as_str() {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!("invalid network mode {value:?}")),
        })
        .transpose()?;
    let security = flags
        .string("security")
        .map(|value| match value.as_str() {
            "sandbox" => Ok(SecurityMode::Sandbox),
            "insecure" => Ok(SecurityMode::Insecure),
            _ => Err(format!("security {value:?} is not valid")),
        })
        .transpose()?;
    let devices = flags.list("device").iter().map(|d| parse_device(d)).collect::<Result<_, _>>()?;
    Ok(Instruction::Run(Run {
        command: command_line(node),
        mounts: flags.list("mount"),
        network,
        security,
        devices,
    }))
}

/// `--device=name[,required][,name=...]` as BuildKit reads it.
fn parse_device(value: &str) -> Result<Device, String> {
    let fields =
        super::csv::fields(value).map_err(|e| format!("failed to parse csv devices: {e}"))?;
    let mut device = Device { name: String::new(), required: false };
    for field in fields {
        match field.split_once('=') {
            None if field.eq_ignore_ascii_case("required") => device.required = true,
            None if device.name.is_empty() => device.name = field,
            None => return Err(format!("invalid field '{field}' must be a key=value pair")),
            Some((key, value)) => match key.to_ascii_lowercase().as_str() {
                "name" if !device.name.is_empty() => {
                    return Err(format!("device name already set to {}", device.name));
                }
                "name" => device.name = value.to_string(),
                "required" => device.required = super::mount::parse_bool("required", value)?,
                _ if device.name.is_empty() => device.name = field.clone(),
                key => return Err(format!("unexpected key '{key}' in '{field}'")),
            },
        }
    }
    if device.name.is_empty() {
        return Err("device name is required".into());
    }
    Ok(device)
}

fn sources_and_dest(node: &Node, keyword: &str) -> Result<SourcesAndDest, String> {
    let Some((dest, sources)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    };
    if heredoc_word(dest).is_some() {
        return Err(format!("{keyword} cannot accept a heredoc as a destination"));
    }
    let mut paths = Vec::new();
    let mut inline_sources = Vec::new();
    for source in sources {
        match heredoc_word(source) {
            Some(name) if !node.json => {
                let heredoc = node
                    .heredocs
                    .iter()
                    .find(|h| h.name == name)
                    .ok_or_else(|| format!("{keyword}: no content for heredoc {name:?}"))?;
                inline_sources.push(InlineFile {
                    name: heredoc.name.clone(),
                    data: chomp(heredoc),
                    expand: heredoc.expand,
                });
            }
            _ => paths.push(source.clone()),
        }
    }
    Ok(SourcesAndDest { sources: paths, inline_sources, dest: dest.clone() })
}

/// The delimiter of a heredoc word `[fd]<<[-]NAME` (quotes around NAME removed).
pub(crate) fn heredoc_word(word: &str) -> Option<String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let unquoted: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    (!unquoted.is_empty()).then_some(unquoted)
}

fn read_copy(node: &Node) -> Result<Instruction, String> {
    let mut flags = FlagSet::new(&[
        ("chown", FlagKind::String),
        ("from", FlagKind::String),
        ("chmod", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::List),
        ("parents", FlagKind::Bool),
    ]);
    flags.parse(&node.flags)?;
    Ok(Instruction::Copy(Copy {
        paths: sources_and_dest(node, "COPY")?,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        exclude: flags.list("exclude"),
    }))
}

fn read_add(node: &Node) -> Result<Instruction, String> {
    let mut flags = FlagSet::new(&[
        ("chown", FlagKind::String),
        ("chmod", FlagKind::String),
        ("link", FlagKind::Bool),
        ("keep-git-dir", FlagKind::Bool),
        ("checksum", FlagKind::String),
        ("unpack", FlagKind::Bool),
        ("exclude", FlagKind::List),
    ]);
    flags.parse(&node.flags)?;
    Ok(Instruction::Add(Add {
        paths: sources_and_dest(node, "ADD")?,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.string("checksum"),
        unpack: flags.bool("unpack"),
        exclude: flags.list("exclude"),
    }))
}

fn read_healthcheck(node: &Node) -> Result<Instruction, String> {
    let Some((kind, rest)) = node.args.split_first() else {
        return Err("HEALTHCHECK requires at least one argument".into());
    };
    let kind = kind.to_ascii_uppercase();
    if kind == "NONE" {
        FlagSet::new(&[]).parse(&node.flags)?;
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(Instruction::Healthcheck(Healthcheck::None));
    }
    let mut flags = FlagSet::new(&[
        ("interval", FlagKind::String),
        ("timeout", FlagKind::String),
        ("start-period", FlagKind::String),
        ("start-interval", FlagKind::String),
        ("retries", FlagKind::String),
    ]);
    flags.parse(&node.flags)?;
    if kind != "CMD" {
        return Err(format!("unknown type {kind:?} in HEALTHCHECK (try CMD)"));
    }
    let command = if node.json || rest.is_empty() { rest.to_vec() } else { vec![rest.join(" ")] };
    if command.is_empty() {
        return Err("missing command after HEALTHCHECK CMD".into());
    }
    let mut test = vec![if node.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(command);
    let duration = |name: &str| -> Result<i64, String> {
        let Some(text) = flags.string(name) else { return Ok(0) };
        if text.is_empty() {
            return Ok(0);
        }
        let nanos = duration::parse_go_duration(&text)?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(format!("interval {name:?} cannot be less than 1ms"));
        }
        Ok(nanos)
    };
    let retries = match flags.string("retries").filter(|r| !r.is_empty()) {
        None => 0,
        Some(text) => {
            let value: i64 = text.parse().map_err(|_| {
                format!("strconv.ParseInt: parsing {text:?}: invalid syntax for --retries")
            })?;
            if value < 0 {
                return Err(format!("--retries cannot be negative ({value})"));
            }
            u32::try_from(value).map_err(|_| format!("--retries is too large ({value})"))?
        }
    };
    Ok(Instruction::Healthcheck(Healthcheck::Check(HealthcheckConfig {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })))
}

fn read_onbuild(node: &Node) -> Result<Instruction, String> {
    FlagSet::new(&[]).parse(&node.flags)?;
    let Some(sub) = &node.sub else {
        return Err("ONBUILD requires at least one argument".into());
    };
    match sub.cmd.as_str() {
        "onbuild" => return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "maintainer" | "from" => {
            return Err(format!(
                "{} isn't allowed as an ONBUILD trigger",
                sub.cmd.to_ascii_uppercase()
            ));
        }
        _ => {}
    }
    // Checked now so a bad trigger fails where it is written, not in a child build.
    read_instruction(sub)?;
    let mut expression = strip_onbuild_keyword(&node.original).to_string();
    for heredoc in &sub.heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Ok(Instruction::Onbuild(Onbuild { expression }))
}

fn strip_onbuild_keyword(original: &str) -> &str {
    let trimmed = original.trim_start();
    match trimmed.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => trimmed[7..].trim_start(),
        _ => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cmd: &str, flags: &[&str], args: &[&str]) -> Node {
        Node {
            cmd: cmd.into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            sub: None,
            json: false,
            original: String::new(),
            heredocs: vec![],
            span: Span::line(3),
        }
    }

    fn read(n: &Node) -> Result<Instruction, String> {
        read_instruction(n)
    }

    #[test]
    fn env_triples() {
        let env = read(&node("env", &[], &["A", "1", "=", "B", "two words", ""])).unwrap();
        let Instruction::Env(pairs) = env else { panic!() };
        assert_eq!(pairs[0], KeyValue { key: "A".into(), value: "1".into(), legacy_form: false });
        assert!(pairs[1].legacy_form);
    }

    #[test]
    fn copy_flags_and_heredoc_sources() {
        let mut n =
            node("copy", &["--from=build", "--chmod=755", "--link"], &["<<EOF", "a", "/dst/"]);
        n.heredocs.push(Heredoc {
            name: "EOF".into(),
            content: "\thello\n".into(),
            expand: true,
            chomp: false,
            fd: 0,
        });
        let Instruction::Copy(copy) = read(&n).unwrap() else { panic!() };
        assert_eq!(copy.from.as_deref(), Some("build"));
        assert!(copy.link && !copy.parents);
        assert_eq!(copy.paths.sources, ["a"]);
        assert_eq!(copy.paths.inline_sources[0].data, "\thello\n");
        assert_eq!(copy.paths.dest, "/dst/");
    }

    #[test]
    fn errors_name_the_cause() {
        let cases = [
            (
                node("copy", &[], &["onlyone"]),
                "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
            ),
            (
                node("copy", &["--form=x"], &["a", "b"]),
                "unknown flag: --form (did you mean --from?)",
            ),
            (
                node("add", &["--chown=1", "--chown=2"], &["a", "b"]),
                "duplicate flag specified: --chown",
            ),
            (node("run", &["--network=bridge"], &["x"]), "invalid network mode \"bridge\""),
            (node("run", &["--security=weird"], &["x"]), "security \"weird\" is not valid"),
            (node("workdir", &[], &["a", "b"]), "WORKDIR requires exactly one argument"),
            (node("shell", &[], &["sh -c"]), "SHELL requires the arguments to be in JSON form"),
            (node("healthcheck", &[], &["NONE", "x"]), "HEALTHCHECK NONE takes no arguments"),
            (
                node("healthcheck", &[], &["RUN", "x"]),
                "unknown type \"RUN\" in HEALTHCHECK (try CMD)",
            ),
            (
                node("healthcheck", &["--interval=10"], &["CMD", "x"]),
                "time: missing unit in duration \"10\"",
            ),
            (
                node("healthcheck", &["--timeout=1ns"], &["CMD", "x"]),
                "interval \"timeout\" cannot be less than 1ms",
            ),
            (
                node("healthcheck", &["--retries=-1"], &["CMD", "x"]),
                "--retries cannot be negative (-1)",
            ),
            (node("arg", &[], &["=x"]), "ARG names can not be blank"),
            (node("volume", &[], &[" "]), "VOLUME specified can not be an empty string"),
            (node("runn", &[], &["x"]), "unknown instruction: RUNN (did you mean RUN?)"),
            (node("env", &["--x"], &["a", "b", "="]), "unknown flag: --x"),
        ];
        for (n, message) in cases {
            assert_eq!(read(&n).unwrap_err(), message, "for {} {:?}", n.cmd, n.args);
        }
    }

    #[test]
    fn healthcheck_config() {
        let n = node(
            "healthcheck",
            &["--interval=30s", "--retries=3", "--start-period=1m"],
            &["CMD", "curl -f http://localhost/"],
        );
        let Instruction::Healthcheck(Healthcheck::Check(hc)) = read(&n).unwrap() else { panic!() };
        assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost/"]);
        assert_eq!(hc.interval, 30_000_000_000);
        assert_eq!(hc.start_period, 60_000_000_000);
        assert_eq!(hc.retries, 3);
    }

    #[test]
    fn onbuild_checks_trigger() {
        let mut n = node("onbuild", &[], &[]);
        n.original = "ONBUILD RUN echo hi".into();
        n.sub = Some(Box::new(node("run", &[], &["echo hi"])));
        let Instruction::Onbuild(o) = read(&n).unwrap() else { panic!() };
        assert_eq!(o.expression, "RUN echo hi");
        n.sub = Some(Box::new(node("from", &[], &["x"])));
        assert_eq!(read(&n).unwrap_err(), "FROM isn't allowed as an ONBUILD trigger");
        n.sub = Some(Box::new(node("copy", &["--bogus"], &["a", "b"])));
        assert_eq!(read(&n).unwrap_err(), "unknown flag: --bogus");
    }

    #[test]
    fn devices() {
        assert_eq!(
            parse_device("vendor.com/gpu=all,required").unwrap(),
            Device { name: "vendor.com/gpu=all".into(), required: true }
        );
        assert_eq!(parse_device("name=x,required=false").unwrap().name, "x");
        assert!(parse_device("").is_err());
    }

    #[test]
    fn stage_names() {
        assert!(valid_stage_name("build-1.x_y"));
        assert!(!valid_stage_name("1build"));
        assert!(!valid_stage_name("bu$ld"));
    }
}
