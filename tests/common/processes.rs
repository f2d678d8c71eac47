//! Looking for processes a test started, and waiting for conditions.

use std::fs;
use std::time::{Duration, Instant};

/// Pids of processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker)
        {
            found.push(name);
        }
    }
    found
}

/// Poll `done` every 50 ms until it holds or `timeout` passes; its last answer.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// A process identified by its pid and start time (so that a reused pid is not mistaken for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

/// Parent pid, state and start time from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(u32, char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: fields follow the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let parent = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((parent, state, start))
}

/// Every process below `pid` (children, their children, ...), at this moment.
pub fn descendants(pid: u32) -> Vec<ProcessId> {
    let mut all = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Some((parent, _, start)) = stat_of(child) {
            all.push((child, parent, start));
        }
    }
    let mut found: Vec<ProcessId> = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _, start) in all.iter().filter(|(_, p, _)| *p == parent) {
            found.push(ProcessId { pid: child, start });
            frontier.push(child);
        }
    }
    found
}

/// Whether the process still runs (a zombie, dead but not yet reaped, does not).
pub fn is_running(process: &ProcessId) -> bool {
    matches!(stat_of(process.pid), Some((_, state, start)) if start == process.start && state != 'Z' && state != 'X')
}

/// Running processes whose command line or working directory mentions `dir`.
pub fn processes_using(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let running = matches!(stat_of(pid), Some((_, state, _)) if state != 'Z' && state != 'X');
        if running && (cmdline.contains(&needle) || cwd.starts_with(dir)) {
            found.push(format!("{pid} {cmdline}"));
        }
    }
    found
}
