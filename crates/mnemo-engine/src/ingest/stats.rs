//! Counters of the ingestion pipeline. Each is also emitted through the `metrics`
//! facade (names below) so the server can export them; the engine itself installs
//! no recorder.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pressure::PressureReport;

/// Metric names emitted by the engine.
pub mod names {
    /// Counter: observations accepted (durable), label `space`.
    pub const ACCEPTED: &str = "mnemo_observations_accepted_total";
    /// Counter: observations refused, label `reason` (overloaded, window, gap, invalid).
    pub const REFUSED: &str = "mnemo_observations_refused_total";
    /// Counter: duplicate session sequences answered idempotently.
    pub const DUPLICATES: &str = "mnemo_observations_duplicate_total";
    /// Counter: records inserted into HNSW graphs.
    pub const INDEXED: &str = "mnemo_records_indexed_total";
    /// Histogram: records per index batch.
    pub const BATCH_SIZE: &str = "mnemo_index_batch_size";
    /// Counter: microseconds index workers spent inserting.
    pub const WORKER_BUSY: &str = "mnemo_index_worker_busy_microseconds_total";
    /// Counter: index workers restarted after a panic.
    pub const WORKER_RESTARTS: &str = "mnemo_index_worker_restarts_total";
    /// Histogram: observe call → durable and visible, seconds.
    pub const OBSERVE_DURABLE: &str = "mnemo_observe_durable_seconds";
    /// Histogram: observe call → in the HNSW graph, seconds.
    pub const OBSERVE_INDEXED: &str = "mnemo_observe_indexed_seconds";
    /// Gauge: queue depth, label `lane` (high, normal, low).
    pub const QUEUE_DEPTH: &str = "mnemo_queue_depth";
    /// Gauge: queued bytes.
    pub const QUEUE_BYTES: &str = "mnemo_queue_bytes";
    /// Gauge: rows in fresh tiers.
    pub const FRESH_ROWS: &str = "mnemo_fresh_tier_rows";
    /// Gauge: rows in the warm tiers (IVF lists), not yet in a graph.
    pub const WARM_ROWS: &str = "mnemo_warm_tier_rows";
    /// Counter: rows moved from a warm tier into a graph.
    pub const WARM_TO_GRAPH: &str = "mnemo_warm_to_graph_total";
    /// Gauge: pressure 0..1.
    pub const PRESSURE: &str = "mnemo_pressure";
    /// Gauge: pressure state (0 normal, 1 warning, 2 critical, 3 overloaded).
    pub const PRESSURE_STATE: &str = "mnemo_pressure_state";
    /// Gauge: drain rate, records/s.
    pub const DRAIN_RATE: &str = "mnemo_drain_rate";
    /// Gauge: open sessions.
    pub const SESSIONS: &str = "mnemo_sessions_open";
}

/// Live counters (atomics; updated on the hot paths, read by [`IngestStats`]).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_overloaded: AtomicU64,
    pub(crate) refused_window: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) indexed: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) worker_busy_ns: AtomicU64,
    pub(crate) worker_restarts: AtomicU64,
    pub(crate) monitor_busy_ns: AtomicU64,
    pub(crate) state_changes: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the ingestion pipeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestStats {
    /// Observations accepted (durable) since open.
    pub accepted: u64,
    /// Refused because the engine was overloaded (or a bound was hit).
    pub refused_overloaded: u64,
    /// Refused because the session's credit window was full.
    pub refused_window: u64,
    /// Session sequence gaps refused.
    pub gaps: u64,
    /// Duplicate session sequences answered idempotently.
    pub duplicates: u64,
    /// Records moved into HNSW graphs since open.
    pub indexed: u64,
    /// Index batches done.
    pub batches: u64,
    /// Largest index batch so far.
    pub largest_batch: u64,
    /// Time index workers spent inserting, ns.
    pub worker_busy_ns: u64,
    /// Index workers restarted after a panic.
    pub worker_restarts: u64,
    /// Time the pressure monitor spent sampling, ns (its whole CPU cost).
    pub monitor_busy_ns: u64,
    /// Pressure state changes since open.
    pub state_changes: u64,
    /// Sessions open now.
    pub sessions_open: usize,
    /// The latest pressure sample.
    pub pressure: PressureReport,
}

impl Counters {
    pub(crate) fn snapshot(&self, sessions_open: usize, pressure: PressureReport) -> IngestStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestStats {
            accepted: g(&self.accepted),
            refused_overloaded: g(&self.refused_overloaded),
            refused_window: g(&self.refused_window),
            gaps: g(&self.gaps),
            duplicates: g(&self.duplicates),
            indexed: g(&self.indexed),
            batches: g(&self.batches),
            largest_batch: g(&self.largest_batch),
            worker_busy_ns: g(&self.worker_busy_ns),
            worker_restarts: g(&self.worker_restarts),
            monitor_busy_ns: g(&self.monitor_busy_ns),
            state_changes: g(&self.state_changes),
            sessions_open,
            pressure,
        }
    }
}
