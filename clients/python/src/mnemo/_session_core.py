"""What the sync and async sessions share: the send state and how an InitAck, an
ack and a refusal change it. Callers hold their session's lock."""

from __future__ import annotations

import time
from typing import Any, Generic, Optional, TypeVar

from .errors import AlreadyExists, InvalidObservation, NotFound
from .types import Ack
from .v1 import mnemo_pb2 as pb

_MIN_RETRY = 0.01

T = TypeVar("T")


class SessionCore(Generic[T]):
    """Sequences, what is unacknowledged (as ``T``: bytes or messages), the window."""

    def _init_core(self, session_id: Optional[str]) -> None:
        self.session_id = session_id or ""
        self._next_seq = 1
        self._unacked: dict[int, T] = {}
        self._cursor = 1  # next sequence to (re-)send on this stream
        self._in_flight = 0
        self._window = 1
        self._retry_at = 0.0
        # The pending retry waits out pressure (not a full disk): a status saying
        # the pressure eased ends it early.
        self._pressure_retry = False
        self._error: Optional[BaseException] = None
        self._stream_lost = False
        self._call: Any = None
        #: Counters: accepted, duplicates (after a resume), refusals retried, reconnects.
        self.accepted = 0
        self.duplicates = 0
        self.retried = 0
        self.reconnects = 0
        #: The highest sequence acknowledged INDEXED (with ``want_indexed``).
        self.indexed_sequence = 0

    def _resumed(self, ack: pb.InitAck) -> None:
        """A stream opened: below ``next_sequence`` everything is durable (acks lost
        with the old stream); re-send from there."""
        self.session_id = ack.session_id
        self._window = max(1, ack.credit_window)
        nxt = ack.next_sequence
        for seq in [s for s in self._unacked if s < nxt]:
            del self._unacked[seq]
            self.duplicates += 1
        if not self._unacked and self._next_seq < nxt:
            self._next_seq = nxt
        self._cursor = nxt
        self._in_flight = 0
        self._retry_at = 0.0
        self._stream_lost = False

    def _acked(self, a: pb.Ack, want_ack: bool) -> Optional[Ack]:
        """One ack taken in; the ``Ack`` to report, if ``want_ack`` and it is new."""
        if a.status == pb.INDEXED:
            self.indexed_sequence = max(self.indexed_sequence, a.sequence)
            return None
        self._in_flight = max(0, self._in_flight - 1)
        if a.status in (pb.ACCEPTED, pb.DUPLICATE):
            if self._unacked.pop(a.sequence, None) is None:
                return None
            if a.status == pb.ACCEPTED:
                self.accepted += 1
            else:
                self.duplicates += 1
            return Ack(a.sequence, a.memory_id, a.lsn, a.status == pb.DUPLICATE) if want_ack else None
        if a.status == pb.REJECTED:
            self._refused(a)
        return None

    def _status(self, st: pb.StreamStatus) -> None:
        """A pressure change: the new window; below Critical, a retry that waits out
        pressure goes now (its ``retry_after`` was an estimate made under it)."""
        self._window = max(1, st.credit_window)
        if self._pressure_retry and st.state in (pb.NORMAL, pb.WARNING):
            self._retry_at = 0.0
            self._pressure_retry = False

    def _refused(self, a: pb.Ack) -> None:
        code = a.code
        if code in (pb.OVERLOADED, pb.WINDOW_EXCEEDED, pb.STORAGE_FULL):
            self.retried += 1
            at = time.monotonic() + max(a.retry_after_ms / 1000.0, _MIN_RETRY)
            self._retry_at = max(self._retry_at, at)
            self._pressure_retry = code != pb.STORAGE_FULL
            self._cursor = min(self._cursor, a.sequence)
        elif code == pb.SEQUENCE_GAP:
            self._cursor = min(self._cursor, a.expected_sequence or a.sequence)
        elif code in (pb.SESSION_CLOSED, pb.UNAVAILABLE):
            # The server cannot take it on this stream now: a new stream resumes.
            self._stream_lost = True
            if self._call is not None:
                self._call.cancel()
        else:
            # Never retried: the session stops with the error.
            message = f"observation {a.sequence} refused: {a.reason}"
            if code == pb.NOT_FOUND:
                self._error = NotFound(message)
            elif code == pb.ALREADY_EXISTS:
                self._error = AlreadyExists(message)
            else:
                self._error = InvalidObservation(message, sequence=a.sequence)

    def _batch(self, limit: int) -> list[T]:
        """The next observations to send, in order, at most what the window and
        ``limit`` allow; marks them in flight."""
        batch: list[T] = []
        seq = self._cursor
        room = min(self._window - self._in_flight, limit)
        while seq < self._next_seq and len(batch) < room:
            o = self._unacked.get(seq)
            if o is not None:
                batch.append(o)
            seq += 1
        self._cursor = seq
        self._in_flight += len(batch)
        return batch

    def _may_send(self) -> bool:
        return self._cursor < self._next_seq and self._in_flight < self._window and time.monotonic() >= self._retry_at
