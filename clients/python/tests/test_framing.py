"""The session's hand-framed batches parse as the messages they stand for."""

from __future__ import annotations

from mnemo.session import _BATCH, _BATCH_ITEM, _OBSERVATION, _frame, _varint
from mnemo.v1 import mnemo_pb2 as pb


def test_varints_and_frames_match_the_generated_parser() -> None:
    assert [_varint(n) for n in (0, 1, 127, 128, 300, 2**35)] == [
        b"\x00",
        b"\x01",
        b"\x7f",
        b"\x80\x01",
        b"\xac\x02",
        b"\x80\x80\x80\x80\x80\x01",
    ]
    observations = [
        pb.Observation(content="x" * n, embedding_f32=bytes(4 * n), sequence=n + 1, tags={"k": str(n)})
        for n in (0, 1, 200, 5000)
    ]
    raw = [o.SerializeToString() for o in observations]
    batch = pb.ObserveRequest.FromString(_frame(_BATCH, b"".join(_frame(_BATCH_ITEM, r) for r in raw)))
    assert batch.WhichOneof("kind") == "batch"
    assert list(batch.batch.observations) == observations
    one = pb.ObserveRequest.FromString(_frame(_OBSERVATION, raw[3]))
    assert one.WhichOneof("kind") == "observation" and one.observation == observations[3]
