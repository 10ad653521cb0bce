//! Recovery of one segment file: reads it front to back through a window buffer,
//! hands every valid record of a live space to the caller, and rebuilds the
//! positions of the records.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::Committed;
use super::frame::{self, FrameError};
use super::segment::{RecordPos, Segment};
use crate::error::{Error, IoContext, Result};
use crate::types::SpaceNo;

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

pub(super) fn recover_segment(
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
