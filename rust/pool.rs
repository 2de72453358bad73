//! The crate's own rayon pool, sized by `MATRYO_FAST_NUM_THREADS` (default: all cores).
//!
//! Fork safety: a forked child (e.g. a DataLoader worker) inherits the pool object but not its
//! threads, so using it would hang. The pool remembers the pid that built it and a child builds
//! a fresh one; the parent's copy is leaked, never joined.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

/// Threads the pool will use: `MATRYO_FAST_NUM_THREADS` if it is a positive integer, else the
/// number of available cores.
pub fn configured_threads() -> usize {
    std::env::var("MATRYO_FAST_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The pool for this process, or `None` if no thread could be started (then work runs inline).
pub fn pool() -> Option<Arc<ThreadPool>> {
    let pid = std::process::id();
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, pool)) = guard.as_ref() {
        if *owner == pid {
            return Some(Arc::clone(pool));
        }
        // Inherited through fork: its threads do not exist here. Leak it; never drop or join.
        if let Some((_, stale)) = guard.take() {
            std::mem::forget(stale);
        }
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(configured_threads())
        .thread_name(|i| format!("matryo-fast-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *guard = Some((pid, Arc::clone(&pool)));
    Some(pool)
}

/// Threads that [`install`] will run on.
pub fn current_threads() -> usize {
    pool().map_or(1, |p| p.current_num_threads())
}

/// Runs `f` inside the pool (so rayon's parallel iterators in it use the pool).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(p) => p.install(f),
        None => f(),
    }
}
