"""An Observe session: sequences, the credit window, batching, retries, resume.

``Session`` assigns sequence numbers, keeps at most the server's credit window in
flight, sends observations in ``ObservationBatch`` messages with packed embeddings,
re-sends refusals after their ``retry_after``, and after a lost connection or a
server restart resumes with the same session id, re-sending only what the server
did not make durable (``InitAck.next_sequence``). Invalid observations are never
retried: the session stops and raises ``InvalidObservation``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import grpc

from . import _requests, _vectors
from ._session_core import SessionCore
from .errors import MnemoError, NotFound, SessionError, Unavailable, from_rpc_error
from .types import Ack, Pressure
from .v1 import mnemo_pb2 as pb

if TYPE_CHECKING:
    from .client import Mnemo

#: Most observations per batch message (the server's bound).
_MAX_BATCH = 4096
#: Redirects followed when opening a stream (distributed mode: to the space's owner).
_MAX_REDIRECTS = 3

# Protobuf keys (field number << 3 | length-delimited) of ObserveRequest.observation,
# ObserveRequest.batch and ObservationBatch.observations: a batch is framed from the
# observations' bytes serialised once, not copied into a new message and serialised
# again (a third of the client's CPU at 768-d). tests/test_framing.py checks these
# against the generated parser.
_OBSERVATION = b"\x12"
_BATCH = b"\x2a"
_BATCH_ITEM = b"\x0a"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _frame(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: key, length, bytes."""
    return key + _varint(len(payload)) + payload


class Session(SessionCore[bytes]):
    """A live Observe session; use ``Mnemo.session(...)`` (a context manager)."""

    def __init__(
        self,
        client: Mnemo,
        space: str,
        session_id: Optional[str] = None,
        *,
        window: int = 0,
        batch_size: int = 512,
        max_pending: int = 0,
        want_indexed: bool = False,
        lane: str = "normal",
        on_pressure: Optional[Callable[[Pressure], None]] = None,
        on_ack: Optional[Callable[[Ack], None]] = None,
        reconnect_timeout: float = 60.0,
    ) -> None:
        if lane not in _requests.LANES:
            raise ValueError(f"lane must be one of {sorted(_requests.LANES)}")
        self._client = client
        self.space = space
        self._init_core(session_id)
        self._want_window = window
        self._batch_size = max(1, min(batch_size, _MAX_BATCH))
        self._want_indexed = want_indexed
        self._lane = _requests.LANES[lane]
        self._on_pressure = on_pressure
        self._on_ack = on_ack
        self._reconnect_timeout = reconnect_timeout
        self._cv = threading.Condition()
        # The core's state is under _cv too. Each unacknowledged observation is kept
        # serialised once (with its sequence): re-sends and batches reuse the bytes.
        self._closing = False
        self._closed = False
        self._max_pending = max_pending
        #: The last pressure the server reported.
        self.pressure: Optional[Pressure] = None
        self._requests: Optional[queue.SimpleQueue[Optional[bytes]]] = None
        # Distributed mode: the node the server said writes the space, and a channel to it.
        self._node: Optional[str] = None
        self._node_channel: Optional[tuple[str, grpc.Channel]] = None
        self._open(resume_only=False)
        self._worker = threading.Thread(target=self._run, name=f"mnemo-session-{self.session_id}", daemon=True)
        self._worker.start()

    # ---- the user's side -------------------------------------------------------------

    def observe(
        self,
        content: str,
        embedding: _vectors.Vector,
        *,
        tags: Optional[Mapping[str, str]] = None,
        confidence: Optional[float] = None,
        occurred_at: _requests.Time = None,
        expires_at: _requests.Time = None,
        id: Optional[str] = None,
        supersedes: Optional[str] = None,
    ) -> int:
        """Queues one observation; returns its sequence number. Blocks while too many
        are unacknowledged (the window, or ``max_pending``)."""
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
        return self._enqueue([o])[0]

    def observe_many(
        self,
        embeddings: Any,
        contents: Sequence[str],
        *,
        tags: Optional[Sequence[Optional[Mapping[str, str]]]] = None,
        ids: Optional[Sequence[Optional[str]]] = None,
    ) -> range:
        """Queues one observation per row of ``embeddings`` (a 2-d numpy array or a
        sequence of vectors) with ``contents[i]`` (and ``tags[i]``, ``ids[i]``).
        Returns the range of sequence numbers assigned."""
        packed = _vectors.rows(embeddings)
        if len(packed) != len(contents):
            raise ValueError(f"{len(packed)} embeddings but {len(contents)} contents")
        if tags is not None and len(tags) != len(packed):
            raise ValueError(f"{len(packed)} embeddings but {len(tags)} tag maps")
        if ids is not None and len(ids) != len(packed):
            raise ValueError(f"{len(packed)} embeddings but {len(ids)} ids")
        lane = self._lane
        observations = []
        for i, row in enumerate(packed):
            o = pb.Observation(content=contents[i], embedding_f32=row, lane=lane)
            if tags is not None and tags[i]:
                o.tags.update(tags[i])  # type: ignore[arg-type]
            if ids is not None and ids[i]:
                o.id = ids[i]  # type: ignore[assignment]
            observations.append(o)
        seqs = self._enqueue(observations)
        return range(seqs[0], seqs[0] + len(seqs)) if seqs else range(self._next_seq, self._next_seq)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until everything queued is acknowledged (durable and visible)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._unacked and self._error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(self._unacked)} observations still unacknowledged")
                self._cv.wait(left if left is not None else 1.0)
            self._raise_error()

    def close(self, drain: bool = False, timeout: float = 120.0) -> int:
        """Waits for every acknowledgement, then closes the session (with ``drain``:
        once everything it sent is in the graph). Returns the final sequence."""
        with self._cv:
            if self._closed:
                return self._next_seq - 1
        try:
            self.flush(timeout)
            with self._cv:
                self._closing = True
                reqs = self._requests
                self._cv.notify_all()
            if reqs is not None:
                reqs.put(pb.ObserveRequest(close=pb.Close(drain=drain)).SerializeToString())
            deadline = time.monotonic() + timeout
            with self._cv:
                while not self._closed and self._error is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("the server did not confirm the close")
                    self._cv.wait(left)
                self._raise_error()
            return self._next_seq - 1
        finally:
            self._shutdown()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._shutdown()

    @property
    def unacknowledged(self) -> int:
        """Observations queued or in flight, not yet acknowledged."""
        with self._cv:
            return len(self._unacked)

    # ---- internals --------------------------------------------------------------------

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _enqueue(self, observations: list[pb.Observation]) -> list[int]:
        seqs = []
        with self._cv:
            self._raise_error()
            if self._closing:
                raise SessionError("the session is closing")
            limit = self._max_pending or max(4 * self._window, 4 * self._batch_size)
            for o in observations:
                while len(self._unacked) >= limit and self._error is None:
                    self._pump()
                    self._cv.wait(1.0)
                self._raise_error()
                seq = self._next_seq
                o.sequence = seq
                if not o.lane:
                    o.lane = self._lane
                self._unacked[seq] = o.SerializeToString()
                self._next_seq += 1
                seqs.append(seq)
            self._pump()
            self._cv.notify_all()
        return seqs

    def _observe_at(self, node: Optional[str]) -> Any:
        """The raw Observe method on the client's node (``None``) or on ``node``."""
        if node is None:
            return self._client._observe_raw
        if self._node_channel is None or self._node_channel[0] != node:
            if self._node_channel is not None:
                self._node_channel[1].close()
            self._node_channel = (node, self._client._conn.to(node).channel())
        return self._node_channel[1].stream_stream(
            "/mnemo.v1.Mnemo/Observe",
            request_serializer=None,
            response_deserializer=pb.ObserveResponse.FromString,
        )

    def _open(self, resume_only: bool, redirects: int = 0) -> None:
        """Opens a stream (Init → InitAck) and resets the send state from next_sequence;
        follows a redirect to the node that writes the space."""
        reqs: queue.SimpleQueue[Optional[bytes]] = queue.SimpleQueue()
        reqs.put(
            pb.ObserveRequest(
                init=pb.Init(
                    space=self.space,
                    session_id=self.session_id,
                    resume_only=resume_only,
                    credit_window=self._want_window,
                    want_indexed=self._want_indexed,
                )
            ).SerializeToString()
        )

        def requests() -> Iterator[bytes]:
            while True:
                r = reqs.get()
                if r is None:
                    return
                yield r

        call: Any = self._observe_at(self._node)(requests(), metadata=self._client._conn.metadata)
        try:
            first = next(call)
        except grpc.RpcError as e:
            reqs.put(None)
            err = from_rpc_error(e)
            # Distributed mode: another node writes the space; open there instead.
            if isinstance(err, Unavailable) and err.owner and redirects < _MAX_REDIRECTS:
                self._node = err.owner
                return self._open(resume_only, redirects + 1)
            # The node may be gone: the next try goes to the next of the client's nodes.
            self._node = self._client._next_node(self._node)
            raise err from None
        except StopIteration:
            reqs.put(None)
            raise SessionError("the server ended the stream before InitAck") from None
        if first.WhichOneof("kind") != "init_ack":
            reqs.put(None)
            call.cancel()
            raise SessionError(f"expected InitAck, got {first.WhichOneof('kind')}")
        with self._cv:
            self._resumed(first.init_ack)
            self._requests = reqs
            self._call = call
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                call, reqs = self._call, self._requests
            receiver = threading.Thread(target=self._receive, args=(call,), daemon=True)
            receiver.start()
            self._send_loop(reqs)
            receiver.join()
            with self._cv:
                if self._closed or self._error is not None:
                    return
            if not self._reconnect():
                return

    def _reconnect(self) -> bool:
        deadline = time.monotonic() + self._reconnect_timeout
        delay = 0.05
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            with self._cv:
                if self._error is not None:
                    return False
            try:
                self._open(resume_only=True)
                self.reconnects += 1
                return True
            except (MnemoError, grpc.RpcError) as e:
                last = e
                if isinstance(e, NotFound):
                    break
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        with self._cv:
            self._error = SessionError(f"could not resume session {self.session_id}: {last}")
            self._cv.notify_all()
        return False

    def _send_loop(self, reqs: Optional[queue.SimpleQueue[Optional[bytes]]]) -> None:
        """Sends when nothing else does: after a retry-after passes, and as a fallback.
        Acks and new observations send directly (``_pump``), one thread hop fewer."""
        assert reqs is not None
        with self._cv:
            while not (self._stream_lost or self._error is not None or self._closed):
                self._pump()
                now = time.monotonic()
                wait = self._retry_at - now if self._retry_at > now else 0.5
                self._cv.wait(max(wait, 0.001))

    def _pump(self) -> None:
        """Under the lock: sends what the window and the retry time allow, in order."""
        reqs = self._requests
        if reqs is None or self._stream_lost or self._error is not None or self._closed:
            return
        while self._may_send():
            batch = self._batch(self._batch_size)
            if len(batch) == 1:
                reqs.put(_frame(_OBSERVATION, batch[0]))
            elif batch:
                reqs.put(_frame(_BATCH, b"".join([_frame(_BATCH_ITEM, o) for o in batch])))

    def _receive(self, call: Any) -> None:
        try:
            for msg in call:
                kind = msg.WhichOneof("kind")
                if kind == "acks":
                    self._on_acks(msg.acks.acks)
                elif kind == "status":
                    p = Pressure.from_pb(msg.status)
                    with self._cv:
                        self.pressure = p
                        self._status(msg.status)
                        self._cv.notify_all()
                    if self._on_pressure is not None:
                        self._on_pressure(p)
                elif kind == "closed":
                    with self._cv:
                        self._closed = True
                        self._cv.notify_all()
                    return
            lost: Optional[BaseException] = None
        except grpc.RpcError as e:
            lost = from_rpc_error(e)
        with self._cv:
            if not self._closed:
                self._stream_lost = True
                if self._closing and lost is not None and not isinstance(lost, MnemoError):
                    self._error = lost
            self._cv.notify_all()

    def _on_acks(self, acks: Iterable[pb.Ack]) -> None:
        with self._cv:
            done = [ack for a in acks if (ack := self._acked(a, self._on_ack is not None)) is not None]
            self._pump()
            self._cv.notify_all()
        for ack in done:
            assert self._on_ack is not None
            self._on_ack(ack)

    def _shutdown(self) -> None:
        with self._cv:
            self._closed = True
            reqs, call = self._requests, self._call
            self._cv.notify_all()
        if reqs is not None:
            reqs.put(None)
        if call is not None:
            call.cancel()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=5)
        if self._node_channel is not None:
            self._node_channel[1].close()
