//! [`LogConfig`]: the file log's settings, with their defaults and checks.

use serde::{Deserialize, Serialize};

use super::Durability;
use crate::error::{Error, Result};

/// Settings of the file log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// When an append counts as done. Default: `fsync`.
    pub durability: Durability,
    /// A segment is closed and a new one started past this size. Default 256 MiB; at most 2 GiB.
    pub segment_bytes: u64,
    /// Most bytes written by one group commit. Default 16 MiB.
    pub max_batch_bytes: usize,
    /// Under concurrent load, how long the writer may wait for more appends to join
    /// a group commit that is filling up more slowly than the previous one, in µs.
    /// Only used when the previous commit held 8 or more records. Default 200; 0 = off.
    pub group_commit_linger_us: u64,
    /// Observations are refused ([`Error::StorageFull`]) while the volume holding the
    /// log has less free space than this, so the log never runs into a full disk in
    /// the middle of a write. Default 64 MiB; 0 turns the check off.
    pub min_free_bytes: u64,
    /// Niceness (0..=19, Linux) of the writer thread, which also puts committed
    /// records into the fresh tier. Above recalls' 0, so their ranking wins the
    /// cores on a machine busy ingesting; below the index workers'. Default 5.
    pub writer_nice: i32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Fsync,
            segment_bytes: 256 << 20,
            max_batch_bytes: 16 << 20,
            group_commit_linger_us: 200,
            min_free_bytes: 64 << 20,
            writer_nice: 5,
        }
    }
}

impl LogConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(4096..=(2u64 << 30)).contains(&self.segment_bytes) {
            return Err(Error::invalid("log.segment_bytes must be in 4 KiB..=2 GiB"));
        }
        if self.max_batch_bytes < 4096 {
            return Err(Error::invalid("log.max_batch_bytes must be at least 4 KiB"));
        }
        if !(0..=19).contains(&self.writer_nice) {
            return Err(Error::invalid("log.writer_nice must be in 0..=19"));
        }
        Ok(())
    }
}
