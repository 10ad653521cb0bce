//! A space's configuration (dimension, metric, index parameters), its description
//! and its counters.

use serde::{Deserialize, Serialize};

use super::{Lsn, SpaceNo, limits::MAX_DIM};
use crate::error::{Error, Result};

/// Similarity measure of a space. Recall scores are "higher is better" for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine similarity; score in [-1, 1].
    #[default]
    Cosine,
    /// Euclidean distance; score is the negated squared distance.
    L2,
    /// Inner (dot) product; score is the dot product.
    InnerProduct,
}

/// How the HNSW index stores vectors. The log always keeps the exact f32 vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 4 bytes per dimension.
    F32,
    /// 2 bytes per dimension (default: half the memory, negligible recall loss).
    #[default]
    F16,
    /// 1 byte per dimension.
    I8,
}

/// HNSW parameters of a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Graph connectivity (M): edges per node on upper levels.
    pub m: u32,
    /// Candidate list size while inserting.
    pub ef_construction: u32,
    /// Candidate list size while searching.
    pub ef_search: u32,
    /// Vector storage precision inside the index.
    pub precision: Precision,
}

impl Default for IndexParams {
    fn default() -> Self {
        // ef_search 160 gives recall@10 ~0.97 on GloVe-50 (399K), a margin over 0.95:
        // see docs/benchmarks.md ("index parameters").
        IndexParams {
            m: 16,
            ef_construction: 128,
            ef_search: 160,
            precision: Precision::F16,
        }
    }
}

/// What a client asks for when it creates a space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceConfig {
    /// Vector dimension, 1..=4096.
    pub dim: u32,
    /// Similarity measure.
    #[serde(default)]
    pub metric: Metric,
    /// HNSW parameters.
    #[serde(default)]
    pub index: IndexParams,
    /// Time-to-live of an observation that gives no `expires_at`, in milliseconds
    /// (none: such observations never expire). At most [`MAX_TTL_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl_ms: Option<u64>,
}

/// Longest default time-to-live a space may have: 100 years.
pub const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

impl SpaceConfig {
    /// A cosine space of `dim` dimensions with default index parameters.
    pub fn new(dim: u32) -> Self {
        SpaceConfig {
            dim,
            metric: Metric::Cosine,
            index: IndexParams::default(),
            default_ttl_ms: None,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::invalid(format!(
                "dim must be in 1..={MAX_DIM}, got {}",
                self.dim
            )));
        }
        if let Some(ttl) = self.default_ttl_ms
            && !(1..=MAX_TTL_MS).contains(&ttl)
        {
            return Err(Error::invalid(format!(
                "default_ttl_ms must be in 1..={MAX_TTL_MS}, got {ttl}"
            )));
        }
        let p = &self.index;
        if !(2..=128).contains(&p.m) {
            return Err(Error::invalid(format!(
                "index.m must be in 2..=128, got {}",
                p.m
            )));
        }
        if !(1..=4096).contains(&p.ef_construction) {
            return Err(Error::invalid(format!(
                "index.ef_construction must be in 1..=4096, got {}",
                p.ef_construction
            )));
        }
        if !(1..=4096).contains(&p.ef_search) {
            return Err(Error::invalid(format!(
                "index.ef_search must be in 1..=4096, got {}",
                p.ef_search
            )));
        }
        if p.precision == Precision::I8 && self.metric != Metric::Cosine {
            // usearch maps [-1, 1] onto i8; only cosine normalises vectors into that range
            // (measured: Fashion-MNIST L2 with i8 storage recalls 0.64 instead of 0.999).
            return Err(Error::invalid(
                "index.precision i8 needs metric cosine; use f16 or f32 for l2 and inner_product",
            ));
        }
        Ok(())
    }
}

/// Description of an existing space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceInfo {
    /// The space's name.
    pub name: String,
    /// Internal number (in log frames).
    pub no: SpaceNo,
    /// Its configuration.
    pub config: SpaceConfig,
    /// When it was created, microseconds since the Unix epoch.
    pub created_at_us: i64,
}

/// Counters of a live space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceStats {
    /// Highest committed (durable and visible) LSN.
    pub committed_lsn: Lsn,
    /// Highest LSN such that every LSN up to it is in the HNSW graph.
    pub indexed_lsn: Lsn,
    /// Records in the HNSW graph.
    pub indexed_count: u64,
    /// Committed records still waiting in the fresh tier.
    pub fresh_count: u64,
    /// Records in the warm tier (IVF lists), not yet in the graph.
    pub warm_count: u64,
    /// Records that entered the warm tier since open.
    pub warm_entered: u64,
    /// Records that moved on from the warm tier into the graph since open.
    pub warm_moved: u64,
    /// LSN covered by the last checkpoint on disk.
    pub checkpoint_lsn: Lsn,
    /// Bytes held by the posting lists, attribute columns and id map (filters,
    /// get by id).
    pub attrs_bytes: u64,
    /// Bytes of the log's records of this space that are still needed.
    pub live_bytes: u64,
    /// Bytes of the log's records of this space that compaction will remove
    /// (forgotten, superseded and expired memories, forget records).
    pub dead_bytes: u64,
    /// Forgotten, superseded or expired memories not yet purged from the graph.
    pub unpurged: u64,
    /// The oldest snapshot a recall may still read.
    pub oldest_snapshot_lsn: Lsn,
    /// Memories the latest snapshot sees (not forgotten, superseded or expired).
    pub memories: u64,
}
