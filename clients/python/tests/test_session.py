"""Sessions: throughput path, resume across a server SIGKILL, overload retries, INVALID."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Server

import mnemo
from mnemo import Mnemo

DIM = 16


def rows(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def stored(client: Mnemo, space: str) -> dict[str, int]:
    """content → how many times it is stored."""
    out: dict[str, int] = {}
    for m in client.export(space, batch_size=4096):
        out[m.content] = out.get(m.content, 0) + 1
    return out


def test_observe_many_acks_everything_once_in_order(client: Mnemo) -> None:
    client.spaces.create("s", DIM)
    v = rows(5000)
    with client.session("s", "feed", batch_size=256) as s:
        seqs = s.observe_many(v, [f"o{i}" for i in range(5000)], tags=[{"i": str(i % 7)} for i in range(5000)])
        assert seqs == range(1, 5001)
        one = s.observe("single", v[0], tags={"i": "x"})
        assert one == 5001
        s.flush()
        assert s.accepted == 5001 and s.unacknowledged == 0
    counts = stored(client, "s")
    assert len(counts) == 5001 and set(counts.values()) == {1}
    # The same session id resumes after its last sequence.
    with client.session("s", "feed") as s:
        assert s.observe("next", v[1]) == 5002


def test_a_session_resumes_exactly_once_across_a_server_kill(server: Server) -> None:
    with Mnemo(server.address) as client:
        client.spaces.create("k", DIM)
    n = 20000
    v = rows(n, seed=4)
    contents = [f"k{i}" for i in range(n)]
    killer_done = threading.Event()

    def kill_and_restart() -> None:
        with Mnemo(server.address) as watcher:
            while watcher.spaces.describe("k")[1].committed_lsn < 3000:
                pass
        server.kill()
        server.start()
        killer_done.set()

    client = Mnemo(server.address)
    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    with client.session("k", "resumer", batch_size=128, reconnect_timeout=60) as s:
        for start in range(0, n, 500):
            s.observe_many(v[start : start + 500], contents[start : start + 500])
        s.flush(timeout=120)
        reconnects = s.reconnects
    killer.join()
    assert killer_done.is_set()
    assert reconnects >= 1
    counts = stored(client, "k")
    assert len(counts) == n, f"{n - len(counts)} lost"
    assert set(counts.values()) == {1}, "stored twice"
    client.close()


def test_overload_is_retried_with_no_loss_and_no_duplicates(tmp_path: Path) -> None:
    # A tiny admission budget and one index thread: refusals with retry_after.
    env = {"MNEMO_ENGINE__INGEST__QUEUE_MAX_ITEMS": "200", "MNEMO_ENGINE__INDEX_THREADS": "1"}
    server = Server(tmp_path / "data", env=env)
    try:
        with Mnemo(server.address) as client:
            client.spaces.create("o", 256)
            v = np.random.default_rng(5).standard_normal((6000, 256)).astype(np.float32)
            pressures: list[mnemo.Pressure] = []
            with client.session("o", "flood", batch_size=512, on_pressure=pressures.append) as s:
                s.observe_many(v, [f"o{i}" for i in range(6000)])
                s.flush(timeout=120)
                assert s.retried > 0, "the budget never refused anything"
            counts = stored(client, "o")
            assert len(counts) == 6000 and set(counts.values()) == {1}
            assert any(p.state != mnemo.PressureState.NORMAL for p in pressures)
    finally:
        server.stop()


def test_an_invalid_observation_is_never_retried(client: Mnemo) -> None:
    client.spaces.create("i", DIM)
    with pytest.raises(mnemo.InvalidObservation) as e, client.session("i", "bad") as s:
        s.observe("fine", rows(1)[0])
        s.observe("wrong dimension", rows(1)[0][:3])
        s.flush(timeout=30)
    assert e.value.sequence == 2
    # The refusal of 2 can come back before 1 is durable (it waits for its commit,
    # the refusal does not): 1 commits all the same.
    deadline = time.monotonic() + 10
    while not list(client.export("i")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [m.content for m in client.export("i")] == ["fine"]
