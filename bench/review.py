"""How long one review vote takes: local spool only vs spool + MLflow (sqlite store).

A vote is a human action; the widget waits for it before showing the next case, so
this is the latency a reviewer feels. Both variants run side by side in one process
on the same cases.

    .venv/bin/python bench/review.py [--votes 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=40)
    args = ap.parse_args()

    from llmops_magics import configure
    from llmops_magics.core.review.session import ReviewSession
    from llmops_magics.core.tracking import log_run

    home = Path(tempfile.mkdtemp(prefix="bench-review-"))
    cfg = configure(home=home)
    n = args.votes
    rows = [
        {
            "id": i,
            "input": f"question {i}",
            "prompt": f"question {i}",
            "primary_output": f"The answer to question {i} is long enough to diff. " * 4,
            "candidate_output": f"The reply to question {i} is long enough to differ. " * 4,
        }
        for i in range(n)
    ]
    run_id = log_run(
        run_name="bench review",
        tags={},
        params={},
        metrics={},
        tables={"cases.json": {k: [r[k] for r in rows] for k in rows[0]}},
        cfg=cfg,
    )

    results = {}
    for label, sync in (("spool only", False), ("spool + MLflow sqlite", True)):
        s = ReviewSession(rows, run_id=run_id if sync else None, seed=0, sync=sync, cfg=cfg)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            s.vote(("left", "right", "tie")[i % 3])
            s.state()  # what the widget sends back after each vote
            times.append(time.perf_counter() - t0)
        assert not s.sync_error, s.sync_error
        results[label] = times
    print(f"{n} votes each, {rows[0]['primary_output'].count(' ')} words per output")
    print("| variant | median ms | p95 ms |")
    print("|---|---|---|")
    for label, times in results.items():
        times = sorted(times)
        print(f"| {label} | {1000 * statistics.median(times):.1f} | {1000 * times[int(0.95 * (len(times) - 1))]:.1f} |")
    a, b = (statistics.median(t) for t in results.values())
    print(f"ratio (with MLflow / spool only): {b / a:.1f}x")


if __name__ == "__main__":
    main()
