//! Clean-up of what the tests of one binary share: statics are never dropped, so a shared
//! registry or build directory registers here what must happen when the process exits.

use std::sync::{Mutex, Once};

type Action = Box<dyn FnOnce() + Send>;

static ACTIONS: Mutex<Vec<Action>> = Mutex::new(Vec::new());

/// Runs `action` when the test process exits normally (libtest's `main` returns or calls
/// `exit`), the last registered first.
pub fn on_exit(action: impl FnOnce() + Send + 'static) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `run_actions` is a plain `extern "C"` function that takes a lock and calls
        // closures; registering it has no other effect.
        unsafe { libc::atexit(run_actions) };
    });
    ACTIONS.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(action));
}

extern "C" fn run_actions() {
    let actions = std::mem::take(&mut *ACTIONS.lock().unwrap_or_else(|e| e.into_inner()));
    for action in actions.into_iter().rev() {
        action();
    }
}

/// A directory for state shared by the tests of this binary, removed at exit.
pub fn shared_dir() -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let removed = dir.clone();
    on_exit(move || {
        let _ = std::fs::remove_dir_all(removed);
    });
    dir
}
