"""Regenerates the protocol stubs (src/mnemo/v1/) from the workspace's .proto.

Usage: python scripts/gen_stubs.py [OUT_DIR]   (default: src)
The output is committed; tests/test_stubs.py fails when it no longer matches.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent.parent
PROTO_ROOT = HERE.parent.parent / "crates" / "mnemo-proto" / "proto"
PROTO = "mnemo/v1/mnemo.proto"


def generate(out: Path) -> None:
    """Writes mnemo/v1/mnemo_pb2{,_grpc}.py and mnemo_pb2.pyi under `out`."""
    (out / "mnemo" / "v1").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        PROTO,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "src")
