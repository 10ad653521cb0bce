//! The group-commit writer thread: drains every queued append, assigns LSNs,
//! writes one buffer with one `fdatasync`, hands the batch to the commit sink, and
//! only then completes the appends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::file::Shared;
use super::frame;
use super::segment::{RecordPos, create_segment, segment_path};
use super::{Committed, Durability, Replicator};
use crate::error::{Error, IoContext, Result};
use crate::types::{Lsn, SpaceNo};

/// What the writer thread takes: an append of this node, or frames followed from
/// the shared log (distributed mode).
pub(super) enum Request {
    Append(AppendRequest),
    Follow(FollowRequest),
}

/// Frames another node wrote to the shared log, to be written here in order.
pub(super) struct FollowRequest {
    pub(super) frames: Vec<u8>,
    /// Resolves to how many records were new here.
    pub(super) done: tokio::sync::oneshot::Sender<Result<u64>>,
}

/// One append waiting for the writer.
pub(super) struct AppendRequest {
    pub(super) space: SpaceNo,
    pub(super) body: Vec<u8>,
    pub(super) hint: u8,
    pub(super) done: tokio::sync::oneshot::Sender<Result<Lsn>>,
    /// Not an append: seal the active segment (if it holds any frame) after this
    /// batch and start the next one (`FileLog::rotate`).
    pub(super) rotate: bool,
}

/// The single writer: drains everything queued, writes it with one `write` and one
/// `fdatasync`, publishes it to the sink, then completes every append of the batch.
pub(super) fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<Request>) {
    let mut buf = Vec::with_capacity(1 << 20);
    let linger = std::time::Duration::from_micros(shared.config.group_commit_linger_us);
    let mut previous = 0usize;
    // A follow (or an append that would overfill the batch) met while collecting a
    // batch: taken after the batch commits.
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(req) => req,
            None => match rx.recv() {
                Ok(req) => req,
                Err(_) => break,
            },
        };
        let first = match first {
            Request::Follow(follow) => {
                let res = follow_frames(shared, &follow.frames, &mut buf);
                let _ = follow.done.send(res); // the follower may have gone away
                continue;
            }
            Request::Append(append) => append,
        };
        let mut batch = vec![first];
        // Bytes as written: bodies and their frame headers.
        let framed = |body: &[u8]| body.len() + frame::FRAME_HEADER + frame::PAYLOAD_HEADER;
        let mut bytes = framed(&batch[0].body);
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
            match next {
                None => break,
                // A commit stays within `max_batch_bytes` unless one record alone is
                // larger (a distributed log sends each commit as one bounded message).
                Some(Request::Append(req))
                    if bytes + framed(&req.body) > shared.config.max_batch_bytes =>
                {
                    carried = Some(Request::Append(req));
                    break;
                }
                Some(Request::Append(req)) => {
                    bytes += framed(&req.body);
                    batch.push(req);
                }
                Some(follow) => {
                    carried = Some(follow);
                    break;
                }
            }
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
    let n = batch.iter().filter(|r| !r.rotate).count() as u64;
    let bytes: u64 = batch.iter().map(|r| r.body.len() as u64).sum();
    let rotations: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].rotate).collect();
    let finish = |results: Vec<(AppendRequest, Result<Lsn>)>| {
        shared.pending_appends.fetch_sub(n, Ordering::Relaxed);
        shared.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        for (req, res) in results {
            let _ = req.done.send(res); // the appender may have gone away; the record is durable anyway
        }
    };
    if let Some(why) = shared.poisoned.lock().clone() {
        for r in &batch {
            shared.sink.not_committed(r.space, &r.body);
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
            if req.rotate {
                continue;
            }
            let Some(positions) = spaces.get(&req.space) else {
                rejected.push(i);
                continue;
            };
            let k = assigned.entry(req.space).or_insert(0);
            *k += 1;
            let lsn = positions.end() + *k;
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

    let mut results: Vec<Option<Result<Lsn>>> = (0..batch.len()).map(|_| None).collect();
    // Distributed mode: into the shared log first; what it refused is not written here.
    if let Some(replicator) = shared.replicator.get()
        && !placed.is_empty()
    {
        for (i, e) in replicate(replicator.as_ref(), &batch, &mut placed, buf) {
            shared.sink.not_committed(batch[i].space, &batch[i].body);
            results[i] = Some(Err(e));
        }
    }
    let written = write_and_sync(shared, buf);
    for i in rejected {
        shared.sink.not_committed(batch[i].space, &batch[i].body);
        results[i] = Some(Err(Error::SpaceNotFound(format!("#{}", batch[i].space.0))));
    }
    match written {
        Err(e) => {
            let why = e.to_string();
            shared.poison(why.clone());
            for p in &placed {
                let r = &batch[p.request];
                shared.sink.not_committed(r.space, &r.body);
                results[p.request] = Some(Err(Error::Poisoned(why.clone())));
            }
        }
        Ok((segment, base)) => {
            record_positions(
                shared,
                segment,
                base,
                placed
                    .iter()
                    .map(|p| (batch[p.request].space, p.start, p.len)),
            );
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
            if !rotations.is_empty() {
                let rotated = seal_and_rotate(shared).map(|_| 0);
                if let Err(e) = &rotated {
                    shared.poison(e.to_string());
                }
                for &i in &rotations {
                    results[i] = Some(
                        rotated
                            .as_ref()
                            .map(|_| 0)
                            .map_err(|e| Error::Poisoned(e.to_string())),
                    );
                }
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

/// Remembers where the frames just written at `base` of `segment` are.
fn record_positions(
    shared: &Shared,
    segment: u32,
    base: u64,
    frames: impl Iterator<Item = (SpaceNo, usize, usize)>,
) {
    let mut spaces = shared.spaces.write();
    let mut segments = shared.segments.write();
    for (space, start, len) in frames {
        // A space forgotten meanwhile keeps its frames on disk but gets no position.
        if let Some(positions) = spaces.get_mut(&space) {
            positions.push(RecordPos {
                segment,
                offset: (base + start as u64) as u32,
                len: len as u32,
            });
            if let Some(seg) = segments.get_mut(&segment) {
                seg.spaces.insert(space);
            }
        }
    }
}

/// Hands the placed frames to the shared log, one part per partition. Frames of a
/// refused part are cut out of `buf` and `placed`; returns their requests with why.
fn replicate(
    replicator: &dyn Replicator,
    batch: &[AppendRequest],
    placed: &mut Vec<Placed>,
    buf: &mut Vec<u8>,
) -> Vec<(usize, Error)> {
    let mut by_part: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let partition: Vec<u32> = placed
        .iter()
        .map(|p| replicator.partition_of(batch[p.request].space))
        .collect();
    for (p, part) in placed.iter().zip(&partition) {
        by_part
            .entry(*part)
            .or_default()
            .extend_from_slice(&buf[p.start..p.start + p.len]);
    }
    let parts: Vec<(u32, &[u8])> = by_part.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let outcome = replicator.replicate(&parts);
    let refused: HashMap<u32, &Error> = parts
        .iter()
        .zip(&outcome)
        .filter_map(|((part, _), r)| r.as_ref().err().map(|e| (*part, e)))
        .collect();
    if refused.is_empty() {
        return Vec::new();
    }
    let mut failures = Vec::new();
    let mut kept = Vec::with_capacity(placed.len());
    let mut rebuilt = Vec::with_capacity(buf.len());
    for (p, part) in placed.drain(..).zip(&partition) {
        match refused.get(part) {
            Some(e) => failures.push((p.request, same_error(e))),
            None => {
                let start = rebuilt.len();
                rebuilt.extend_from_slice(&buf[p.start..p.start + p.len]);
                kept.push(Placed { start, ..p });
            }
        }
    }
    *placed = kept;
    *buf = rebuilt;
    failures
}

/// One refusal of the shared log, told to every append of its part.
fn same_error(e: &Error) -> Error {
    match e {
        Error::NotOwner { partition, owner } => Error::NotOwner {
            partition: *partition,
            owner: owner.clone(),
        },
        Error::ClusterUnavailable(why) => Error::ClusterUnavailable(why.clone()),
        other => Error::ClusterUnavailable(other.to_string()),
    }
}

/// Writes frames another node put in the shared log: each record new here must be
/// the next LSN of its space (those held already are skipped, so a replay from an
/// earlier position is harmless). Nothing is written unless every frame decodes and
/// every space is known. Returns how many records were new.
fn follow_frames(shared: &Shared, frames: &[u8], buf: &mut Vec<u8>) -> Result<u64> {
    if let Some(why) = shared.poisoned.lock().clone() {
        return Err(Error::Poisoned(why));
    }
    buf.clear();
    let mut kept: Vec<(SpaceNo, Lsn, usize, usize)> = Vec::new();
    {
        let spaces = shared.spaces.read();
        let mut next: HashMap<SpaceNo, Lsn> = HashMap::new();
        let mut at = 0;
        while at < frames.len() {
            let f = frame::decode_frame(&frames[at..]).map_err(|e| Error::Corruption {
                path: "shared log".into(),
                offset: at as u64,
                detail: format!("a followed frame does not decode: {e:?}"),
            })?;
            let positions = spaces
                .get(&f.space)
                .ok_or_else(|| Error::SpaceNotFound(format!("#{}", f.space.0)))?;
            let have = *next.entry(f.space).or_insert_with(|| positions.end());
            if f.lsn == have + 1 {
                kept.push((f.space, f.lsn, buf.len(), f.len));
                buf.extend_from_slice(&frames[at..at + f.len]);
                next.insert(f.space, f.lsn);
            } else if f.lsn > have {
                return Err(Error::FollowGap {
                    space: f.space.0,
                    have,
                    got: f.lsn,
                });
            }
            at += f.len;
        }
    }
    if kept.is_empty() {
        return Ok(0);
    }
    let (segment, base) =
        write_and_sync(shared, buf).inspect_err(|e| shared.poison(e.to_string()))?;
    record_positions(
        shared,
        segment,
        base,
        kept.iter()
            .map(|&(space, _, start, len)| (space, start, len)),
    );
    let header = frame::FRAME_HEADER + frame::PAYLOAD_HEADER;
    let committed: Vec<Committed<'_>> = kept
        .iter()
        .map(|&(space, lsn, start, len)| Committed {
            space,
            lsn,
            body: &buf[start + header..start + len],
            hint: 0,
        })
        .collect();
    shared.sink.followed(&committed);
    shared
        .records_committed
        .fetch_add(kept.len() as u64, Ordering::Relaxed);
    Ok(kept.len() as u64)
}

/// Seals the active segment (if it holds a frame) and starts the next one.
fn seal_and_rotate(shared: &Shared) -> Result<()> {
    let (no, file, path, len) = {
        let segments = shared.segments.read();
        let (no, seg) = segments
            .iter()
            .next_back()
            .ok_or_else(|| Error::Poisoned("no active segment".into()))?;
        (*no, Arc::clone(&seg.file), seg.path.clone(), seg.len)
    };
    if len <= frame::SEGMENT_HEADER as u64 {
        return Ok(());
    }
    file.sync_data().at(&path)?;
    let fs = shared.fs.as_ref();
    let seg = create_segment(fs, &shared.dir, no + 1).inspect_err(|_| {
        let _ = fs.remove_file(&segment_path(&shared.dir, no + 1));
    })?;
    shared.segments.write().insert(no + 1, seg);
    Ok(())
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
        let fs = shared.fs.as_ref();
        let seg = create_segment(fs, &shared.dir, no + 1).inspect_err(|_| {
            // A half-made segment (no space for its header, say) must not be found at
            // recovery: it would be the last segment and hold no valid header.
            let _ = fs.remove_file(&segment_path(&shared.dir, no + 1));
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
    shared.free.wrote(buf.len() as u64);
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
