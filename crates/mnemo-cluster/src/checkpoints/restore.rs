//! Restoring: the spaces of a partition whose local copy is behind their newest
//! checkpoint take the missing records from object storage, through the same
//! path as followed messages.

use std::sync::Arc;

use mnemo_engine::Engine;

use super::Checkpoints;
use super::manifest::CheckpointResult;
use crate::node::Node;

/// Brings every space of partition `p` up to its newest checkpoint; returns the
/// stream position all of them cover (0 if one has no checkpoint).
pub(crate) async fn restore_partition(
    node: &Arc<Node>,
    engine: &Arc<Engine>,
    ck: &Checkpoints,
    p: usize,
) -> CheckpointResult<u64> {
    let mut covered: Option<u64> = None;
    for info in node.spaces_of(engine, p) {
        let Some(manifest) = ck.read_newest(info.no.0).await? else {
            covered = Some(0);
            continue;
        };
        let have = engine.local_lsn(info.no);
        for object in manifest.objects.iter().filter(|o| o.to > have) {
            let frames = ck.read_object(object).await?;
            let e = Arc::clone(engine);
            let new = tokio::task::spawn_blocking(move || e.follow(frames.to_vec()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("restoring {}: {e}", object.path))?;
            tracing::info!(
                space = info.name,
                object = object.path,
                new,
                "restored from object storage"
            );
        }
        covered = Some(covered.map_or(manifest.stream_seq, |c| c.min(manifest.stream_seq)));
        ck.newest.lock().insert(info.no.0, manifest);
    }
    Ok(covered.unwrap_or(0))
}
