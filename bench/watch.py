"""``%llm_watch`` speed: read and score an app's traces, then watch them again.

    .venv/bin/python bench/watch.py [--traces 10000] [--days 10]

Writes ``--traces`` one-span chat traces spread over ``--days`` backdated days into a
fresh sqlite store, with a code scorer (``@scorer``) deciding on each answer, then in
one process:

* **first watch**: trace infos read page by page, spans fetched, every trace scored,
  input drift embedded (a bounded sample), statistics, one MLflow run. The new scores
  are written as MLflow assessments by a background writer, which is timed on its own
  (MLflow takes one assessment per call);
* **second watch** over the same window once the writer is done: scores reused from the
  assessments, span facts and embeddings from the local facts cache.

Prints the seconds of each, their ratio (target at least 10x), the first watch against
its target (10,000 traces in at most 60 s), the assessment write rate, and the
machine's CPU flags.
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


TOPICS = ("parcel", "refund", "invoice", "password", "delivery", "warranty", "discount", "account")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=10)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    os.environ["LLMOPS_HOME"] = str(home)
    from mlflow.genai.scorers import scorer

    import llmops_magics
    from llmops_magics.core.tracking import experiment_id
    from llmops_magics.core.tracking.trace_write import GenerationTrace, write_traces

    cfg = llmops_magics.settings()
    exp = experiment_id("support-app", cfg=cfg)
    day_ns = 86_400 * 10**9
    start = time.time_ns() - args.days * day_ns
    step = args.days * day_ns // args.traces
    traces = [
        GenerationTrace(
            name="chat",
            messages=[{"role": "user", "content": f"Question {i}: what about my {TOPICS[i % len(TOPICS)]} {i}?"}],
            response=("Sorry, please wait." if i % 10 == 0 else f"Your {TOPICS[i % len(TOPICS)]} {i} is sorted."),
            start_ns=start + i * step,
            end_ns=start + i * step + 300_000_000,
        )
        for i in range(args.traces)
    ]
    t0 = time.perf_counter()
    report = write_traces(traces, experiment_id=exp, cfg=cfg)
    print(f"{report.written} traces written in {time.perf_counter() - t0:.1f} s ({report.calls} calls)")
    assert report.written == args.traces, report.note

    @scorer
    def answered(outputs) -> bool:
        return not outputs.startswith("Sorry")

    since = f"{args.days + 1}d"
    t0 = time.perf_counter()
    first = llmops_magics.watch("support-app", scorers=[answered], since=since, by="day")
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = first.wait_for_writes(timeout=1800)
    write_s = time.perf_counter() - t0
    print(f"first watch: {first_s:.1f} s · {first.line()} · {first.counts}")
    print(f"assessment writer: {first.writer_status} (waited {write_s:.1f} s after the first watch returned)")
    assert done, "the writer did not finish"

    t0 = time.perf_counter()
    second = llmops_magics.watch("support-app", scorers=[answered], since=since, by="day")
    second_s = time.perf_counter() - t0
    print(f"second watch: {second_s:.2f} s · {second.line()} · {second.counts}")
    ratio = first_s / second_s
    print(f"{'watch':<14}{'seconds':>10}")
    print(f"{'first':<14}{first_s:>10.1f}")
    print(f"{'second':<14}{second_s:>10.2f}")
    print(
        f"ratio first / second: {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'MISSED'}) · "
        f"first watch of {args.traces} traces: {first_s:.1f} s (target <= 60 s for 10,000: "
        f"{'met' if first_s * 10_000 / args.traces <= 60 else 'MISSED'})"
    )
    print(cpu_flags())
    return 0


if __name__ == "__main__":
    sys.exit(main())
