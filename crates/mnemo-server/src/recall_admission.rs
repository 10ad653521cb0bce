//! Admission control on the read path, as there is on the write path: a recall
//! (Recall, RecallOnce, a MemoryStream recall) takes a permit for as long as it is
//! in progress — waiting for its `min_lsn`, queued for or ranking on the recall
//! threads, or streaming its batches. Permits are bounded server-wide (the recall
//! queue), per connection and per API key; past a bound the recall is refused with
//! RESOURCE_EXHAUSTED and a retry-after from how long recalls take now, so that
//! one client parking recalls cannot stall everyone else's.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Status;

use crate::convert::status;

/// Bounds on recalls in progress.
#[derive(Debug, Clone, Copy)]
pub struct RecallLimits {
    /// Server-wide (the recall queue). Default 1,024.
    pub in_progress: usize,
    /// Per connection. Default 64.
    pub per_connection: usize,
    /// Per API key, over all its connections (with keys on). Default 256.
    pub per_key: usize,
}

impl Default for RecallLimits {
    fn default() -> Self {
        RecallLimits {
            in_progress: 1024,
            per_connection: 64,
            per_key: 256,
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_connection: HashMap<SocketAddr, usize>,
    by_key: HashMap<String, usize>,
    /// Mean time a recall holds its permit, µs (exponentially weighted).
    mean_us: f64,
}

/// See the module docs. Shared by every handler of a server.
pub struct RecallAdmission {
    limits: RecallLimits,
    /// Recall threads: how many recalls make progress at once.
    threads: usize,
    counts: Mutex<Counts>,
}

impl std::fmt::Debug for RecallAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecallAdmission")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A recall in progress; its slots return when it is dropped.
#[must_use = "a recall is admitted only while its permit lives"]
pub(crate) struct RecallPermit {
    admission: Arc<RecallAdmission>,
    connection: Option<SocketAddr>,
    key: Option<String>,
    since: Instant,
}

impl RecallAdmission {
    /// Admission with `limits`, for a server with `threads` recall threads.
    pub fn new(limits: RecallLimits, threads: usize) -> Arc<Self> {
        Arc::new(RecallAdmission {
            limits,
            threads: threads.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits one recall from `connection` with API key `key`, or refuses it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        connection: Option<SocketAddr>,
        key: Option<&str>,
    ) -> Result<RecallPermit, Status> {
        let mut c = self.counts.lock();
        let on_conn = connection.map_or(0, |a| c.by_connection.get(&a).copied().unwrap_or(0));
        let on_key = key.map_or(0, |k| c.by_key.get(k).copied().unwrap_or(0));
        let refused = if c.total >= self.limits.in_progress {
            Some(format!(
                "{} recalls in progress on this server (limit {})",
                c.total, self.limits.in_progress
            ))
        } else if on_conn >= self.limits.per_connection {
            Some(format!(
                "{on_conn} recalls in progress on this connection (limit {})",
                self.limits.per_connection
            ))
        } else if on_key >= self.limits.per_key {
            Some(format!(
                "{on_key} recalls in progress for this API key (limit {})",
                self.limits.per_key
            ))
        } else {
            None
        };
        if let Some(reason) = refused {
            // The queue ahead drains at about `threads` recalls per mean recall time.
            let ahead = (c.total / self.threads).max(1) as f64;
            let wait = Duration::from_micros((c.mean_us * ahead) as u64)
                .clamp(Duration::from_millis(10), Duration::from_secs(5));
            return Err(status(mnemo_engine::Error::Overloaded {
                reason,
                retry_after: wait,
            }));
        }
        c.total += 1;
        if let Some(a) = connection {
            *c.by_connection.entry(a).or_default() += 1;
        }
        if let Some(k) = key {
            *c.by_key.entry(k.to_string()).or_default() += 1;
        }
        Ok(RecallPermit {
            admission: Arc::clone(self),
            connection,
            key: key.map(str::to_string),
            since: Instant::now(),
        })
    }

    /// Recalls in progress now.
    pub fn in_progress(&self) -> usize {
        self.counts.lock().total
    }
}

impl Drop for RecallPermit {
    fn drop(&mut self) {
        let mut c = self.admission.counts.lock();
        c.total -= 1;
        let held = self.since.elapsed().as_micros() as f64;
        c.mean_us = if c.mean_us == 0.0 {
            held
        } else {
            0.9 * c.mean_us + 0.1 * held
        };
        if let Some(a) = self.connection
            && let Some(n) = c.by_connection.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                c.by_connection.remove(&a);
            }
        }
        if let Some(k) = &self.key
            && let Some(n) = c.by_key.get_mut(k)
        {
            *n -= 1;
            if *n == 0 {
                c.by_key.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn bounds_per_connection_key_and_server() {
        let a = RecallAdmission::new(
            RecallLimits {
                in_progress: 5,
                per_connection: 2,
                per_key: 3,
            },
            2,
        );
        let p1 = a.admit(addr(1), Some("k")).unwrap();
        let _p2 = a.admit(addr(1), Some("k")).unwrap();
        let full = a.admit(addr(1), Some("k")).err().unwrap();
        assert_eq!(full.code(), tonic::Code::ResourceExhausted);
        assert!(full.message().contains("connection"), "{}", full.message());
        assert!(full.metadata().get("grpc-retry-pushback-ms").is_some());
        let _p3 = a.admit(addr(2), Some("k")).unwrap();
        let key = a.admit(addr(3), Some("k")).err().unwrap();
        assert!(key.message().contains("API key"), "{}", key.message());
        let _p4 = a.admit(addr(3), None).unwrap();
        let _p5 = a.admit(addr(4), None).unwrap();
        let server = a.admit(addr(5), None).err().unwrap();
        assert!(server.message().contains("server"), "{}", server.message());
        drop(p1);
        assert!(a.admit(addr(5), None).is_ok(), "a slot came back");
        assert_eq!(a.in_progress(), 4);
    }
}
