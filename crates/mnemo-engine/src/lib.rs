//! # mnemo-engine
//!
//! The storage and recall engine of Mnemo, with no network code. It keeps memory
//! *spaces* of observations (text + embedding + metadata), writes them to one
//! durable, group-committed log, makes them visible to recall the moment they are
//! durable (an exact *fresh tier*), indexes them into a per-space HNSW graph in the
//! background, and answers snapshot-isolated k-NN recalls while writers go on.
//!
//! ```no_run
//! use mnemo_engine::{Engine, EngineConfig, Observation, RecallRequest, SpaceConfig};
//! # fn main() -> mnemo_engine::Result<()> {
//! let engine = Engine::open(EngineConfig::new("/tmp/mnemo-demo"))?;
//! engine.create_space("notes", SpaceConfig::new(3))?;
//! let obs = Observation { content: "hello".into(), embedding: vec![1.0, 0.0, 0.0], ..Default::default() };
//! let done = engine.observe("notes", obs)?.wait()?; // durable and visible now
//! let hits = engine.recall("notes", RecallRequest::new(vec![1.0, 0.0, 0.0], 5))?.collect_all()?;
//! assert_eq!(hits[0].lsn, done.lsn);
//! engine.close()?;
//! # Ok(()) }
//! ```
//!
//! Sessions ([`Engine::open_session`]) add per-session sequence numbers with
//! exactly-once acks, credit windows and resume; a pressure monitor and admission
//! control keep memory bounded whatever the offered load.
//!
//! Non-goals here: networking, authentication.

mod codec;
mod config;
mod engine;
mod error;
mod index;
mod ingest;
pub mod io;
mod log;
mod lsn_vec;
mod recall;
mod record;
mod space;
mod thread_sched;
mod types;
pub mod vecs;

pub use config::{EngineConfig, IngestConfig, RetentionConfig};
pub use engine::{
    Ack, AckKind, ClusterHooks, Compacted, Engine, Forgotten, GotMemories, MAX_FORGET_IDS,
    MAX_GET_IDS, ObserveTicket, Observed, Selection, Session, SessionTicket, repair, repair_in,
};
pub use error::{Error, Result};
pub use ingest::{
    IngestStats, PressureReport, PressureState, RETRY_AFTER_MAX, RETRY_AFTER_MIN, metric_names,
};
pub use log::{
    Durability, LogConfig, LogStats, LostRange, RepairReport, RepairedSegment, Replicator,
    SharedCatalog,
};
pub use recall::{MAX_RECALL_K, MAX_RECALL_WAIT, RecallCursor, RecallRequest, SnapshotSpec};
pub use space::SnapshotPin;
pub use thread_sched::{lower_thread_priority, thread_sched_ns};
pub use types::{
    Attributes, Filter, IndexParams, Lane, Lsn, MAX_CONFIDENCE_WEIGHT, MAX_CONTENT_BYTES, MAX_DIM,
    MAX_FILTER_SESSIONS, MAX_FILTER_TAG_CLAUSES, MAX_FILTER_VALUES, MAX_SESSION_ID_BYTES,
    MAX_SPACE_NAME_BYTES, MAX_TAG_KEY_BYTES, MAX_TAGS, MAX_TAGS_BYTES, MAX_TTL_MS, Memory, Metric,
    Observation, Precision, Ranking, SpaceConfig, SpaceInfo, SpaceNo, SpaceStats, TagClause,
    TagTest, TimeRange, now_us, validate_space_name,
};

/// Engine internals for benchmarks, fuzz targets and the log's own tests: the log
/// trait and its file implementation, frames, record encoding, the index queue.
/// Not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::ingest::queue::{Item, SpaceQueue};
    pub use crate::log::frame::{Frame, FrameError, decode_frame, encode_frame};
    pub use crate::log::{
        AppendTicket, CommitSink, Committed, FileLog, Log, Removable, ResumeAt, SegmentCompaction,
        SegmentUsage,
    };
    pub use crate::record::{DecodeError, ObservationRecord};
}
