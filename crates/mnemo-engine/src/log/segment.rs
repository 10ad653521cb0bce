//! Segment files: naming, creation, and where a committed frame lives in them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame;
use crate::error::{IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};
use crate::types::SpaceNo;

/// Where a committed frame lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordPos {
    pub(super) segment: u32,
    pub(super) offset: u32,
    pub(super) len: u32,
}

impl RecordPos {
    /// An LSN whose record a compaction removed.
    pub(super) const ABSENT: RecordPos = RecordPos {
        segment: u32::MAX,
        offset: 0,
        len: 0,
    };

    pub(super) fn is_absent(&self) -> bool {
        self.segment == u32::MAX
    }
}

/// One open segment file.
pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) file: Arc<dyn FileHandle>,
    /// Spaces with at least one record in this segment.
    pub(super) spaces: HashSet<SpaceNo>,
    pub(super) len: u64,
    /// Its version: 0 when created, one more per compaction that rewrote it.
    pub(super) generation: u32,
    /// True once its index file (`seg_index.rs`) matches it.
    pub(super) indexed: bool,
    /// True if it was scanned whole at open.
    pub(super) scanned: bool,
}

impl Segment {
    pub(super) fn new(path: PathBuf, file: Arc<dyn FileHandle>, len: u64, generation: u32) -> Self {
        Segment {
            path,
            file,
            spaces: HashSet::new(),
            len,
            generation,
            indexed: false,
            scanned: false,
        }
    }
}

pub(super) fn segment_path(dir: &Path, no: u32) -> PathBuf {
    dir.join(format!("{no:010}.seg"))
}

/// Creates segment `no`, its header durable and its directory entry too: a segment
/// holds acked records only once both are.
pub(super) fn create_segment(fs: &dyn FileSystem, dir: &Path, no: u32) -> Result<Segment> {
    let path = segment_path(dir, no);
    let file = fs.open(&path, OpenMode::CreateNew).at(&path)?;
    file.write_all_at(&frame::segment_header(0), 0).at(&path)?;
    file.sync_all().at(&path)?;
    fs.sync_dir(dir).at(dir)?;
    Ok(Segment::new(path, file, frame::SEGMENT_HEADER as u64, 0))
}

/// Numbers of the segment files in `dir`, in order.
pub(super) fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u32>> {
    let mut numbers: Vec<u32> = fs
        .list_dir(dir)
        .at(dir)?
        .iter()
        .filter_map(|name| name.strip_suffix(".seg")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}
