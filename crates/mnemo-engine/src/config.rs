//! Engine settings: one serde struct, every default documented, checked at open.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::log::LogConfig;

/// Settings of an [`crate::Engine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Where everything lives. Default `./mnemo-data`.
    pub data_dir: PathBuf,
    /// The log.
    pub log: LogConfig,
    /// Memory the fresh tier of one space may use for vectors awaiting indexing
    /// (rows = bytes / (4 × dim)). Default 256 MiB.
    pub fresh_tier_bytes: usize,
    /// Index worker threads. Default: number of cores.
    pub index_threads: usize,
    /// Records per index batch. Default 64.
    pub index_batch: usize,
    /// How often spaces whose graph moved are checkpointed, in seconds. Default 60.
    pub checkpoint_interval_s: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("mnemo-data"),
            log: LogConfig::default(),
            fresh_tier_bytes: 256 << 20,
            index_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            index_batch: 64,
            checkpoint_interval_s: 60,
        }
    }
}

impl EngineConfig {
    /// Defaults with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            ..Default::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.log.validate()?;
        if self.fresh_tier_bytes < 4096 {
            return Err(Error::invalid("fresh_tier_bytes must be at least 4 KiB"));
        }
        if !(1..=256).contains(&self.index_threads) {
            return Err(Error::invalid("index_threads must be in 1..=256"));
        }
        if !(1..=65536).contains(&self.index_batch) {
            return Err(Error::invalid("index_batch must be in 1..=65536"));
        }
        if self.checkpoint_interval_s == 0 {
            return Err(Error::invalid("checkpoint_interval_s must be at least 1"));
        }
        Ok(())
    }

    pub(crate) fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.checkpoint_interval_s)
    }

    /// Fresh-tier rows for a space of `dim` dimensions.
    pub(crate) fn fresh_rows(&self, dim: u32) -> usize {
        (self.fresh_tier_bytes / (4 * dim as usize)).max(16)
    }
}
