//! Running independent trainings side by side in threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use seqlayers::Result;
use seqlayers::ensure_nonzero;

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

/// Runs `init` holding [`INIT_LOCK`]: a model's initialization (seeded in `init` with
/// `B::seed`) or a check's unseeded build draws from the backend's global generator, which a
/// run in another thread must not draw from in between, or the seeded runs would not be
/// reproducible.
pub fn init_locked<T>(init: impl FnOnce() -> T) -> T {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    init()
}

/// Gives each of `jobs` trainings run at once one core. With `jobs > 1` it caps the rayon pool
/// (the fused CPU kernels) and matrixmultiply (every matrix product of burn-ndarray and of the
/// projections) at one thread, unless `RAYON_NUM_THREADS` or `MATMUL_NUM_THREADS` is set.
/// Without the cap matrixmultiply starts a helper thread per physical core that all jobs share,
/// and a job waiting for it spins in `sched_yield`: with two jobs on two cores a Mamba d = 64
/// step took 1.4–1.7× longer. Call it first in `main`, before any thread or matrix product.
pub fn one_core_per_job(jobs: usize) {
    if jobs <= 1 {
        return;
    }
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // SAFETY: called first in `main`, before the program starts a thread, so no other
        // thread reads or writes the environment at the same time.
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Fails only if the global pool already exists; then it keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global();
    }
}
