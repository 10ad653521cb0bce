//! Recovery of one segment file at open: the position of every record of a live
//! space is kept, and the records after the space's checkpoint are handed to the
//! caller. A sealed segment with a valid index (`seg_index.rs`) is not scanned:
//! its index gives the positions, and the few frames to replay are read one by one.
//!
//! Damage is told apart from a torn write by what follows it:
//! - a **torn tail** is damage at the end of the last segment with no valid frame
//!   after it (a crash in the middle of a group commit, which nobody was acked
//!   for). Its bytes are copied to `quarantine/` first, then cut;
//! - damage **followed by a valid frame**, or anywhere in a sealed segment (sealed
//!   segments are synced before the next one exists), is corruption: the open
//!   fails with [`Error::Corruption`] naming the file, the offset and how many valid
//!   frames follow, and nothing is cut. `mnemo repair` keeps every valid frame.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::Committed;
use super::frame;
use super::scan::{Scanned, SegmentScanner};
use super::seg_index::{IndexEntry, read_index, write_index};
use super::segment::{RecordPos, Segment, segment_path};
use crate::error::{Error, IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};
use crate::lsn_vec::LsnVec;
use crate::types::{Lsn, SpaceNo};

/// Where cut bytes are kept, under the log directory.
pub(super) const QUARANTINE: &str = "quarantine";

/// Where recovery resumes a live space from its checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeAt {
    /// Records up to this LSN are in the checkpoint's graph: only later ones are
    /// handed out (to be indexed again).
    pub replay_after: Lsn,
    /// The checkpointed state holds every record up to this LSN: records up to it
    /// may have been compacted away (gaps), and LSNs go on after it. 0: no state
    /// checkpoint (gaps are then allowed with a warning).
    pub state_upto: Lsn,
}

/// [`ResumeAt`] of each live space.
pub(super) type Resume = HashMap<SpaceNo, ResumeAt>;

/// Places a recovered frame's position: LSNs rise by one, except over records a
/// compaction removed (at or below the checkpoint; without one, with a warning).
fn place(
    positions: &mut LsnVec<RecordPos>,
    space: SpaceNo,
    lsn: Lsn,
    pos: RecordPos,
    at: ResumeAt,
) -> std::result::Result<(), String> {
    let expected = positions.end() + 1;
    if lsn < expected {
        return Err(format!(
            "space {} LSN {lsn} where {expected} was expected",
            space.0
        ));
    }
    if lsn > expected {
        let upto = at.state_upto;
        if upto > 0 && lsn - 1 > upto {
            return Err(format!(
                "space {} jumps from LSN {} to {lsn}, above its checkpointed state ({upto}): \
                 records are missing",
                space.0,
                expected - 1
            ));
        }
        if upto == 0 {
            tracing::warn!(
                space = space.0,
                from = expected,
                to = lsn - 1,
                "LSNs missing from the log (compacted away?) and no checkpointed state: their session marks are gone"
            );
        }
        if positions.is_empty() {
            // Nothing before: the positions start at the first record present.
            *positions = LsnVec::starting_at(lsn);
        } else {
            positions.fill_to(lsn, RecordPos::ABSENT);
        }
    }
    positions.push(pos);
    Ok(())
}

#[allow(clippy::too_many_arguments)] // recovery's own state, passed through
pub(super) fn recover_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    is_last: bool,
    scratch: &mut Vec<u8>,
    spaces: &mut HashMap<SpaceNo, LsnVec<RecordPos>>,
    resume: &Resume,
    recovered: &mut dyn FnMut(Committed<'_>),
) -> Result<Segment> {
    let path = segment_path(dir, no);
    let corrupt = |offset: u64, detail: String| Error::Corruption {
        path: path.clone(),
        offset,
        detail,
    };
    let file = fs.open(&path, OpenMode::ReadWrite).at(&path)?;
    if !is_last && let Some(seg) = from_index(fs, dir, no, &file, &path, spaces, resume, recovered)?
    {
        return Ok(seg);
    }
    let mut scan = SegmentScanner::new(file.as_ref(), &path, scratch)?;
    let file_len = scan.file_len();
    let Some(generation) = scan.read_header()? else {
        if is_last && file_len <= frame::SEGMENT_HEADER as u64 {
            // Crash while the segment was being created: nothing was ever acked in it.
            tracing::warn!(path = %path.display(), "re-initialising a torn segment header");
            file.set_len(0).at(&path)?;
            file.write_all_at(&frame::segment_header(0), 0).at(&path)?;
            file.sync_all().at(&path)?;
            return Ok(Segment::new(path, file, frame::SEGMENT_HEADER as u64, 0));
        }
        return Err(corrupt(
            0,
            "bad segment header (not a Mnemo log segment, or damaged): run `mnemo repair`".into(),
        ));
    };
    let mut seg_spaces = HashSet::new();
    let mut entries = Vec::new();
    let mut len = file_len;
    while let Some(item) = scan.next()? {
        match item {
            Scanned::Frame {
                offset,
                len: frame_len,
                space,
                lsn,
                body,
            } => {
                let pos = RecordPos {
                    segment: no,
                    offset: offset as u32,
                    len: frame_len as u32,
                };
                if let Some(positions) = spaces.get_mut(&space) {
                    let at = resume.get(&space).copied().unwrap_or_default();
                    place(positions, space, lsn, pos, at).map_err(|e| corrupt(offset, e))?;
                    if lsn > at.replay_after {
                        recovered(Committed {
                            space,
                            lsn,
                            body,
                            hint: 0,
                        });
                    }
                }
                seg_spaces.insert(space);
                entries.push(IndexEntry {
                    space,
                    lsn,
                    offset: pos.offset,
                    len: pos.len,
                });
            }
            Scanned::Damage { offset, end, why } => {
                if end < file_len {
                    let (frames, first) = count_frames(&mut scan, end)?;
                    return Err(corrupt(
                        offset,
                        format!(
                            "{why}; {frames} valid frames follow (the first at offset {first}), so \
                             this is damage, not a torn write, and nothing was cut: run `mnemo repair` \
                             to keep every valid frame (docs/reliability.md)"
                        ),
                    ));
                }
                if !is_last {
                    return Err(corrupt(
                        offset,
                        format!(
                            "{why}: a sealed segment ends in damage (it was synced before the next \
                             one was created): run `mnemo repair`"
                        ),
                    ));
                }
                let kept = quarantine(fs, dir, no, file.as_ref(), offset, file_len)?;
                tracing::warn!(
                    path = %path.display(), offset, cut = file_len - offset, why,
                    copy = %kept.display(),
                    "cutting the torn (never acknowledged) tail of the log"
                );
                file.set_len(offset).at(&path)?;
                file.sync_all().at(&path)?;
                len = offset;
                break;
            }
        }
    }
    let mut seg = Segment::new(path, file, len, generation);
    seg.spaces = seg_spaces;
    seg.scanned = true;
    if !is_last {
        // The next open reads the index instead of scanning again.
        match write_index(fs, dir, no, generation, len, &entries) {
            Ok(()) => seg.indexed = true,
            Err(e) => tracing::warn!(segment = no, error = %e, "cannot write a segment index"),
        }
    }
    Ok(seg)
}

/// A sealed segment recovered from its index, if it has a valid one and reading
/// the frames to replay one by one beats scanning it (few of them).
#[allow(clippy::too_many_arguments)] // recovery's own state, passed through
fn from_index(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    file: &Arc<dyn FileHandle>,
    path: &Path,
    spaces: &mut HashMap<SpaceNo, LsnVec<RecordPos>>,
    resume: &Resume,
    recovered: &mut dyn FnMut(Committed<'_>),
) -> Result<Option<Segment>> {
    let len = file.size().at(path)?;
    let mut head = [0u8; frame::SEGMENT_HEADER];
    if len < head.len() as u64 {
        return Ok(None);
    }
    file.read_exact_at(&mut head, 0).at(path)?;
    let Some(generation) = frame::header_generation(&head) else {
        return Ok(None);
    };
    let Some(entries) = read_index(fs, dir, no, generation, len) else {
        return Ok(None);
    };
    let replay = |e: &IndexEntry| {
        spaces.contains_key(&e.space) && e.lsn > resume.get(&e.space).map_or(0, |r| r.replay_after)
    };
    let to_replay = entries.iter().filter(|e| replay(e)).count();
    if to_replay * 4 > entries.len() {
        return Ok(None); // most of it: one sequential scan is faster
    }
    let mut seg = Segment::new(path.to_path_buf(), Arc::clone(file), len, generation);
    seg.indexed = true;
    let mut buf = Vec::new();
    for e in &entries {
        seg.spaces.insert(e.space);
        let Some(positions) = spaces.get_mut(&e.space) else {
            continue;
        };
        let at = resume.get(&e.space).copied().unwrap_or_default();
        let pos = RecordPos {
            segment: no,
            offset: e.offset,
            len: e.len,
        };
        let corrupt = |detail: String| Error::Corruption {
            path: path.to_path_buf(),
            offset: u64::from(e.offset),
            detail,
        };
        place(positions, e.space, e.lsn, pos, at).map_err(corrupt)?;
        if e.lsn > at.replay_after {
            buf.resize(e.len as usize, 0);
            file.read_exact_at(&mut buf, u64::from(e.offset)).at(path)?;
            let f = frame::decode_frame(&buf).map_err(|x| corrupt(format!("{x:?}")))?;
            if f.space != e.space || f.lsn != e.lsn {
                return Err(corrupt("the segment index does not match the frame".into()));
            }
            let body = &buf[frame::FRAME_HEADER + frame::PAYLOAD_HEADER..];
            recovered(Committed {
                space: e.space,
                lsn: e.lsn,
                body,
                hint: 0,
            });
        }
    }
    Ok(Some(seg))
}

/// Counts the valid frames from the scanner's position (`first` expected) to the
/// end of the file, re-synchronising past any further damage.
fn count_frames(scan: &mut SegmentScanner<'_>, first: u64) -> Result<(u64, u64)> {
    let mut n = 0;
    while let Some(item) = scan.next()? {
        if matches!(item, Scanned::Frame { .. }) {
            n += 1;
        }
    }
    Ok((n, first))
}

/// Copies bytes `from..to` of segment `no` to `quarantine/<segment>.<from>.torn`,
/// durably, before they are cut. Returns the copy's path.
fn quarantine(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    file: &dyn FileHandle,
    from: u64,
    to: u64,
) -> Result<PathBuf> {
    let qdir = dir.join(QUARANTINE);
    fs.create_dir_all(&qdir).at(&qdir)?;
    let copy = qdir.join(format!("{no:010}.seg.{from}.torn"));
    let out = fs.open(&copy, OpenMode::CreateTruncate).at(&copy)?;
    copy_range(file, from, to, out.as_ref(), 0, &copy)?;
    out.sync_all().at(&copy)?;
    fs.sync_dir(&qdir).at(&qdir)?;
    Ok(copy)
}

/// Copies bytes `from..to` of `src` to `dst` at `at`, a MiB at a time.
pub(super) fn copy_range(
    src: &dyn FileHandle,
    from: u64,
    to: u64,
    dst: &dyn FileHandle,
    at: u64,
    path: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while from + done < to {
        let n = (to - from - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], from + done).at(path)?;
        dst.write_all_at(&buf[..n], at + done).at(path)?;
        done += n as u64;
    }
    Ok(())
}
