"""Embedding migration: backfill vs raw embedding, memory, and vs re-creating the table.

    .venv/bin/python bench/migrate.py [--rows 20000] [--rss-rows 100000] [--batch 256] [--to minilm-cls]

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
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--rss-rows", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--to", default="minilm-cls")
    ap.add_argument("--rounds", type=int, default=2, help="batches per alternation of raw and backfill")
    ap.add_argument("--rss-child", nargs=2, metavar=("DB", "TABLE"))
    a = ap.parse_args()
    if a.rss_child:
        return rss_child(a.rss_child[0], a.rss_child[1], a.to, a.batch)

    os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="bench-migrate-"))

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
