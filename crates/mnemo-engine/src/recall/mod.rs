//! Snapshot-isolated recall.
//!
//! A [`RecallCursor`] is bound to one snapshot LSN `S`: it only ever returns records
//! with `lsn <= S`, and since LSNs are dense and records immutable, the records
//! `1..=S` are exactly the ones committed before the snapshot. The first batch ranks
//! all `k`: it scans the fresh tier (`index/fresh/scan.rs`), *then* searches the
//! HNSW graph (a record leaves the fresh tier only after it is in the graph, so
//! nothing committed falls between the two), merges the candidates by LSN and
//! re-scores the best `k` + a margin exactly with the f32 vector from the log
//! (`Space::read_memory`). Batches then read the ranked records in order, so a recall
//! costs one search however many batches it is delivered in.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

mod plan;

use crate::error::{Error, Result};
use crate::index::score;
use crate::log::Log;
use crate::space::{SnapshotPin, Space};
use crate::types::{Filter, Lsn, Memory, Ranking};
use plan::Plan;

/// Candidates re-scored beyond `k` (at least this many, or `k / 2`): the fresh scan
/// ranks by 8-bit codes and the graph at index precision, so the exact re-score
/// looks a little further than `k` before it picks the final `k`.
pub(crate) const RESCORE_MARGIN: usize = 32;

/// Largest `k` one recall may ask for.
pub const MAX_RECALL_K: usize = 10_000;

/// Longest a read-your-writes recall may wait for its `min_lsn`.
pub const MAX_RECALL_WAIT: Duration = Duration::from_secs(60);

/// Which snapshot a recall reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotSpec {
    /// Everything committed when the recall starts.
    #[default]
    Latest,
    /// Exactly the records with `lsn <= S` (S must be committed already).
    At(Lsn),
    /// Read-your-writes: wait (bounded) until `lsn` is committed, then read the latest.
    AtLeast(Lsn),
}

/// A recall request.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallRequest {
    /// The cue embedding (exactly `dim` finite floats).
    pub cue: Vec<f32>,
    /// How many results in total, 1..=10,000.
    pub k: usize,
    /// Snapshot choice.
    pub snapshot: SnapshotSpec,
    /// Longest wait for [`SnapshotSpec::AtLeast`], at most [`MAX_RECALL_WAIT`].
    pub max_wait: Duration,
    /// Only memories matching this (the default: all).
    pub filter: Filter,
    /// How similarity is weighed with recency and confidence (the default:
    /// similarity alone).
    pub ranking: Ranking,
}

impl RecallRequest {
    /// Latest snapshot, `k` results.
    pub fn new(cue: Vec<f32>, k: usize) -> Self {
        RecallRequest {
            cue,
            k,
            snapshot: SnapshotSpec::Latest,
            max_wait: Duration::from_secs(5),
            filter: Filter::default(),
            ranking: Ranking::default(),
        }
    }
}

/// An open recall: pull results batch by batch with [`RecallCursor::next_batch`].
#[must_use = "a cursor yields nothing until next_batch is called"]
pub struct RecallCursor {
    space: Arc<Space>,
    log: Arc<dyn Log>,
    cue: Vec<f32>,
    prepared: Vec<f32>,
    snapshot: Lsn,
    remaining: usize,
    filter: Filter,
    ranking: Ranking,
    exact_limit: u64,
    /// (LSN, exact score) of the results not yet returned, best first; ranked on
    /// the first batch.
    ranked: Option<VecDeque<(Lsn, f32)>>,
    /// Keeps the snapshot readable (no purge passes it) while the cursor lives.
    _pin: SnapshotPin,
}

impl std::fmt::Debug for RecallCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecallCursor")
            .field("space", &self.space.info.name)
            .field("snapshot", &self.snapshot)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl RecallCursor {
    pub(crate) fn open(
        space: Arc<Space>,
        log: Arc<dyn Log>,
        req: RecallRequest,
        exact_limit: u64,
    ) -> Result<Self> {
        let dim = space.info.config.dim as usize;
        if req.cue.len() != dim {
            return Err(Error::invalid(format!(
                "cue has {} dimensions, the space has {dim}",
                req.cue.len()
            )));
        }
        if let Some(i) = req.cue.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!("cue[{i}] is not a finite number")));
        }
        req.filter.validate()?;
        req.ranking.validate()?;
        if req.max_wait > MAX_RECALL_WAIT {
            return Err(Error::invalid(format!(
                "max_wait must be at most {} ms, got {} ms",
                MAX_RECALL_WAIT.as_millis(),
                req.max_wait.as_millis()
            )));
        }
        if req.k == 0 || req.k > MAX_RECALL_K {
            return Err(Error::invalid(format!(
                "k must be in 1..={MAX_RECALL_K}, got {}",
                req.k
            )));
        }
        let committed = space.committed.get();
        let snapshot =
            match req.snapshot {
                SnapshotSpec::Latest => committed,
                SnapshotSpec::At(s) if s <= committed => s,
                SnapshotSpec::At(s) => {
                    return Err(Error::SnapshotInFuture {
                        requested: s,
                        committed,
                    });
                }
                SnapshotSpec::AtLeast(want) => space
                    .committed
                    .wait_for(want, req.max_wait)
                    .map_err(|seen| Error::Timeout {
                        wanted: want,
                        committed: seen,
                        waited: req.max_wait,
                    })?,
            };
        let pin = space.pin(snapshot)?;
        let prepared = score::prepare(space.info.config.metric, &req.cue);
        Ok(RecallCursor {
            _pin: pin,
            space,
            log,
            cue: req.cue,
            prepared,
            snapshot,
            remaining: req.k,
            filter: req.filter,
            ranking: req.ranking,
            exact_limit,
            ranked: None,
        })
    }

    /// The snapshot LSN every batch is served from.
    pub fn snapshot(&self) -> Lsn {
        self.snapshot
    }

    /// True once `k` results were returned or the snapshot holds no more records.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
            || self.snapshot == 0
            || self.ranked.as_ref().is_some_and(VecDeque::is_empty)
    }

    /// The next (up to) `n` results, best first; never one returned before.
    /// An empty batch means the cursor is done.
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<Memory>> {
        self.space.check_live()?;
        if self.is_done() {
            return Ok(Vec::new());
        }
        if self.ranked.is_none() {
            self.ranked = Some(self.rank()?);
        }
        let Some(ranked) = self.ranked.as_mut() else {
            return Ok(Vec::new());
        };
        let take = n.min(self.remaining).min(ranked.len());
        let mut batch = Vec::with_capacity(take);
        for (lsn, score) in ranked.drain(..take) {
            let mut m = self.space.read_memory(self.log.as_ref(), lsn)?;
            m.score = score;
            batch.push(m);
        }
        self.remaining -= take;
        Ok(batch)
    }

    /// The best `min(k, S)` records of the snapshot (those matching the filter)
    /// with exact scores (combined with the ranking's factors), best first. See
    /// `plan.rs` for how candidates are found.
    fn rank(&self) -> Result<VecDeque<(Lsn, f32)>> {
        let snapshot = self.snapshot;
        let available = usize::try_from(snapshot).unwrap_or(usize::MAX);
        let want = self.remaining.min(available);
        let margin = (want / 2).max(RESCORE_MARGIN);
        // Index workers pause their next insert until this recall has ranked.
        let _recalling = self.space.recalls.enter();
        let started = std::time::Instant::now();
        let traced = tracing::enabled!(tracing::Level::DEBUG);
        let sched0 = traced.then(crate::thread_sched_ns).flatten();
        let plan = Plan {
            space: &self.space,
            cue: &self.cue,
            prepared: &self.prepared,
            snapshot,
            filter: &self.filter,
            ranking: &self.ranking,
            exact_limit: self.exact_limit,
            log: self.log.as_ref(),
        };
        let selection = plan.select();
        let mut pool = plan.pool(want, margin);
        let (ranked, searched) = loop {
            let candidates = plan.candidates(selection.as_ref(), pool, want)?;
            let searched = started.elapsed();
            let full = candidates.len() >= pool;
            let floor = plan.floor(&candidates);
            let ranked = plan.rescore(candidates, pool, want)?;
            if plan.needs_wider(full, floor, &ranked, pool, want) {
                pool = Plan::widen(pool);
                continue;
            }
            break (ranked, searched);
        };
        let sched1 = traced.then(crate::thread_sched_ns).flatten();
        // CPU and run-queue wait of this thread (µs): a slow recall with little CPU
        // waited for a lock or a core.
        let (cpu, runq) = match (sched0, sched1) {
            (Some(a), Some(b)) => (
                b.0.saturating_sub(a.0) / 1000,
                b.1.saturating_sub(a.1) / 1000,
            ),
            _ => (0, 0),
        };
        tracing::debug!(
            cpu_us = cpu,
            runq_us = runq,
            space = %self.space.info.name,
            fresh_rows = self.space.fresh.len(),
            selected = selection.as_ref().map(|s| s.len()),
            pool,
            search_us = searched.as_micros() as u64,
            rescore_us = (started.elapsed() - searched).as_micros() as u64,
            "recall ranked"
        );
        Ok(ranked.into())
    }

    /// Drains the cursor into one vector (all `k` results).
    pub fn collect_all(mut self) -> Result<Vec<Memory>> {
        let mut out = Vec::new();
        while !self.is_done() {
            let batch = self.next_batch(self.remaining.min(1024))?;
            if batch.is_empty() {
                break;
            }
            out.extend(batch);
        }
        Ok(out)
    }
}
