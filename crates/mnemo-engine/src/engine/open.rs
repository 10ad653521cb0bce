//! Opening a data directory: the lock, the catalog, each space's checkpoint, then
//! one scan of the log that rebuilds positions, session marks and the fresh tier.

use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::registry::Registry;
use super::{Engine, Inner, session, workers};
use crate::config::EngineConfig;
use crate::error::{Error, IoContext, Result};
use crate::index::hnsw::Hnsw;
use crate::ingest::pressure::PressureReport;
use crate::ingest::queue::Item;
use crate::io::{FileSystem, StdFs};
use crate::log::{CommitSink, Committed, FileLog, Log, ResumeAt};
use crate::record::{self, ForgetRecord, ObservationRecord};
use crate::space::catalog::Catalog;
use crate::space::{Space, checkpoint};
use crate::types::{Lane, Lsn, SpaceInfo, SpaceNo};

pub(crate) fn space_dir(data_dir: &Path, no: SpaceNo) -> PathBuf {
    data_dir.join("spaces").join(no.0.to_string())
}

impl Engine {
    /// Opens the engine on `config.data_dir`, creating it if needed, and recovers:
    /// loads each space's checkpoint (or rebuilds its index from the log), replays
    /// the log tail into the fresh tier, and recovers session high-water marks.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        Self::open_in(config, Arc::new(StdFs))
    }

    /// [`Engine::open`] on the file system `fs` (a simulated disk in tests).
    pub fn open_in(config: EngineConfig, fs: Arc<dyn FileSystem>) -> Result<Engine> {
        Self::open_inner(config, fs, None)
    }

    pub(super) fn open_inner(
        config: EngineConfig,
        fs: Arc<dyn FileSystem>,
        cluster: Option<super::ClusterHooks>,
    ) -> Result<Engine> {
        config.validate()?;
        let data = config.data_dir.clone();
        fs.create_dir_all(&data.join("spaces")).at(&data)?;
        let lock_path = data.join("LOCK");
        let lock = fs.lock(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::invalid(format!(
                    "data directory {} is in use by another Mnemo process",
                    data.display()
                ))
            } else {
                Error::io(&lock_path, e)
            }
        })?;
        let catalog = Catalog::load(fs.as_ref(), &data)?;
        let registry = Arc::new(Registry::new(&config));
        let mut checkpoints = HashMap::new();
        let mut resume: HashMap<SpaceNo, ResumeAt> = HashMap::new();
        for info in &catalog.spaces {
            let dir = space_dir(&data, info.no);
            fs.create_dir_all(&dir).at(&dir)?;
            let (hnsw, ckpt, state) = match checkpoint::load(fs.as_ref(), &dir, &info.config) {
                Some(found) => (found.hnsw, found.lsn, found.state),
                None => (Hnsw::new(&info.config, config.index_shards())?, 0, None),
            };
            checkpoints.insert(info.no, ckpt);
            let space = build_space(&fs, &config, &registry, info.clone(), hnsw, ckpt);
            // With its state checkpointed, a space replays only the log after its
            // graph's checkpoint; without, all of it (attributes and sessions).
            let at = match state {
                Some(state) => {
                    let upto = state.applied();
                    space.install_state(state);
                    ResumeAt {
                        replay_after: ckpt.min(upto),
                        state_upto: upto,
                    }
                }
                None => ResumeAt::default(),
            };
            resume.insert(info.no, at);
            registry.by_no.write().insert(info.no, Arc::new(space));
        }
        remove_dropped_space_dirs(fs.as_ref(), &data, &catalog)?;

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
            FileLog::open_resuming(
                Arc::clone(&fs),
                &data.join("log"),
                config.log.clone(),
                &resume,
                &mut recovered,
                sink,
            )?
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let shared_catalog = match cluster {
            Some(hooks) => {
                log.set_replicator(hooks.replicator)?;
                Some(hooks.catalog)
            }
            None => None,
        };
        for space in registry.list() {
            let last = log.last_lsn(space.info.no).unwrap_or(0);
            let ckpt = checkpoints.get(&space.info.no).copied().unwrap_or(0);
            let state_upto = resume.get(&space.info.no).map_or(0, |r| r.state_upto);
            // A checkpoint whose records the log lost (a power loss under
            // `durability = buffered`) cannot be used. With a state, the records
            // after the log's end must all be ones compaction removed.
            let behind = if state_upto > 0 {
                !space.log_covers(log.highest_present(space.info.no), state_upto)
            } else {
                ckpt > last
            };
            if !behind && state_upto > last {
                log.extend_to(space.info.no, state_upto);
            }
            let last = log.last_lsn(space.info.no).unwrap_or(0);
            let space = if behind {
                rebuild_without_checkpoint(&fs, &registry, &log, &space, &config, ckpt, last)?
            } else {
                space
            };
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
            fs,
            shared_catalog,
            _lock: lock,
        });
        let engine = Engine {
            inner,
            threads: Mutex::new(Vec::new()),
        };
        engine.start_threads()?;
        Ok(engine)
    }
}

/// A checkpoint that covers LSNs the log does not have (a power loss under
/// `durability = buffered`: the log's tail was in the page cache, the checkpoint
/// was synced) cannot be trusted: its graph holds records that no longer exist.
/// The checkpoint is discarded and the space rebuilt from the log alone.
fn rebuild_without_checkpoint(
    fs: &Arc<dyn FileSystem>,
    registry: &Registry,
    log: &FileLog,
    stale: &Space,
    config: &EngineConfig,
    ckpt: Lsn,
    last: Lsn,
) -> Result<Arc<Space>> {
    tracing::warn!(
        space = stale.info.name,
        checkpoint_lsn = ckpt,
        log_end = last,
        "the checkpoint covers records the log does not have (power loss with durability = buffered?): \
         discarding it and rebuilding the index from the log"
    );
    checkpoint::discard(fs.as_ref(), &stale.dir)?;
    let info = stale.info.clone();
    let hnsw = Hnsw::new(&info.config, config.index_shards())?;
    let space = Arc::new(build_space(fs, config, registry, info.clone(), hnsw, 0));
    registry.by_no.write().insert(info.no, Arc::clone(&space));
    for lsn in 1..=last {
        let body = match log.read(info.no, lsn) {
            Ok(body) => body,
            // Compacted away: a dead memory or a forget record (kept out of "all").
            Err(Error::Forgotten { .. }) => {
                space.attrs.write().push_control(lsn, i64::MIN);
                space.fresh.skip(lsn);
                continue;
            }
            Err(e) => return Err(e),
        };
        let c = Committed {
            space: info.no,
            lsn,
            body: &body,
            hint: 0,
        };
        recover_record(registry, &space, c, config.index_batch, &config.data_dir)?;
    }
    Ok(space)
}

/// A space's in-memory state around its graph (`hnsw`, holding every LSN up to
/// `ckpt`).
pub(super) fn build_space(
    fs: &Arc<dyn FileSystem>,
    config: &EngineConfig,
    registry: &Registry,
    info: SpaceInfo,
    hnsw: Hnsw,
    ckpt: Lsn,
) -> Space {
    let dir = space_dir(&config.data_dir, info.no);
    let rows = config.fresh_rows(info.config.dim, info.config.index.precision);
    let warm_rows = config.warm_rows(info.config.dim);
    Space::new(
        Arc::clone(fs),
        info,
        dir,
        hnsw,
        ckpt,
        (rows, warm_rows),
        Arc::clone(&registry.recalls),
    )
}

fn remove_dropped_space_dirs(fs: &dyn FileSystem, data: &Path, catalog: &Catalog) -> Result<()> {
    let live: HashSet<String> = catalog.spaces.iter().map(|s| s.no.0.to_string()).collect();
    let dir = data.join("spaces");
    for name in fs.list_dir(&dir).at(&dir)? {
        if !live.contains(&name) {
            let p = dir.join(&name);
            tracing::info!(path = %p.display(), "removing data of a dropped space");
            fs.remove_dir_all(&p).at(&p)?;
        }
    }
    Ok(())
}

/// Takes one record recovered from the log into its space: only its session mark if
/// the loaded checkpoint holds it, else into the fresh tier and the index queue
/// (any overflow goes on at once into the warm tier or the graph, so recovery
/// memory stays bounded).
pub(super) fn recover_record(
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
    match record::kind(c.body) {
        record::Kind::Lost => {
            space.mark_lost(c.lsn);
            return Ok(());
        }
        record::Kind::Forget => {
            let rec = ForgetRecord::decode(c.body).map_err(corrupt)?;
            space.apply_forget(c.lsn, &rec);
            return Ok(());
        }
        _ => {}
    }
    if space.in_checkpoint(c.lsn) {
        let attrs = ObservationRecord::decode_attrs(c.body).map_err(corrupt)?;
        space.track_session(attrs.session_id, attrs.session_seq, c.lsn);
        space.attrs.write().push(c.lsn, Some(&attrs));
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
        // Into the warm tier when it takes them: far cheaper than the graph.
        workers::index_items(space, &items, 0)?;
        workers::retire(registry, &items);
    }
    Ok(())
}
