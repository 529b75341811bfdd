"""Refresh docs/img/watch-plot.png from the newest flagged watch run of a home's MLflow store.

    LLMOPS_HOME=.llmops .venv/bin/python scripts/watch-screenshot.py [--out docs/img/watch-plot.png]

Run it after ``make demo`` (the quickstart's "after the switch" section logs a watch): the
run's own ``watch_plot.html`` artifact is opened in headless Chromium (Debian's, as the UI
tests use) and captured, so the picture in docs/watch.md is what a user's run stores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img/watch-plot.png")
    ap.add_argument("--width", type=int, default=1100)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from llmops_magics.core import tracking
    from llmops_magics.core.watch.run import PLOT_FILE

    runs = tracking.client().search_runs(
        [e.experiment_id for e in tracking.client().search_experiments()],
        filter_string="tags.`llmops.kind` = 'watch' AND tags.`llmops.flagged` = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    page_html = next((p for r in runs if (p := tracking.read_artifact(r.info.run_id, PLOT_FILE))), None)
    if page_html is None:
        print("no watch run with a plot in this home: run `make demo` first", file=sys.stderr)
        return 2
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        page_file = Path(tmp) / "watch.html"
        page_file.write_text(page_html)
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(page_file.as_uri())
        page.wait_for_selector(".plot-container")
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
