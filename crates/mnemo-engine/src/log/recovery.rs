//! Recovery of one segment file at open: every valid record of a live space is
//! handed to the caller and its position kept.
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

use super::Committed;
use super::frame;
use super::scan::{Scanned, SegmentScanner};
use super::segment::{RecordPos, Segment, segment_path};
use crate::error::{Error, IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};
use crate::types::SpaceNo;

/// Where cut bytes are kept, under the log directory.
pub(super) const QUARANTINE: &str = "quarantine";

pub(super) fn recover_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    is_last: bool,
    scratch: &mut Vec<u8>,
    spaces: &mut HashMap<SpaceNo, Vec<RecordPos>>,
    recovered: &mut dyn FnMut(Committed<'_>),
) -> Result<Segment> {
    let path = segment_path(dir, no);
    let corrupt = |offset: u64, detail: String| Error::Corruption {
        path: path.clone(),
        offset,
        detail,
    };
    let file = fs.open(&path, OpenMode::ReadWrite).at(&path)?;
    let mut scan = SegmentScanner::new(file.as_ref(), &path, scratch)?;
    let file_len = scan.file_len();
    if !scan.read_header()? {
        if is_last && file_len <= frame::SEGMENT_HEADER as u64 {
            // Crash while the segment was being created: nothing was ever acked in it.
            tracing::warn!(path = %path.display(), "re-initialising a torn segment header");
            file.set_len(0).at(&path)?;
            file.write_all_at(&frame::segment_header(), 0).at(&path)?;
            file.sync_all().at(&path)?;
            return Ok(Segment {
                path,
                file,
                spaces: HashSet::new(),
                len: frame::SEGMENT_HEADER as u64,
            });
        }
        return Err(corrupt(
            0,
            "bad segment header (not a Mnemo log segment, or damaged): run `mnemo repair`".into(),
        ));
    }
    let mut seg_spaces = HashSet::new();
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
                if let Some(positions) = spaces.get_mut(&space) {
                    let expected = positions.len() as u64 + 1;
                    if lsn != expected {
                        return Err(corrupt(
                            offset,
                            format!("space {} LSN {lsn} where {expected} was expected", space.0),
                        ));
                    }
                    positions.push(RecordPos {
                        segment: no,
                        offset: offset as u32,
                        len: frame_len as u32,
                    });
                    recovered(Committed {
                        space,
                        lsn,
                        body,
                        hint: 0,
                    });
                }
                seg_spaces.insert(space);
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
    Ok(Segment {
        path,
        file,
        spaces: seg_spaces,
        len,
    })
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
