//! The durable observation log: the engine's source of truth.
//!
//! One shared, segmented, append-only log holds the records of every space
//! (see docs/log-format.md). [`Log`] is the seam a distributed backend will plug
//! into later; [`FileLog`] is the local-disk implementation with a single
//! group-committing writer thread.
//!
//! Invariants: per space, LSNs are dense from 1 and assigned in commit order; a
//! record is handed to the [`CommitSink`] (and so becomes visible) only after it is
//! durable, and its append completes only after the sink has seen it.

mod compact;
mod config;
mod file;
pub(crate) mod frame;
mod free_space;
mod recovery;
mod repair;
mod replicate;
mod scan;
mod seg_index;
mod segment;
mod writer;

pub use compact::{Removable, SegmentCompaction, SegmentUsage};
pub use config::LogConfig;
pub use file::FileLog;
pub use recovery::ResumeAt;
pub(crate) use repair::repair_log;
pub use repair::{LostRange, RepairReport, RepairedSegment};
pub use replicate::{Replicator, SharedCatalog};

use serde::{Deserialize, Serialize};
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use crate::error::{Error, Result};
use crate::types::{Lsn, SpaceNo};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After `fdatasync`: survives power loss. The default.
    #[default]
    Fsync,
    /// After `write` to the OS: survives a process crash, not a power loss.
    Buffered,
}

/// A record that has just become durable.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// Its space.
    pub space: SpaceNo,
    /// Its LSN.
    pub lsn: Lsn,
    /// The encoded record body.
    pub body: &'a [u8],
    /// The appender's routing hint (see [`Log::append_hinted`]); 0 for recovered records.
    pub hint: u8,
}

/// Receives records as they become durable (and, at open, as they are recovered).
pub trait CommitSink: Send + Sync {
    /// Called on the writer thread with one group commit, in LSN order per space,
    /// after the batch is durable and before any of its appends completes.
    fn committed(&self, batch: &[Committed<'_>]);

    /// Called once for every append that will never commit (refused, log poisoned,
    /// shutting down, space forgotten), with its body, so the caller can release
    /// what it reserved. May run on the appending thread or on the writer thread.
    fn not_committed(&self, _space: SpaceNo, _body: &[u8]) {}

    /// Called on the writer thread with frames another node wrote to the shared
    /// log (distributed mode), after they are in the local log: nothing was
    /// admitted for them here. By default the same as [`CommitSink::committed`].
    fn followed(&self, batch: &[Committed<'_>]) {
        self.committed(batch);
    }
}

/// Counters of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Appends submitted but not yet durable.
    pub pending_appends: u64,
    /// Bytes of those appends.
    pub pending_bytes: u64,
    /// Segment files on disk.
    pub segments: u64,
    /// Total bytes in segment files.
    pub bytes_on_disk: u64,
    /// Group commits done since open.
    pub group_commits: u64,
    /// Records committed since open.
    pub records_committed: u64,
    /// Free bytes on the log's volume when last sampled (`u64::MAX` if unknown).
    pub free_bytes: u64,
    /// At open: sealed segments read through their index (not scanned), and
    /// segments scanned whole.
    pub opened_by_index: u64,
    /// See `opened_by_index`.
    pub opened_by_scan: u64,
}

/// The log abstraction the engine writes to.
pub trait Log: Send + Sync {
    /// Starts accepting appends for `space` (LSNs continue after any recovered ones).
    fn register_space(&self, space: SpaceNo);
    /// Stops tracking `space` and reclaims segments that no live space needs.
    fn forget_space(&self, space: SpaceNo) -> Result<()>;
    /// Queues `body` for the next group commit.
    fn append(&self, space: SpaceNo, body: Vec<u8>) -> AppendTicket {
        self.append_hinted(space, body, 0)
    }
    /// Like [`Log::append`], and hands `hint` to the commit sink with the record. The
    /// hint is not stored (the engine passes the indexing lane through it).
    fn append_hinted(&self, space: SpaceNo, body: Vec<u8>, hint: u8) -> AppendTicket;
    /// Reads back the body of a committed record.
    fn read(&self, space: SpaceNo, lsn: Lsn) -> Result<Vec<u8>>;
    /// Highest committed LSN of `space`, `None` for an unknown space.
    fn last_lsn(&self, space: SpaceNo) -> Option<Lsn>;
    /// Current counters.
    fn stats(&self) -> LogStats;
    /// `Ok` while appends can still commit: not poisoned, not shut down.
    fn check_writable(&self) -> Result<()>;
    /// `Ok` while the log's volume has more free space than its reserve; else
    /// [`Error::StorageFull`]. Checked before an observation is admitted, so a
    /// refusal writes nothing and changes no session.
    fn check_space(&self) -> Result<()> {
        Ok(())
    }
    /// Commits everything queued, then stops the writer. Later appends fail.
    fn shutdown(&self);
}

/// Completion of one append: resolves to the record's LSN once it is durable.
/// Wait with [`AppendTicket::wait`] from a thread, or `.await` it.
#[must_use = "an append is only known durable once its ticket resolves"]
#[derive(Debug)]
pub struct AppendTicket(TicketInner);

#[derive(Debug)]
enum TicketInner {
    Pending(tokio::sync::oneshot::Receiver<Result<Lsn>>),
    Failed(Option<Error>),
}

impl AppendTicket {
    pub(crate) fn pending(rx: tokio::sync::oneshot::Receiver<Result<Lsn>>) -> Self {
        AppendTicket(TicketInner::Pending(rx))
    }

    pub(crate) fn failed(err: Error) -> Self {
        AppendTicket(TicketInner::Failed(Some(err)))
    }

    /// Blocks the calling thread until the append is durable (or failed).
    /// Do not call from inside an async runtime; `.await` the ticket there.
    pub fn wait(self) -> Result<Lsn> {
        match self.0 {
            TicketInner::Pending(rx) => rx.blocking_recv().unwrap_or(Err(Error::ShuttingDown)),
            TicketInner::Failed(e) => Err(e.unwrap_or(Error::ShuttingDown)),
        }
    }
}

impl IntoFuture for AppendTicket {
    type Output = Result<Lsn>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Lsn>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.0 {
                TicketInner::Pending(rx) => rx.await.unwrap_or(Err(Error::ShuttingDown)),
                TicketInner::Failed(e) => Err(e.unwrap_or(Error::ShuttingDown)),
            }
        })
    }
}
