"""``WatchResult``: what a watch found, for people (table, plot, flags) and for code (``to_pandas``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import viewers
from ..display import esc, html_table, run_link, text_table, warnings_block
from .canary import lower_higher
from .changes import Change

INPUT_DRIFT = "input drift"
# Measures per bucket that describe the traffic, not its quality (never flagged).
VOLUME, PROMPT_TOKENS, COMPLETION_TOKENS, LATENCY, REQUEST_CHARS = (
    "requests",
    "prompt tokens",
    "completion tokens",
    "latency s",
    "request chars",
)


@dataclass(frozen=True)
class Flag:
    """A bucket found worse than the baseline (or far from it, for ``input drift``).

    ``changes``: what moved from the start of the bucket before to the end of this one,
    newest first; named on the first flagged bucket of each scorer.
    """

    bucket: str
    scorer: str
    estimate: float
    baseline: float
    diff: float
    diff_ci: tuple[float, float] | None
    adjusted_p: float | None
    changes: tuple[Change, ...] = ()
    examples: tuple[str, ...] = ()  # input drift: the most typical far-away requests
    level: float = 0.95  # coverage of diff_ci: 1 - the watch's alpha

    def line(self) -> str:
        """``is_polite 2026-12-12: 0.52 vs 0.90 (-0.38, 95% CI -0.47..-0.29, adj. p 1e-09)``."""
        pct = f"{100 * self.level:.3g}%"
        ci = f", {pct} CI {self.diff_ci[0]:+.2f}..{self.diff_ci[1]:+.2f}" if self.diff_ci else ""
        p = f", adj. p {self.adjusted_p:.2g}" if self.adjusted_p is not None else ""
        what = "far share" if self.scorer == INPUT_DRIFT else "vs baseline"
        text = f"{self.scorer} {self.bucket}: {self.estimate:.3g} {what} {self.baseline:.3g} ({self.diff:+.3g}{ci}{p})"
        if self.changes:
            text += " · changed just before: " + "; ".join(c.text for c in self.changes)
        return text

    def example_lines(self, width: int = 120) -> list[str]:
        """The drift examples, one quoted line each (cut to ``width``)."""
        return [f'e.g. "{_cut(e, width)}"' for e in self.examples if e]


def _cut(text: str, width: int) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= width else one[: width - 1] + "…"


@dataclass
class WatchResult:
    """One watch of an app's traces over time.

    Attributes
    ----------
    name, experiment : str
    buckets : list of Bucket
        The window's buckets, oldest first (``decay.Bucket``: ``label``, ``start_ms``, ``end_ms``).
    baseline : str
        What the baseline was: ``14d before the window`` or ``first 5 buckets (2026-12-01..)``.
    tested : list of int
        Indices of the buckets compared with the baseline.
    rows : list of dict
        Long form, one per (bucket, measure): ``bucket``, ``start_ms``, ``measure``, ``kind``,
        ``n``, ``estimate``, ``ci_low``, ``ci_high``, ``baseline``, ``diff``, ``diff_low``,
        ``diff_high``, ``adjusted_p``, ``flagged``, ``role`` (baseline | tested).
    scorers : list of str
        The checks (scorer names, ``NAME/feedback`` for a scorer giving several).
    baselines : dict
        Check -> (kind, estimate, 95% CI) over the baseline's traces.
    flags : list of Flag
        Flagged buckets (scorers after Holm's correction; ``input drift``).
    changes : list of Change
        Alias moves, notebook pins (from lineage sessions shipped to MLflow), versions and
        digests that moved in the window, oldest first.
    canary : list of GroupCheck
        With ``split``: one per check, the canary against the control (``%%shadow``'s words).
    run_id : str or None
        The MLflow run of this watch.
    judged : bool
        Whether anything could be compared (a bucket with the baseline, a drift share, a
        canary split); False says why in ``cannot``, and the CLI exits 2.
    """

    name: str
    experiment: str
    buckets: list
    baseline: str
    tested: list[int]
    rows: list[dict]
    scorers: list[str]
    baselines: dict
    flags: list[Flag]
    changes: list[Change]
    canary: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)  # split value -> traces
    params: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)  # traces, scored, reused, called, spans read, seconds
    run_id: str | None = None
    warnings: list = field(default_factory=list)
    writer: object = None  # scoring.AssessmentWriter of the new assessments, None when none
    backlog: object = None  # the writer of scores an earlier watch spooled and never wrote, None when none
    judged: bool = True
    cannot: str = ""  # why nothing could be judged, when not judged

    @property
    def flagged(self) -> bool:
        """Whether any bucket was flagged (scorers or input drift)."""
        return bool(self.flags)

    @property
    def named_canary(self) -> bool:
        """Whether ``canary`` named the canary group (else every group against the largest)."""
        return bool(self.params.get("canary"))

    @property
    def worse_groups(self) -> list:
        """``(check, lower group, higher group)`` of each split check that counts as worse: the
        named canary ``worse``; without a named canary, any difference either way."""
        out = []
        for g in self.canary:
            pair = lower_higher(g)
            if pair is None or (self.named_canary and g.verdict != "worse"):
                continue
            out.append((g, *pair))
        return out

    @property
    def dropped(self) -> bool:
        """A scorer's bucket flagged worse, or a worse split group: what a scheduled job fails
        on (input drift alone is news, not a drop)."""
        return any(f.scorer != INPUT_DRIFT for f in self.flags) or bool(self.worse_groups)

    @property
    def writer_status(self) -> str:
        """How far the new assessments got to MLflow (they are written in the background)."""
        line = "no new scores to write" if self.writer is None else self.writer.status()
        if self.backlog is not None:  # what an earlier watch left unwritten, written alongside
            line += f" · earlier watch's scores: {self.backlog.status()}"
        return line

    def wait_for_writes(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds in all) until the new scores, and those an
        earlier watch left unwritten, are in MLflow; True when every one was written."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = True
        for writer in (self.writer, self.backlog):
            if writer is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                done = writer.wait(timeout=left) and done
        return done

    def measure(self, name: str) -> list[dict]:
        """The rows of one measure (a scorer, ``requests``, ``input drift``...), oldest first."""
        return [r for r in self.rows if r["measure"] == name]

    def to_pandas(self):
        """One row per (bucket, measure), every figure a column."""
        import pandas as pd  # deferred: pandas takes a second to import, and only this needs it

        return pd.DataFrame(self.rows)

    def plot(self, **options):
        """Plotly: each scorer per bucket with its 95% band and the baseline, flagged buckets
        marked, volume, input drift, and a vertical line per change (hover for what moved)."""
        return viewers.show("watch_plot", self, **options)

    # ------------------------------------------------------------- display

    def line(self) -> str:
        """One line, worst news first: ``WORSE`` (a worse split group), ``FLAGGED`` (a scorer's
        drop), ``DRIFT`` (input drift only), ``CANNOT JUDGE`` (nothing compared), else ``OK``."""
        n = self.counts.get("traces", 0)
        head = f"watch {self.experiment}: {n:,} traces in {len(self.buckets)} buckets"
        drops = [f for f in self.flags if f.scorer != INPUT_DRIFT]
        more = len(self.flags) - 1
        worse = self.worse_groups
        if worse:
            g, low, high = worse[0]
            who = f"canary {low}" if self.named_canary else low
            others = len(worse) - 1 + len(self.flags)
            extra = f" (+{others} more)" if others else ""
            return f"WORSE · {head}: {who} worse than {high} on {g.name}: {g.reason}{extra}"
        if drops:
            return f"FLAGGED · {head}: {drops[0].line()}" + (f" (+{more} more flags)" if more else "")
        if self.flags:
            return f"DRIFT · {head}: {self.flags[0].line()}" + (f" (+{more} more flags)" if more else "")
        if not self.judged:
            return f"CANNOT JUDGE · {head}: {self.cannot}"
        return f"OK · {head}, nothing flagged"

    def _colour(self) -> str:
        if self.dropped:
            return "#cf222e"
        if self.flags or not self.judged:
            return "#9a6700"
        return "#1a7f37"

    def _wide(self) -> tuple[list[str], list[list]]:
        measures = [*self.scorers, INPUT_DRIFT, VOLUME, LATENCY]
        present = [m for m in measures if self.measure(m)]
        headers = ["bucket", "role", *present]
        by_bucket: dict[str, dict] = {}
        for r in self.rows:
            by_bucket.setdefault(r["bucket"], {})[r["measure"]] = r
        table = []
        for b in self.buckets:
            cells = by_bucket.get(b.label, {})
            role = next((r["role"] for r in cells.values()), "")
            table.append([b.label, role, *(_cell(cells.get(m)) for m in present)])
        return headers, table

    def table(self):
        """Buckets x measures (estimate, flagged with !), shown as a table."""
        headers, rows = self._wide()
        return _Table(f"{self.name}: per {self.params.get('by', 'bucket')}", headers, rows)

    def _canary_rows(self) -> list[list]:
        return [
            [g.name, f"{g.canary} vs {g.control}", g.verdict, f"{g.n_canary}/{g.n_control}", g.reason]
            for g in self.canary
        ]

    def _repr_mimebundle_(self, include=None, exclude=None):
        headers, rows = self._wide()
        flag_lines = [f.line() for f in self.flags]
        notes = [f"baseline: {self.baseline}", self.writer_status]
        text = [self.line(), *notes, ""]
        for f in self.flags:
            text.append(f"  ! {f.line()}")
            text += [f"      {e}" for e in f.example_lines()]
        text += ["", text_table(headers, rows)]
        canary_headers = ["check", "canary", "verdict", "n", "reason"]
        if self.canary:
            text += ["", "canary:", text_table(canary_headers, self._canary_rows())]
        if self.changes:
            text += ["", "changes:", *(f"  {c.when}  {c.text}" for c in self.changes)]
        link_text, link_html = run_link(self.run_id)
        warn_text, warn_html = warnings_block(self.warnings)
        colour = self._colour()
        flag_items = "".join(
            f"<li>{esc(f.line())}"
            + "".join(f"<div style='opacity:.8'>{esc(e)}</div>" for e in f.example_lines())
            + "</li>"
            for f in self.flags
        )
        html = (
            "<div class='llmops-watch'>"
            f"<div><b style='color:{colour}'>{esc(self.line())}</b></div>"
            + "".join(f"<div style='opacity:.7;font-size:85%'>{esc(n)}</div>" for n in notes)
            + (f"<ul>{flag_items}</ul>" if flag_lines else "")
            + html_table(headers, rows, cls="llmops-watch-table")
            + (
                "<div style='margin-top:.5em'><b>canary</b></div>"
                + html_table(canary_headers, self._canary_rows(), cls="llmops-watch-canary")
                if self.canary
                else ""
            )
            + (
                "<div style='margin-top:.5em'><b>changes</b></div>"
                + html_table(["when (UTC)", "what"], [[c.when, c.text] for c in self.changes])
                if self.changes
                else ""
            )
            + link_html
            + warn_html
            + "</div>"
        )
        text.append(link_text + warn_text)
        return {"text/plain": "\n".join(text).rstrip(), "text/html": html}

    def __str__(self) -> str:
        return self.line()


def _cell(row: dict | None) -> str:
    if row is None or row.get("estimate") is None:
        return ""
    value = row["estimate"]
    shown = f"{value:,.0f}" if row["measure"] == VOLUME else f"{value:.3g}"
    return shown + (" !" if row.get("flagged") else "")


@dataclass(frozen=True)
class _Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence]

    def _repr_mimebundle_(self, include=None, exclude=None):
        headers, rows = list(self.headers), [list(r) for r in self.rows]
        return {
            "text/plain": f"{self.title}\n" + text_table(headers, rows),
            "text/html": f"<div><b>{esc(self.title)}</b>{html_table(headers, rows)}</div>",
        }
