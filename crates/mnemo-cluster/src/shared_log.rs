//! The shared log: each group commit of a partition this node owns becomes one
//! JetStream message that must land right after the last one this node applied.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mnemo_engine::{Error, Replicator, Result, SpaceNo};

use crate::node::{Hooks, Node};

/// How long an append whose outcome is unknown (NATS unreachable) is retried —
/// with its message id and expected sequence, so at most one copy can land —
/// before the node gives up the partition.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// This node's part in a partition.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Another node writes it (`owner`, when known), or none does right now.
    Follower { owner: Option<String> },
    /// This node writes it while `lease_until` has not passed (the lease, renewed
    /// at `revision`, expires later than that in the bucket).
    Owner { lease_until: Instant, revision: u64 },
}

impl Role {
    pub(crate) fn is_owner_now(&self) -> bool {
        matches!(self, Role::Owner { lease_until, .. } if Instant::now() < *lease_until)
    }
}

impl Node {
    pub(crate) fn not_owner(&self, p: usize) -> Error {
        let owner = match &*self.partitions[p].role.lock() {
            Role::Follower { owner } => owner.clone(),
            Role::Owner { .. } => None,
        };
        Error::NotOwner {
            partition: p as u32,
            owner,
        }
    }

    /// Gives partition `p` up after the shared log refused this node's append
    /// (another writer) or the append could not be settled. The lease task takes
    /// it back, after catching up, if the lease is still this node's.
    pub(crate) fn step_down(&self, p: usize, why: &str) {
        let mut role = self.partitions[p].role.lock();
        if matches!(*role, Role::Owner { .. }) {
            tracing::warn!(
                partition = p,
                why,
                "stepping down as the partition's writer"
            );
            *role = Role::Follower { owner: None };
            crate::metrics::owner(p, false);
            metrics::counter!(crate::metrics::STEP_DOWNS, "partition" => p.to_string())
                .increment(1);
        }
    }

    /// This node's append landed at `seq` of partition `p`: it is the position the
    /// next append follows.
    fn published(&self, p: usize, seq: u64) {
        self.partitions[p].applied.fetch_max(seq, Ordering::AcqRel);
        let label = p.to_string();
        metrics::counter!(crate::metrics::APPENDS, "partition" => label.clone()).increment(1);
        metrics::gauge!(crate::metrics::APPLIED, "partition" => label).set(seq as f64);
    }

    /// Appends `frames` to partition `p` after the last message applied here.
    async fn publish(self: Arc<Self>, p: usize, frames: bytes::Bytes) -> Result<()> {
        let part = &self.partitions[p];
        if !part.role.lock().is_owner_now() {
            return Err(self.not_owner(p));
        }
        let expected = part.applied.load(Ordering::Acquire);
        // Unique per writer and position: a retry of this append carries it too.
        let id = format!("{}:{}:{}", self.config.node_id, part.no, expected + 1);
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let msg = PublishMessage::build()
                .payload(frames.clone())
                .message_id(&id)
                .expected_last_sequence(expected);
            let outcome = match self.js.send_publish(part.subject.clone(), msg).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(ack) if ack.sequence == expected + 1 => {
                    self.published(p, ack.sequence);
                    return Ok(());
                }
                Ok(ack) => {
                    // Cannot happen with an expected sequence; never write on a guess.
                    self.step_down(p, "the shared log placed an append elsewhere");
                    return Err(Error::ClusterUnavailable(format!(
                        "partition {p}: append landed at {} instead of {}",
                        ack.sequence,
                        expected + 1
                    )));
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return self.settle(p, expected, &id, deadline).await;
                }
                // Refused before it was sent: nothing can have landed.
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(Error::InvalidArgument(format!(
                        "a record of {} bytes does not fit the shared log's message limit \
                         ({} bytes: the NATS server's max_payload)",
                        frames.len(),
                        self.js.client().max_payload()
                    )));
                }
                Err(e) => {
                    if Instant::now() >= deadline {
                        self.step_down(p, "an append could not be settled");
                        return Err(Error::ClusterUnavailable(format!(
                            "partition {p}: the shared log did not answer: {e}"
                        )));
                    }
                    tracing::warn!(partition = p, error = %e, "append unanswered; retrying it with its message id");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The log holds something at `expected + 1` already: this node's own append
    /// (an earlier try of it landed) or another writer's (this node is fenced).
    async fn settle(&self, p: usize, expected: u64, id: &str, deadline: Instant) -> Result<()> {
        let part = &self.partitions[p];
        loop {
            let stream = self.js.get_stream(&part.stream).await;
            let found = match stream {
                Ok(s) => s
                    .get_raw_message(expected + 1)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match found {
                Ok(msg) => {
                    let ours = msg
                        .headers
                        .get("Nats-Msg-Id")
                        .is_some_and(|v| v.as_str() == id);
                    if ours {
                        self.published(p, expected + 1);
                        return Ok(());
                    }
                    self.step_down(p, "fenced: another writer appended first");
                    return Err(self.not_owner(p));
                }
                Err(e) if Instant::now() >= deadline => {
                    self.step_down(p, "an append could not be settled");
                    return Err(Error::ClusterUnavailable(format!(
                        "partition {p}: reading the shared log to settle an append: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Replicator for Hooks {
    fn partition_of(&self, space: SpaceNo) -> u32 {
        self.0.catalog.partition_of(space)
    }

    fn check_owner(&self, space: SpaceNo) -> Result<()> {
        let p = self.partition_of(space) as usize;
        if self.0.partitions[p].role.lock().is_owner_now() {
            Ok(())
        } else {
            Err(self.0.not_owner(p))
        }
    }

    fn replicate(&self, parts: &[(u32, &[u8])]) -> Vec<Result<()>> {
        let node = Arc::clone(&self.0);
        let jobs: Vec<_> = parts
            .iter()
            .map(|(p, frames)| {
                Arc::clone(&node).publish(*p as usize, bytes::Bytes::copy_from_slice(frames))
            })
            .collect();
        match node.run_sync(futures::future::join_all(jobs)) {
            Some(results) => results,
            None => parts
                .iter()
                .map(|_| Err(Error::ClusterUnavailable("the node is stopping".into())))
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
