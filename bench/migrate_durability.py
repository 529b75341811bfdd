"""Migration durability trials, longer than the tests: stale vectors, duplicate ids, rollback kills.

    .venv/bin/python bench/migrate_durability.py [--trials 3] [--rows 10000] [--kills 5]
        [--adders 2] [--adds 1000] [--per-add 1] [--rollback-trials 40] [--only stale|ids|rollback]

1. stale: ``--rows`` rows; a process edits texts at random (one row per commit) while
   ``--kills`` backfill processes are SIGKILLed at random points, then the edits stop
   and a final backfill runs. Counts rows whose new vector is not the embedding of the
   row's current text (atol 1e-4), lost rows, doubled ids, edits reverted.
2. ids: ``--adders`` processes each call ``Migration.add`` ``--adds`` times with
   ``--per-add`` rows, all at once, a migration open. Counts doubled ids, missing rows,
   and the adds per second all processes together reached.
3. rollback: ``--rollback-trials`` rollbacks before cutover, each SIGKILLed at a random
   point inside it, then run again. Counts trials that lost a user write or left a
   column or an open migration, and where the kills landed.

Every trial is on a real LanceDB folder with real embedders; prints one line per trial
and a summary. Numbers depend on the machine's load: report the command and the card.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["apples", "rivers", "engines", "poems", "storms", "violins", "glaciers", "owls"]
COL = "vector_minilm_cls"

BACKFILL = """
import sys, llmops_magics
llmops_magics.migration(sys.argv[1], db=sys.argv[2], log=False).backfill(batch=int(sys.argv[3]), progress=False)
"""

EDITOR = """
import json, os, random, sys, time, lancedb
db, name, rows, seed, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t = lancedb.connect(db).open_table(name)
rng, last, failed = random.Random(seed), {}, 0
while not os.path.exists(stop):
    i = rng.randrange(rows)
    text = f"edit {len(last)}.{rng.random():.6f} of row {i}"
    try:
        t.update(where=f"id = {i}", values={"text": text})
        last[i] = text
    except Exception:
        failed += 1
    time.sleep(0.01)
print(json.dumps({"last": last, "failed": failed}))
"""

ADDER = """
import os, sys, time, llmops_magics
db, name, who, adds, per, folder, n = sys.argv[1:8]
m = llmops_magics.migration(name, db=db, log=False)
m.add(["warm-up " + who])
open(os.path.join(folder, "ready-" + who), "w").close()
while len([f for f in os.listdir(folder) if f.startswith("ready-")]) < int(n):
    time.sleep(0.005)
t0 = time.time()
for k in range(int(adds)):
    m.add([f"{who} row {k}.{j}" for j in range(int(per))])
print(time.time() - t0)
"""

ROLLBACK = """
import sys, llmops_magics
m = llmops_magics.migration(sys.argv[1], db=sys.argv[2], log=False)
m.state
print("go", flush=True)
m.rollback()
print("done", flush=True)
"""


def spawn(script: str, *args, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env, **kw)


def table(db: str, name: str):
    import lancedb

    t = lancedb.connect(db).open_table(name)
    t.checkout_latest()
    return t


def stale_trial(seed: int, rows: int, kills: int, batch: int) -> dict:
    import numpy as np

    import llmops_magics
    from llmops_magics.core.vectors.embedders import get_embedder

    tmp = Path(tempfile.mkdtemp(prefix="bench-stale-"))
    db, name = str(tmp / "lancedb"), "race"
    texts = [f"record {i}: {WORDS[i % 8]} near {WORDS[(i * 3) % 8]}" for i in range(rows)]
    llmops_magics.create_index(name, [{"text": t, "group": i % 7} for i, t in enumerate(texts)], db=db)
    llmops_magics.migration(name, db=db, log=False).start("minilm-cls")
    rng, done, t0 = random.Random(seed), 0, time.perf_counter()
    editor = spawn(EDITOR, db, name, rows, seed, tmp / "stop", stdout=subprocess.PIPE, text=True)
    for _ in range(kills):
        before = table(db, name).count_rows(f"{COL} IS NULL")
        child = spawn(BACKFILL, name, db, batch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while table(db, name).count_rows(f"{COL} IS NULL") == before and child.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 3.0))
        done += child.poll() is None
        child.send_signal(signal.SIGKILL)
        child.wait()
    (tmp / "stop").touch()
    edits = json.loads(editor.communicate()[0])
    llmops_magics.migration(name, db=db, log=False).backfill(batch=64, progress=False)
    got = table(db, name).to_arrow().to_pylist()
    ids = [r["id"] for r in got]
    by_id = {r["id"]: r for r in got}
    want_text = {i: edits["last"].get(str(i), texts[i]) for i in range(rows)}
    reverted = sum(by_id[i]["text"] != want_text[i] for i in by_id)
    vecs = np.array([by_id[i][COL] for i in sorted(by_id)], dtype=np.float32)
    want = get_embedder("minilm-cls").embed([by_id[i]["text"] for i in sorted(by_id)])
    stale = int((~np.isclose(vecs, want, atol=1e-4).all(axis=1)).sum())
    return {
        "rows": rows,
        "edited_rows": len(edits["last"]),
        "edit_failures": edits["failed"],
        "kills": done,
        "stale": stale,
        "lost": rows - len(by_id),
        "doubled": len(ids) - len(set(ids)),
        "reverted_edits": reverted,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def ids_trial(adders: int, adds: int, per: int) -> dict:
    import llmops_magics

    tmp = Path(tempfile.mkdtemp(prefix="bench-ids-"))
    db, name = str(tmp / "lancedb"), "ids"
    llmops_magics.create_index(name, [f"seed {w}" for w in WORDS], db=db)
    llmops_magics.migration(name, db=db, log=False).start("minilm-cls")
    who = [chr(ord("A") + k) for k in range(adders)]
    procs = [
        spawn(ADDER, db, name, w, adds, per, tmp, adders, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in who
    ]
    outs = [p.communicate() for p in procs]
    failed = [err[-300:] for (out, err), p in zip(outs, procs) if p.returncode]
    seconds = max(float(out) for (out, _), p in zip(outs, procs) if not p.returncode) if len(failed) < adders else 0
    rows = table(db, name).to_arrow().to_pylist()
    ids = collections.Counter(r["id"] for r in rows)
    texts = {r["text"] for r in rows}
    missing = sum(f"{w} row {k}.{j}" not in texts for w in who for k in range(adds) for j in range(per))
    return {
        "adders": adders,
        "adds_each": adds,
        "rows_per_add": per,
        "doubled_ids": sum(n - 1 for n in ids.values()),
        "missing_rows": missing,
        "failed_processes": len(failed),
        "adds_per_s": round(adders * adds / seconds, 1) if seconds else None,
        "errors": failed[:1],
    }


def rollback_trials(trials: int, seed: int) -> dict:
    import llmops_magics

    tmp = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    db, name, rng = str(tmp / "lancedb"), "rk", random.Random(seed)
    landed, bad = collections.Counter(), 0
    for _ in range(trials):
        llmops_magics.create_index(
            name, [{"text": f"note {i}: {w}", "group": i % 3} for i, w in enumerate(WORDS * 2)], db=db, mode="overwrite"
        )
        names = table(db, name).schema.names
        m = llmops_magics.migration(name, db=db, log=False)
        m.start("minilm-cls")
        m.backfill(batch=4, max_batches=2, progress=False)
        raw = table(db, name)
        raw.update(where="id = 1", values={"text": "edited after start"})
        raw.delete("id = 2")
        m.add(["added after start"])
        expected = sorted((r["id"], r["text"], r["group"]) for r in table(db, name).to_arrow().to_pylist())
        child = spawn(ROLLBACK, name, db, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        child.stdout.readline()
        time.sleep(rng.uniform(0, 0.012))
        child.send_signal(signal.SIGKILL)
        child.wait()
        status = m.status().details
        landed["mid-way" if "interrupted" in status else ("before" if status["migration"] != "none" else "after")] += 1
        if status["migration"] != "none":
            m.rollback()
        t = table(db, name)
        got = sorted((r["id"], r["text"], r["group"]) for r in t.to_arrow().to_pylist())
        bad += got != expected or t.schema.names != names or m.state != {}
    return {"trials": trials, "kills_landed": dict(landed), "bad_trials": bad}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--adders", type=int, default=2)
    ap.add_argument("--adds", type=int, default=1000)
    ap.add_argument("--per-add", type=int, default=1)
    ap.add_argument("--rollback-trials", type=int, default=40)
    ap.add_argument("--only", choices=["stale", "ids", "rollback"])
    a = ap.parse_args()
    os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="bench-durability-"))
    if a.only in (None, "stale"):
        for k in range(a.trials):
            print("stale", json.dumps(stale_trial(k, a.rows, a.kills, a.batch)), flush=True)
    if a.only in (None, "ids"):
        for _ in range(a.trials):
            print("ids", json.dumps(ids_trial(a.adders, a.adds, a.per_add)), flush=True)
    if a.only in (None, "rollback"):
        print("rollback", json.dumps(rollback_trials(a.rollback_trials, 1)), flush=True)


if __name__ == "__main__":
    main()
