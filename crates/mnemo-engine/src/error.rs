//! The engine's error type. Variants say what the caller should do about them:
//! fix the request (`InvalidArgument`, `NotFound`, `AlreadyExists`), wait and retry
//! (`Overloaded`, `Timeout`), or stop and alert an operator (`Corruption`, `Poisoned`, `Io`).

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed; nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The named memory space does not exist (or was dropped).
    #[error("memory space '{0}' not found")]
    SpaceNotFound(String),
    /// A memory space with this name exists already.
    #[error("memory space '{0}' already exists")]
    SpaceExists(String),
    /// A memory with this id exists in the space already (ids are unique per
    /// space); nothing was written.
    #[error("a memory with id {id} exists in space '{space}' already")]
    MemoryExists {
        /// The space.
        space: String,
        /// The id.
        id: uuid::Uuid,
        /// The existing memory's LSN (none while it is still being written).
        lsn: Option<u64>,
    },
    /// An observation supersedes a memory that is not live: no memory has the id,
    /// it was forgotten, superseded or expired, or another observation in flight
    /// supersedes it already. Nothing was written.
    #[error("cannot supersede memory {id} in space '{space}': {why}")]
    NotLive {
        /// The space.
        space: String,
        /// The id named.
        id: uuid::Uuid,
        /// Which of the reasons.
        why: &'static str,
    },
    /// A snapshot older than what the space still keeps: memories forgotten after
    /// it have been purged, so it can no longer be read exactly.
    #[error(
        "snapshot LSN {requested} of space '{space}' is too old: memories forgotten after it \
         were purged; the oldest snapshot readable is {oldest}"
    )]
    SnapshotTooOld {
        /// The space.
        space: String,
        /// The snapshot asked for.
        requested: u64,
        /// The oldest snapshot still readable.
        oldest: u64,
    },
    /// The memory at this LSN was forgotten, superseded or expired.
    #[error("LSN {lsn} of space '{space}' was forgotten, superseded or expired")]
    Forgotten {
        /// The space.
        space: String,
        /// The LSN.
        lsn: u64,
    },
    /// The space cannot take more observations right now; retry after the hint.
    #[error("overloaded: {reason}; retry after {retry_after:?}")]
    Overloaded {
        /// What is full.
        reason: String,
        /// How long the caller should wait before retrying.
        retry_after: Duration,
    },
    /// A read-your-writes recall waited for `min_lsn` longer than allowed.
    #[error(
        "timed out after {waited:?} waiting for LSN {wanted} to commit (committed: {committed})"
    )]
    Timeout {
        /// The LSN the caller asked to see.
        wanted: u64,
        /// The highest committed LSN when the wait ended.
        committed: u64,
        /// How long the call waited.
        waited: Duration,
    },
    /// An explicit snapshot LSN lies beyond what has been committed.
    #[error("snapshot LSN {requested} is beyond the committed LSN {committed}")]
    SnapshotInFuture {
        /// The requested snapshot.
        requested: u64,
        /// The committed watermark.
        committed: u64,
    },
    /// On-disk data failed a check. The engine refuses to serve wrong data.
    #[error("corruption in {path} at offset {offset}: {detail}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What check failed.
        detail: String,
    },
    /// The record was lost to damage in the log; `mnemo repair` left a placeholder
    /// in its place (its LSN stays taken).
    #[error(
        "LSN {lsn} of space '{space}' was lost to damage in the log (mnemo repair kept a placeholder)"
    )]
    RecordLost {
        /// The space.
        space: String,
        /// The lost record's LSN.
        lsn: u64,
    },
    /// A write or fsync of the log failed earlier; no further writes are accepted
    /// because the state of the file is unknown (fail closed).
    #[error("log is poisoned after an earlier I/O failure: {0}")]
    Poisoned(String),
    /// The volume holding the log has less free space than the configured reserve:
    /// observations are refused (nothing written) until space is freed; recalls go on.
    #[error(
        "the volume holding {path} has {free_bytes} bytes free, below the reserve of {reserve_bytes}: \
         observations are refused until space is freed (recalls go on)"
    )]
    StorageFull {
        /// The log directory.
        path: PathBuf,
        /// Free bytes on its volume when last sampled.
        free_bytes: u64,
        /// `log.min_free_bytes`.
        reserve_bytes: u64,
    },
    /// A session observation skipped ahead: nothing was written; send `expected` next.
    #[error("sequence gap in session '{session}': got {got}, expected {expected}")]
    SequenceGap {
        /// The session.
        session: String,
        /// The sequence number that was sent.
        got: u64,
        /// The sequence number the engine expects next.
        expected: u64,
    },
    /// The session already has its whole credit window in flight; wait for acks.
    #[error("session '{session}' has {in_flight} observations in flight, its window is {window}")]
    WindowExceeded {
        /// The session.
        session: String,
        /// Observations not yet acked.
        in_flight: u32,
        /// The current credit window.
        window: u32,
    },
    /// The session id is not known (never opened here, or expired and never written).
    #[error("session '{0}' not found")]
    SessionNotFound(String),
    /// The session handle is no longer valid: it was closed, expired after being
    /// idle, or taken over by a newer open of the same session id.
    #[error("session '{session}' is no longer open here: {why}")]
    SessionClosed {
        /// The session.
        session: String,
        /// Closed, expired or superseded.
        why: &'static str,
    },
    /// Too many sessions are open; retry later.
    #[error("too many open sessions ({open}, limit {limit}); retry after {retry_after:?}")]
    TooManySessions {
        /// Sessions open now.
        open: usize,
        /// The configured limit.
        limit: usize,
        /// When a retry may succeed (idle sessions expire).
        retry_after: Duration,
    },
    /// The engine is shutting down or closed.
    #[error("engine is shutting down")]
    ShuttingDown,
    /// An operating-system I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The vector index library reported an error.
    #[error("vector index error: {0}")]
    Index(String),
    /// Distributed mode: another node writes this space's partition (or none does
    /// right now). Nothing was written; send writes to `owner` when it is known.
    #[error("{}", not_owner_message(*.partition, .owner.as_deref()))]
    NotOwner {
        /// The space's partition.
        partition: u32,
        /// The gRPC address of the node that holds the partition's lease, if any.
        owner: Option<String>,
    },
    /// Distributed mode: the shared log or catalog could not be reached, or an
    /// append's outcome could not be settled. Nothing is known written; retry.
    #[error("the cluster's shared log is unavailable: {0}")]
    ClusterUnavailable(String),
    /// Distributed mode: a followed frame skips LSNs this node does not have (its
    /// local copy is behind the shared log's retained history).
    #[error("space #{space}: followed record LSN {got} does not follow the local LSN {have}")]
    FollowGap {
        /// The space number.
        space: u32,
        /// The highest LSN held locally.
        have: u64,
        /// The LSN that arrived.
        got: u64,
    },
}

fn not_owner_message(partition: u32, owner: Option<&str>) -> String {
    match owner {
        Some(addr) => {
            format!("this node does not write partition {partition}: its owner is {addr}")
        }
        None => format!("no node holds partition {partition}'s lease right now; retry shortly"),
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// Attaches a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
