//! Which stages the target needs, what each stage starts from, and the order they run in.

use super::args::{self, Env};
use super::dispatch::StageState;
use super::{ImageResolver, LowerError, LowerOptions, NamedContext, ResolvedImage};
use crate::graph::{ContextSource, Graph, GraphWarning, ImageConfig, Op, Step, StepId, StepMeta};
use crate::instructions::{Command, Dockerfile, Instruction, Stage};
use crate::platform::Platform;
use crate::shell::Lexer;
use crate::{Span, syntax};
use std::collections::{BTreeMap, BTreeSet};

/// What a stage's FROM names, once expanded.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference (or a named context standing for an image).
    Image(String),
    /// A named local context.
    Context(String),
}

/// What `COPY --from` or `--mount from=` points at.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SourceRef {
    Stage(usize),
    Image(String),
    Context(String),
}

pub(crate) struct Lowering<'a> {
    pub(super) dockerfile: &'a Dockerfile,
    pub(super) options: &'a LowerOptions,
    resolver: &'a dyn ImageResolver,
    pub(super) lexer: Lexer,
    pub(super) global_args: Env,
    pub(super) steps: Vec<Step>,
    bases: Vec<Base>,
    platforms: Vec<Option<Platform>>,
    /// Per stage: ONBUILD triggers of its base, then its own commands.
    commands: Vec<Option<Vec<Command>>>,
    resolved: BTreeMap<usize, ResolvedImage>,
    pub(super) states: Vec<Option<StageState>>,
    image_steps: BTreeMap<(String, Platform), StepId>,
    context_steps: BTreeMap<String, StepId>,
    pub(super) context_paths: BTreeMap<String, BTreeSet<String>>,
    scratch: Option<StepId>,
    pub(super) warnings: Vec<GraphWarning>,
    pub(super) declared_args: BTreeSet<String>,
    pub(super) single_stage: bool,
}

impl<'a> Lowering<'a> {
    pub fn new(
        dockerfile: &'a Dockerfile,
        options: &'a LowerOptions,
        resolver: &'a dyn ImageResolver,
    ) -> Result<Self, LowerError> {
        let lexer = Lexer::new(dockerfile.escape);
        let target_name = match &options.target {
            Some(t) => t.clone(),
            None => dockerfile.stages.last().and_then(|s| s.name.clone()).unwrap_or_default(),
        };
        let target_name = if target_name.is_empty() { "default".into() } else { target_name };
        let mut global_args = args::predefined(options, &target_name);
        args::add_meta_args(&mut global_args, &dockerfile.meta_args, options, &lexer)?;
        let mut declared_args = BTreeSet::new();
        for command in &dockerfile.meta_args {
            if let Instruction::Arg { args } = &command.instruction {
                declared_args.extend(args.iter().map(|a| a.key.clone()));
            }
        }
        let count = dockerfile.stages.len();
        let mut lowering = Lowering {
            dockerfile,
            options,
            resolver,
            lexer,
            global_args,
            steps: Vec::new(),
            bases: Vec::with_capacity(count),
            platforms: Vec::with_capacity(count),
            commands: vec![None; count],
            resolved: BTreeMap::new(),
            states: (0..count).map(|_| None).collect(),
            image_steps: BTreeMap::new(),
            context_steps: BTreeMap::new(),
            context_paths: BTreeMap::new(),
            scratch: None,
            warnings: Vec::new(),
            declared_args,
            single_stage: count == 1,
        };
        for stage in &dockerfile.stages {
            let base = lowering.read_base(stage)?;
            let platform = lowering.read_platform(stage)?;
            lowering.bases.push(base);
            lowering.platforms.push(platform);
        }
        Ok(lowering)
    }

    fn expand_global(&self, word: &str, span: Span) -> Result<String, LowerError> {
        self.lexer
            .process_word(word, &self.global_args)
            .map(|e| e.value)
            .map_err(|e| LowerError::at(span, e.to_string()))
    }

    fn read_base(&self, stage: &Stage) -> Result<Base, LowerError> {
        let name = self.expand_global(&stage.base, stage.span)?;
        if name.is_empty() {
            return Err(LowerError::at(
                stage.span,
                format!("base name ({}) should not be blank", stage.base),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if let Some(earlier) =
            self.dockerfile.stages[..stage.index].iter().find(|s| s.name.as_deref() == Some(&lower))
        {
            return Ok(Base::Stage(earlier.index));
        }
        if let Some(named) = self.options.named_contexts.get(&name) {
            return Ok(named_context_base(&name, named));
        }
        if name == "scratch" {
            return Ok(Base::Scratch);
        }
        super::validate_reference(&name).map_err(|e| {
            LowerError::at(stage.span, format!("failed to parse stage name {name:?}: {e}"))
        })?;
        Ok(Base::Image(name))
    }

    fn read_platform(&self, stage: &Stage) -> Result<Option<Platform>, LowerError> {
        let Some(raw) = &stage.platform else { return Ok(None) };
        let value = self.expand_global(raw, stage.span)?;
        if value.is_empty() {
            return Err(LowerError::at(
                stage.span,
                format!("empty platform value from expression {raw}"),
            ));
        }
        Platform::parse(&value)
            .map(Some)
            .map_err(|e| LowerError::at(stage.span, format!("failed to parse platform {raw}: {e}")))
    }

    /// The stage `--target` names, or the last one.
    fn target_index(&self) -> Result<usize, LowerError> {
        let stages = &self.dockerfile.stages;
        let Some(target) = &self.options.target else { return Ok(stages.len() - 1) };
        let wanted = target.to_ascii_lowercase();
        if let Some(stage) = stages.iter().find(|s| s.name.as_deref() == Some(&wanted)) {
            return Ok(stage.index);
        }
        let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
        let hint = crate::instructions::suggest_name(target, &names)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        Err(LowerError::global(format!("target stage {target:?} could not be found{hint}")))
    }

    /// Resolves what `COPY --from` / `--mount from=` names, as seen from stage `current`.
    pub(super) fn source_ref(
        &self,
        from: &str,
        current: usize,
        span: Span,
    ) -> Result<SourceRef, LowerError> {
        let literal = self.lexer.process_word(from, &Env::new()).map(|e| e.value);
        if literal.as_deref() != Ok(from) {
            return Err(LowerError::at(
                span,
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ));
        }
        let stages = &self.dockerfile.stages;
        let index = match from.parse::<i64>() {
            Ok(index) => {
                if index < 0 || index as usize >= stages.len() {
                    return Err(LowerError::at(span, format!("invalid stage index {index}")));
                }
                Some(index as usize)
            }
            Err(_) => {
                let lower = from.to_ascii_lowercase();
                stages.iter().find(|s| s.name.as_deref() == Some(&lower)).map(|s| s.index)
            }
        };
        match index {
            Some(index) if index >= current => Err(LowerError::at(
                span,
                format!(
                    "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                    stages[current].display_name()
                ),
            )),
            Some(index) => Ok(SourceRef::Stage(index)),
            None => match self.options.named_contexts.get(from) {
                Some(named) => Ok(match named_context_base(from, named) {
                    Base::Context(name) => SourceRef::Context(name),
                    Base::Image(reference) => SourceRef::Image(reference),
                    _ => unreachable!("named contexts are images or directories"),
                }),
                None => {
                    super::validate_reference(from).map_err(|e| {
                        LowerError::at(span, format!("invalid --from {from:?}: {e}"))
                    })?;
                    Ok(SourceRef::Image(from.to_string()))
                }
            },
        }
    }

    /// The stages a stage's commands read from (`--from`, `from=`), in order.
    fn command_deps(&self, stage: usize, commands: &[Command]) -> Result<Vec<usize>, LowerError> {
        let mut deps = Vec::new();
        for command in commands {
            for from in referenced_sources(command, &self.lexer, &self.global_args) {
                if let SourceRef::Stage(index) = self.source_ref(&from, stage, command.span)? {
                    deps.push(index);
                }
            }
        }
        Ok(deps)
    }

    /// Loads a stage's commands: the ONBUILD triggers of its base first.
    fn load_commands(&mut self, index: usize) -> Result<(), LowerError> {
        if self.commands[index].is_some() {
            return Ok(());
        }
        let stage = &self.dockerfile.stages[index];
        let triggers: Vec<String> = match &self.bases[index] {
            Base::Stage(base) => self.dockerfile.stages[*base]
                .commands
                .iter()
                .filter_map(|c| match &c.instruction {
                    Instruction::Onbuild(o) => Some(o.expression.clone()),
                    _ => None,
                })
                .collect(),
            Base::Image(_) => {
                let image = self.resolve_base(index)?;
                image.config.on_build.clone()
            }
            Base::Scratch | Base::Context(_) => Vec::new(),
        };
        let mut commands = Vec::with_capacity(triggers.len() + stage.commands.len());
        for trigger in &triggers {
            commands.push(parse_trigger(trigger, stage.span)?);
        }
        commands.extend(stage.commands.iter().cloned());
        self.commands[index] = Some(commands);
        Ok(())
    }

    pub(super) fn resolve_base(&mut self, index: usize) -> Result<&ResolvedImage, LowerError> {
        if !self.resolved.contains_key(&index) {
            let Base::Image(reference) = &self.bases[index] else {
                unreachable!("only image bases are resolved")
            };
            let platform = self.stage_platform(index);
            let stage = &self.dockerfile.stages[index];
            let resolved = self.resolver.resolve(reference, &platform).map_err(|e| {
                LowerError::at(
                    stage.span,
                    format!("failed to resolve source metadata for {reference}: {e}"),
                )
            })?;
            // BuildKit's InvalidBaseImagePlatform check: only os and architecture count.
            if let Some(actual) = &resolved.platform
                && (actual.os != platform.os || actual.architecture != platform.architecture)
            {
                self.warnings.push(GraphWarning {
                    message: format!(
                        "InvalidBaseImagePlatform: Base image {reference} was pulled with \
                         platform \"{actual}\", expected \"{platform}\" for current build"
                    ),
                    span: Some(stage.span),
                });
            }
            self.resolved.insert(index, resolved);
        }
        Ok(&self.resolved[&index])
    }

    pub(super) fn stage_platform(&self, index: usize) -> Platform {
        self.platforms[index].clone().unwrap_or_else(|| self.options.target_platform.clone())
    }

    /// The stages the target needs, found through bases, `--from`s and ONBUILD triggers.
    fn reachable(&mut self, target: usize) -> Result<BTreeSet<usize>, LowerError> {
        let mut reachable = BTreeSet::new();
        let mut pending = vec![target];
        while let Some(index) = pending.pop() {
            if !reachable.insert(index) {
                continue;
            }
            if let Base::Stage(base) = self.bases[index] {
                pending.push(base);
            }
            self.load_commands(index)?;
            let commands = self.commands[index].clone().unwrap_or_default();
            pending.extend(self.command_deps(index, &commands)?);
        }
        Ok(reachable)
    }

    pub fn run(mut self) -> Result<Graph, LowerError> {
        let target = self.target_index()?;
        let reachable = self.reachable(target)?;
        for &index in &reachable {
            let commands = self.commands[index].clone().unwrap_or_default();
            let state = self.start_stage(index, &commands)?;
            let state = self.dispatch_stage(index, state, &commands)?;
            self.states[index] = Some(state);
        }
        self.finish_contexts();
        self.warn_unused_build_args();
        let mut stages = Vec::new();
        let mut target_position = 0;
        for &index in &reachable {
            let state = self.states[index].take().expect("every reachable stage was dispatched");
            if index == target {
                target_position = stages.len();
            }
            stages.push(state.into_result(index, self.dockerfile.stages[index].name.clone()));
        }
        let labels = &self.options.labels;
        stages[target_position].image.config.labels.extend(labels.clone());
        Ok(Graph {
            steps: self.steps,
            stages,
            target: target_position,
            platform: self.options.target_platform.clone(),
            warnings: self.warnings,
        })
    }

    /// The state a stage starts in: its base's filesystem and config.
    fn start_stage(
        &mut self,
        index: usize,
        commands: &[Command],
    ) -> Result<StageState, LowerError> {
        let stage = &self.dockerfile.stages[index];
        let platform = self.stage_platform(index);
        let display = stage.display_name();
        let total = commands.iter().filter(|c| c.creates_step()).count();
        match self.bases[index].clone() {
            Base::Stage(base) => {
                let parent =
                    self.states[base].as_ref().expect("base stages come first and are reachable");
                Ok(parent.inherit(display, total))
            }
            Base::Scratch => {
                let root = self.scratch_step();
                Ok(StageState::new(root, ImageConfig::default(), platform, display, total))
            }
            Base::Context(name) => {
                let root = self.context_step(&name);
                self.context_paths.entry(name).or_default().insert("/".into());
                Ok(StageState::new(root, ImageConfig::default(), platform, display, total))
            }
            Base::Image(_) => {
                let resolved = self.resolve_base(index)?.clone();
                let mut state = StageState::new(
                    StepId(0),
                    resolved.config,
                    platform.clone(),
                    display,
                    total + 1,
                );
                let name = state
                    .next_step_name(self.single_stage, &format!("FROM {}", resolved.reference));
                let root = if resolved.is_empty {
                    self.scratch_step()
                } else {
                    self.image_step(&resolved.reference, &platform, name, Some(stage.span))
                };
                state.root = root;
                state.base_image = Some(resolved.reference.clone());
                Ok(state)
            }
        }
    }

    pub(super) fn push_step(&mut self, op: Op, meta: StepMeta) -> StepId {
        let id = StepId(self.steps.len());
        self.steps.push(Step { id, op, meta });
        id
    }

    pub(super) fn scratch_step(&mut self) -> StepId {
        if let Some(id) = self.scratch {
            return id;
        }
        let meta = StepMeta { name: "[internal] scratch".into(), span: None, stage: None };
        let id = self.push_step(Op::Scratch, meta);
        self.scratch = Some(id);
        id
    }

    pub(super) fn image_step(
        &mut self,
        reference: &str,
        platform: &Platform,
        name: String,
        span: Option<Span>,
    ) -> StepId {
        let key = (reference.to_string(), platform.clone());
        if let Some(id) = self.image_steps.get(&key) {
            return *id;
        }
        let op = Op::Image { reference: reference.to_string(), platform: platform.clone() };
        let id = self.push_step(op, StepMeta { name, span, stage: None });
        self.image_steps.insert(key, id);
        id
    }

    pub(super) fn context_step(&mut self, name: &str) -> StepId {
        if let Some(id) = self.context_steps.get(name) {
            return *id;
        }
        let exclude_patterns =
            if name == "context" { self.options.dockerignore.clone() } else { Vec::new() };
        let op = Op::Context(ContextSource {
            name: name.to_string(),
            exclude_patterns,
            include_paths: Vec::new(),
        });
        let meta = StepMeta {
            name: format!("[internal] load build context {name}"),
            span: None,
            stage: None,
        };
        let id = self.push_step(op, meta);
        self.context_steps.insert(name.to_string(), id);
        id
    }

    /// Writes each context's collected include paths into its step.
    fn finish_contexts(&mut self) {
        for (name, id) in &self.context_steps {
            let mut paths: Vec<String> = self
                .context_paths
                .get(name)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default();
            if paths.iter().any(|p| p == "/") {
                paths = vec!["/".into()];
            }
            if let Op::Context(source) = &mut self.steps[id.0].op {
                source.include_paths = paths;
            }
        }
    }

    fn warn_unused_build_args(&mut self) {
        let unused: Vec<&String> = self
            .options
            .build_args
            .keys()
            .filter(|k| {
                !self.declared_args.contains(*k)
                    && !args::PREDEFINED.contains(&k.as_str())
                    && !args::is_proxy_arg(k)
                    && k.as_str() != "SOURCE_DATE_EPOCH"
            })
            .collect();
        if !unused.is_empty() {
            let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.warnings.push(GraphWarning {
                message: format!("one or more build-args [{}] were not consumed", list.join(" ")),
                span: None,
            });
        }
    }
}

fn named_context_base(name: &str, named: &NamedContext) -> Base {
    match named {
        NamedContext::Local => Base::Context(name.to_string()),
        NamedContext::Image(reference) => Base::Image(reference.clone()),
        NamedContext::OciLayout(location) => Base::Image(format!("oci-layout://{location}")),
    }
}

/// The `--from` values a command refers to: COPY's flag and RUN mounts' `from=` (mount
/// values expanded with the global args only for this early look; the full expansion happens
/// at dispatch).
fn referenced_sources(command: &Command, lexer: &Lexer, global_args: &Env) -> Vec<String> {
    match &command.instruction {
        Instruction::Copy(copy) => copy.from.iter().cloned().collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter_map(|raw| {
                let mount = crate::instructions::mount::parse_mount(raw, &mut |v| {
                    Ok(lexer.process_word(v, global_args).map(|e| e.value).unwrap_or_default())
                })
                .ok()?;
                mount.from.filter(|_| mount.kind != crate::instructions::MountType::Secret)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses one ONBUILD trigger; errors point at the FROM that brought it in.
fn parse_trigger(trigger: &str, span: Span) -> Result<Command, LowerError> {
    let tree = syntax::parse(trigger)
        .map_err(|e| LowerError::at(span, format!("invalid ONBUILD trigger {trigger:?}: {e}")))?;
    let [node] = tree.nodes.as_slice() else {
        return Err(LowerError::at(span, "onbuild trigger should be a single expression"));
    };
    let mut command = crate::instructions::parse_instruction(node)
        .map_err(|e| LowerError::at(span, format!("invalid ONBUILD trigger {trigger:?}: {e}")))?;
    if matches!(command.instruction, Instruction::Onbuild(_)) {
        return Err(LowerError::at(span, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
    }
    command.span = span;
    // Progress shows a trigger as BuildKit does: `[2/4] ONBUILD RUN ...`.
    command.original = format!("ONBUILD {}", super::dispatch::uppercase_keyword(&command.original));
    Ok(command)
}

impl Command {
    /// Whether the instruction makes a filesystem step (progress counts these).
    pub fn creates_step(&self) -> bool {
        matches!(
            self.instruction,
            Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir { .. }
        )
    }
}
