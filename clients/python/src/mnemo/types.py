"""Typed results and request helpers (frozen dataclasses over the protocol messages)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

from . import _vectors
from .v1 import mnemo_pb2 as pb


class PressureState(enum.IntEnum):
    """The server's backpressure state."""

    NORMAL = pb.NORMAL
    WARNING = pb.WARNING
    CRITICAL = pb.CRITICAL
    OVERLOADED = pb.OVERLOADED_STATE


@dataclass(frozen=True)
class Memory:
    """A stored memory, as a recall, get or export returns it."""

    id: str
    lsn: int
    content: str
    score: float = 0.0
    confidence: float = 1.0
    tags: Mapping[str, str] = field(default_factory=dict)
    occurred_at_us: int = 0
    recorded_at_us: int = 0
    session_id: str = ""
    session_sequence: int = 0
    #: Only when asked for (``include_embedding=True``).
    embedding: Optional[list[float]] = None
    expires_at_us: Optional[int] = None
    #: The id of the memory this one corrected, if any.
    supersedes: Optional[str] = None

    @classmethod
    def from_pb(cls, m: pb.Memory) -> Memory:
        if m.embedding_f32:
            embedding: Optional[list[float]] = _vectors.unpack(m.embedding_f32)
        elif len(m.embedding):
            embedding = list(m.embedding)
        else:
            embedding = None
        return cls(
            id=m.id,
            lsn=m.lsn,
            content=m.content,
            score=m.score,
            confidence=m.confidence,
            tags=dict(m.tags),
            occurred_at_us=m.occurred_at_us,
            recorded_at_us=m.recorded_at_us,
            session_id=m.session_id,
            session_sequence=m.session_sequence,
            embedding=embedding,
            expires_at_us=m.expires_at_us if m.HasField("expires_at_us") else None,
            supersedes=m.supersedes or None,
        )


@dataclass(frozen=True)
class Ack:
    """An observation's acknowledgement: durable and visible at ``lsn``."""

    sequence: int
    memory_id: str
    lsn: int
    #: True if the server had it already (a re-send after a reconnect).
    duplicate: bool = False


@dataclass(frozen=True)
class Remembered:
    """What ``remember`` stored: the memory's id and LSN."""

    memory_id: str
    lsn: int


@dataclass(frozen=True)
class Pressure:
    """The server's pressure, as a session's StreamStatus or ``stats`` reports it."""

    state: PressureState
    pressure: float
    queue_depth: int
    queue_capacity: int
    credit_window: int
    retry_after_ms: int
    drain_rate: float

    @classmethod
    def from_pb(cls, s: pb.StreamStatus) -> Pressure:
        return cls(
            state=PressureState(s.state),
            pressure=s.pressure,
            queue_depth=s.queue_depth,
            queue_capacity=s.queue_capacity,
            credit_window=s.credit_window,
            retry_after_ms=s.retry_after_ms,
            drain_rate=s.drain_rate,
        )


_METRICS = {"cosine": pb.COSINE, "l2": pb.L2, "inner_product": pb.INNER_PRODUCT}
_PRECISIONS = {"f16": pb.F16, "f32": pb.F32, "i8": pb.I8}


@dataclass(frozen=True)
class SpaceInfo:
    """A space's configuration."""

    name: str
    dim: int
    metric: str
    precision: str
    m: int
    ef_construction: int
    ef_search: int
    created_at_us: int
    default_ttl_ms: int

    @classmethod
    def from_pb(cls, s: pb.SpaceInfo) -> SpaceInfo:
        metric = {v: k for k, v in _METRICS.items()}.get(s.metric, str(s.metric))
        precision = {v: k for k, v in _PRECISIONS.items()}.get(s.precision, str(s.precision))
        return cls(
            name=s.name,
            dim=s.dim,
            metric=metric,
            precision=precision,
            m=s.m,
            ef_construction=s.ef_construction,
            ef_search=s.ef_search,
            created_at_us=s.created_at_us,
            default_ttl_ms=s.default_ttl_ms,
        )


@dataclass(frozen=True)
class SpaceStats:
    """A space's watermarks and sizes."""

    committed_lsn: int
    indexed_lsn: int
    indexed_count: int
    fresh_count: int
    checkpoint_lsn: int
    memories: int
    live_bytes: int
    dead_bytes: int
    unpurged: int
    oldest_snapshot_lsn: int

    @classmethod
    def from_pb(cls, s: pb.SpaceStats) -> SpaceStats:
        return cls(
            committed_lsn=s.committed_lsn,
            indexed_lsn=s.indexed_lsn,
            indexed_count=s.indexed_count,
            fresh_count=s.fresh_count,
            checkpoint_lsn=s.checkpoint_lsn,
            memories=s.memories,
            live_bytes=s.live_bytes,
            dead_bytes=s.dead_bytes,
            unpurged=s.unpurged,
            oldest_snapshot_lsn=s.oldest_snapshot_lsn,
        )


@dataclass(frozen=True)
class ServerStats:
    """The server's counters, pressure and per-space stats."""

    spaces: Mapping[str, SpaceStats]
    pressure: Pressure
    rss_bytes: int
    accepted: int
    refused: int
    duplicates: int
    indexed: int
    sessions_open: int
    log_bytes: int
    data_bytes: int
    disk_free_bytes: int

    @classmethod
    def from_pb(cls, s: pb.StatsResponse) -> ServerStats:
        return cls(
            spaces={sp.info.name: SpaceStats.from_pb(sp.stats) for sp in s.spaces},
            pressure=Pressure.from_pb(s.pressure),
            rss_bytes=s.server_rss_bytes,
            accepted=s.accepted,
            refused=s.refused,
            duplicates=s.duplicates,
            indexed=s.indexed,
            sessions_open=s.sessions_open,
            log_bytes=s.log_bytes,
            data_bytes=s.data_bytes,
            disk_free_bytes=s.disk_free_bytes,
        )


@dataclass(frozen=True)
class Forgotten:
    """What ``forget`` removed: how many, and the forget's LSN."""

    count: int
    lsn: int


@dataclass(frozen=True)
class GetResult:
    """``get``: the memories found, ids missing, and superseded ids → their successor."""

    memories: list[Memory]
    missing: list[str]
    superseded: Mapping[str, str]
    snapshot_lsn: int


TagValue = Union[str, Sequence[str], None, bool]


@dataclass(frozen=True)
class Filter:
    """A recall, export or forget restriction; every clause must hold.

    ``tags``: ``{"k": "v"}`` (equals), ``{"k": ["a", "b"]}`` (any of), ``{"k": True}``
    (present), ``{"k": None}`` or ``{"k": False}`` (absent). Times are µs since the epoch,
    ranges ``[from, until)``.
    """

    tags: Mapping[str, TagValue] = field(default_factory=dict)
    session_ids: Sequence[str] = ()
    occurred_from_us: Optional[int] = None
    occurred_until_us: Optional[int] = None
    recorded_from_us: Optional[int] = None
    recorded_until_us: Optional[int] = None
    min_confidence: Optional[float] = None

    def to_pb(self) -> pb.Filter:
        f = pb.Filter(session_ids=list(self.session_ids))
        for key, test in self.tags.items():
            clause = pb.TagClause(key=key)
            if test is None or test is False:
                clause.absent = True
            elif test is True:
                clause.present = True
            elif isinstance(test, str):
                clause.equals = test
            else:
                clause.any_of.values.extend(test)
            f.tags.append(clause)
        if self.occurred_from_us is not None:
            f.occurred_at.from_us = self.occurred_from_us
        if self.occurred_until_us is not None:
            f.occurred_at.until_us = self.occurred_until_us
        if self.recorded_from_us is not None:
            f.recorded_at.from_us = self.recorded_from_us
        if self.recorded_until_us is not None:
            f.recorded_at.until_us = self.recorded_until_us
        if self.min_confidence is not None:
            f.min_confidence = self.min_confidence
        return f


FilterLike = Union[Filter, Mapping[str, TagValue], None]


def filter_pb(f: FilterLike) -> Optional[pb.Filter]:
    """A filter message from a ``Filter``, a plain tag mapping, or nothing."""
    if f is None:
        return None
    if isinstance(f, Filter):
        return f.to_pb()
    return Filter(tags=dict(f)).to_pb()


def metric_pb(metric: str) -> int:
    try:
        return _METRICS[metric]
    except KeyError:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, not {metric!r}") from None


def precision_pb(precision: str) -> int:
    try:
        return _PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, not {precision!r}") from None


def tags_of(tags: Optional[Mapping[str, str]]) -> Iterable[tuple[str, str]]:
    return (tags or {}).items()
