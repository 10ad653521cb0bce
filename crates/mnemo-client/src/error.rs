//! The client's error type: what went wrong, and whether a retry can help.

use std::time::Duration;

use crate::pb;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a [`crate::Client`] call or a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client settings are wrong (address, TLS files, API key); nothing was sent.
    #[error("invalid client settings: {0}")]
    Config(String),
    /// The server could not be reached.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What the transport said.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered a call with an error status. RESOURCE_EXHAUSTED and
    /// UNAVAILABLE may succeed later ([`Error::retry_after`]).
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    /// The server refused one observation for good (INVALID, say): a retry would
    /// be refused again.
    #[error("observation {sequence} refused ({code}): {reason}")]
    Rejected {
        /// Its session sequence number.
        sequence: u64,
        /// The in-band reject code (`pb::RejectCode` name).
        code: &'static str,
        /// The server's explanation.
        reason: String,
    },
    /// The server broke the protocol (a stream without InitAck, say).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A session kept failing: this many reconnects in a row made no progress.
    #[error("gave up after {attempts} reconnects without progress: {last}")]
    GaveUp {
        /// Consecutive reconnects tried.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
    /// The session's [`crate::Feed`] failed (a malformed input line, say).
    #[error("reading observations: {0}")]
    Feed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Status(Box::new(s))
    }
}

impl Error {
    /// The gRPC status, when the server answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(s) => Some(s),
            _ => None,
        }
    }

    /// The node the server said to send writes to (distributed mode: the owner of
    /// the space's partition), if it named one.
    pub fn owner(&self) -> Option<String> {
        owner_of(self.status()?)
    }

    /// How long the server asked to wait before retrying (RESOURCE_EXHAUSTED with
    /// `grpc-retry-pushback-ms`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        let st = self.status()?;
        let ms = st.metadata().get("grpc-retry-pushback-ms")?.to_str().ok()?;
        ms.parse().ok().map(Duration::from_millis)
    }
}

/// The owner named by an UNAVAILABLE refusal's metadata.
pub(crate) fn owner_of(st: &tonic::Status) -> Option<String> {
    if st.code() != tonic::Code::Unavailable {
        return None;
    }
    let v = st.metadata().get(mnemo_proto::OWNER_METADATA)?;
    v.to_str().ok().map(str::to_owned)
}

/// The name of an in-band reject code, for messages.
pub(crate) fn reject_name(code: i32) -> &'static str {
    pb::RejectCode::try_from(code)
        .unwrap_or(pb::RejectCode::Unspecified)
        .as_str_name()
}
