//! Compaction of the log: which records may go (those each space's checkpointed
//! state no longer needs: memories forgotten and purged, forget records, lost
//! placeholders), which segments are rewritten, and when:
//!
//! - **reclaim**, every `compact_interval_s`: segments where at least
//!   `compact_dead_fraction` of the bytes may go;
//! - **erase**, every half of `erase_within_s`: dirty states are checkpointed
//!   first, then every segment holding a forgotten memory is rewritten, so that its
//!   content and embedding leave the disk within the bound;
//! - **`Engine::compact`**: one space now, everything it can.

use roaring::RoaringTreemap;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Engine, Inner, forget};
use crate::error::{Error, Result};
use crate::log::{Log, SegmentUsage};
use crate::space::Space;
use crate::types::{Lsn, SpaceNo};

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Compacted {
    /// Memories taken out of the graph and the attributes.
    pub purged: u64,
    /// Log segments rewritten or deleted.
    pub segments_compacted: u64,
    /// Graph shards rebuilt without their removed nodes.
    pub graph_shards_rebuilt: u64,
    /// The log's bytes before and after.
    pub log_bytes_before: u64,
    /// See `log_bytes_before`.
    pub log_bytes_after: u64,
    /// The checkpoint the compaction relied on.
    pub checkpoint_lsn: Lsn,
}

/// Which segments a pass rewrites.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pass {
    /// Those mostly dead.
    Reclaim(f64),
    /// Those holding any forgotten memory.
    Erase,
    /// Those holding anything of this space that may go.
    Space(SpaceNo),
}

/// Per space: what its saved state lets go (`compactable`), copied for one pass.
struct Removable {
    upto: Lsn,
    all: RoaringTreemap,
    memories: RoaringTreemap,
}

impl Engine {
    /// Purges and compacts `space` now: sweeps its expired memories, waits (up to a
    /// minute) until everything committed is indexed, purges what no snapshot being
    /// read can see, checkpoints, and rewrites the log segments holding its dead
    /// records. Afterwards the purged memories' contents and embeddings are in no
    /// file of the data directory (docs/reliability.md, "Forgetting").
    pub fn compact(&self, space: &str) -> Result<Compacted> {
        self.check_running()?;
        let space = self.inner.registry.by_name(space)?;
        forget::sweep_expired(&self.inner, &space)?;
        let committed = space.committed.get();
        let wait = Duration::from_secs(60);
        if let Err(seen) = space.indexed.wait_for(committed, wait) {
            return Err(Error::Timeout {
                wanted: committed,
                committed: seen,
                waited: wait,
            });
        }
        let before = self.inner.log.stats().bytes_on_disk;
        let purged = forget::purge(&space)?;
        let graph_shards_rebuilt = rebuild_graph(&self.inner, &space)?;
        let checkpoint_lsn = space.checkpoint(true)?;
        let segments = compact_pass(&self.inner, Pass::Space(space.info.no))?;
        Ok(Compacted {
            purged,
            segments_compacted: segments,
            graph_shards_rebuilt,
            log_bytes_before: before,
            log_bytes_after: self.inner.log.stats().bytes_on_disk,
            checkpoint_lsn,
        })
    }
}

/// Rewrites the segments `pass` picks; returns how many.
pub(super) fn compact_pass(inner: &Inner, pass: Pass) -> Result<u64> {
    let removable: HashMap<SpaceNo, Removable> = inner
        .registry
        .list()
        .into_iter()
        .map(|s| {
            let c = s.compactable.lock();
            (
                s.info.no,
                Removable {
                    upto: c.upto,
                    all: c.removable.clone(),
                    memories: c.memories.clone(),
                },
            )
        })
        .collect();
    let may_go = |space: SpaceNo, lsn: Lsn| {
        removable
            .get(&space)
            .is_some_and(|r| lsn <= r.upto && r.all.contains(lsn))
    };
    let picked = |space: SpaceNo, lsn: Lsn| match pass {
        Pass::Space(no) => space == no && may_go(space, lsn),
        _ => removable
            .get(&space)
            .is_some_and(|r| lsn <= r.upto && r.memories.contains(lsn)),
    };
    // Forgotten memories in the active segment: seal it, so it can be rewritten.
    if !matches!(pass, Pass::Reclaim(_)) && inner.log.active_holds(&picked) {
        inner.log.rotate()?;
    }
    let usage = inner.log.usage(&may_go, &picked);
    let chosen: Vec<&SegmentUsage> = usage
        .iter()
        .filter(|u| match pass {
            Pass::Reclaim(fraction) => {
                u.bytes > 0
                    && (u.bytes - u.live_bytes.min(u.bytes)) as f64 >= fraction * u.bytes as f64
            }
            Pass::Erase | Pass::Space(_) => u.sensitive > 0,
        })
        .collect();
    let budget = inner.config.retention.compaction_bytes_per_s;
    let mut done = 0;
    for u in chosen {
        if inner.stopping.load(Ordering::Acquire) {
            break;
        }
        let c = inner.log.compact_segment(u.no, &may_go, budget)?;
        tracing::info!(
            segment = u.no,
            bytes_before = c.bytes_before,
            bytes_after = c.bytes_after,
            dropped = c.dropped,
            kept = c.kept,
            ?pass,
            "compacted a log segment"
        );
        done += 1;
    }
    Ok(done)
}

/// The compaction thread's loop: reclaim passes every `compact_interval_s`, erase
/// passes (after checkpointing dirty states) every half of `erase_within_s`.
pub(super) fn compactor(inner: &Inner) {
    if let Err(error) = crate::lower_thread_priority(inner.config.index_nice) {
        tracing::warn!(%error, "cannot lower the compaction thread's priority");
    }
    let r = &inner.config.retention;
    let reclaim_every = Duration::from_secs(r.compact_interval_s);
    let erase_every = Duration::from_secs(r.erase_within_s / 2);
    let (mut next_reclaim, mut next_erase) =
        (Instant::now() + reclaim_every, Instant::now() + erase_every);
    loop {
        {
            let mut g = inner.stop_lock.lock();
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            let wake = next_reclaim.min(next_erase);
            inner
                .stop_cv
                .wait_for(&mut g, wake.saturating_duration_since(Instant::now()));
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
        }
        let now = Instant::now();
        let result = if now >= next_erase {
            next_erase = now + erase_every;
            next_reclaim = now + reclaim_every;
            erase(inner)
        } else if now >= next_reclaim {
            next_reclaim = now + reclaim_every;
            reclaim(inner)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "log compaction failed; will retry");
        }
    }
}

/// Rebuilds the shards of `space`'s graph that are mostly forgotten nodes.
fn rebuild_graph(inner: &Inner, space: &Space) -> Result<u64> {
    let share = inner.config.retention.graph_rebuild_fraction;
    let candidates = space.attrs.read().live_memories();
    space
        .hnsw
        .rebuild_sparse(&space.info.config, &candidates, share)
}

/// A reclaim pass: the graphs' mostly forgotten shards rebuilt, the mostly dead
/// segments rewritten.
fn reclaim(inner: &Inner) -> Result<()> {
    for space in inner.registry.list() {
        if inner.stopping.load(Ordering::Acquire) {
            return Ok(());
        }
        // A rebuild holds its shard for minutes: in the background only when other
        // shards take the inserts meanwhile (else `mnemo compact` does it).
        if space.hnsw.shard_count() > 1 {
            rebuild_graph(inner, &space)?;
        }
    }
    let fraction = inner.config.retention.compact_dead_fraction;
    compact_pass(inner, Pass::Reclaim(fraction)).map(|_| ())
}

/// An erase pass: dirty states checkpointed, then every segment holding a
/// forgotten memory rewritten.
fn erase(inner: &Inner) -> Result<()> {
    for space in inner.registry.list() {
        if space.state_dirty() {
            space.checkpoint(true)?;
        }
    }
    compact_pass(inner, Pass::Erase).map(|_| ())
}
