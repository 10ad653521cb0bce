//! Forgetting: the `Forget` call, the expiry sweep (which forgets expired
//! memories with a record of its own, so an idle space's expiries are dated too)
//! and the purge that takes dead memories out of the graph, the posting lists and
//! the id map once no snapshot being read can see them.

use roaring::RoaringTreemap;
use uuid::Uuid;

use super::{Engine, Inner};
use crate::error::{Error, Result};
use crate::log::{Log, frame};
use crate::record::{ForgetReason, ForgetRecord};
use crate::space::Space;
use crate::types::{Filter, Lsn, now_us};

/// Most ids one [`Engine::forget`] may name.
pub const MAX_FORGET_IDS: usize = 10_000;

/// What a forget did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Forgotten {
    /// Memories it removed (alive until its LSN).
    pub count: u64,
    /// Its LSN: snapshots from it on never see them; below it, they still do.
    /// With nothing to remove, no record is written and this is the snapshot the
    /// selector was evaluated at.
    pub lsn: Lsn,
}

impl Engine {
    /// Forgets the memories of `space` that have one of `ids` (if any are given)
    /// and match `filter` (if it is not empty), as of the latest snapshot: writes a
    /// durable forget record and returns once it is committed. A selector with
    /// neither ids nor a filter is refused (a whole space is erased by dropping it).
    /// Blocks on the log's fsync: from async code, call it on a blocking thread.
    pub fn forget(&self, space: &str, ids: &[Uuid], filter: &Filter) -> Result<Forgotten> {
        if ids.is_empty() && filter.is_empty() {
            return Err(Error::invalid(
                "forget needs ids, a session or a filter: an empty selector would forget \
                 everything (to erase a whole space, drop it)",
            ));
        }
        if ids.len() > MAX_FORGET_IDS {
            return Err(Error::invalid(format!(
                "{} ids, the limit is {MAX_FORGET_IDS} per forget",
                ids.len()
            )));
        }
        filter.validate()?;
        self.check_running()?;
        let space = self.inner.registry.by_name(space)?;
        self.inner.check_owner(space.info.no)?;
        let _one_at_a_time = space.forget_lock.lock();
        let snapshot = space.committed.get();
        let mut set = (!filter.is_empty()).then(|| space.select(filter, snapshot));
        if !ids.is_empty() {
            let named: Vec<Lsn> = {
                let attrs = space.attrs.read();
                ids.iter()
                    .filter_map(|id| attrs.lsn_of(id, snapshot))
                    .filter(|&l| !attrs.hidden(l, snapshot))
                    .collect()
            };
            // Lock order: `lost` is never taken while `attrs` is held.
            let named: RoaringTreemap = named.into_iter().filter(|&l| !space.is_lost(l)).collect();
            set = Some(match set {
                Some(s) => s & named,
                None => named,
            });
        }
        let lsns = set.unwrap_or_default();
        if lsns.is_empty() {
            return Ok(Forgotten {
                count: 0,
                lsn: snapshot,
            });
        }
        let (count, lsn) = write_forget(&self.inner, &space, lsns, ForgetReason::Asked)?;
        Ok(Forgotten { count, lsn })
    }

    /// Runs the expiry sweep and the purge of every space now (the maintenance
    /// thread does so every `maintenance_interval_ms`). Returns how many memories
    /// expired and how many were purged.
    pub fn maintain(&self) -> Result<(u64, u64)> {
        maintain_all(&self.inner)
    }
}

/// Writes a forget record of `lsns` in `space` and waits for its commit; returns
/// how many memories it killed, and its LSN. The caller holds the space's
/// `forget_lock`.
fn write_forget(
    inner: &Inner,
    space: &Space,
    lsns: RoaringTreemap,
    reason: ForgetReason,
) -> Result<(u64, Lsn)> {
    let matched = lsns.len();
    let rec = ForgetRecord {
        // After every expiry the sweep saw: the record's commit time passes them.
        recorded_at_us: now_us(),
        reason,
        lsns,
    };
    let body = rec.encode();
    if body.len() + frame::PAYLOAD_HEADER > frame::MAX_PAYLOAD {
        return Err(Error::invalid(format!(
            "the {matched} memories matched take {} bytes to list, more than one log record \
             holds ({} bytes): narrow the selector and forget in parts",
            body.len(),
            frame::MAX_PAYLOAD
        )));
    }
    let lsn = inner.log.append(space.info.no, body).wait()?;
    Ok((space.forget_count(lsn).unwrap_or(matched), lsn))
}

/// The expiry sweep and the purge of every space (and the indexes of segments
/// sealed since the last time).
pub(super) fn maintain_all(inner: &Inner) -> Result<(u64, u64)> {
    inner.log.write_missing_indexes()?;
    let (mut expired, mut purged) = (0, 0);
    for space in inner.registry.list() {
        if space.check_live().is_err() {
            continue;
        }
        expired += sweep_expired(inner, &space)?;
        purged += purge(&space)?;
    }
    Ok((expired, purged))
}

/// Forgets the memories of `space` whose expiry has passed (one record for all).
pub(super) fn sweep_expired(inner: &Inner, space: &Space) -> Result<u64> {
    if inner.check_owner(space.info.no).is_err() {
        return Ok(0); // the partition's owner sweeps
    }
    let _one_at_a_time = space.forget_lock.lock();
    let due = space.attrs.read().due_expiries(now_us());
    if due.is_empty() {
        return Ok(0);
    }
    // A record holds a bounded list: a backlog larger than that goes in parts.
    const PART: u64 = 1 << 20;
    let mut swept = 0;
    let mut rest = due;
    while !rest.is_empty() {
        let part: RoaringTreemap = rest.iter().take(PART as usize).collect();
        rest -= &part;
        swept += write_forget(inner, space, part, ForgetReason::Expired)?.0;
    }
    Ok(swept)
}

/// Takes the memories that died at or below the purge horizon (see
/// [`Space::purge_horizon`]) and are indexed out of the graph, the posting lists
/// and the id map. Returns how many.
pub(super) fn purge(space: &Space) -> Result<u64> {
    // Not while a checkpoint saves the graph and the state: both must agree on
    // what is purged.
    let _no_checkpoint = space.checkpoint_lock.lock();
    let Some(horizon) = space.purge_horizon() else {
        return Ok(0);
    };
    let indexed = space.graph_watermark();
    let lsns = space.attrs.read().deaths.purgeable(horizon, indexed);
    if lsns.is_empty() {
        return Ok(0);
    }
    // Graph first: until the attributes forget them, recalls still filter them.
    space.hnsw.remove(&lsns)?;
    space.attrs.write().purge(&lsns);
    space.trim_state();
    tracing::debug!(
        space = space.info.name,
        purged = lsns.len(),
        horizon,
        "purged dead memories"
    );
    Ok(lsns.len())
}
