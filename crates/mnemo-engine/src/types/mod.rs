//! Plain data types shared by every part of the engine: identifiers, space
//! configuration, observations going in and memories coming out.
//!
//! Files: `space.rs` (configuration, description, counters), `limits.rs` (every
//! client-controlled bound), `names.rs`, `time.rs`, `lane.rs`.

mod filter;
mod lane;
mod limits;
mod names;
mod space;
mod time;

pub use filter::{
    Attributes, Filter, MAX_CONFIDENCE_WEIGHT, MAX_FILTER_SESSIONS, MAX_FILTER_TAG_CLAUSES,
    MAX_FILTER_VALUES, Ranking, TagClause, TagTest, TimeRange,
};
pub use lane::Lane;
pub use limits::*;
pub use names::validate_space_name;
pub use space::{IndexParams, MAX_TTL_MS, Metric, Precision, SpaceConfig, SpaceInfo, SpaceStats};
pub use time::now_us;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Log sequence number: dense and monotonic per memory space, starting at 1.
/// 0 means "nothing" (an empty space's watermark).
pub type Lsn = u64;

/// Internal numeric id of a memory space, written in every log frame.
/// Never reused, so frames of a dropped space can never be mistaken for a new one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpaceNo(pub u32);

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
    /// A memory this one corrects: that memory is forgotten at this one's LSN
    /// (atomically: no snapshot holds both, or neither). It must be live.
    pub supersedes: Option<Uuid>,
    /// When it stops being recalled (µs since epoch, in the future); the space's
    /// default time-to-live from now when absent (none: never).
    pub expires_at_us: Option<i64>,
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
    /// When it stops being recalled (µs since epoch), if ever.
    pub expires_at_us: Option<i64>,
    /// The id of the memory it corrected, if any.
    pub supersedes: Option<Uuid>,
}
