//! The live display of `--progress tty` (and `auto` on a terminal), shaped like BuildKit's:
//!
//! ```text
//!  => [1/4] FROM docker.io/library/alpine@sha256:…                          0.4s   ← finished,
//!  => CACHED [2/4] COPY app.txt .                                           0.0s     printed once
//!  => ERROR [3/4] RUN make                                                  0.2s     above
//! ⠙ [4/4] RUN apk add gcc                                                   3.1s   ← running
//!    => # fetch https://dl-cdn.alpinelinux.org/…                                     (last lines)
//!    => sha256:6e77… [=========>          ] 1.20 MB/3.40 MB                       (transfers)
//! [+] Building 4.2s (5/7)                                                          ← header
//! ```
//!
//! Running steps live at the bottom of the screen with a spinner, their elapsed time, a bar
//! per layer being transferred and the last [`TAIL_LINES`] lines of their output. When a step
//! ends, its lines leave the live area and one summary line is printed above it, so the
//! scrollback reads as a log and the live area never outgrows the screen. A failed step's
//! last [`ERROR_LINES`] output lines are printed in a `------` box under its summary, as
//! BuildKit does. Dropping the display prints the final `[+] Building … FINISHED` line.
//!
//! Invariants: memory is bounded (at most [`ERROR_LINES`] kept lines per running step, each
//! cut to [`MAX_LINE`] characters); nothing is shown that the events did not carry, and no
//! event carries secret values (see the parent module).

use super::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Output lines shown under a running step.
pub const TAIL_LINES: usize = 6;
/// Output lines kept per step for the error box of a failed step.
pub const ERROR_LINES: usize = 20;
/// Longest output line kept, in characters.
pub const MAX_LINE: usize = 512;

const TICK: Duration = Duration::from_millis(120);

/// The live display. All methods take `&self`; events may come from any thread.
pub struct TtyDisplay {
    multi: MultiProgress,
    header: ProgressBar,
    state: Mutex<State>,
    /// Columns of the terminal: summary lines put their time at the right edge.
    width: usize,
}

#[derive(Default)]
struct State {
    steps: BTreeMap<usize, StepView>,
    started: usize,
    finished: usize,
}

struct StepView {
    name: String,
    bar: ProgressBar,
    transfers: BTreeMap<String, ProgressBar>,
    tail_bars: Vec<ProgressBar>,
    lines: VecDeque<String>,
    partial: String,
    cached: bool,
    started: Instant,
}

fn seconds_key(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
}

fn step_style() -> ProgressStyle {
    ProgressStyle::with_template(" {spinner:.cyan} {wide_msg} {seconds:>6}")
        .expect("a valid template")
        .with_key("seconds", seconds_key)
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

fn transfer_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "    => {msg} [{wide_bar}] {decimal_bytes}/{decimal_total_bytes} {seconds:>6}",
    )
    .expect("a valid template")
    .with_key("seconds", seconds_key)
    .progress_chars("=> ")
}

fn tail_style() -> ProgressStyle {
    ProgressStyle::with_template("    => # {wide_msg:.dim}").expect("a valid template")
}

fn header_style() -> ProgressStyle {
    ProgressStyle::with_template("[+] Building {seconds} {msg}")
        .expect("a valid template")
        .with_key("seconds", seconds_key)
}

impl TtyDisplay {
    /// A display drawing to `target` (`ProgressDrawTarget::stderr()` in the CLI; a fake
    /// terminal in tests) that is `width` columns wide.
    pub fn new(target: ProgressDrawTarget, width: usize) -> TtyDisplay {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(ProgressBar::new_spinner().with_style(header_style()));
        header.enable_steady_tick(TICK);
        let display =
            TtyDisplay { multi, header, state: Mutex::new(State::default()), width: width.max(40) };
        display.update_header(&State::default(), "");
        display
    }

    fn update_header(&self, state: &State, suffix: &str) {
        self.header.set_message(format!("({}/{}){suffix}", state.finished, state.started));
    }

    fn println(&self, text: &str) {
        // A hidden target (no terminal) ignores it: nothing is lost that plain would show,
        // because the CLI picks plain when stderr is not a terminal.
        let _ = self.multi.println(text);
    }

    /// Shows one event.
    pub fn show(&self, event: &Event) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Started { step, name } => {
                let bar = self.multi.insert_before(
                    &self.header,
                    ProgressBar::new_spinner().with_style(step_style()).with_message(name.clone()),
                );
                bar.enable_steady_tick(TICK);
                state.started += 1;
                state.steps.insert(
                    *step,
                    StepView {
                        name: name.clone(),
                        bar,
                        transfers: BTreeMap::new(),
                        tail_bars: Vec::new(),
                        lines: VecDeque::new(),
                        partial: String::new(),
                        cached: false,
                        started: Instant::now(),
                    },
                );
            }
            Event::Cached { step } => {
                if let Some(view) = state.steps.get_mut(step) {
                    view.cached = true;
                }
            }
            Event::Output { step, text, .. } => {
                if let Some(view) = state.steps.get_mut(step) {
                    view.push_output(text);
                    self.refresh_tail(view);
                }
            }
            Event::Note { step, text } => {
                if let Some(view) = state.steps.get_mut(step) {
                    view.push_line(text.clone());
                    self.refresh_tail(view);
                }
            }
            Event::Progress { step, id, current, total } => {
                if let Some(view) = state.steps.get_mut(step) {
                    let anchor = view.last_transfer_bar().clone();
                    let bar = view.transfers.entry(id.clone()).or_insert_with(|| {
                        let bar = ProgressBar::new(*total)
                            .with_style(transfer_style())
                            .with_message(short_id(id));
                        self.multi.insert_after(&anchor, bar)
                    });
                    bar.set_length(*total);
                    bar.set_position(*current);
                }
            }
            Event::Done { step, seconds } => {
                if let Some(view) = state.steps.remove(step) {
                    let prefix = if view.cached { "CACHED " } else { "" };
                    self.remove(&view);
                    self.println(&summary_line(prefix, &view.name, *seconds, self.width));
                }
                state.finished += 1;
            }
            Event::Failed { step, .. } => {
                if let Some(mut view) = state.steps.remove(step) {
                    self.remove(&view);
                    let seconds = view.started.elapsed().as_secs_f64();
                    self.println(&summary_line("ERROR ", &view.name, seconds, self.width));
                    if !view.partial.is_empty() {
                        view.flush_partial();
                    }
                    // The error itself is printed once, by the CLI, after the display ends.
                    self.println(&error_box(&view.name, &view.lines));
                }
                state.finished += 1;
            }
            Event::Message { text } => self.println(text),
        }
        self.update_header(&state, "");
    }

    fn remove(&self, view: &StepView) {
        for bar in view.tail_bars.iter().chain(view.transfers.values()).chain([&view.bar]) {
            bar.finish_and_clear();
            self.multi.remove(bar);
        }
    }

    /// Shows the last [`TAIL_LINES`] lines under the step (after its transfer bars).
    fn refresh_tail(&self, view: &mut StepView) {
        let mut all: Vec<&String> = view.lines.iter().collect();
        if !view.partial.is_empty() {
            all.push(&view.partial);
        }
        let shown: Vec<String> =
            all[all.len().saturating_sub(TAIL_LINES)..].iter().map(|l| l.to_string()).collect();
        while view.tail_bars.len() < shown.len() {
            let anchor = view.last_bar().clone();
            let bar = self.multi.insert_after(&anchor, ProgressBar::new_spinner());
            bar.set_style(tail_style());
            view.tail_bars.push(bar);
        }
        for (bar, line) in view.tail_bars.iter().zip(shown) {
            bar.set_message(line);
        }
    }
}

impl Drop for TtyDisplay {
    fn drop(&mut self) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for view in state.steps.values() {
            self.remove(view);
        }
        self.update_header(&state, " FINISHED");
        self.header.finish();
    }
}

impl StepView {
    /// The bar a new tail line goes after: the last tail line, else the last transfer, else
    /// the step's own line.
    fn last_bar(&self) -> &ProgressBar {
        self.tail_bars.last().or_else(|| self.transfers.values().last()).unwrap_or(&self.bar)
    }

    fn push_output(&mut self, text: &str) {
        let segments: Vec<&str> = text.split('\n').collect();
        let last = segments.len() - 1;
        for (i, segment) in segments.into_iter().enumerate() {
            if i > 0 {
                self.flush_partial();
            }
            let segment =
                if i < last { segment.strip_suffix('\r').unwrap_or(segment) } else { segment };
            // A carriage return starts the line over (progress meters in RUN output).
            let piece = match segment.rfind('\r') {
                Some(at) => {
                    self.partial.clear();
                    &segment[at + 1..]
                }
                None => segment,
            };
            let room = MAX_LINE.saturating_sub(self.partial.chars().count());
            self.partial.extend(piece.chars().filter(|c| !c.is_control() || *c == '\t').take(room));
        }
    }

    fn flush_partial(&mut self) {
        let line = std::mem::take(&mut self.partial);
        self.push_line(line);
    }

    /// The bar a new transfer bar goes after: the last transfer, else the step's line.
    fn last_transfer_bar(&self) -> &ProgressBar {
        self.transfers.values().last().unwrap_or(&self.bar)
    }

    fn push_line(&mut self, line: String) {
        let line: String = line.chars().take(MAX_LINE).collect();
        if self.lines.len() == ERROR_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// ` => [2/4] RUN make                0.3s`, the time at the right edge of `width` columns
/// and the name cut (with `…`) where it would not fit.
fn summary_line(prefix: &str, name: &str, seconds: f64, width: usize) -> String {
    let time = format!("{seconds:.1}s");
    let head = format!(" => {prefix}{name}");
    let room = width.saturating_sub(time.chars().count() + 1);
    let head = console::truncate_str(&head, room, "…");
    let pad = width.saturating_sub(console::measure_text_width(&head) + time.chars().count() + 1);
    format!("{head}{} {time}", " ".repeat(pad))
}

/// BuildKit's box around a failed step's last output.
fn error_box(name: &str, lines: &VecDeque<String>) -> String {
    let mut text = format!("------\n > {name}:\n");
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    text.push_str("------");
    text
}

/// `sha256:0123456789ab` for a digest, the id itself otherwise.
fn short_id(id: &str) -> String {
    match id.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::progress::{Printer, ProgressSink, Stream};
    use indicatif::InMemoryTerm;

    /// Drives a tty printer on a fake 60-column terminal and returns the screen at the end.
    fn screen(events: Vec<Event>) -> String {
        let term = InMemoryTerm::new(40, 60);
        let printer = Printer::with_display(
            ProgressDrawTarget::term_like(Box::new(term.clone())),
            60,
            std::io::sink(),
        );
        for event in events {
            printer.emit(event);
        }
        drop(printer);
        term.contents()
    }

    fn started(step: usize, name: &str) -> Event {
        Event::Started { step, name: name.into() }
    }

    fn output(step: usize, text: &str) -> Event {
        Event::Output { step, stream: Stream::Stdout, text: text.into() }
    }

    #[test]
    fn finished_steps_leave_one_summary_line_each() {
        let text = screen(vec![
            started(1, "[1/3] FROM docker.io/library/busybox"),
            Event::Progress {
                step: 1,
                id: format!("sha256:{}", "a".repeat(64)),
                current: 5,
                total: 10,
            },
            Event::Progress {
                step: 1,
                id: format!("sha256:{}", "a".repeat(64)),
                current: 10,
                total: 10,
            },
            Event::Done { step: 1, seconds: 0.42 },
            started(2, "[2/3] COPY app.txt ."),
            Event::Cached { step: 2 },
            Event::Done { step: 2, seconds: 0.0 },
            started(3, "[3/3] RUN make"),
            output(3, "compiling\n"),
            Event::Done { step: 3, seconds: 1.25 },
            Event::Message { text: "image sha256:1234".into() },
        ]);
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines[..4],
            [
                " => [1/3] FROM docker.io/library/busybox                0.4s",
                " => CACHED [2/3] COPY app.txt .                         0.0s",
                " => [3/3] RUN make                                      1.2s",
                "image sha256:1234",
            ],
            "{text}"
        );
        assert!(lines[4].starts_with("[+] Building "), "{text}");
        assert!(lines[4].ends_with(" (3/3) FINISHED"), "{text}");
        assert_eq!(lines.len(), 5, "nothing of the running display is left: {text}");
    }

    #[test]
    fn a_failed_step_shows_its_last_output_in_a_box() {
        let mut events = vec![started(4, "[2/2] RUN ./build.sh")];
        for i in 0..30 {
            events.push(output(4, &format!("line {i}\n")));
        }
        events.push(output(4, "downloading 10%\rdownloading 100%"));
        events.push(Event::Failed { step: 4, error: "exit code: 2".into() });
        let text = screen(events);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let start = lines.iter().position(|l| *l == "------").expect("an error box");
        let summary = lines[start - 1];
        assert!(summary.starts_with(" => ERROR [2/2] RUN ./build.sh      "), "{summary}");
        assert!(summary.ends_with('s') && summary.chars().count() == 60, "{summary}");
        assert_eq!(lines[start + 1], " > [2/2] RUN ./build.sh:");
        let body = &lines[start + 2..start + 2 + ERROR_LINES];
        assert_eq!(body.first(), Some(&"line 11"), "the last {ERROR_LINES} lines are kept");
        assert_eq!(body.last(), Some(&"downloading 100%"), "a carriage return restarts the line");
        assert_eq!(lines[start + 2 + ERROR_LINES], "------");
    }

    #[test]
    fn running_steps_show_their_tail_and_transfers() {
        let term = InMemoryTerm::new(20, 60);
        let printer = Printer::with_display(
            ProgressDrawTarget::term_like(Box::new(term.clone())),
            60,
            std::io::sink(),
        );
        printer.emit(started(1, "[1/2] FROM busybox"));
        printer.emit(Event::Progress {
            step: 1,
            id: format!("sha256:{}", "b".repeat(64)),
            current: 1_500_000,
            total: 3_000_000,
        });
        printer.emit(started(2, "[2/2] RUN make"));
        for i in 0..10 {
            printer.emit(output(2, &format!("out {i}\n")));
        }
        // Drawing is rate-limited and a frame may be caught half drawn: wait for a whole one.
        let expected = [
            "[1/2] FROM busybox",
            "=> sha256:bbbbbbbbbbbb [",
            "1.50 MB/3.00 MB",
            "[2/2] RUN make",
            "=> # out 4",
            "=> # out 9",
            "[+] Building",
        ];
        let mut text = String::new();
        for _ in 0..100 {
            text = term.contents();
            if expected.iter().all(|part| text.contains(part)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for part in expected {
            assert!(text.contains(part), "{part:?} is not on the screen:\n{text}");
        }
        assert!(!text.contains("=> # out 3"), "only the last {TAIL_LINES} lines: {text}");
        assert!(text.contains("[+] Building"), "{text}");
    }

    #[test]
    fn long_names_are_cut_to_the_width() {
        let line = summary_line("", &"x".repeat(100), 1.0, 40);
        assert_eq!(console::measure_text_width(&line), 40);
        assert!(line.ends_with("… 1.0s"), "{line}");
    }
}
