"""A real ``mnemo serve`` on a free loopback port, for every test that needs one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnemo import Mnemo, MnemoError

ROOT = Path(__file__).resolve().parents[3]


def mnemo_binary() -> Path:
    """``$MNEMO_BIN``, else the workspace's release or debug build."""
    if "MNEMO_BIN" in os.environ:
        return Path(os.environ["MNEMO_BIN"])
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "mnemo"
        if p.exists():
            return p
    raise RuntimeError("no mnemo binary: run `cargo build` first or set MNEMO_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One ``mnemo serve`` child process on a data directory; restartable."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        probe_key: str | None = None,
        probe_tls: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.args = args or []
        self.probe_key = probe_key
        self.probe_tls = probe_tls or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(mnemo_binary()),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                self.address,
                "--metrics",
                f"127.0.0.1:{free_port()}",
                *self.args,
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        address = f"https://{self.address}" if self.probe_tls else self.address
        with Mnemo(address, timeout=2, api_key=self.probe_key, **self.probe_tls) as m:
            while True:
                try:
                    m.stats()
                    return
                except MnemoError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"mnemo serve exited with {self.proc.returncode}") from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no drain, no checkpoint."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart_after_kill(self) -> None:
        """SIGKILL, then start again on the same data directory and port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data")
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Mnemo]:
    with Mnemo(server.address) as m:
        yield m
