//! Running independent trainings side by side in threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use seqlayers::Result;
use seqlayers::error::ensure_nonzero;

/// Runs `run` on every item, `jobs` threads at a time, the most expensive items (by `cost`)
/// first so that long runs do not end up alone at the tail. `done(k, total, outcome)` is called
/// as each item finishes; the outcomes come back in the order of `items`. The first error stops
/// the queue and is returned.
pub fn run_parallel<I: Sync, O: Send>(
    items: &[I],
    jobs: usize,
    cost: impl Fn(&I) -> usize,
    run: impl Fn(&I) -> Result<O> + Sync,
    done: impl Fn(usize, usize, &O) + Sync,
) -> Result<Vec<O>> {
    ensure_nonzero("jobs (trainings at once; use 1 or more)", jobs)?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&items[i])));
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<O>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let worker = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
            let outcome = run(&items[i]);
            if let Ok(o) = &outcome {
                done(finished.fetch_add(1, Ordering::SeqCst) + 1, items.len(), o);
            }
            let failed = outcome.is_err();
            results.lock().expect("no worker panicked")[i] = Some(outcome);
            if failed {
                next.store(order.len(), Ordering::SeqCst);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(worker);
        }
    });
    results
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .flatten()
        .collect()
}

/// Serializes model initializations: the backend's seed is global, so a thread seeds it and
/// draws its model while holding this lock.
pub static INIT_LOCK: Mutex<()> = Mutex::new(());
