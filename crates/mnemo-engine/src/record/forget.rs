//! The forget record: which memories of a space stop existing at its LSN.
//!
//! ```text
//! u8  kind = 4     i64 recorded_at_us     u8 reason (1 = forget, 2 = expired)
//! u32 length, then the LSNs as a serialised roaring treemap
//! ```
//!
//! The LSNs are resolved when the forget is admitted (a filter is evaluated at the
//! latest snapshot then), so replaying the log reproduces exactly what it removed.

use roaring::RoaringTreemap;

use super::{DecodeError, KIND_FORGET, Reader};

/// Why memories were forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForgetReason {
    /// A client asked (`Forget`).
    Asked = 1,
    /// Their expiry passed (written by the expiry sweep).
    Expired = 2,
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForgetRecord {
    pub(crate) recorded_at_us: i64,
    pub(crate) reason: ForgetReason,
    pub(crate) lsns: RoaringTreemap,
}

impl ForgetRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let n = self.lsns.serialized_size();
        let mut out = Vec::with_capacity(1 + 8 + 1 + 4 + n);
        out.push(KIND_FORGET);
        out.extend_from_slice(&self.recorded_at_us.to_le_bytes());
        out.push(self.reason as u8);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        // Writing into a Vec cannot fail.
        let _ = self.lsns.serialize_into(&mut out);
        out
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let kind = r.u8("kind")?;
        if kind != KIND_FORGET {
            return Err(DecodeError(format!("record kind {kind} is not a forget")));
        }
        let recorded_at_us = i64::from_le_bytes(r.array("recorded_at")?);
        let reason = match r.u8("reason")? {
            1 => ForgetReason::Asked,
            2 => ForgetReason::Expired,
            x => return Err(DecodeError(format!("forget reason {x}"))),
        };
        let n = u32::from_le_bytes(r.array("lsns length")?) as usize;
        let raw = r.bytes(n, "lsns")?;
        let lsns = RoaringTreemap::deserialize_from(raw)
            .map_err(|e| DecodeError(format!("forget LSNs: {e}")))?;
        r.finish()?;
        Ok(ForgetRecord {
            recorded_at_us,
            reason,
            lsns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(lsns in prop::collection::btree_set(1u64..1_000_000, 0..300), t in any::<i64>()) {
            let rec = ForgetRecord {
                recorded_at_us: t,
                reason: ForgetReason::Expired,
                lsns: lsns.iter().copied().collect(),
            };
            let body = rec.encode();
            prop_assert_eq!(super::super::kind(&body), super::super::Kind::Forget);
            prop_assert_eq!(ForgetRecord::decode(&body).unwrap(), rec);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let mut b = bytes;
            if !b.is_empty() { b[0] = KIND_FORGET; }
            let _ = ForgetRecord::decode(&b);
        }
    }
}
