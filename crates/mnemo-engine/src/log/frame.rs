//! Frame layout of the log: `[len u32][crc32c u32][payload]`, little-endian, where
//! `payload = [space u32][lsn u64][body]` and the checksum covers the payload.
//! A frame either decodes whole and verified, or is reported as torn/corrupt.

use crate::types::{Lsn, SpaceNo};

/// Bytes before the payload.
pub(crate) const FRAME_HEADER: usize = 8;
/// Bytes of the payload before the body.
pub(crate) const PAYLOAD_HEADER: usize = 12;
/// Largest payload accepted (guards the decoder against absurd lengths).
pub(crate) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Magic at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"MNEMOLOG";
/// Format version written after the magic.
pub(crate) const SEGMENT_VERSION: u32 = 1;
/// Size of the segment header: magic, version, generation.
pub(crate) const SEGMENT_HEADER: usize = 16;

/// Builds the segment header of a segment's `generation`-th version (0 when
/// created; each compaction that rewrites it adds one).
pub(crate) fn segment_header(generation: u32) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&generation.to_le_bytes());
    h
}

/// The generation of a valid segment header, `None` if `h` is not one.
pub(crate) fn header_generation(h: &[u8]) -> Option<u32> {
    let h = h.get(..SEGMENT_HEADER)?;
    if h[..12] != segment_header(0)[..12] {
        return None;
    }
    Some(u32::from_le_bytes([h[12], h[13], h[14], h[15]]))
}

/// Appends one frame to `out` and returns its total length.
pub fn encode_frame(out: &mut Vec<u8>, space: SpaceNo, lsn: Lsn, body: &[u8]) -> usize {
    let payload_len = PAYLOAD_HEADER + body.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&space.0.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    FRAME_HEADER + payload_len
}

/// A verified frame borrowed from a buffer.
#[allow(missing_docs)] // fields named by the layout above
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub space: SpaceNo,
    pub lsn: Lsn,
    pub body: &'a [u8],
    /// Total length of the frame including its header.
    pub len: usize,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside the frame (a torn write, or simply the end).
    Truncated,
    /// Length field out of range, or checksum mismatch.
    Corrupt(String),
}

/// Decodes the frame at the start of `buf`.
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if !(PAYLOAD_HEADER..=MAX_PAYLOAD).contains(&len) {
        return Err(FrameError::Corrupt(format!(
            "frame length {len} out of range"
        )));
    }
    let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(FrameError::Truncated);
    };
    let actual = crc32c::crc32c(payload);
    if actual != crc {
        return Err(FrameError::Corrupt(format!(
            "checksum {actual:08x} != stored {crc:08x}"
        )));
    }
    let space = SpaceNo(u32::from_le_bytes([
        payload[0], payload[1], payload[2], payload[3],
    ]));
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&payload[4..12]);
    Ok(Frame {
        space,
        lsn: u64::from_le_bytes(lsn),
        body: &payload[PAYLOAD_HEADER..],
        len: FRAME_HEADER + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(space in any::<u32>(), lsn in any::<u64>(), body in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = Vec::new();
            let n = encode_frame(&mut buf, SpaceNo(space), lsn, &body);
            prop_assert_eq!(n, buf.len());
            let f = decode_frame(&buf).unwrap();
            prop_assert_eq!(f, Frame { space: SpaceNo(space), lsn, body: &body, len: n });
        }

        #[test]
        fn every_truncation_is_detected(body in prop::collection::vec(any::<u8>(), 0..64), cut in 0usize..100) {
            let mut buf = Vec::new();
            encode_frame(&mut buf, SpaceNo(1), 7, &body);
            let cut = cut % buf.len();
            prop_assert_eq!(decode_frame(&buf[..cut]), Err(FrameError::Truncated));
        }

        #[test]
        fn every_bit_flip_is_detected(body in prop::collection::vec(any::<u8>(), 1..64), bit in any::<usize>()) {
            let mut buf = Vec::new();
            encode_frame(&mut buf, SpaceNo(1), 7, &body);
            let bit = bit % (buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_frame(&buf).is_err());
        }

        #[test]
        fn never_panics(buf in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_frame(&buf);
        }
    }
}
