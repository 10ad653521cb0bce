//! The space registry: live spaces by number and name, and the shared state of the
//! ingestion pipeline (admission budget, ready ring, counters, pressure state). It
//! is also the log's commit sink: each committed record goes into its space's fresh
//! tier and index queue before the space's commit watermark moves past it.

use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::index::gate::RecallGate;
use crate::ingest::pressure::PressureState;
use crate::ingest::queue::{Budget, Item, ReadyRing};
use crate::ingest::stats::{Counters, names};
use crate::log::{CommitSink, Committed};
use crate::record::{self, ForgetRecord, ObservationRecord};
use crate::space::Space;
use crate::types::{Lane, Lsn, SpaceNo};

/// Live spaces, by name and by number, and the shared state of the ingestion
/// pipeline (admission budget, ready ring, counters). Also the log's commit sink: it
/// puts each committed record into its space's fresh tier and index queue.
pub(super) struct Registry {
    pub(super) by_no: RwLock<HashMap<SpaceNo, Arc<Space>>>,
    /// Index workers sleep here when the ready ring is empty.
    pub(super) work: Mutex<()>,
    pub(super) work_cv: Condvar,
    pub(super) ring: ReadyRing,
    pub(super) budget: Budget,
    pub(super) counters: Counters,
    /// The monitor's latest state and `retry_after` (µs), for the admission hot path.
    pub(super) state: AtomicU8,
    pub(super) retry_after_us: AtomicU64,
    /// Recalls in progress; index workers yield to them.
    pub(super) recalls: Arc<RecallGate>,
    /// Records indexed at once when a followed record overflows the fresh tier.
    index_batch: usize,
    /// For error messages about followed records.
    data_dir: std::path::PathBuf,
}

impl Registry {
    pub(super) fn new(config: &EngineConfig) -> Self {
        Registry {
            by_no: RwLock::default(),
            work: Mutex::new(()),
            work_cv: Condvar::new(),
            ring: ReadyRing::default(),
            budget: Budget::new(config.ingest.queue_max_items, config.ingest.queue_max_bytes),
            counters: Counters::default(),
            state: AtomicU8::new(PressureState::Normal as u8),
            retry_after_us: AtomicU64::new(10_000),
            recalls: Arc::default(),
            index_batch: config.index_batch,
            data_dir: config.data_dir.clone(),
        }
    }

    pub(super) fn list(&self) -> Vec<Arc<Space>> {
        let mut v: Vec<_> = self.by_no.read().values().cloned().collect();
        v.sort_by_key(|s| s.info.no);
        v
    }

    pub(super) fn get(&self, no: SpaceNo) -> Option<Arc<Space>> {
        self.by_no.read().get(&no).cloned()
    }

    pub(super) fn by_name(&self, name: &str) -> Result<Arc<Space>> {
        self.by_no
            .read()
            .values()
            .find(|s| s.info.name == name)
            .cloned()
            .ok_or_else(|| Error::SpaceNotFound(name.to_string()))
    }

    pub(super) fn state(&self) -> PressureState {
        match self.state.load(Ordering::Acquire) {
            0 => PressureState::Normal,
            1 => PressureState::Warning,
            2 => PressureState::Critical,
            _ => PressureState::Overloaded,
        }
    }

    pub(super) fn retry_after(&self) -> Duration {
        Duration::from_micros(self.retry_after_us.load(Ordering::Acquire))
    }

    /// Puts `space` in the ready ring if it is not there yet, and wakes a worker.
    pub(super) fn schedule(&self, space: &Space) {
        if space.queue.mark_scheduled() {
            self.ring.push(space.info.no);
            let _g = self.work.lock();
            self.work_cv.notify_one();
        }
    }
}

impl CommitSink for Registry {
    fn committed(&self, batch: &[Committed<'_>]) {
        let spaces = self.by_no.read();
        let mut touched: HashMap<SpaceNo, Lsn> = HashMap::new();
        let mut accepted = 0u64;
        for c in batch {
            let is_forget = record::kind(c.body) == record::Kind::Forget;
            let Some(space) = spaces.get(&c.space) else {
                // Dropped while its append was in flight: retire its admission.
                if !is_forget {
                    self.budget.release(1, c.body.len());
                }
                continue;
            };
            if is_forget {
                // A forget takes no admission; its memories die at its LSN.
                match ForgetRecord::decode(c.body) {
                    Ok(rec) => {
                        space.apply_forget(c.lsn, &rec);
                    }
                    Err(e) => {
                        tracing::error!(space = space.info.name, lsn = c.lsn, error = %e, "undecodable forget record");
                        space.attrs.write().push_control(c.lsn, i64::MIN);
                        space.fresh.skip(c.lsn);
                    }
                }
                touched.insert(c.space, c.lsn);
                continue;
            }
            match ObservationRecord::decode(c.body) {
                Ok(rec) => {
                    space.apply(c.lsn, &rec, false);
                    space.queue.push(
                        Lane::from_u8(c.hint),
                        Item {
                            lsn: c.lsn,
                            bytes: c.body.len() as u32,
                            recorded_at_us: rec.recorded_at_us,
                            retried: false,
                        },
                    );
                }
                // Cannot happen (the engine encoded it); if it did, the record stays in
                // the log and readable, but the watermark still moves so nothing stalls.
                Err(e) => {
                    space.fresh.release(1);
                    self.budget.release(1, c.body.len());
                    tracing::error!(space = space.info.name, lsn = c.lsn, error = %e, "undecodable committed record")
                }
            }
            touched.insert(c.space, c.lsn);
            accepted += 1;
        }
        self.counters
            .accepted
            .fetch_add(accepted, Ordering::Relaxed);
        metrics::counter!(names::ACCEPTED).increment(accepted);
        let touched: Vec<(Arc<Space>, Lsn)> = touched
            .into_iter()
            .filter_map(|(no, lsn)| spaces.get(&no).map(|s| (Arc::clone(s), lsn)))
            .collect();
        drop(spaces);
        for (space, lsn) in touched {
            space.publish(lsn);
            self.schedule(&space);
        }
    }

    /// Records another node wrote: taken in as at recovery (nothing was admitted
    /// for them here; a full fresh tier is drained inline, which paces the follower).
    fn followed(&self, batch: &[Committed<'_>]) {
        let mut touched: HashMap<SpaceNo, (Arc<Space>, Lsn)> = HashMap::new();
        for c in batch {
            let Some(space) = self.get(c.space) else {
                continue; // dropped meanwhile
            };
            if let Err(e) =
                super::open::recover_record(self, &space, *c, self.index_batch, &self.data_dir)
            {
                tracing::error!(space = space.info.name, lsn = c.lsn, error = %e, "a followed record could not be applied");
            }
            touched.insert(c.space, (space, c.lsn));
        }
        for (space, lsn) in touched.into_values() {
            space.publish(lsn);
            self.schedule(&space);
        }
    }

    fn not_committed(&self, space: SpaceNo, body: &[u8]) {
        if record::kind(body) == record::Kind::Forget {
            return; // a forget holds no admission
        }
        if let Some(space) = self.get(space) {
            space.fresh.release(1);
            // A client-chosen id and a superseded memory reserved at admission are
            // free again.
            if let Ok(rec) = ObservationRecord::decode_attrs(body) {
                let mut attrs = space.attrs.write();
                attrs.release_id(rec.id);
                if let Some(s) = rec.supersedes {
                    attrs.release_supersede(&s.id);
                }
            }
            space.committed.wake(); // duplicates waiting for this record find out
        }
        self.budget.release(1, body.len());
    }
}
