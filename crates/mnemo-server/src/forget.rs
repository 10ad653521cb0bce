//! Forget and Compact: selectors from the wire, the engine's work on a blocking
//! thread (a forget waits for its record's fsync; a compaction rewrites files).

use mnemo_engine::Engine;
use std::sync::Arc;
use tonic::Status;

use crate::convert;
use crate::offload::blocking;
use crate::pb;

/// A forget: ids, session and filter select their intersection.
pub(crate) async fn forget(
    engine: Arc<Engine>,
    r: pb::ForgetRequest,
) -> Result<pb::ForgetResponse, Status> {
    if r.ids.len() > mnemo_engine::MAX_FORGET_IDS {
        return Err(Status::invalid_argument(format!(
            "{} ids, the limit is {} per forget",
            r.ids.len(),
            mnemo_engine::MAX_FORGET_IDS
        )));
    }
    let ids = convert::ids(&r.ids)?;
    let mut filter = match &r.filter {
        Some(f) => convert::filter(f)?,
        None => mnemo_engine::Filter::default(),
    };
    if !r.session_id.is_empty() {
        // The filter's sessions are alternatives; the session given here narrows them.
        if filter.session_ids.is_empty() || filter.session_ids.contains(&r.session_id) {
            filter.session_ids = vec![r.session_id];
        } else {
            let snapshot = engine.snapshot(&r.space).map_err(convert::status)?;
            return Ok(pb::ForgetResponse {
                forgotten: 0,
                lsn: snapshot,
            });
        }
    }
    let done = blocking(move || engine.forget(&r.space, &ids, &filter)).await?;
    Ok(pb::ForgetResponse {
        forgotten: done.count,
        lsn: done.lsn,
    })
}

/// A compaction of one space now.
pub(crate) async fn compact(
    engine: Arc<Engine>,
    r: pb::CompactRequest,
) -> Result<pb::CompactResponse, Status> {
    let done = blocking(move || engine.compact(&r.space)).await?;
    Ok(pb::CompactResponse {
        purged: done.purged,
        segments_compacted: done.segments_compacted,
        log_bytes_before: done.log_bytes_before,
        log_bytes_after: done.log_bytes_after,
        checkpoint_lsn: done.checkpoint_lsn,
    })
}
