//! Termination signals for commands that must clean up before they exit (`kiln build`,
//! `kiln debug run`): the signals are blocked in every thread and received by one watcher
//! thread with `sigwait`, so no async-signal-safety rules apply to what it does.
//!
//! Blocking must happen before any other thread starts: threads inherit the mask of the
//! thread that starts them. Processes kiln spawns get an empty mask (std resets it).
//! A signal that is ignored when kiln starts (`nohup`, a background job of a
//! non-interactive shell) is discarded by the kernel and so stays ignored.

/// Blocks `signals` in the calling thread (and so in every thread it starts afterwards),
/// then calls `on_signal` with each one that arrives, from a dedicated thread.
pub fn watch(signals: &[libc::c_int], mut on_signal: impl FnMut(libc::c_int) + Send + 'static) {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before sigaddset reads it;
    // the signal numbers are valid, and pthread_sigmask only reads the set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` is initialised and `signal` a live local the call writes to.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                on_signal(signal);
            }
        }
    });
}
