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
use super::recovery::recover_segment;
use super::segment::{RecordPos, Segment, create_segment, list_segments};
use super::writer::{AppendRequest, writer_loop};
use super::{AppendTicket, CommitSink, Committed, Log, LogStats, frame};
use crate::error::{Error, IoContext, Result};
use crate::io::{FileSystem, StdFs};
use crate::types::{Lsn, SpaceNo};

/// State shared by the log handle and its writer thread.
pub(super) struct Shared {
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
    pub(super) config: LogConfig,
    /// Per live space: positions of its records, indexed by `lsn - 1`.
    pub(super) spaces: RwLock<HashMap<SpaceNo, Vec<RecordPos>>>,
    pub(super) segments: RwLock<BTreeMap<u32, Segment>>,
    pub(super) poisoned: Mutex<Option<String>>,
    pub(super) sink: Arc<dyn CommitSink>,
    pub(super) pending_appends: AtomicU64,
    pub(super) pending_bytes: AtomicU64,
    pub(super) group_commits: AtomicU64,
    pub(super) records_committed: AtomicU64,
    pub(super) free: FreeSpace,
}

/// The local-disk [`Log`].
pub struct FileLog {
    shared: Arc<Shared>,
    tx: RwLock<Option<mpsc::Sender<AppendRequest>>>,
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
        config.validate()?;
        fs.create_dir_all(dir).at(dir)?;
        let numbers = list_segments(fs.as_ref(), dir)?;
        let mut spaces: HashMap<SpaceNo, Vec<RecordPos>> =
            live.iter().map(|s| (*s, Vec::new())).collect();
        let mut segments = BTreeMap::new();
        let mut scratch = Vec::new();
        for (i, &no) in numbers.iter().enumerate() {
            let is_last = i + 1 == numbers.len();
            let seg = recover_segment(
                fs.as_ref(),
                dir,
                no,
                is_last,
                &mut scratch,
                &mut spaces,
                recovered,
            )?;
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
        if let Err(mpsc::SendError(req)) = tx.send(AppendRequest {
            space,
            body,
            hint,
            done,
        }) {
            self.shared.pending_appends.fetch_sub(1, Ordering::Relaxed);
            self.shared
                .pending_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            self.shared.sink.not_committed(space, &req.body);
            return AppendTicket::failed(Error::ShuttingDown);
        }
        AppendTicket::pending(rx)
    }

    fn read(&self, space: SpaceNo, lsn: Lsn) -> Result<Vec<u8>> {
        let pos = {
            let spaces = self.shared.spaces.read();
            let positions = spaces
                .get(&space)
                .ok_or_else(|| Error::SpaceNotFound(format!("#{}", space.0)))?;
            let idx = lsn.checked_sub(1).and_then(|i| usize::try_from(i).ok());
            *idx.and_then(|i| positions.get(i)).ok_or_else(|| {
                Error::invalid(format!("LSN {lsn} is not committed in space #{}", space.0))
            })?
        };
        let (file, path) = {
            let segments = self.shared.segments.read();
            let seg = segments
                .get(&pos.segment)
                .ok_or_else(|| Error::Corruption {
                    path: super::segment::segment_path(&self.shared.dir, pos.segment),
                    offset: u64::from(pos.offset),
                    detail: "segment of a live record is missing".into(),
                })?;
            (Arc::clone(&seg.file), seg.path.clone())
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
        self.shared
            .spaces
            .read()
            .get(&space)
            .map(|p| p.len() as Lsn)
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
