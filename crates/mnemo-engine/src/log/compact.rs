//! Compaction of sealed segments: the frames the engine still needs are copied,
//! in order and keeping their LSNs, into a new version of the segment (its
//! generation one higher), which replaces the old one by an atomic rename; a
//! segment with nothing left to keep is deleted. Which frames may go is the
//! engine's call (records its checkpointed state no longer needs).
//!
//! Crash safety: until the rename, the old segment is intact (the copy is a
//! `.compact` file, removed at the next open); after it, the new one is complete
//! and synced. Its index is written after the rename: an index of the old version
//! is told apart by the generation and ignored. Readers never see a half swap:
//! positions and segment files change together under the `spaces` lock, and a
//! reader that already holds the old file keeps reading it (unlinked, not gone).
//!
//! Copies are paced by a byte budget per second, and the swap holds the locks only
//! to update this segment's positions, so appends wait at most that long.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::file::{FileLog, Shared};
use super::frame;
use super::seg_index::{IndexEntry, remove_index, write_index};
use super::segment::{RecordPos, segment_path};
use crate::error::{Error, IoContext, Result};
use crate::io::OpenMode;
use crate::types::{Lsn, SpaceNo};

/// Which frames a compaction may drop: `(space, lsn)` of a live space's record.
pub type Removable<'a> = &'a (dyn Fn(SpaceNo, Lsn) -> bool + Sync);

/// How much of a sealed segment a compaction would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentUsage {
    /// The segment's number.
    pub no: u32,
    /// Its size in bytes.
    pub bytes: u64,
    /// Bytes of frames it would keep.
    pub live_bytes: u64,
    /// Frames it would drop that `sensitive` picked out (forgotten memories whose
    /// content must leave the disk).
    pub sensitive: u64,
}

/// What compacting one segment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentCompaction {
    /// Bytes before and after (0 after: deleted).
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Frames dropped and kept.
    pub dropped: u64,
    /// See `dropped`.
    pub kept: u64,
}

/// Paces copies to a byte budget per second.
pub(super) struct Pace {
    per_second: u64,
    started: Instant,
    done: u64,
}

impl Pace {
    pub(super) fn new(per_second: u64) -> Self {
        Pace {
            per_second,
            started: Instant::now(),
            done: 0,
        }
    }

    /// Counts `n` bytes copied, sleeping if ahead of the budget.
    pub(super) fn copied(&mut self, n: u64) {
        self.done += n;
        if self.per_second == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.done as f64 / self.per_second as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

impl FileLog {
    /// Per sealed segment: its size, the bytes of the frames it would keep (live
    /// spaces' records `removable` does not accept), and how many of those it would
    /// drop `sensitive` accepts.
    pub fn usage(&self, removable: Removable<'_>, sensitive: Removable<'_>) -> Vec<SegmentUsage> {
        let shared = self.shared();
        let spaces = shared.spaces.read();
        let segments = shared.segments.read();
        let active = segments.keys().next_back().copied();
        let mut usage: std::collections::BTreeMap<u32, SegmentUsage> = segments
            .iter()
            .filter(|(no, _)| Some(**no) != active)
            .map(|(&no, seg)| {
                (
                    no,
                    SegmentUsage {
                        no,
                        bytes: seg.len,
                        live_bytes: frame::SEGMENT_HEADER as u64,
                        sensitive: 0,
                    },
                )
            })
            .collect();
        for (&space, positions) in spaces.iter() {
            for (lsn, pos) in positions.iter() {
                let Some(u) = usage.get_mut(&pos.segment) else {
                    continue; // the active segment, or compacted away
                };
                if !removable(space, lsn) {
                    u.live_bytes += u64::from(pos.len);
                } else if sensitive(space, lsn) {
                    u.sensitive += 1;
                }
            }
        }
        usage.into_values().collect()
    }

    /// Rewrites sealed segment `no` without the frames `removable` accepts (or
    /// deletes it if none is left), copying at most `bytes_per_second`.
    pub fn compact_segment(
        &self,
        no: u32,
        removable: Removable<'_>,
        bytes_per_second: u64,
    ) -> Result<SegmentCompaction> {
        let shared = self.shared();
        let _one_at_a_time = shared.compacting.lock();
        let (file, generation, len) = {
            let segments = shared.segments.read();
            if segments.keys().next_back() == Some(&no) {
                return Err(Error::invalid(format!("segment {no} is the active one")));
            }
            let seg = segments
                .get(&no)
                .ok_or_else(|| Error::invalid(format!("no segment {no}")))?;
            (Arc::clone(&seg.file), seg.generation, seg.len)
        };
        // What it holds of live spaces, in file order; frames of dropped spaces
        // are in no position and simply not copied.
        let (mut keep, mut dropped) = (Vec::new(), Vec::new());
        for (&space, positions) in shared.spaces.read().iter() {
            for (lsn, pos) in positions.iter() {
                if pos.segment == no {
                    if removable(space, lsn) {
                        dropped.push((space, lsn));
                    } else {
                        keep.push((space, lsn, *pos));
                    }
                }
            }
        }
        keep.sort_by_key(|k| k.2.offset);
        let path = segment_path(&shared.dir, no);
        let mut done = SegmentCompaction {
            bytes_before: len,
            dropped: dropped.len() as u64,
            kept: keep.len() as u64,
            ..Default::default()
        };
        if keep.is_empty() {
            swap(shared, no, &[], &dropped, None);
            remove_index(shared.fs.as_ref(), &shared.dir, no);
            shared.fs.remove_file(&path).at(&path)?;
            shared.fs.sync_dir(&shared.dir).at(&shared.dir)?;
            return Ok(done);
        }
        let tmp = path.with_extension("seg.compact");
        let out = shared.fs.open(&tmp, OpenMode::CreateTruncate).at(&tmp)?;
        let next = generation + 1;
        out.write_all_at(&frame::segment_header(next), 0).at(&tmp)?;
        let mut at = frame::SEGMENT_HEADER as u64;
        let mut pace = Pace::new(bytes_per_second);
        let mut buf = Vec::new();
        let mut entries = Vec::with_capacity(keep.len());
        for &(space, lsn, pos) in &keep {
            buf.resize(pos.len as usize, 0);
            file.read_exact_at(&mut buf, u64::from(pos.offset))
                .at(&path)?;
            // Copied frames are checked: compaction never spreads damage.
            let f = frame::decode_frame(&buf).map_err(|e| Error::Corruption {
                path: path.clone(),
                offset: u64::from(pos.offset),
                detail: format!("while compacting: {e:?}"),
            })?;
            if f.space != space || f.lsn != lsn {
                return Err(Error::Corruption {
                    path: path.clone(),
                    offset: u64::from(pos.offset),
                    detail: format!("while compacting: frame holds {}/{}", f.space.0, f.lsn),
                });
            }
            out.write_all_at(&buf, at).at(&tmp)?;
            entries.push(IndexEntry {
                space,
                lsn,
                offset: at as u32,
                len: pos.len,
            });
            at += u64::from(pos.len);
            pace.copied(u64::from(pos.len));
        }
        out.sync_all().at(&tmp)?;
        drop(out);
        let new_file = shared.fs.open(&tmp, OpenMode::ReadWrite).at(&tmp)?;
        shared.fs.rename(&tmp, &path).at(&path)?;
        shared.fs.sync_dir(&shared.dir).at(&shared.dir)?;
        swap(shared, no, &entries, &dropped, Some((new_file, next, at)));
        match write_index(shared.fs.as_ref(), &shared.dir, no, next, at, &entries) {
            Ok(()) => {
                if let Some(seg) = shared.segments.write().get_mut(&no) {
                    seg.indexed = seg.generation == next;
                }
            }
            Err(e) => tracing::warn!(segment = no, error = %e, "cannot write a segment index"),
        }
        done.bytes_after = at;
        Ok(done)
    }
}

/// Points the kept frames at their new offsets and the dropped ones at nothing,
/// and replaces (or, with `None`, removes) the segment: one swap under the locks.
fn swap(
    shared: &Shared,
    no: u32,
    kept: &[IndexEntry],
    dropped: &[(SpaceNo, Lsn)],
    new: Option<(Arc<dyn crate::io::FileHandle>, u32, u64)>,
) {
    let mut spaces = shared.spaces.write();
    let mut segments = shared.segments.write();
    let mut holders = HashSet::new();
    for e in kept {
        if let Some(p) = spaces.get_mut(&e.space).and_then(|p| p.get_mut(e.lsn)) {
            *p = RecordPos {
                segment: no,
                offset: e.offset,
                len: e.len,
            };
            holders.insert(e.space);
        }
    }
    for &(space, lsn) in dropped {
        if let Some(p) = spaces.get_mut(&space).and_then(|p| p.get_mut(lsn)) {
            *p = RecordPos::ABSENT;
        }
    }
    super::file::trim_positions(&mut spaces);
    match new {
        Some((file, generation, len)) => {
            if let Some(seg) = segments.get_mut(&no) {
                seg.file = file;
                seg.generation = generation;
                seg.len = len;
                seg.spaces = holders;
                seg.indexed = false;
            }
        }
        None => {
            segments.remove(&no);
        }
    }
}
