//! A little-endian binary encoder and a checked decoder, for the engine's own
//! files (checkpointed space state, segment indexes). A file ends with the
//! CRC32C of everything before it; [`Dec::open`] checks it first.

use roaring::RoaringTreemap;

/// Appends values to a buffer.
#[derive(Default)]
pub(crate) struct Enc {
    pub(crate) buf: Vec<u8>,
}

impl Enc {
    pub(crate) fn with_magic(magic: &[u8; 8], version: u32) -> Self {
        let mut e = Enc::default();
        e.buf.extend_from_slice(magic);
        e.u32(version);
        e
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub(crate) fn bitmap(&mut self, b: &RoaringTreemap) {
        self.u64(b.serialized_size() as u64);
        // Writing into a Vec cannot fail.
        let _ = b.serialize_into(&mut self.buf);
    }
    /// The encoded bytes with their CRC32C appended.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let crc = crc32c::crc32c(&self.buf);
        self.u32(crc);
        self.buf
    }
}

/// Why a buffer does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecError(pub(crate) String);

/// Reads values back, checking every length against what is left.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    /// Checks the trailing CRC32C, the magic and the version; the decoder starts
    /// after them.
    pub(crate) fn open(buf: &'a [u8], magic: &[u8; 8], version: u32) -> Result<Self, DecError> {
        if buf.len() < 16 {
            return Err(DecError("too short".into()));
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != want {
            return Err(DecError("checksum mismatch".into()));
        }
        let mut d = Dec { buf: body, pos: 0 };
        if d.take(8)? != magic {
            return Err(DecError("wrong magic".into()));
        }
        let v = d.u32()?;
        if v != version {
            return Err(DecError(format!("version {v}, expected {version}")));
        }
        Ok(d)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| DecError(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(crate) fn f32(&mut self) -> Result<f32, DecError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    /// A count of items of at least `item_bytes` each: checked against what is left.
    pub(crate) fn count(&mut self, item_bytes: usize) -> Result<usize, DecError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(item_bytes.max(1) as u64) > left {
            return Err(DecError(format!(
                "a count of {n} at byte {} overruns",
                self.pos
            )));
        }
        Ok(n as usize)
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecError> {
        let n = self.count(1)?;
        self.take(n)
    }
    pub(crate) fn str(&mut self) -> Result<&'a str, DecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecError("a string is not UTF-8".into()))
    }
    pub(crate) fn bitmap(&mut self) -> Result<RoaringTreemap, DecError> {
        let raw = self.bytes()?;
        RoaringTreemap::deserialize_from(raw).map_err(|e| DecError(format!("a bitmap: {e}")))
    }
    /// Nothing may be left.
    pub(crate) fn end(&self) -> Result<(), DecError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecError(format!(
                "{} bytes left over",
                self.buf.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_is_caught() {
        let mut e = Enc::with_magic(b"TESTTEST", 3);
        e.buf.push(7);
        e.u64(u64::MAX);
        e.i64(-5);
        e.f32(0.25);
        e.str("héllo");
        e.bitmap(&(1..1000u64).collect());
        let buf = e.finish();
        let mut d = Dec::open(&buf, b"TESTTEST", 3).unwrap();
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u64().unwrap(), u64::MAX);
        assert_eq!(d.i64().unwrap(), -5);
        assert_eq!(d.f32().unwrap(), 0.25);
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.bitmap().unwrap().len(), 999);
        d.end().unwrap();
        assert!(Dec::open(&buf, b"TESTTEST", 4).is_err());
        assert!(Dec::open(&buf, b"OTHERxxx", 3).is_err());
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(Dec::open(&bad, b"TESTTEST", 3).is_err(), "byte {i}");
        }
        assert!(Dec::open(&buf[..buf.len() - 1], b"TESTTEST", 3).is_err());
    }
}
