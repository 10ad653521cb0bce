//! The engine's background threads (index workers, pressure monitor, checkpointer)
//! and shutdown: drain the index queue, stop the threads, close the log,
//! checkpoint every space.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Engine, Inner, compact, forget, monitor, workers};
use crate::error::{Error, Result};
use crate::log::Log;

impl Engine {
    pub(super) fn start_threads(&self) -> Result<()> {
        let mut threads = self.threads.lock();
        let mut spawn = |name: String, run: fn(&Inner)| -> Result<()> {
            let inner = Arc::clone(&self.inner);
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || run(&inner))
                .map_err(|e| Error::io("thread", e))?;
            threads.push(h);
            Ok(())
        };
        for i in 0..self.inner.config.index_threads {
            spawn(format!("mnemo-index-{i}"), workers::run)?;
        }
        spawn("mnemo-pressure".into(), monitor::run)?;
        spawn("mnemo-checkpoint".into(), checkpointer)?;
        spawn("mnemo-maintain".into(), maintainer)?;
        spawn("mnemo-compact".into(), compact::compactor)?;
        Ok(())
    }

    /// Stops the workers, commits what is queued, checkpoints every space and
    /// closes the log. Unindexed records are replayed from the log at next open.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// [`Engine::close`] for an engine shared behind an `Arc`: the same drain,
    /// checkpoint and log close; afterwards every call fails with `ShuttingDown`.
    /// A second call does nothing.
    pub fn close_shared(&self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.inner.closing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Drain: everything admitted gets indexed, within the configured time.
        let deadline =
            Instant::now() + Duration::from_secs(self.inner.config.ingest.shutdown_drain_s);
        while self.inner.registry.budget.items() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let left = self.inner.registry.budget.items();
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown drain timed out; the rest is indexed from the log at next open"
            );
        }
        self.inner.stopping.store(true, Ordering::Release);
        {
            let _g = self.inner.registry.work.lock();
            self.inner.registry.work_cv.notify_all();
        }
        {
            let _g = self.inner.stop_lock.lock();
            self.inner.stop_cv.notify_all();
        }
        for h in self.threads.lock().drain(..) {
            if h.join().is_err() {
                tracing::error!("an engine thread panicked");
            }
        }
        self.inner.log.shutdown();
        let mut first_err = None;
        for space in self.inner.registry.list() {
            // Always at close: the next open then reads the state, not the log.
            if let Err(e) = space.checkpoint(true) {
                tracing::error!(space = space.info.name, error = %e, "checkpoint at close failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn checkpointer(inner: &Inner) {
    // Saving a graph is deferrable work, like indexing.
    if let Err(error) = crate::lower_thread_priority(inner.config.index_nice) {
        tracing::warn!(%error, "cannot lower the checkpoint thread's priority");
    }
    let interval = inner.config.checkpoint_interval();
    loop {
        {
            let mut g = inner.stop_lock.lock();
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            inner.stop_cv.wait_for(&mut g, interval);
        }
        for space in inner.registry.list() {
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = space.checkpoint(space.state_dirty()) {
                tracing::warn!(space = space.info.name, error = %e, "periodic checkpoint failed");
            }
        }
    }
}

/// Sweeps expired memories and purges dead ones, every `maintenance_interval_ms`.
fn maintainer(inner: &Inner) {
    // Deferrable, like indexing: acks and recalls win the cores.
    if let Err(error) = crate::lower_thread_priority(inner.config.index_nice) {
        tracing::warn!(%error, "cannot lower the maintenance thread's priority");
    }
    let interval = Duration::from_millis(inner.config.retention.maintenance_interval_ms);
    loop {
        {
            let mut g = inner.stop_lock.lock();
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            inner.stop_cv.wait_for(&mut g, interval);
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
        }
        if let Err(e) = forget::maintain_all(inner) {
            tracing::warn!(error = %e, "expiry sweep or purge failed; will retry");
        }
    }
}
