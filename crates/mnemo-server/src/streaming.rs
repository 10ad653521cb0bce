//! Response streams fed by a task, one message at a time, that hold no thread
//! while the client does not read: the task waits (async) for room in a channel of
//! one message, and does its blocking reads on the blocking pool a batch at a time.
//! A client that reads nothing for the idle deadline, or a server shutting down,
//! ends the task (dropping what it holds: a recall's cursor, its admission
//! permit); the client then finds the stream ended with ABORTED or UNAVAILABLE
//! after the messages already queued.

use futures::Stream;
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::Status;

/// Where a producer sends its messages.
pub(crate) struct Outbox<M> {
    tx: mpsc::Sender<Result<M, Status>>,
    idle: Duration,
    shutdown: watch::Receiver<bool>,
    /// Why the stream ended early, for the client once it reads again.
    ended: Arc<Mutex<Option<Status>>>,
}

impl<M> Outbox<M> {
    /// Sends one message; false when the stream is over (the client went away,
    /// read nothing for the idle deadline, or the server is shutting down): the
    /// producer then returns.
    pub(crate) async fn send(&mut self, msg: Result<M, Status>) -> bool {
        let why = tokio::select! {
            sent = tokio::time::timeout(self.idle, self.tx.send(msg)) => match sent {
                Ok(Ok(())) => return true,
                Ok(Err(_)) => return false,
                Err(_) => Status::aborted(format!(
                    "the client read nothing for {} s; the stream was closed",
                    self.idle.as_secs()
                )),
            },
            _ = self.shutdown.wait_for(|s| *s) => Status::unavailable("the server is shutting down"),
        };
        *self.ended.lock() = Some(why);
        false
    }
}

/// The client's side of a produced stream.
pub(crate) struct Produced<M> {
    rx: mpsc::Receiver<Result<M, Status>>,
    ended: Arc<Mutex<Option<Status>>>,
}

impl<M> Stream for Produced<M> {
    type Item = Result<M, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => Poll::Ready(self.ended.lock().take().map(Err)),
            other => other,
        }
    }
}

/// Spawns `producer` with an outbox and returns the stream it feeds.
pub(crate) fn produce<M, F, Fut>(
    idle: Duration,
    shutdown: watch::Receiver<bool>,
    producer: F,
) -> Produced<M>
where
    M: Send + 'static,
    F: FnOnce(Outbox<M>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1);
    let ended = Arc::new(Mutex::new(None));
    let outbox = Outbox {
        tx,
        idle,
        shutdown,
        ended: Arc::clone(&ended),
    };
    tokio::spawn(producer(outbox));
    Produced { rx, ended }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_reader_that_stops_ends_the_producer_after_the_idle_deadline() {
        let (_stop, shutdown) = watch::channel(false);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut s = produce(Duration::from_millis(100), shutdown, |mut out| async move {
            let mut sent = 0;
            while out.send(Ok(sent)).await {
                sent += 1;
            }
            let _ = done_tx.send(sent);
        });
        assert_eq!(s.next().await.unwrap().unwrap(), 0);
        // Nobody reads: the producer gives up after the deadline, holding nothing.
        let sent = tokio::time::timeout(Duration::from_secs(5), done_rx)
            .await
            .unwrap()
            .unwrap();
        assert!(sent <= 3, "{sent}");
        let mut rest = Vec::new();
        while let Some(m) = s.next().await {
            rest.push(m);
        }
        let last = rest.pop().unwrap().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Aborted);
        assert!(rest.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn shutdown_ends_a_stream_with_unavailable() {
        let (stop, shutdown) = watch::channel(false);
        let mut s = produce(Duration::from_secs(60), shutdown, |mut out| async move {
            while out.send(Ok(())).await {}
        });
        s.next().await.unwrap().unwrap();
        stop.send(true).unwrap();
        let mut last = None;
        while let Some(m) = s.next().await {
            last = Some(m);
        }
        assert_eq!(last.unwrap().unwrap_err().code(), tonic::Code::Unavailable);
    }
}
