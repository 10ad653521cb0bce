//! Segment files: naming, creation, and where a committed frame lives in them.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame;
use crate::error::{IoContext, Result};
use crate::types::SpaceNo;

/// Where a committed frame lives.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordPos {
    pub(super) segment: u32,
    pub(super) offset: u32,
    pub(super) len: u32,
}

/// One open segment file.
pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    /// Spaces with at least one record in this segment.
    pub(super) spaces: HashSet<SpaceNo>,
    pub(super) len: u64,
}

pub(super) fn segment_path(dir: &Path, no: u32) -> PathBuf {
    dir.join(format!("{no:010}.seg"))
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

pub(super) fn create_segment(dir: &Path, no: u32) -> Result<Segment> {
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
