//! One stage's instructions → steps and image-config edits.

use super::LowerError;
use super::args::{self, Env};
use super::paths::{clean, normalize_workdir, resolve_against};
use super::stages::{Lowering, SourceRef};
use crate::Span;
use crate::graph::{
    AddOptions, CopyOp, CopySourceRef, Healthcheck, HistoryEntry, ImageConfig, InlineFileMount,
    InlineSource, Op, RunMount, RunOp, StageImage, StageResult, StepId, StepMeta,
};
use crate::instructions::duration::format_go_duration;
use crate::instructions::{
    Command, CommandLine, Healthcheck as HealthInstruction, Instruction, KeyValue, MountType,
    NetworkMode, Run, SecurityMode, SourcesAndDest,
};
use crate::platform::Platform;
use crate::shell::Lexer;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage while its instructions are dispatched.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub root: StepId,
    pub config: ImageConfig,
    pub author: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// The environment of expansion and RUN: image env, ENV and ARG values, in order.
    pub env: Env,
    /// ARGs declared in scope with their values, for RUN's history line.
    pub build_args: Vec<(String, Option<String>)>,
    pub platform: Platform,
    /// The pinned image at the bottom of this stage's chain of bases.
    pub base_image: Option<String>,
    cmd_set: bool,
    display: String,
    step_index: usize,
    step_total: usize,
}

impl StageState {
    pub fn new(
        root: StepId,
        mut config: ImageConfig,
        platform: Platform,
        display: String,
        step_total: usize,
    ) -> Self {
        if config.env_value("PATH").is_none() && platform.os != "windows" {
            config.set_env("PATH", DEFAULT_PATH);
        }
        let env = config
            .env
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        config.on_build.clear();
        StageState {
            root,
            config,
            author: None,
            history: Vec::new(),
            env,
            build_args: Vec::new(),
            platform,
            base_image: None,
            cmd_set: false,
            display,
            step_index: 0,
            step_total,
        }
    }

    /// A stage built `FROM` this one: same filesystem, config (without ONBUILD triggers),
    /// environment and ARGs; a fresh step count.
    pub fn inherit(&self, display: String, step_total: usize) -> Self {
        let mut child = self.clone();
        child.config.on_build.clear();
        child.cmd_set = false;
        child.display = display;
        child.step_index = 0;
        child.step_total = step_total;
        child
    }

    /// `[stage i/n] TEXT`, or `[i/n] TEXT` when the file has one stage.
    pub fn next_step_name(&mut self, single_stage: bool, text: &str) -> String {
        self.step_index += 1;
        if single_stage {
            format!("[{}/{}] {text}", self.step_index, self.step_total)
        } else {
            format!("[{} {}/{}] {text}", self.display, self.step_index, self.step_total)
        }
    }

    fn workdir(&self) -> String {
        self.config.working_dir.clone().unwrap_or_else(|| "/".into())
    }

    fn commit(&mut self, created_by: String, with_layer: bool) {
        self.history.push(HistoryEntry { created_by, empty_layer: !with_layer });
    }

    pub fn into_result(self, index: usize, name: Option<String>) -> StageResult {
        StageResult {
            index,
            name,
            root: self.root,
            platform: self.platform,
            base_image: self.base_image,
            image: StageImage { config: self.config, author: self.author, history: self.history },
        }
    }
}

impl Lowering<'_> {
    pub(super) fn dispatch_stage(
        &mut self,
        index: usize,
        mut state: StageState,
        commands: &[Command],
    ) -> Result<StageState, LowerError> {
        for command in commands {
            self.dispatch(index, &mut state, command).map_err(|e| {
                if e.span.is_none() { LowerError::at(command.span, e.message) } else { e }
            })?;
        }
        Ok(state)
    }

    fn expand(&self, state: &StageState, word: &str, span: Span) -> Result<String, LowerError> {
        self.lexer
            .process_word(word, &state.env)
            .map(|e| e.value)
            .map_err(|e| LowerError::at(span, e.to_string()))
    }

    fn expand_opt(
        &self,
        state: &StageState,
        word: &Option<String>,
        span: Span,
    ) -> Result<Option<String>, LowerError> {
        word.as_ref().map(|w| self.expand(state, w, span)).transpose()
    }

    fn step_meta(&self, state: &mut StageState, command: &Command) -> StepMeta {
        let text = uppercase_keyword(&command.original);
        StepMeta {
            name: state.next_step_name(self.single_stage, &text),
            span: Some(command.span),
            stage: Some(state.display.clone()),
        }
    }

    fn dispatch(
        &mut self,
        index: usize,
        state: &mut StageState,
        command: &Command,
    ) -> Result<(), LowerError> {
        let span = command.span;
        match &command.instruction {
            Instruction::Env(pairs) => {
                let mut line = String::from("ENV");
                for (key, value) in self.expand_pairs(state, pairs, span)? {
                    args::set(&mut state.env, &key, &value);
                    state.config.set_env(&key, &value);
                    line.push_str(&format!(" {key}={value}"));
                }
                state.commit(line, false);
            }
            Instruction::Label(pairs) => {
                let mut line = String::from("LABEL");
                for (key, value) in self.expand_pairs(state, pairs, span)? {
                    line.push_str(&format!(" {key}={value}"));
                    state.config.labels.insert(key, value);
                }
                state.commit(line, false);
            }
            Instruction::Maintainer { name } => {
                state.author = Some(name.clone());
                state.commit(format!("MAINTAINER {name}"), false);
            }
            Instruction::Workdir { path } => {
                let path = self.expand(state, path, span)?;
                let workdir = normalize_workdir(state.config.working_dir.as_deref(), &path);
                state.config.working_dir = Some(workdir.clone());
                let with_layer = workdir != "/";
                if with_layer {
                    let meta = self.step_meta(state, command);
                    let op = Op::Mkdir {
                        parent: state.root,
                        path: workdir.clone(),
                        mode: 0o755,
                        user: state.config.user.clone(),
                    };
                    state.root = self.push_step(op, meta);
                } else {
                    state.step_index += 1;
                }
                state.commit(format!("WORKDIR {workdir}"), with_layer);
            }
            Instruction::User { user } => {
                let user = self.expand(state, user, span)?;
                state.commit(format!("USER {user}"), false);
                state.config.user = Some(user);
            }
            Instruction::Volume { paths } => {
                let mut expanded = Vec::new();
                for path in paths {
                    let path = self.expand(state, path, span)?;
                    if path.is_empty() {
                        return Err(LowerError::at(
                            span,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    state.config.volumes.insert(path.clone());
                    expanded.push(path);
                }
                state.commit(format!("VOLUME [{}]", expanded.join(" ")), false);
            }
            Instruction::Expose { ports } => {
                let mut expanded = Vec::new();
                for port in ports {
                    let value = self.expand(state, port, span)?;
                    for word in value.split_whitespace() {
                        for spec in expose_ports(word).map_err(|e| LowerError::at(span, e))? {
                            state.config.exposed_ports.insert(spec.clone());
                            expanded.push(spec);
                        }
                    }
                }
                // BuildKit prints the ports as a Go slice, in the (sorted) order written.
                state.commit(format!("EXPOSE [{}]", expanded.join(" ")), false);
            }
            Instruction::StopSignal { signal } => {
                let signal = self.expand(state, signal, span)?;
                check_signal(&signal).map_err(|e| LowerError::at(span, e))?;
                state.commit(format!("STOPSIGNAL {signal}"), false);
                state.config.stop_signal = Some(signal);
            }
            Instruction::Arg { args: declared } => {
                let mut parts = Vec::new();
                for arg in declared {
                    self.declared_args.insert(arg.key.clone());
                    let value = match (self.options.build_args.get(&arg.key), &arg.default) {
                        (Some(value), _) => Some(value.clone()),
                        (None, Some(default)) => Some(self.expand(state, default, span)?),
                        (None, None) => args::get(&self.global_args, &arg.key).map(str::to_string),
                    };
                    if let Some(value) = &value {
                        args::set(&mut state.env, &arg.key, value);
                    }
                    parts.push(match &value {
                        Some(v) => format!("{}={v}", arg.key),
                        None => arg.key.clone(),
                    });
                    state.build_args.push((arg.key.clone(), value));
                }
                state.commit(format!("ARG {}", parts.join(" ")), false);
            }
            Instruction::Shell { shell } => {
                state.config.shell = shell.clone();
                state.commit(format!("SHELL [{}]", shell.join(" ")), false);
            }
            Instruction::Cmd(line) => {
                let args = self.with_shell(state, line);
                state.commit(format!("CMD {}", go_quote_list(&args)), false);
                state.config.cmd = Some(args);
                state.config.args_escaped = true;
                state.cmd_set = true;
            }
            Instruction::Entrypoint(line) => {
                let args = self.with_shell(state, line);
                state.commit(format!("ENTRYPOINT {}", go_quote_list(&args)), false);
                state.config.entrypoint = if args.is_empty() { None } else { Some(args) };
                if !state.cmd_set {
                    state.config.cmd = None;
                }
            }
            Instruction::Healthcheck(check) => {
                let health = match check {
                    HealthInstruction::None => Healthcheck {
                        test: vec!["NONE".into()],
                        interval: 0,
                        timeout: 0,
                        start_period: 0,
                        start_interval: 0,
                        retries: 0,
                    },
                    HealthInstruction::Check(c) => Healthcheck {
                        test: c.test.clone(),
                        interval: c.interval,
                        timeout: c.timeout,
                        start_period: c.start_period,
                        start_interval: c.start_interval,
                        retries: c.retries,
                    },
                };
                state.commit(format!("HEALTHCHECK {}", healthcheck_history(&health)), false);
                state.config.healthcheck = Some(health);
            }
            Instruction::Onbuild(onbuild) => state.config.on_build.push(onbuild.expression.clone()),
            Instruction::Run(run) => self.dispatch_run(index, state, command, run)?,
            Instruction::Copy(copy) => {
                let source = match &copy.from {
                    Some(from) => Some(self.source_ref(from, index, span)?),
                    None => None,
                };
                let spec = CopySpec {
                    keyword: "COPY",
                    paths: &copy.paths,
                    from: source,
                    chown: &copy.chown,
                    chmod: &copy.chmod,
                    link: copy.link,
                    parents: copy.parents,
                    exclude: &copy.exclude,
                    add: None,
                };
                self.dispatch_copy(state, command, spec)?;
            }
            Instruction::Add(add) => {
                let checksum = self.expand_opt(state, &add.checksum, span)?;
                let spec = CopySpec {
                    keyword: "ADD",
                    paths: &add.paths,
                    from: None,
                    chown: &add.chown,
                    chmod: &add.chmod,
                    link: add.link,
                    parents: false,
                    exclude: &add.exclude,
                    add: Some(AddOptions {
                        unpack: add.unpack,
                        checksum,
                        keep_git_dir: add.keep_git_dir,
                    }),
                };
                self.dispatch_copy(state, command, spec)?;
            }
        }
        Ok(())
    }

    fn expand_pairs(
        &self,
        state: &StageState,
        pairs: &[KeyValue],
        span: Span,
    ) -> Result<Vec<(String, String)>, LowerError> {
        pairs
            .iter()
            .map(|kv| {
                Ok((self.expand(state, &kv.key, span)?, self.expand(state, &kv.value, span)?))
            })
            .collect()
    }

    /// The shell form gets the stage's SHELL (or `/bin/sh -c`) in front.
    fn with_shell(&self, state: &StageState, line: &CommandLine) -> Vec<String> {
        if !line.prepend_shell {
            return line.args.clone();
        }
        let mut args = if state.config.shell.is_empty() {
            default_shell(&state.platform)
        } else {
            state.config.shell.clone()
        };
        args.push(line.args.join(" "));
        args
    }

    fn dispatch_run(
        &mut self,
        stage: usize,
        state: &mut StageState,
        command: &Command,
        run: &Run,
    ) -> Result<(), LowerError> {
        let span = command.span;
        let mut line = run.command.clone();
        let mut inline_files = Vec::new();
        if !run.command.files.is_empty() {
            let [text] = line.args.as_slice() else {
                return Err(LowerError::at(span, "parsing produced an invalid run command"));
            };
            let first = &run.command.files[0];
            if crate::instructions::heredoc_word(text).is_some() {
                if first.data.starts_with("#!") && state.platform.os != "windows" {
                    let path = format!("/dev/pipes/{}", first.name);
                    inline_files.push(InlineFileMount {
                        path: path.clone(),
                        data: first.data.clone(),
                        mode: 0o755,
                    });
                    line.args = vec![path];
                } else {
                    line.args = vec![first.data.clone()];
                }
            } else {
                let mut script = text.clone();
                for file in &run.command.files {
                    script.push('\n');
                    script.push_str(&file.data);
                    script.push_str(&file.name);
                }
                line.args = vec![script];
            }
        }
        let args = self.with_shell(state, &line);
        let mut mounts = Vec::new();
        let mut ssh_count = 0;
        for raw in &run.mounts {
            let env = state.env.clone();
            let lexer = self.lexer.clone();
            let mount = crate::instructions::mount::parse_mount(raw, &mut |v| {
                lexer.process_word(v, &env).map(|e| e.value).map_err(|e| e.to_string())
            })
            .map_err(|e| LowerError::at(span, e))?;
            mounts.push(self.run_mount(stage, state, mount, &mut ssh_count, span)?);
        }
        let env: Vec<String> = state.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let network = match run.network.unwrap_or(NetworkMode::Default) {
            NetworkMode::Default => self.options.default_network,
            other => other,
        };
        let history = run_history(&args, &state.build_args, &state.env);
        let op = Op::Run(RunOp {
            rootfs: state.root,
            args,
            env,
            user: state.config.user.clone(),
            workdir: state.workdir(),
            network,
            security: run.security.unwrap_or(SecurityMode::Sandbox),
            mounts,
            devices: run.devices.clone(),
            inline_files,
            proxy_env: args::proxy_env(self.options),
        });
        let meta = self.step_meta(state, command);
        state.root = self.push_step(op, meta);
        state.commit(format!("RUN {history} # buildkit"), true);
        Ok(())
    }

    fn run_mount(
        &mut self,
        stage: usize,
        state: &StageState,
        mount: crate::instructions::Mount,
        ssh_count: &mut usize,
        span: Span,
    ) -> Result<RunMount, LowerError> {
        let workdir = state.workdir();
        let absolute = |target: &str| -> String {
            if target.starts_with('/') {
                clean(target)
            } else {
                clean(&format!("/{workdir}/{target}"))
            }
        };
        let mut out = RunMount {
            kind: mount.kind,
            target: String::new(),
            source: None,
            source_path: clean(&format!("/{}", mount.source.clone().unwrap_or_default())),
            readonly: mount.readonly,
            id: mount.id.clone(),
            sharing: mount.sharing,
            mode: mount.mode,
            uid: mount.uid,
            gid: mount.gid,
            size_limit: mount.size_limit,
            required: mount.required,
            env: mount.env.clone(),
        };
        match mount.kind {
            MountType::Secret => {
                let id = match (&mount.source, &mount.id, &mount.target) {
                    (Some(source), _, _) => source.clone(),
                    (None, Some(id), _) if !id.is_empty() => id.clone(),
                    (_, _, Some(target)) => basename(target),
                    _ => return Err(LowerError::at(span, "one of source, target required")),
                };
                out.target = match &mount.target {
                    Some(target) => absolute(target),
                    None if mount.env.is_some() => String::new(),
                    None => format!("/run/secrets/{}", basename(&id)),
                };
                out.id = Some(id);
                out.source_path = "/".into();
                out.mode = Some(mount.mode.unwrap_or(0o400));
                return Ok(out);
            }
            MountType::Ssh => {
                out.id = Some(
                    mount.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "default".into()),
                );
                out.target = match &mount.target {
                    Some(target) => absolute(target),
                    None => format!("/run/buildkit/ssh_agent.{ssh_count}"),
                };
                *ssh_count += 1;
                out.mode = Some(mount.mode.unwrap_or(0o600));
                out.source_path = "/".into();
                return Ok(out);
            }
            _ => {}
        }
        out.target = absolute(mount.target.as_deref().unwrap_or(""));
        if out.target == "/" {
            return Err(LowerError::at(span, format!("invalid mount target {:?}", out.target)));
        }
        match mount.kind {
            MountType::Tmpfs => {}
            MountType::Cache => {
                if out.id.as_deref().is_none_or(str::is_empty) {
                    out.id = Some(clean(mount.target.as_deref().unwrap_or("")));
                }
                out.source = Some(match &mount.from {
                    None => self.scratch_step(),
                    Some(from) => self.source_step(stage, from, &out.source_path, span)?,
                });
            }
            _ => {
                out.source = Some(match &mount.from {
                    None => {
                        self.context_paths
                            .entry("context".into())
                            .or_default()
                            .insert(out.source_path.clone());
                        self.context_step("context")
                    }
                    Some(from) => self.source_step(stage, from, &out.source_path, span)?,
                });
            }
        }
        Ok(out)
    }

    /// The step behind a `--from`, recording which context paths it reads.
    fn source_step(
        &mut self,
        stage: usize,
        from: &str,
        path: &str,
        span: Span,
    ) -> Result<StepId, LowerError> {
        Ok(match self.source_ref(from, stage, span)? {
            SourceRef::Stage(index) => match &self.states[index] {
                Some(source) => source.root,
                None => {
                    return Err(LowerError::at(
                        span,
                        format!(
                            "cannot copy from stage {from:?}, it needs to be defined before current stage"
                        ),
                    ));
                }
            },
            SourceRef::Image(reference) => {
                let platform = self.stage_platform(stage);
                let name = format!("[internal] load image {reference}");
                self.image_step(&reference, &platform, name, Some(span))
            }
            SourceRef::Context(name) => {
                self.context_paths.entry(name.clone()).or_default().insert(path.to_string());
                self.context_step(&name)
            }
        })
    }

    fn dispatch_copy(
        &mut self,
        state: &mut StageState,
        command: &Command,
        spec: CopySpec<'_>,
    ) -> Result<(), LowerError> {
        let span = command.span;
        let keyword = spec.keyword;
        let dest = self.expand(state, &spec.paths.dest, span)?;
        let dest = resolve_against(&state.workdir(), &dest);
        let chown = self.expand_opt(state, spec.chown, span)?.filter(|c| !c.is_empty());
        let chmod = self.expand_opt(state, spec.chmod, span)?.filter(|c| !c.is_empty());
        if let Some(mode) = &chmod {
            check_chmod(mode).map_err(|e| LowerError::at(span, e))?;
        }
        let mut sources = Vec::new();
        for source in &spec.paths.sources {
            let source = self.expand(state, source, span)?;
            if spec.add.is_none() && is_url(&source) {
                return Err(LowerError::at(span, "source can't be a URL for COPY"));
            }
            sources.push(source);
        }
        if let Some(add) = &spec.add
            && add.checksum.is_some()
        {
            if sources.len() != 1 {
                return Err(LowerError::at(
                    span,
                    "checksum can't be specified for multiple sources",
                ));
            }
            if !is_url(&sources[0]) && !is_git(&sources[0]) {
                return Err(LowerError::at(span, "checksum requires HTTP(S) or Git sources"));
            }
        }
        let mut inline_sources = Vec::new();
        for file in &spec.paths.inline_sources {
            let data = if file.expand {
                let mut raw = Lexer::new('\\');
                raw.skip_process_quotes = true;
                raw.process_word(&file.data, &state.env)
                    .map_err(|e| LowerError::at(span, e.to_string()))?
                    .value
            } else {
                file.data.clone()
            };
            inline_sources.push(InlineSource { name: file.name.clone(), data });
        }
        let local: Vec<&String> = sources.iter().filter(|s| !is_url(s) && !is_git(s)).collect();
        let source = match &spec.from {
            Some(SourceRef::Stage(index)) => CopySourceRef::Step(
                self.states[*index].as_ref().expect("earlier stages are dispatched first").root,
            ),
            Some(SourceRef::Image(reference)) => {
                let platform = state.platform.clone();
                let name = format!("[internal] load image {reference}");
                CopySourceRef::Step(self.image_step(reference, &platform, name, Some(span)))
            }
            Some(SourceRef::Context(name)) => {
                let paths = self.context_paths.entry(name.clone()).or_default();
                paths.extend(local.iter().map(|s| clean(&format!("/{s}"))));
                CopySourceRef::Step(self.context_step(name))
            }
            None if local.is_empty() => CopySourceRef::None,
            None => {
                let paths = self.context_paths.entry("context".into()).or_default();
                paths.extend(local.iter().map(|s| clean(&format!("/{s}"))));
                CopySourceRef::Step(self.context_step("context"))
            }
        };
        let mut history = String::from(keyword);
        if spec.parents {
            history.push_str(" --parents");
        }
        if let Some(chown) = &chown {
            history.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &chmod {
            history.push_str(&format!(" --chmod={chmod}"));
        }
        for source in sources.iter().chain(inline_sources.iter().map(|s| &s.name)) {
            history.push(' ');
            history.push_str(source);
        }
        history.push_str(&format!(" {} # buildkit", spec.paths.dest));
        // BuildKit links only without `--chmod`; with it, `--link` is a plain copy.
        let link = spec.link && chmod.is_none();
        let op = Op::Copy(CopyOp {
            dest_parent: state.root,
            source,
            sources,
            inline_sources,
            dest,
            chown,
            chmod,
            link,
            parents: spec.parents,
            exclude: spec.exclude.to_vec(),
            add: spec.add,
        });
        let meta = self.step_meta(state, command);
        state.root = self.push_step(op, meta);
        state.commit(history, true);
        Ok(())
    }
}

struct CopySpec<'a> {
    keyword: &'static str,
    paths: &'a SourcesAndDest,
    from: Option<SourceRef>,
    chown: &'a Option<String>,
    chmod: &'a Option<String>,
    link: bool,
    parents: bool,
    exclude: &'a [String],
    add: Option<AddOptions>,
}

fn default_shell(platform: &Platform) -> Vec<String> {
    if platform.os == "windows" {
        vec!["cmd".into(), "/S".into(), "/C".into()]
    } else {
        vec!["/bin/sh".into(), "-c".into()]
    }
}

fn basename(path: &str) -> String {
    let cleaned = clean(path);
    cleaned.rsplit('/').next().unwrap_or("").to_string()
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn is_git(source: &str) -> bool {
    source.starts_with("git@")
        || source.starts_with("git://")
        || (is_url(source) && (source.contains(".git#") || source.ends_with(".git")))
}

/// The instruction keyword upper-cased, the rest as written.
pub(super) fn uppercase_keyword(original: &str) -> String {
    let trimmed = original.trim();
    match trimmed.split_once(char::is_whitespace) {
        Some((keyword, rest)) => format!("{} {}", keyword.to_ascii_uppercase(), rest.trim_start()),
        None => trimmed.to_ascii_uppercase(),
    }
}

/// RUN's history line: `|N K=V ... argv`, as BuildKit writes it when ARGs are in scope.
fn run_history(args: &[String], build_args: &[(String, Option<String>)], env: &Env) -> String {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (key, value) in build_args {
        let value =
            args::get(env, key).map(str::to_string).or_else(|| value.clone()).unwrap_or_default();
        match seen.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => seen.push((key.clone(), value)),
        }
    }
    let mut parts: Vec<String> = Vec::new();
    if !seen.is_empty() {
        parts.push(format!("|{}", seen.len()));
        parts.extend(seen.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%+v` of Docker's `HealthcheckConfig`, as BuildKit writes it into the history:
/// `{Test:[CMD-SHELL exit 0] Interval:1s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}`.
fn healthcheck_history(health: &Healthcheck) -> String {
    format!(
        "{{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        health.test.join(" "),
        format_go_duration(health.interval),
        format_go_duration(health.timeout),
        format_go_duration(health.start_period),
        format_go_duration(health.start_interval),
        health.retries
    )
}

/// `EXPOSE` values: `80`, `80/udp`, `8000-8010/tcp` → `PORT/PROTO` entries.
fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    if ports.contains(':') {
        return Err(format!("invalid containerPort: {word}: EXPOSE takes no host port"));
    }
    let parse = |p: &str| -> Result<u16, String> {
        p.parse::<u16>().map_err(|_| format!("invalid containerPort: {p}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid range specified for containerPort: {ports}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// STOPSIGNAL takes a signal name (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or number.
fn check_signal(signal: &str) -> Result<(), String> {
    if let Ok(number) = signal.parse::<u32>() {
        return if (1..=64).contains(&number) {
            Ok(())
        } else {
            Err(format!("invalid signal: {signal}"))
        };
    }
    let name = signal.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let realtime = |rest: &str| rest.is_empty() || rest.parse::<u32>().is_ok_and(|n| n <= 30);
    let ok = SIGNALS.contains(&name)
        || name.strip_prefix("RTMIN").is_some_and(|r| realtime(r.trim_start_matches(['+', '-'])))
        || name.strip_prefix("RTMAX").is_some_and(|r| realtime(r.trim_start_matches(['+', '-'])));
    if ok { Ok(()) } else { Err(format!("invalid signal: {signal}")) }
}

/// `--chmod`: octal up to 07777, or a symbolic mode (`u+x,go=rX`).
fn check_chmod(mode: &str) -> Result<(), String> {
    if mode.chars().all(|c| c.is_ascii_digit()) {
        return match u32::from_str_radix(mode, 8) {
            Ok(value) if value <= 0o7777 => Ok(()),
            _ => Err(format!(
                "invalid chmod parameter: '{mode}'. it should be octal string and between 0 and 07777"
            )),
        };
    }
    for clause in mode.split(',') {
        let ops_start = clause
            .find(['+', '-', '='])
            .ok_or_else(|| format!("invalid chmod parameter: '{mode}'"))?;
        let (who, rest) = clause.split_at(ops_start);
        if !who.chars().all(|c| "ugoa".contains(c)) {
            return Err(format!("invalid chmod parameter: '{mode}'"));
        }
        if !rest.chars().all(|c| "+-=rwxXstugo".contains(c)) {
            return Err(format!("invalid chmod parameter: '{mode}'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(expose_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose_ports("8000-8002").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(expose_ports("80/xyz").is_err());
        assert!(expose_ports("eighty").is_err());
        assert!(expose_ports("9-1").is_err());
    }

    #[test]
    fn healthcheck_history_is_gos_struct_format() {
        let health = Healthcheck {
            test: vec!["CMD".into(), "bin".into(), "-c".into(), "exit 0".into()],
            interval: 1_000_000_000,
            timeout: 10_000_000_000,
            start_period: 3_000_000_000,
            start_interval: 100_000_000,
            retries: 5,
        };
        assert_eq!(
            healthcheck_history(&health),
            "{Test:[CMD bin -c exit 0] Interval:1s Timeout:10s StartPeriod:3s StartInterval:100ms Retries:5}"
        );
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "SIGUSR1"] {
            assert_eq!(check_signal(ok), Ok(()), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", ""] {
            assert!(check_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chmods() {
        for ok in ["755", "0644", "7777", "u+x", "go-w,a=rX", "+x"] {
            assert_eq!(check_chmod(ok), Ok(()), "{ok}");
        }
        for bad in ["8", "17777", "u*x", "z+x"] {
            assert!(check_chmod(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_of_run() {
        let env: Env = vec![("A".into(), "1".into())];
        let args = vec!["/bin/sh".to_string(), "-c".into(), "make".into()];
        assert_eq!(run_history(&args, &[], &env), "/bin/sh -c make");
        assert_eq!(
            run_history(&args, &[("A".into(), Some("0".into()))], &env),
            "|1 A=1 /bin/sh -c make"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote_list(&["a b".into(), "\"q\"".into()]), "[\"a b\" \"\\\"q\\\"\"]");
    }
}
