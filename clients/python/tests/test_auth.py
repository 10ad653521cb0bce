"""API keys: the key argument and $MNEMO_API_KEY, refusals mapped to their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import Server

import mnemo
from mnemo import Mnemo

ADMIN = "admin-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"


def test_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "mnemo.toml"
    config.write_text(
        f"""
[[auth.keys]]
name = "ops"
key = "{ADMIN}"
read = ["*"]
write = ["*"]
admin = ["*"]

[[auth.keys]]
name = "reader"
key = "{READER}"
read = ["*"]
"""
    )
    server = Server(tmp_path / "data", args=["--config", str(config)], probe_key=ADMIN)
    try:
        v = np.ones(8, dtype=np.float32)
        with Mnemo(server.address, api_key=ADMIN) as m:
            m.spaces.create("k", 8)
            m.remember("k", "kept", v)
            with m.session("k", "with-key") as s:
                s.observe("streamed", v)
        monkeypatch.delenv("MNEMO_API_KEY", raising=False)
        with Mnemo(server.address) as anonymous, pytest.raises(mnemo.Unauthenticated):
            anonymous.recall("k", v)
        with Mnemo(server.address, api_key="not-a-key-0123456789") as wrong, pytest.raises(mnemo.Unauthenticated):
            wrong.stats()
        monkeypatch.setenv("MNEMO_API_KEY", READER)
        with Mnemo(server.address) as reader:
            assert {h.content for h in reader.recall("k", v, k=5)} == {"kept", "streamed"}
            with pytest.raises(mnemo.PermissionDenied):
                reader.remember("k", "refused", v)
            with pytest.raises(mnemo.PermissionDenied):
                reader.spaces.drop("k")
    finally:
        server.stop()
