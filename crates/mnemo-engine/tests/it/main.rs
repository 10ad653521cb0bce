//! Integration tests of the engine, built as one binary (one module per scenario).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod common;

mod compaction;

mod crash;
mod engine_basics;
mod filters;
mod forget;
mod full_disk;
mod glove;
mod log_damage;
mod log_recovery;
mod overload;
mod power_cut;
mod reopen;
mod restart;
mod sessions;
mod snapshot;
