"""Protocol messages built from Python arguments (shared by the sync and async clients)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Optional, Union

from . import _vectors
from .types import FilterLike, filter_pb, metric_pb, precision_pb
from .v1 import mnemo_pb2 as pb

Time = Union[datetime, int, None]

LANES = {"normal": pb.LANE_NORMAL, "high": pb.LANE_HIGH, "low": pb.LANE_LOW}


def micros(t: Time) -> Optional[int]:
    """A time as µs since the epoch (an int is taken as µs already)."""
    if t is None:
        return None
    if isinstance(t, datetime):
        return int(t.timestamp() * 1_000_000)
    return int(t)


def observation(
    content: str,
    embedding: _vectors.Vector,
    *,
    tags: Optional[Mapping[str, str]] = None,
    confidence: Optional[float] = None,
    occurred_at: Time = None,
    expires_at: Time = None,
    id: Optional[str] = None,
    supersedes: Optional[str] = None,
    lane: str = "normal",
    packed: Optional[bytes] = None,
) -> pb.Observation:
    """One observation; ``packed`` (little-endian f32 bytes) is used as is when given."""
    o = pb.Observation(
        content=content,
        embedding_f32=packed if packed is not None else _vectors.pack(embedding),
        id=id or "",
        supersedes=supersedes or "",
        lane=LANES[lane],
    )
    if tags:
        o.tags.update(tags)
    if confidence is not None:
        o.confidence = confidence
    occurred = micros(occurred_at)
    if occurred is not None:
        o.occurred_at_us = occurred
    expires = micros(expires_at)
    if expires is not None:
        o.expires_at_us = expires
    return o


def recall(
    space: str,
    cue: _vectors.Vector,
    *,
    k: int,
    filter: FilterLike,
    snapshot_lsn: int,
    min_lsn: int,
    max_wait_ms: int,
    include_embedding: bool,
    half_life: Optional[timedelta],
    confidence_weight: float,
    batch_size: int = 0,
) -> pb.RecallRequest:
    r = pb.RecallRequest(
        space=space,
        cue_f32=_vectors.pack(cue),
        k=k,
        batch_size=batch_size,
        snapshot_lsn=snapshot_lsn,
        min_lsn=min_lsn,
        max_wait_ms=max_wait_ms,
        include_embedding=include_embedding,
        packed_embeddings=include_embedding,
    )
    f = filter_pb(filter)
    if f is not None:
        r.filter.CopyFrom(f)
    if half_life is not None or confidence_weight:
        r.ranking.half_life_ms = int(half_life.total_seconds() * 1000) if half_life else 0
        r.ranking.confidence_weight = confidence_weight
    return r


def forget(
    space: str,
    *,
    ids: Sequence[str],
    session_id: Optional[str],
    filter: FilterLike,
) -> pb.ForgetRequest:
    r = pb.ForgetRequest(space=space, ids=list(ids), session_id=session_id or "")
    f = filter_pb(filter)
    if f is not None:
        r.filter.CopyFrom(f)
    if not r.ids and not r.session_id and f is None:
        raise ValueError("forget needs ids, a session_id or a filter (to erase a space, drop it)")
    return r


def create_space(
    name: str,
    dim: int,
    *,
    metric: str,
    precision: str,
    m: int,
    ef_construction: int,
    ef_search: int,
    ttl: Optional[timedelta],
) -> pb.CreateSpaceRequest:
    return pb.CreateSpaceRequest(
        name=name,
        dim=dim,
        metric=metric_pb(metric),  # type: ignore[arg-type]
        precision=precision_pb(precision),  # type: ignore[arg-type]
        m=m,
        ef_construction=ef_construction,
        ef_search=ef_search,
        default_ttl_ms=int(ttl.total_seconds() * 1000) if ttl else 0,
    )


def export(
    space: str, *, after_lsn: int, snapshot_lsn: int, batch_size: int, include_embedding: bool, filter: FilterLike
) -> pb.ExportRequest:
    r = pb.ExportRequest(
        space=space,
        after_lsn=after_lsn,
        snapshot_lsn=snapshot_lsn,
        batch_size=batch_size,
        include_embedding=include_embedding,
        packed_embeddings=include_embedding,
    )
    f = filter_pb(filter)
    if f is not None:
        r.filter.CopyFrom(f)
    return r
