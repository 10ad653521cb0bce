//! [`Engine`]: opens a data directory, recovers it, and serves spaces, observations
//! and recalls. It owns the log, the space registry, the index workers and the
//! checkpointer.
//!
//! Files: `registry.rs` (live spaces; the log's commit sink), `admission.rs`
//! (admission control and the observe ticket), `open.rs` (open and recovery),
//! `spaces.rs` (create / drop), `lifecycle.rs` (background threads, checkpointer,
//! shutdown), `session.rs`, `workers.rs` (index workers), `monitor.rs` (pressure).
//!
//! Data directory layout: `LOCK`, `catalog.json`, `log/*.seg`, `spaces/<no>/`.

mod admission;
mod cluster;
mod compact;
mod forget;
mod lifecycle;
mod monitor;
mod open;
mod registry;
mod repair;
mod session;
mod spaces;
mod workers;

pub use admission::{ObserveTicket, Observed};
pub use cluster::ClusterHooks;
pub use compact::Compacted;
pub use forget::{Forgotten, MAX_FORGET_IDS};

/// Most ids one [`Engine::get_memories`] may ask for.
pub const MAX_GET_IDS: usize = 1000;

/// The memories of a space that matched a filter at a snapshot (see
/// [`Engine::select`]).
#[derive(Debug, Clone)]
pub struct Selection(roaring::RoaringTreemap);

impl Selection {
    /// How many memories matched.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// True if none matched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
/// What [`Engine::get_memories`] found, as of one snapshot.
#[derive(Debug, Clone, Default)]
pub struct GotMemories {
    /// The snapshot read.
    pub snapshot: Lsn,
    /// The memories found, in the order asked for.
    pub found: Vec<Memory>,
    /// Ids with no memory seen at the snapshot (never stored, forgotten, expired).
    pub missing: Vec<Uuid>,
    /// Ids whose memory was superseded by the snapshot: `(id, the id of the memory
    /// that superseded it)`.
    pub superseded: Vec<(Uuid, Uuid)>,
}
pub use repair::{repair, repair_in};
pub use session::{Ack, AckKind, Session, SessionTicket};

use parking_lot::{Condvar, Mutex};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::ingest::pressure::PressureReport;
use crate::ingest::stats::IngestStats;
use crate::io::FileSystem;
use crate::log::{FileLog, Log, LogStats};
use crate::recall::{RecallCursor, RecallRequest};
use crate::record::ObservationRecord;
use crate::space::catalog::Catalog;
use crate::types::Filter;
use crate::types::{Lane, Lsn, Memory, Observation};
use registry::Registry;
use uuid::Uuid;

struct Inner {
    config: EngineConfig,
    log: Arc<FileLog>,
    registry: Arc<Registry>,
    /// Serialises create/drop (and guards the catalog file).
    catalog: Mutex<Catalog>,
    sessions: session::SessionTable,
    /// The latest pressure sample; subscribers are woken on every state change.
    pressure: tokio::sync::watch::Sender<PressureReport>,
    /// Set at close: no new observations are admitted while the queue drains.
    closing: AtomicBool,
    /// Set once the queue drained (or the drain timed out): background threads stop.
    stopping: AtomicBool,
    /// Wakes the checkpointer at shutdown.
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
    /// The file system every file goes through (see [`crate::io`]).
    fs: Arc<dyn FileSystem>,
    /// Distributed mode: where spaces are created and dropped first.
    shared_catalog: Option<Arc<dyn crate::log::SharedCatalog>>,
    /// The data directory's lock, held while the engine lives.
    _lock: Box<dyn Send + Sync>,
}

/// The Mnemo engine. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Engine {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Validates and submits an observation (normal lane). The ticket resolves once
    /// it is durable and visible to recall. Invalid input is refused here and nothing
    /// is written; under overload it is refused with [`Error::Overloaded`] carrying
    /// `retry_after`.
    pub fn observe(&self, space: &str, obs: Observation) -> Result<ObserveTicket> {
        self.observe_in_lane(space, obs, Lane::Normal)
    }

    /// Like [`Engine::observe`], with an indexing lane.
    pub fn observe_in_lane(
        &self,
        space: &str,
        obs: Observation,
        lane: Lane,
    ) -> Result<ObserveTicket> {
        let space = self.inner.registry.by_name(space)?;
        let client_id = obs.id.is_some();
        let mut rec = ObservationRecord::from_observation(obs, space.info.config.dim)?;
        self.inner.submit(space, &mut rec, lane, client_id)
    }

    /// Like [`Engine::observe`], but while the engine is overloaded it sleeps for the
    /// advised `retry_after` and tries again, for up to `max_wait` in all (blocking).
    pub fn observe_waiting(
        &self,
        space: &str,
        obs: Observation,
        max_wait: Duration,
    ) -> Result<ObserveTicket> {
        let deadline = Instant::now() + max_wait;
        let space = self.inner.registry.by_name(space)?;
        let client_id = obs.id.is_some();
        let mut rec = ObservationRecord::from_observation(obs, space.info.config.dim)?;
        loop {
            match self
                .inner
                .submit(Arc::clone(&space), &mut rec, Lane::Normal, client_id)
            {
                Err(Error::Overloaded { retry_after, .. })
                    if Instant::now() + retry_after <= deadline =>
                {
                    std::thread::sleep(retry_after);
                }
                other => return other,
            }
        }
    }

    /// Opens a session on `space`: with `session_id`, resumes it if it is open here
    /// or has records in the log (continuing from its high-water mark), else starts
    /// it at sequence 1; without, makes a new id. Opening an open session supersedes
    /// the previous handle (a client reconnecting).
    pub fn open_session(&self, space: &str, session_id: Option<&str>) -> Result<Session> {
        self.inner
            .open_session(space, session_id, session::OpenMode::OpenOrResume)
    }

    /// Resumes a session that exists (open here, or with records in the log);
    /// [`Error::SessionNotFound`] otherwise.
    pub fn resume_session(&self, space: &str, session_id: &str) -> Result<Session> {
        self.inner
            .open_session(space, Some(session_id), session::OpenMode::ResumeOnly)
    }

    /// The latest pressure sample.
    pub fn pressure(&self) -> PressureReport {
        self.inner.pressure.borrow().clone()
    }

    /// A receiver woken on every pressure state change (its value is always the
    /// latest sample).
    pub fn subscribe_pressure(&self) -> tokio::sync::watch::Receiver<PressureReport> {
        self.inner.pressure.subscribe()
    }

    /// Counters of the ingestion pipeline.
    pub fn ingest_stats(&self) -> IngestStats {
        self.inner
            .registry
            .counters
            .snapshot(self.inner.sessions.len(), self.pressure())
    }

    /// Observes and waits until durable (blocking).
    pub fn observe_blocking(&self, space: &str, obs: Observation) -> Result<Observed> {
        self.observe(space, obs)?.wait()
    }

    /// The space's commit watermark: every LSN up to it is durable and visible.
    pub fn snapshot(&self, space: &str) -> Result<Lsn> {
        Ok(self.inner.registry.by_name(space)?.committed.get())
    }

    /// Opens a snapshot-isolated recall cursor. May block for
    /// [`crate::SnapshotSpec::AtLeast`], up to `max_wait`.
    pub fn recall(&self, space: &str, req: RecallRequest) -> Result<RecallCursor> {
        let space = self.inner.registry.by_name(space)?;
        let log: Arc<dyn Log> = Arc::clone(&self.inner.log) as Arc<dyn Log>;
        RecallCursor::open(space, log, req, self.inner.config.recall_exact_limit)
    }

    /// Reads one committed memory by LSN (score 0), as of the latest snapshot: a
    /// memory forgotten, superseded or expired by then is [`Error::Forgotten`].
    pub fn get(&self, space: &str, lsn: Lsn) -> Result<Memory> {
        let space = self.inner.registry.by_name(space)?;
        let committed = space.committed.get();
        if lsn == 0 || lsn > committed {
            return Err(Error::invalid(format!(
                "LSN {lsn} is not committed in space '{}'",
                space.info.name
            )));
        }
        let control = space.attrs.read().is_control(lsn);
        if !space.is_lost(lsn) && !control && !space.seen(lsn, committed) {
            return Err(Error::Forgotten {
                space: space.info.name.clone(),
                lsn,
            });
        }
        space.read_memory(self.inner.log.as_ref(), lsn)
    }

    /// Holds `snapshot` of `space` readable (a purge of forgotten memories stays
    /// below it) until the pin is dropped: for a reader that reads one snapshot in
    /// several calls (an export). [`Error::SnapshotTooOld`] if it is purged already.
    pub fn pin_snapshot(&self, space: &str, snapshot: Lsn) -> Result<crate::SnapshotPin> {
        let space = self.inner.registry.by_name(space)?;
        let committed = space.committed.get();
        if snapshot > committed {
            return Err(Error::SnapshotInFuture {
                requested: snapshot,
                committed,
            });
        }
        space.pin(snapshot)
    }

    /// Reads the committed records with LSN in `(after, upto]`, in LSN order: the
    /// LSNs from `after + 1` to `min(upto, after + max)` — of those, the ones in
    /// `selection` if there is one (see [`Engine::select`]), and never a record lost
    /// to log damage (a placeholder left by `mnemo repair`). Returns them with the
    /// last LSN read: the next call continues after it. `upto` must be committed
    /// (take it from [`Engine::snapshot`]): a space's LSNs are dense, so repeated
    /// calls walk a whole snapshot.
    pub fn export(
        &self,
        space: &str,
        after: Lsn,
        upto: Lsn,
        max: usize,
        selection: Option<&Selection>,
    ) -> Result<(Vec<Memory>, Lsn)> {
        let space = self.inner.registry.by_name(space)?;
        let committed = space.committed.get();
        if upto > committed {
            return Err(Error::invalid(format!(
                "snapshot LSN {upto} is not committed in space '{}' (committed: {committed})",
                space.info.name
            )));
        }
        let oldest = space.attrs.read().deaths.purged_upto();
        if upto < oldest {
            return Err(Error::SnapshotTooOld {
                space: space.info.name.clone(),
                requested: upto,
                oldest,
            });
        }
        let end = upto.min(after.saturating_add(max as u64));
        if after >= end {
            return Ok((Vec::new(), after.max(end)));
        }
        let log = self.inner.log.as_ref();
        let memories = match selection {
            Some(sel) => {
                let mut lsns = sel.0.clone();
                lsns.remove_range(..=after);
                lsns.remove_range(end + 1..);
                lsns.iter()
                    .map(|lsn| space.read_memory(log, lsn))
                    .collect::<Result<_>>()?
            }
            None => ((after + 1)..=end)
                .filter(|&lsn| space.seen(lsn, upto))
                .map(|lsn| space.read_memory(log, lsn))
                .collect::<Result<_>>()?,
        };
        Ok((memories, end))
    }

    /// The memories of `space` matching `filter` up to `snapshot` (which must be
    /// committed): for exports of a part of a space.
    pub fn select(&self, space: &str, filter: &Filter, snapshot: Lsn) -> Result<Selection> {
        filter.validate()?;
        let space = self.inner.registry.by_name(space)?;
        let committed = space.committed.get();
        if snapshot > committed {
            return Err(Error::SnapshotInFuture {
                requested: snapshot,
                committed,
            });
        }
        Ok(Selection(space.select(filter, snapshot)))
    }

    /// The memories with `ids` as of `snapshot` (none: the latest), in the order
    /// asked, the ids with no memory then, and those superseded by then (with the
    /// id that superseded each). At most [`MAX_GET_IDS`] ids.
    pub fn get_memories(
        &self,
        space: &str,
        ids: &[Uuid],
        snapshot: Option<Lsn>,
    ) -> Result<GotMemories> {
        if ids.len() > MAX_GET_IDS {
            return Err(Error::invalid(format!(
                "{} ids, the limit is {MAX_GET_IDS}",
                ids.len()
            )));
        }
        let space = self.inner.registry.by_name(space)?;
        let committed = space.committed.get();
        let snapshot = match snapshot {
            Some(s) if s > committed => {
                return Err(Error::SnapshotInFuture {
                    requested: s,
                    committed,
                });
            }
            Some(s) => s,
            None => committed,
        };
        let _pin = space.pin(snapshot)?;
        enum Found {
            At(Lsn),
            Superseded(Uuid),
            Missing,
        }
        // Lock order: `lost` is never taken while `attrs` is held.
        let lost = space.any_lost();
        let lsns: Vec<Option<Lsn>> = {
            let attrs = space.attrs.read();
            ids.iter().map(|id| attrs.lsn_of(id, snapshot)).collect()
        };
        let lsns: Vec<Option<Lsn>> = lsns
            .into_iter()
            .map(|l| l.filter(|&l| !(lost && space.is_lost(l))))
            .collect();
        let found: Vec<Found> = {
            let attrs = space.attrs.read();
            lsns.iter()
                .map(|&lsn| {
                    let Some(lsn) = lsn else {
                        return Found::Missing;
                    };
                    if !attrs.hidden(lsn, snapshot) {
                        return Found::At(lsn);
                    }
                    match attrs.deaths.superseded_by(lsn) {
                        Some((by, by_id)) if by <= snapshot => Found::Superseded(by_id),
                        _ => Found::Missing,
                    }
                })
                .collect()
        };
        let mut got = GotMemories {
            snapshot,
            ..GotMemories::default()
        };
        for (id, f) in ids.iter().zip(found) {
            match f {
                Found::At(lsn) => got
                    .found
                    .push(space.read_memory(self.inner.log.as_ref(), lsn)?),
                Found::Superseded(by) => got.superseded.push((*id, by)),
                Found::Missing => got.missing.push(*id),
            }
        }
        Ok(got)
    }

    /// Last sequence number and its LSN that `session` committed in `space`.
    pub fn session_high_water(&self, space: &str, session: &str) -> Result<Option<(u64, Lsn)>> {
        Ok(self
            .inner
            .registry
            .by_name(space)?
            .session_high_water(session))
    }

    /// The LSN of `seq` of `session`, if committed; `Some(0)` if its record is no
    /// longer in the log (lost to damage, or forgotten and compacted).
    pub fn session_lsn(&self, space: &str, session: &str, seq: u64) -> Result<Option<Lsn>> {
        let lsn = self
            .inner
            .registry
            .by_name(space)?
            .session_lsn(session, seq);
        Ok(lsn.map(|l| if l == crate::space::COMPACTED { 0 } else { l }))
    }

    /// The space's index watermark: every LSN up to it is in the HNSW graph.
    pub fn indexed_lsn(&self, space: &str) -> Result<Lsn> {
        Ok(self.inner.registry.by_name(space)?.indexed.get())
    }

    /// Waits until everything up to `lsn` is in the HNSW graph.
    pub fn wait_indexed(&self, space: &str, lsn: Lsn, timeout: Duration) -> Result<()> {
        let space = self.inner.registry.by_name(space)?;
        space
            .indexed
            .wait_for(lsn, timeout)
            .map(|_| ())
            .map_err(|seen| Error::Timeout {
                wanted: lsn,
                committed: seen,
                waited: timeout,
            })
    }

    /// Resolves once everything up to `lsn` is committed (durable and visible):
    /// async, for read-your-writes waits that must not hold a thread. No timeout:
    /// wrap it in one. Fails if the space is dropped meanwhile.
    pub fn committed(
        &self,
        space: &str,
        lsn: Lsn,
    ) -> Result<impl Future<Output = Result<Lsn>> + Send + 'static> {
        let space = self.inner.registry.by_name(space)?;
        Ok(async move {
            loop {
                let changed = space.committed.changed();
                let now = space.committed.get();
                if now >= lsn {
                    return Ok(now);
                }
                space.check_live()?;
                changed.await;
            }
        })
    }

    /// Resolves once everything up to `lsn` is in the HNSW graph (async; no timeout:
    /// wrap it in one). Fails if the space is dropped meanwhile.
    pub fn indexed(
        &self,
        space: &str,
        lsn: Lsn,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let space = self.inner.registry.by_name(space)?;
        Ok(async move {
            loop {
                let changed = space.indexed.changed();
                if space.indexed.get() >= lsn {
                    return Ok(());
                }
                space.check_live()?;
                changed.await;
            }
        })
    }

    /// Checkpoints one space now; returns the LSN the checkpoint covers.
    pub fn checkpoint(&self, space: &str) -> Result<Lsn> {
        self.inner.registry.by_name(space)?.checkpoint(true)
    }

    /// Log counters.
    pub fn log_stats(&self) -> LogStats {
        self.inner.log.stats()
    }

    /// Bytes of every file of the data directory (log, checkpoints, catalog).
    pub fn data_bytes(&self) -> u64 {
        fn walk(fs: &dyn crate::io::FileSystem, dir: &std::path::Path) -> u64 {
            let Ok(names) = fs.list_dir(dir) else {
                return 0;
            };
            names
                .iter()
                .map(|n| {
                    let p = dir.join(n);
                    if fs.list_dir(&p).is_ok() {
                        return walk(fs, &p); // a directory
                    }
                    fs.open(&p, crate::io::OpenMode::Read)
                        .and_then(|f| f.size())
                        .unwrap_or(0)
                })
                .sum()
        }
        walk(self.inner.fs.as_ref(), &self.inner.config.data_dir)
    }

    /// Approximate bytes held by the HNSW graphs of all spaces.
    pub fn index_memory_bytes(&self) -> usize {
        self.inner
            .registry
            .list()
            .iter()
            .map(|s| s.hnsw.memory_bytes())
            .sum()
    }

    /// Approximate bytes held by the warm tiers of all spaces (codes, lists and
    /// codebooks).
    pub fn warm_memory_bytes(&self) -> usize {
        self.inner
            .registry
            .list()
            .iter()
            .map(|s| s.warm.memory_bytes())
            .sum()
    }
}
