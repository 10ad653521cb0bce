//! # mnemo-cluster
//!
//! Mnemo's distributed mode: several `mnemo serve` nodes on one NATS JetStream
//! server (or cluster). See `docs/scale-out.md`.
//!
//! - **The log** (`shared_log.rs`): spaces are assigned to partitions, a stream
//!   each. The partition's owner publishes each group commit as one message that
//!   states the stream sequence it follows (`Nats-Expected-Last-Sequence`), so a
//!   writer that lost its place is refused by the log itself; an append whose
//!   outcome is unknown is settled by reading the stream. The local log of every
//!   node is its copy of the shared log.
//! - **Leases** (`lease.rs`): a key-value bucket names each partition's owner and
//!   routes clients to it; safety never rests on the lease alone.
//! - **Followers** (`follower.rs`): every node applies every partition's messages
//!   to its engine, so it serves recall for every space.
//! - **Checkpoints** (`checkpoints/`): each space's records in object storage,
//!   so a node can start from them and the streams can be trimmed.
//! - **The catalog** (`catalog.rs`): space numbers and partitions in a key-value
//!   bucket; nodes adopt the spaces created elsewhere.

mod catalog;
mod checkpoints;
mod config;
mod error;
mod follower;
mod lease;
mod metrics;
mod node;
mod shared_log;

pub use checkpoints::CheckpointConfig;
pub use config::ClusterConfig;
pub use error::ClusterError;
pub use node::Cluster;
