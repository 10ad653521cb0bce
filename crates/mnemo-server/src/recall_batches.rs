//! A recall as the protocol delivers it: opened, ranked and its first batches read
//! in one hop to the recall threads (on a busy machine every hand-off between
//! threads is a wait for a core), the memories already in protocol form. Shared by
//! `Recall`, `RecallOnce` and the recalls of a `MemoryStream`.

use mnemo_engine::{Engine, Lsn, RecallCursor, RecallRequest};
use std::sync::Arc;
use tonic::Status;

use crate::offload::ranking;
use crate::{RecallPool, convert, pb};

/// A ranked recall with the batches read so far.
pub(crate) struct Ranked {
    pub(crate) cursor: RecallCursor,
    pub(crate) snapshot: Lsn,
    pub(crate) batches: Vec<Vec<pb::Memory>>,
}

/// What to read, and how.
#[derive(Clone, Copy)]
pub(crate) struct Reading {
    /// Memories per batch (`usize::MAX`: one batch).
    pub(crate) batch: usize,
    /// Stop reading batches once this many memories are read.
    pub(crate) eager: usize,
    pub(crate) with_embedding: bool,
}

impl Reading {
    /// From a request's `batch_size` (0 = everything in one batch).
    pub(crate) fn new(batch_size: u32, eager: usize, with_embedding: bool) -> Self {
        Reading {
            batch: if batch_size == 0 {
                usize::MAX
            } else {
                batch_size as usize
            },
            eager,
            with_embedding,
        }
    }
}

/// The next batch of `cursor` (blocking: it reads memories from the log).
pub(crate) fn next_batch(
    cursor: &mut RecallCursor,
    reading: Reading,
) -> mnemo_engine::Result<Vec<pb::Memory>> {
    Ok(cursor
        .next_batch(reading.batch)?
        .into_iter()
        .map(|m| convert::memory(m, reading.with_embedding))
        .collect())
}

/// Opens the recall on `space`, ranks it, and reads batches until `reading.eager`
/// memories are read or the cursor is done; on the recall threads.
pub(crate) async fn rank(
    engine: Arc<Engine>,
    pool: Option<&Arc<RecallPool>>,
    space: String,
    req: RecallRequest,
    reading: Reading,
) -> Result<Ranked, Status> {
    ranking(pool, move || {
        let mut cursor = engine.recall(&space, req)?;
        let snapshot = cursor.snapshot();
        let mut batches = Vec::new();
        let mut read = 0;
        loop {
            let found = next_batch(&mut cursor, reading)?;
            read += found.len();
            batches.push(found);
            if cursor.is_done() || read >= reading.eager {
                return Ok(Ranked {
                    cursor,
                    snapshot,
                    batches,
                });
            }
        }
    })
    .await
}
