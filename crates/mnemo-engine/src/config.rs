//! Engine settings: one serde struct, every default documented, checked at open.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::log::LogConfig;

/// Settings of an [`crate::Engine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Where everything lives. Default `./mnemo-data`.
    pub data_dir: PathBuf,
    /// The log.
    pub log: LogConfig,
    /// Memory the fresh tier of one space may use for vectors awaiting indexing. A
    /// row takes `dim` bytes of 8-bit codes (what recalls scan) plus the vector at
    /// the graph's precision (2 × dim for f16/i8, 4 × dim for f32) plus 8. Default
    /// 128 MiB: ~58K rows at 768-d f16, room for a 50K burst; more only lengthens
    /// every recall's scan and the peak RSS.
    pub fresh_tier_bytes: usize,
    /// Memory the warm tier of one space may use: rows that left the fresh tier
    /// faster than the graph takes them, as 1-bit and 4-bit codes in IVF lists
    /// (`dim × 5/8 + 41` bytes a row: 521 at 768-d). Past 30 % full its fill
    /// counts in pressure (Warning from ~65 %). Default 1 GiB: ~2M rows at 768-d,
    /// ~3.8M at 384-d, a minute or more of ingest beyond what the graph absorbs,
    /// held only while the graph is behind. 0 turns the tier off (rows go from
    /// the fresh tier straight into the graph, and ingest is held to its rate).
    pub warm_tier_bytes: usize,
    /// Records queued for indexing beyond which the index workers put batches into
    /// the warm tier rather than the graph. Default 4,096 (about a second of graph
    /// inserts at 768-d on one core): below it the graph keeps up and a record goes
    /// straight in, INDEXED soonest. 0: always the warm tier once it has a codebook
    /// (the first needs 1,024 rows waiting in the fresh tier to train on).
    pub warm_backlog: usize,
    /// Index worker threads. Default: number of cores. A new space's index gets one
    /// shard (graph) per worker, up to 8, so workers can index one space in parallel.
    pub index_threads: usize,
    /// Largest index batch. Batches adapt to the queue: one record when it is short
    /// (latency), up to this many under load (throughput). Default 256.
    pub index_batch: usize,
    /// Scheduling niceness of the index workers (Linux; 0 = same as the rest).
    /// Default 10: accepting observations and answering recalls preempt indexing, so
    /// on a small machine a burst is absorbed fast and the graph catches up after.
    pub index_nice: i32,
    /// How often spaces whose graph moved are checkpointed, in seconds. Default 60.
    pub checkpoint_interval_s: u64,
    /// A filtered recall whose filter matches at most this many memories scores
    /// every match exactly (the true top k, however selective the filter); above
    /// it, both tiers are searched with the filter as a predicate. Default 8,192
    /// (about 8 ms of CPU at 768-d); 1..=1,000,000.
    pub recall_exact_limit: u64,
    /// The ingestion pipeline: queue bounds, sessions, backpressure.
    pub ingest: IngestConfig,
    /// Forgetting: the expiry sweep, the purge, compaction of the log.
    pub retention: RetentionConfig,
}

/// Settings of forgetting and compaction (see docs/reliability.md, "Forgetting").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// How often expired memories are swept and dead memories purged from the
    /// graph, in milliseconds: an expired memory is forgotten (with a record) within
    /// about this long after its expiry. Default 1,000; 10..=3,600,000.
    pub maintenance_interval_ms: u64,
    /// The erasure bound: a forgotten, superseded or expired memory's content and
    /// embedding are in no file of the data directory this long after it was
    /// forgotten (every half of it, spaces are checkpointed and the log segments
    /// holding one are rewritten). Default 3,600 (an hour); at least 2 (small
    /// values rewrite segments often).
    pub erase_within_s: u64,
    /// How often sealed segments are checked for space to give back, in seconds.
    /// Default 60.
    pub compact_interval_s: u64,
    /// A sealed log segment is rewritten (to give disk space back) once at least
    /// this fraction of its bytes are records nothing needs. Default 0.5; 0.05..=1.
    pub compact_dead_fraction: f64,
    /// Bytes per second compaction may copy (its I/O budget; 0: unpaced).
    /// Default 64 MiB.
    pub compaction_bytes_per_s: u64,
    /// A graph shard where at least this share of the nodes are forgotten ones
    /// (their slots not yet reused by new memories) is rebuilt without them by the
    /// compaction, giving their memory and disk back. Default 0.3; 0.05..=1.
    pub graph_rebuild_fraction: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            maintenance_interval_ms: 1000,
            erase_within_s: 3600,
            compact_interval_s: 60,
            compact_dead_fraction: 0.5,
            compaction_bytes_per_s: 64 << 20,
            graph_rebuild_fraction: 0.3,
        }
    }
}

impl RetentionConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(10..=3_600_000).contains(&self.maintenance_interval_ms) {
            return Err(Error::invalid(
                "retention.maintenance_interval_ms must be in 10..=3600000",
            ));
        }
        if self.erase_within_s < 2 {
            return Err(Error::invalid(
                "retention.erase_within_s must be at least 2",
            ));
        }
        if self.compact_interval_s == 0 {
            return Err(Error::invalid(
                "retention.compact_interval_s must be at least 1",
            ));
        }
        if !(0.05..=1.0).contains(&self.graph_rebuild_fraction) {
            return Err(Error::invalid(
                "retention.graph_rebuild_fraction must be in 0.05..=1",
            ));
        }
        if !(0.05..=1.0).contains(&self.compact_dead_fraction) {
            return Err(Error::invalid(
                "retention.compact_dead_fraction must be in 0.05..=1",
            ));
        }
        Ok(())
    }
}

/// Settings of the ingestion pipeline (see docs/backpressure.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Most observations admitted and not yet indexed, all spaces together. Default 100,000.
    pub queue_max_items: usize,
    /// Most vector bytes admitted and not yet indexed. Default 512 MiB.
    pub queue_max_bytes: usize,
    /// Observations a session may have in flight (sent, not yet acked) at Normal
    /// pressure; halved at Warning, an eighth at Critical, 1 at Overloaded. Default 1024.
    pub credit_window: u32,
    /// Sessions idle this long are forgotten (their marks stay in the log), in seconds. Default 300.
    pub session_idle_timeout_s: u64,
    /// Most sessions open at once. Default 10,000.
    pub max_sessions: usize,
    /// How often the pressure monitor samples, in milliseconds. Default 10.
    pub pressure_sample_ms: u64,
    /// How long close waits for the index queue to drain, in seconds; what is left
    /// is durable and is indexed from the log at the next open. Default 60.
    pub shutdown_drain_s: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            queue_max_items: 100_000,
            queue_max_bytes: 512 << 20,
            credit_window: 1024,
            session_idle_timeout_s: 300,
            max_sessions: 10_000,
            pressure_sample_ms: 10,
            shutdown_drain_s: 60,
        }
    }
}

impl IngestConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.queue_max_items < 16 {
            return Err(Error::invalid("ingest.queue_max_items must be at least 16"));
        }
        if self.queue_max_bytes < 64 << 10 {
            return Err(Error::invalid(
                "ingest.queue_max_bytes must be at least 64 KiB",
            ));
        }
        if self.credit_window == 0 {
            return Err(Error::invalid("ingest.credit_window must be at least 1"));
        }
        if self.session_idle_timeout_s == 0 {
            return Err(Error::invalid(
                "ingest.session_idle_timeout_s must be at least 1",
            ));
        }
        if self.max_sessions == 0 {
            return Err(Error::invalid("ingest.max_sessions must be at least 1"));
        }
        if !(1..=1000).contains(&self.pressure_sample_ms) {
            return Err(Error::invalid(
                "ingest.pressure_sample_ms must be in 1..=1000",
            ));
        }
        Ok(())
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("mnemo-data"),
            log: LogConfig::default(),
            fresh_tier_bytes: 128 << 20,
            warm_tier_bytes: 1 << 30,
            warm_backlog: 4096,
            index_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            index_batch: 256,
            index_nice: 10,
            checkpoint_interval_s: 60,
            recall_exact_limit: 8192,
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Defaults with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            ..Default::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.log.validate()?;
        self.ingest.validate()?;
        self.retention.validate()?;
        if self.fresh_tier_bytes < 4096 {
            return Err(Error::invalid("fresh_tier_bytes must be at least 4 KiB"));
        }
        if !(1..=256).contains(&self.index_threads) {
            return Err(Error::invalid("index_threads must be in 1..=256"));
        }
        if !(0..=19).contains(&self.index_nice) {
            return Err(Error::invalid("index_nice must be in 0..=19"));
        }
        if !(1..=65536).contains(&self.index_batch) {
            return Err(Error::invalid("index_batch must be in 1..=65536"));
        }
        if !(1..=1_000_000).contains(&self.recall_exact_limit) {
            return Err(Error::invalid("recall_exact_limit must be in 1..=1000000"));
        }
        if self.checkpoint_interval_s == 0 {
            return Err(Error::invalid("checkpoint_interval_s must be at least 1"));
        }
        Ok(())
    }

    pub(crate) fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.checkpoint_interval_s)
    }

    /// Index shards of a new space: one per index worker, at most 8 (a shard takes
    /// one insert at a time; a search visits every shard).
    pub(crate) fn index_shards(&self) -> usize {
        self.index_threads.clamp(1, 8)
    }

    /// Warm-tier rows for a space of `dim` dimensions (0: no warm tier).
    pub(crate) fn warm_rows(&self, dim: u32) -> usize {
        self.warm_tier_bytes / crate::index::warm::row_bytes(dim as usize)
    }

    /// Fresh-tier rows for a space of `dim` dimensions and graph `precision`.
    pub(crate) fn fresh_rows(&self, dim: u32, precision: crate::types::Precision) -> usize {
        (self.fresh_tier_bytes / crate::index::fresh::row_bytes(dim as usize, precision)).max(16)
    }
}
