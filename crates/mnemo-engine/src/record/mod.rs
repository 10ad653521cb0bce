//! The records a log frame's body holds: observations (validation of client input
//! and their byte encoding), forget records (`forget.rs`) and lost-record
//! placeholders. Observation layout (little-endian), documented in docs/log-format.md:
//!
//! ```text
//! u8  kind (1 = observation v1, 3 = observation v2)
//! [16] memory id (UUID)       i64 occurred_at_us   i64 recorded_at_us
//! f32 confidence               u64 session_seq
//! u16 session_len, bytes       u32 dim, dim × f32
//! u32 content_len, bytes       u16 tag_count, tag_count × (u16 klen, key, u16 vlen, value)
//! v2 only: i64 expires_at_us (0 = never)   u8 supersedes (0/1), then [16] id, u64 lsn
//! ```
//!
//! An observation with neither an expiry nor a memory it supersedes is written as v1.

mod forget;

pub(crate) use forget::{ForgetReason, ForgetRecord};

use std::collections::BTreeMap;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::types::{
    Lsn, MAX_CONTENT_BYTES, MAX_SESSION_ID_BYTES, MAX_TAG_KEY_BYTES, MAX_TAGS, MAX_TAGS_BYTES,
    Observation, now_us,
};

const KIND_OBSERVATION_V1: u8 = 1;
/// A placeholder for a record lost to damage: `mnemo repair` writes one per lost
/// LSN so that each space's LSNs stay dense. It has no content.
const KIND_LOST: u8 = 2;
/// An observation with an expiry or a memory it supersedes.
const KIND_OBSERVATION_V2: u8 = 3;
/// A forget record (`forget.rs`).
pub(crate) const KIND_FORGET: u8 = 4;

/// What a record body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Observation,
    Lost,
    Forget,
    Unknown(u8),
}

/// The kind of record `body` holds (from its first byte).
pub(crate) fn kind(body: &[u8]) -> Kind {
    match body.first() {
        Some(&(KIND_OBSERVATION_V1 | KIND_OBSERVATION_V2)) => Kind::Observation,
        Some(&KIND_LOST) if body.len() == 1 => Kind::Lost,
        Some(&KIND_FORGET) => Kind::Forget,
        Some(&k) => Kind::Unknown(k),
        None => Kind::Unknown(0),
    }
}

/// The memory an observation corrects: it is forgotten at the observation's LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supersedes {
    /// Its id.
    pub id: Uuid,
    /// Its LSN; 0 if it was still in flight when this observation was admitted
    /// (it commits first, and is found by its id when this one commits).
    pub lsn: Lsn,
}

/// The body of a lost-record placeholder.
pub(crate) fn lost_body() -> Vec<u8> {
    vec![KIND_LOST]
}

/// A validated observation with every default filled in: exactly what the log stores.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationRecord {
    /// Memory id.
    pub id: Uuid,
    /// When it happened (µs since epoch).
    pub occurred_at_us: i64,
    /// When the server received it (µs since epoch).
    pub recorded_at_us: i64,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// Session it came from ("" for none).
    pub session_id: String,
    /// Sequence in the session (0 for none).
    pub session_seq: u64,
    /// Exact embedding.
    pub embedding: Vec<f32>,
    /// Content text.
    pub content: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When it stops being recalled (µs since epoch), if ever.
    pub expires_at_us: Option<i64>,
    /// The memory it corrects, if any.
    pub supersedes: Option<Supersedes>,
}

impl ObservationRecord {
    /// Validates `obs` against a space of dimension `dim` and fills the defaults.
    /// Errors name the offending field; nothing is written on error.
    pub fn from_observation(obs: Observation, dim: u32) -> Result<Self> {
        if obs.embedding.len() != dim as usize {
            return Err(Error::invalid(format!(
                "embedding has {} dimensions, the space has {dim}",
                obs.embedding.len()
            )));
        }
        if let Some(i) = obs.embedding.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "embedding[{i}] is not a finite number"
            )));
        }
        if obs.content.len() > MAX_CONTENT_BYTES {
            return Err(Error::invalid(format!(
                "content is {} bytes, the limit is {MAX_CONTENT_BYTES}",
                obs.content.len()
            )));
        }
        let confidence = obs.confidence.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&confidence) {
            return Err(Error::invalid(format!(
                "confidence must be in [0, 1], got {confidence}"
            )));
        }
        if obs.session_id.len() > MAX_SESSION_ID_BYTES {
            return Err(Error::invalid(format!(
                "session id is {} bytes, the limit is {MAX_SESSION_ID_BYTES}",
                obs.session_id.len()
            )));
        }
        validate_tags(&obs.tags)?;
        let recorded_at_us = now_us();
        if let Some(at) = obs.expires_at_us
            && at <= recorded_at_us
        {
            return Err(Error::invalid(format!(
                "expires_at ({at} µs) is not in the future (now: {recorded_at_us} µs)"
            )));
        }
        Ok(ObservationRecord {
            id: obs.id.unwrap_or_else(Uuid::now_v7),
            occurred_at_us: obs.occurred_at_us.unwrap_or(recorded_at_us),
            recorded_at_us,
            confidence,
            session_id: obs.session_id,
            session_seq: obs.session_seq,
            embedding: obs.embedding,
            content: obs.content,
            tags: obs.tags,
            expires_at_us: obs.expires_at_us,
            // The LSN is resolved at admission (`Inner::submit`).
            supersedes: obs.supersedes.map(|id| Supersedes { id, lsn: 0 }),
        })
    }

    /// True if it is written as v2 (it has an expiry or supersedes a memory).
    fn is_v2(&self) -> bool {
        self.expires_at_us.is_some() || self.supersedes.is_some()
    }

    /// Size of the encoded body in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + 16
            + 8
            + 8
            + 4
            + 8
            + 2
            + self.session_id.len()
            + 4
            + 4 * self.embedding.len()
            + 4
            + self.content.len()
            + 2
            + self
                .tags
                .iter()
                .map(|(k, v)| 4 + k.len() + v.len())
                .sum::<usize>()
            + if self.is_v2() {
                8 + 1 + if self.supersedes.is_some() { 24 } else { 0 }
            } else {
                0
            }
    }

    /// Appends the encoded body to `out`. Lengths fit their fields because
    /// [`ObservationRecord::from_observation`] bounded them.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(if self.is_v2() {
            KIND_OBSERVATION_V2
        } else {
            KIND_OBSERVATION_V1
        });
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.occurred_at_us.to_le_bytes());
        out.extend_from_slice(&self.recorded_at_us.to_le_bytes());
        out.extend_from_slice(&self.confidence.to_le_bytes());
        out.extend_from_slice(&self.session_seq.to_le_bytes());
        put_str16(out, &self.session_id);
        out.extend_from_slice(&(self.embedding.len() as u32).to_le_bytes());
        for x in &self.embedding {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&(self.content.len() as u32).to_le_bytes());
        out.extend_from_slice(self.content.as_bytes());
        out.extend_from_slice(&(self.tags.len() as u16).to_le_bytes());
        for (k, v) in &self.tags {
            put_str16(out, k);
            put_str16(out, v);
        }
        if self.is_v2() {
            out.extend_from_slice(&self.expires_at_us.unwrap_or(0).to_le_bytes());
            match self.supersedes {
                Some(s) => {
                    out.push(1);
                    out.extend_from_slice(s.id.as_bytes());
                    out.extend_from_slice(&s.lsn.to_le_bytes());
                }
                None => out.push(0),
            }
        }
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes only the session id and sequence of a body (what recovery needs for
    /// records the index checkpoint already holds), without copying the rest.
    pub fn decode_session(body: &[u8]) -> Result<(&str, u64), DecodeError> {
        let head = Reader::new(body).head()?;
        Ok((head.session_id, head.session_seq))
    }

    /// Decodes only the embedding of a body (what an exact re-score needs), without
    /// copying the content and tags.
    pub fn decode_embedding(body: &[u8]) -> Result<Vec<f32>, DecodeError> {
        let mut r = Reader::new(body);
        r.head()?;
        Ok(floats(r.embedding()?))
    }

    /// Decodes a body. Never panics on any input; a malformed body is a
    /// [`DecodeError`] naming the field.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let head = r.head()?;
        let embedding = floats(r.embedding()?);
        let content = r.content()?.to_owned();
        let ntags = u16::from_le_bytes(r.array("tag_count")?);
        let mut tags = BTreeMap::new();
        for _ in 0..ntags {
            let k = r.str16("tag key")?;
            let v = r.str16("tag value")?;
            tags.insert(k.to_owned(), v.to_owned());
        }
        let (expires_at_us, supersedes) = r.extension(head.v2)?;
        r.finish()?;
        Ok(ObservationRecord {
            id: head.id,
            occurred_at_us: head.occurred_at_us,
            recorded_at_us: head.recorded_at_us,
            confidence: head.confidence,
            session_id: head.session_id.to_owned(),
            session_seq: head.session_seq,
            embedding,
            content,
            tags,
            expires_at_us,
            supersedes,
        })
    }
}

/// Little-endian f32s.
fn floats(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!(
            "{} tags, the limit is {MAX_TAGS}",
            tags.len()
        )));
    }
    let mut total = 0usize;
    for (k, v) in tags {
        if k.is_empty() || k.len() > MAX_TAG_KEY_BYTES {
            return Err(Error::invalid(format!(
                "tag key {k:?} must be 1..={MAX_TAG_KEY_BYTES} bytes"
            )));
        }
        total += k.len() + v.len();
    }
    if total > MAX_TAGS_BYTES {
        return Err(Error::invalid(format!(
            "tags take {total} bytes, the limit is {MAX_TAGS_BYTES}"
        )));
    }
    Ok(())
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// What filters, ids and ranking need of a record, borrowed from its body or from
/// a decoded record: everything but the embedding and the content.
#[derive(Debug, Clone)]
pub(crate) struct ObservationAttrs<'a> {
    pub(crate) id: Uuid,
    pub(crate) occurred_at_us: i64,
    pub(crate) recorded_at_us: i64,
    pub(crate) confidence: f32,
    pub(crate) session_id: &'a str,
    pub(crate) session_seq: u64,
    pub(crate) tags: Vec<(&'a str, &'a str)>,
    pub(crate) expires_at_us: Option<i64>,
    pub(crate) supersedes: Option<Supersedes>,
}

impl ObservationRecord {
    /// The record's attributes.
    pub(crate) fn attrs(&self) -> ObservationAttrs<'_> {
        ObservationAttrs {
            id: self.id,
            occurred_at_us: self.occurred_at_us,
            recorded_at_us: self.recorded_at_us,
            confidence: self.confidence,
            session_id: &self.session_id,
            session_seq: self.session_seq,
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            expires_at_us: self.expires_at_us,
            supersedes: self.supersedes,
        }
    }

    /// Decodes the attributes of a body, skipping the embedding and the content
    /// (what recovery needs for records the index checkpoint already holds).
    pub(crate) fn decode_attrs(body: &[u8]) -> Result<ObservationAttrs<'_>, DecodeError> {
        let mut r = Reader::new(body);
        let head = r.head()?;
        r.embedding()?;
        r.content()?;
        let ntags = u16::from_le_bytes(r.array("tag_count")?);
        let mut tags = Vec::with_capacity(ntags as usize);
        for _ in 0..ntags {
            tags.push((r.str16("tag key")?, r.str16("tag value")?));
        }
        let (expires_at_us, supersedes) = r.extension(head.v2)?;
        r.finish()?;
        Ok(ObservationAttrs {
            id: head.id,
            occurred_at_us: head.occurred_at_us,
            recorded_at_us: head.recorded_at_us,
            confidence: head.confidence,
            session_id: head.session_id,
            session_seq: head.session_seq,
            tags,
            expires_at_us,
            supersedes,
        })
    }
}

/// A record body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record: {0}")]
pub struct DecodeError(pub String);

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError(format!("truncated at {what}"))),
        }
    }
    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(super) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn str16(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let n = u16::from_le_bytes(self.array(what)?) as usize;
        let s = self.bytes(n, what)?;
        std::str::from_utf8(s).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }

    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The fields before the embedding.
    fn head(&mut self) -> Result<Head<'a>, DecodeError> {
        let kind = self.u8("kind")?;
        if kind != KIND_OBSERVATION_V1 && kind != KIND_OBSERVATION_V2 {
            return Err(DecodeError(format!("unknown record kind {kind}")));
        }
        Ok(Head {
            v2: kind == KIND_OBSERVATION_V2,
            id: Uuid::from_bytes(self.array::<16>("id")?),
            occurred_at_us: i64::from_le_bytes(self.array("occurred_at")?),
            recorded_at_us: i64::from_le_bytes(self.array("recorded_at")?),
            confidence: f32::from_le_bytes(self.array("confidence")?),
            session_seq: u64::from_le_bytes(self.array("session_seq")?),
            session_id: self.str16("session_id")?,
        })
    }

    /// The embedding's bytes.
    fn embedding(&mut self) -> Result<&'a [u8], DecodeError> {
        let dim = u32::from_le_bytes(self.array("dim")?) as usize;
        let bytes = dim
            .checked_mul(4)
            .ok_or_else(|| DecodeError("dim overflow".into()))?;
        self.bytes(bytes, "embedding")
    }

    fn content(&mut self) -> Result<&'a str, DecodeError> {
        let n = u32::from_le_bytes(self.array("content_len")?) as usize;
        std::str::from_utf8(self.bytes(n, "content")?)
            .map_err(|_| DecodeError("content is not UTF-8".into()))
    }

    /// The v2 fields after the tags: expiry and the memory superseded.
    fn extension(&mut self, v2: bool) -> Result<(Option<i64>, Option<Supersedes>), DecodeError> {
        if !v2 {
            return Ok((None, None));
        }
        let expires = i64::from_le_bytes(self.array("expires_at")?);
        let supersedes = match self.u8("supersedes")? {
            0 => None,
            1 => Some(Supersedes {
                id: Uuid::from_bytes(self.array::<16>("supersedes id")?),
                lsn: u64::from_le_bytes(self.array("supersedes lsn")?),
            }),
            f => return Err(DecodeError(format!("supersedes flag {f}"))),
        };
        Ok(((expires != 0).then_some(expires), supersedes))
    }

    /// Nothing may follow the last field.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// The fields of a record before its embedding.
struct Head<'a> {
    v2: bool,
    id: Uuid,
    occurred_at_us: i64,
    recorded_at_us: i64,
    confidence: f32,
    session_seq: u64,
    session_id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obs(dim: usize) -> Observation {
        Observation {
            content: "hello".into(),
            embedding: vec![0.5; dim],
            ..Default::default()
        }
    }

    #[test]
    fn rejects_bad_input_with_precise_errors() {
        let cases: Vec<(Observation, &str)> = vec![
            (obs(3), "3 dimensions"),
            (
                Observation {
                    embedding: vec![1.0, f32::NAN, 0.0, 0.0],
                    ..obs(4)
                },
                "embedding[1]",
            ),
            (
                Observation {
                    embedding: vec![f32::INFINITY, 0.0, 0.0, 0.0],
                    ..obs(4)
                },
                "embedding[0]",
            ),
            (
                Observation {
                    content: "x".repeat(MAX_CONTENT_BYTES + 1),
                    ..obs(4)
                },
                "content is",
            ),
            (
                Observation {
                    confidence: Some(1.5),
                    ..obs(4)
                },
                "confidence",
            ),
            (
                Observation {
                    confidence: Some(f32::NAN),
                    ..obs(4)
                },
                "confidence",
            ),
            (
                Observation {
                    session_id: "s".repeat(200),
                    ..obs(4)
                },
                "session id",
            ),
            (
                Observation {
                    tags: [(String::new(), "v".to_string())].into(),
                    ..obs(4)
                },
                "tag key",
            ),
            (
                Observation {
                    tags: [("k".to_string(), "v".repeat(9000))].into(),
                    ..obs(4)
                },
                "tags take",
            ),
        ];
        for (o, want) in cases {
            let err = ObservationRecord::from_observation(o, 4)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn defaults_are_filled() {
        let r = ObservationRecord::from_observation(obs(4), 4).unwrap();
        assert_eq!(r.confidence, 1.0);
        assert_eq!(r.occurred_at_us, r.recorded_at_us);
        assert_eq!(r.id.get_version_num(), 7);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            emb in prop::collection::vec(-1e6f32..1e6, 1..64),
            content in ".{0,200}",
            session in "[a-z0-9]{0,20}",
            seq in any::<u64>(),
            conf in 0.0f32..=1.0,
            tags in prop::collection::btree_map("[a-z]{1,8}", ".{0,16}", 0..5),
            expires_in in prop::option::of(1i64..1_000_000_000),
            supersedes in prop::option::of((any::<u128>(), 1u64..u64::MAX)),
        ) {
            let dim = emb.len() as u32;
            let o = Observation { content, embedding: emb, confidence: Some(conf), tags,
                session_id: session, session_seq: seq,
                expires_at_us: expires_in.map(|d| now_us() + 10_000_000 + d),
                supersedes: supersedes.map(|(id, _)| Uuid::from_u128(id)),
                ..Default::default() };
            let mut r = ObservationRecord::from_observation(o, dim).unwrap();
            if let (Some(s), Some((_, lsn))) = (r.supersedes.as_mut(), supersedes) {
                s.lsn = lsn;
            }
            let bytes = r.encode();
            prop_assert_eq!(bytes.len(), r.encoded_len());
            prop_assert_eq!(ObservationRecord::decode_session(&bytes).unwrap(), (r.session_id.as_str(), r.session_seq));
            prop_assert_eq!(ObservationRecord::decode(&bytes).unwrap(), r.clone());
            let attrs = ObservationRecord::decode_attrs(&bytes).unwrap();
            prop_assert_eq!(attrs.expires_at_us, r.expires_at_us);
            prop_assert_eq!(attrs.supersedes, r.supersedes);
            prop_assert_eq!(ObservationRecord::decode_embedding(&bytes).unwrap(), r.embedding);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = ObservationRecord::decode(&bytes);
        }

        #[test]
        fn truncated_body_is_an_error(cut in 0usize..60) {
            let r = ObservationRecord::from_observation(obs(4), 4).unwrap();
            let bytes = r.encode();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(ObservationRecord::decode(&bytes[..cut]).is_err());
        }
    }
}
