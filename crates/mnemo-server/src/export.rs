//! Export: every memory of a space in LSN order under one snapshot, read in
//! batches bounded in count and bytes on a blocking thread, streamed one message
//! at a time (a client that stops reading holds no thread).

use mnemo_engine::{Engine, Error};
use std::sync::Arc;
use tokio::sync::watch;
use tonic::Status;

use crate::convert::{self, EmbeddingForm, status};
use crate::offload::blocking;
use crate::pb;
use crate::service::Limits;
use crate::streaming::{Produced, produce};

/// The export stream of `r` (the first batch read before it is returned, so a bad
/// request fails the call itself).
pub(crate) async fn export(
    engine: Arc<Engine>,
    r: pb::ExportRequest,
    limits: &Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<Produced<pb::ExportResponse>, Status> {
    let snapshot = if r.snapshot_lsn == 0 {
        engine.snapshot(&r.space).map_err(status)?
    } else {
        r.snapshot_lsn
    };
    let batch = match r.batch_size {
        0 => 256,
        n => n.min(4096) as usize,
    };
    let max_bytes = limits.max_response_bytes;
    let with_embedding = EmbeddingForm::of(r.include_embedding, r.packed_embeddings);
    let space = r.space;
    // A filter is turned into the matching set once, for the whole export.
    let selection = match &r.filter {
        Some(f) => {
            let f = convert::filter(f)?;
            let (engine, space) = (Arc::clone(&engine), space.clone());
            Some(Arc::new(
                blocking(move || engine.select(&space, &f, snapshot)).await?,
            ))
        }
        None => None,
    };
    // One batch: at most `batch` memories and about `max_bytes` (a blocking read).
    let read = move |engine: Arc<Engine>, space: String, after: u64| {
        let selection = selection.clone();
        tokio::task::spawn_blocking(move || {
            let mut memories = Vec::new();
            let (mut bytes, mut next) = (0, after);
            while memories.len() < batch && bytes < max_bytes && next < snapshot {
                let want = (batch - memories.len()).min(16);
                let (found, scanned) =
                    engine.export(&space, next, snapshot, want, selection.as_deref())?;
                next = scanned;
                for m in found {
                    let m = convert::memory(m, with_embedding);
                    bytes += prost::Message::encoded_len(&m);
                    memories.push(m);
                }
            }
            Ok::<_, Error>((memories, next))
        })
    };
    // The first batch is read here so that a bad request fails the call itself.
    let first = read(Arc::clone(&engine), space.clone(), r.after_lsn)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(status)?;
    let stream = produce(limits.stream_idle_timeout, shutdown, |mut out| async move {
        let mut found = first;
        loop {
            let (memories, after) = found;
            let more = after < snapshot;
            let msg = pb::ExportResponse {
                memories,
                snapshot_lsn: snapshot,
                more,
            };
            if !out.send(Ok(msg)).await || !more {
                return;
            }
            found = match read(Arc::clone(&engine), space.clone(), after).await {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    let _ = out.send(Err(status(e))).await;
                    return;
                }
                Err(e) => {
                    let _ = out
                        .send(Err(Status::internal(format!("task failed: {e}"))))
                        .await;
                    return;
                }
            };
        }
    });
    Ok(stream)
}
