//! Offline repair of a damaged log (`mnemo repair`): every segment is scanned with
//! re-synchronisation past damage, and each segment that needs it is rewritten with
//! every valid frame it holds. A record lost to damage leaves a gap in its space's
//! LSNs; a placeholder frame (record kind "lost") fills each gap, so LSNs stay dense
//! and no later write reuses a lost LSN. The original of each rewritten segment is
//! kept in `quarantine/`.
//!
//! Damage after a space's last surviving record may have held more of its records:
//! how many cannot be known (a damaged frame's header cannot be trusted), so the
//! report names those spaces instead of guessing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::frame;
use super::recovery::{QUARANTINE, copy_range};
use super::scan::{Scanned, SegmentScanner};
use super::segment::{list_segments, segment_path};
use crate::error::{IoContext, Result};
use crate::io::{FileSystem, OpenMode};
use crate::record;
use crate::types::{Lsn, SpaceNo};

/// What a repair found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Segments scanned.
    pub segments_scanned: u64,
    /// Valid frames found (all kept).
    pub frames_kept: u64,
    /// Segments rewritten, with what was wrong in each.
    pub rewritten: Vec<RepairedSegment>,
    /// Per space, the LSN ranges lost to damage (each now a placeholder).
    pub lost: Vec<LostRange>,
    /// Spaces (by name) whose last surviving record (its LSN) is followed by
    /// damage: records after it may have been lost, and how many cannot be told.
    pub uncertain_tails: Vec<(String, Lsn)>,
}

/// One rewritten segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairedSegment {
    /// The segment file (rewritten in place).
    pub file: PathBuf,
    /// The copy of the original, in `quarantine/`.
    pub original: PathBuf,
    /// Damaged byte ranges `(from, to)` of the original.
    pub damaged: Vec<(u64, u64)>,
    /// Placeholders written for lost records.
    pub placeholders: u64,
    /// Valid frames dropped because their LSN was already taken.
    pub duplicates_dropped: u64,
}

/// LSNs `first..=last` of `space` were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRange {
    /// The space's name.
    pub space: String,
    /// First lost LSN.
    pub first: Lsn,
    /// Last lost LSN.
    pub last: Lsn,
}

/// What to write in a segment's place.
enum Piece {
    /// Bytes of the original.
    Keep { offset: u64, len: u64 },
    /// A placeholder frame for a lost record.
    Lost { space: SpaceNo, lsn: Lsn },
}

/// Repairs the log in `dir`. Placeholders are written only for the live spaces
/// (`live`: number → name; records of dropped spaces are kept as they are). The
/// caller holds the data directory's lock: nothing else may write the log meanwhile.
pub(crate) fn repair_log(
    fs: &dyn FileSystem,
    dir: &Path,
    live: &HashMap<SpaceNo, String>,
    stamp: u64,
) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    // Per space: the LSN expected next, and the position of its last record.
    let mut expected: HashMap<SpaceNo, Lsn> = HashMap::new();
    let mut last_at: HashMap<SpaceNo, (u32, u64)> = HashMap::new();
    // Where damage was seen, in log order.
    let mut damage_at: Vec<(u32, u64)> = Vec::new();
    let mut lost: BTreeMap<SpaceNo, Vec<(Lsn, Lsn)>> = BTreeMap::new();
    let mut scratch = Vec::new();
    for no in list_segments(fs, dir)? {
        report.segments_scanned += 1;
        let path = segment_path(dir, no);
        let file = fs.open(&path, OpenMode::Read).at(&path)?;
        let mut scan = SegmentScanner::new(file.as_ref(), &path, &mut scratch)?;
        let mut pieces = Vec::new();
        let mut fixed = RepairedSegment {
            file: path.clone(),
            original: PathBuf::new(),
            damaged: Vec::new(),
            placeholders: 0,
            duplicates_dropped: 0,
        };
        if scan.read_header()?.is_none() {
            fixed.damaged.push((0, frame::SEGMENT_HEADER as u64));
            damage_at.push((no, 0));
            scan.skip_header();
        }
        while let Some(item) = scan.next()? {
            match item {
                Scanned::Frame {
                    offset,
                    len,
                    space,
                    lsn,
                    ..
                } => {
                    report.frames_kept += 1;
                    let next = expected.entry(space).or_insert(1);
                    if lsn < *next {
                        fixed.duplicates_dropped += 1;
                        report.frames_kept -= 1;
                        continue;
                    }
                    if lsn > *next && live.contains_key(&space) {
                        lost.entry(space).or_default().push((*next, lsn - 1));
                        for l in *next..lsn {
                            pieces.push(Piece::Lost { space, lsn: l });
                            fixed.placeholders += 1;
                        }
                    }
                    *next = lsn + 1;
                    last_at.insert(space, (no, offset));
                    pieces.push(Piece::Keep {
                        offset,
                        len: len as u64,
                    });
                }
                Scanned::Damage { offset, end, .. } => {
                    fixed.damaged.push((offset, end));
                    // One damaged frame whose header survived (the damage is in its
                    // body or checksum): it names the record that is lost.
                    match damaged_frame(file.as_ref(), &path, offset, end)? {
                        Some((space, lsn))
                            if live.contains_key(&space)
                                && lsn == *expected.entry(space).or_insert(1) =>
                        {
                            lost.entry(space).or_default().push((lsn, lsn));
                            pieces.push(Piece::Lost { space, lsn });
                            fixed.placeholders += 1;
                            expected.insert(space, lsn + 1);
                            last_at.insert(space, (no, offset));
                        }
                        _ => damage_at.push((no, offset)),
                    }
                }
            }
        }
        let changed =
            !fixed.damaged.is_empty() || fixed.placeholders > 0 || fixed.duplicates_dropped > 0;
        if changed {
            fixed.original = rewrite(fs, dir, no, file.as_ref(), &pieces, stamp)?;
            report.rewritten.push(fixed);
        }
    }
    for (space, ranges) in lost {
        for (first, last) in ranges {
            let space = live.get(&space).cloned().unwrap_or_default();
            report.lost.push(LostRange { space, first, last });
        }
    }
    let mut tails: Vec<(String, Lsn)> = last_at
        .iter()
        .filter(|(_, at)| damage_at.iter().any(|d| d > *at))
        .filter_map(|(space, _)| Some((live.get(space)?.clone(), expected[space] - 1)))
        .collect();
    tails.sort();
    report.uncertain_tails = tails;
    Ok(report)
}

/// The space and LSN in the header of the damaged stretch `offset..end`, if the
/// header's length covers exactly that stretch (so the damage lies inside one frame
/// whose header is intact; a random header passing both checks is not plausible).
fn damaged_frame(
    file: &dyn crate::io::FileHandle,
    path: &Path,
    offset: u64,
    end: u64,
) -> Result<Option<(SpaceNo, Lsn)>> {
    let mut head = [0u8; frame::FRAME_HEADER + frame::PAYLOAD_HEADER];
    if end - offset < head.len() as u64 {
        return Ok(None);
    }
    file.read_exact_at(&mut head, offset).at(path)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
    if frame::FRAME_HEADER as u64 + len != end - offset {
        return Ok(None);
    }
    let space = SpaceNo(u32::from_le_bytes([head[8], head[9], head[10], head[11]]));
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&head[12..20]);
    Ok(Some((space, u64::from_le_bytes(lsn))))
}

/// Writes `pieces` as segment `no` (a temporary file, synced, then renamed over the
/// original, whose copy goes to `quarantine/` first). Returns the copy's path.
fn rewrite(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    original: &dyn crate::io::FileHandle,
    pieces: &[Piece],
    stamp: u64,
) -> Result<PathBuf> {
    let path = segment_path(dir, no);
    let qdir = dir.join(QUARANTINE);
    fs.create_dir_all(&qdir).at(&qdir)?;
    let copy = qdir.join(format!("{no:010}.seg.{stamp}.orig"));
    let kept = fs.open(&copy, OpenMode::CreateTruncate).at(&copy)?;
    copy_range(
        original,
        0,
        original.size().at(&path)?,
        kept.as_ref(),
        0,
        &copy,
    )?;
    kept.sync_all().at(&copy)?;
    fs.sync_dir(&qdir).at(&qdir)?;

    let tmp = path.with_extension("repair");
    let out = fs.open(&tmp, OpenMode::CreateTruncate).at(&tmp)?;
    out.write_all_at(&frame::segment_header(0), 0).at(&tmp)?;
    let mut at = frame::SEGMENT_HEADER as u64;
    let mut placeholder = Vec::new();
    for piece in pieces {
        match *piece {
            Piece::Keep { offset, len } => {
                copy_range(original, offset, offset + len, out.as_ref(), at, &tmp)?;
                at += len;
            }
            Piece::Lost { space, lsn } => {
                placeholder.clear();
                let n = frame::encode_frame(&mut placeholder, space, lsn, &record::lost_body());
                out.write_all_at(&placeholder, at).at(&tmp)?;
                at += n as u64;
            }
        }
    }
    out.sync_all().at(&tmp)?;
    // The segment's index (if any) described the damaged version.
    super::seg_index::remove_index(fs, dir, no);
    fs.rename(&tmp, &path).at(&path)?;
    fs.sync_dir(dir).at(dir)?;
    Ok(copy)
}
