"""The asyncio client does what the sync one does."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Server

import mnemo
from mnemo import AsyncMnemo

DIM = 16


async def test_async_calls_and_session(server: Server) -> None:
    v = np.random.default_rng(7).standard_normal((3000, DIM)).astype(np.float32)
    async with AsyncMnemo(server.address) as m:
        info = await m.spaces.create("a", DIM, precision="f32")
        assert info.dim == DIM
        assert [s.name for s in await m.spaces.list()] == ["a"]
        r = await m.remember("a", "first", v[0], tags={"k": "x"})
        assert r.lsn == 1
        async with m.session("a", "feed", batch_size=200) as s:
            seqs = await s.observe_many(v[1:], [f"o{i}" for i in range(1, 3000)])
            assert seqs == range(1, 3000)
            assert await s.observe("last", v[0], tags={"k": "y"}) == 3000
            await s.flush()
            assert s.accepted == 3000
        hits = await m.recall("a", v[5], k=3, include_embedding=True)
        assert hits[0].content == "o5" and hits[0].embedding is not None
        assert [h.content for h in await m.recall("a", v[0], k=5, filter={"k": "y"})] == ["last"]
        streamed = [h async for h in m.recall_iter("a", v[9], k=4, batch_size=1)]
        assert len(streamed) == 4 and streamed[0].content == "o9"
        got = await m.get("a", [r.memory_id])
        assert [x.content for x in got.memories] == ["first"]
        exported = [x async for x in m.export("a", batch_size=1000)]
        assert len(exported) == 3001 and len({x.content for x in exported}) == 3001
        f = await m.forget("a", filter={"k": "x"})
        assert f.count == 1
        _, stats = await m.spaces.describe("a")
        assert stats.memories == 3000
        assert (await m.stats()).spaces["a"].committed_lsn == f.lsn
        with pytest.raises(mnemo.AlreadyExists):
            await m.spaces.create("a", DIM)
        with pytest.raises(mnemo.InvalidObservation):
            async with m.session("a", "bad") as s:
                await s.observe("wrong dimension", v[0][:3])
                await s.flush(timeout=30)
        await m.spaces.drop("a")
        with pytest.raises(mnemo.NotFound):
            await m.spaces.describe("a")


async def test_an_async_session_resumes_exactly_once_across_a_server_kill(server: Server) -> None:
    import asyncio

    n = 10000
    v = np.random.default_rng(8).standard_normal((n, DIM)).astype(np.float32)
    contents = [f"a{i}" for i in range(n)]
    async with AsyncMnemo(server.address) as m:
        await m.spaces.create("r", DIM)

        async def kill_and_restart() -> None:
            while (await m.spaces.describe("r"))[1].committed_lsn < 2000:
                await asyncio.sleep(0.005)
            await asyncio.get_running_loop().run_in_executor(None, server.restart_after_kill)

        killer = asyncio.ensure_future(kill_and_restart())
        async with m.session("r", "async-resumer", batch_size=128) as s:
            for start in range(0, n, 500):
                await s.observe_many(v[start : start + 500], contents[start : start + 500])
            await s.flush(timeout=120)
            reconnects = s.reconnects
        await killer
        assert reconnects >= 1
        stored: dict[str, int] = {}
        async for mem in m.export("r", batch_size=4096):
            stored[mem.content] = stored.get(mem.content, 0) + 1
        assert len(stored) == n, f"{n - len(stored)} lost"
        assert set(stored.values()) == {1}, "stored twice"
