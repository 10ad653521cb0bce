//! The index worker pool: N threads take batches from the spaces' index queues and
//! move them out of the fresh tier: into the warm tier when the graph is behind (a
//! backlog), straight into the HNSW graph otherwise. A worker with no batch to take
//! moves warm rows on into the graph, so the graph catches up when there is CPU to
//! spare.
//!
//! - Spaces with work wait in the ready ring; a worker takes the next one, pops a
//!   batch (weighted fair over lanes), and puts the space back at the end of the ring
//!   if it has more, so busy spaces cannot starve quiet ones and an idle worker picks
//!   up the next batch of a busy space.
//! - Batch size adapts: a quarter of the space's depth shared among the workers,
//!   from 1 (short queue: lowest latency) up to `index_batch` (under load: throughput).
//! - A batch is held by a guard: if its worker panics, the guard puts the records
//!   back in the high lane, and the worker loop restarts.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Inner;
use super::registry::Registry;
use crate::error::Result;
use crate::index::fresh::IndexRow;
use crate::index::hnsw::VectorRef;
use crate::ingest::queue::Item;
use crate::ingest::stats::{Counters, names};
use crate::space::Space;
use crate::types::{Lane, Lsn, now_us};

/// Test hook: an index worker panics (once) when it meets this (space name, LSN).
/// Unit tests only; a static so the worker thread sees it.
#[cfg(test)]
pub(crate) static PANIC_AT: parking_lot::Mutex<Option<(String, Lsn)>> =
    parking_lot::Mutex::new(None);

/// Test hooks: index workers take no batch of the spaces named in `HOLD` (a backlog
/// builds up), and move no warm row of those in `HOLD_MOVES` into their graph.
#[cfg(test)]
pub(crate) static HOLD: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
#[cfg(test)]
pub(crate) static HOLD_MOVES: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());

/// A worker thread: runs the loop, restarting it after a panic.
pub(super) fn run(inner: &Inner) {
    lower_priority(inner.config.index_nice);
    loop {
        match catch_unwind(AssertUnwindSafe(|| worker_loop(inner))) {
            Ok(()) => return,
            Err(_) => {
                Counters::bump(&inner.registry.counters.worker_restarts);
                metrics::counter!(names::WORKER_RESTARTS).increment(1);
                tracing::error!("index worker panicked; its batch was re-queued, restarting it");
            }
        }
    }
}

/// Makes this thread `nice`: indexing is the one deferrable work, so with it niced,
/// acks and recalls win the CPU on a busy machine.
fn lower_priority(nice: i32) {
    if let Err(error) = crate::lower_thread_priority(nice) {
        tracing::warn!(nice, %error, "cannot lower the index workers' priority");
    }
}

fn worker_loop(inner: &Inner) {
    let reg = &inner.registry;
    let workers = inner.config.index_threads;
    while !inner.stopping.load(Ordering::Acquire) {
        let Some(no) = reg.ring.pop() else {
            if move_warm_rows(inner) {
                continue;
            }
            let mut g = reg.work.lock();
            if reg.ring.is_empty() && !inner.stopping.load(Ordering::Acquire) {
                reg.work_cv.wait_for(&mut g, Duration::from_millis(50));
            }
            continue;
        };
        let Some(space) = reg.get(no) else {
            continue; // dropped
        };
        #[cfg(test)]
        if HOLD.lock().contains(&space.info.name) {
            reg.ring.push(no);
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // A quarter of this worker's share of the queue: big enough to amortise, small
        // enough that workers finish a burst together instead of one holding the tail.
        let max = (space.queue.len() / (4 * workers)).clamp(1, inner.config.index_batch);
        let batch = space.queue.pop_batch(max);
        if space.queue.reschedule_after_take() {
            reg.ring.push(no);
            let _g = reg.work.lock();
            reg.work_cv.notify_one();
        }
        if batch.is_empty() {
            continue;
        }
        let mut held = Held {
            reg,
            space: &space,
            items: batch.into_iter().map(|(_, it)| it).collect(),
            done: false,
        };
        let started = Instant::now();
        match index_items(&space, &held.items, inner.config.warm_backlog) {
            Ok(()) => {
                count_busy(reg, started);
                retire(reg, &held.items);
                held.done = true;
            }
            Err(e) => {
                // The guard re-queues the batch; back off so a persistent failure
                // does not spin.
                tracing::error!(space = space.info.name, error = %e, "indexing failed; will retry");
                drop(held);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A batch a worker holds: put back (high lane) unless it was indexed.
struct Held<'a> {
    reg: &'a Registry,
    space: &'a Space,
    items: Vec<Item>,
    done: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.space.dropped.load(Ordering::Acquire) {
            retire_budget(self.reg, &self.items);
            return;
        }
        for item in self.items.drain(..) {
            self.space.queue.push(
                Lane::High,
                Item {
                    retried: true,
                    ..item
                },
            );
        }
        self.reg.schedule(self.space);
    }
}

/// Takes the records out of the space's fresh tier: into the warm tier when more
/// than `warm_backlog` records are queued (with these) and the warm tier takes
/// them, else into the graph. Records already in the graph (a retried batch) are
/// skipped.
pub(super) fn index_items(space: &Space, items: &[Item], warm_backlog: usize) -> Result<()> {
    let lsns: Vec<Lsn> = items.iter().map(|i| i.lsn).collect();
    #[cfg(test)]
    {
        let mut hook = PANIC_AT.lock();
        if let Some((name, at)) = hook.clone()
            && name == space.info.name
            && lsns.contains(&at)
        {
            *hook = None;
            drop(hook);
            panic!("test hook: index worker panics at LSN {at}");
        }
    }
    let rows = space.fresh.rows(&lsns);
    // A backlog, or a fresh tier half full (a small one fills before the backlog).
    let backlog = space.queue.len() + items.len();
    let behind = backlog > warm_backlog || 2 * space.fresh.len() >= space.fresh.capacity();
    let warmed = behind && warm_ready(space, rows.len()) && {
        let prepared: Vec<(Lsn, Vec<f32>)> = rows.iter().map(|(l, v)| (*l, v.to_f32())).collect();
        space.warm.insert(&prepared)
    };
    if !warmed {
        let refs: Vec<(Lsn, VectorRef<'_>)> = rows.iter().map(|(l, v)| (*l, v.as_ref())).collect();
        // Only a retried batch can have rows in the graph already (in any shard).
        let retried = items.iter().any(|i| i.retried);
        space.hnsw.add_batch(&refs, retried, &space.recalls)?;
    }
    space.fresh.mark_indexed(&lsns);
    space.refresh_indexed();
    Ok(())
}

/// True if the warm tier can take `rows` more now, training its codebook first (on
/// the fresh tier's rows) when it has none or drift asks for a new one.
fn warm_ready(space: &Space, rows: usize) -> bool {
    let warm = &space.warm;
    if !warm.has_room(rows) {
        return false;
    }
    if warm.ready() {
        return true;
    }
    let sample = space.fresh.sample(crate::index::warm::TRAIN_ROWS);
    warm.train(&sample);
    warm.ready()
}

/// Moves one batch of warm rows into the graph, for the first space that has some
/// and no other worker moving its rows. False if there was nothing to move.
fn move_warm_rows(inner: &Inner) -> bool {
    let reg = &inner.registry;
    // Rows per move: small, so that a worker is soon back for the fresh tier.
    let max = inner.config.index_batch.min(64);
    let spaces: Vec<_> = reg.by_no.read().values().cloned().collect();
    for space in spaces {
        if space.warm.len() == 0 || space.dropped.load(Ordering::Acquire) {
            continue;
        }
        #[cfg(test)]
        if HOLD_MOVES.lock().contains(&space.info.name) {
            continue;
        }
        let started = Instant::now();
        let moved = space.warm.move_to_graph(max, |lsns, retry| {
            let (metric, precision) = (space.info.config.metric, space.info.config.index.precision);
            let mut rows = Vec::with_capacity(lsns.len());
            for &lsn in lsns {
                let v = space.read_embedding(inner.log.as_ref(), lsn)?;
                let prepared = crate::index::score::prepare(metric, &v);
                rows.push((lsn, IndexRow::from_prepared(precision, &prepared)));
            }
            let refs: Vec<(Lsn, VectorRef<'_>)> =
                rows.iter().map(|(l, v)| (*l, v.as_ref())).collect();
            space.hnsw.add_batch(&refs, retry, &space.recalls)
        });
        match moved {
            Ok(0) => continue,
            Ok(n) => {
                space.refresh_indexed();
                count_busy(reg, started);
                metrics::counter!(names::WARM_TO_GRAPH).increment(n as u64);
                return true;
            }
            Err(e) => {
                tracing::error!(space = space.info.name, error = %e, "moving warm rows into the graph failed; will retry");
                std::thread::sleep(Duration::from_millis(100));
                return false;
            }
        }
    }
    false
}

/// Adds the time since `started` to the workers' busy time.
fn count_busy(reg: &Registry, started: Instant) {
    let busy = started.elapsed();
    reg.counters
        .worker_busy_ns
        .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    metrics::counter!(names::WORKER_BUSY).increment(busy.as_micros() as u64);
}

/// Counts indexed records and releases their admission.
pub(super) fn retire(reg: &Registry, items: &[Item]) {
    let n = items.len() as u64;
    reg.counters.indexed.fetch_add(n, Ordering::Relaxed);
    Counters::bump(&reg.counters.batches);
    reg.counters.largest_batch.fetch_max(n, Ordering::Relaxed);
    metrics::counter!(names::INDEXED).increment(n);
    metrics::histogram!(names::BATCH_SIZE).record(n as f64);
    let now = now_us();
    let h = metrics::histogram!(names::OBSERVE_INDEXED);
    for item in items {
        h.record((now - item.recorded_at_us).max(0) as f64 / 1e6);
    }
    retire_budget(reg, items);
}

fn retire_budget(reg: &Registry, items: &[Item]) {
    let bytes: usize = items.iter().map(|i| i.bytes as usize).sum();
    reg.budget.release(items.len(), bytes);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod panic_tests {
    use super::*;
    use crate::{Engine, EngineConfig, Observation, SpaceConfig};

    #[test]
    fn a_panicking_worker_is_restarted_and_its_batch_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.index_threads = 1;
        let engine = Engine::open(cfg).unwrap();
        engine
            .create_space("panic-hook", SpaceConfig::new(4))
            .unwrap();
        *PANIC_AT.lock() = Some(("panic-hook".into(), 7));
        for i in 0..20 {
            let obs = Observation {
                content: format!("o{i}"),
                embedding: vec![i as f32, 1.0, 0.0, 0.5],
                ..Default::default()
            };
            engine.observe_blocking("panic-hook", obs).unwrap();
        }
        engine
            .wait_indexed("panic-hook", 20, Duration::from_secs(20))
            .unwrap();
        let stats = engine.ingest_stats();
        assert_eq!(stats.worker_restarts, 1);
        assert!(PANIC_AT.lock().is_none(), "the hook fired");
        let (_, s) = engine.describe_space("panic-hook").unwrap();
        assert_eq!(s.indexed_count, 20, "no record lost");
        assert_eq!(s.fresh_count, 0);
        engine.close().unwrap();
    }
}
