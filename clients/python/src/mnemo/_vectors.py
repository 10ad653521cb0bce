"""Vectors on the wire: packed little-endian f32 bytes, from numpy arrays or sequences."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vector = Union[Sequence[float], npt.NDArray[np.floating[Any]]]
else:
    Vector = Any

_LITTLE = sys.byteorder == "little"


def pack(v: Vector) -> bytes:
    """``v`` as little-endian f32 bytes (the protocol's packed embedding)."""
    astype = getattr(v, "astype", None)
    if astype is not None:  # a numpy array: one copy at most
        arr = astype("<f4", copy=False)
        if arr.ndim != 1:
            raise ValueError(f"a vector must be 1-dimensional, got shape {arr.shape}")
        return bytes(arr.tobytes())
    a = array("f", v)
    if not _LITTLE:
        a.byteswap()
    return a.tobytes()


def unpack(b: bytes) -> list[float]:
    """Packed little-endian f32 bytes as a list of floats."""
    if len(b) % 4:
        raise ValueError(f"{len(b)} bytes is not a whole number of f32")
    a = array("f")
    a.frombytes(b)
    if not _LITTLE:
        a.byteswap()
    return a.tolist()


def rows(matrix: Any) -> list[bytes]:
    """Each row of a 2-d numpy array (or a sequence of vectors) packed."""
    astype = getattr(matrix, "astype", None)
    if astype is not None:
        m = matrix.astype("<f4", copy=False)
        if m.ndim != 2:
            raise ValueError(f"expected a 2-d array of rows, got shape {m.shape}")
        return [r.tobytes() for r in m]
    return [pack(r) for r in matrix]
