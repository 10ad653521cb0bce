//! # mnemo-server
//!
//! The gRPC face of Mnemo (package `mnemo.v1`, defined in the `mnemo-proto` crate) over
//! [`mnemo_engine`]: Observe sessions, streaming Recall, unary helpers, space admin,
//! Stats, plus the standard health and reflection services. Guarantees:
//! docs/protocol.md.

pub mod auth;
mod convert;
mod export;
mod forget;
mod indexed_watch;
mod offload;
mod recall_admission;
mod recall_batches;
mod recall_pool;
mod runtime;
mod server;
mod service;
mod stream;
mod streaming;

pub use convert::status;
pub use recall_admission::{RecallAdmission, RecallLimits};
pub use recall_pool::RecallPool;
pub use runtime::{RuntimeLayout, Runtimes};
pub use server::{Options, ServeError, serve};
pub use service::{EngineSlot, Limits, MnemoService};
pub use stream::MAX_BATCH_OBSERVATIONS;

/// Request conversions exposed for the fuzz targets (`fuzz/`) only: not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::convert::{observation, recall_request, space_config};
}

/// The protocol types and stubs (re-exported from `mnemo-proto`).
pub use mnemo_proto::pb;

/// This process's resident and peak resident memory, bytes (0 where unknown).
pub fn rss_bytes() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
