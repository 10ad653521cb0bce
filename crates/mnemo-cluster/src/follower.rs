//! Following a partition: every message after the last one applied here goes
//! into the engine's local log, as recovery would take it (`Engine::follow`).

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mnemo_engine::{Engine, Error};

use crate::node::Node;

/// Follows partition `p` into `engine` for as long as the node runs.
pub(crate) async fn follow(node: Arc<Node>, engine: Arc<Engine>, p: usize) {
    let part = &node.partitions[p];
    loop {
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
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "following interrupted");
                    break;
                }
            };
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                break;
            };
            if seq <= part.applied.load(Ordering::Acquire) {
                continue; // written by this node as the owner
            }
            if !apply(&node, &engine, p, msg.payload.as_ref()).await {
                return;
            }
            part.applied.fetch_max(seq, Ordering::AcqRel);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies one message, retrying what may pass later (a space not adopted yet).
/// False if the engine is closed.
async fn apply(node: &Arc<Node>, engine: &Arc<Engine>, p: usize, payload: &[u8]) -> bool {
    loop {
        let frames = node.catalog.without_dropped(payload);
        let e = Arc::clone(engine);
        let done = tokio::task::spawn_blocking(move || e.follow(frames)).await;
        match done {
            Ok(Ok(_)) => return true,
            Ok(Err(Error::ShuttingDown)) | Err(_) => return false,
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
