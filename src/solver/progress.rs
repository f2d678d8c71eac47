//! Build progress: the events the solver reports, and the printers that show them.
//!
//! The solver only emits [`Event`]s through a [`ProgressSink`]; how they look is the printer's
//! business. Printers: `plain` (one line per event, BuildKit's `--progress=plain` shape:
//! `#N [stage i/n] INSTRUCTION`, `#N CACHED`, `#N DONE 0.3s`, RUN output prefixed `#N `),
//! `rawjson` (one JSON object per event), `quiet` (nothing but errors), and `tty`, a live
//! display ([`tty`]) used when stderr is a terminal (`tty` asked for without one gives
//! `plain`). Byte counts of transfers ([`Event::Progress`]) are drawn as bars by `tty`;
//! `plain` prints a transfer once, when it completes, and `rawjson` its start and end.
//! Invariant: a printer never writes secrets: RUN output is printed as the command wrote it,
//! and nothing else that reaches a printer carries secret values.

pub mod tty;

use indicatif::{DecimalBytes, ProgressDrawTarget};
use serde::Serialize;
use std::io::{IsTerminal, Write};
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
    /// Bytes of a transfer (a layer pulled or copied in): `current` of `total`.
    Progress { step: usize, id: String, current: u64, total: u64 },
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
    /// The live display, in `Tty` mode.
    display: Option<tty::TtyDisplay>,
}

impl<W: Write + Send> Printer<W> {
    /// A printer writing to `out`; in `Tty` mode a live display on stderr when stderr is a
    /// terminal, else plain lines on `out`.
    pub fn new(mode: ProgressMode, out: W) -> Self {
        if mode == ProgressMode::Tty && std::io::stderr().is_terminal() {
            let width = console::Term::stderr().size().1;
            return Printer::with_display(ProgressDrawTarget::stderr(), usize::from(width), out);
        }
        let mode = if mode == ProgressMode::Tty { ProgressMode::Plain } else { mode };
        Printer { mode, out: Mutex::new(out), started: Instant::now(), display: None }
    }

    /// A `Tty` printer drawing on `target`, `width` columns wide (a fake terminal in tests).
    pub fn with_display(target: ProgressDrawTarget, width: usize, out: W) -> Self {
        Printer {
            mode: ProgressMode::Tty,
            out: Mutex::new(out),
            started: Instant::now(),
            display: Some(tty::TtyDisplay::new(target, width)),
        }
    }

    /// The mode in effect (`Tty` asked for without a terminal is `Plain`).
    pub fn mode(&self) -> ProgressMode {
        self.mode
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
            Event::Progress { step, id, current, total } => {
                if current < total {
                    return None;
                }
                format!("#{step} {id} {} / {} done", DecimalBytes(*current), DecimalBytes(*total))
            }
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
                if let Event::Progress { current, total, .. } = &event
                    && *current != 0
                    && current < total
                {
                    return;
                }
                let mut value = serde_json::to_value(&event).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    let elapsed = self.started.elapsed().as_secs_f64();
                    object.insert("time".into(), serde_json::json!(elapsed));
                }
                Some(value.to_string())
            }
            ProgressMode::Plain => self.plain_line(&event),
            ProgressMode::Tty => {
                if let Some(display) = &self.display {
                    display.show(&event);
                }
                return;
            }
        };
        if let Some(line) = line {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// What a running step reports besides its outcome: notes and transfer byte counts.
pub struct StepReporter<'a> {
    sink: &'a dyn ProgressSink,
    step: usize,
}

impl<'a> StepReporter<'a> {
    pub fn new(sink: &'a dyn ProgressSink, step: usize) -> Self {
        StepReporter { sink, step }
    }

    pub fn note(&self, text: String) {
        self.sink.emit(Event::Note { step: self.step, text });
    }

    /// Where the reports go, and the step they are about (for code that emits its own events).
    pub fn target(&self) -> (&'a dyn ProgressSink, usize) {
        (self.sink, self.step)
    }

    /// `current` of `total` bytes of the transfer `id` (a blob digest) are done.
    pub fn bytes(&self, id: &str, current: u64, total: u64) {
        self.sink.emit(Event::Progress { step: self.step, id: id.to_string(), current, total });
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
    fn transfers_print_once_in_plain_and_twice_in_rawjson() {
        let events = || {
            [0, 400, 1000].map(|current| Event::Progress {
                step: 2,
                id: "sha256:abc".into(),
                current,
                total: 1000,
            })
        };
        let plain = render(ProgressMode::Plain, events().to_vec());
        assert_eq!(plain, "#2 sha256:abc 1.00 kB / 1.00 kB done\n");
        let json = render(ProgressMode::RawJson, events().to_vec());
        assert_eq!(json.lines().count(), 2, "start and end: {json}");
    }

    #[test]
    fn tty_without_a_terminal_is_plain() {
        if std::io::stderr().is_terminal() {
            return;
        }
        let printer = Printer::new(ProgressMode::Tty, Vec::new());
        assert_eq!(printer.mode(), ProgressMode::Plain);
        printer.emit(Event::Cached { step: 1 });
        assert_eq!(String::from_utf8(printer.into_inner()).unwrap(), "#1 CACHED\n");
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
