"""Distributed mode: a session opened on a node that does not write the space follows
the server's redirect to the owner (sync and async), and every node then holds what
was written. Needs ``nats-server`` (``$MNEMO_NATS_SERVER`` or on ``PATH``); skipped
without it unless ``$MNEMO_REQUIRE_NATS`` is set."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, mnemo_binary

import mnemo
from mnemo import AsyncMnemo, Mnemo, MnemoError, _requests
from mnemo.v1 import mnemo_pb2 as pb

DIM = 8


def nats_binary() -> str | None:
    return os.environ.get("MNEMO_NATS_SERVER") or shutil.which("nats-server")


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[str]:
    binary = nats_binary()
    if binary is None:
        if os.environ.get("MNEMO_REQUIRE_NATS"):
            pytest.fail("MNEMO_REQUIRE_NATS is set but no nats-server was found")
        pytest.skip("no nats-server (set MNEMO_NATS_SERVER)")
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}", sync_interval: always }}\n'
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    yield f"nats://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


class Node:
    """One ``mnemo serve`` of a one-partition cluster."""

    def __init__(self, tmp: Path, name: str, nats: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        conf = tmp / f"{name}.toml"
        conf.write_text(
            f'listen = "{self.address}"\nmetrics = ""\n[engine]\ndata_dir = "{tmp / name}"\n'
            f'[cluster]\nnats = "{nats}"\npartitions = 1\nnode_id = "{name}"\n'
            f'advertise = "http://{self.address}"\nlease_ttl_ms = 1000\n'
        )
        self.proc = subprocess.Popen(
            [str(mnemo_binary()), "serve", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        with Mnemo(self.address, timeout=2) as m:
            while True:
                try:
                    m.stats()
                    return
                except MnemoError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL: no drain, no lease released."""
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def nodes(tmp_path: Path, nats: str) -> Iterator[list[Node]]:
    started = [Node(tmp_path, f"n{i}", nats) for i in range(2)]
    yield started
    for n in started:
        n.stop()


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def owner_and_other(nodes: list[Node]) -> tuple[Node, Node]:
    """The node that holds the partition's lease (it answers sessions), and the other."""
    deadline = time.monotonic() + 20
    while True:
        for i, n in enumerate(nodes):
            with Mnemo(n.address) as m:
                probe = _requests.observation("probe", np.ones(DIM, dtype=np.float32))
                try:
                    # Straight to this node: a write the client would not redirect.
                    m._call(m._stub.Remember, pb.RememberRequest(space="s", observation=probe))
                    return n, nodes[1 - i]
                except MnemoError:
                    pass
        assert time.monotonic() < deadline, "no node took the partition"
        time.sleep(0.1)


def space_on_both(nodes: list[Node]) -> tuple[Node, Node]:
    """Creates space ``s`` on the first node, waits until the second has it too, and
    returns the partition's owner and the other node."""
    with Mnemo(nodes[0].address) as m:
        m.spaces.create("s", DIM)

    def adopted() -> bool:
        with Mnemo(nodes[1].address) as other:
            return [s.name for s in other.spaces.list()] == ["s"]

    wait_for(adopted)
    return owner_and_other(nodes)


def committed(node: Node) -> int:
    with Mnemo(node.address) as m:
        return m.spaces.describe("s")[1].committed_lsn


async def test_sessions_follow_the_redirect_to_the_owner(nodes: list[Node]) -> None:
    owner, other = space_on_both(nodes)
    v = np.random.default_rng(3).standard_normal((400, DIM)).astype(np.float32)

    with Mnemo(other.address) as m:
        # The other node refuses a write and names the owner; the client's writes
        # follow it.
        with pytest.raises(mnemo.Unavailable) as refused:
            probe = _requests.observation("refused", v[0])
            m._call(m._stub.Remember, pb.RememberRequest(space="s", observation=probe))
        assert refused.value.owner == f"http://{owner.address}"
        assert m.remember("s", "direct", v[0]).lsn == 2
        assert m.forget("s", ids=[m.remember("s", "gone", v[1]).memory_id]).count == 1
        with m.session("s", "sync-feed") as s:
            s.observe_many(v[:200], [f"sync {i}" for i in range(200)])
            assert s.close() == 200
            assert s.accepted == 200

    async with AsyncMnemo(other.address) as am:
        assert (await am.remember("s", "async direct", v[2])).lsn == 205
        async with am.session("s", "async-feed") as s2:
            await s2.observe_many(v[200:], [f"async {i}" for i in range(200)])
            await s2.flush()
            assert s2.accepted == 200

    # The probe, two remembers, a forget, a remember, and both sessions.
    total = 5 + 400
    wait_for(lambda: committed(owner) == total and committed(other) == total)
    with Mnemo(other.address) as m:
        hits = m.recall("s", v[250], k=1)
        assert hits[0].content == "async 50"


def test_a_session_goes_on_through_a_peer_when_its_node_dies(nodes: list[Node]) -> None:
    owner, other = space_on_both(nodes)
    v = np.random.default_rng(5).standard_normal((300, DIM)).astype(np.float32)
    # The client knows the owner first and the other node as a peer.
    with Mnemo(owner.address, peers=[other.address]) as m, m.session("s", "feed") as s:
        s.observe_many(v[:150], [f"m{i}" for i in range(150)])
        s.flush()
        owner.kill()
        # The other node takes the partition over once the lease expires; the
        # session resumes there and goes on.
        s.observe_many(v[150:], [f"m{i}" for i in range(150, 300)])
        assert s.close() == 300
        assert s.reconnects >= 1
    # The probe and the 300, each once.
    wait_for(lambda: committed(other) == 301)
    with Mnemo(other.address) as m:
        contents = [x.content for x in m.export("s")]
        assert sorted(contents) == sorted(["probe"] + [f"m{i}" for i in range(300)])
