//! The ingestion pipeline's parts that do not need the engine: the prioritised
//! observation queue and admission budget ([`queue`]), pressure states, hysteresis
//! and drain rate ([`pressure`]), and counters ([`stats`]). The engine wires them to
//! spaces, sessions and index workers (`engine/`).

pub(crate) mod pressure;
pub(crate) mod queue;
pub(crate) mod stats;

pub use pressure::{PressureReport, PressureState, RETRY_AFTER_MAX, RETRY_AFTER_MIN};
pub use stats::{IngestStats, names as metric_names};
