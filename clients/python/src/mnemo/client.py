"""``Mnemo``: the synchronous client."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

import grpc

from . import _requests, _vectors
from ._channel import Connection, PathLike
from .errors import Unavailable, from_rpc_error
from .session import Session
from .types import (
    Ack,
    FilterLike,
    Forgotten,
    GetResult,
    Memory,
    Pressure,
    Remembered,
    ServerStats,
    SpaceInfo,
    SpaceStats,
)
from .v1 import mnemo_pb2 as pb
from .v1 import mnemo_pb2_grpc

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:7400"
#: Redirects a write follows (distributed mode: to the owner of the space).
_MAX_REDIRECTS = 3


class Mnemo:
    """A connection to a Mnemo server.

    >>> with Mnemo("127.0.0.1:7400") as m:          # doctest: +SKIP
    ...     m.spaces.create("notes", dim=768)
    ...     m.remember("notes", "the sky is blue", vector)
    ...     hits = m.recall("notes", vector, k=5)

    ``api_key`` defaults to ``$MNEMO_API_KEY``; an ``https://`` address, ``tls_ca`` or a
    client certificate turn TLS on. ``timeout`` (seconds) bounds each unary call.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: Optional[str] = None,
        tls_ca: Optional[PathLike] = None,
        tls_cert: Optional[PathLike] = None,
        tls_key: Optional[PathLike] = None,
        tls_domain: Optional[str] = None,
        timeout: float = 30.0,
        peers: Sequence[str] = (),
    ) -> None:
        self._conn = Connection.make(
            address, api_key=api_key, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, tls_domain=tls_domain
        )
        #: Other nodes of the same cluster (distributed mode), tried in turn by a
        #: session whose node went away without naming another.
        self.peers = tuple(peers)
        self._channel = self._conn.channel()
        self._stub = mnemo_pb2_grpc.MnemoStub(self._channel)  # type: ignore[no-untyped-call]
        # Distributed mode: channels to the nodes that own spaces this client wrote to.
        self._owners: dict[str, tuple[grpc.Channel, Any]] = {}
        # Observe with requests already serialised (sessions frame batches themselves).
        self._observe_raw = self._channel.stream_stream(
            "/mnemo.v1.Mnemo/Observe",
            request_serializer=None,
            response_deserializer=pb.ObserveResponse.FromString,
        )
        self.timeout = timeout
        #: Space administration: ``create``, ``list``, ``describe``, ``drop``.
        self.spaces = Spaces(self)

    def _call(self, method: Callable[..., T], request: Any, timeout: Optional[float] = None) -> T:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._conn.metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def close(self) -> None:
        """Closes the connection."""
        self._channel.close()
        for channel, _ in self._owners.values():
            channel.close()

    def _next_node(self, node: Optional[str]) -> Optional[str]:
        """Where a session tries next after ``node`` failed (``None``: this client's
        own address): the next of this address and ``peers``, in turn."""
        nodes: list[Optional[str]] = [None, *self.peers]
        return nodes[(nodes.index(node) + 1) % len(nodes)] if node in nodes else None

    def _write(self, name: str, request: Any) -> Any:
        """A write here or, in the distributed mode, on the node a refusal names as the
        space's owner (a node that does not own the space writes nothing, so sending
        the call there is safe)."""
        stub = self._stub
        for _ in range(_MAX_REDIRECTS):
            try:
                return self._call(getattr(stub, name), request)
            except Unavailable as e:
                if not e.owner:
                    raise
                if e.owner not in self._owners:
                    channel = self._conn.to(e.owner).channel()
                    self._owners[e.owner] = (channel, mnemo_pb2_grpc.MnemoStub(channel))  # type: ignore[no-untyped-call]
                stub = self._owners[e.owner][1]
        return self._call(getattr(stub, name), request)

    def __enter__(self) -> Mnemo:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- writes -----------------------------------------------------------------------

    def remember(
        self,
        space: str,
        content: str,
        embedding: _vectors.Vector,
        *,
        tags: Optional[Mapping[str, str]] = None,
        confidence: Optional[float] = None,
        occurred_at: _requests.Time = None,
        expires_at: _requests.Time = None,
        id: Optional[str] = None,
        supersedes: Optional[str] = None,
    ) -> Remembered:
        """Stores one observation outside any session; durable and visible on return."""
        o = _requests.observation(
            content,
            embedding,
            tags=tags,
            confidence=confidence,
            occurred_at=occurred_at,
            expires_at=expires_at,
            id=id,
            supersedes=supersedes,
        )
        r = self._write("Remember", pb.RememberRequest(space=space, observation=o))
        return Remembered(r.memory_id, r.lsn)

    def session(
        self,
        space: str,
        session_id: Optional[str] = None,
        *,
        window: int = 0,
        batch_size: int = 512,
        want_indexed: bool = False,
        lane: str = "normal",
        on_pressure: Optional[Callable[[Pressure], None]] = None,
        on_ack: Optional[Callable[[Ack], None]] = None,
        reconnect_timeout: float = 60.0,
    ) -> Session:
        """Opens an Observe session (resumed if ``session_id`` names one); see ``Session``."""
        return Session(
            self,
            space,
            session_id,
            window=window,
            batch_size=batch_size,
            want_indexed=want_indexed,
            lane=lane,
            on_pressure=on_pressure,
            on_ack=on_ack,
            reconnect_timeout=reconnect_timeout,
        )

    def forget(
        self,
        space: str,
        *,
        ids: Sequence[str] = (),
        session_id: Optional[str] = None,
        filter: FilterLike = None,
    ) -> Forgotten:
        """Forgets the memories selected (ids, session and filter together: their
        intersection; at least one is required)."""
        r = self._write("Forget", _requests.forget(space, ids=ids, session_id=session_id, filter=filter))
        return Forgotten(r.forgotten, r.lsn)

    def compact(self, space: str, timeout: float = 600.0) -> pb.CompactResponse:
        """Erases forgotten memories from disk now (needs the admin right)."""
        r: pb.CompactResponse = self._call(self._stub.Compact, pb.CompactRequest(space=space), timeout)
        return r

    # ---- reads ------------------------------------------------------------------------

    def recall(
        self,
        space: str,
        cue: _vectors.Vector,
        k: int = 10,
        *,
        filter: FilterLike = None,
        snapshot_lsn: int = 0,
        min_lsn: int = 0,
        max_wait_ms: int = 0,
        include_embedding: bool = False,
        half_life: Optional[timedelta] = None,
        confidence_weight: float = 0.0,
    ) -> list[Memory]:
        """The ``k`` memories nearest ``cue`` (best first), under one snapshot."""
        req = _requests.recall(
            space,
            cue,
            k=k,
            filter=filter,
            snapshot_lsn=snapshot_lsn,
            min_lsn=min_lsn,
            max_wait_ms=max_wait_ms,
            include_embedding=include_embedding,
            half_life=half_life,
            confidence_weight=confidence_weight,
        )
        r = self._call(self._stub.RecallOnce, req)
        return [Memory.from_pb(m) for m in r.memories]

    def recall_iter(
        self,
        space: str,
        cue: _vectors.Vector,
        k: int = 10,
        *,
        batch_size: int = 0,
        filter: FilterLike = None,
        snapshot_lsn: int = 0,
        min_lsn: int = 0,
        max_wait_ms: int = 0,
        include_embedding: bool = False,
        half_life: Optional[timedelta] = None,
        confidence_weight: float = 0.0,
    ) -> RecallStream:
        """A streaming recall: iterate for memories, best first; ``.snapshot_lsn`` once
        the first message arrived."""
        req = _requests.recall(
            space,
            cue,
            k=k,
            filter=filter,
            snapshot_lsn=snapshot_lsn,
            min_lsn=min_lsn,
            max_wait_ms=max_wait_ms,
            include_embedding=include_embedding,
            half_life=half_life,
            confidence_weight=confidence_weight,
            batch_size=batch_size,
        )
        return RecallStream(self, req)

    def get(
        self, space: str, ids: Sequence[str], *, snapshot_lsn: int = 0, include_embedding: bool = False
    ) -> GetResult:
        """Memories by id as of a snapshot (missing and superseded ids reported)."""
        r = self._call(
            self._stub.GetMemories,
            pb.GetMemoriesRequest(
                space=space,
                ids=list(ids),
                snapshot_lsn=snapshot_lsn,
                include_embedding=include_embedding,
                packed_embeddings=include_embedding,
            ),
        )
        return GetResult(
            memories=[Memory.from_pb(m) for m in r.memories],
            missing=list(r.missing),
            superseded={s.id: s.superseded_by for s in r.superseded},
            snapshot_lsn=r.snapshot_lsn,
        )

    def export(
        self,
        space: str,
        *,
        after_lsn: int = 0,
        snapshot_lsn: int = 0,
        batch_size: int = 256,
        include_embedding: bool = False,
        filter: FilterLike = None,
    ) -> Iterator[Memory]:
        """Every memory of the space in LSN order, under one snapshot."""
        req = _requests.export(
            space,
            after_lsn=after_lsn,
            snapshot_lsn=snapshot_lsn,
            batch_size=batch_size,
            include_embedding=include_embedding,
            filter=filter,
        )
        try:
            for msg in self._stub.Export(req, metadata=self._conn.metadata):
                for m in msg.memories:
                    yield Memory.from_pb(m)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def stats(self) -> ServerStats:
        """The server's counters, pressure and per-space stats."""
        return ServerStats.from_pb(self._call(self._stub.Stats, pb.StatsRequest()))


class RecallStream:
    """A streaming recall's memories; ``snapshot_lsn`` is known after the first message."""

    def __init__(self, client: Mnemo, request: pb.RecallRequest) -> None:
        self._client = client
        self._request = request
        self.snapshot_lsn = 0

    def __iter__(self) -> Iterator[Memory]:
        try:
            for msg in self._client._stub.Recall(self._request, metadata=self._client._conn.metadata):
                self.snapshot_lsn = msg.snapshot_lsn
                for m in msg.memories:
                    yield Memory.from_pb(m)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None


class Spaces:
    """Space administration (``client.spaces``)."""

    def __init__(self, client: Mnemo) -> None:
        self._client = client

    def create(
        self,
        name: str,
        dim: int,
        *,
        metric: str = "cosine",
        precision: str = "f16",
        m: int = 0,
        ef_construction: int = 0,
        ef_search: int = 0,
        ttl: Optional[timedelta] = None,
    ) -> SpaceInfo:
        """Creates a space (``metric``: cosine, l2, inner_product; ``precision``: f16, f32, i8)."""
        req = _requests.create_space(
            name,
            dim,
            metric=metric,
            precision=precision,
            m=m,
            ef_construction=ef_construction,
            ef_search=ef_search,
            ttl=ttl,
        )
        c = self._client
        return SpaceInfo.from_pb(c._call(c._stub.CreateSpace, req))

    def list(self) -> list[SpaceInfo]:
        c = self._client
        return [SpaceInfo.from_pb(s) for s in c._call(c._stub.ListSpaces, pb.ListSpacesRequest()).spaces]

    def describe(self, name: str) -> tuple[SpaceInfo, SpaceStats]:
        c = self._client
        r = c._call(c._stub.DescribeSpace, pb.DescribeSpaceRequest(name=name))
        return SpaceInfo.from_pb(r.info), SpaceStats.from_pb(r.stats)

    def drop(self, name: str) -> None:
        c = self._client
        c._call(c._stub.DropSpace, pb.DropSpaceRequest(name=name))
