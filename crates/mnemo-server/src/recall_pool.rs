//! Threads that rank recalls, apart from the async runtimes.
//!
//! Ranking is the part of a recall that takes milliseconds of CPU. On threads of
//! their own at normal priority (started by [`crate::Runtimes`] before anything is
//! niced), it wins the cores over the niced session runtime, the log writer and the
//! index workers on a machine busy ingesting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use tonic::Status;

type Job = Box<dyn FnOnce() + Send>;

/// See the module docs. Dropping the last handle ends the threads once they are idle.
#[derive(Debug)]
pub struct RecallPool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl RecallPool {
    /// Starts `threads` (at least 1) threads with the calling thread's priority.
    pub fn start(threads: usize) -> std::io::Result<Arc<Self>> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("mnemo-recall-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take one job; a poisoned lock is
                        // still a usable receiver.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        let Ok(job) = job else { return };
                        // A panicking job loses only its own answer (its caller sees
                        // the reply channel closed); the thread goes on.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Arc::new(RecallPool {
            jobs,
            threads: threads.max(1),
        }))
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on the pool and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> mnemo_engine::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .send(job)
            .map_err(|_| Status::unavailable("the recall threads have stopped"))?;
        rx.await
            .map_err(|_| Status::internal("recall task failed"))?
            .map_err(crate::convert::status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = RecallPool::start(2).unwrap();
        assert_eq!(pool.run(|| Ok(40 + 2)).await.unwrap(), 42);
        let err = pool
            .run(|| -> mnemo_engine::Result<u32> { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        let e = pool
            .run(|| -> mnemo_engine::Result<u32> {
                Err(mnemo_engine::Error::InvalidArgument("bad cue".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // Both threads still serve.
        let many: Vec<_> = (0..8).map(|i| pool.run(move || Ok(i))).collect();
        let got = futures::future::join_all(many).await;
        assert_eq!(got.into_iter().map(Result::unwrap).sum::<i32>(), 28);
    }
}
