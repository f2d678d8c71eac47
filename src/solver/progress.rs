//! Build progress: the events the solver reports, and the printers that show them.
//!
//! The solver only emits [`Event`]s through a [`ProgressSink`]; how they look is the printer's
//! business. Printers: `plain` (one line per event, BuildKit's `--progress=plain` shape:
//! `#N [stage i/n] INSTRUCTION`, `#N CACHED`, `#N DONE 0.3s`, RUN output prefixed `#N `),
//! `rawjson` (one JSON object per event), `quiet` (nothing but errors), and `tty`, which
//! for now prints what `plain` prints (a live display on terminals is not written yet).
//! Invariant: a printer never writes secrets: RUN output is printed as the command wrote it,
//! and nothing else that reaches a printer carries secret values.

use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step starts (its key is being computed or it is about to run).
    Started { step: usize, name: String },
    /// Its result came from the cache.
    Cached { step: usize },
    /// A line (or chunk) of output of a RUN.
    Output { step: usize, stream: Stream, text: String },
    /// A note about the step: "pulling sha256:... 12 MB", "exporting layer".
    Note { step: usize, text: String },
    /// It finished.
    Done { step: usize, seconds: f64 },
    /// It failed.
    Failed { step: usize, error: String },
    /// A build-level message (exporting, writing the image, warnings).
    Message { text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

pub trait ProgressSink: Send + Sync {
    fn emit(&self, event: Event);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Plain,
    Tty,
    RawJson,
    Quiet,
}

impl ProgressMode {
    /// `auto` → tty on a terminal, plain otherwise (as buildx does).
    pub fn parse(text: &str, stderr_is_terminal: bool) -> Result<Self, String> {
        match text {
            "auto" if stderr_is_terminal => Ok(ProgressMode::Tty),
            "auto" | "plain" => Ok(ProgressMode::Plain),
            "tty" => Ok(ProgressMode::Tty),
            "rawjson" => Ok(ProgressMode::RawJson),
            "quiet" => Ok(ProgressMode::Quiet),
            other => Err(format!(
                "invalid --progress {other:?}: expected auto, plain, tty, rawjson or quiet"
            )),
        }
    }
}

/// Writes events to a stream (stderr in the CLI) in one of the formats.
pub struct Printer<W: Write + Send> {
    mode: ProgressMode,
    out: Mutex<W>,
    started: Instant,
}

impl<W: Write + Send> Printer<W> {
    pub fn new(mode: ProgressMode, out: W) -> Self {
        Printer { mode, out: Mutex::new(out), started: Instant::now() }
    }

    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn plain_line(&self, event: &Event) -> Option<String> {
        Some(match event {
            Event::Started { step, name } => format!("#{step} {name}"),
            Event::Cached { step } => format!("#{step} CACHED"),
            Event::Output { step, text, .. } => {
                let text = text.strip_suffix('\n').unwrap_or(text);
                text.split('\n').map(|l| format!("#{step} {l}")).collect::<Vec<_>>().join("\n")
            }
            Event::Note { step, text } => format!("#{step} {text}"),
            Event::Done { step, seconds } => format!("#{step} DONE {seconds:.1}s"),
            Event::Failed { step, error } => format!("#{step} ERROR: {error}"),
            Event::Message { text } => text.clone(),
        })
    }
}

impl<W: Write + Send> ProgressSink for Printer<W> {
    fn emit(&self, event: Event) {
        let line = match self.mode {
            ProgressMode::Quiet => return,
            ProgressMode::RawJson => {
                let mut value = serde_json::to_value(&event).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    let elapsed = self.started.elapsed().as_secs_f64();
                    object.insert("time".into(), serde_json::json!(elapsed));
                }
                Some(value.to_string())
            }
            ProgressMode::Plain | ProgressMode::Tty => self.plain_line(&event),
        };
        if let Some(line) = line {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Times a step and reports its outcome.
pub struct StepTimer<'a> {
    sink: &'a dyn ProgressSink,
    step: usize,
    started: Instant,
}

impl<'a> StepTimer<'a> {
    pub fn start(sink: &'a dyn ProgressSink, step: usize, name: &str) -> Self {
        sink.emit(Event::Started { step, name: name.to_string() });
        StepTimer { sink, step, started: Instant::now() }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn done(self) {
        let seconds = self.elapsed().as_secs_f64();
        self.sink.emit(Event::Done { step: self.step, seconds });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(mode: ProgressMode, events: Vec<Event>) -> String {
        let printer = Printer::new(mode, Vec::new());
        for e in events {
            printer.emit(e);
        }
        String::from_utf8(printer.into_inner()).unwrap()
    }

    #[test]
    fn plain_lines() {
        let out = render(
            ProgressMode::Plain,
            vec![
                Event::Started { step: 3, name: "[build 2/4] RUN make".into() },
                Event::Output { step: 3, stream: Stream::Stdout, text: "a\nb\n".into() },
                Event::Done { step: 3, seconds: 0.25 },
                Event::Started { step: 4, name: "[build 3/4] COPY . .".into() },
                Event::Cached { step: 4 },
            ],
        );
        assert_eq!(
            out,
            "#3 [build 2/4] RUN make\n#3 a\n#3 b\n#3 DONE 0.2s\n#4 [build 3/4] COPY . .\n#4 CACHED\n"
        );
    }

    #[test]
    fn rawjson_is_one_object_per_line() {
        let out = render(
            ProgressMode::RawJson,
            vec![Event::Cached { step: 1 }, Event::Message { text: "x".into() }],
        );
        let lines: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["event"], "cached");
        assert_eq!(lines[0]["step"], 1);
        assert_eq!(lines[1]["text"], "x");
    }

    #[test]
    fn quiet_prints_nothing() {
        assert_eq!(render(ProgressMode::Quiet, vec![Event::Cached { step: 1 }]), "");
    }

    #[test]
    fn modes() {
        assert_eq!(ProgressMode::parse("auto", true), Ok(ProgressMode::Tty));
        assert_eq!(ProgressMode::parse("auto", false), Ok(ProgressMode::Plain));
        assert!(ProgressMode::parse("fancy", false).is_err());
    }
}
