//! Partition leases: a key per partition in a bucket whose entries expire after
//! the lease TTL. The owner renews its key every quarter TTL with the revision it
//! holds; a node that finds a key missing creates it, catches up with the stream,
//! and only then writes. The lease routes clients; the stream's expected sequence
//! is what keeps two writers apart.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;

use crate::node::Node;
use crate::shared_log::Role;

/// What a lease key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    node: String,
    addr: String,
}

/// The part of the TTL a holder counts on: a renewal sent at `t` is trusted until
/// `t + 3/4 TTL`, so a paused or slow node stops writing before its key expires.
fn trusted(ttl: Duration) -> Duration {
    ttl * 3 / 4
}

/// Holds (or waits for) partition `p`'s lease, for as long as the node runs.
pub(crate) async fn hold(node: Arc<Node>, p: usize) {
    let ttl = node.lease_ttl();
    let key = format!("p{p}");
    let me = Holder {
        node: node.config.node_id.clone(),
        addr: node.config.advertise.clone(),
    };
    let value: bytes::Bytes = match serde_json::to_vec(&me) {
        Ok(v) => v.into(),
        Err(_) => return,
    };
    loop {
        let started = Instant::now();
        let role = node.partitions[p].role.lock().clone();
        match role {
            Role::Owner { revision, .. } => {
                match node.leases.update(&key, value.clone(), revision).await {
                    Ok(revision) => set_owner(&node, p, started + trusted(ttl), revision),
                    Err(e) => node.step_down(p, &format!("lease renewal refused: {e}")),
                }
            }
            Role::Follower { .. } => match node.leases.entry(&key).await {
                Ok(Some(entry)) if entry.operation == Operation::Put => {
                    let holder: Option<Holder> = serde_json::from_slice(&entry.value).ok();
                    match holder {
                        // Still ours (after a step-down, or a restart within the TTL):
                        // renew it, catch up, write again.
                        Some(h) if h.node == me.node => {
                            if let Ok(revision) = node
                                .leases
                                .update(&key, value.clone(), entry.revision)
                                .await
                                && catch_up(&node, p, ttl).await
                            {
                                set_owner(&node, p, started + trusted(ttl), revision);
                            }
                        }
                        Some(h) => {
                            *node.partitions[p].role.lock() = Role::Follower {
                                owner: Some(h.addr),
                            };
                        }
                        None => tracing::error!(partition = p, "unreadable lease entry"),
                    }
                }
                // No holder (expired, never taken): try to take it.
                Ok(_) => {
                    if let Ok(revision) = node.leases.create(&key, value.clone()).await {
                        tracing::info!(partition = p, "lease taken; catching up before writing");
                        if catch_up(&node, p, ttl).await {
                            set_owner(&node, p, started + trusted(ttl), revision);
                            tracing::info!(partition = p, "writing the partition");
                        }
                    }
                }
                Err(e) => tracing::warn!(partition = p, error = %e, "reading the lease"),
            },
        }
        let period = ttl / 4;
        tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    }
}

fn set_owner(node: &Node, p: usize, lease_until: Instant, revision: u64) {
    *node.partitions[p].role.lock() = Role::Owner {
        lease_until,
        revision,
    };
    crate::metrics::owner(p, true);
}

/// Waits until every message of partition `p` present now is applied here, so
/// this node's next append follows the stream's end (and its sessions resume
/// where the last owner left them). False if that takes longer than `limit`.
async fn catch_up(node: &Node, p: usize, limit: Duration) -> bool {
    let part = &node.partitions[p];
    let deadline = Instant::now() + limit;
    let Ok(state) = node.stream_state(p).await else {
        return false;
    };
    let last = state.last_sequence;
    while part.applied.load(Ordering::Acquire) < last {
        if Instant::now() >= deadline {
            tracing::warn!(
                partition = p,
                last,
                applied = part.applied.load(Ordering::Acquire),
                "not caught up in time"
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
