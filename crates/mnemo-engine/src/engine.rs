//! [`Engine`]: opens a data directory, recovers it, and serves spaces, observations
//! and recalls. It owns the log, the space registry, the index workers and the
//! checkpointer.
//!
//! Data directory layout: `LOCK`, `catalog.json`, `log/*.seg`, `spaces/<no>/`.

mod monitor;
mod session;
mod workers;

pub use session::{Ack, AckKind, Session, SessionTicket};

use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::config::EngineConfig;
use crate::error::{Error, IoContext, Result};
use crate::index::gate::RecallGate;
use crate::index::hnsw::Hnsw;
use crate::ingest::pressure::{PressureReport, PressureState};
use crate::ingest::queue::{Budget, Item, ReadyRing};
use crate::ingest::stats::{Counters, IngestStats, names};
use crate::log::{AppendTicket, CommitSink, Committed, FileLog, Log, LogStats};
use crate::recall::{RecallCursor, RecallRequest, read_memory};
use crate::record::ObservationRecord;
use crate::space::catalog::Catalog;
use crate::space::{Space, checkpoint};
use crate::types::{
    Lane, Lsn, Memory, Observation, SpaceConfig, SpaceInfo, SpaceNo, SpaceStats, now_us,
    validate_space_name,
};

/// Live spaces, by name and by number, and the shared state of the ingestion
/// pipeline (admission budget, ready ring, counters). Also the log's commit sink: it
/// puts each committed record into its space's fresh tier and index queue.
struct Registry {
    by_no: RwLock<HashMap<SpaceNo, Arc<Space>>>,
    /// Index workers sleep here when the ready ring is empty.
    work: Mutex<()>,
    work_cv: Condvar,
    ring: ReadyRing,
    budget: Budget,
    counters: Counters,
    /// The monitor's latest state and `retry_after` (µs), for the admission hot path.
    state: AtomicU8,
    retry_after_us: AtomicU64,
    /// Recalls in progress; index workers yield to them.
    recalls: Arc<RecallGate>,
}

impl Registry {
    fn new(config: &EngineConfig) -> Self {
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
        }
    }

    fn list(&self) -> Vec<Arc<Space>> {
        let mut v: Vec<_> = self.by_no.read().values().cloned().collect();
        v.sort_by_key(|s| s.info.no);
        v
    }

    fn get(&self, no: SpaceNo) -> Option<Arc<Space>> {
        self.by_no.read().get(&no).cloned()
    }

    fn by_name(&self, name: &str) -> Result<Arc<Space>> {
        self.by_no
            .read()
            .values()
            .find(|s| s.info.name == name)
            .cloned()
            .ok_or_else(|| Error::SpaceNotFound(name.to_string()))
    }

    fn state(&self) -> PressureState {
        match self.state.load(Ordering::Acquire) {
            0 => PressureState::Normal,
            1 => PressureState::Warning,
            2 => PressureState::Critical,
            _ => PressureState::Overloaded,
        }
    }

    fn retry_after(&self) -> Duration {
        Duration::from_micros(self.retry_after_us.load(Ordering::Acquire))
    }

    /// Puts `space` in the ready ring if it is not there yet, and wakes a worker.
    fn schedule(&self, space: &Space) {
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
            let Some(space) = spaces.get(&c.space) else {
                // Dropped while its append was in flight: retire its admission.
                self.budget.release(1, c.body.len());
                continue;
            };
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

    fn not_committed(&self, space: SpaceNo, body_len: usize) {
        if let Some(space) = self.get(space) {
            space.fresh.release(1);
            space.committed.wake(); // duplicates waiting for this record find out
        }
        self.budget.release(1, body_len);
    }
}

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
    _lock: File,
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

/// The outcome of an accepted observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Its LSN in the space.
    pub lsn: Lsn,
    /// Its memory id.
    pub id: Uuid,
}

/// Completion of [`Engine::observe`]: resolves once the observation is durable and
/// visible to recall. Wait with [`ObserveTicket::wait`] or `.await` it.
#[must_use = "an observation is only known durable once its ticket resolves"]
#[derive(Debug)]
pub struct ObserveTicket {
    append: AppendTicket,
    id: Uuid,
    started: Instant,
}

impl ObserveTicket {
    /// The memory id the observation will have.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Blocks until durable. Not for use inside an async runtime (`.await` instead).
    pub fn wait(self) -> Result<Observed> {
        let ObserveTicket {
            append,
            id,
            started,
        } = self;
        finish_observe(append.wait(), id, started)
    }
}

fn finish_observe(res: Result<Lsn>, id: Uuid, started: Instant) -> Result<Observed> {
    // Reservations of a failed append were released by the log (`not_committed`).
    let lsn = res?;
    metrics::histogram!(names::OBSERVE_DURABLE).record(started.elapsed().as_secs_f64());
    Ok(Observed { lsn, id })
}

impl IntoFuture for ObserveTicket {
    type Output = Result<Observed>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Observed>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let ObserveTicket {
            append,
            id,
            started,
        } = self;
        Box::pin(async move { finish_observe(append.await, id, started) })
    }
}

impl Inner {
    /// Admission control, then the append. Refuses (nothing written) when the engine
    /// is closing, the space is gone, the pressure is Overloaded, or a bound is hit.
    fn submit(
        &self,
        space: Arc<Space>,
        rec: &ObservationRecord,
        lane: Lane,
    ) -> Result<ObserveTicket> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        space.check_live()?;
        if let Err(e) = self.log.check_space() {
            metrics::counter!(names::REFUSED, "reason" => "storage_full").increment(1);
            return Err(e);
        }
        let reg = &self.registry;
        let refuse = |reason: String| {
            Counters::bump(&reg.counters.refused_overloaded);
            metrics::counter!(names::REFUSED, "reason" => "overloaded").increment(1);
            Err(Error::Overloaded {
                reason,
                retry_after: reg.retry_after(),
            })
        };
        if reg.state() == PressureState::Overloaded {
            return refuse(
                "the engine is overloaded: index queue, fresh tier or log backlog at 95 % or more"
                    .into(),
            );
        }
        let body = rec.encode();
        if !space.fresh.try_reserve() {
            return refuse(format!(
                "space '{}' has {} records awaiting indexing (limit {})",
                space.info.name,
                space.fresh.len(),
                space.fresh.capacity()
            ));
        }
        if !reg.budget.try_reserve(body.len()) {
            space.fresh.release(1);
            return refuse(format!(
                "index queue full ({} of {} observations, {} of {} bytes)",
                reg.budget.items(),
                reg.budget.max_items(),
                reg.budget.bytes(),
                reg.budget.max_bytes()
            ));
        }
        let append = self.log.append_hinted(space.info.no, body, lane as u8);
        Ok(ObserveTicket {
            append,
            id: rec.id,
            started: Instant::now(),
        })
    }
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space")
            .field("name", &self.info.name)
            .finish_non_exhaustive()
    }
}

fn space_dir(data_dir: &Path, no: SpaceNo) -> PathBuf {
    data_dir.join("spaces").join(no.0.to_string())
}

impl Engine {
    /// Opens the engine on `config.data_dir`, creating it if needed, and recovers:
    /// loads each space's checkpoint (or rebuilds its index from the log), replays
    /// the log tail into the fresh tier, and recovers session high-water marks.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let data = config.data_dir.clone();
        fs::create_dir_all(data.join("spaces")).at(&data)?;
        let lock_path = data.join("LOCK");
        let lock = File::create(&lock_path).at(&lock_path)?;
        if lock.try_lock().is_err() {
            return Err(Error::invalid(format!(
                "data directory {} is in use by another Mnemo process",
                data.display()
            )));
        }
        let catalog = Catalog::load(&data)?;
        let registry = Arc::new(Registry::new(&config));
        let mut checkpoints = HashMap::new();
        for info in &catalog.spaces {
            let dir = space_dir(&data, info.no);
            fs::create_dir_all(&dir).at(&dir)?;
            let (hnsw, ckpt) = match checkpoint::load(&dir, &info.config) {
                Some(found) => found,
                None => (Hnsw::new(&info.config, config.index_shards())?, 0),
            };
            checkpoints.insert(info.no, ckpt);
            let space = Space::new(
                info.clone(),
                dir,
                hnsw,
                ckpt,
                config.fresh_rows(info.config.dim, info.config.index.precision),
                Arc::clone(&registry.recalls),
            );
            registry.by_no.write().insert(info.no, Arc::new(space));
        }
        remove_dropped_space_dirs(&data, &catalog)?;

        let live: HashSet<SpaceNo> = catalog.spaces.iter().map(|s| s.no).collect();
        let started = Instant::now();
        let mut failure: Option<Error> = None;
        let mut replayed = 0u64;
        let log = {
            let spaces = registry.list();
            let by_no: HashMap<SpaceNo, Arc<Space>> =
                spaces.into_iter().map(|s| (s.info.no, s)).collect();
            let batch = config.index_batch;
            let registry_for_recovery = Arc::clone(&registry);
            let mut recovered = |c: Committed<'_>| {
                let Some(space) = by_no.get(&c.space) else {
                    return;
                };
                if failure.is_some() {
                    return;
                }
                replayed += 1;
                if let Err(e) = recover_record(&registry_for_recovery, space, c, batch, &data) {
                    failure = Some(e);
                }
            };
            let sink: Arc<dyn CommitSink> = Arc::clone(&registry) as Arc<dyn CommitSink>;
            FileLog::open(
                &data.join("log"),
                config.log.clone(),
                &live,
                &mut recovered,
                sink,
            )?
        };
        if let Some(e) = failure {
            return Err(e);
        }
        for space in registry.list() {
            let last = log.last_lsn(space.info.no).unwrap_or(0);
            let ckpt = checkpoints.get(&space.info.no).copied().unwrap_or(0);
            if ckpt > last {
                // The checkpoint claims records the log does not have: do not trust it.
                return Err(Error::Corruption {
                    path: space.dir.clone(),
                    offset: 0,
                    detail: format!("checkpoint covers LSN {ckpt} but the log ends at {last}"),
                });
            }
            space.publish(last);
            space.refresh_indexed();
            if !space.queue.is_empty() {
                registry.schedule(&space);
            }
        }
        tracing::info!(
            data_dir = %data.display(), spaces = catalog.spaces.len(), replayed,
            elapsed_ms = started.elapsed().as_millis() as u64, "engine recovered"
        );

        let (pressure, _) = tokio::sync::watch::channel(PressureReport {
            queue_max_items: config.ingest.queue_max_items,
            queue_max_bytes: config.ingest.queue_max_bytes,
            credit_window: config.ingest.credit_window,
            ..PressureReport::default()
        });
        let inner = Arc::new(Inner {
            sessions: session::SessionTable::default(),
            config,
            log: Arc::new(log),
            registry,
            catalog: Mutex::new(catalog),
            pressure,
            closing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
            _lock: lock,
        });
        let engine = Engine {
            inner,
            threads: Mutex::new(Vec::new()),
        };
        engine.start_threads()?;
        Ok(engine)
    }

    fn start_threads(&self) -> Result<()> {
        let mut threads = self.threads.lock();
        for i in 0..self.inner.config.index_threads {
            let inner = Arc::clone(&self.inner);
            let h = std::thread::Builder::new()
                .name(format!("mnemo-index-{i}"))
                .spawn(move || workers::run(&inner))
                .map_err(|e| Error::io("thread", e))?;
            threads.push(h);
        }
        let inner = Arc::clone(&self.inner);
        let h = std::thread::Builder::new()
            .name("mnemo-pressure".into())
            .spawn(move || monitor::run(&inner))
            .map_err(|e| Error::io("thread", e))?;
        threads.push(h);
        let inner = Arc::clone(&self.inner);
        let h = std::thread::Builder::new()
            .name("mnemo-checkpoint".into())
            .spawn(move || checkpointer(&inner))
            .map_err(|e| Error::io("thread", e))?;
        threads.push(h);
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Creates a memory space.
    pub fn create_space(&self, name: &str, config: SpaceConfig) -> Result<SpaceInfo> {
        validate_space_name(name)?;
        config.validate()?;
        self.check_running()?;
        let mut catalog = self.inner.catalog.lock();
        if catalog.spaces.iter().any(|s| s.name == name) {
            return Err(Error::SpaceExists(name.to_string()));
        }
        let mut next = catalog.clone();
        let no = next.allocate();
        let info = SpaceInfo {
            name: name.to_string(),
            no,
            config,
            created_at_us: now_us(),
        };
        let dir = space_dir(&self.inner.config.data_dir, no);
        fs::create_dir_all(&dir).at(&dir)?;
        let space = Space::new(
            info.clone(),
            dir,
            Hnsw::new(&info.config, self.inner.config.index_shards())?,
            0,
            self.inner
                .config
                .fresh_rows(info.config.dim, info.config.index.precision),
            Arc::clone(&self.inner.registry.recalls),
        );
        next.spaces.push(info.clone());
        next.save(&self.inner.config.data_dir)?;
        *catalog = next;
        self.inner
            .registry
            .by_no
            .write()
            .insert(no, Arc::new(space));
        self.inner.log.register_space(no);
        Ok(info)
    }

    /// All live spaces, in creation order.
    pub fn list_spaces(&self) -> Vec<SpaceInfo> {
        self.inner
            .registry
            .list()
            .iter()
            .map(|s| s.info.clone())
            .collect()
    }

    /// One space's description and counters.
    pub fn describe_space(&self, name: &str) -> Result<(SpaceInfo, SpaceStats)> {
        let space = self.inner.registry.by_name(name)?;
        Ok((space.info.clone(), space.stats()))
    }

    /// Drops a space: it disappears at once; its checkpoint is deleted and its log
    /// segments are reclaimed once no live space has records in them.
    pub fn drop_space(&self, name: &str) -> Result<()> {
        let mut catalog = self.inner.catalog.lock();
        let space = self.inner.registry.by_name(name)?;
        let mut next = catalog.clone();
        next.spaces.retain(|s| s.name != name);
        next.save(&self.inner.config.data_dir)?;
        *catalog = next;
        space.dropped.store(true, Ordering::Release);
        self.inner.registry.by_no.write().remove(&space.info.no);
        // Waiters on its watermarks find out it is gone.
        space.indexed.wake();
        space.committed.wake();
        // Retire what was waiting for its index (workers skip a space they cannot find).
        for (_, item) in space.queue.pop_batch(usize::MAX) {
            self.inner.registry.budget.release(1, item.bytes as usize);
        }
        self.inner.sessions.forget_space(space.info.no);
        self.inner.log.forget_space(space.info.no)?;
        let _no_checkpoint = space.checkpoint_lock.lock();
        fs::remove_dir_all(&space.dir).at(&space.dir)?;
        Ok(())
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.closing.load(Ordering::Acquire) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
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
        let rec = ObservationRecord::from_observation(obs, space.info.config.dim)?;
        self.inner.submit(space, &rec, lane)
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
        let rec = ObservationRecord::from_observation(obs, space.info.config.dim)?;
        loop {
            match self.inner.submit(Arc::clone(&space), &rec, Lane::Normal) {
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
        RecallCursor::open(space, log, req)
    }

    /// Reads one committed record by LSN (score 0).
    pub fn get(&self, space: &str, lsn: Lsn) -> Result<Memory> {
        let space = self.inner.registry.by_name(space)?;
        if lsn == 0 || lsn > space.committed.get() {
            return Err(Error::invalid(format!(
                "LSN {lsn} is not committed in space '{}'",
                space.info.name
            )));
        }
        read_memory(&space, self.inner.log.as_ref(), lsn)
    }

    /// Reads the committed records with LSN in `(after, upto]`, in LSN order, at most
    /// `max` of them. `upto` must be committed (take it from [`Engine::snapshot`]):
    /// a space's LSNs are dense, so repeated calls walk a whole snapshot.
    pub fn export(&self, space: &str, after: Lsn, upto: Lsn, max: usize) -> Result<Vec<Memory>> {
        let space = self.inner.registry.by_name(space)?;
        let committed = space.committed.get();
        if upto > committed {
            return Err(Error::invalid(format!(
                "snapshot LSN {upto} is not committed in space '{}' (committed: {committed})",
                space.info.name
            )));
        }
        let end = upto.min(after.saturating_add(max as u64));
        ((after + 1)..=end)
            .map(|lsn| read_memory(&space, self.inner.log.as_ref(), lsn))
            .collect()
    }

    /// Last sequence number and its LSN that `session` committed in `space`.
    pub fn session_high_water(&self, space: &str, session: &str) -> Result<Option<(u64, Lsn)>> {
        Ok(self
            .inner
            .registry
            .by_name(space)?
            .session_high_water(session))
    }

    /// The LSN of `seq` of `session`, if committed.
    pub fn session_lsn(&self, space: &str, session: &str, seq: u64) -> Result<Option<Lsn>> {
        Ok(self
            .inner
            .registry
            .by_name(space)?
            .session_lsn(session, seq))
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
        self.inner.registry.by_name(space)?.checkpoint()
    }

    /// Log counters.
    pub fn log_stats(&self) -> LogStats {
        self.inner.log.stats()
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

    /// Stops the workers, commits what is queued, checkpoints every space and
    /// closes the log. Unindexed records are replayed from the log at next open.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// [`Engine::close`] for an engine shared behind an `Arc`: the same drain,
    /// checkpoint and log close; afterwards every call fails with `ShuttingDown`.
    /// A second call does nothing.
    pub fn close_shared(&self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.inner.closing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Drain: everything admitted gets indexed, within the configured time.
        let deadline =
            Instant::now() + Duration::from_secs(self.inner.config.ingest.shutdown_drain_s);
        while self.inner.registry.budget.items() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let left = self.inner.registry.budget.items();
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown drain timed out; the rest is indexed from the log at next open"
            );
        }
        self.inner.stopping.store(true, Ordering::Release);
        {
            let _g = self.inner.registry.work.lock();
            self.inner.registry.work_cv.notify_all();
        }
        {
            let _g = self.inner.stop_lock.lock();
            self.inner.stop_cv.notify_all();
        }
        for h in self.threads.lock().drain(..) {
            if h.join().is_err() {
                tracing::error!("an engine thread panicked");
            }
        }
        self.inner.log.shutdown();
        let mut first_err = None;
        for space in self.inner.registry.list() {
            if let Err(e) = space.checkpoint() {
                tracing::error!(space = space.info.name, error = %e, "checkpoint at close failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn remove_dropped_space_dirs(data: &Path, catalog: &Catalog) -> Result<()> {
    let live: HashSet<String> = catalog.spaces.iter().map(|s| s.no.0.to_string()).collect();
    let dir = data.join("spaces");
    for entry in fs::read_dir(&dir).at(&dir)? {
        let entry = entry.at(&dir)?;
        if !live.contains(&*entry.file_name().to_string_lossy()) {
            let p = entry.path();
            tracing::info!(path = %p.display(), "removing data of a dropped space");
            fs::remove_dir_all(&p).at(&p)?;
        }
    }
    Ok(())
}

/// Takes one record recovered from the log into its space: only its session mark if
/// the loaded checkpoint holds it, else into the fresh tier and the index queue
/// (indexing any overflow at once, so recovery memory stays bounded).
fn recover_record(
    registry: &Registry,
    space: &Space,
    c: Committed<'_>,
    batch: usize,
    data: &Path,
) -> Result<()> {
    let corrupt = |e: crate::record::DecodeError| Error::Corruption {
        path: data.join("log"),
        offset: 0,
        detail: format!("space {} LSN {}: {e}", space.info.name, c.lsn),
    };
    if space.in_checkpoint(c.lsn) {
        let (session, seq) = ObservationRecord::decode_session(c.body).map_err(corrupt)?;
        space.track_session(session, seq, c.lsn);
        return Ok(());
    }
    let rec = ObservationRecord::decode(c.body).map_err(corrupt)?;
    if space.apply(c.lsn, &rec, true) {
        registry.budget.force_reserve(c.body.len());
        space.queue.push(
            Lane::Normal,
            Item {
                lsn: c.lsn,
                bytes: c.body.len() as u32,
                recorded_at_us: rec.recorded_at_us,
                retried: false,
            },
        );
    }
    while space.fresh.len() > space.fresh.capacity() {
        let items = space.queue.pop_batch(batch);
        if items.is_empty() {
            break;
        }
        let items: Vec<Item> = items.into_iter().map(|(_, it)| it).collect();
        workers::index_items(space, &items)?;
        workers::retire(registry, &items);
    }
    Ok(())
}

fn checkpointer(inner: &Inner) {
    // Saving a graph is deferrable work, like indexing.
    if let Err(error) = crate::lower_thread_priority(inner.config.index_nice) {
        tracing::warn!(%error, "cannot lower the checkpoint thread's priority");
    }
    let interval = inner.config.checkpoint_interval();
    loop {
        {
            let mut g = inner.stop_lock.lock();
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            inner.stop_cv.wait_for(&mut g, interval);
        }
        for space in inner.registry.list() {
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = space.checkpoint() {
                tracing::warn!(space = space.info.name, error = %e, "periodic checkpoint failed");
            }
        }
    }
}
