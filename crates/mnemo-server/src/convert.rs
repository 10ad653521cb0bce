//! Conversions between protocol messages and engine types, and the one mapping
//! from engine errors to gRPC status codes.

use mnemo_engine as engine;
use mnemo_engine::Error;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::pb;

/// When a client refused because no node holds a partition should try again.
const NO_OWNER_RETRY: Duration = Duration::from_millis(500);

/// When a client refused for a full disk should try again.
const STORAGE_FULL_RETRY: Duration = Duration::from_secs(1);

/// The gRPC status for an engine error. Retryable refusals (RESOURCE_EXHAUSTED)
/// carry `google.rpc.RetryInfo` details and the `grpc-retry-pushback-ms` trailer.
pub fn status(e: Error) -> Status {
    let msg = e.to_string();
    if let Error::NotOwner {
        owner: Some(addr), ..
    } = &e
    {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Ok(v) = addr.parse() {
            metadata.insert(mnemo_proto::OWNER_METADATA, v);
        }
        return Status::with_metadata(Code::Unavailable, msg, metadata);
    }
    let (code, retry) = match &e {
        Error::InvalidArgument(_) => (Code::InvalidArgument, None),
        Error::SpaceNotFound(_)
        | Error::SessionNotFound(_)
        | Error::NotLive { .. }
        | Error::Forgotten { .. } => (Code::NotFound, None),
        Error::SnapshotTooOld { .. } => (Code::FailedPrecondition, None),
        Error::SpaceExists(_) | Error::MemoryExists { .. } => (Code::AlreadyExists, None),
        Error::Overloaded { retry_after, .. } => (Code::ResourceExhausted, Some(*retry_after)),
        Error::TooManySessions { retry_after, .. } => (Code::ResourceExhausted, Some(*retry_after)),
        Error::StorageFull { .. } => (Code::ResourceExhausted, Some(STORAGE_FULL_RETRY)),
        Error::WindowExceeded { .. } => (Code::ResourceExhausted, Some(Duration::from_millis(10))),
        Error::Timeout { .. } => (Code::DeadlineExceeded, None),
        Error::SnapshotInFuture { .. } => (Code::OutOfRange, None),
        Error::SequenceGap { .. } | Error::SessionClosed { .. } => (Code::FailedPrecondition, None),
        Error::Corruption { .. } | Error::RecordLost { .. } => (Code::DataLoss, None),
        Error::ShuttingDown => (Code::Unavailable, None),
        Error::NotOwner { .. } => (Code::Unavailable, Some(NO_OWNER_RETRY)),
        Error::ClusterUnavailable(_) => (Code::Unavailable, Some(NO_OWNER_RETRY)),
        Error::FollowGap { .. } => (Code::Internal, None),
        Error::Poisoned(_) | Error::Io { .. } | Error::Index(_) => (Code::Internal, None),
        _ => (Code::Internal, None),
    };
    match retry {
        // Retryable: google.rpc.RetryInfo details plus the grpc-retry-pushback-ms trailer.
        Some(d) => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            if let Ok(v) = d.as_millis().to_string().parse() {
                metadata.insert("grpc-retry-pushback-ms", v);
            }
            Status::with_error_details_and_metadata(
                code,
                msg,
                ErrorDetails::with_retry_info(Some(d)),
                metadata,
            )
        }
        None => Status::new(code, msg),
    }
}

/// A protocol observation as an engine observation (not yet validated).
pub fn observation(o: pb::Observation) -> Result<engine::Observation, Status> {
    let id = if o.id.is_empty() {
        None
    } else {
        Some(
            uuid::Uuid::parse_str(&o.id)
                .map_err(|e| Status::invalid_argument(format!("id is not a UUID: {e}")))?,
        )
    };
    let supersedes = if o.supersedes.is_empty() {
        None
    } else {
        Some(
            uuid::Uuid::parse_str(&o.supersedes)
                .map_err(|e| Status::invalid_argument(format!("supersedes is not a UUID: {e}")))?,
        )
    };
    Ok(engine::Observation {
        id,
        content: o.content,
        embedding: embedding(o.embedding, &o.embedding_f32, "embedding")?,
        confidence: o.confidence,
        occurred_at_us: o.occurred_at_us,
        tags: o.tags.into_iter().collect(),
        session_id: String::new(),
        session_seq: 0,
        supersedes,
        expires_at_us: o.expires_at_us,
    })
}

/// The engine lane of a protocol lane.
pub(crate) fn lane(l: i32) -> engine::Lane {
    match pb::Lane::try_from(l) {
        Ok(pb::Lane::High) => engine::Lane::High,
        Ok(pb::Lane::Low) => engine::Lane::Low,
        _ => engine::Lane::Normal,
    }
}

/// A vector sent as `repeated float` or packed (`<what>_f32`: little-endian f32
/// bytes): exactly one of the two may be set (both empty: an empty vector, which
/// the dimension check refuses).
pub(crate) fn embedding(floats: Vec<f32>, packed: &[u8], what: &str) -> Result<Vec<f32>, Status> {
    if packed.is_empty() {
        return Ok(floats);
    }
    if !floats.is_empty() {
        return Err(Status::invalid_argument(format!(
            "both {what} and {what}_f32 are set: send one"
        )));
    }
    mnemo_proto::unpack_f32(packed).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{what}_f32 has {} bytes, not a multiple of 4 (little-endian f32)",
            packed.len()
        ))
    })
}

/// How a memory's embedding goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmbeddingForm {
    Omitted,
    Floats,
    Packed,
}

impl EmbeddingForm {
    /// From a request's `include_embedding` and `packed_embeddings`.
    pub(crate) fn of(include: bool, packed: bool) -> Self {
        match (include, packed) {
            (false, _) => EmbeddingForm::Omitted,
            (true, false) => EmbeddingForm::Floats,
            (true, true) => EmbeddingForm::Packed,
        }
    }
}

/// A memory for the wire.
pub(crate) fn memory(m: engine::Memory, form: EmbeddingForm) -> pb::Memory {
    let (embedding, embedding_f32) = match form {
        EmbeddingForm::Omitted => (Vec::new(), Vec::new()),
        EmbeddingForm::Floats => (m.embedding, Vec::new()),
        EmbeddingForm::Packed => (Vec::new(), mnemo_proto::pack_f32(&m.embedding)),
    };
    pb::Memory {
        id: m.id.to_string(),
        lsn: m.lsn,
        score: m.score,
        confidence: m.confidence,
        content: m.content,
        tags: m.tags.into_iter().collect(),
        occurred_at_us: m.occurred_at_us,
        recorded_at_us: m.recorded_at_us,
        session_id: m.session_id,
        session_sequence: m.session_seq,
        embedding,
        embedding_f32,
        expires_at_us: m.expires_at_us,
        supersedes: m.supersedes.map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// An engine recall request from the protocol's; a `max_wait_ms` above the
/// engine's bound is INVALID_ARGUMENT.
pub fn recall_request(r: &pb::RecallRequest) -> Result<engine::RecallRequest, Status> {
    let k = if r.k == 0 { 10 } else { r.k as usize };
    let cue = embedding(r.cue.clone(), &r.cue_f32, "cue")?;
    let mut req = engine::RecallRequest::new(cue, k);
    req.snapshot = if r.min_lsn > 0 {
        engine::SnapshotSpec::AtLeast(r.min_lsn)
    } else if r.snapshot_lsn > 0 {
        engine::SnapshotSpec::At(r.snapshot_lsn)
    } else {
        engine::SnapshotSpec::Latest
    };
    if r.max_wait_ms > 0 {
        req.max_wait = Duration::from_millis(u64::from(r.max_wait_ms));
    }
    if let Some(f) = &r.filter {
        req.filter = filter(f)?;
    }
    if let Some(rk) = &r.ranking {
        req.ranking = ranking(rk)?;
    }
    if req.max_wait > engine::MAX_RECALL_WAIT {
        return Err(Status::invalid_argument(format!(
            "max_wait_ms must be at most {}, got {}",
            engine::MAX_RECALL_WAIT.as_millis(),
            r.max_wait_ms
        )));
    }
    Ok(req)
}

/// An engine filter from the protocol's, checked: a bad clause is INVALID_ARGUMENT
/// naming it.
pub(crate) fn filter(f: &pb::Filter) -> Result<engine::Filter, Status> {
    use pb::tag_clause::Test;
    let mut tags = Vec::with_capacity(f.tags.len());
    for (i, c) in f.tags.iter().enumerate() {
        let test = match &c.test {
            Some(Test::Equals(v)) => engine::TagTest::Equals(v.clone()),
            Some(Test::AnyOf(set)) => engine::TagTest::AnyOf(set.values.clone()),
            Some(Test::Present(true)) => engine::TagTest::Present,
            Some(Test::Absent(true)) => engine::TagTest::Absent,
            Some(Test::Present(false) | Test::Absent(false)) | None => {
                return Err(Status::invalid_argument(format!(
                    "filter.tags[{i}] ({}): no test given (equals, any_of, present or absent)",
                    c.key
                )));
            }
        };
        tags.push(engine::TagClause {
            key: c.key.clone(),
            test,
        });
    }
    let range = |r: &Option<pb::TimeRange>| {
        r.as_ref()
            .map_or_else(engine::TimeRange::default, |r| engine::TimeRange {
                from_us: r.from_us,
                until_us: r.until_us,
            })
    };
    let out = engine::Filter {
        tags,
        session_ids: f.session_ids.clone(),
        occurred_at: range(&f.occurred_at),
        recorded_at: range(&f.recorded_at),
        min_confidence: f.min_confidence,
    };
    out.validate().map_err(status)?;
    Ok(out)
}

/// An engine ranking from the protocol's, checked.
pub(crate) fn ranking(r: &pb::Ranking) -> Result<engine::Ranking, Status> {
    let out = engine::Ranking {
        half_life: (r.half_life_ms > 0).then(|| Duration::from_millis(r.half_life_ms)),
        confidence_weight: r.confidence_weight,
    };
    out.validate().map_err(status)?;
    Ok(out)
}

/// Memory ids from the wire; a malformed one is INVALID_ARGUMENT naming it.
pub(crate) fn ids(ids: &[String]) -> Result<Vec<uuid::Uuid>, Status> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            uuid::Uuid::parse_str(id).map_err(|e| {
                Status::invalid_argument(format!("ids[{i}] ({id:?}) is not a UUID: {e}"))
            })
        })
        .collect()
}

/// Space configuration from a create request (0 = default for each parameter).
pub fn space_config(r: &pb::CreateSpaceRequest) -> engine::SpaceConfig {
    let mut c = engine::SpaceConfig::new(r.dim);
    c.metric = match pb::Metric::try_from(r.metric) {
        Ok(pb::Metric::L2) => engine::Metric::L2,
        Ok(pb::Metric::InnerProduct) => engine::Metric::InnerProduct,
        _ => engine::Metric::Cosine,
    };
    c.index.precision = match pb::Precision::try_from(r.precision) {
        Ok(pb::Precision::F32) => engine::Precision::F32,
        Ok(pb::Precision::I8) => engine::Precision::I8,
        _ => engine::Precision::F16,
    };
    if r.m > 0 {
        c.index.m = r.m;
    }
    if r.ef_construction > 0 {
        c.index.ef_construction = r.ef_construction;
    }
    if r.ef_search > 0 {
        c.index.ef_search = r.ef_search;
    }
    c.default_ttl_ms = (r.default_ttl_ms > 0).then_some(r.default_ttl_ms);
    c
}

/// A space description for the wire.
pub(crate) fn space_info(i: &engine::SpaceInfo) -> pb::SpaceInfo {
    pb::SpaceInfo {
        name: i.name.clone(),
        dim: i.config.dim,
        metric: match i.config.metric {
            engine::Metric::Cosine => pb::Metric::Cosine,
            engine::Metric::L2 => pb::Metric::L2,
            engine::Metric::InnerProduct => pb::Metric::InnerProduct,
        } as i32,
        precision: match i.config.index.precision {
            engine::Precision::F16 => pb::Precision::F16,
            engine::Precision::F32 => pb::Precision::F32,
            engine::Precision::I8 => pb::Precision::I8,
        } as i32,
        m: i.config.index.m,
        ef_construction: i.config.index.ef_construction,
        ef_search: i.config.index.ef_search,
        created_at_us: i.created_at_us,
        default_ttl_ms: i.config.default_ttl_ms.unwrap_or(0),
    }
}

/// Space counters for the wire.
pub(crate) fn space_stats(s: &engine::SpaceStats) -> pb::SpaceStats {
    pb::SpaceStats {
        committed_lsn: s.committed_lsn,
        indexed_lsn: s.indexed_lsn,
        indexed_count: s.indexed_count,
        fresh_count: s.fresh_count,
        warm_count: s.warm_count,
        warm_entered: s.warm_entered,
        warm_moved: s.warm_moved,
        checkpoint_lsn: s.checkpoint_lsn,
        attrs_bytes: s.attrs_bytes,
        live_bytes: s.live_bytes,
        dead_bytes: s.dead_bytes,
        unpurged: s.unpurged,
        oldest_snapshot_lsn: s.oldest_snapshot_lsn,
        memories: s.memories,
    }
}

/// A pressure sample as a stream status.
pub(crate) fn stream_status(p: &engine::PressureReport) -> pb::StreamStatus {
    pb::StreamStatus {
        state: match p.state {
            engine::PressureState::Normal => pb::PressureState::Normal,
            engine::PressureState::Warning => pb::PressureState::Warning,
            engine::PressureState::Critical => pb::PressureState::Critical,
            engine::PressureState::Overloaded => pb::PressureState::OverloadedState,
        } as i32,
        pressure: p.pressure as f32,
        queue_depth: p.queue_items as u64,
        queue_capacity: p.queue_max_items as u64,
        credit_window: p.credit_window,
        suggested_batch: p.suggested_batch,
        retry_after_ms: p.retry_after.as_millis() as u64,
        drain_rate: p.drain_rate,
        fresh_fill: p.fresh_fill as f32,
        warm_fill: p.warm_fill as f32,
    }
}

/// A per-item refusal as a REJECTED ack (the stream goes on).
pub(crate) fn rejected(sequence: u64, e: &Error) -> pb::Ack {
    let (code, retry, expected) = match e {
        Error::Overloaded { retry_after, .. } => (pb::RejectCode::Overloaded, *retry_after, 0),
        Error::WindowExceeded { .. } => {
            (pb::RejectCode::WindowExceeded, Duration::from_millis(10), 0)
        }
        Error::SequenceGap { expected, .. } => {
            (pb::RejectCode::SequenceGap, Duration::ZERO, *expected)
        }
        Error::SessionClosed { .. } | Error::SpaceNotFound(_) => {
            (pb::RejectCode::SessionClosed, Duration::ZERO, 0)
        }
        Error::StorageFull { .. } => (pb::RejectCode::StorageFull, STORAGE_FULL_RETRY, 0),
        Error::MemoryExists { .. } => (pb::RejectCode::AlreadyExists, Duration::ZERO, 0),
        Error::NotLive { .. } => (pb::RejectCode::NotFound, Duration::ZERO, 0),
        Error::InvalidArgument(_) | Error::RecordLost { .. } => {
            (pb::RejectCode::Invalid, Duration::ZERO, 0)
        }
        // Not the client's fault: the server cannot write now (poisoned log, I/O).
        _ => (pb::RejectCode::Unavailable, Duration::ZERO, 0),
    };
    pb::Ack {
        sequence,
        status: pb::AckStatus::Rejected as i32,
        reason: e.to_string(),
        retry_after_ms: retry.as_millis() as u64,
        code: code as i32,
        expected_sequence: expected,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_carry_retry_info_and_pushback() {
        let st = status(Error::Overloaded {
            reason: "full".into(),
            retry_after: Duration::from_millis(250),
        });
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert_eq!(
            st.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            st.metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok()),
            Some("250")
        );
        let st = status(Error::SpaceNotFound("x".into()));
        assert_eq!(st.code(), Code::NotFound);
        assert!(st.get_details_retry_info().is_none());
        assert!(st.metadata().get("grpc-retry-pushback-ms").is_none());
    }
}
