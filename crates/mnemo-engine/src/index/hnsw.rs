//! The HNSW graph of one space, on `usearch`. Keys are LSNs.
//!
//! Two defects of usearch 2.26 shape the locking (both reproduced here, see
//! docs/benchmarks.md, "usearch and concurrency"):
//! - `add` on several threads at once strands nodes: stored, but unreachable by any
//!   search (upstream issue #735; up to 15 of 900 nodes per build with 2 threads).
//! - `search` while an `add` moves the entry point can read an unwritten node and
//!   crash the process (SIGSEGV in `search_to_find_in_base_`).
//!
//! A lost node is a lost memory and a crash is an outage, so: inserts are serialised
//! by `add_lock` and each single `add` holds `index` exclusively, while searches hold
//! it shared (a search waits for at most one insert, ~1 ms at 768-d: each insert
//! releases the lock fairly, so waiting searches go before the next insert). Growth also
//! holds `index` exclusively. Checkpoint saves hold `add_lock` (searches go on).
//! Parallel indexing of one space comes from shards: a space's index is several
//! graphs (by default one per index worker, up to 8), each taking one insert at a
//! time; a search visits them all and merges.

use parking_lot::{Condvar, Mutex, RwLock, RwLockWriteGuard};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::gate::RecallGate;
use crate::error::{Error, Result};
use crate::io::FileSystem;
use crate::types::{IndexParams, Lsn, Metric, Precision, SpaceConfig};

/// Concurrent calls allowed into one index (usearch thread slots).
const SLOTS: usize = 64;
/// Smallest capacity reserved.
const MIN_CAPACITY: usize = 1024;
/// A counting semaphore for usearch thread slots.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.cv.wait(&mut free);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.cv.notify_one();
    }
}

/// A vector for the graph: f32, or f16 as IEEE bits (what an f16 or i8 graph
/// stores anyway, at half the memory while it waits in the fresh tier).
#[derive(Debug, Clone, Copy)]
pub(crate) enum VectorRef<'a> {
    F32(&'a [f32]),
    F16(&'a [i16]),
}

impl VectorRef<'_> {
    fn len(&self) -> usize {
        match self {
            VectorRef::F32(v) => v.len(),
            VectorRef::F16(v) => v.len(),
        }
    }
}

/// One graph.
struct Shard {
    index: RwLock<usearch::Index>,
    add_lock: Mutex<()>,
    slots: Slots,
    dim: usize,
    /// While the shard is being rebuilt: keys removed meanwhile (taken out of the
    /// new graph before it replaces the old one).
    removed_while_rebuilding: Mutex<Option<Vec<Lsn>>>,
}

fn options(config: &SpaceConfig) -> usearch::IndexOptions {
    let IndexParams {
        m,
        ef_construction,
        ef_search,
        precision,
    } = config.index;
    usearch::IndexOptions {
        dimensions: config.dim as usize,
        metric: match config.metric {
            Metric::Cosine => usearch::MetricKind::Cos,
            Metric::L2 => usearch::MetricKind::L2sq,
            Metric::InnerProduct => usearch::MetricKind::IP,
        },
        quantization: match precision {
            Precision::F32 => usearch::ScalarKind::F32,
            Precision::F16 => usearch::ScalarKind::F16,
            Precision::I8 => usearch::ScalarKind::I8,
        },
        connectivity: m as usize,
        expansion_add: ef_construction as usize,
        expansion_search: ef_search as usize,
        multi: false,
    }
}

fn index_err(e: impl std::fmt::Display) -> Error {
    Error::Index(e.to_string())
}

impl Shard {
    /// An empty index for `config`, one of `shards`.
    fn new(config: &SpaceConfig) -> Result<Self> {
        let index = usearch::Index::new(&options(config)).map_err(index_err)?;
        // Every shard searches with the space's whole `ef_search`: a shard holds a
        // share of the rows, but its own top k needs the same effort as one graph's
        // (splitting it among two shards cost recall@10 0.98 → 0.90 at 300K × 768
        // for no measurable latency; docs/benchmarks.md, session 8).
        index.change_expansion_search(config.index.ef_search as usize);
        index
            .reserve_capacity_and_threads(MIN_CAPACITY, SLOTS)
            .map_err(index_err)?;
        Ok(Self::wrap(index, config))
    }

    /// Loads a saved index; checks it matches `config`.
    fn load(path: &Path, config: &SpaceConfig) -> Result<Self> {
        let index = usearch::Index::new(&options(config)).map_err(index_err)?;
        index.load(&path.to_string_lossy()).map_err(index_err)?;
        if index.dimensions() != config.dim as usize {
            return Err(Error::Index(format!(
                "checkpoint has {} dimensions, the space {}",
                index.dimensions(),
                config.dim
            )));
        }
        // Expansion factors are not stored in the file.
        index.change_expansion_add(config.index.ef_construction as usize);
        // Every shard searches with the space's whole `ef_search`: a shard holds a
        // share of the rows, but its own top k needs the same effort as one graph's
        // (splitting it among two shards cost recall@10 0.98 → 0.90 at 300K × 768
        // for no measurable latency; docs/benchmarks.md, session 8).
        index.change_expansion_search(config.index.ef_search as usize);
        let cap = (index.size() * 2).max(MIN_CAPACITY);
        index
            .reserve_capacity_and_threads(cap, SLOTS)
            .map_err(index_err)?;
        Ok(Self::wrap(index, config))
    }

    fn wrap(index: usearch::Index, config: &SpaceConfig) -> Self {
        Shard {
            index: RwLock::new(index),
            add_lock: Mutex::new(()),
            slots: Slots {
                free: Mutex::new(SLOTS),
                cv: Condvar::new(),
            },
            dim: config.dim as usize,
            removed_while_rebuilding: Mutex::new(None),
        }
    }

    /// Nodes whose key was removed (their slots wait for reuse by later inserts).
    fn freed(&self) -> usize {
        let index = self.index.read();
        index.stats().nodes.saturating_sub(index.size())
    }

    /// Builds a new graph of the keys among `candidates` this one holds (their
    /// vectors as stored) and puts it in place of this one: removed nodes' slots,
    /// and their vectors, are gone. Inserts into this shard wait meanwhile (the
    /// other shards take them); searches go on in the old graph.
    fn rebuild(&self, config: &SpaceConfig, candidates: &[Lsn]) -> Result<usize> {
        let _no_adds = self.add_lock.lock();
        *self.removed_while_rebuilding.lock() = Some(Vec::new());
        let built = (|| -> Result<usearch::Index> {
            let fresh = usearch::Index::new(&options(config)).map_err(index_err)?;
            fresh.change_expansion_add(config.index.ef_construction as usize);
            fresh.change_expansion_search(config.index.ef_search as usize);
            let want = self.len() + self.len() / 4 + MIN_CAPACITY;
            fresh
                .reserve_capacity_and_threads(want, SLOTS)
                .map_err(index_err)?;
            let mut buf = vec![0f32; self.dim];
            for part in candidates.chunks(1024) {
                let mut rows: Vec<(Lsn, Vec<f32>)> = Vec::new();
                {
                    let index = self.index.read();
                    for &lsn in part {
                        if index.get(lsn, &mut buf).is_ok_and(|n| n > 0) {
                            rows.push((lsn, buf.clone()));
                        }
                    }
                }
                for (lsn, v) in rows {
                    if fresh.size() >= fresh.capacity() {
                        fresh
                            .reserve_capacity_and_threads(fresh.capacity() * 2, SLOTS)
                            .map_err(index_err)?;
                    }
                    fresh.add(lsn, &v).map_err(index_err)?;
                }
            }
            Ok(fresh)
        })();
        let removed = self
            .removed_while_rebuilding
            .lock()
            .take()
            .unwrap_or_default();
        let fresh = built?;
        let mut index = self.index.write();
        for lsn in removed {
            let _ = fresh.remove(lsn);
        }
        *index = fresh;
        Ok(index.size())
    }

    /// Records in the graph.
    fn len(&self) -> usize {
        self.index.read().size()
    }

    /// True if `lsn` is in the graph.
    fn contains(&self, lsn: Lsn) -> bool {
        self.index.read().contains(lsn)
    }

    /// Makes room for `extra` more records, growing geometrically.
    fn ensure_capacity(&self, extra: usize) -> Result<()> {
        {
            let index = self.index.read();
            if index.size() + extra <= index.capacity() {
                return Ok(());
            }
        }
        let index = self.index.write();
        let need = index.size() + extra;
        if need > index.capacity() {
            let started = std::time::Instant::now();
            let cap = need.max(index.capacity() * 2).max(MIN_CAPACITY);
            index
                .reserve_capacity_and_threads(cap, SLOTS)
                .map_err(index_err)?;
            tracing::debug!(
                capacity = cap,
                took_us = started.elapsed().as_micros() as u64,
                "graph grown"
            );
        }
        Ok(())
    }

    /// Inserts a batch of `(lsn, vector)`; the caller holds `add_lock`. A key
    /// already present is skipped. Each insert first yields to recalls in progress.
    fn add_locked(&self, rows: &[(Lsn, VectorRef<'_>)], gate: &RecallGate) -> Result<()> {
        self.ensure_capacity(rows.len())?;
        let mut yielder = gate.yielder();
        for (lsn, v) in rows {
            yielder.before_insert();
            if v.len() != self.dim {
                return Err(Error::Index(format!(
                    "vector of {} dims for a {}-d index",
                    v.len(),
                    self.dim
                )));
            }
            let t0 = std::time::Instant::now();
            let c0 = crate::thread_sched::thread_cpu_ns();
            let index = self.index.write();
            let t1 = t0.elapsed();
            let added = match v {
                VectorRef::F32(v) => index.add(*lsn, v),
                VectorRef::F16(v) => index.add(*lsn, usearch::f16::from_i16s(v)),
            };
            if let Err(e) = added
                && !index.contains(*lsn)
            {
                return Err(index_err(e));
            }
            // Hand the lock to searches already waiting: a plain unlock lets this loop
            // take it straight back for the next insert, and a search can then wait out
            // a whole batch of inserts instead of at most one.
            RwLockWriteGuard::unlock_fair(index);
            let wall = t0.elapsed();
            if wall.as_millis() >= 5 {
                tracing::debug!(
                    lockwait_us = t1.as_micros() as u64,
                    wall_us = wall.as_micros() as u64,
                    cpu_us = (crate::thread_sched::thread_cpu_ns() - c0) / 1000,
                    active = gate.active(),
                    "slow insert"
                );
            }
        }
        Ok(())
    }

    /// Approximate top-`k` among keys accepted by `filter`: `(lsn, distance)`.
    fn search(
        &self,
        cue: &[f32],
        k: usize,
        filter: &(dyn Fn(Lsn) -> bool + Sync),
    ) -> Result<Vec<(Lsn, f32)>> {
        self.search_in(&self.index.read(), cue, k, filter)
    }

    /// [`Shard::search`] in `index`, this shard's graph, already locked for reading.
    fn search_in(
        &self,
        index: &usearch::Index,
        cue: &[f32],
        k: usize,
        filter: &(dyn Fn(Lsn) -> bool + Sync),
    ) -> Result<Vec<(Lsn, f32)>> {
        if index.size() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let _slot = self.slots.acquire();
        let m = index.filtered_search(cue, k, filter).map_err(index_err)?;
        Ok(m.keys.into_iter().zip(m.distances).collect())
    }

    /// Writes the index to `path` (inserts wait; searches continue) and returns how
    /// many records the file holds, counted under the same lock.
    fn save(&self, path: &Path) -> Result<usize> {
        let _no_adds = self.add_lock.lock();
        let index = self.index.read();
        index.save(&path.to_string_lossy()).map_err(index_err)?;
        Ok(index.size())
    }

    /// Bytes of memory the index has reserved.
    fn memory_bytes(&self) -> usize {
        self.index.read().memory_usage()
    }
}

/// The HNSW index of one space: one or more shards (graphs). Each shard takes one
/// insert at a time (see the module docs), so shards are what lets several workers
/// index one space at once; a search visits every shard and merges the results.
pub(crate) struct Hnsw {
    shards: Vec<Shard>,
    /// Where the next insert starts looking for a free shard.
    next: AtomicUsize,
}

impl Hnsw {
    /// An empty index of `shards` graphs (at least 1).
    pub(crate) fn new(config: &SpaceConfig, shards: usize) -> Result<Self> {
        let count = shards.max(1);
        let shards = (0..count)
            .map(|_| Shard::new(config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Hnsw {
            shards,
            next: AtomicUsize::new(0),
        })
    }

    /// Loads one shard per file; checks each matches `config`.
    pub(crate) fn load(
        fs: &dyn FileSystem,
        paths: &[PathBuf],
        config: &SpaceConfig,
    ) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::Index("a checkpoint names no index file".into()));
        }
        let shards = paths
            .iter()
            .map(|p| {
                let mut shard = None;
                fs.read_via_path(p, &mut |real| {
                    shard = Some(Shard::load(real, config)?);
                    Ok(())
                })?;
                shard.ok_or_else(|| Error::Index(format!("{} was not loaded", p.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Hnsw {
            shards,
            next: AtomicUsize::new(0),
        })
    }

    /// Number of shards.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Records in the index.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// True if `lsn` is in some shard.
    pub(crate) fn contains(&self, lsn: Lsn) -> bool {
        self.shards.iter().any(|s| s.contains(lsn))
    }

    /// Scores `cue` (prepared for `metric`) against the stored vector (at the
    /// graph's precision) of each of `lsns` that is in the graph, into `found`;
    /// each shard is read-locked once and asked only for what the others lacked.
    /// Returns those of `lsns` that are not in the graph.
    pub(crate) fn score_lsns(
        &self,
        lsns: &[Lsn],
        cue: &[f32],
        metric: Metric,
        found: &mut Vec<(Lsn, f32)>,
    ) -> Vec<Lsn> {
        let mut buf = vec![0f32; cue.len()];
        let mut left: Vec<Lsn> = lsns.to_vec();
        for shard in &self.shards {
            let index = shard.index.read();
            left.retain(|&lsn| {
                if !index.get(lsn, &mut buf).is_ok_and(|n| n > 0) {
                    return true;
                }
                let s = match metric {
                    Metric::Cosine => {
                        let norm = crate::index::score::dot(&buf, &buf).sqrt();
                        let d = crate::index::score::dot(cue, &buf);
                        if norm > 0.0 { d / norm } else { 0.0 }
                    }
                    Metric::InnerProduct => crate::index::score::dot(cue, &buf),
                    Metric::L2 => -crate::index::score::l2sq(cue, &buf),
                };
                found.push((lsn, s));
                false
            });
            if left.is_empty() {
                break;
            }
        }
        left
    }

    /// Inserts a batch of `(lsn, vector)` into a shard no other insert is using (or
    /// waits for one). A key already in the chosen shard is skipped; with
    /// `check_all_shards` (a retried batch) keys present in any shard are skipped.
    /// The check is opt-in because looking into a shard waits for its current insert.
    /// Before each insert the worker yields to recalls in progress on `gate`.
    pub(crate) fn add_batch(
        &self,
        rows: &[(Lsn, VectorRef<'_>)],
        check_all_shards: bool,
        gate: &RecallGate,
    ) -> Result<()> {
        let rows: Vec<(Lsn, VectorRef<'_>)> = rows
            .iter()
            .copied()
            .filter(|(lsn, _)| !(check_all_shards && self.contains(*lsn)))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let n = self.shards.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            let shard = &self.shards[(start + k) % n];
            if let Some(_adding) = shard.add_lock.try_lock() {
                return shard.add_locked(&rows, gate);
            }
        }
        let shard = &self.shards[start];
        let _adding = shard.add_lock.lock();
        shard.add_locked(&rows, gate)
    }

    /// Approximate top-`k` among keys accepted by `filter`, over all shards:
    /// `(lsn, distance)`, nearest first.
    pub(crate) fn search(
        &self,
        cue: &[f32],
        k: usize,
        filter: &(dyn Fn(Lsn) -> bool + Sync),
    ) -> Result<Vec<(Lsn, f32)>> {
        if self.shards.len() == 1 {
            return self.shards[0].search(cue, k, filter);
        }
        let mut all = Vec::with_capacity(k * self.shards.len());
        // Shards with no insert under way first; by the time those are searched, the
        // inserts holding the others have often finished. On this thread: a thread
        // per shard costs a wake-up each, and on a busy machine each wake-up can wait
        // a scheduler tick, more than a shard's search takes.
        let mut busy = Vec::new();
        for shard in &self.shards {
            match shard.index.try_read() {
                Some(index) => all.extend(shard.search_in(&index, cue, k, filter)?),
                None => busy.push(shard),
            }
        }
        for shard in busy {
            all.extend(shard.search(cue, k, filter)?);
        }
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        Ok(all)
    }

    /// Writes shard `i` to `paths[i]` (inserts into that shard wait; searches go on).
    /// Returns the records each file holds: inserts go on into the shards already
    /// written while the others are saved, so the counts are taken file by file.
    pub(crate) fn save(&self, fs: &dyn FileSystem, paths: &[PathBuf]) -> Result<Vec<usize>> {
        if paths.len() != self.shards.len() {
            return Err(Error::Index(format!(
                "{} paths for {} shards",
                paths.len(),
                self.shards.len()
            )));
        }
        self.shards
            .iter()
            .zip(paths)
            .map(|(shard, path)| {
                let mut count = 0;
                fs.write_via_path(path, &mut |real| {
                    count = shard.save(real)?;
                    Ok(())
                })?;
                Ok(count)
            })
            .collect()
    }

    /// Bytes of memory the shards have reserved.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.shards.iter().map(Shard::memory_bytes).sum()
    }

    /// Rebuilds (see `Shard::rebuild`), one at a time, the shards where at least
    /// `share` of the nodes (and at least 1,024) are removed ones; `candidates` are
    /// every key the graph may hold. Returns how many shards were rebuilt.
    pub(crate) fn rebuild_sparse(
        &self,
        config: &SpaceConfig,
        candidates: &[Lsn],
        share: f64,
    ) -> Result<u64> {
        let mut rebuilt = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            let freed = shard.freed();
            let nodes = shard.len() + freed;
            if freed < 1024 || (freed as f64) < share * nodes as f64 {
                continue;
            }
            let started = std::time::Instant::now();
            let kept = shard.rebuild(config, candidates)?;
            tracing::info!(
                shard = i,
                freed,
                kept,
                took_s = started.elapsed().as_secs_f64(),
                "rebuilt a graph shard without its removed nodes"
            );
            rebuilt += 1;
        }
        Ok(rebuilt)
    }

    /// Takes `lsns` out of every shard that holds them; returns how many were
    /// found. A removed node's slot is reused by a later insert (which overwrites
    /// its vector); until then searches pass through it but never return it.
    /// Removals hold a shard exclusively a slice at a time, so searches wait for
    /// at most one slice.
    pub(crate) fn remove(&self, lsns: &roaring::RoaringTreemap) -> Result<u64> {
        const SLICE: usize = 512;
        let all: Vec<Lsn> = lsns.iter().collect();
        let mut removed = 0u64;
        for shard in &self.shards {
            // An insert holds the graph exclusively too: no `add_lock` needed (a
            // rebuild holds that one for minutes).
            if let Some(during) = shard.removed_while_rebuilding.lock().as_mut() {
                during.extend_from_slice(&all);
            }
            for part in all.chunks(SLICE) {
                let index = shard.index.write();
                for &lsn in part {
                    if index.contains(lsn) {
                        removed += index.remove(lsn).map_err(index_err)? as u64;
                    }
                }
                RwLockWriteGuard::unlock_fair(index);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_search_filter_save_load() {
        let cfg = SpaceConfig {
            metric: Metric::L2,
            index: IndexParams {
                precision: Precision::F32,
                ..Default::default()
            },
            ..SpaceConfig::new(4)
        };
        let h = Hnsw::new(&cfg, 2).unwrap();
        let rows: Vec<(Lsn, Vec<f32>)> = (1..=3000)
            .map(|i| (i, vec![i as f32, 0.0, 0.0, 0.0]))
            .collect();
        let refs: Vec<(Lsn, VectorRef<'_>)> =
            rows.iter().map(|(l, v)| (*l, VectorRef::F32(v))).collect();
        let gate = RecallGate::default();
        h.add_batch(&refs, false, &gate).unwrap();
        h.add_batch(&refs[..10], true, &gate).unwrap(); // re-adding is harmless
        assert_eq!(h.len(), 3000);
        let got = h.search(&[2000.0, 0.0, 0.0, 0.0], 3, &|_| true).unwrap();
        assert_eq!(got[0].0, 2000);
        let got = h
            .search(&[2000.0, 0.0, 0.0, 0.0], 3, &|l| l <= 1500)
            .unwrap();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![1500, 1499, 1498]
        );
        let dir = tempfile::tempdir().unwrap();
        let p = vec![dir.path().join("i0.usearch"), dir.path().join("i1.usearch")];
        h.save(&crate::io::StdFs, &p).unwrap();
        let back = Hnsw::load(&crate::io::StdFs, &p, &cfg).unwrap();
        assert_eq!(back.shard_count(), 2);
        assert_eq!(back.len(), 3000);
        assert!(back.contains(42));
        assert_eq!(
            back.search(&[7.0, 0.0, 0.0, 0.0], 1, &|_| true).unwrap()[0].0,
            7
        );
        // Removed keys are never found again, and their slots are reused.
        let gone: roaring::RoaringTreemap = (1..=1500).collect();
        assert_eq!(back.remove(&gone).unwrap(), 1500);
        assert_eq!(back.len(), 1500);
        assert!(!back.contains(42));
        let got = back.search(&[7.0, 0.0, 0.0, 0.0], 3, &|_| true).unwrap();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![1501, 1502, 1503]
        );
        let again: Vec<(Lsn, Vec<f32>)> = (5001..=5100)
            .map(|i| (i, vec![i as f32, 0.0, 0.0, 0.0]))
            .collect();
        let refs: Vec<(Lsn, VectorRef<'_>)> =
            again.iter().map(|(l, v)| (*l, VectorRef::F32(v))).collect();
        back.add_batch(&refs, false, &gate).unwrap();
        assert_eq!(back.len(), 1600);
        // A shard with many removed nodes is rebuilt without them.
        let gone: roaring::RoaringTreemap = (1501..=2800).collect();
        back.remove(&gone).unwrap();
        let candidates: Vec<Lsn> = (1..=5100).collect();
        assert_eq!(back.rebuild_sparse(&cfg, &candidates, 0.25).unwrap(), 1);
        assert_eq!(back.len(), 300);
        assert!(back.shards.iter().all(|s| s.freed() == 0));
        let got = back.search(&[2900.0, 0.0, 0.0, 0.0], 2, &|_| true).unwrap();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![2900, 2901]
        );
        assert_eq!(back.rebuild_sparse(&cfg, &candidates, 0.25).unwrap(), 0);
    }
}
#[cfg(test)]
mod concurrency_tests {
    use super::*;
    use std::sync::Arc;

    fn vectors(seed: u64, n: u64, dim: usize) -> Vec<(Lsn, Vec<f32>)> {
        (1..=n)
            .zip(crate::index::test_noise(seed, n as usize, dim))
            .collect()
    }

    /// Two threads inserting through `add_batch` (one shard: serialised; two shards:
    /// in parallel) while a third searches: every node must stay reachable by its own
    /// vector, and none is stored twice.
    #[test]
    fn concurrent_add_batch_keeps_every_node_reachable() {
        for round in 0..8u64 {
            let cfg = SpaceConfig::new(12);
            let h = Arc::new(Hnsw::new(&cfg, 1 + (round as usize % 2)).unwrap());
            let rows = Arc::new(vectors(round + 1, 1500, 12));
            let writers: Vec<_> = (0..2)
                .map(|t| {
                    let (h, rows) = (h.clone(), rows.clone());
                    std::thread::spawn(move || {
                        for chunk in rows.chunks(64).skip(t).step_by(2) {
                            let refs: Vec<(Lsn, VectorRef<'_>)> =
                                chunk.iter().map(|(l, v)| (*l, VectorRef::F32(v))).collect();
                            h.add_batch(&refs, false, &RecallGate::default()).unwrap();
                        }
                    })
                })
                .collect();
            let searcher = {
                let (h, rows) = (h.clone(), rows.clone());
                std::thread::spawn(move || {
                    for (_, v) in rows.iter().step_by(7) {
                        h.search(v, 5, &|_| true).unwrap();
                    }
                })
            };
            for w in writers {
                w.join().unwrap();
            }
            searcher.join().unwrap();
            assert_eq!(h.len(), 1500);
            let lost: Vec<Lsn> = rows
                .iter()
                .filter(|(l, v)| h.search(v, 1, &|_| true).unwrap()[0].0 != *l)
                .map(|r| r.0)
                .collect();
            assert!(lost.is_empty(), "round {round}: unreachable nodes {lost:?}");
        }
    }

    /// A graph with half its nodes removed, rebuilt without them, finds what is
    /// left at least as well as before the removals (clustered data: brute force
    /// gives the truth).
    #[test]
    fn a_rebuilt_shard_keeps_recall() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let dim = 48;
        let cfg = SpaceConfig::new(dim as u32);
        let h = Hnsw::new(&cfg, 2).unwrap();
        let mut r = StdRng::seed_from_u64(5);
        let centres: Vec<Vec<f32>> = (0..32)
            .map(|_| (0..dim).map(|_| r.random_range(-1.0..1.0)).collect())
            .collect();
        let rows: Vec<(Lsn, Vec<f32>)> = (1..=12_000u64)
            .map(|l| {
                let c = &centres[l as usize % centres.len()];
                (l, c.iter().map(|x| x + r.random_range(-0.5..0.5)).collect())
            })
            .collect();
        for part in rows.chunks(500) {
            let refs: Vec<(Lsn, VectorRef<'_>)> =
                part.iter().map(|(l, v)| (*l, VectorRef::F32(v))).collect();
            h.add_batch(&refs, false, &RecallGate::default()).unwrap();
        }
        let cos = |a: &[f32], b: &[f32]| {
            let (mut d, mut na, mut nb) = (0.0, 0.0, 0.0);
            for (x, y) in a.iter().zip(b) {
                d += x * y;
                na += x * x;
                nb += y * y;
            }
            d / (na * nb).sqrt()
        };
        let kept: Vec<&(Lsn, Vec<f32>)> = rows.iter().filter(|(l, _)| l % 2 == 1).collect();
        let cues: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                centres[i % 32]
                    .iter()
                    .map(|x| x + r.random_range(-0.3..0.3))
                    .collect()
            })
            .collect();
        let recall = |h: &Hnsw| {
            let mut found = 0;
            for q in &cues {
                let mut exact: Vec<(f32, Lsn)> =
                    kept.iter().map(|(l, v)| (cos(q, v), *l)).collect();
                exact.sort_by(|a, b| b.0.total_cmp(&a.0));
                let want: Vec<Lsn> = exact[..10].iter().map(|x| x.1).collect();
                let got = h.search(q, 10, &|l| l % 2 == 1).unwrap();
                found += got.iter().filter(|(l, _)| want.contains(l)).count();
            }
            found as f64 / (10 * cues.len()) as f64
        };
        let filtered = recall(&h);
        let even: roaring::RoaringTreemap =
            rows.iter().map(|r| r.0).filter(|l| l % 2 == 0).collect();
        assert_eq!(h.remove(&even).unwrap(), 6000);
        let removed = recall(&h);
        let candidates: Vec<Lsn> = kept.iter().map(|r| r.0).collect();
        assert_eq!(h.rebuild_sparse(&cfg, &candidates, 0.3).unwrap(), 2);
        assert_eq!(h.len(), 6000);
        let rebuilt = recall(&h);
        eprintln!("recall@10: filtered {filtered:.3}, removed {removed:.3}, rebuilt {rebuilt:.3}");
        assert!(
            rebuilt >= removed - 0.02 && rebuilt > 0.9,
            "{filtered} {removed} {rebuilt}"
        );
    }
}
