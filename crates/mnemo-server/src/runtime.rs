//! The process layout a Mnemo server runs in, built in one place for `mnemo serve`
//! and the in-process `mnemo bench`, so the demo measures the server users run:
//!
//! - the **recall threads** ([`crate::RecallPool`], normal priority) rank recalls;
//! - the **session runtime** runs Observe and MemoryStream sessions (ingestion)
//!   on threads niced to `session_nice`;
//! - the **serving runtime** (normal priority) runs connections, request handlers
//!   and recalls' replies, and whatever the caller runs with [`Runtimes::block_on`].
//!
//! So on a machine busy ingesting, recalls win the cores, then ingestion, then the
//! engine's index workers (niced further by the engine). Linux threads inherit
//! niceness and an unprivileged thread cannot lower it again: call
//! [`Runtimes::start`] from a thread at normal priority (`main`), before anything
//! is niced.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{Options, RecallPool};

/// How many threads, at what priority.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeLayout {
    /// Niceness (0..=19) of the session runtime's threads. Default 5.
    pub session_nice: i32,
    /// Recall threads; 0 = one per core, at least 2. Default 0.
    pub recall_threads: usize,
}

impl Default for RuntimeLayout {
    fn default() -> Self {
        RuntimeLayout {
            session_nice: 5,
            recall_threads: 0,
        }
    }
}

/// How long shutdown waits for session tasks still running after the server
/// stopped (a session stuck on a client that never reads must not hold the exit).
const SESSION_SHUTDOWN: Duration = Duration::from_secs(5);

/// The runtimes and threads of one server process. See the module docs.
#[derive(Debug)]
pub struct Runtimes {
    serving: tokio::runtime::Runtime,
    sessions: tokio::runtime::Runtime,
    recall_pool: Arc<RecallPool>,
}

impl Runtimes {
    /// Starts the recall threads, then the niced session runtime, then the serving
    /// runtime.
    pub fn start(layout: RuntimeLayout) -> std::io::Result<Self> {
        let threads = match layout.recall_threads {
            0 => std::thread::available_parallelism()
                .map_or(2, usize::from)
                .max(2),
            n => n,
        };
        let recall_pool = RecallPool::start(threads)?;
        let nice = layout.session_nice;
        let sessions = tokio::runtime::Builder::new_multi_thread()
            .thread_name("mnemo-session")
            .on_thread_start(move || {
                if let Err(error) = mnemo_engine::lower_thread_priority(nice) {
                    tracing::warn!(nice, %error, "cannot lower the session threads' priority");
                }
            })
            .enable_all()
            .build()?;
        let serving = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(Runtimes {
            serving,
            sessions,
            recall_pool,
        })
    }

    /// Server options that use these runtimes (limits, keys and TLS at defaults:
    /// set them on the result).
    pub fn options(&self) -> Options {
        Options {
            recall_pool: Some(Arc::clone(&self.recall_pool)),
            session_runtime: Some(self.sessions.handle().clone()),
            ..Options::default()
        }
    }

    /// Runs `future` on the serving runtime to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.serving.block_on(future)
    }

    /// Stops the serving runtime, then the session runtime (waiting at most a few
    /// seconds for sessions still running).
    pub fn shutdown(self) {
        // Neither waits for ever on a task still running (a blocking read, a
        // session's draining close): the server has stopped; the process exits.
        self.serving.shutdown_timeout(SESSION_SHUTDOWN);
        self.sessions.shutdown_timeout(SESSION_SHUTDOWN);
    }
}
