//! The group-commit writer thread: drains every queued append, assigns LSNs,
//! writes one buffer with one `fdatasync`, hands the batch to the commit sink, and
//! only then completes the appends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::file::Shared;
use super::frame;
use super::segment::{RecordPos, create_segment, segment_path};
use super::{Committed, Durability};
use crate::error::{Error, IoContext, Result};
use crate::types::{Lsn, SpaceNo};

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
pub(super) fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<AppendRequest>) {
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

    let written = write_and_sync(shared, buf);
    let mut results: Vec<Option<Result<Lsn>>> = (0..batch.len()).map(|_| None).collect();
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
