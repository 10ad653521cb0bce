//! A recall as the protocol delivers it, shared by `Recall`, `RecallOnce` and the
//! recalls of a `MemoryStream`:
//! - a read-your-writes wait for `min_lsn` is async (it holds no thread, ends when
//!   the client goes away, its deadline or `max_wait` passes, or the server stops);
//! - then one hop to the recall threads opens the cursor, ranks, and reads the
//!   first batches (on a busy machine every hand-off between threads is a wait for
//!   a core);
//! - every batch is bounded in memories *and* in bytes, measured as each memory is
//!   read, so no response grows past the byte budget whatever `k` asks for.

use mnemo_engine::{
    Engine, Error, Lsn, MAX_RECALL_WAIT, RecallCursor, RecallRequest, SnapshotSpec,
};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::Status;

use crate::convert::{EmbeddingForm, status};
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
    /// Most memories per batch.
    pub(crate) batch: usize,
    /// Most bytes per batch (one memory more at most: a batch holds at least one).
    pub(crate) max_bytes: usize,
    /// Stop reading batches in the first hop once this many memories are read...
    pub(crate) eager: usize,
    /// ... or this many bytes.
    pub(crate) eager_bytes: usize,
    pub(crate) embedding: EmbeddingForm,
}

impl Reading {
    /// From a request's `batch_size` (0 = as many as fit in `max_bytes`).
    pub(crate) fn new(
        batch_size: u32,
        max_bytes: usize,
        eager: usize,
        embedding: EmbeddingForm,
    ) -> Self {
        Reading {
            batch: if batch_size == 0 {
                usize::MAX
            } else {
                batch_size as usize
            },
            max_bytes,
            eager,
            eager_bytes: max_bytes,
            embedding,
        }
    }

    /// Reads at most `bytes` in the first hop, in all batches.
    pub(crate) fn total_bytes(mut self, bytes: usize) -> Self {
        self.eager_bytes = bytes;
        self
    }
}

/// What every recall needs of the server.
#[derive(Clone)]
pub(crate) struct Recaller {
    pub(crate) engine: Arc<Engine>,
    pub(crate) pool: Option<Arc<RecallPool>>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The next batch of `cursor` (blocking: it reads memories from the log).
pub(crate) fn next_batch(
    cursor: &mut RecallCursor,
    reading: Reading,
) -> mnemo_engine::Result<Vec<pb::Memory>> {
    Ok(read_batch(cursor, reading)?.0)
}

/// [`next_batch`], with its size in bytes.
fn read_batch(
    cursor: &mut RecallCursor,
    reading: Reading,
) -> mnemo_engine::Result<(Vec<pb::Memory>, usize)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    while out.len() < reading.batch && (out.is_empty() || bytes < reading.max_bytes) {
        let Some(m) = cursor.next_batch(1)?.pop() else {
            break;
        };
        let m = convert::memory(m, reading.embedding);
        bytes += m.encoded_len();
        out.push(m);
    }
    Ok((out, bytes))
}

impl Recaller {
    /// Waits (async) for `min_lsn`, then opens the recall on `space`, ranks it, and
    /// reads batches until `reading.eager` memories are read or the cursor is done;
    /// on the recall threads.
    pub(crate) async fn rank(
        &self,
        space: String,
        req: RecallRequest,
        reading: Reading,
    ) -> Result<Ranked, Status> {
        if let SnapshotSpec::AtLeast(lsn) = req.snapshot {
            self.wait_committed(&space, lsn, req.max_wait).await?;
        }
        let engine = Arc::clone(&self.engine);
        ranking(self.pool.as_ref(), move || {
            let mut cursor = engine.recall(&space, req)?;
            let snapshot = cursor.snapshot();
            let mut batches = Vec::new();
            let (mut read, mut read_bytes) = (0, 0);
            loop {
                let (found, bytes) = read_batch(&mut cursor, reading)?;
                read += found.len();
                read_bytes += bytes;
                batches.push(found);
                if cursor.is_done() || read >= reading.eager || read_bytes >= reading.eager_bytes {
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

    async fn wait_committed(
        &self,
        space: &str,
        lsn: Lsn,
        max_wait: Duration,
    ) -> Result<(), Status> {
        if max_wait > MAX_RECALL_WAIT {
            return Err(Status::invalid_argument(format!(
                "max_wait_ms must be at most {}, got {}",
                MAX_RECALL_WAIT.as_millis(),
                max_wait.as_millis()
            )));
        }
        let committed = self.engine.committed(space, lsn).map_err(status)?;
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            waited = tokio::time::timeout(max_wait, committed) => match waited {
                Ok(done) => done.map(|_| ()).map_err(status),
                Err(_) => Err(status(Error::Timeout {
                    wanted: lsn,
                    committed: self.engine.snapshot(space).map_err(status)?,
                    waited: max_wait,
                })),
            },
            _ = shutdown.wait_for(|s| *s) => Err(status(Error::ShuttingDown)),
        }
    }
}
