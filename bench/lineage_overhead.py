"""Per-cell cost of lineage recording: 2,000 trivial cells without and with the extension.

Each configuration runs in its own process: 2,000 cells on a bare IPython shell, then
the extension is loaded and the same 2,000 cells run again; the added time per cell is
the difference of the medians (and of the 99th percentiles). The background shipper
runs during the measurement (to a sqlite MLflow store in a temporary home), as it does
in a notebook.

Configurations: llmops-magics with fsync in the background (the default), with fsync on
the cell's path (``LLMOPS_LINEAGE_FSYNC=cell``), and ipyflow (a dataflow-tracking
kernel extension) when it can be imported: install it aside with
``pip install --target /tmp/ipyflow-site ipyflow-core`` and pass ``--ipyflow-site``.

    .venv/bin/python bench/lineage_overhead.py [--cells 2000] [--ipyflow-site /tmp/ipyflow-site]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _times(ip, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        ip.run_cell(f"x = {i}", store_history=True)
        out.append(time.perf_counter() - t)
    return out


def inner(extension: str, cells: int, ipyflow_site: str | None) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    if ipyflow_site:
        sys.path.append(ipyflow_site)  # after the venv: only what the venv lacks comes from there
    ip = InteractiveShell.instance()
    ip.history_manager.enabled = False
    _times(ip, 200)  # warm-up: first-run compilation, caches
    base = _times(ip, cells)
    ip.run_line_magic("load_ext", extension)
    _times(ip, 200)
    with_ext = _times(ip, cells)
    if extension == "llmops_magics":
        from llmops_magics.core.lineage.record import current_recorder

        rec = current_recorder()
        assert rec is not None and len(rec.records) >= cells, "lineage did not record the cells"
    print(json.dumps({"base": base, "with": with_ext}))


def _p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def _run(name: str, extension: str, cells: int, env_extra: dict, ipyflow_site: str | None = None) -> dict | None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LLMOPS_HOME": home, **env_extra}
        env.pop("LLMOPS_TRACKING_URI", None)
        cmd = [sys.executable, __file__, "--inner", extension, "--cells", str(cells)]
        if ipyflow_site:
            cmd += ["--ipyflow-site", ipyflow_site]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        print(f"{name}: failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        return None
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    base, with_ext = data["base"], data["with"]
    return {
        "name": name,
        "base_median_ms": statistics.median(base) * 1e3,
        "with_median_ms": statistics.median(with_ext) * 1e3,
        "added_median_ms": (statistics.median(with_ext) - statistics.median(base)) * 1e3,
        "added_p99_ms": (_p99(with_ext) - _p99(base)) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument(
        "--ipyflow-site", default=None, help="folder where ipyflow-core was pip-installed with --target"
    )
    parser.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner, args.cells, args.ipyflow_site)
        return
    configs = [
        (
            "llmops-magics lineage (fsync in background, default)",
            "llmops_magics",
            {"LLMOPS_LINEAGE_FSYNC": "background"},
            None,
        ),
        ("llmops-magics lineage (fsync on the cell's path)", "llmops_magics", {"LLMOPS_LINEAGE_FSYNC": "cell"}, None),
    ]
    if args.ipyflow_site:
        configs.append(("ipyflow (ipyflow-core, dataflow tracking)", "ipyflow", {}, args.ipyflow_site))
    else:
        print(
            "ipyflow: skipped (pip install --target /tmp/ipyflow-site ipyflow-core, "
            "then --ipyflow-site /tmp/ipyflow-site)"
        )
    rows = [r for name, ext, env, site in configs if (r := _run(name, ext, args.cells, env, site))]
    print(f"\n{args.cells} trivial cells (`x = i`) per side, milliseconds per cell")
    print(f"{'configuration':<55} {'bare median':>11} {'with median':>11} {'added median':>12} {'added p99':>10}")
    for r in rows:
        print(
            f"{r['name']:<55} {r['base_median_ms']:>11.3f} {r['with_median_ms']:>11.3f} "
            f"{r['added_median_ms']:>12.3f} {r['added_p99_ms']:>10.3f}"
        )
    ours = next((r for r in rows if r["name"].startswith("llmops-magics") and "default" in r["name"]), None)
    flow = next((r for r in rows if r["name"].startswith("ipyflow")), None)
    if ours:
        verdict = "meets" if ours["added_median_ms"] < 0.3 else "misses"
        print(f"\ntarget: median added under 0.3 ms per plain cell: {verdict} ({ours['added_median_ms']:.3f} ms)")
    if ours and flow and ours["added_median_ms"] > 0:
        print(
            f"ipyflow / llmops-magics added median per cell: {flow['added_median_ms'] / ours['added_median_ms']:.1f}x"
        )


if __name__ == "__main__":
    main()
