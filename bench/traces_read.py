"""``--from-traces`` read speed: an app's traces in a real sqlite store, read as shadow cases.

    .venv/bin/python bench/traces_read.py [--traces 5000] [--reps 3]

Writes ``--traces`` one-span chat traces (OpenAI chat shape, as autologging records
them) into a fresh sqlite store, then reads them back, side by side in one run:

* ``from_traces``: what ``%shadow --from-traces`` does (paged ``search_traces`` with
  spans, request/answer extracted, redaction hook applied);
* ``mlflow.search_traces(return_type="list")``: MLflow's own call for the same traces.

Prints traces/s of each (best of ``--reps``) and their ratio; the target is at least
500 traces/s for ``from_traces``. Ends with the machine's CPU flags.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = sorted(set(re.findall(r"\b(amx_bf16|amx_tile|avx512_bf16|avx512f|avx2)\b", text)))
    model = re.search(r"model name\s*:\s*(.+)", text)
    return f"{model.group(1) if model else '?'} · {os.cpu_count()} cores · flags {' '.join(found) or 'none'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-traces-"))
    os.environ["LLMOPS_HOME"] = str(home)
    import mlflow

    import llmops_magics
    from llmops_magics.core.evidence.traces import from_traces
    from llmops_magics.core.tracking import experiment_id
    from llmops_magics.core.tracking.trace_write import GenerationTrace, write_traces

    cfg = llmops_magics.settings()
    exp = experiment_id("support-app", cfg=cfg)
    now = time.time_ns()
    traces = [
        GenerationTrace(
            name="chat",
            messages=[{"role": "user", "content": f"Question {i}: where is my parcel number {i}?"}],
            response=f"Parcel {i} is on its way and arrives tomorrow.",
            start_ns=now + i * 1000,
            end_ns=now + i * 1000 + 300_000_000,
        )
        for i in range(args.traces)
    ]
    t0 = time.perf_counter()
    report = write_traces(traces, experiment_id=exp, cfg=cfg)
    write_s = time.perf_counter() - t0
    assert report.written == args.traces, report.note

    def ours() -> int:
        return len(from_traces("support-app", need_answers=True, cfg=cfg).items)

    def theirs() -> int:
        mlflow.set_tracking_uri(cfg.resolved_tracking_uri)
        return len(mlflow.search_traces(locations=[exp], return_type="list", max_results=args.traces + 1))

    rows = []
    for name, fn in (("from_traces (ours)", ours), ("mlflow.search_traces", theirs)):
        best = None
        for _ in range(args.reps):
            t0 = time.perf_counter()
            n = fn()
            s = time.perf_counter() - t0
            assert n == args.traces, (name, n)
            best = s if best is None else min(best, s)
        rows.append((name, best, args.traces / best))
    print(
        f"{args.traces} traces written in {write_s:.2f} s ({args.traces / write_s:.0f} traces/s, {report.calls} calls)"
    )
    print(f"{'reader':<24}{'seconds':>10}{'traces/s':>12}")
    for name, s, rate in rows:
        print(f"{name:<24}{s:>10.2f}{rate:>12.0f}")
    print(
        f"ratio ours / mlflow: {rows[0][2] / rows[1][2]:.2f}x · target >= 500 traces/s: "
        f"{'met' if rows[0][2] >= 500 else 'MISSED'}"
    )
    print(cpu_flags())


if __name__ == "__main__":
    sys.exit(main())
