//! [`SegmentScanner`]: reads a segment front to back through a reused window
//! buffer (recovery touches a few MiB of memory however large the segments are),
//! yielding each valid frame, and each damaged stretch of bytes as one item.
//!
//! Past damage it re-synchronises: it looks, byte by byte, for the next offset
//! where a frame decodes (length in range, plausible space and LSN, checksum good)
//! and is followed either by the end of the file or by another frame that decodes.
//! Requiring two frames in a row keeps a random run of bytes that happens to pass
//! one checksum (about one offset in 2^32) from being taken for a frame.

use std::path::Path;

use super::frame::{self, FrameError};
use crate::error::{IoContext, Result};
use crate::io::FileHandle;
use crate::types::{Lsn, SpaceNo};

/// Size of the read window (grown for a larger frame). Tiny in unit tests so that
/// frames straddle window boundaries.
const READ_WINDOW: usize = if cfg!(test) { 96 } else { 8 << 20 };

/// Payload bytes before the body, and the whole frame header before it.
const BODY_AT: usize = frame::FRAME_HEADER + frame::PAYLOAD_HEADER;

/// What the scanner found next.
#[derive(Debug)]
pub(super) enum Scanned<'a> {
    /// A valid frame at `offset`, `len` bytes long in all.
    Frame {
        offset: u64,
        len: usize,
        space: SpaceNo,
        lsn: Lsn,
        body: &'a [u8],
    },
    /// Bytes `offset..end` hold no valid frame; `end` is where the next valid
    /// frame starts, or the end of the file.
    Damage { offset: u64, end: u64, why: String },
}

/// See the module docs.
pub(super) struct SegmentScanner<'a> {
    file: &'a dyn FileHandle,
    path: &'a Path,
    buf: &'a mut Vec<u8>,
    file_len: u64,
    /// File offset of `buf[0]`.
    base: u64,
    /// Valid bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<'a> SegmentScanner<'a> {
    pub(super) fn new(
        file: &'a dyn FileHandle,
        path: &'a Path,
        buf: &'a mut Vec<u8>,
    ) -> Result<Self> {
        if buf.len() < READ_WINDOW {
            buf.resize(READ_WINDOW, 0);
        }
        let file_len = file.size().at(path)?;
        Ok(SegmentScanner {
            file,
            path,
            buf,
            file_len,
            base: 0,
            start: 0,
            end: 0,
        })
    }

    /// Length of the file when the scan began.
    pub(super) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// File offset of the next unread byte.
    pub(super) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Checks the segment header and moves past it; false if it is not a valid
    /// header (the scanner stays at offset 0).
    pub(super) fn read_header(&mut self) -> Result<Option<u32>> {
        self.fill(frame::SEGMENT_HEADER)?;
        let generation = frame::header_generation(self.available());
        if generation.is_some() {
            self.start += frame::SEGMENT_HEADER;
        }
        Ok(generation)
    }

    /// Moves past the header whatever it holds (a repair reads on past a damaged one).
    pub(super) fn skip_header(&mut self) {
        let n = usize::try_from(self.remaining())
            .unwrap_or(usize::MAX)
            .min(frame::SEGMENT_HEADER);
        // `read_header` filled at least this much.
        self.start += n.min(self.end - self.start);
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn remaining(&self) -> u64 {
        self.file_len - self.offset()
    }

    /// Makes `want` bytes available (or all that is left of the file).
    fn fill(&mut self, want: usize) -> Result<()> {
        let want = want.min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        if self.end - self.start >= want {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if want > self.buf.len() {
            self.buf.resize(want.max(READ_WINDOW), 0);
        }
        while self.end < want {
            let at = self.base + self.end as u64;
            let n = self
                .file
                .read_at(&mut self.buf[self.end..], at)
                .at(self.path)?;
            if n == 0 {
                break; // the file shrank under us: what is there is what there is
            }
            self.end += n;
        }
        Ok(())
    }

    /// The frame at `at` bytes past the current offset, if a valid one starts
    /// there: `(len, space, lsn)`. Cheap checks first, the checksum last.
    fn frame_at(&mut self, at: usize, strict: bool) -> Result<Option<(usize, SpaceNo, Lsn)>> {
        self.fill(at + frame::FRAME_HEADER)?;
        let head = self.available().get(at..at + frame::FRAME_HEADER);
        let Some(head) = head else {
            return Ok(None);
        };
        let payload = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if !(frame::PAYLOAD_HEADER..=frame::MAX_PAYLOAD).contains(&payload) {
            return Ok(None);
        }
        let len = frame::FRAME_HEADER + payload;
        if (at + len) as u64 > self.remaining() {
            return Ok(None);
        }
        self.fill(at + len)?;
        let bytes = &self.available()[at..at + len];
        if strict && !plausible(bytes) {
            return Ok(None);
        }
        Ok(frame::decode_frame(bytes)
            .ok()
            .map(|f| (f.len, f.space, f.lsn)))
    }

    /// The next frame or damaged stretch; `None` at the end of the file.
    pub(super) fn next(&mut self) -> Result<Option<Scanned<'_>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let offset = self.offset();
        if let Some((len, space, lsn)) = self.frame_at(0, false)? {
            let at = self.start;
            self.start += len;
            return Ok(Some(Scanned::Frame {
                offset,
                len,
                space,
                lsn,
                body: &self.buf[at + BODY_AT..at + len],
            }));
        }
        let why = self.why_bad()?;
        // Re-synchronise: the next offset where two frames in a row (or one that
        // ends the file) decode.
        loop {
            self.fill(1)?;
            self.start += 1;
            if self.remaining() == 0 {
                break;
            }
            if let Some((len, _, _)) = self.frame_at(0, true)? {
                let next = len as u64;
                if next == self.remaining() || self.frame_at(len, true)?.is_some() {
                    break;
                }
            }
        }
        Ok(Some(Scanned::Damage {
            offset,
            end: self.offset(),
            why,
        }))
    }

    /// Why the frame at the current offset does not decode.
    fn why_bad(&mut self) -> Result<String> {
        let head = self.available();
        if head.len() < frame::FRAME_HEADER {
            return Ok("a frame header runs past the end of the file (torn write)".into());
        }
        let payload = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if !(frame::PAYLOAD_HEADER..=frame::MAX_PAYLOAD).contains(&payload) {
            return Ok(format!("frame length {payload} out of range"));
        }
        let len = frame::FRAME_HEADER + payload;
        if len as u64 > self.remaining() {
            return Ok("a frame runs past the end of the file (torn write)".into());
        }
        self.fill(len)?;
        Ok(match frame::decode_frame(&self.available()[..len]) {
            Err(FrameError::Corrupt(d)) => d,
            Err(FrameError::Truncated) => "truncated frame".into(),
            Ok(f) => format!("implausible frame (space {}, LSN {})", f.space.0, f.lsn),
        })
    }
}

/// Space numbers and LSNs a real frame can have: rules out most random bytes
/// before their checksum is computed.
fn plausible(frame_bytes: &[u8]) -> bool {
    let p = &frame_bytes[frame::FRAME_HEADER..];
    let space = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&p[4..12]);
    let lsn = u64::from_le_bytes(lsn);
    space < (1 << 24) && (1..(1u64 << 48)).contains(&lsn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{FileSystem, OpenMode, SimFs};

    fn segment(frames: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
        let mut buf = frame::segment_header(0).to_vec();
        for (space, lsn, body) in frames {
            frame::encode_frame(&mut buf, SpaceNo(*space), *lsn, body);
        }
        buf
    }

    /// `(offset, lsn)` of each frame, or `(offset, end)` of each damaged stretch.
    type Spans = Vec<(u64, u64)>;

    /// The frames and the damage found in `bytes`.
    fn scan(bytes: &[u8]) -> (Spans, Spans) {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/l")).unwrap();
        let p = Path::new("/l/s");
        let f = fs.open(p, OpenMode::CreateNew).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        let mut buf = Vec::new();
        let mut s = SegmentScanner::new(f.as_ref(), p, &mut buf).unwrap();
        assert_eq!(s.read_header().unwrap(), Some(0));
        let (mut frames, mut damage) = (Vec::new(), Vec::new());
        while let Some(item) = s.next().unwrap() {
            match item {
                Scanned::Frame {
                    offset, lsn, body, ..
                } => {
                    assert_eq!(body, &vec![lsn as u8; 40 + lsn as usize][..]);
                    frames.push((offset, lsn));
                }
                Scanned::Damage { offset, end, .. } => damage.push((offset, end)),
            }
        }
        (frames, damage)
    }

    fn frames(n: u64) -> Vec<(u32, u64, Vec<u8>)> {
        (1..=n)
            .map(|l| (1, l, vec![l as u8; 40 + l as usize]))
            .collect()
    }

    #[test]
    fn a_clean_segment_is_all_frames() {
        let (f, d) = scan(&segment(&frames(20)));
        assert_eq!(f.len(), 20);
        assert!(d.is_empty());
    }

    #[test]
    fn any_damaged_byte_costs_only_its_frame() {
        let clean = segment(&frames(12));
        let (good, _) = scan(&clean);
        // Every byte of every frame, one at a time.
        for at in frame::SEGMENT_HEADER..clean.len() {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x5a;
            let (f, d) = scan(&bytes);
            let hit = good.iter().rposition(|(o, _)| *o as usize <= at).unwrap();
            let want: Vec<_> = good
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != hit)
                .map(|(_, x)| *x)
                .collect();
            assert_eq!(f, want, "byte {at}");
            assert_eq!(d.len(), 1, "byte {at}");
            assert_eq!(d[0].0, good[hit].0, "byte {at}");
        }
    }

    #[test]
    fn a_torn_tail_is_damage_up_to_the_end() {
        let clean = segment(&frames(5));
        let cut = clean.len() - 7;
        let (good, _) = scan(&clean);
        let (f, d) = scan(&clean[..cut]);
        assert_eq!(f, good[..4]);
        assert_eq!(d, vec![(good[4].0, cut as u64)]);
    }
}
