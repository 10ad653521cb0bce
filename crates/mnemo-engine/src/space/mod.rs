//! A memory space: its fresh tier, its HNSW graph, its commit watermark and the
//! session high-water marks recovered from (and kept in step with) the log.
//!
//! Invariant: `committed` only moves forward, and only after every record up to it
//! is in the fresh tier or the graph. Lock order: `sessions` is never held with any
//! other lock of the space.

pub(crate) mod attrs;
pub(crate) mod catalog;
pub(crate) mod checkpoint;
pub(crate) mod deaths;
mod pins;
pub(crate) mod state;

pub use pins::SnapshotPin;

use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::index::fresh::FreshTier;
use crate::index::gate::RecallGate;
use crate::index::hnsw::Hnsw;
use crate::index::warm::WarmTier;
use crate::ingest::queue::SpaceQueue;
use crate::io::FileSystem;
use crate::log::Log;
use crate::lsn_vec::LsnVec;
use crate::record::{self, ForgetRecord, ObservationRecord};
use crate::types::{Filter, Lsn, Memory, SpaceInfo, SpaceStats};
use attrs::Attrs;
use roaring::RoaringTreemap;

/// The LSN a session sequence maps to when its record was lost to log damage.
pub(crate) const LOST: Lsn = 0;

/// The LSN a session sequence maps to once its memory was forgotten and its
/// mark cut (the log no longer has it; a duplicate is acked without LSN or id).
pub(crate) const COMPACTED: Lsn = Lsn::MAX;

/// A waitable LSN that only grows.
pub(crate) struct Watermark {
    value: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
    /// Wakes async waiters (see [`Watermark::changed`]).
    notify: tokio::sync::Notify,
}

impl Watermark {
    fn new(v: Lsn) -> Self {
        Watermark {
            value: AtomicU64::new(v),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Resolves at the next advance (create it before checking the value).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Wakes every waiter without moving (e.g. a session failed).
    pub(crate) fn wake(&self) {
        {
            let _g = self.lock.lock();
            self.cv.notify_all();
        }
        self.notify.notify_waiters();
    }

    pub(crate) fn get(&self) -> Lsn {
        self.value.load(Ordering::Acquire)
    }

    pub(crate) fn advance(&self, to: Lsn) {
        if self.value.fetch_max(to, Ordering::AcqRel) < to {
            self.wake();
        }
    }

    /// Waits until the value reaches `want`; returns the value seen last.
    pub(crate) fn wait_for(&self, want: Lsn, timeout: Duration) -> std::result::Result<Lsn, Lsn> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock.lock();
        loop {
            let v = self.get();
            if v >= want {
                return Ok(v);
            }
            if self.cv.wait_until(&mut g, deadline).timed_out() {
                let v = self.get();
                return if v >= want { Ok(v) } else { Err(v) };
            }
        }
    }
}

/// See the module docs.
pub(crate) struct Space {
    pub(crate) info: SpaceInfo,
    pub(crate) dir: PathBuf,
    pub(crate) fresh: FreshTier,
    /// Rows that left the fresh tier before the graph could take them.
    pub(crate) warm: WarmTier,
    pub(crate) hnsw: Hnsw,
    /// Committed records waiting for the index workers, by lane.
    pub(crate) queue: SpaceQueue,
    /// Highest LSN that is durable and visible.
    pub(crate) committed: Watermark,
    /// Highest LSN such that everything up to it is in the graph.
    pub(crate) indexed: Watermark,
    /// Session id → LSN of each of its sequence numbers ([`LOST`] for a sequence
    /// lost to log damage), from the oldest whose record the log still needs.
    sessions: Mutex<HashMap<String, LsnVec<Lsn>>>,
    /// LSNs lost to log damage (placeholders written by `mnemo repair`).
    lost: RwLock<BTreeSet<Lsn>>,
    /// Posting lists, columns and ids of every memory (filters, get by id).
    pub(crate) attrs: RwLock<Attrs>,
    pub(crate) checkpoint_lsn: AtomicU64,
    pub(crate) checkpoint_lock: Mutex<()>,
    /// Where checkpoints are written.
    fs: Arc<dyn FileSystem>,
    pub(crate) dropped: AtomicBool,
    /// Recalls in progress, engine-wide (index workers yield to them).
    pub(crate) recalls: Arc<RecallGate>,
    /// Snapshots being read (a purge stays below them).
    pins: pins::Pins,
    /// One forget (or expiry sweep) at a time: each resolves its memories at the
    /// latest snapshot, and the next must see the previous one's deaths.
    pub(crate) forget_lock: Mutex<()>,
    /// The last forget record applied: its LSN and how many memories it killed
    /// (forgets are one at a time, so its writer finds its own count here).
    last_forget: Mutex<Option<(Lsn, u64)>>,
    /// What the last saved (or loaded) state lets compaction remove.
    pub(crate) compactable: Mutex<state::Compactable>,
}

impl Space {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        info: SpaceInfo,
        dir: PathBuf,
        hnsw: Hnsw,
        checkpoint_lsn: Lsn,
        (fresh_capacity, warm_capacity): (usize, usize),
        recalls: Arc<RecallGate>,
    ) -> Self {
        let fresh = FreshTier::new(
            info.config.dim as usize,
            info.config.metric,
            info.config.index.precision,
            checkpoint_lsn + 1,
            fresh_capacity,
        );
        let warm = WarmTier::new(
            info.config.dim as usize,
            info.config.metric,
            warm_capacity,
            u64::from(info.no.0),
        );
        Space {
            info,
            dir,
            fresh,
            warm,
            hnsw,
            queue: SpaceQueue::default(),
            committed: Watermark::new(checkpoint_lsn),
            indexed: Watermark::new(checkpoint_lsn),
            sessions: Mutex::new(HashMap::new()),
            lost: RwLock::new(BTreeSet::new()),
            attrs: RwLock::new(Attrs::default()),
            checkpoint_lsn: AtomicU64::new(checkpoint_lsn),
            checkpoint_lock: Mutex::new(()),
            fs,
            dropped: AtomicBool::new(false),
            recalls,
            pins: pins::Pins::default(),
            forget_lock: Mutex::new(()),
            last_forget: Mutex::new(None),
            compactable: Mutex::new(state::Compactable::default()),
        }
    }

    /// Takes in one committed (or recovered) record; returns true if it still has to
    /// be indexed. Does not publish it: call [`Space::publish`] once the whole batch
    /// is applied.
    pub(crate) fn apply(&self, lsn: Lsn, rec: &ObservationRecord, recovering: bool) -> bool {
        self.track_session(&rec.session_id, rec.session_seq, lsn);
        self.attrs.write().push(lsn, Some(&rec.attrs()));
        if self.in_checkpoint(lsn) {
            return false; // in the loaded checkpoint already
        }
        let in_graph = recovering && self.hnsw.contains(lsn);
        self.fresh.push(lsn, &rec.embedding, in_graph, !recovering);
        !in_graph
    }

    /// Records that `seq` of `session` committed at `lsn` (no-op without a session).
    pub(crate) fn track_session(&self, session: &str, seq: u64, lsn: Lsn) {
        if session.is_empty() || seq == 0 {
            return;
        }
        let mut sessions = self.sessions.lock();
        let seqs = match sessions.get_mut(session) {
            Some(seqs) => seqs,
            None => sessions.entry(session.to_owned()).or_default(),
        };
        let next = seqs.end() + 1;
        if seq < next && seqs.get(seq) == Some(&lsn) {
            return; // replayed after a checkpoint of the state that has it
        }
        if seq > next {
            // Sequences lost to log damage (see `mnemo repair`): their slots are kept
            // as LOST, so the session resumes after its highest surviving sequence.
            tracing::warn!(
                session,
                lost_from = next,
                lost_to = seq - 1,
                "session sequences lost to log damage"
            );
            seqs.fill_to(seq, LOST);
        }
        if seq == seqs.end() + 1 {
            seqs.push(lsn);
        } else {
            tracing::warn!(session, seq, "out-of-order session sequence not tracked");
        }
    }

    /// Records that `lsn` is a lost-record placeholder: recalls never return it
    /// (an older checkpoint's graph may still hold it), and the fresh tier moves
    /// past it.
    pub(crate) fn mark_lost(&self, lsn: Lsn) {
        self.lost.write().insert(lsn);
        self.attrs.write().push(lsn, None);
        if !self.in_checkpoint(lsn) {
            self.fresh.skip(lsn);
        }
    }

    /// Takes in a committed (or recovered) forget record at `lsn`: its memories
    /// die there. Returns how many were alive until then.
    pub(crate) fn apply_forget(&self, lsn: Lsn, rec: &ForgetRecord) -> u64 {
        let killed = {
            let mut attrs = self.attrs.write();
            attrs.push_control(lsn, rec.recorded_at_us);
            rec.lsns
                .iter()
                .filter(|&l| l < lsn && attrs.kill(l, lsn))
                .count() as u64
        };
        if !self.in_checkpoint(lsn) {
            self.fresh.skip(lsn);
            // Nothing to index: the graph's watermark may pass it at once.
            self.refresh_indexed();
        }
        *self.last_forget.lock() = Some((lsn, killed));
        killed
    }

    /// How many memories the forget record at `lsn` killed, if it was the last one.
    pub(crate) fn forget_count(&self, lsn: Lsn) -> Option<u64> {
        self.last_forget
            .lock()
            .filter(|(at, _)| *at == lsn)
            .map(|(_, n)| n)
    }

    /// True if memory `lsn` is not seen at `snapshot`: lost to damage, dead at it
    /// (forgotten, superseded) or expired by its commit time. For recalls' checks
    /// of single candidates; `checks` says whether any can be hidden at all.
    pub(crate) fn hidden(&self, lsn: Lsn, snapshot: Lsn, checks: HiddenChecks) -> bool {
        (checks.lost && self.is_lost(lsn))
            || (checks.dead && self.attrs.read().hidden(lsn, snapshot))
    }

    /// True if `lsn` is a memory seen at `snapshot` (not a forget record, not lost,
    /// not dead or expired at it).
    pub(crate) fn seen(&self, lsn: Lsn, snapshot: Lsn) -> bool {
        if lsn == 0 || lsn > snapshot || self.is_lost(lsn) {
            return false;
        }
        let attrs = self.attrs.read();
        !attrs.is_control(lsn) && !attrs.hidden(lsn, snapshot)
    }

    /// Which of [`Space::hidden`]'s checks can find anything now.
    pub(crate) fn hidden_checks(&self) -> HiddenChecks {
        HiddenChecks {
            lost: self.any_lost(),
            dead: self.attrs.read().any_hidden(),
        }
    }

    /// Reads only the embedding of record `lsn` (for an exact re-score).
    pub(crate) fn read_embedding(&self, log: &dyn Log, lsn: Lsn) -> Result<Vec<f32>> {
        let body = self.read_body(log, lsn)?;
        ObservationRecord::decode_embedding(&body).map_err(|e| self.undecodable(lsn, &e))
    }

    /// The body of record `lsn`; a lost-record placeholder is [`Error::RecordLost`].
    fn read_body(&self, log: &dyn Log, lsn: Lsn) -> Result<Vec<u8>> {
        if self.is_lost(lsn) {
            return Err(Error::RecordLost {
                space: self.info.name.clone(),
                lsn,
            });
        }
        let body = log.read(self.info.no, lsn).map_err(|e| match e {
            Error::Forgotten { lsn, .. } => Error::Forgotten {
                space: self.info.name.clone(),
                lsn,
            },
            e => e,
        })?;
        match record::kind(&body) {
            record::Kind::Lost => Err(Error::RecordLost {
                space: self.info.name.clone(),
                lsn,
            }),
            record::Kind::Forget => Err(Error::invalid(format!(
                "LSN {lsn} of space '{}' is a forget record, not a memory",
                self.info.name
            ))),
            _ => Ok(body),
        }
    }

    fn undecodable(&self, lsn: Lsn, e: &record::DecodeError) -> Error {
        Error::Corruption {
            path: "log".into(),
            offset: 0,
            detail: format!("space {} LSN {lsn}: {e}", self.info.name),
        }
    }

    /// Every LSN up to `snapshot` that matches `filter` (records lost to log damage
    /// excluded).
    pub(crate) fn select(&self, filter: &Filter, snapshot: Lsn) -> RoaringTreemap {
        let lost = self.lost.read();
        self.attrs.read().select(filter, snapshot, &lost)
    }

    /// When the snapshot `lsn` committed: the latest server time a record up to
    /// it was recorded at (µs), if there is one.
    pub(crate) fn commit_time(&self, lsn: Lsn) -> Option<i64> {
        self.attrs.read().commit_time(lsn)
    }

    /// True if any record of this space was lost to log damage.
    pub(crate) fn any_lost(&self) -> bool {
        !self.lost.read().is_empty()
    }

    /// True if `lsn` was lost to log damage.
    pub(crate) fn is_lost(&self, lsn: Lsn) -> bool {
        let lost = self.lost.read();
        !lost.is_empty() && lost.contains(&lsn)
    }

    /// True if the loaded checkpoint already holds `lsn` in the graph.
    pub(crate) fn in_checkpoint(&self, lsn: Lsn) -> bool {
        lsn <= self.checkpoint_lsn.load(Ordering::Acquire)
    }

    /// Makes everything up to `lsn` visible.
    pub(crate) fn publish(&self, lsn: Lsn) {
        self.committed.advance(lsn);
    }

    /// Re-computes the indexed watermark after workers inserted records.
    pub(crate) fn refresh_indexed(&self) {
        self.indexed.advance(self.graph_watermark());
    }

    /// Highest LSN such that every record up to it is in the graph: below what the
    /// fresh tier and the warm tier still hold for it.
    pub(crate) fn graph_watermark(&self) -> Lsn {
        // The fresh tier first: a row enters the warm tier before it leaves the
        // fresh one, so a row the fresh tier no longer counts is in the warm tier
        // (or the graph) when the warm tier is read.
        let fresh = self.fresh.indexed_watermark();
        let warm = self.warm.lowest_pending();
        warm.map_or(fresh, |low| fresh.min(low - 1))
    }

    /// Last sequence number of `session` and its LSN.
    pub(crate) fn session_high_water(&self, session: &str) -> Option<(u64, Lsn)> {
        let sessions = self.sessions.lock();
        let seqs = sessions.get(session)?;
        seqs.last().map(|lsn| (seqs.end(), *lsn))
    }

    /// LSN of `seq` in `session`, if it was committed.
    pub(crate) fn session_lsn(&self, session: &str, seq: u64) -> Option<Lsn> {
        let sessions = self.sessions.lock();
        let seqs = sessions.get(session)?;
        if seq == 0 {
            return None;
        }
        if seq < seqs.first() {
            return Some(COMPACTED);
        }
        seqs.get(seq).copied()
    }

    /// Saves a checkpoint (the graph and the state) if the graph moved past the
    /// last one, or with `force` anyway (forgets changed the state).
    pub(crate) fn checkpoint(&self, force: bool) -> Result<Lsn> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::SpaceNotFound(self.info.name.clone()));
        }
        let lsn = self.graph_watermark();
        let last = self.checkpoint_lsn.load(Ordering::Acquire);
        if lsn <= last && !force {
            return Ok(last);
        }
        let lsn = lsn.max(last);
        // The state first: it is at or past `lsn` (replay from `lsn` is idempotent).
        let (state, compactable) = self.encode_state();
        checkpoint::save(self.fs.as_ref(), &self.dir, &self.hnsw, lsn, &state)?;
        self.checkpoint_lsn.store(lsn, Ordering::Release);
        *self.compactable.lock() = compactable;
        Ok(lsn)
    }

    pub(crate) fn stats(&self) -> SpaceStats {
        // One read guard: a second taken while a writer waits would deadlock.
        let committed = self.committed.get();
        let (warm_entered, warm_moved) = self.warm.flow();
        let (attrs_bytes, unpurged, oldest_snapshot_lsn, memories) = {
            let attrs = self.attrs.read();
            (
                attrs.memory_bytes() as u64,
                attrs.deaths.unpurged_count() as u64,
                attrs.deaths.purged_upto(),
                attrs.memories_at(committed),
            )
        };
        SpaceStats {
            committed_lsn: self.committed.get(),
            indexed_lsn: self.graph_watermark(),
            indexed_count: self.hnsw.len() as u64,
            fresh_count: self.fresh.len() as u64,
            warm_count: self.warm.len() as u64,
            warm_entered,
            warm_moved,
            checkpoint_lsn: self.checkpoint_lsn.load(Ordering::Acquire),
            attrs_bytes,
            live_bytes: 0,
            dead_bytes: 0,
            unpurged,
            oldest_snapshot_lsn,
            memories: memories.saturating_sub(self.lost.read().len() as u64),
        }
    }

    /// Reads the record `lsn` of this space back from the log: the log is the record
    /// store (recall, sessions, get and export all read memories through here).
    pub(crate) fn read_memory(&self, log: &dyn Log, lsn: Lsn) -> Result<Memory> {
        let body = self.read_body(log, lsn)?;
        let rec = ObservationRecord::decode(&body).map_err(|e| self.undecodable(lsn, &e))?;
        Ok(Memory {
            id: rec.id,
            lsn,
            score: 0.0,
            confidence: rec.confidence,
            content: rec.content,
            tags: rec.tags,
            occurred_at_us: rec.occurred_at_us,
            recorded_at_us: rec.recorded_at_us,
            session_id: rec.session_id,
            session_seq: rec.session_seq,
            embedding: rec.embedding,
            expires_at_us: rec.expires_at_us,
            supersedes: rec.supersedes.map(|s| s.id),
        })
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            Err(Error::SpaceNotFound(self.info.name.clone()))
        } else {
            Ok(())
        }
    }
}

/// Which per-candidate checks a recall needs (see [`Space::hidden`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HiddenChecks {
    lost: bool,
    dead: bool,
}

impl HiddenChecks {
    /// True if no check is needed.
    pub(crate) fn none(self) -> bool {
        !self.lost && !self.dead
    }
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space")
            .field("name", &self.info.name)
            .finish_non_exhaustive()
    }
}
