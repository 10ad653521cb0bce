"""Mnemo's errors: one hierarchy for gRPC statuses and in-band refusals."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import grpc


class MnemoError(Exception):
    """Any error from Mnemo or on the way to it."""

    #: The gRPC status code, when the error came as a status.
    code: Optional[grpc.StatusCode] = None

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgument(MnemoError):
    """The request is malformed (bad config, bad filter, wrong cue dimension …)."""


class InvalidObservation(InvalidArgument):
    """An observation was refused as invalid (in band); nothing was written. Never retried."""

    def __init__(self, message: str, *, sequence: int = 0) -> None:
        super().__init__(message)
        self.sequence = sequence


class NotFound(MnemoError):
    """Unknown space, session or memory (or one no longer live)."""


class AlreadyExists(MnemoError):
    """The space, or a memory with this id, exists already."""


class PermissionDenied(MnemoError):
    """The API key lacks the right on the space."""


class Unauthenticated(MnemoError):
    """No API key, or an unknown one, where keys are required."""


class Retryable(MnemoError):
    """Refused for now; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float = 0.0, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Overloaded(Retryable):
    """The server is overloaded (admission control); nothing was written."""


class StorageFull(Retryable):
    """The server's disk is below its free-space reserve; nothing was written."""


class Unavailable(MnemoError):
    """The server is starting, stopping or unreachable; or (distributed mode) another
    node writes the space, and ``owner`` is its address."""

    #: The node to send writes to instead, when the server named one.
    owner: Optional[str] = None


class DeadlineExceeded(MnemoError):
    """A wait (``min_lsn``, a timeout) ran out."""


class FailedPrecondition(MnemoError):
    """The request cannot be served in this state (a snapshot too old, a closed session)."""


class DataLoss(MnemoError):
    """Data failed a checksum or was lost to damage."""


class SessionError(MnemoError):
    """A session could not go on (closed elsewhere, resume impossible)."""


#: The metadata key of an UNAVAILABLE refusal naming the node that writes the space.
OWNER_METADATA = "mnemo-owner"

_BY_CODE: dict[grpc.StatusCode, type[MnemoError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.DATA_LOSS: DataLoss,
}


def from_rpc_error(e: grpc.RpcError) -> MnemoError:
    """The Mnemo error for a failed call."""
    call: Any = e  # a grpc.Call as well, for the errors calls raise
    code: Optional[grpc.StatusCode] = call.code() if callable(getattr(call, "code", None)) else None
    details = call.details() if callable(getattr(call, "details", None)) else str(e)
    message = str(details or code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry = 1.0
        trailers = call.trailing_metadata() if callable(getattr(call, "trailing_metadata", None)) else None
        for key, value in trailers or ():
            if key == "grpc-retry-pushback-ms":
                with contextlib.suppress(ValueError):
                    retry = int(value) / 1000.0
        cls: type[Retryable] = StorageFull if "disk" in message or "free space" in message else Overloaded
        return cls(message, retry_after=retry, code=code)
    if code == grpc.StatusCode.UNAVAILABLE:
        unavailable = Unavailable(message, code=code)
        trailers = call.trailing_metadata() if callable(getattr(call, "trailing_metadata", None)) else None
        for key, value in trailers or ():
            if key == OWNER_METADATA:
                unavailable.owner = str(value)
        return unavailable
    return _BY_CODE.get(code, MnemoError)(message, code=code) if code is not None else MnemoError(message)
