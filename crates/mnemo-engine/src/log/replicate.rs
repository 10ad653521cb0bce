//! The seam of the distributed mode: a [`Replicator`] makes each group commit
//! durable in a shared log (one writer per partition, fenced by the shared log)
//! before the local log writes it, and frames written by other nodes arrive through
//! [`crate::Engine::follow`]. The local log is then each node's copy of the shared
//! log: reads, recovery and checkpoints work on it as in the embedded mode.

use crate::error::Result;
use crate::types::SpaceNo;

/// The shared log the local log's writer hands each group commit to.
pub trait Replicator: Send + Sync {
    /// The partition `space` belongs to.
    fn partition_of(&self, space: SpaceNo) -> u32;

    /// `Ok` if this node may write `space` now; [`crate::Error::NotOwner`] (with
    /// the owner's address when known) if another node writes its partition.
    /// Checked at admission, before anything is reserved.
    fn check_owner(&self, space: SpaceNo) -> Result<()>;

    /// Makes each `(partition, frames)` durable in the shared log, in order after
    /// everything this node applied of that partition; called on the log's writer
    /// thread, which writes only the parts answered `Ok` locally. `frames` are log
    /// frames (see `docs/log-format.md`) in LSN order per space. A part whose
    /// outcome is unknown must be settled by reading the shared log, never by a
    /// blind retry: `Err` means it is not in the shared log.
    fn replicate(&self, parts: &[(u32, &[u8])]) -> Vec<Result<()>>;
}

/// The shared catalog of the distributed mode: space numbers are allocated once
/// for the whole cluster, and every node learns of creations and drops.
pub trait SharedCatalog: Send + Sync {
    /// Allocates a number for `name` in the shared catalog and records `config`
    /// there ([`crate::Error::SpaceExists`] if the name is taken). The caller then
    /// creates the space locally; other nodes learn of it from the catalog.
    fn create_space(
        &self,
        name: &str,
        config: &crate::types::SpaceConfig,
    ) -> Result<crate::types::SpaceInfo>;

    /// Removes `name` from the shared catalog.
    fn drop_space(&self, name: &str) -> Result<()>;
}
