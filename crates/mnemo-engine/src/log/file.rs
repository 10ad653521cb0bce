//! [`FileLog`]: segment files in one directory, written by one group-commit thread.
//!
//! Lock order: `spaces` before `segments`; neither is held across I/O except
//! `pread` on an `Arc<File>` cloned out of `segments`.

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::config::LogConfig;
use super::free_space::FreeSpace;
use super::recovery::{ResumeAt, recover_segment};
use super::seg_index::{IndexEntry, write_index};
use super::segment::{RecordPos, Segment, create_segment, list_segments};
use super::writer::{AppendRequest, FollowRequest, Request, writer_loop};
use super::{AppendTicket, CommitSink, Committed, Log, LogStats, frame};
use crate::error::{Error, IoContext, Result};
use crate::io::{FileSystem, StdFs};
use crate::lsn_vec::LsnVec;
use crate::types::{Lsn, SpaceNo};

/// State shared by the log handle and its writer thread.
pub(super) struct Shared {
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
    pub(super) config: LogConfig,
    /// Per live space: positions of its records by LSN, from the oldest the log
    /// still holds (compaction cuts the front: see [`Shared::trim_positions`]).
    pub(super) spaces: RwLock<HashMap<SpaceNo, LsnVec<RecordPos>>>,
    pub(super) segments: RwLock<BTreeMap<u32, Segment>>,
    pub(super) poisoned: Mutex<Option<String>>,
    pub(super) sink: Arc<dyn CommitSink>,
    pub(super) pending_appends: AtomicU64,
    pub(super) pending_bytes: AtomicU64,
    pub(super) group_commits: AtomicU64,
    pub(super) records_committed: AtomicU64,
    pub(super) free: FreeSpace,
    /// At open: sealed segments read through their index, and segments scanned.
    pub(super) opened_by_index: u64,
    pub(super) opened_by_scan: u64,
    /// One compaction at a time.
    pub(super) compacting: Mutex<()>,
    /// Distributed mode: the shared log each group commit goes to first.
    pub(super) replicator: std::sync::OnceLock<Arc<dyn super::Replicator>>,
}

/// The local-disk [`Log`].
pub struct FileLog {
    shared: Arc<Shared>,
    tx: RwLock<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl FileLog {
    /// Opens (or creates) the log in `dir` on the real file system; see
    /// [`FileLog::open_in`].
    pub fn open(
        dir: &Path,
        config: LogConfig,
        live: &HashSet<SpaceNo>,
        recovered: &mut dyn FnMut(Committed<'_>),
        sink: Arc<dyn CommitSink>,
    ) -> Result<FileLog> {
        Self::open_in(Arc::new(StdFs), dir, config, live, recovered, sink)
    }

    /// Opens (or creates) the log in `dir` on `fs`, recovering what is there.
    ///
    /// Every valid record of a space in `live` is passed to `recovered` in log order.
    /// A torn tail of the last segment (damage with no valid frame after it) is
    /// copied to `quarantine/` and cut; damage with valid frames after it, or in a
    /// sealed segment, is [`Error::Corruption`] naming the file and offset, and
    /// nothing is cut (`mnemo repair` re-synchronises past it). Segments holding no
    /// live space's records are deleted.
    pub fn open_in(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: LogConfig,
        live: &HashSet<SpaceNo>,
        recovered: &mut dyn FnMut(Committed<'_>),
        sink: Arc<dyn CommitSink>,
    ) -> Result<FileLog> {
        let resume: HashMap<SpaceNo, ResumeAt> =
            live.iter().map(|s| (*s, ResumeAt::default())).collect();
        Self::open_resuming(fs, dir, config, &resume, recovered, sink)
    }

    /// [`FileLog::open_in`] for spaces with checkpoints: `resume` says for each
    /// live space from which LSN its records are passed to `recovered`, and up to
    /// which LSN records may have been compacted away. Sealed segments with a valid
    /// index are not scanned.
    pub fn open_resuming(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: LogConfig,
        resume: &HashMap<SpaceNo, ResumeAt>,
        recovered: &mut dyn FnMut(Committed<'_>),
        sink: Arc<dyn CommitSink>,
    ) -> Result<FileLog> {
        config.validate()?;
        fs.create_dir_all(dir).at(dir)?;
        // A compaction's copy left by a crash before its rename: the original holds
        // everything.
        for name in fs.list_dir(dir).at(dir)? {
            if name.ends_with(".seg.compact") {
                let p = dir.join(&name);
                tracing::info!(path = %p.display(), "removing an unfinished compaction");
                fs.remove_file(&p).at(&p)?;
            }
        }
        let numbers = list_segments(fs.as_ref(), dir)?;
        let mut spaces: HashMap<SpaceNo, LsnVec<RecordPos>> =
            resume.keys().map(|s| (*s, LsnVec::default())).collect();
        let mut segments = BTreeMap::new();
        let mut scratch = Vec::new();
        let (mut by_index, mut by_scan) = (0, 0);
        for (i, &no) in numbers.iter().enumerate() {
            let is_last = i + 1 == numbers.len();
            let seg = recover_segment(
                fs.as_ref(),
                dir,
                no,
                is_last,
                &mut scratch,
                &mut spaces,
                resume,
                recovered,
            )?;
            if seg.indexed && !seg.scanned {
                by_index += 1;
            } else {
                by_scan += 1;
            }
            segments.insert(no, seg);
        }

        if segments.is_empty() {
            segments.insert(0, create_segment(fs.as_ref(), dir, 0)?);
        }

        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            config,
            spaces: RwLock::new(spaces),
            segments: RwLock::new(segments),
            poisoned: Mutex::new(None),
            sink,
            pending_appends: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            group_commits: AtomicU64::new(0),
            records_committed: AtomicU64::new(0),
            free: FreeSpace::new(),
            opened_by_index: by_index,
            opened_by_scan: by_scan,
            compacting: Mutex::new(()),
            replicator: std::sync::OnceLock::new(),
        });
        shared.reclaim_segments()?;
        let (tx, rx) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let nice = shared.config.writer_nice;
        let writer = std::thread::Builder::new()
            .name("mnemo-log-writer".into())
            .spawn(move || {
                if let Err(error) = crate::lower_thread_priority(nice) {
                    tracing::warn!(nice, %error, "cannot lower the log writer's priority");
                }
                writer_loop(&writer_shared, &rx)
            })
            .map_err(|e| Error::io(dir, e))?;
        Ok(FileLog {
            shared,
            tx: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Makes `space`'s LSNs go on after `lsn` (at open: its last records were
    /// compacted away, and its checkpointed state holds them).
    pub fn extend_to(&self, space: SpaceNo, lsn: Lsn) {
        if let Some(positions) = self.shared.spaces.write().get_mut(&space)
            && positions.end() < lsn
        {
            if positions.is_empty() {
                *positions = LsnVec::starting_at(lsn);
            }
            positions.fill_to(lsn + 1, RecordPos::ABSENT);
        }
    }

    /// Distributed mode: from now on every group commit goes to `replicator` before
    /// it is written here. Set once, before the first append.
    pub fn set_replicator(&self, replicator: Arc<dyn super::Replicator>) -> Result<()> {
        self.shared
            .replicator
            .set(replicator)
            .map_err(|_| Error::invalid("the log has a replicator already"))
    }

    /// The distributed mode's replicator, if set.
    pub fn replicator(&self) -> Option<&Arc<dyn super::Replicator>> {
        self.shared.replicator.get()
    }

    /// Writes frames another node put in the shared log (see
    /// [`super::Replicator`]), after the appends queued before; resolves to how
    /// many records were new here. The records reach the sink's
    /// [`CommitSink::followed`].
    pub fn follow(&self, frames: Vec<u8>) -> AppendTicket {
        let (done, rx) = tokio::sync::oneshot::channel();
        let tx = self.tx.read();
        let Some(tx) = tx.as_ref() else {
            return AppendTicket::failed(Error::ShuttingDown);
        };
        if tx
            .send(Request::Follow(FollowRequest { frames, done }))
            .is_err()
        {
            return AppendTicket::failed(Error::ShuttingDown);
        }
        AppendTicket::pending(rx)
    }

    /// Seals the active segment (if it holds any frame) and starts a new one, after
    /// the appends queued before this call: the sealed one can then be compacted.
    pub fn rotate(&self) -> Result<()> {
        let (done, rx) = tokio::sync::oneshot::channel();
        {
            let tx = self.tx.read();
            let tx = tx.as_ref().ok_or(Error::ShuttingDown)?;
            tx.send(Request::Append(AppendRequest {
                space: SpaceNo(0),
                body: Vec::new(),
                hint: 0,
                done,
                rotate: true,
            }))
            .map_err(|_| Error::ShuttingDown)?;
        }
        rx.blocking_recv()
            .unwrap_or(Err(Error::ShuttingDown))
            .map(|_| ())
    }

    /// True if the active segment holds a frame of a live space that `pick` accepts.
    pub fn active_holds(&self, pick: &dyn Fn(SpaceNo, Lsn) -> bool) -> bool {
        let spaces = self.shared.spaces.read();
        let Some(active) = self.shared.segments.read().keys().next_back().copied() else {
            return false;
        };
        spaces.iter().any(|(&space, positions)| {
            positions
                .iter()
                .rev()
                .take_while(|(_, p)| p.segment == active || p.is_absent())
                .any(|(lsn, p)| p.segment == active && pick(space, lsn))
        })
    }

    /// Writes the index of every sealed segment that has none yet (segments sealed
    /// since open), so that the next open need not scan them. Returns how many.
    pub fn write_missing_indexes(&self) -> Result<u64> {
        let todo: Vec<(u32, u32, u64)> = {
            let segments = self.shared.segments.read();
            let active = segments.keys().next_back().copied();
            segments
                .iter()
                .filter(|(no, seg)| Some(**no) != active && !seg.indexed)
                .map(|(no, seg)| (*no, seg.generation, seg.len))
                .collect()
        };
        for &(no, generation, len) in &todo {
            let mut entries: Vec<IndexEntry> = {
                let spaces = self.shared.spaces.read();
                spaces
                    .iter()
                    .flat_map(|(space, positions)| {
                        positions
                            .iter()
                            .filter(|(_, p)| p.segment == no)
                            .map(|(lsn, p)| IndexEntry {
                                space: *space,
                                lsn,
                                offset: p.offset,
                                len: p.len,
                            })
                    })
                    .collect()
            };
            entries.sort_by_key(|e| e.offset);
            write_index(
                self.shared.fs.as_ref(),
                &self.shared.dir,
                no,
                generation,
                len,
                &entries,
            )?;
            if let Some(seg) = self.shared.segments.write().get_mut(&no)
                && seg.generation == generation
            {
                seg.indexed = true;
            }
        }
        Ok(todo.len() as u64)
    }

    /// Bytes of `space`'s records in the log: those `removable` does not accept,
    /// and those it does.
    pub fn space_bytes(&self, space: SpaceNo, removable: &dyn Fn(Lsn) -> bool) -> (u64, u64) {
        let spaces = self.shared.spaces.read();
        let (mut live, mut dead) = (0, 0);
        for (lsn, pos) in spaces.get(&space).into_iter().flat_map(LsnVec::iter) {
            if pos.is_absent() {
                continue;
            }
            if removable(lsn) {
                dead += u64::from(pos.len);
            } else {
                live += u64::from(pos.len);
            }
        }
        (live, dead)
    }

    /// The highest LSN of `space` whose record is in the log (not compacted away).
    pub fn highest_present(&self, space: SpaceNo) -> Lsn {
        let spaces = self.shared.spaces.read();
        spaces.get(&space).map_or(0, |p| {
            p.iter()
                .rev()
                .find(|(_, pos)| !pos.is_absent())
                .map_or(0, |(lsn, _)| lsn)
        })
    }
}

/// Cuts the positions of records compacted away from the front of each space's
/// list (keeping the last: it carries the next LSN), so the map's memory follows
/// what the log holds, not how many LSNs were ever written.
pub(super) fn trim_positions(spaces: &mut HashMap<SpaceNo, LsnVec<RecordPos>>) {
    for positions in spaces.values_mut() {
        let mut cut = positions.first();
        while cut < positions.end() && positions.get(cut).is_some_and(RecordPos::is_absent) {
            cut += 1;
        }
        positions.cut_below(cut);
    }
}

impl Shared {
    pub(super) fn poison(&self, why: String) {
        tracing::error!(why, "log poisoned: refusing further writes");
        self.poisoned.lock().get_or_insert(why);
    }

    /// Deletes sealed segments that hold no record of a live space.
    fn reclaim_segments(&self) -> Result<()> {
        let live: HashSet<SpaceNo> = self.spaces.read().keys().copied().collect();
        let mut segments = self.segments.write();
        let Some(&active) = segments.keys().next_back() else {
            return Ok(());
        };
        let dead: Vec<u32> = segments
            .iter()
            .filter(|(no, s)| **no != active && s.spaces.is_disjoint(&live))
            .map(|(no, _)| *no)
            .collect();
        for no in dead {
            if let Some(seg) = segments.remove(&no) {
                tracing::info!(path = %seg.path.display(), "reclaiming log segment");
                super::seg_index::remove_index(self.fs.as_ref(), &self.dir, no);
                self.fs.remove_file(&seg.path).at(&seg.path)?;
            }
        }
        drop(segments);
        self.fs.sync_dir(&self.dir).at(&self.dir)
    }
}

impl Log for FileLog {
    fn register_space(&self, space: SpaceNo) {
        self.shared.spaces.write().entry(space).or_default();
    }

    fn forget_space(&self, space: SpaceNo) -> Result<()> {
        self.shared.spaces.write().remove(&space);
        self.shared.reclaim_segments()
    }

    fn append_hinted(&self, space: SpaceNo, body: Vec<u8>, hint: u8) -> AppendTicket {
        let refuse = |e: Error| {
            self.shared.sink.not_committed(space, &body);
            AppendTicket::failed(e)
        };
        if body.len() + frame::PAYLOAD_HEADER > frame::MAX_PAYLOAD {
            return refuse(Error::invalid(format!(
                "record of {} bytes exceeds the log's frame limit",
                body.len()
            )));
        }
        if let Some(why) = self.shared.poisoned.lock().clone() {
            return refuse(Error::Poisoned(why));
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        let bytes = body.len() as u64;
        let tx = self.tx.read();
        let Some(tx) = tx.as_ref() else {
            return refuse(Error::ShuttingDown);
        };
        self.shared.pending_appends.fetch_add(1, Ordering::Relaxed);
        self.shared
            .pending_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        if let Err(mpsc::SendError(req)) = tx.send(Request::Append(AppendRequest {
            space,
            body,
            hint,
            done,
            rotate: false,
        })) {
            self.shared.pending_appends.fetch_sub(1, Ordering::Relaxed);
            self.shared
                .pending_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            if let Request::Append(req) = req {
                self.shared.sink.not_committed(space, &req.body);
            }
            return AppendTicket::failed(Error::ShuttingDown);
        }
        AppendTicket::pending(rx)
    }

    fn read(&self, space: SpaceNo, lsn: Lsn) -> Result<Vec<u8>> {
        // The position and the file are taken under the same `spaces` lock: a
        // compaction swaps both under it, so they always belong together.
        let (pos, file, path) = {
            let spaces = self.shared.spaces.read();
            let positions = spaces
                .get(&space)
                .ok_or_else(|| Error::SpaceNotFound(format!("#{}", space.0)))?;
            let pos = match positions.get(lsn) {
                Some(pos) => *pos,
                // Cut with the front of the log: compacted away.
                None if lsn > 0 && lsn < positions.first() => RecordPos::ABSENT,
                None => {
                    return Err(Error::invalid(format!(
                        "LSN {lsn} is not committed in space #{}",
                        space.0
                    )));
                }
            };
            if pos.is_absent() {
                return Err(Error::Forgotten {
                    space: format!("#{}", space.0),
                    lsn,
                });
            }
            let segments = self.shared.segments.read();
            let seg = segments
                .get(&pos.segment)
                .ok_or_else(|| Error::Corruption {
                    path: super::segment::segment_path(&self.shared.dir, pos.segment),
                    offset: u64::from(pos.offset),
                    detail: "segment of a live record is missing".into(),
                })?;
            (pos, Arc::clone(&seg.file), seg.path.clone())
        };
        let mut buf = vec![0u8; pos.len as usize];
        file.read_exact_at(&mut buf, u64::from(pos.offset))
            .at(&path)?;
        let corrupt = |detail: String| Error::Corruption {
            path: path.clone(),
            offset: u64::from(pos.offset),
            detail,
        };
        let f = frame::decode_frame(&buf).map_err(|e| corrupt(format!("{e:?}")))?;
        if f.space != space || f.lsn != lsn {
            return Err(corrupt(format!(
                "frame holds space {} LSN {}, expected {} / {lsn}",
                f.space.0, f.lsn, space.0
            )));
        }
        let header = frame::FRAME_HEADER + frame::PAYLOAD_HEADER;
        buf.drain(..header);
        Ok(buf)
    }

    fn last_lsn(&self, space: SpaceNo) -> Option<Lsn> {
        self.shared.spaces.read().get(&space).map(LsnVec::end)
    }

    fn stats(&self) -> LogStats {
        let s = &self.shared;
        let segments = s.segments.read();
        LogStats {
            pending_appends: s.pending_appends.load(Ordering::Relaxed),
            pending_bytes: s.pending_bytes.load(Ordering::Relaxed),
            segments: segments.len() as u64,
            bytes_on_disk: segments.values().map(|seg| seg.len).sum(),
            group_commits: s.group_commits.load(Ordering::Relaxed),
            records_committed: s.records_committed.load(Ordering::Relaxed),
            free_bytes: s.free.get(s.fs.as_ref(), &s.dir),
            opened_by_index: s.opened_by_index,
            opened_by_scan: s.opened_by_scan,
        }
    }

    fn check_writable(&self) -> Result<()> {
        if let Some(why) = self.shared.poisoned.lock().clone() {
            return Err(Error::Poisoned(why));
        }
        if self.tx.read().is_none() {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    fn check_space(&self) -> Result<()> {
        let reserve = self.shared.config.min_free_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let free = self
            .shared
            .free
            .get(self.shared.fs.as_ref(), &self.shared.dir);
        if free < reserve {
            return Err(Error::StorageFull {
                path: self.shared.dir.clone(),
                free_bytes: free,
                reserve_bytes: reserve,
            });
        }
        Ok(())
    }

    fn shutdown(&self) {
        drop(self.tx.write().take());
        if let Some(handle) = self.writer.lock().take()
            && handle.join().is_err()
        {
            tracing::error!("log writer thread panicked");
        }
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    struct NoSink;
    impl CommitSink for NoSink {
        fn committed(&self, _: &[Committed<'_>]) {}
    }

    fn open(dir: &Path) -> (FileLog, Vec<(Lsn, Vec<u8>)>) {
        let live: HashSet<SpaceNo> = [SpaceNo(3)].into();
        let mut seen = Vec::new();
        let cfg = LogConfig {
            segment_bytes: 8192,
            ..LogConfig::default()
        };
        let log = FileLog::open(
            dir,
            cfg,
            &live,
            &mut |c| seen.push((c.lsn, c.body.to_vec())),
            Arc::new(NoSink),
        )
        .unwrap();
        (log, seen)
    }

    #[test]
    fn recovery_reads_frames_straddling_the_read_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = StdRng::seed_from_u64(5);
        let bodies: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                let n = r.random_range(0..700);
                (0..n).map(|j| (i + j) as u8).collect()
            })
            .collect();
        let (log, seen) = open(dir.path());
        assert!(seen.is_empty());
        for chunk in bodies.chunks(10) {
            let tickets: Vec<_> = chunk
                .iter()
                .map(|b| log.append(SpaceNo(3), b.clone()))
                .collect();
            for t in tickets {
                t.wait().unwrap();
            }
        }
        log.shutdown();
        drop(log);
        let (log, seen) = open(dir.path());
        let want: Vec<(Lsn, Vec<u8>)> = (1..).zip(bodies.iter().cloned()).collect();
        assert_eq!(seen, want);
        assert!(log.stats().segments > 1, "test needs several segments");
    }
}
