"""Every call of the sync client against a real server, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

import mnemo
from mnemo import Filter, Mnemo

DIM = 16


def vectors(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_spaces_remember_recall_get_export_and_stats(client: Mnemo) -> None:
    info = client.spaces.create("s", DIM, metric="l2", precision="f32")
    assert (info.name, info.dim, info.metric, info.precision) == ("s", DIM, "l2", "f32")
    assert [s.name for s in client.spaces.list()] == ["s"]
    with pytest.raises(mnemo.AlreadyExists):
        client.spaces.create("s", DIM)
    v = vectors(20)
    ids = []
    for i, row in enumerate(v):
        # numpy rows and plain lists both work.
        emb = row if i % 2 else row.tolist()
        r = client.remember("s", f"memory {i}", emb, tags={"parity": str(i % 2)}, confidence=0.5 + i / 100)
        ids.append(r.memory_id)
        assert r.lsn == i + 1
    hits = client.recall("s", v[3], k=3, include_embedding=True)
    assert hits[0].content == "memory 3"
    assert hits[0].embedding is not None
    assert np.allclose(hits[0].embedding, v[3])
    odd = client.recall("s", v[3], k=20, filter={"parity": "1"})
    assert {h.content for h in odd} == {f"memory {i}" for i in range(1, 20, 2)}
    stream = client.recall_iter("s", v[5], k=7, batch_size=2, filter=Filter(tags={"parity": ["0", "1"]}))
    got = list(stream)
    assert len(got) == 7 and got[0].content == "memory 5"
    assert stream.snapshot_lsn == 20
    g = client.get("s", [ids[4], "00000000-0000-7000-8000-000000000000"])
    assert [m.content for m in g.memories] == ["memory 4"]
    assert g.missing == ["00000000-0000-7000-8000-000000000000"]
    exported = list(client.export("s", batch_size=7, include_embedding=True))
    assert [m.lsn for m in exported] == list(range(1, 21))
    assert np.allclose(np.array([m.embedding for m in exported]), v)
    info, stats = client.spaces.describe("s")
    assert stats.committed_lsn == 20 and stats.memories == 20
    s = client.stats()
    assert s.spaces["s"].committed_lsn == 20
    assert s.pressure.state == mnemo.PressureState.NORMAL
    client.spaces.drop("s")
    with pytest.raises(mnemo.NotFound):
        client.spaces.describe("s")


def test_forget_supersede_and_compact(client: Mnemo) -> None:
    client.spaces.create("f", DIM)
    v = vectors(10, seed=2)
    ids = [client.remember("f", f"m{i}", v[i], tags={"user": str(i % 3)}).memory_id for i in range(10)]
    fixed = client.remember("f", "m0, corrected", v[0], supersedes=ids[0])
    g = client.get("f", [ids[0]])
    assert g.superseded == {ids[0]: fixed.memory_id}
    gone = client.forget("f", filter={"user": "1"})
    assert gone.count == 3
    assert not {h.content for h in client.recall("f", v[1], k=10)} & {"m1", "m4", "m7"}
    with pytest.raises(ValueError):
        client.forget("f")
    client.compact("f")
    _, stats = client.spaces.describe("f")
    assert stats.memories == 7 and stats.dead_bytes == 0


def test_bad_input_raises_the_right_error_and_writes_nothing(client: Mnemo) -> None:
    client.spaces.create("b", DIM)
    with pytest.raises(mnemo.InvalidArgument):
        client.remember("b", "short", vectors(1)[0][:5])
    with pytest.raises(mnemo.InvalidArgument):
        client.recall("b", [float("nan")] * DIM)
    with pytest.raises(mnemo.NotFound):
        client.recall("nope", vectors(1)[0])
    with pytest.raises(ValueError):
        client.spaces.create("c", DIM, metric="hamming")
    with pytest.raises(ValueError):
        client.remember("b", "2-d", vectors(2))
    assert client.spaces.describe("b")[1].committed_lsn == 0
