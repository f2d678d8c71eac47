//! Runs the steps of a graph in dependency order, independent steps in parallel.
//!
//! Invariants: a step starts only after every input step finished successfully; each step
//! runs at most once; after the first failure no new step starts, steps already running are
//! left to finish (their results are discarded), and that first error is returned. Results are
//! returned indexed by step id.

use kiln_frontend::graph::{Graph, StepId};
use std::sync::{Condvar, Mutex, OnceLock};

/// Executes one step given the results of its inputs.
pub trait StepRunner<T>: Sync {
    type Error: Send;
    fn run(&self, step: StepId, inputs: &[(StepId, &T)]) -> Result<T, Self::Error>;
}

struct State<E> {
    remaining_inputs: Vec<usize>,
    ready: Vec<StepId>,
    running: usize,
    done: usize,
    error: Option<E>,
}

/// Runs every step of `graph` with up to `parallelism` at once.
pub fn run_graph<T, R>(graph: &Graph, runner: &R, parallelism: usize) -> Result<Vec<T>, R::Error>
where
    T: Send + Sync,
    R: StepRunner<T>,
{
    let count = graph.steps.len();
    let mut dependents: Vec<Vec<StepId>> = vec![Vec::new(); count];
    let mut remaining_inputs = vec![0; count];
    for step in &graph.steps {
        let mut inputs = step.inputs();
        inputs.sort();
        inputs.dedup();
        remaining_inputs[step.id.0] = inputs.len();
        for input in inputs {
            dependents[input.0].push(step.id);
        }
    }
    let ready: Vec<StepId> =
        (0..count).rev().filter(|i| remaining_inputs[*i] == 0).map(StepId).collect();
    let results: Vec<OnceLock<T>> = (0..count).map(|_| OnceLock::new()).collect();
    let state = Mutex::new(State { remaining_inputs, ready, running: 0, done: 0, error: None });
    let wake = Condvar::new();
    let workers = parallelism.clamp(1, count.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(graph, runner, &state, &wake, &dependents, &results));
        }
    });
    let state = state.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(error) = state.error {
        return Err(error);
    }
    Ok(results.into_iter().map(|r| r.into_inner().expect("every step ran")).collect())
}

fn worker<T, R>(
    graph: &Graph,
    runner: &R,
    state: &Mutex<State<R::Error>>,
    wake: &Condvar,
    dependents: &[Vec<StepId>],
    results: &[OnceLock<T>],
) where
    T: Send + Sync,
    R: StepRunner<T>,
{
    let count = graph.steps.len();
    loop {
        let step = {
            let mut guard = state.lock().unwrap();
            loop {
                if guard.error.is_some() || guard.done == count {
                    wake.notify_all();
                    return;
                }
                if let Some(step) = guard.ready.pop() {
                    guard.running += 1;
                    break step;
                }
                if guard.running == 0 {
                    // Nothing ready, nothing running, not done: cannot happen for a valid graph.
                    wake.notify_all();
                    return;
                }
                guard = wake.wait(guard).unwrap();
            }
        };
        // Inputs finished before this step became ready; each slot is written once.
        let inputs: Vec<(StepId, &T)> = graph.steps[step.0]
            .inputs()
            .into_iter()
            .map(|id| (id, results[id.0].get().expect("input finished")))
            .collect();
        let outcome = runner.run(step, &inputs);
        let mut guard = state.lock().unwrap();
        guard.running -= 1;
        match outcome {
            Ok(result) => {
                let _ = results[step.0].set(result);
                guard.done += 1;
                for dependent in &dependents[step.0] {
                    guard.remaining_inputs[dependent.0] -= 1;
                    if guard.remaining_inputs[dependent.0] == 0 {
                        guard.ready.push(*dependent);
                    }
                }
            }
            Err(error) => {
                if guard.error.is_none() {
                    guard.error = Some(error);
                }
            }
        }
        wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_frontend::instructions::parse_dockerfile;
    use kiln_frontend::lower::{LowerOptions, OfflineResolver, lower};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn graph(text: &str) -> Graph {
        let tree = kiln_frontend::syntax::parse(text).unwrap();
        lower(&parse_dockerfile(&tree).unwrap(), &LowerOptions::default(), &OfflineResolver)
            .unwrap()
    }

    const FOUR_STAGES: &str = "FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\n\
        FROM busybox AS c\nRUN c\nFROM busybox AS d\nRUN d\nFROM busybox\n\
        COPY --from=a / /a\nCOPY --from=b / /b\nCOPY --from=c / /c\nCOPY --from=d / /d\n";

    struct Recorder {
        running: AtomicUsize,
        peak: AtomicUsize,
        order: Mutex<Vec<usize>>,
        fail: Option<usize>,
    }

    impl StepRunner<usize> for Recorder {
        type Error = String;
        fn run(&self, step: StepId, inputs: &[(StepId, &usize)]) -> Result<usize, String> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.order.lock().unwrap().push(step.0);
            if self.fail == Some(step.0) {
                return Err(format!("step {} failed", step.0));
            }
            Ok(1 + inputs.iter().map(|(_, depth)| **depth).max().unwrap_or(0))
        }
    }

    fn recorder(fail: Option<usize>) -> Recorder {
        Recorder { running: 0.into(), peak: 0.into(), order: Mutex::new(vec![]), fail }
    }

    #[test]
    fn inputs_finish_first_and_independent_steps_overlap() {
        let g = graph(FOUR_STAGES);
        let r = recorder(None);
        let depths = run_graph(&g, &r, 4).unwrap();
        let order = r.order.lock().unwrap().clone();
        for step in &g.steps {
            let position = order.iter().position(|s| *s == step.id.0).unwrap();
            for input in step.inputs() {
                assert!(order.iter().position(|s| *s == input.0).unwrap() < position);
            }
        }
        assert_eq!(order.len(), g.steps.len());
        assert!(r.peak.load(Ordering::SeqCst) >= 2, "independent RUNs should overlap");
        assert_eq!(*depths.last().unwrap(), 6, "image, RUN a, then four COPYs");
    }

    #[test]
    fn first_error_stops_new_steps() {
        let g = graph(FOUR_STAGES);
        let first_run =
            g.steps.iter().position(|s| matches!(s.op, kiln_frontend::graph::Op::Run(_))).unwrap();
        let r = recorder(Some(first_run));
        let err = run_graph(&g, &r, 1).unwrap_err();
        assert_eq!(err, format!("step {first_run} failed"));
        let order = r.order.lock().unwrap().clone();
        assert!(order.len() < g.steps.len(), "steps after the failure must not start: {order:?}");
    }
}
