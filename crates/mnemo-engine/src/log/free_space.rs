//! Free space on the log's volume, sampled at most every 50 ms: checked before an
//! observation is admitted, so the log never runs into a full disk mid-write.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::io::FileSystem;

/// Free space on the log's volume, sampled at most every [`FreeSpace::MAX_AGE`].
pub(super) struct FreeSpace {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch` of the last sample, plus one (0 = never).
    sampled_ms: AtomicU64,
    bytes: AtomicU64,
    /// Bytes the log wrote since the sample: taken off it, so that a fast writer
    /// cannot run past the reserve between two samples.
    written: AtomicU64,
}

impl FreeSpace {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

    pub(super) fn new() -> Self {
        FreeSpace {
            epoch: std::time::Instant::now(),
            sampled_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(u64::MAX),
            written: AtomicU64::new(0),
        }
    }

    /// Free bytes now (a sample at most `MAX_AGE` old); `u64::MAX` if the volume
    /// cannot tell. Concurrent callers may both sample: harmless.
    pub(super) fn get(&self, fs: &dyn FileSystem, dir: &Path) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.sampled_ms.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= Self::MAX_AGE.as_millis() as u64 {
            let free = fs.free_bytes(dir).unwrap_or(u64::MAX);
            self.bytes.store(free, Ordering::Relaxed);
            self.written.store(0, Ordering::Relaxed);
            self.sampled_ms.store(now, Ordering::Relaxed);
            // Our own sample, not what a slower concurrent sampler stored meanwhile.
            return free;
        }
        self.bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }

    /// The log wrote `n` bytes.
    pub(super) fn wrote(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }
}
