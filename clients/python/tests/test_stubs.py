"""The committed stubs match the .proto (regenerate with scripts/gen_stubs.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_stubs", HERE / "scripts" / "gen_stubs.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path)
    for name in ("mnemo_pb2.py", "mnemo_pb2.pyi", "mnemo_pb2_grpc.py"):
        fresh = (tmp_path / "mnemo" / "v1" / name).read_text()
        committed = (HERE / "src" / "mnemo" / "v1" / name).read_text()
        assert fresh == committed, f"src/mnemo/v1/{name} is stale: run python scripts/gen_stubs.py"
