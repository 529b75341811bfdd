"""``%lance_migrate backfill --on ray`` on a real Ray head (``ray_helpers.ray_address``),
real LanceDB tables and real embedders (``default-embedding`` -> ``minilm-cls``).

The Ray path must keep every guarantee of the kernel path: the same vectors, one per
row, edits and dual-writes made meanwhile kept, resumable after SIGKILL of the driver
or of a worker, refused in one line before any work when it cannot be right, and
nothing of Ray's in the cell.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ray_helpers import (
    cluster_processes,
    ray_address,  # noqa: F401
)
from test_migration import open_raw, rows_by_id

import llmops_magics
from llmops_magics.backends import lance
from llmops_magics.core.vectors.embedders import get_embedder
from llmops_magics.core.vectors.ray_backfill import EmbedderDigestMismatch
from llmops_magics.core.vectors.table import EMBEDDER_KEY, column_spec
from llmops_magics.errors import BadInput

COL = "vector_minilm_cls"
WORDS = ["apples", "rivers", "engines", "poems", "storms", "violins", "glaciers", "owls"]
ACTOR = "MapBatches(EmbedderActor)"

DRIVER = """
import sys, llmops_magics
llmops_magics.migration(sys.argv[1], db=sys.argv[2], log=False).backfill(
    batch=64, progress=False, on="ray", address=sys.argv[3], concurrency=1
)
"""


def texts(n: int, tag: str = "row") -> list[str]:
    return [f"{tag} {i}: {WORDS[i % 8]} and {WORDS[(i * 3) % 8]}" for i in range(n)]


def started(db: str, name: str, n: int):
    llmops_magics.create_index(name, [{"text": t, "group": i % 7} for i, t in enumerate(texts(n))], db=db)
    m = llmops_magics.migration(name, db=db, log=False)
    m.start("minilm-cls")
    return m


def nulls(db: str, name: str) -> int:
    return open_raw(db, name).count_rows(f"{COL} IS NULL")


def assert_one_vector_each(db: str, name: str, rows: int) -> dict:
    """Every row once, each with a vector of its current text (the kernel's embedding)."""
    t = open_raw(db, name)
    got = rows_by_id(t)
    assert t.count_rows() == len(got) == rows, "a row lost or doubled"
    assert nulls(db, name) == 0 and t.count_rows(lance.stale(COL + "__src", "text")) == 0
    ids = sorted(got)
    want = get_embedder("minilm-cls").embed([got[i]["text"] for i in ids])
    cos = np.sum(np.array([got[i][COL] for i in ids], np.float32) * want, axis=1)
    assert cos.min() > 0.999, f"row {ids[int(cos.argmin())]} has cosine {cos.min():.4f} to its text's vector"
    return got


def wait_for(condition, timeout: float = 240, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "lancedb")


# The "few-thousand-row table": 4 commits of 512 rows on each path.
ROWS = 2000


def test_ray_backfill_equals_the_kernel_one_and_the_kernel_writes_on(db, ray_address, capfd):  # noqa: F811
    m = started(db, "r", ROWS)
    shutil.copytree(f"{db}/r.lance", f"{db}/k.lance")  # the same table, migration open, for the kernel
    t0 = time.perf_counter()
    kernel = llmops_magics.migration("k", db=db, log=False).backfill(batch=512, progress=False)
    kernel_s = time.perf_counter() - t0
    capfd.readouterr()
    t0 = time.perf_counter()
    ray = m.backfill(batch=512, on="ray", address=ray_address, concurrency=1)
    ray_s = time.perf_counter() - t0
    out, err = capfd.readouterr()
    print(
        f"\n{ROWS} rows: kernel {ROWS / kernel_s:.0f} rows/s, Ray (1 actor, with its start) {ROWS / ray_s:.0f} rows/s"
    )

    # Nothing of Ray's reached the cell's streams: only our one bar (rows committed).
    assert out == ""
    pieces = [p.strip() for p in re.split(r"[\r\n]+", err) if p.strip()]
    assert pieces and all(p.startswith("backfill r.vector_minilm_cls on Ray at 127.0.0.1") for p in pieces), pieces[:5]
    assert f"{ROWS}/{ROWS}" in pieces[-1]

    assert ray.details["rows_embedded"] == kernel.details["rows_embedded"] == ROWS and ray.details["rows_left"] == 0
    assert ray.details["on"] == "ray" and ray.details["ray_concurrency"] == 1
    assert ray.details["commits"] == kernel.details["commits"] == 4
    got = assert_one_vector_each(db, "r", ROWS)
    same = rows_by_id(open_raw(db, "k"))
    ids = sorted(got)
    cos = np.sum(np.array([got[i][COL] for i in ids]) * np.array([same[i][COL] for i in ids]), axis=1)
    assert cos.min() > 0.999
    assert [got[i]["vector"] for i in ids[:5]] == [same[i]["vector"] for i in ids[:5]]  # old column untouched

    # The kernel's lancedb reopens the table Ray Data read and writes it on.
    again = llmops_magics.migration("r", db=db, log=False)
    again.add(["late row: owls hunt at night"])
    open_raw(db, "r").update(where="id = 3", values={"text": "edited after the Ray pass: violins"})
    assert again.backfill(batch=64, progress=False).details["rows_embedded"] == 1
    assert_one_vector_each(db, "r", ROWS + 1)
    assert again.search("owls at night", k=1, column=COL).rows[0]["text"] == "late row: owls hunt at night"


def dual_write(db: str, name: str, row: dict, text: str, vectors: dict) -> None:
    """Another writer replaces ``row``'s text and writes both of its vectors (and the new
    vector's source digest) in one commit, as a dual-writing app would."""
    import pyarrow as pa

    t = open_raw(db, name)
    new = {**row, "text": text, COL + "__src": lance.text_digest(text), **vectors}
    t.merge_insert("id").when_matched_update_all().execute(pa.Table.from_pylist([new], schema=t.schema))


def test_edits_and_dual_writes_during_a_ray_backfill_are_kept(db, ray_address):  # noqa: F811
    m = started(db, "d", 400)
    t = open_raw(db, "d")
    dual_text = "dual-written during the Ray pass: owls hunt at night"
    # Computed before the pass starts, so the writes below land within milliseconds.
    dual = {c: get_embedder(column_spec(t, c).ref).embed([dual_text])[0].tolist() for c in ("vector", COL)}
    results: list = []
    errors: list[BaseException] = []

    def backfill():
        try:
            results.append(m.backfill(batch=32, progress=False, on="ray", address=ray_address, concurrency=1))
        except BaseException as e:  # reported by the test's assertion
            errors.append(e)

    worker = threading.Thread(target=backfill)
    worker.start()
    wait_for(lambda: nulls(db, "d") < 400 or not worker.is_alive(), what="the first Ray commit")
    rows = rows_by_id(open_raw(db, "d"))
    # Rows the pass has read (its snapshot holds their old text) but not committed yet.
    pending = sorted(i for i, r in rows.items() if r[COL] is None)
    edited = {i: f"edited during the Ray pass {i}: glaciers melt" for i in pending[-4:-1]}
    raw = open_raw(db, "d")
    for i, text in edited.items():
        raw.update(where=f"id = {i}", values={"text": text})
    dual_id = pending[-1]
    dual_write(db, "d", rows[dual_id], dual_text, dual)
    assert worker.is_alive(), "the pass ended before the edits landed: make the table bigger"
    worker.join()
    assert not errors, errors
    assert results[0].details["rows_changed_meanwhile"] >= 1, "no edit met the pass's merge"
    got = rows_by_id(open_raw(db, "d"))
    assert len(got) == 400 and all(got[i]["text"] == text for i, text in edited.items())  # no edit reverted
    kept = got[dual_id]  # not overwritten by the pass's vector of the old text
    assert kept["text"] == dual_text and all(kept[c] == pytest.approx(v) for c, v in dual.items())

    m.backfill(batch=32, progress=False, on="ray", address=ray_address, concurrency=1)  # the rerun
    got = assert_one_vector_each(db, "d", 400)
    want = get_embedder("minilm-cls").embed(list(edited.values()))
    assert np.allclose([got[i][COL] for i in edited], want, atol=1e-4)  # the NEW text's vectors
    assert all(got[dual_id][c] == pytest.approx(v) for c, v in dual.items())  # the rerun left it as written


def test_killed_driver_then_killed_worker_still_end_with_one_vector_per_row(db, ray_address):  # noqa: F811
    started(db, "kill", 800)
    before = rows_by_id(open_raw(db, "kill"))
    child = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "kill", db, ray_address], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: nulls(db, "kill") < 800 or child.poll() is not None, what="the driver's first commit")
        time.sleep(random.Random(21).uniform(0, 1.0))  # then a random point of the next ones
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    left = nulls(db, "kill")
    assert 0 < left < 800, "the kill landed after at least one commit and before the end"
    wait_for(lambda: not cluster_processes(ray_address, ACTOR), 60, "Ray to reap the dead driver's actor")

    # The rerun, and its embedder worker SIGKILLed while rows are left: Ray restarts the actor
    # in a new process, which embeds the rest.
    m = llmops_magics.migration("kill", db=db, log=False)
    killed: list[int] = []
    restarted: list[int] = []
    running = threading.Event()

    def kill_a_worker():
        wait_for(lambda: nulls(db, "kill") < left, what="the rerun's first commit")
        procs = cluster_processes(ray_address, ACTOR)
        if len(procs) == 1 and nulls(db, "kill") > 128:  # batches still to embed: the actor is needed again
            seen = {procs[0].pid}
            procs[0].send_signal(signal.SIGKILL)
            killed.append(procs[0].pid)
            while running.is_set() and not restarted:
                restarted.extend(p.pid for p in cluster_processes(ray_address, ACTOR) if p.pid not in seen)
                time.sleep(0.05)

    running.set()
    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        done = m.backfill(batch=64, progress=False, on="ray", address=ray_address, concurrency=1)
    finally:
        running.clear()
        killer.join()
    assert killed, "no worker was killed mid-run: make the table bigger"
    assert restarted, f"no new embedder process after killing pid {killed[0]}: no retry was exercised"
    assert done.details["rows_embedded"] == left and done.details["rows_left"] == 0  # each row once
    after = assert_one_vector_each(db, "kill", 800)
    assert all((after[i]["text"], after[i]["group"]) == (before[i]["text"], before[i]["group"]) for i in after)


def test_remote_cluster_with_local_store_or_table_is_refused_before_connecting(db, shell):
    llmops_magics.create_index("far", texts(4), db=db)
    m = llmops_magics.migration("far", db=db)
    m.start("minilm-cls")
    with pytest.raises(BadInput, match=r"Ray at ray://head\.example:10001 .* MLflow store \(a sqlite file\)") as e:
        m.backfill(on="ray", address="ray://head.example:10001")
    assert "\n" not in str(e.value)
    with pytest.raises(BadInput, match="cannot read the local path 'lancedb'"):
        llmops_magics.migration("far", db=db, log=False).backfill(on="ray", address="ray://head.example:10001")
    assert nulls(db, "far") == 4  # nothing done

    from IPython.core.error import UsageError

    for line, message in [
        ("--on ray --address ray://head.example:10001", "MLflow store"),
        ("--on gpu", "invalid choice: 'gpu'"),
        ("--on ray --concurrency 0", "--concurrency 0: need a whole number"),
        ("--concurrency 2", "--concurrency needs --on ray"),
        ("--address auto", "--address needs --on ray"),
    ]:
        with pytest.raises(UsageError, match=re.escape(message)) as e:
            shell.run_line_magic("lance_migrate", f"backfill far --db {db} {line}")
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="status takes no --on"):
        shell.run_line_magic("lance_migrate", f"status far --db {db} --on ray")


def test_a_worker_whose_embedder_digest_differs_is_refused(db, ray_address):  # noqa: F811
    m = started(db, "dig", 40)
    t = open_raw(db, "dig")
    real = column_spec(t, COL)
    fake = real.__class__(real.ref, "f" * 64, real.dimension, real.metric)
    lance.set_field_meta(t, COL, {EMBEDDER_KEY: fake.to_json()})
    with pytest.raises(EmbedderDigestMismatch) as e:
        m.backfill(batch=16, progress=False, on="ray", address=ray_address, concurrency=1)
    text = str(e.value)
    assert "\n" not in text and real.digest[:12] in text and "f" * 12 in text, text
    assert nulls(db, "dig") == 40  # nothing written
