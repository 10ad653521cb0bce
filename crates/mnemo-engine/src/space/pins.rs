//! Snapshot pins: a recall (or an export, or a get) holds its snapshot pinned
//! while it reads, so a purge never takes out a memory the snapshot still sees.
//! Pinning checks the snapshot against `purged_upto` under the same lock a purge
//! takes to choose how far it may go, so neither can slip past the other.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::Space;
use crate::error::{Error, Result};
use crate::types::Lsn;

/// Pinned snapshots of one space, with how many holders each.
#[derive(Default)]
pub(crate) struct Pins {
    held: Mutex<BTreeMap<Lsn, usize>>,
}

/// A snapshot held readable until dropped.
#[must_use = "the snapshot is only protected while the pin is held"]
pub struct SnapshotPin {
    space: Arc<Space>,
    lsn: Lsn,
}

impl SnapshotPin {
    /// The pinned snapshot.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }
}

impl std::fmt::Debug for SnapshotPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotPin")
            .field("space", &self.space.info.name)
            .field("lsn", &self.lsn)
            .finish()
    }
}

impl Drop for SnapshotPin {
    fn drop(&mut self) {
        let mut held = self.space.pins.held.lock();
        if let Some(n) = held.get_mut(&self.lsn) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.lsn);
            }
        }
    }
}

impl Space {
    /// Pins `snapshot`; [`Error::SnapshotTooOld`] if a purge has passed it.
    pub(crate) fn pin(self: &Arc<Self>, snapshot: Lsn) -> Result<SnapshotPin> {
        let mut held = self.pins.held.lock();
        let oldest = self.attrs.read().deaths.purged_upto();
        if snapshot < oldest {
            return Err(Error::SnapshotTooOld {
                space: self.info.name.clone(),
                requested: snapshot,
                oldest,
            });
        }
        *held.entry(snapshot).or_default() += 1;
        Ok(SnapshotPin {
            space: Arc::clone(self),
            lsn: snapshot,
        })
    }

    /// Chooses how far a purge may go: the latest unpurged death at or below every
    /// pinned snapshot and the commit watermark, and refuses snapshots below it from
    /// now on. `None`: nothing to purge.
    pub(crate) fn purge_horizon(&self) -> Option<Lsn> {
        let held = self.pins.held.lock();
        let bound = held
            .keys()
            .next()
            .copied()
            .unwrap_or(Lsn::MAX)
            .min(self.committed.get());
        let mut attrs = self.attrs.write();
        let at = attrs.deaths.latest_death_upto(bound)?;
        attrs.deaths.raise_purged_upto(at);
        Some(at)
    }
}
