"""Mnemo's Python client: ``Mnemo`` (sync) and sessions that stream observations.

Quick start::

    import numpy as np
    from mnemo import Mnemo

    with Mnemo("127.0.0.1:7400") as m:
        m.spaces.create("notes", dim=768)
        rows = np.random.rand(1000, 768).astype("float32")
        with m.session("notes") as s:
            s.observe_many(rows, [f"note {i}" for i in range(1000)])
        for hit in m.recall("notes", rows[7], k=5, filter={"topic": "x"}):
            print(hit.score, hit.content)
"""

from .aio import AsyncMnemo, AsyncSession, AsyncSpaces
from .client import DEFAULT_ADDRESS, Mnemo, RecallStream, Spaces
from .errors import (
    AlreadyExists,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    InvalidObservation,
    MnemoError,
    NotFound,
    Overloaded,
    PermissionDenied,
    Retryable,
    SessionError,
    StorageFull,
    Unauthenticated,
    Unavailable,
)
from .session import Session
from .types import (
    Ack,
    Filter,
    Forgotten,
    GetResult,
    Memory,
    Pressure,
    PressureState,
    Remembered,
    ServerStats,
    SpaceInfo,
    SpaceStats,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "Ack",
    "AlreadyExists",
    "AsyncMnemo",
    "AsyncSession",
    "AsyncSpaces",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Filter",
    "Forgotten",
    "GetResult",
    "InvalidArgument",
    "InvalidObservation",
    "Memory",
    "Mnemo",
    "MnemoError",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "Pressure",
    "PressureState",
    "RecallStream",
    "Remembered",
    "Retryable",
    "ServerStats",
    "Session",
    "SessionError",
    "SpaceInfo",
    "SpaceStats",
    "Spaces",
    "StorageFull",
    "Unauthenticated",
    "Unavailable",
]
