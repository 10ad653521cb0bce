//! Running blocking engine calls off the async threads: the runtime's blocking
//! pool for short admin work, the recall threads (when the server has them) for
//! recalls' ranking.

use mnemo_engine::Result as EngineResult;
use std::sync::Arc;
use tonic::Status;

use crate::RecallPool;
use crate::convert::status;

/// Runs a blocking engine call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> EngineResult<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(status)
}

/// Runs a recall's ranking on the recall threads when the server has them (see
/// [`RecallPool`]), else on the blocking pool.
pub(crate) async fn ranking<T: Send + 'static>(
    pool: Option<&Arc<RecallPool>>,
    f: impl FnOnce() -> EngineResult<T> + Send + 'static,
) -> Result<T, Status> {
    match pool {
        Some(pool) => pool.run(f).await,
        None => blocking(f).await,
    }
}
