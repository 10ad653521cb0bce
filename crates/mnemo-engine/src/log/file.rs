//! [`FileLog`]: segment files in one directory, written by one group-commit thread.
//!
//! Lock order: `spaces` before `segments`; neither is held across I/O except
//! `pread` on an `Arc<File>` cloned out of `segments`.

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::frame::{self, FrameError};
use super::{AppendTicket, CommitSink, Committed, Durability, Log, LogStats};
use crate::error::{Error, IoContext, Result};
use crate::types::{Lsn, SpaceNo};

/// Settings of the file log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// When an append counts as done. Default: `fsync`.
    pub durability: Durability,
    /// A segment is closed and a new one started past this size. Default 256 MiB; at most 2 GiB.
    pub segment_bytes: u64,
    /// Most bytes written by one group commit. Default 16 MiB.
    pub max_batch_bytes: usize,
    /// Under concurrent load, how long the writer may wait for more appends to join
    /// a group commit that is filling up more slowly than the previous one, in µs.
    /// Only used when the previous commit held 8 or more records. Default 200; 0 = off.
    pub group_commit_linger_us: u64,
    /// Observations are refused ([`Error::StorageFull`]) while the volume holding the
    /// log has less free space than this, so the log never runs into a full disk in
    /// the middle of a write. Default 64 MiB; 0 turns the check off.
    pub min_free_bytes: u64,
    /// Niceness (0..=19, Linux) of the writer thread, which also puts committed
    /// records into the fresh tier. Above recalls' 0, so their ranking wins the
    /// cores on a machine busy ingesting; below the index workers'. Default 5.
    pub writer_nice: i32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Fsync,
            segment_bytes: 256 << 20,
            max_batch_bytes: 16 << 20,
            group_commit_linger_us: 200,
            min_free_bytes: 64 << 20,
            writer_nice: 5,
        }
    }
}

impl LogConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(4096..=(2u64 << 30)).contains(&self.segment_bytes) {
            return Err(Error::invalid("log.segment_bytes must be in 4 KiB..=2 GiB"));
        }
        if self.max_batch_bytes < 4096 {
            return Err(Error::invalid("log.max_batch_bytes must be at least 4 KiB"));
        }
        if !(0..=19).contains(&self.writer_nice) {
            return Err(Error::invalid("log.writer_nice must be in 0..=19"));
        }
        Ok(())
    }
}

/// Where a committed frame lives.
#[derive(Debug, Clone, Copy)]
struct RecordPos {
    segment: u32,
    offset: u32,
    len: u32,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Spaces with at least one record in this segment.
    spaces: HashSet<SpaceNo>,
    len: u64,
}

struct Shared {
    dir: PathBuf,
    config: LogConfig,
    /// Per live space: positions of its records, indexed by `lsn - 1`.
    spaces: RwLock<HashMap<SpaceNo, Vec<RecordPos>>>,
    segments: RwLock<BTreeMap<u32, Segment>>,
    poisoned: Mutex<Option<String>>,
    sink: Arc<dyn CommitSink>,
    pending_appends: AtomicU64,
    pending_bytes: AtomicU64,
    group_commits: AtomicU64,
    records_committed: AtomicU64,
    free: FreeSpace,
}

/// Free space on the log's volume, sampled at most every [`FreeSpace::MAX_AGE`].
struct FreeSpace {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch` of the last sample, plus one (0 = never).
    sampled_ms: AtomicU64,
    bytes: AtomicU64,
}

impl FreeSpace {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

    fn new() -> Self {
        FreeSpace {
            epoch: std::time::Instant::now(),
            sampled_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// Free bytes now (a sample at most `MAX_AGE` old); `u64::MAX` if the volume
    /// cannot tell. Concurrent callers may both sample: harmless.
    fn get(&self, dir: &Path) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.sampled_ms.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= Self::MAX_AGE.as_millis() as u64 {
            let free = rustix::fs::statvfs(dir)
                .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
                .unwrap_or(u64::MAX);
            self.bytes.store(free, Ordering::Relaxed);
            self.sampled_ms.store(now, Ordering::Relaxed);
        }
        self.bytes.load(Ordering::Relaxed)
    }
}

struct AppendRequest {
    space: SpaceNo,
    body: Vec<u8>,
    hint: u8,
    done: tokio::sync::oneshot::Sender<Result<Lsn>>,
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

fn segment_path(dir: &Path, no: u32) -> PathBuf {
    dir.join(format!("{no:010}.seg"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl FileLog {
    /// Opens (or creates) the log in `dir`, recovering what is there.
    ///
    /// Every valid record of a space in `live` is passed to `recovered` in log order.
    /// A torn or corrupt tail of the last segment is cut; damage anywhere else is
    /// [`Error::Corruption`] naming the file and offset. Segments holding no live
    /// space's records are deleted.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        live: &HashSet<SpaceNo>,
        recovered: &mut dyn FnMut(Committed<'_>),
        sink: Arc<dyn CommitSink>,
    ) -> Result<FileLog> {
        config.validate()?;
        fs::create_dir_all(dir).at(dir)?;
        let mut numbers = Vec::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(no) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u32>().ok())
            {
                numbers.push(no);
            }
        }
        numbers.sort_unstable();

        let mut spaces: HashMap<SpaceNo, Vec<RecordPos>> =
            live.iter().map(|s| (*s, Vec::new())).collect();
        let mut segments = BTreeMap::new();
        let mut scratch = Vec::new();
        for (i, &no) in numbers.iter().enumerate() {
            let is_last = i + 1 == numbers.len();
            let path = segment_path(dir, no);
            let seg = recover_segment(&path, no, is_last, &mut scratch, &mut spaces, recovered)?;
            segments.insert(no, seg);
        }
        if segments.is_empty() {
            segments.insert(0, create_segment(dir, 0)?);
        }

        let shared = Arc::new(Shared {
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

fn create_segment(dir: &Path, no: u32) -> Result<Segment> {
    let path = segment_path(dir, no);
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .at(&path)?;
    file.write_all_at(&frame::segment_header(), 0).at(&path)?;
    file.sync_all().at(&path)?;
    sync_dir(dir)?;
    Ok(Segment {
        path,
        file: Arc::new(file),
        spaces: HashSet::new(),
        len: frame::SEGMENT_HEADER as u64,
    })
}

/// Reads a segment front to back through a reused window buffer, so recovery
/// touches a few MiB of memory however large the segments are.
struct SegmentReader<'a> {
    file: &'a File,
    path: &'a Path,
    buf: &'a mut Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Valid bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
}

/// Size of the recovery read window (grown for a larger frame). Tiny in unit tests
/// so that frames straddle window boundaries.
const READ_WINDOW: usize = if cfg!(test) { 96 } else { 8 << 20 };

impl<'a> SegmentReader<'a> {
    fn new(file: &'a File, path: &'a Path, buf: &'a mut Vec<u8>) -> Self {
        if buf.len() < READ_WINDOW {
            buf.resize(READ_WINDOW, 0);
        }
        SegmentReader {
            file,
            path,
            buf,
            base: 0,
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// File offset of the next unread byte.
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Makes at least `want` bytes available unless the file ends first; returns
    /// false at end of file with nothing more to add.
    fn fill(&mut self, want: usize) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if want > self.buf.len() {
            self.buf.resize(want, 0);
        }
        let before = self.end;
        while self.end < self.buf.len() {
            let n = self
                .file
                .read_at(&mut self.buf[self.end..], self.base + self.end as u64)
                .at(self.path)?;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.end += n;
        }
        Ok(self.end > before)
    }
}

fn recover_segment(
    path: &Path,
    no: u32,
    is_last: bool,
    scratch: &mut Vec<u8>,
    spaces: &mut HashMap<SpaceNo, Vec<RecordPos>>,
    recovered: &mut dyn FnMut(Committed<'_>),
) -> Result<Segment> {
    let corrupt = |offset: u64, detail: String| Error::Corruption {
        path: path.to_path_buf(),
        offset,
        detail,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at(path)?;
    let file_len = file.metadata().at(path)?.len();
    let mut reader = SegmentReader::new(&file, path, scratch);
    reader.fill(frame::SEGMENT_HEADER)?;
    let header_ok = reader.available().len() >= frame::SEGMENT_HEADER
        && reader.available()[..frame::SEGMENT_HEADER] == frame::segment_header();
    if !header_ok {
        if is_last && file_len <= frame::SEGMENT_HEADER as u64 {
            // Crash while the segment was being created: nothing was ever acked in it.
            tracing::warn!(path = %path.display(), "re-initialising a torn segment header");
            file.set_len(0).at(path)?;
            file.write_all_at(&frame::segment_header(), 0).at(path)?;
            file.sync_all().at(path)?;
            let len = frame::SEGMENT_HEADER as u64;
            return Ok(Segment {
                path: path.to_path_buf(),
                file: Arc::new(file),
                spaces: HashSet::new(),
                len,
            });
        }
        return Err(corrupt(
            0,
            "bad segment header (not a Mnemo log segment, or damaged)".into(),
        ));
    }
    reader.consume(frame::SEGMENT_HEADER);
    let mut seg_spaces = HashSet::new();
    loop {
        if reader.available().is_empty() && !reader.fill(1)? {
            break;
        }
        let offset = reader.offset();
        let decoded = match frame::decode_frame(reader.available()) {
            Err(FrameError::Truncated) => {
                // Maybe only the window ends here: read on, enough for the whole frame.
                let buf = reader.available();
                let want = if buf.len() >= frame::FRAME_HEADER {
                    frame::FRAME_HEADER
                        + u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
                } else {
                    frame::FRAME_HEADER
                };
                if reader.fill(want)? {
                    continue;
                }
                Err(FrameError::Truncated)
            }
            other => other,
        };
        match decoded {
            Ok(f) => {
                if let Some(positions) = spaces.get_mut(&f.space) {
                    let expected = positions.len() as u64 + 1;
                    if f.lsn != expected {
                        return Err(corrupt(
                            offset,
                            format!(
                                "space {} LSN {} where {expected} was expected",
                                f.space.0, f.lsn
                            ),
                        ));
                    }
                    positions.push(RecordPos {
                        segment: no,
                        offset: offset as u32,
                        len: f.len as u32,
                    });
                    recovered(Committed {
                        space: f.space,
                        lsn: f.lsn,
                        body: f.body,
                        hint: 0,
                    });
                }
                seg_spaces.insert(f.space);
                let n = f.len;
                reader.consume(n);
            }
            Err(e) if is_last => {
                let why = match e {
                    FrameError::Truncated => "torn frame".to_string(),
                    FrameError::Corrupt(d) => d,
                };
                tracing::warn!(
                    path = %path.display(), offset, cut = file_len - offset, why,
                    "cutting the unacknowledged tail of the log"
                );
                file.set_len(offset).at(path)?;
                file.sync_all().at(path)?;
                break;
            }
            Err(FrameError::Truncated) => {
                return Err(corrupt(
                    offset,
                    "truncated frame inside a sealed segment".into(),
                ));
            }
            Err(FrameError::Corrupt(d)) => return Err(corrupt(offset, d)),
        }
    }
    let len = reader.offset().min(file_len);
    Ok(Segment {
        path: path.to_path_buf(),
        file: Arc::new(file),
        spaces: seg_spaces,
        len,
    })
}

impl Shared {
    fn poison(&self, why: String) {
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
                fs::remove_file(&seg.path).at(&seg.path)?;
            }
        }
        drop(segments);
        sync_dir(&self.dir)
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
            self.shared.sink.not_committed(space, body.len());
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
            self.shared.sink.not_committed(space, req.body.len());
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
                    path: segment_path(&self.shared.dir, pos.segment),
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
            free_bytes: s.free.get(&s.dir),
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
        let free = self.shared.free.get(&self.shared.dir);
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

/// The single writer: drains everything queued, writes it with one `write` and one
/// `fdatasync`, publishes it to the sink, then completes every append of the batch.
fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<AppendRequest>) {
    let mut buf = Vec::with_capacity(1 << 20);
    let linger = std::time::Duration::from_micros(shared.config.group_commit_linger_us);
    let mut previous = 0usize;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut bytes = batch[0].body.len();
        let deadline = std::time::Instant::now() + linger;
        while bytes < shared.config.max_batch_bytes {
            let next = match rx.try_recv() {
                Ok(req) => Some(req),
                // Many producers wait on each commit: when they have not all re-submitted
                // yet, a short wait makes one full commit instead of a full and a thin one.
                Err(mpsc::TryRecvError::Empty) if previous >= 8 && batch.len() < previous => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        None
                    } else {
                        rx.recv_timeout(left).ok()
                    }
                }
                Err(_) => None,
            };
            let Some(req) = next else { break };
            bytes += req.body.len();
            batch.push(req);
        }
        previous = batch.len();
        commit_batch(shared, batch, &mut buf);
    }
}

/// One accepted append of a batch: its frame within the batch buffer.
struct Placed {
    request: usize,
    lsn: Lsn,
    start: usize,
    len: usize,
}

fn commit_batch(shared: &Shared, batch: Vec<AppendRequest>, buf: &mut Vec<u8>) {
    let n = batch.len() as u64;
    let bytes: u64 = batch.iter().map(|r| r.body.len() as u64).sum();
    let finish = |results: Vec<(AppendRequest, Result<Lsn>)>| {
        shared.pending_appends.fetch_sub(n, Ordering::Relaxed);
        shared.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        for (req, res) in results {
            let _ = req.done.send(res); // the appender may have gone away; the record is durable anyway
        }
    };
    if let Some(why) = shared.poisoned.lock().clone() {
        for r in &batch {
            shared.sink.not_committed(r.space, r.body.len());
        }
        finish(
            batch
                .into_iter()
                .map(|r| (r, Err(Error::Poisoned(why.clone()))))
                .collect(),
        );
        return;
    }

    // Assign LSNs and encode. Only this thread appends positions, so `len + 1` plus
    // what this batch already assigned is the next LSN of each space.
    buf.clear();
    let mut placed = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    {
        let spaces = shared.spaces.read();
        let mut assigned: HashMap<SpaceNo, u64> = HashMap::new();
        for (i, req) in batch.iter().enumerate() {
            let Some(positions) = spaces.get(&req.space) else {
                rejected.push(i);
                continue;
            };
            let k = assigned.entry(req.space).or_insert(0);
            *k += 1;
            let lsn = positions.len() as u64 + *k;
            let start = buf.len();
            let len = frame::encode_frame(buf, req.space, lsn, &req.body);
            placed.push(Placed {
                request: i,
                lsn,
                start,
                len,
            });
        }
    }

    let written = write_and_sync(shared, buf);
    let mut results: Vec<Option<Result<Lsn>>> = (0..batch.len()).map(|_| None).collect();
    for i in rejected {
        shared
            .sink
            .not_committed(batch[i].space, batch[i].body.len());
        results[i] = Some(Err(Error::SpaceNotFound(format!("#{}", batch[i].space.0))));
    }
    match written {
        Err(e) => {
            let why = e.to_string();
            shared.poison(why.clone());
            for p in &placed {
                let r = &batch[p.request];
                shared.sink.not_committed(r.space, r.body.len());
                results[p.request] = Some(Err(Error::Poisoned(why.clone())));
            }
        }
        Ok((segment, base)) => {
            {
                let mut spaces = shared.spaces.write();
                let mut segments = shared.segments.write();
                for p in &placed {
                    let space = batch[p.request].space;
                    // A space forgotten meanwhile keeps its frames on disk but gets no position.
                    if let Some(positions) = spaces.get_mut(&space) {
                        let offset = (base + p.start as u64) as u32;
                        positions.push(RecordPos {
                            segment,
                            offset,
                            len: p.len as u32,
                        });
                        if let Some(seg) = segments.get_mut(&segment) {
                            seg.spaces.insert(space);
                        }
                    }
                }
            }
            let header = frame::FRAME_HEADER + frame::PAYLOAD_HEADER;
            let committed: Vec<Committed<'_>> = placed
                .iter()
                .map(|p| Committed {
                    space: batch[p.request].space,
                    lsn: p.lsn,
                    body: &buf[p.start + header..p.start + p.len],
                    hint: batch[p.request].hint,
                })
                .collect();
            shared.sink.committed(&committed);
            shared.group_commits.fetch_add(1, Ordering::Relaxed);
            shared
                .records_committed
                .fetch_add(placed.len() as u64, Ordering::Relaxed);
            for p in &placed {
                results[p.request] = Some(Ok(p.lsn));
            }
        }
    }
    finish(
        batch
            .into_iter()
            .zip(results)
            .map(|(req, res)| (req, res.unwrap_or(Err(Error::ShuttingDown))))
            .collect(),
    );
}

/// Writes `buf` at the end of the active segment (rotating first if it would
/// overflow) and syncs it. Returns the segment number and the offset written at.
fn write_and_sync(shared: &Shared, buf: &[u8]) -> Result<(u32, u64)> {
    let (mut no, mut file, mut path, mut len) = {
        let segments = shared.segments.read();
        let (no, seg) = segments
            .iter()
            .next_back()
            .ok_or_else(|| Error::Poisoned("no active segment".into()))?;
        (*no, Arc::clone(&seg.file), seg.path.clone(), seg.len)
    };
    if len > frame::SEGMENT_HEADER as u64 && len + buf.len() as u64 > shared.config.segment_bytes {
        file.sync_data().at(&path)?; // seal: the old segment is complete on disk before the new one exists
        let seg = create_segment(&shared.dir, no + 1).inspect_err(|_| {
            // A half-made segment (no space for its header, say) must not be found at
            // recovery: it would be the last segment and hold no valid header.
            let _ = fs::remove_file(segment_path(&shared.dir, no + 1));
        })?;
        no += 1;
        file = Arc::clone(&seg.file);
        path = seg.path.clone();
        len = seg.len;
        shared.segments.write().insert(no, seg);
    }
    if buf.is_empty() {
        return Ok((no, len));
    }
    if let Err(e) = file.write_all_at(buf, len) {
        // A short write (no space left, file size limit) leaves part of a frame past
        // `len`. Cut it now, so that later appends and a rotation never seal garbage
        // into a segment; the log is poisoned by the caller either way.
        if let Err(cut) = file.set_len(len) {
            tracing::error!(path = %path.display(), len, error = %cut, "could not cut a short write");
        }
        return Err(Error::io(&path, e));
    }
    if shared.config.durability == Durability::Fsync {
        file.sync_data().at(&path)?;
    }
    if let Some(seg) = shared.segments.write().get_mut(&no) {
        seg.len = len + buf.len() as u64;
    }
    Ok((no, len))
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
