"""Backfill survives SIGKILL: a subprocess is killed mid-write several times, then resumed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

import llmops_magics
from llmops_magics.core.vectors.embedders import get_embedder

CHILD = """
import sys, llmops_magics
llmops_magics.migration(sys.argv[1], db=sys.argv[2], log=False).backfill(batch=8, progress=False)
"""


def _table(db, name):
    import lancedb

    t = lancedb.connect(db).open_table(name)
    t.checkout_latest()
    return t


def _nulls(db, name, column):
    return _table(db, name).count_rows(f"{column} IS NULL")


def test_backfill_resumes_after_sigkill(tmp_path):
    db, name, col = str(tmp_path / "lancedb"), "kill", "vector_minilm_cls"
    texts = [f"record {i}: {w}" for i, w in enumerate(["apples", "rivers", "engines", "poems", "storms"] * 400)]
    llmops_magics.create_index(name, [{"text": t, "group": i % 7} for i, t in enumerate(texts)], db=db)
    before = {r["id"]: r for r in _table(db, name).to_arrow().to_pylist()}
    llmops_magics.migration(name, db=db, log=False).start("minilm-cls")
    rng = random.Random(8)
    kills = 0
    for _ in range(3):
        left = _nulls(db, name, col)
        if left == 0:
            break
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, name, db],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        try:
            deadline = time.monotonic() + 120
            while _nulls(db, name, col) == left and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # wait until the child has committed at least one batch
            time.sleep(rng.uniform(0, 0.6))  # then kill at a random point of the next ones
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
        finally:
            child.wait()
    assert kills >= 2, "the backfill finished before it could be killed: make the table bigger"
    assert _nulls(db, name, col) > 0
    llmops_magics.migration(name, db=db, log=False).backfill(batch=32, progress=False)

    after = {r["id"]: r for r in _table(db, name).to_arrow().to_pylist()}
    assert len(after) == len(before) == _table(db, name).count_rows()  # no row lost, none doubled
    for i, row in after.items():
        assert {k: row[k] for k in ("text", "group", "vector")} == {
            k: before[i][k] for k in ("text", "group", "vector")
        }
    ids = sorted(after)
    got = np.array([after[i][col] for i in ids], dtype=np.float32)
    assert np.allclose(got, get_embedder("minilm-cls").embed([after[i]["text"] for i in ids]), atol=1e-4)
