//! The engine's side of the distributed mode (the network side is the
//! `mnemo-cluster` crate): opening with a [`Replicator`] and a [`SharedCatalog`],
//! taking in frames other nodes wrote, and spaces other nodes created or dropped.

use std::sync::Arc;

use super::{Engine, Inner};
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::io::StdFs;
use crate::log::{Log, Replicator, SharedCatalog};
use crate::types::{Lsn, SpaceInfo, SpaceNo};

/// What the distributed mode plugs into the engine.
#[derive(Clone)]
pub struct ClusterHooks {
    /// The shared log every group commit goes to first.
    pub replicator: Arc<dyn Replicator>,
    /// The shared catalog spaces are created and dropped in.
    pub catalog: Arc<dyn SharedCatalog>,
}

impl std::fmt::Debug for ClusterHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterHooks")
    }
}

impl Engine {
    /// Opens the engine as one node of a cluster: its data directory is this node's
    /// copy of the shared log (see [`Replicator`]); writes are refused with
    /// [`Error::NotOwner`] for spaces whose partition another node writes.
    pub fn open_clustered(config: EngineConfig, hooks: ClusterHooks) -> Result<Engine> {
        Self::open_inner(config, Arc::new(StdFs), Some(hooks))
    }

    /// Takes in frames another node wrote to the shared log (in the shared log's
    /// order per partition); returns how many records were new here. Blocks until
    /// they are in the local log and visible.
    pub fn follow(&self, frames: Vec<u8>) -> Result<u64> {
        self.inner.log.follow(frames).wait()
    }

    /// Returns once every group commit the log writer has begun is written to the
    /// local log (a barrier through the writer's queue): a replicated append
    /// whose shared-log position was already published is then readable here.
    pub fn wait_for_writes(&self) -> Result<()> {
        self.inner.log.follow(Vec::new()).wait().map(|_| ())
    }

    /// The highest LSN of each live space in the local log.
    pub fn local_lsns(&self) -> Vec<(SpaceNo, Lsn)> {
        self.inner
            .registry
            .list()
            .iter()
            .map(|s| (s.info.no, self.inner.log.last_lsn(s.info.no).unwrap_or(0)))
            .collect()
    }

    /// Creates locally a space the shared catalog holds. `Ok(false)` if it exists
    /// here already with the same number.
    pub fn adopt_space(&self, info: SpaceInfo) -> Result<bool> {
        self.check_running()?;
        let mut catalog = self.inner.catalog.lock();
        if let Some(have) = catalog.spaces.iter().find(|s| s.name == info.name) {
            if have.no == info.no {
                return Ok(false);
            }
            return Err(Error::invalid(format!(
                "space '{}' is #{} here but #{} in the shared catalog",
                info.name, have.no.0, info.no.0
            )));
        }
        let mut next = catalog.clone();
        next.next_no = next.next_no.max(info.no.0 + 1);
        self.install_space(&mut catalog, next, &info)?;
        Ok(true)
    }

    /// Drops locally a space the shared catalog no longer holds (no-op if absent).
    pub fn drop_adopted(&self, name: &str) -> Result<()> {
        match self.drop_local(name) {
            Err(Error::SpaceNotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Appends to `out` the frames of `space`'s records from `from` on, as the local
    /// log holds them, until `to` or until `out` holds `max_bytes`; returns the
    /// last LSN taken (`from - 1` if none). A record compaction removed (a dead
    /// memory) becomes a lost-record placeholder, so the LSNs stay dense. For
    /// checkpoints in object storage, which a node restores through
    /// [`Engine::follow`].
    pub fn read_frames(
        &self,
        space: SpaceNo,
        from: Lsn,
        to: Lsn,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<Lsn> {
        let mut last = from.saturating_sub(1);
        for lsn in from..=to {
            if out.len() >= max_bytes {
                break;
            }
            let body = match self.inner.log.read(space, lsn) {
                Ok(body) => body,
                Err(Error::Forgotten { .. }) => crate::record::lost_body(),
                Err(e) => return Err(e),
            };
            crate::log::frame::encode_frame(out, space, lsn, &body);
            last = lsn;
        }
        Ok(last)
    }

    /// The highest LSN of `space` in the local log.
    pub fn local_lsn(&self, space: SpaceNo) -> Lsn {
        self.inner.log.last_lsn(space).unwrap_or(0)
    }
}

impl Inner {
    /// `Ok` unless another node writes `space`'s partition.
    pub(super) fn check_owner(&self, space: SpaceNo) -> Result<()> {
        match self.log.replicator() {
            Some(r) => r.check_owner(space),
            None => Ok(()),
        }
    }

    pub(super) fn shared_catalog(&self) -> Option<&Arc<dyn SharedCatalog>> {
        self.shared_catalog.as_ref()
    }
}

#[cfg(test)]
mod tests;
