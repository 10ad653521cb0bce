//! Plain data types shared by every part of the engine: identifiers, space
//! configuration, observations going in and memories coming out.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Log sequence number: dense and monotonic per memory space, starting at 1.
/// 0 means "nothing" (an empty space's watermark).
pub type Lsn = u64;

/// Internal numeric id of a memory space, written in every log frame.
/// Never reused, so frames of a dropped space can never be mistaken for a new one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpaceNo(pub u32);

/// Largest vector dimension a space may have.
pub const MAX_DIM: u32 = 4096;
/// Largest observation content, in bytes of UTF-8.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Most tags one observation may carry.
pub const MAX_TAGS: usize = 64;
/// Largest tag key, in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 128;
/// Largest total size of all tag keys and values of one observation, in bytes.
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Largest session id, in bytes.
pub const MAX_SESSION_ID_BYTES: usize = 128;
/// Largest memory-space name, in bytes.
pub const MAX_SPACE_NAME_BYTES: usize = 64;

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
}

impl SpaceConfig {
    /// A cosine space of `dim` dimensions with default index parameters.
    pub fn new(dim: u32) -> Self {
        SpaceConfig {
            dim,
            metric: Metric::Cosine,
            index: IndexParams::default(),
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

/// Checks a memory-space name: 1..=64 bytes of `[A-Za-z0-9_.-]`.
pub fn validate_space_name(name: &str) -> Result<()> {
    let ok_len = !name.is_empty() && name.len() <= MAX_SPACE_NAME_BYTES;
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok_len && ok_chars && name != "." && name != ".." {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "space name must be 1..={MAX_SPACE_NAME_BYTES} characters of [A-Za-z0-9_.-], got {name:?}"
        )))
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
    /// LSN covered by the last checkpoint on disk.
    pub checkpoint_lsn: Lsn,
}

/// An observation as a client submits it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Client-chosen id; a UUIDv7 is made when absent.
    pub id: Option<Uuid>,
    /// The text of the episode (≤ 64 KiB).
    pub content: String,
    /// Exactly `dim` finite floats.
    pub embedding: Vec<f32>,
    /// In [0, 1]; 1.0 when absent.
    pub confidence: Option<f32>,
    /// When it happened, µs since the epoch; now when absent.
    pub occurred_at_us: Option<i64>,
    /// Free-form string tags (bounded).
    pub tags: BTreeMap<String, String>,
    /// The session it came from (empty for none).
    pub session_id: String,
    /// Its sequence number within the session (0 for none).
    pub session_seq: u64,
}

/// A stored observation, as recall returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// Memory id.
    pub id: Uuid,
    /// Its LSN in the space.
    pub lsn: Lsn,
    /// Similarity to the cue (higher is better; see [`Metric`]).
    pub score: f32,
    /// Confidence given at observation time.
    pub confidence: f32,
    /// Content text.
    pub content: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When it happened (µs since epoch).
    pub occurred_at_us: i64,
    /// When the server recorded it (µs since epoch).
    pub recorded_at_us: i64,
    /// Session it came from.
    pub session_id: String,
    /// Sequence within that session.
    pub session_seq: u64,
    /// The exact embedding as stored.
    pub embedding: Vec<f32>,
}

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Indexing priority of an observation. Every lane is durable and visible at once;
/// the lane only orders the move into the HNSW graph (weighted 8 : 4 : 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Indexed first.
    High = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Indexed last, but never starved.
    Low = 2,
}

impl Lane {
    /// All lanes, highest priority first.
    pub const ALL: [Lane; 3] = [Lane::High, Lane::Normal, Lane::Low];

    /// The lane with this number (0 high, 1 normal, 2 low); anything else is normal.
    pub fn from_u8(v: u8) -> Lane {
        match v {
            0 => Lane::High,
            2 => Lane::Low,
            _ => Lane::Normal,
        }
    }
}
