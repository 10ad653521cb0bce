//! Following a partition: every message after the last one applied here goes
//! into the engine's local log, as recovery would take it (`Engine::follow`).

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mnemo_engine::{Engine, Error};

use crate::checkpoints::restore_partition;
use crate::node::Node;

/// How long a consumer may deliver nothing before the stream is checked for
/// messages it should have delivered.
const QUIET: Duration = Duration::from_secs(1);

/// Frames applied to the engine in one call, at most (about).
const FOLLOW_BATCH_BYTES: usize = 4 << 20;

/// Follows partition `p` into `engine` for as long as the node runs.
pub(crate) async fn follow(node: Arc<Node>, engine: Arc<Engine>, p: usize) {
    let part = &node.partitions[p];
    // At start, and when the stream no longer holds what this node lacks: first
    // the newest checkpoints, then the stream after them.
    let mut restore = true;
    loop {
        match start_position(&node, &engine, p, restore).await {
            Ok(()) => restore = false,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "cannot start following; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let start = part.applied.load(Ordering::Acquire) + 1;
        let messages = async {
            let stream = node
                .js
                .get_stream(&part.stream)
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(pull::OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        }
        .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "cannot follow the partition; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut broken = false;
        while !broken {
            // One message, then whatever else has arrived (up to a batch's bytes):
            // one local write for all of them.
            // A consumer can go quiet without an error (NATS restarted and the
            // consumer is gone): when the stream has moved on meanwhile, start anew.
            let first = match tokio::time::timeout(QUIET, messages.next()).await {
                Ok(Some(first)) => first,
                Ok(None) => break,
                Err(_) => {
                    if behind(&node, p).await {
                        break;
                    }
                    continue;
                }
            };
            let mut batch = Vec::new();
            let mut last = 0;
            let mut next = Some(first);
            while let Some(msg) = next {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "following interrupted");
                        broken = true;
                        break;
                    }
                };
                let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                    broken = true;
                    break;
                };
                // Not what this node wrote as the owner (applied already).
                if seq > part.applied.load(Ordering::Acquire) {
                    batch.extend_from_slice(msg.payload.as_ref());
                    last = seq;
                }
                if batch.len() >= FOLLOW_BATCH_BYTES {
                    break;
                }
                next = messages.next().now_or_never().flatten();
            }
            if last > 0 {
                match apply(&node, &engine, p, &batch).await {
                    Applied::Yes => {}
                    Applied::Closed => return,
                    Applied::Gap => {
                        restore = true;
                        break;
                    }
                }
                let applied = part.applied.fetch_max(last, Ordering::AcqRel).max(last);
                let label = p.to_string();
                metrics::counter!(crate::metrics::FOLLOWED, "partition" => label.clone())
                    .increment(1);
                metrics::gauge!(crate::metrics::APPLIED, "partition" => label).set(applied as f64);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Moves the start past what the stream no longer holds: restored from object
/// storage first when `restore` (or when the stream was trimmed past this node).
async fn start_position(
    node: &Arc<Node>,
    engine: &Arc<Engine>,
    p: usize,
    restore: bool,
) -> Result<(), String> {
    let part = &node.partitions[p];
    let first = node.stream_state(p).await?.first_sequence;
    let applied = part.applied.load(Ordering::Acquire);
    let trimmed_past = applied + 1 < first;
    if let Some(ck) = &node.checkpoints
        && (restore || trimmed_past)
    {
        let covered = restore_partition(node, engine, ck, p).await?;
        part.applied.fetch_max(covered, Ordering::AcqRel);
    }
    if part.applied.load(Ordering::Acquire) + 1 < first {
        // Messages before `first` are gone: their records must be here already
        // (restored); a gap shows up as a FollowGap when applying.
        part.applied
            .fetch_max(first.saturating_sub(1), Ordering::AcqRel);
    }
    Ok(())
}

/// True if partition `p`'s stream holds messages not applied here.
async fn behind(node: &Node, p: usize) -> bool {
    node.stream_state(p)
        .await
        .is_ok_and(|s| s.last_sequence > node.partitions[p].applied.load(Ordering::Acquire))
}

/// What became of frames handed to the engine.
enum Applied {
    Yes,
    /// The engine is closed.
    Closed,
    /// They skip records this node lacks: restore from checkpoints, then retry.
    Gap,
}

/// Applies followed frames, retrying what may pass later (a space not adopted yet).
async fn apply(node: &Arc<Node>, engine: &Arc<Engine>, p: usize, payload: &[u8]) -> Applied {
    loop {
        let frames = node.catalog.without_dropped(payload);
        let e = Arc::clone(engine);
        let done = tokio::task::spawn_blocking(move || e.follow(frames)).await;
        match done {
            Ok(Ok(_)) => return Applied::Yes,
            Ok(Err(Error::ShuttingDown)) | Err(_) => return Applied::Closed,
            Ok(Err(e @ Error::FollowGap { .. })) if node.checkpoints.is_some() => {
                tracing::warn!(partition = p, error = %e, "behind the stream's start: restoring from checkpoints");
                return Applied::Gap;
            }
            Ok(Err(Error::SpaceNotFound(_))) => {
                // Created on another node: adopt it from the catalog first.
                if let Err(e) = node.catalog.sync(engine).await {
                    tracing::warn!(partition = p, error = %e, "reading the catalog");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => {
                tracing::error!(partition = p, error = %e, "cannot apply a followed message; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
