//! The owner of a partition checkpoints its spaces every `interval_s`, then trims
//! the partition's stream below what all of them have checkpointed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mnemo_engine::{Engine, SpaceNo};

use super::Checkpoints;
use super::manifest::{CheckpointResult, Manifest};
use crate::node::Node;

/// Checkpoints the spaces of the partitions this node owns, for as long as it runs.
pub(crate) async fn upload_loop(node: Arc<Node>, engine: Arc<Engine>, ck: Arc<Checkpoints>) {
    let interval = Duration::from_secs(ck.config.interval_s);
    loop {
        tokio::time::sleep(interval).await;
        for p in 0..node.partitions.len() {
            if !node.partitions[p].role.lock().is_owner_now() {
                continue;
            }
            match checkpoint_partition(&node, &engine, &ck, p).await {
                Ok(Some(upto)) => trim(&node, p, upto).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "checkpoint to object storage failed")
                }
            }
        }
    }
}

/// Checkpoints every space of partition `p`; returns the stream position every
/// one of them covers (`None` with no space).
async fn checkpoint_partition(
    node: &Arc<Node>,
    engine: &Arc<Engine>,
    ck: &Arc<Checkpoints>,
    p: usize,
) -> CheckpointResult<Option<u64>> {
    // A space created after the list is read has its records only in messages
    // after this position: the trim stays below it.
    let floor = node.partitions[p].applied.load(Ordering::Acquire);
    let mut covered: Option<u64> = None;
    for info in node.spaces_of(engine, p) {
        let m = checkpoint_space(node, engine, ck, p, info.no).await?;
        covered = Some(covered.map_or(m.stream_seq, |c| c.min(m.stream_seq)));
    }
    Ok(covered.map(|c| c.min(floor)))
}

/// Writes what `space` has beyond its newest manifest, and a new manifest.
async fn checkpoint_space(
    node: &Arc<Node>,
    engine: &Arc<Engine>,
    ck: &Arc<Checkpoints>,
    p: usize,
    space: SpaceNo,
) -> CheckpointResult<Manifest> {
    let cached = ck.newest.lock().get(&space.0).cloned();
    let prev = match cached {
        Some(m) => m,
        None => ck
            .read_newest(space.0)
            .await?
            .unwrap_or_else(|| Manifest::empty(space.0, p as u32)),
    };
    // The position first, then a barrier through the log writer (this node's own
    // appends count as applied once published, a moment before they are written
    // here): the local log then holds every record of the messages up to the
    // position, so the records read after it cover them.
    let seq = node.partitions[p].applied.load(Ordering::Acquire);
    let e = Arc::clone(engine);
    tokio::task::spawn_blocking(move || e.wait_for_writes())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let last = engine.local_lsn(space);
    if last == prev.lsn && seq == prev.stream_seq {
        return Ok(prev);
    }
    let mut next = Manifest {
        lsn: last,
        stream_seq: seq,
        written_by: node.config.node_id.clone(),
        ..prev.clone()
    };
    let mut from = prev.lsn + 1;
    while from <= last {
        let e = Arc::clone(engine);
        let max = ck.config.object_bytes as usize;
        let (to, frames) = tokio::task::spawn_blocking(move || {
            let mut frames = Vec::new();
            e.read_frames(space, from, last, max, &mut frames)
                .map(|to| (to, frames))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if to < from {
            return Err(format!("space #{}: no record at LSN {from}", space.0));
        }
        let object = ck
            .write_object(space.0, from, to, &node.config.node_id, frames)
            .await?;
        next.objects.push(object);
        from = to + 1;
    }
    ck.write_manifest(&next).await?;
    tracing::debug!(
        space = space.0,
        lsn = last,
        stream_seq = seq,
        "checkpoint written to object storage"
    );
    ck.newest.lock().insert(space.0, next.clone());
    metrics::counter!(crate::metrics::CHECKPOINTS, "kind" => "written").increment(1);
    Ok(next)
}

/// Removes the messages of partition `p`'s stream up to `upto` (every space of
/// the partition has them in a checkpoint).
async fn trim(node: &Node, p: usize, upto: u64) {
    if upto == 0 {
        return;
    }
    let part = &node.partitions[p];
    let purged = match node.js.get_stream(&part.stream).await {
        Ok(s) => s
            .purge()
            .sequence(upto + 1)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match purged {
        Ok(r) if r.purged > 0 => {
            tracing::info!(
                partition = p,
                below = upto + 1,
                purged = r.purged,
                "stream trimmed"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(partition = p, error = %e, "trimming the stream"),
    }
}
