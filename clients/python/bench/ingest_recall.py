"""Python client throughput: a session streaming 768-d numpy rows, then recall round trips.

    python bench/ingest_recall.py --addr 127.0.0.1:7400 [--n 100000] [--dim 768]

Prints observations/s acknowledged (durable and visible) through one
``session().observe_many`` and the p50 / p99 of ``recall`` (k = 10) once everything is
indexed. Records results in docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mnemo import Mnemo


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:7400")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--chunk", type=int, default=2000, help="rows per observe_many call")
    p.add_argument("--batch", type=int, default=512, help="observations per stream message")
    p.add_argument("--recalls", type=int, default=1000)
    p.add_argument("--space", default=f"pybench-{int(time.time())}")
    a = p.parse_args()

    rng = np.random.default_rng(1)
    centres = rng.uniform(-1, 1, (256, a.dim)).astype(np.float32)
    rows = centres[np.arange(a.n) % 256] + rng.uniform(-0.3, 0.3, (a.n, a.dim)).astype(np.float32)
    contents = [f"python bench {i}" for i in range(a.n)]

    with Mnemo(a.addr, timeout=120) as m:
        m.spaces.create(a.space, a.dim)
        t = time.perf_counter()
        with m.session(a.space, batch_size=a.batch) as s:
            for start in range(0, a.n, a.chunk):
                s.observe_many(rows[start : start + a.chunk], contents[start : start + a.chunk])
            s.flush()
            took = time.perf_counter() - t
            print(
                f"ingest: {a.n} x {a.dim}-d in {took:.2f} s = {a.n / took:,.0f} obs/s acked "
                f"(refusals retried {s.retried})"
            )
        # Recall on a quiet server: wait for the graph to take everything.
        while True:
            _, st = m.spaces.describe(a.space)
            if st.indexed_lsn >= st.committed_lsn:
                break
            time.sleep(0.5)
        cues = rows[rng.integers(0, a.n, a.recalls)] + rng.uniform(-0.05, 0.05, (a.recalls, a.dim)).astype(np.float32)
        for c in cues[:20]:
            m.recall(a.space, c, k=10)  # warm up
        lat = []
        for c in cues:
            t0 = time.perf_counter()
            hits = m.recall(a.space, c, k=10)
            lat.append((time.perf_counter() - t0) * 1000)
            assert len(hits) == 10
        lat.sort()
        print(
            f"recall k=10 over {a.n:,} x {a.dim}-d: p50 {statistics.median(lat):.2f} ms, "
            f"p99 {lat[int(len(lat) * 0.99) - 1]:.2f} ms ({len(lat)} recalls)"
        )
        m.spaces.drop(a.space)


if __name__ == "__main__":
    main()
