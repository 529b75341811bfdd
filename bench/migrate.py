"""Embedding migration: backfill vs raw embedding, memory, and vs re-creating the table.

    .venv/bin/python bench/migrate.py [--rows 20000] [--rss-rows 100000] [--batch 256] [--to minilm-cls]
    .venv/bin/python bench/migrate.py --on ray [--rows 100000] [--concurrency 2] [--batch 256]

In one run, on the same texts and batches:

1. raw: the target embedder alone over all texts, ``--batch`` at a time;
2. backfill: ``migration(...).start(to)`` then ``.backfill(batch)`` (embedding plus the
   LanceDB merge commits), alternating with (1) every ``--rounds`` batches over the same
   rows; prints rows/s of both and the ratio (target >= 0.9x);
3. peak RSS of a separate process backfilling ``--rss-rows`` rows, minus that process's
   RSS once the embedder is loaded and warm (target: within 1 GB);
4. re-creating the table from scratch with the new model (drop + create) vs the
   migration: wall time, and how long search was unavailable (a probe thread searches
   once a second during the migration; during a re-create the table is gone from the
   drop until the create commits).

``--on ray`` instead compares the kernel backfill with the Ray backfill, side by side in
one run: one table of ``--rows`` rows (100,000 by default) is built and started once, then
copied; each copy is backfilled in its own fresh driver process (the kernel path, then
``backfill(on="ray", concurrency=N)`` on a local Ray). Prints the rows/s of each, the
ratio Ray / kernel, and the driver's peak RSS in each (``VmHWM`` from ``/proc/self/status``
inside the driver process: Ray's own processes and the workers are not counted, which is
the point: the embedder must live in the workers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

WORDS = [
    "river",
    "engine",
    "poem",
    "storm",
    "market",
    "bread",
    "planet",
    "violin",
    "glacier",
    "owl",
    "bridge",
    "coral",
    "map",
    "clock",
    "tea",
    "chess",
]


def texts(n: int) -> list[str]:
    return [
        f"note {i}: the {WORDS[i % 16]} and the {WORDS[(i * 7) % 16]} met near the {WORDS[(i * 3) % 16]}"
        for i in range(n)
    ]


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(db: str, table: str, to: str, batch: int) -> None:
    import llmops_magics
    from llmops_magics.core.vectors.embedders import get_embedder

    emb = get_embedder(to)
    emb.embed(texts(batch), batch_size=min(batch, 64))  # loaded and warm: the embedder's own footprint
    base = rss_mb()
    m = llmops_magics.migration(table, db=db, log=False)
    m.start(to)
    m.backfill(batch=batch, progress=False)
    print(f"RSS {base:.0f} {rss_mb('VmHWM'):.0f}")


def driver_peak_mb() -> float:
    """This process's peak RSS so far: VmHWM, which starts afresh at exec. Not ru_maxrss,
    which keeps the parent's RSS at fork: with a bench parent holding a built table, it
    reported the parent's peak, not the driver's."""
    return rss_mb("VmHWM")


def backfill_child(db: str, table: str, on: str, batch: int, concurrency: int) -> None:
    """One backfill in this fresh process, the driver; prints one JSON line of figures."""
    from llmops_magics.core.vectors.migration import migration

    m = migration(table, db=db, log=False)
    out = {"on": on, "rss_before_mb": 0.0, "ray_start_s": 0.0, "where": "kernel"}
    options: dict = {}
    if on == "ray":
        from llmops_magics.backends import ray_cluster

        # Started before the clock: a notebook pays it once per session, not per backfill.
        t0 = time.perf_counter()
        out["where"] = ray_cluster.connect().label
        out["ray_start_s"] = round(time.perf_counter() - t0, 1)
        options = {"on": "ray", "concurrency": concurrency}
    out["rss_before_mb"] = round(driver_peak_mb())
    t0 = time.perf_counter()
    result = m.backfill(batch=batch, progress=False, **options)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["rows"] = result.details.get("rows_embedded")
    out["rows_left"] = result.details.get("rows_left")
    out["ran_on"] = result.details.get("on", "kernel")  # what the backfill itself says it used
    out["peak_rss_mb"] = round(driver_peak_mb())
    print("RESULT " + json.dumps(out), flush=True)


def side_by_side(a) -> None:
    """Kernel backfill vs Ray backfill on copies of one started table, each in a fresh driver."""
    import llmops_magics

    home = os.environ["LLMOPS_HOME"]
    src = os.path.join(home, "lancedb-src")
    t0 = time.perf_counter()
    llmops_magics.create_index("side", texts(a.rows), db=src, batch=a.batch)
    llmops_magics.migration("side", db=src, log=False).start(a.to)
    print(f"built and started {a.rows} rows ({a.to}) in {time.perf_counter() - t0:.1f} s", flush=True)
    results = {}
    for on in ("kernel", "ray"):
        db = os.path.join(home, f"lancedb-{on}")
        shutil.copytree(src, db)
        cmd = [sys.executable, __file__, "--backfill-child", db, "side", on]
        cmd += ["--batch", str(a.batch), "--concurrency", str(a.concurrency)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"{on} backfill failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        r = results[on] = json.loads(line[len("RESULT ") :])
        if r["ran_on"] != on:
            sys.exit(f"asked for a backfill on {on}, it ran on {r['ran_on']}")
        rate = r["rows"] / r["seconds"]
        extra = f"; Ray start {r['ray_start_s']} s before the clock" if on == "ray" else ""
        print(
            f"{on:<6} backfill on {r['where']}: {r['rows']} rows in {r['seconds']} s = {rate:.1f} rows/s, "
            f"{r['rows_left']} left; driver peak RSS {r['peak_rss_mb']} MB "
            f"({r['rss_before_mb']} MB before the backfill){extra}",
            flush=True,
        )
    k, r = results["kernel"], results["ray"]
    ratio = (r["rows"] / r["seconds"]) / (k["rows"] / k["seconds"])
    print(f"throughput Ray / kernel: {ratio:.2f}x (Ray with {a.concurrency} embedder actors)")
    print(
        f"driver peak RSS: kernel {k['peak_rss_mb']} MB, Ray {r['peak_rss_mb']} MB "
        f"(growth during the backfill: kernel {k['peak_rss_mb'] - k['rss_before_mb']} MB, "
        f"Ray {r['peak_rss_mb'] - r['rss_before_mb']} MB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=None, help="20000 (kernel bench) or 100000 (--on ray)")
    ap.add_argument(
        "--on", choices=["kernel", "ray"], default="kernel", help="ray: kernel vs Ray backfill, side by side"
    )
    ap.add_argument("--concurrency", type=int, default=2, help="embedder actors for --on ray")
    ap.add_argument("--backfill-child", nargs=3, metavar=("DB", "TABLE", "ON"))
    ap.add_argument("--rss-rows", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--to", default="minilm-cls")
    ap.add_argument("--rounds", type=int, default=2, help="batches per alternation of raw and backfill")
    ap.add_argument("--rss-child", nargs=2, metavar=("DB", "TABLE"))
    a = ap.parse_args()
    if a.rss_child:
        return rss_child(a.rss_child[0], a.rss_child[1], a.to, a.batch)
    if a.backfill_child:
        return backfill_child(*a.backfill_child, a.batch, a.concurrency)

    os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="bench-migrate-"))
    if a.on == "ray":
        a.rows = 100000 if a.rows is None else a.rows
        return side_by_side(a)
    a.rows = 20000 if a.rows is None else a.rows

    if a.rows > 0:
        throughput_and_recreate(a)
    if a.rss_rows > 0:
        peak_rss(a)


def throughput_and_recreate(a) -> None:
    import llmops_magics
    from llmops_magics.core.vectors.embedders import get_embedder

    db = os.path.join(os.environ["LLMOPS_HOME"], "lancedb")
    docs = texts(a.rows)
    t0 = time.perf_counter()
    llmops_magics.create_index("bench", docs, db=db, batch=a.batch)
    print(f"built {a.rows} rows with default-embedding in {time.perf_counter() - t0:.1f} s")

    emb = get_embedder(a.to)
    emb.embed(docs[: a.batch], batch_size=min(a.batch, 64))  # warm-up, both sides benefit

    probes = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def probe():
        while not stop.wait(1.0):
            try:
                llmops_magics.search("bench", "storm over the river", k=3, db=db)
                probes["ok"] += 1
            except Exception:
                probes["failed"] += 1

    m = llmops_magics.migration("bench", db=db, log=False)
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    t_mig = time.perf_counter()
    m.start(a.to)
    # Raw and backfill alternate over the same rows, --rounds batches at a time: on a
    # shared machine the load drifts, and alternating exposes both sides to the same drift.
    raw_s = backfill_s = 0.0
    step = a.batch * a.rounds
    for lo in range(0, len(docs), step):
        t0 = time.perf_counter()
        for i in range(lo, min(lo + step, len(docs)), a.batch):
            emb.embed(docs[i : i + a.batch], batch_size=min(a.batch, 64))
        raw_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        m.backfill(batch=a.batch, max_batches=a.rounds, progress=False)
        backfill_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    m.cutover()
    cutover_s = time.perf_counter() - t0
    migration_s = time.perf_counter() - t_mig - raw_s  # the raw runs interleaved are not migration time
    stop.set()
    prober.join()

    raw_rate, bf_rate = a.rows / raw_s, a.rows / backfill_s
    print(f"raw embedding ({a.to}, batch {a.batch}): {raw_rate:.1f} rows/s ({raw_s:.1f} s)")
    print(f"backfill      ({a.to}, batch {a.batch}): {bf_rate:.1f} rows/s ({backfill_s:.1f} s)")
    print(f"ratio backfill / raw: {bf_rate / raw_rate:.2f}x (target >= 0.9x)")

    import lancedb

    conn = lancedb.connect(db)
    t0 = time.perf_counter()
    conn.drop_table("bench")
    llmops_magics.create_index("bench", docs, embedder=a.to, db=db, batch=a.batch)
    recreate_s = time.perf_counter() - t0
    print(
        f"migration start..cutover: {migration_s:.1f} s; search probes ok {probes['ok']}, failed {probes['failed']}; "
        f"the switch itself (cutover) {cutover_s:.2f} s"
    )
    print(
        f"re-create from scratch (drop + create with {a.to}): {recreate_s:.1f} s, search unavailable {recreate_s:.1f} s"
    )


def peak_rss(a) -> None:
    import llmops_magics

    rss_db = os.path.join(os.environ["LLMOPS_HOME"], "lancedb-rss")
    llmops_magics.create_index("rss", texts(a.rss_rows), db=rss_db, batch=a.batch)
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", rss_db, "rss", "--to", a.to, "--batch", str(a.batch)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    base, peak = (float(x) for x in out.split("RSS", 1)[1].split())
    print(
        f"peak RSS backfilling {a.rss_rows} rows: {peak:.0f} MB; embedder loaded and warm: {base:.0f} MB; "
        f"over the embedder: {peak - base:.0f} MB (target <= 1024 MB)"
    )


if __name__ == "__main__":
    main()
