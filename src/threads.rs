//! A small persistent thread pool for parallelism inside one `run` call.
//!
//! One primitive: `parallel_for(n, f)` calls `f(0..n)` once each, spread over the caller and the
//! pool's workers, and returns when all calls are done; `parallel_for_worker` also tells each
//! call which thread runs it, so tasks can reuse per-thread buffers. Which thread runs a task
//! never changes what it computes, so results are bit-identical for any thread count. If the pool is already
//! busy with another caller's run (a host sharing one model across threads), the second caller
//! runs its tasks inline instead of queueing, so the machine is never oversubscribed.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;

/// A task body `f(worker, task)` with its lifetime erased; valid only while its
/// `parallel_for_worker` call is running.
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize, usize) + Sync));
// SAFETY: the pointee is `Sync`, and `parallel_for_worker` keeps it alive until every worker is
// done.
unsafe impl Send for JobPtr {}

struct State {
    job: Option<JobPtr>,
    n_tasks: usize,
    generation: u64,
    /// Workers still inside the current job.
    active: usize,
    panicked: Option<Box<dyn std::any::Any + Send>>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
    next: AtomicUsize,
    /// Mirrors `State::generation` so idle workers can spin on it without the lock.
    generation: AtomicU64,
    /// Workers not yet done with the current job, for the caller to spin on.
    busy: AtomicUsize,
}

/// Spin iterations (each a `pause`, tens of ns) before a thread sleeps on a condition
/// variable: the layers of one run start their parallel sections microseconds apart, while
/// waking a sleeping thread costs tens of microseconds under virtualization.
const SPIN_LIMIT: u32 = 4000;

/// Spins until `done()` holds or the limit passes; true if it holds.
fn spin_until(done: impl Fn() -> bool) -> bool {
    for _ in 0..SPIN_LIMIT {
        if done() {
            return true;
        }
        std::hint::spin_loop();
    }
    done()
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the run currently using the workers.
    in_use: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic inside a task is caught before it can poison the lock; recover regardless.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ThreadPool {
    /// A pool giving `threads`-way parallelism (the caller counts as one thread).
    pub fn new(threads: usize) -> ThreadPool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { job: None, n_tasks: 0, generation: 0, active: 0, panicked: None, shutdown: false }),
            wake: Condvar::new(),
            done: Condvar::new(),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        });
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let shared = shared.clone();
            // Worker indices are dense (1, 2, ...) whichever spawns fail: a failed spawn leaves
            // a gap in the names only.
            let index = workers.len() + 1;
            let spawned = std::thread::Builder::new().name(format!("q8bert-{i}")).spawn(move || worker(&shared, index));
            // Fewer threads than asked if the OS refuses: still correct, just less parallel.
            if let Ok(handle) = spawned {
                workers.push(handle);
            }
        }
        ThreadPool { shared, workers, in_use: Mutex::new(()) }
    }

    /// Threads a `parallel_for` may use, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` for every `i < n`; returns when all are done. A panic in any task is
    /// re-raised here after every thread has stopped using `f`.
    pub fn parallel_for(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        self.parallel_for_worker(n, &|_, i| f(i))
    }

    /// Runs `f(worker, i)` for every `i < n`, where `worker < self.threads()` names the thread
    /// running the call (0: the caller). Calls with the same `worker` run one after another on
    /// one thread, never at the same time.
    pub fn parallel_for_worker(&self, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let guard = match self.in_use.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if guard.is_none() || self.workers.is_empty() || n <= 1 {
            (0..n).for_each(|i| f(0, i));
            return;
        }
        // SAFETY: only the lifetime is erased; `Finish` below waits for every worker to leave
        // the job before this function returns or unwinds, so `f` outlives all uses.
        let job = JobPtr(unsafe { std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), *const (dyn Fn(usize, usize) + Sync + 'static)>(f) });
        {
            let mut st = lock(&self.shared.state);
            self.shared.next.store(0, Ordering::Relaxed);
            st.job = Some(job);
            st.n_tasks = n;
            st.generation += 1;
            st.active = self.workers.len();
            self.shared.busy.store(self.workers.len(), Ordering::Relaxed);
            self.shared.generation.store(st.generation, Ordering::Release);
            self.shared.wake.notify_all();
        }
        struct Finish<'a>(&'a Shared);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                spin_until(|| self.0.busy.load(Ordering::Acquire) == 0);
                let mut st = lock(&self.0.state);
                while st.active > 0 {
                    st = self.0.done.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.job = None;
            }
        }
        let finish = Finish(&self.shared);
        run_tasks(&self.shared.next, n, f, 0);
        drop(finish);
        if let Some(payload) = lock(&self.shared.state).panicked.take() {
            resume_unwind(payload);
        }
        drop(guard);
    }
}

fn run_tasks(next: &AtomicUsize, n: usize, f: &(dyn Fn(usize, usize) + Sync), worker: usize) {
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(worker, i);
    }
}

/// The loop of pool thread number `index` (1-based: the caller of a parallel section is 0).
fn worker(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        spin_until(|| shared.generation.load(Ordering::Acquire) != seen);
        let (job, n) = {
            let mut st = lock(&shared.state);
            while st.generation == seen && !st.shutdown {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
            (st.job, st.n_tasks)
        };
        if let Some(JobPtr(f)) = job {
            // SAFETY: the job stays alive until `active` reaches 0, which happens below.
            let f = unsafe { &*f };
            let result = catch_unwind(AssertUnwindSafe(|| run_tasks(&shared.next, n, f, index)));
            let mut st = lock(&shared.state);
            if let Err(payload) = result {
                st.panicked.get_or_insert(payload);
            }
            st.active -= 1;
            shared.busy.fetch_sub(1, Ordering::Release);
            if st.active == 0 {
                shared.done.notify_all();
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = ThreadPool::new(3);
        for n in [0, 1, 2, 7, 100] {
            let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.parallel_for(n, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn worker_indices_are_in_range_and_never_shared_by_running_tasks() {
        let pool = ThreadPool::new(3);
        let running: Vec<AtomicUsize> = (0..pool.threads()).map(|_| AtomicUsize::new(0)).collect();
        let used: Vec<AtomicUsize> = (0..pool.threads()).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..50 {
            pool.parallel_for_worker(64, &|w, _| {
                assert!(w < pool.threads(), "worker {w} of {}", pool.threads());
                assert_eq!(running[w].fetch_add(1, Ordering::AcqRel), 0, "worker {w} runs two tasks at once");
                used[w].fetch_add(1, Ordering::Relaxed);
                std::hint::black_box((0..200).sum::<usize>());
                running[w].fetch_sub(1, Ordering::AcqRel);
            });
        }
        assert_eq!(used.iter().map(|u| u.load(Ordering::Relaxed)).sum::<usize>(), 50 * 64);
    }

    #[test]
    fn panics_propagate_and_the_pool_keeps_working() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| pool.parallel_for(16, &|i| assert!(i != 9, "task 9 fails"))));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        pool.parallel_for(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }

    #[test]
    fn concurrent_callers_do_not_deadlock() {
        let pool = ThreadPool::new(2);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        pool.parallel_for(8, &|i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 28);
                    }
                });
            }
        });
    }
}
