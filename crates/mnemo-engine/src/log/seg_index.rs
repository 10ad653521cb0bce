//! Segment indexes: beside each sealed segment `N.seg`, `N.idx` lists where each
//! of its frames is (space, LSN, offset, length), so that opening the log reads
//! the indexes instead of scanning every segment. An index is a cache: one that is
//! missing, damaged or made for another version of the segment (a compaction
//! rewrote it; see the segment header's generation) is ignored and the segment
//! scanned (and its index written again).
//!
//! ```text
//! "MNEMOIDX" u32 version=1 | u32 segment | u32 generation | u64 segment length
//! u64 count, count × (u32 space, u64 lsn, u32 offset, u32 length) | u32 crc32c
//! ```

use std::path::{Path, PathBuf};

use crate::codec::{Dec, Enc};
use crate::error::{IoContext, Result};
use crate::io::FileSystem;
use crate::types::{Lsn, SpaceNo};

const MAGIC: &[u8; 8] = b"MNEMOIDX";
const VERSION: u32 = 1;

/// One frame of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) space: SpaceNo,
    pub(super) lsn: Lsn,
    pub(super) offset: u32,
    pub(super) len: u32,
}

pub(super) fn index_path(dir: &Path, no: u32) -> PathBuf {
    dir.join(format!("{no:010}.idx"))
}

/// Writes the index of segment `no` (atomically and durably).
pub(super) fn write_index(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    generation: u32,
    segment_len: u64,
    entries: &[IndexEntry],
) -> Result<()> {
    let mut e = Enc::with_magic(MAGIC, VERSION);
    e.u32(no);
    e.u32(generation);
    e.u64(segment_len);
    e.u64(entries.len() as u64);
    for x in entries {
        e.u32(x.space.0);
        e.u64(x.lsn);
        e.u32(x.offset);
        e.u32(x.len);
    }
    let path = index_path(dir, no);
    fs.write_atomic(&path, &e.finish()).at(&path)
}

/// The index of segment `no` if there is a valid one made for this version of it
/// (its generation and length).
pub(super) fn read_index(
    fs: &dyn FileSystem,
    dir: &Path,
    no: u32,
    generation: u32,
    segment_len: u64,
) -> Option<Vec<IndexEntry>> {
    let path = index_path(dir, no);
    let bytes = fs.read_all(&path).ok()?;
    let parse = || -> std::result::Result<Option<Vec<IndexEntry>>, crate::codec::DecError> {
        let mut d = Dec::open(&bytes, MAGIC, VERSION)?;
        if d.u32()? != no || d.u32()? != generation || d.u64()? != segment_len {
            return Ok(None);
        }
        let n = d.count(20)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(IndexEntry {
                space: SpaceNo(d.u32()?),
                lsn: d.u64()?,
                offset: d.u32()?,
                len: d.u32()?,
            });
        }
        d.end()?;
        Ok(Some(out))
    };
    match parse() {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged segment index; scanning the segment");
            None
        }
    }
}

/// Removes the index of segment `no`, if any (the segment is gone).
pub(super) fn remove_index(fs: &dyn FileSystem, dir: &Path, no: u32) {
    let _ = fs.remove_file(&index_path(dir, no)); // an orphan index is ignored anyway
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFs;

    #[test]
    fn an_index_is_used_only_for_its_segment_version() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<IndexEntry> = (1..=100)
            .map(|i| IndexEntry {
                space: SpaceNo(i as u32 % 3),
                lsn: i,
                offset: 16 + 50 * i as u32,
                len: 50,
            })
            .collect();
        write_index(&StdFs, dir.path(), 7, 2, 5016, &entries).unwrap();
        assert_eq!(read_index(&StdFs, dir.path(), 7, 2, 5016).unwrap(), entries);
        assert!(
            read_index(&StdFs, dir.path(), 7, 3, 5016).is_none(),
            "another generation"
        );
        assert!(
            read_index(&StdFs, dir.path(), 7, 2, 5017).is_none(),
            "another length"
        );
        assert!(
            read_index(&StdFs, dir.path(), 8, 2, 5016).is_none(),
            "no file"
        );
        let path = index_path(dir.path(), 7);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(
            read_index(&StdFs, dir.path(), 7, 2, 5016).is_none(),
            "damaged"
        );
        remove_index(&StdFs, dir.path(), 7);
        assert!(!path.exists());
    }
}
