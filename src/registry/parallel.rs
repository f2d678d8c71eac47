//! Running one fallible job per item on a few threads: the worker pool downloads and
//! uploads share.
//!
//! Invariants: at most `workers` jobs run at once, items are taken in order, and the first
//! error stops the scheduling of further items (running ones finish) and is returned.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `job` for every item on up to `workers` threads; the first error, if any.
pub fn for_each_parallel<T, E, F>(items: &[T], workers: usize, job: F) -> Result<(), E>
where
    T: Sync,
    E: Send,
    F: Fn(&T) -> Result<(), E> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let work = || {
        while !failed.load(Ordering::SeqCst) {
            let index = next.fetch_add(1, Ordering::SeqCst);
            let Some(item) = items.get(index) else { break };
            if let Err(error) = job(item) {
                failed.store(true, Ordering::SeqCst);
                first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(work);
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_item_or_stops_at_the_first_error() {
        let seen = Mutex::new(Vec::new());
        for_each_parallel(&[1, 2, 3, 4, 5], 3, |n| {
            seen.lock().unwrap().push(*n);
            Ok::<(), String>(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, [1, 2, 3, 4, 5]);

        let ran = AtomicUsize::new(0);
        let err = for_each_parallel(&(0..100).collect::<Vec<_>>(), 1, |n| {
            ran.fetch_add(1, Ordering::SeqCst);
            if *n == 2 { Err(format!("item {n}")) } else { Ok(()) }
        })
        .unwrap_err();
        assert_eq!(err, "item 2");
        assert_eq!(ran.load(Ordering::SeqCst), 3, "nothing is scheduled after an error");
        for_each_parallel(&[] as &[u8], 4, |_| Err("never")).unwrap();
    }
}
