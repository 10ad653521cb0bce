//! Errors of starting and running the distributed mode.

/// What went wrong joining or running the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// `[cluster]` is not valid.
    #[error("configuration: {0}")]
    Config(String),
    /// The NATS server could not be reached or refused a setup call.
    #[error("NATS: {0}")]
    Nats(String),
    /// The cluster was set up differently (another partition count, say).
    #[error("the cluster disagrees: {0}")]
    Mismatch(String),
    /// The engine failed to open or refused a call.
    #[error(transparent)]
    Engine(#[from] mnemo_engine::Error),
}

/// A NATS error as a [`ClusterError`].
pub(crate) fn nats(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(format!("{what}: {e}"))
}
