//! Recalls before inserts: index workers step aside while a recall ranks.
//!
//! A search waits for the insert in progress on each shard (an insert holds its
//! graph exclusively, see [`super::hnsw`]), and index workers run niced, so an insert
//! that a busy machine preempts can hold a search for tens of milliseconds. The gate
//! counts recalls in progress, engine-wide; before each insert a worker waits (bounded)
//! until none is, so a recall waits for at most the inserts already under way, and
//! has the cores to itself meanwhile. Under a recall load that never pauses, workers
//! alternate: after a wait that timed out they insert for as long as they waited, so
//! indexing keeps at least half its pace.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest a worker waits for recalls before it inserts anyway.
pub(crate) const MAX_YIELD: Duration = Duration::from_millis(20);

/// See the module docs.
#[derive(Default)]
pub(crate) struct RecallGate {
    active: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

/// A recall in progress; dropping it ends it.
#[must_use = "the recall counts as in progress only while the guard lives"]
pub(crate) struct Recalling<'a>(&'a RecallGate);

impl RecallGate {
    /// Marks a recall in progress until the guard is dropped.
    pub(crate) fn enter(&self) -> Recalling<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        Recalling(self)
    }

    /// Recalls in progress now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until no recall is in progress, at most `max`; returns how long it waited.
    fn wait_idle(&self, max: Duration) -> Duration {
        if self.active() == 0 {
            return Duration::ZERO;
        }
        let started = Instant::now();
        let deadline = started + max;
        let mut g = self.lock.lock();
        while self.active() > 0 {
            if self.idle.wait_until(&mut g, deadline).timed_out() {
                break;
            }
        }
        started.elapsed()
    }

    /// A worker's yielding state for one batch of inserts.
    pub(crate) fn yielder(&self) -> Yielder<'_> {
        Yielder {
            gate: self,
            free_until: None,
        }
    }
}

impl Drop for Recalling<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders this wake-up after a waiter's check of `active`.
            let _g = self.0.lock.lock();
            self.0.idle.notify_all();
        }
    }
}

/// Call [`Yielder::before_insert`] before each insert of a batch.
pub(crate) struct Yielder<'a> {
    gate: &'a RecallGate,
    /// After a timed-out wait: inserts until then go without yielding.
    free_until: Option<Instant>,
}

impl Yielder<'_> {
    /// Waits for recalls in progress (see the module docs).
    pub(crate) fn before_insert(&mut self) {
        if self.free_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let waited = self.gate.wait_idle(MAX_YIELD);
        self.free_until = (waited >= MAX_YIELD).then(|| Instant::now() + waited);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn idle_gate_does_not_wait() {
        let gate = RecallGate::default();
        let started = Instant::now();
        gate.yielder().before_insert();
        assert!(started.elapsed() < MAX_YIELD);
    }

    #[test]
    fn a_worker_waits_for_the_recall_to_end() {
        let gate = Arc::new(RecallGate::default());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let recall = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                let _r = gate.enter();
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        };
        entered_rx.recv().unwrap();
        assert_eq!(gate.active(), 1);
        let worker = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.yielder().before_insert();
                gate.active()
            })
        };
        release_tx.send(()).unwrap();
        recall.join().unwrap();
        assert_eq!(
            worker.join().unwrap(),
            0,
            "the worker went on once recalls ended"
        );
    }

    #[test]
    fn endless_recalls_leave_indexing_half_the_time() {
        let gate = RecallGate::default();
        let _forever = gate.enter();
        let mut y = gate.yielder();
        let started = Instant::now();
        y.before_insert(); // times out
        let waited = started.elapsed();
        assert!(waited >= MAX_YIELD);
        // Free to insert now, without waiting, for about as long as it waited.
        let again = Instant::now();
        y.before_insert();
        assert!(
            again.elapsed() < MAX_YIELD,
            "no second wait right after a timeout"
        );
    }

    /// Many recalls entering and leaving while workers yield: the count returns to
    /// zero and no worker is left waiting past its bound.
    #[test]
    fn contention_keeps_the_count_exact() {
        let gate = Arc::new(RecallGate::default());
        let recalls: Vec<_> = (0..8)
            .map(|_| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        let _r = gate.enter();
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let started = Instant::now();
                        gate.yielder().before_insert();
                        assert!(started.elapsed() < MAX_YIELD * 10);
                    }
                })
            })
            .collect();
        for t in recalls.into_iter().chain(workers) {
            t.join().unwrap();
        }
        assert_eq!(gate.active(), 0);
    }
}
