//! Stopping a build early, as `docker buildx build` does on Ctrl-C: the CLI's signal watcher
//! calls [`Cancel::cancel`]; every sandbox running then is killed at once (a RUN registers
//! its sandbox with [`Cancel::track`] for as long as it runs), no new step starts, and the
//! build fails with [`Canceled`], which the CLI turns into exit status 128 + the signal
//! number (130 for SIGINT, 143 for SIGTERM), as the docker CLI does.
//!
//! Invariants: after `cancel` returns, no tracked sandbox is left running and none tracked
//! later starts (the kill handle of a sandbox not yet started makes it refuse to start);
//! results already written stay valid: the store is only ever written through temp files
//! and renames, so an interrupted step leaves nothing under a final name.

use crate::sandbox::KillHandle;
use std::sync::Mutex;

/// The build's cancellation state, shared by the signal watcher and the engine.
#[derive(Debug, Default)]
pub struct Cancel {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    signal: Option<i32>,
    running: Vec<(u64, KillHandle)>,
    next_id: u64,
}

/// The build stopped because kiln received `signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("build canceled: received {}", signal_name(*.signal))]
pub struct Canceled {
    pub signal: i32,
}

impl Canceled {
    /// The exit status for a process stopped by the signal: 128 + its number.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

/// `SIGINT`, `SIGTERM`, ... for the signals kiln reacts to; `signal N` for others.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}

/// A sandbox registered with [`Cancel::track`]; unregistered on drop.
#[must_use = "the sandbox is only tracked while this value lives"]
pub struct Tracked<'a> {
    cancel: &'a Cancel,
    id: u64,
}

impl Cancel {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cancels the build because of `signal` (the first call wins) and kills every tracked
    /// sandbox.
    pub fn cancel(&self, signal: i32) {
        let mut state = self.lock();
        state.signal.get_or_insert(signal);
        for (_, handle) in &state.running {
            handle.kill();
        }
    }

    /// Whether the build was canceled.
    pub fn canceled(&self) -> Option<Canceled> {
        self.lock().signal.map(|signal| Canceled { signal })
    }

    /// `Err` once the build was canceled: for checks before starting work.
    pub fn check(&self) -> Result<(), Canceled> {
        self.canceled().map_or(Ok(()), Err)
    }

    /// Kills the sandbox of `handle` when the build is canceled, now if it already was.
    pub fn track(&self, handle: KillHandle) -> Tracked<'_> {
        let mut state = self.lock();
        if state.signal.is_some() {
            handle.kill();
        }
        let id = state.next_id;
        state.next_id += 1;
        state.running.push((id, handle));
        Tracked { cancel: self, id }
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.cancel.lock().running.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_wins_and_maps_to_128_plus_n() {
        let cancel = Cancel::default();
        assert_eq!(cancel.check(), Ok(()));
        cancel.cancel(libc::SIGINT);
        cancel.cancel(libc::SIGTERM);
        let canceled = cancel.canceled().unwrap();
        assert_eq!(canceled.exit_code(), 130);
        assert_eq!(canceled.to_string(), "build canceled: received SIGINT");
        assert_eq!(Canceled { signal: libc::SIGTERM }.exit_code(), 143);
    }

    #[test]
    fn tracked_sandboxes_are_killed_and_later_ones_never_start() {
        let cancel = Cancel::default();
        let running = KillHandle::default();
        let tracked = cancel.track(running.clone());
        assert!(!running.is_killed());
        cancel.cancel(libc::SIGTERM);
        assert!(running.is_killed(), "a running sandbox is killed on cancel");
        drop(tracked);
        assert!(cancel.lock().running.is_empty(), "dropping unregisters");
        let late = KillHandle::default();
        let _tracked = cancel.track(late.clone());
        assert!(late.is_killed(), "a sandbox tracked after the cancel is killed at once");
    }
}
