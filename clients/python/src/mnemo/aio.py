"""``AsyncMnemo``: the asyncio client (``grpc.aio``), with the same calls as ``Mnemo``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Optional, TypeVar

import grpc

from . import _requests, _vectors
from ._channel import Connection, PathLike
from ._session_core import SessionCore
from .client import DEFAULT_ADDRESS
from .errors import MnemoError, NotFound, SessionError, Unavailable, from_rpc_error
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

_MAX_BATCH = 4096
#: Redirects followed when opening a stream (distributed mode: to the space's owner).
_MAX_REDIRECTS = 3


class AsyncMnemo:
    """An asyncio connection to a Mnemo server; ``async with AsyncMnemo(...) as m``."""

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
        self._channel = self._conn.aio_channel()
        self._stub = mnemo_pb2_grpc.MnemoStub(self._channel)  # type: ignore[no-untyped-call]
        # Distributed mode: channels to the nodes that own spaces this client wrote to.
        self._owners: dict[str, tuple[grpc.aio.Channel, Any]] = {}
        self.timeout = timeout
        self.spaces = AsyncSpaces(self)

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, timeout: Optional[float] = None) -> T:
        try:
            return await method(request, timeout=timeout or self.timeout, metadata=self._conn.metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def close(self) -> None:
        await self._channel.close(None)
        for channel, _ in self._owners.values():
            await channel.close(None)

    def _next_node(self, node: Optional[str]) -> Optional[str]:
        """Where a session tries next after ``node`` failed (``None``: this client's
        own address): the next of this address and ``peers``, in turn."""
        nodes: list[Optional[str]] = [None, *self.peers]
        return nodes[(nodes.index(node) + 1) % len(nodes)] if node in nodes else None

    async def _write(self, name: str, request: Any) -> Any:
        """A write here or, in the distributed mode, on the node a refusal names as the
        space's owner (a node that does not own the space writes nothing, so sending
        the call there is safe)."""
        stub = self._stub
        for _ in range(_MAX_REDIRECTS):
            try:
                return await self._call(getattr(stub, name), request)
            except Unavailable as e:
                if not e.owner:
                    raise
                if e.owner not in self._owners:
                    channel = self._conn.to(e.owner).aio_channel()
                    self._owners[e.owner] = (channel, mnemo_pb2_grpc.MnemoStub(channel))  # type: ignore[no-untyped-call]
                stub = self._owners[e.owner][1]
        return await self._call(getattr(stub, name), request)

    async def __aenter__(self) -> AsyncMnemo:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def remember(
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
        r = await self._write("Remember", pb.RememberRequest(space=space, observation=o))
        return Remembered(r.memory_id, r.lsn)

    def session(
        self,
        space: str,
        session_id: Optional[str] = None,
        *,
        window: int = 0,
        batch_size: int = 512,
        lane: str = "normal",
        on_pressure: Optional[Callable[[Pressure], None]] = None,
        on_ack: Optional[Callable[[Ack], None]] = None,
        reconnect_timeout: float = 60.0,
    ) -> AsyncSession:
        """An Observe session: ``async with m.session("space") as s: await s.observe_many(...)``."""
        return AsyncSession(
            self,
            space,
            session_id,
            window=window,
            batch_size=batch_size,
            lane=lane,
            on_pressure=on_pressure,
            on_ack=on_ack,
            reconnect_timeout=reconnect_timeout,
        )

    async def forget(
        self, space: str, *, ids: Sequence[str] = (), session_id: Optional[str] = None, filter: FilterLike = None
    ) -> Forgotten:
        """Forgets the memories selected (their intersection; at least one selector)."""
        req = _requests.forget(space, ids=ids, session_id=session_id, filter=filter)
        r = await self._write("Forget", req)
        return Forgotten(r.forgotten, r.lsn)

    async def compact(self, space: str, timeout: float = 600.0) -> pb.CompactResponse:
        r: pb.CompactResponse = await self._call(self._stub.Compact, pb.CompactRequest(space=space), timeout)
        return r

    async def recall(
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
        r = await self._call(self._stub.RecallOnce, req)
        return [Memory.from_pb(m) for m in r.memories]

    async def recall_iter(
        self, space: str, cue: _vectors.Vector, k: int = 10, *, batch_size: int = 0, filter: FilterLike = None
    ) -> AsyncIterator[Memory]:
        """A streaming recall, best first."""
        req = _requests.recall(
            space,
            cue,
            k=k,
            filter=filter,
            snapshot_lsn=0,
            min_lsn=0,
            max_wait_ms=0,
            include_embedding=False,
            half_life=None,
            confidence_weight=0.0,
            batch_size=batch_size,
        )
        try:
            async for msg in self._stub.Recall(req, metadata=self._conn.metadata):
                for m in msg.memories:
                    yield Memory.from_pb(m)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def get(
        self, space: str, ids: Sequence[str], *, snapshot_lsn: int = 0, include_embedding: bool = False
    ) -> GetResult:
        r = await self._call(
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

    async def export(
        self,
        space: str,
        *,
        after_lsn: int = 0,
        snapshot_lsn: int = 0,
        batch_size: int = 256,
        include_embedding: bool = False,
        filter: FilterLike = None,
    ) -> AsyncIterator[Memory]:
        req = _requests.export(
            space,
            after_lsn=after_lsn,
            snapshot_lsn=snapshot_lsn,
            batch_size=batch_size,
            include_embedding=include_embedding,
            filter=filter,
        )
        try:
            async for msg in self._stub.Export(req, metadata=self._conn.metadata):
                for m in msg.memories:
                    yield Memory.from_pb(m)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def stats(self) -> ServerStats:
        return ServerStats.from_pb(await self._call(self._stub.Stats, pb.StatsRequest()))


class AsyncSpaces:
    """Space administration (``client.spaces``)."""

    def __init__(self, client: AsyncMnemo) -> None:
        self._client = client

    async def create(
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
        return SpaceInfo.from_pb(await c._call(c._stub.CreateSpace, req))

    async def list(self) -> list[SpaceInfo]:
        c = self._client
        r = await c._call(c._stub.ListSpaces, pb.ListSpacesRequest())
        return [SpaceInfo.from_pb(s) for s in r.spaces]

    async def describe(self, name: str) -> tuple[SpaceInfo, SpaceStats]:
        c = self._client
        r = await c._call(c._stub.DescribeSpace, pb.DescribeSpaceRequest(name=name))
        return SpaceInfo.from_pb(r.info), SpaceStats.from_pb(r.stats)

    async def drop(self, name: str) -> None:
        c = self._client
        await c._call(c._stub.DropSpace, pb.DropSpaceRequest(name=name))


class AsyncSession(SessionCore[pb.Observation]):
    """An asyncio Observe session (see ``mnemo.session.Session`` for the behaviour)."""

    def __init__(
        self,
        client: AsyncMnemo,
        space: str,
        session_id: Optional[str],
        *,
        window: int,
        batch_size: int,
        lane: str,
        on_pressure: Optional[Callable[[Pressure], None]],
        on_ack: Optional[Callable[[Ack], None]],
        reconnect_timeout: float,
    ) -> None:
        if lane not in _requests.LANES:
            raise ValueError(f"lane must be one of {sorted(_requests.LANES)}")
        self._client = client
        self.space = space
        self._init_core(session_id)
        self._want_window = window
        self._batch_size = max(1, min(batch_size, _MAX_BATCH))
        self._lane = _requests.LANES[lane]
        self._on_pressure = on_pressure
        self._on_ack = on_ack
        self._reconnect_timeout = reconnect_timeout
        self._cv = asyncio.Condition()
        self._closing = False
        self._closed = False
        self._queue: Optional[asyncio.Queue[Optional[pb.ObserveRequest]]] = None
        self._task: Optional[asyncio.Task[None]] = None
        self.pressure: Optional[Pressure] = None
        # Distributed mode: the node the server said writes the space, and a channel to it.
        self._node: Optional[str] = None
        self._node_channel: Optional[tuple[str, grpc.aio.Channel]] = None

    async def __aenter__(self) -> AsyncSession:
        await self._open(resume_only=False)
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self._shutdown()

    async def observe(self, content: str, embedding: _vectors.Vector, **fields: Any) -> int:
        """Queues one observation (``tags``, ``confidence``, ``occurred_at``, ``expires_at``,
        ``id``, ``supersedes``); returns its sequence number."""
        return (await self._enqueue([_requests.observation(content, embedding, **fields)]))[0]

    async def observe_many(
        self,
        embeddings: Any,
        contents: Sequence[str],
        *,
        tags: Optional[Sequence[Optional[Mapping[str, str]]]] = None,
        ids: Optional[Sequence[Optional[str]]] = None,
    ) -> range:
        """One observation per row of ``embeddings`` with ``contents[i]``; returns the sequences."""
        packed = _vectors.rows(embeddings)
        if len(packed) != len(contents):
            raise ValueError(f"{len(packed)} embeddings but {len(contents)} contents")
        observations = []
        for i, row in enumerate(packed):
            o = pb.Observation(content=contents[i], embedding_f32=row, lane=self._lane)
            if tags is not None and tags[i]:
                o.tags.update(tags[i])  # type: ignore[arg-type]
            if ids is not None and ids[i]:
                o.id = ids[i]  # type: ignore[assignment]
            observations.append(o)
        seqs = await self._enqueue(observations)
        return range(seqs[0], seqs[-1] + 1) if seqs else range(self._next_seq, self._next_seq)

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until everything queued is acknowledged (durable and visible)."""

        async def drained() -> None:
            async with self._cv:
                await self._cv.wait_for(lambda: not self._unacked or self._error is not None)

        await asyncio.wait_for(drained(), timeout)
        if self._error is not None:
            raise self._error

    async def close(self, drain: bool = False, timeout: float = 120.0) -> int:
        """Waits for every acknowledgement, then closes the session; returns the final sequence."""
        try:
            await self.flush(timeout)
            self._closing = True
            if self._queue is not None:
                await self._queue.put(pb.ObserveRequest(close=pb.Close(drain=drain)))

            async def closed() -> None:
                async with self._cv:
                    await self._cv.wait_for(lambda: self._closed or self._error is not None)

            await asyncio.wait_for(closed(), timeout)
            if self._error is not None:
                raise self._error
            return self._next_seq - 1
        finally:
            await self._shutdown()

    async def _enqueue(self, observations: list[pb.Observation]) -> list[int]:
        seqs = []
        async with self._cv:
            if self._error is not None:
                raise self._error
            if self._closing:
                raise SessionError("the session is closing")
            limit = max(4 * self._window, 4 * self._batch_size)
            for o in observations:
                if len(self._unacked) >= limit:
                    self._cv.notify_all()
                    await self._cv.wait_for(lambda: len(self._unacked) < limit or self._error is not None)
                if self._error is not None:
                    raise self._error
                seq = self._next_seq
                o.sequence = seq
                if not o.lane:
                    o.lane = self._lane
                self._unacked[seq] = o
                self._next_seq += 1
                seqs.append(seq)
            self._cv.notify_all()
        return seqs

    async def _stub_at(self, node: Optional[str]) -> Any:
        """The stub on the client's node (``None``) or on ``node``."""
        if node is None:
            return self._client._stub
        if self._node_channel is None or self._node_channel[0] != node:
            if self._node_channel is not None:
                await self._node_channel[1].close(None)
            self._node_channel = (node, self._client._conn.to(node).aio_channel())
        return mnemo_pb2_grpc.MnemoStub(self._node_channel[1])  # type: ignore[no-untyped-call]

    async def _open(self, resume_only: bool, redirects: int = 0) -> None:
        q: asyncio.Queue[Optional[pb.ObserveRequest]] = asyncio.Queue()
        init = pb.Init(
            space=self.space, session_id=self.session_id, resume_only=resume_only, credit_window=self._want_window
        )
        await q.put(pb.ObserveRequest(init=init))

        async def requests() -> AsyncIterator[pb.ObserveRequest]:
            while True:
                r = await q.get()
                if r is None:
                    return
                yield r

        call = (await self._stub_at(self._node)).Observe(requests(), metadata=self._client._conn.metadata)
        try:
            first = await call.read()
        except grpc.RpcError as e:
            err = from_rpc_error(e)
            # Distributed mode: another node writes the space; open there instead.
            if isinstance(err, Unavailable) and err.owner and redirects < _MAX_REDIRECTS:
                self._node = err.owner
                return await self._open(resume_only, redirects + 1)
            # The node may be gone: the next try goes to the next of the client's nodes.
            self._node = self._client._next_node(self._node)
            raise err from None
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "init_ack":  # type: ignore[attr-defined]
            call.cancel()
            raise SessionError("the server did not answer Init with InitAck")
        async with self._cv:
            self._resumed(first.init_ack)
            self._queue = q
            self._call = call
            self._cv.notify_all()

    async def _run(self) -> None:
        while True:
            receiver = asyncio.ensure_future(self._receive(self._call))
            await self._send_loop()
            await receiver
            if self._closed or self._error is not None:
                return
            if not await self._reconnect():
                return

    async def _reconnect(self) -> bool:
        deadline = time.monotonic() + self._reconnect_timeout
        delay = 0.05
        last: Optional[BaseException] = None
        while time.monotonic() < deadline and self._error is None:
            try:
                await self._open(resume_only=True)
                self.reconnects += 1
                return True
            except (MnemoError, grpc.RpcError) as e:
                last = e
                if isinstance(e, NotFound):
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        async with self._cv:
            self._error = self._error or SessionError(f"could not resume session {self.session_id}: {last}")
            self._cv.notify_all()
        return False

    async def _send_loop(self) -> None:
        q = self._queue
        assert q is not None
        while True:
            async with self._cv:
                while True:
                    if self._stream_lost or self._error is not None or self._closed:
                        return
                    now = time.monotonic()
                    if self._may_send():
                        break
                    wait = self._retry_at - now if self._retry_at > now else 0.5
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._cv.wait(), max(wait, 0.001))
                batch = self._batch(self._batch_size)
            if len(batch) == 1:
                await q.put(pb.ObserveRequest(observation=batch[0]))
            elif batch:
                await q.put(pb.ObserveRequest(batch=pb.ObservationBatch(observations=batch)))

    async def _receive(self, call: Any) -> None:
        try:
            while True:
                # `read()` throughout: grpc.aio forbids mixing it with `async for`.
                msg = await call.read()
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                kind = msg.WhichOneof("kind")
                if kind == "acks":
                    await self._on_acks(msg.acks.acks)
                elif kind == "status":
                    p = Pressure.from_pb(msg.status)
                    async with self._cv:
                        self.pressure = p
                        self._status(msg.status)
                        self._cv.notify_all()
                    if self._on_pressure is not None:
                        self._on_pressure(p)
                elif kind == "closed":
                    async with self._cv:
                        self._closed = True
                        self._cv.notify_all()
                    return
        except grpc.RpcError:
            pass
        except asyncio.CancelledError:
            pass
        async with self._cv:
            if not self._closed:
                self._stream_lost = True
            self._cv.notify_all()

    async def _on_acks(self, acks: Any) -> None:
        async with self._cv:
            done = [ack for a in acks if (ack := self._acked(a, self._on_ack is not None)) is not None]
            self._cv.notify_all()
        for ack in done:
            assert self._on_ack is not None
            self._on_ack(ack)

    async def _shutdown(self) -> None:
        async with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._queue is not None:
            await self._queue.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._node_channel is not None:
            await self._node_channel[1].close(None)
