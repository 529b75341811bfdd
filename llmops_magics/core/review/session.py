"""Blind A/B review of a shadow comparison: the state machine behind the review widget.

Plain Python, so it runs (and is tested) without a browser:

* **Blind order.** Per case, which side shows on the left is a coin flip seeded by
  ``(review key, seed, case id)``: reproducible for a seed, independent of the order
  cases are visited, and different between runs so a reviewer cannot learn a layout.
  Each verdict records the layout it was given.
* **Votes** are ``left`` / ``right`` / ``tie`` / ``skip`` (+ a note) and are mapped
  back to ``primary`` / ``candidate`` / ``tie`` / ``skip`` with the recorded layout.
* **Tally.** Candidate win rate = candidate wins / (candidate wins + primary wins):
  ties and skips are left out of the rate (as in a sign test, and as the judge check
  of a shadow verdict does) and reported beside it. The 95% interval is the Wilson
  score interval, which stays inside [0, 1] and behaves at 0 or n wins and small n,
  where the normal (Wald) interval collapses to a point.
* **Persistence.** Each verdict is appended to ``<home>/reviews/<key>.jsonl`` first
  (flushed and fsynced: the local copy survives a crash or an MLflow outage), then the
  whole verdicts table is rewritten on the shadow run as the artifact
  ``review/verdicts.json`` (MLflow table format) with the tally as run metrics. MLflow
  3 assessments attach to traces, not runs, and a shadow run has no trace, so a table
  artifact it is. Rewriting the whole table each time heals any write that failed.
* **Resume.** A new session for the same key merges the spool and the MLflow table
  (the later verdict per case wins) and starts at the first unreviewed case.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ...config import Settings, settings
from ...errors import BadInput, TrackingError
from ..tracking import client, describe, is_not_found, log_batch, public_uri, read_artifact, refused

VOTES = ("left", "right", "tie", "skip")
SIDES = ("primary", "candidate")
Z95 = 1.959963984540054
VERDICTS_ARTIFACT = "review/verdicts.json"
CASES_ARTIFACT = "cases.json"
_COLUMNS = ("case_id", "vote", "winner", "left", "note", "reviewer", "at")
# Keyboard of the review view; the view forwards these keys and the session acts on them.
KEYS = {
    "1": ("vote", "left"),
    "2": ("vote", "right"),
    "3": ("vote", "tie"),
    "s": ("vote", "skip"),
    "ArrowLeft": ("move", -1),
    "ArrowRight": ("move", 1),
    "ArrowUp": ("move", -1),
    "ArrowDown": ("move", 1),
}


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% by default); (0, 1) when n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def blind_left(key: str, seed: int, case_id) -> str:
    """Which side (``primary`` / ``candidate``) shows on the left for one case."""
    rng = random.Random(f"{key}|{seed}|{case_id}")
    return "primary" if rng.random() < 0.5 else "candidate"


_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> tuple[list[list], list[list]]:
    """Word-level diff of two texts as ``[text, changed]`` segments per side.

    Whitespace is kept as its own tokens so joining a side's segments gives its text
    back exactly; the renderer puts each segment in a span with ``textContent``.
    """
    ta, tb = _TOKEN.findall(a or ""), _TOKEN.findall(b or "")
    left: list[list] = []
    right: list[list] = []

    def add(segs, text, changed):
        if not text:
            return
        if segs and segs[-1][1] == changed:
            segs[-1][0] += text
        else:
            segs.append([text, changed])

    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        same = op == "equal"
        add(left, "".join(ta[i1:i2]), not same)
        add(right, "".join(tb[j1:j2]), not same)
    return left, right


@dataclass(frozen=True)
class ReviewCase:
    """One case as the reviewer sees it: the blind layout and both outputs."""

    id: object
    input: str
    prompt: str
    primary_output: str
    candidate_output: str
    left: str  # "primary" or "candidate"

    @property
    def right(self) -> str:
        return "candidate" if self.left == "primary" else "primary"

    @property
    def left_text(self) -> str:
        return self.primary_output if self.left == "primary" else self.candidate_output

    @property
    def right_text(self) -> str:
        return self.candidate_output if self.left == "primary" else self.primary_output


@dataclass(frozen=True)
class ReviewVerdict:
    """One vote, with the layout it was cast on and what it means."""

    case_id: object
    vote: str  # left | right | tie | skip
    winner: str  # primary | candidate | tie | skip
    left: str  # the side that was on the left
    note: str = ""
    reviewer: str = ""
    at: str = ""  # ISO 8601 UTC, microseconds: sorts in time order

    def as_dict(self) -> dict:
        return asdict(self)


def winner_of(vote: str, left: str) -> str:
    """Map a blind vote back to ``primary`` / ``candidate`` / ``tie`` / ``skip``."""
    if vote not in VOTES:
        raise BadInput(f"unknown vote {vote!r}: choose one of {', '.join(VOTES)}")
    if left not in SIDES:
        raise BadInput(f"left side must be primary or candidate, not {left!r}")
    if vote in ("tie", "skip"):
        return vote
    right = "candidate" if left == "primary" else "primary"
    return left if vote == "left" else right


@dataclass(frozen=True)
class Tally:
    """Counts of verdicts and the candidate's win rate with its 95% Wilson interval."""

    candidate_wins: int
    primary_wins: int
    ties: int
    skips: int
    total: int

    @property
    def reviewed(self) -> int:
        return self.candidate_wins + self.primary_wins + self.ties + self.skips

    @property
    def decided(self) -> int:
        return self.candidate_wins + self.primary_wins

    @property
    def win_rate(self) -> float | None:
        """Candidate wins / decided votes (ties and skips left out); None before any."""
        return self.candidate_wins / self.decided if self.decided else None

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.candidate_wins, self.decided)

    @property
    def progress(self) -> float:
        return self.reviewed / self.total if self.total else 1.0

    def text(self) -> str:
        if self.win_rate is None:
            rate = "candidate win rate: no decided votes yet"
        else:
            lo, hi = self.ci
            rate = f"candidate win rate {self.win_rate:.0%} (95% Wilson CI {lo:.0%} to {hi:.0%})"
        return (
            f"{rate} · candidate {self.candidate_wins}, primary {self.primary_wins}, "
            f"ties {self.ties}, skips {self.skips} · {self.reviewed} of {self.total} reviewed"
        )

    def as_dict(self) -> dict:
        lo, hi = self.ci
        return {
            "candidate_wins": self.candidate_wins,
            "primary_wins": self.primary_wins,
            "ties": self.ties,
            "skips": self.skips,
            "reviewed": self.reviewed,
            "total": self.total,
            "decided": self.decided,
            "win_rate": self.win_rate,
            "ci_low": lo,
            "ci_high": hi,
            "text": self.text(),
        }


def tally(verdicts, total: int) -> Tally:
    """Count verdicts (one per case) into a :class:`Tally`."""
    winners = [v.winner for v in verdicts]
    return Tally(
        winners.count("candidate"), winners.count("primary"), winners.count("tie"), winners.count("skip"), total
    )


def review_key(rows: list[dict], run_id: str | None) -> str:
    """The run id, or for an unlogged comparison a digest of its cases and outputs."""
    if run_id:
        return run_id
    h = hashlib.sha256()
    # Sorted: the same cases in another order are the same review.
    for item in sorted(json.dumps([str(r["id"]), r["primary_output"], r["candidate_output"]]) for r in rows):
        h.update(item.encode())
    return "local-" + h.hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reviewer() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no user database in some containers
        return ""


class ReviewSession:
    """A blind A/B review over shadow rows, persisted as it goes.

    Parameters
    ----------
    rows : list of dict
        Shadow rows with ``id``, ``input``, ``prompt``, ``primary_output``,
        ``candidate_output``.
    run_id : str, optional
        The shadow run; verdicts are written to it and resumed from it.
    seed : int
        Seeds the blind layout (with the run id and case id).
    primary, candidate : str
        Labels shown when a side is revealed.
    reviewer : str, optional
        Recorded with each verdict; the OS user by default.
    sync : bool
        Write verdicts to MLflow (the local spool is always written).
    auto_advance : bool
        After a vote, go to the next unreviewed case.
    """

    def __init__(
        self,
        rows: list[dict],
        *,
        run_id: str | None = None,
        seed: int = 0,
        primary: str = "primary",
        candidate: str = "candidate",
        reviewer: str | None = None,
        sync: bool = True,
        auto_advance: bool = True,
        cfg: Settings | None = None,
    ):
        if not rows:
            raise BadInput("nothing to review: the shadow result has no cases")
        missing = [k for k in ("id", "primary_output", "candidate_output") if k not in rows[0]]
        if missing:
            raise BadInput(f"rows lack {', '.join(missing)}: give ShadowResult rows")
        self.cfg = cfg or settings()
        self.run_id = run_id
        self.key = review_key(rows, run_id)
        self.seed = seed
        self.labels = {"primary": primary, "candidate": candidate}
        self.reviewer = _reviewer() if reviewer is None else reviewer
        self.sync = sync and bool(run_id)
        self.auto_advance = auto_advance
        self.cases = [
            ReviewCase(
                r["id"],
                str(r.get("input", "")),
                str(r.get("prompt", r.get("input", ""))),
                str(r["primary_output"]),
                str(r["candidate_output"]),
                blind_left(self.key, seed, r["id"]),
            )
            for r in rows
        ]
        self._pos = {str(c.id): i for i, c in enumerate(self.cases)}
        self.verdicts: dict[str, ReviewVerdict] = {}
        self.last: ReviewVerdict | None = None
        self.sync_error: str | None = None
        self._load()
        self.index = self.first_unreviewed() if self.first_unreviewed() is not None else 0

    # ------------------------------------------------------------ persistence

    @property
    def spool_path(self) -> Path:
        return self.cfg.home / "reviews" / f"{self.key}.jsonl"

    def _load(self) -> None:
        found: list[ReviewVerdict] = []
        if self.spool_path.is_file():
            for line in self.spool_path.read_text().splitlines():
                try:
                    d = json.loads(line)
                except ValueError:  # a torn last line from a crash mid-write
                    continue
                if d.get("type") == "verdict":
                    found.append(ReviewVerdict(**{k: d[k] for k in _COLUMNS if k in d}))
        if self.sync:
            try:
                found += self._mlflow_verdicts()
            except TrackingError as e:
                self.sync_error = str(e)
        for v in sorted(found, key=lambda v: v.at):
            if str(v.case_id) in self._pos:
                self.verdicts[str(v.case_id)] = v

    def _mlflow_verdicts(self) -> list[ReviewVerdict]:
        table = _download_json(self.run_id, VERDICTS_ARTIFACT, self.cfg, missing_ok=True)
        if not table:
            return []
        cols = table["columns"]
        return [ReviewVerdict(**{c: v for c, v in zip(cols, row) if c in _COLUMNS}) for row in table["data"]]

    def _append_spool(self, v: ReviewVerdict) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"type": "verdict", "key": self.key, "run_id": self.run_id, **v.as_dict()}, default=str)
        with open(self.spool_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _push_mlflow(self) -> None:
        t = self.tally()
        rows = [[_json_safe(getattr(v, c)) for c in _COLUMNS] for v in self._ordered_verdicts()]
        try:
            c = client(self.cfg)  # bounded: MLflow's own retries would freeze the view for minutes
            c.log_dict(self.run_id, {"columns": list(_COLUMNS), "data": rows}, VERDICTS_ARTIFACT)
            now = int(datetime.now(timezone.utc).timestamp() * 1000)
            metrics = {
                "review.candidate_wins": t.candidate_wins,
                "review.primary_wins": t.primary_wins,
                "review.ties": t.ties,
                "review.skips": t.skips,
                "review.reviewed": t.reviewed,
            }
            if t.win_rate is not None:
                metrics.update(
                    {"review.candidate_win_rate": t.win_rate, "review.ci_low": t.ci[0], "review.ci_high": t.ci[1]}
                )
            log_batch(
                c,
                self.run_id,
                metrics=[(k, v, now, t.reviewed) for k, v in metrics.items()],
                tags={"llmops.review": f"{t.reviewed}/{t.total} reviewed"},
            )
            self.sync_error = None
        except Exception as e:
            # The verdict is already in the spool; the next vote rewrites the whole table.
            self.sync_error = (
                f"saved locally ({self.spool_path}); MLflow at {public_uri(self.cfg.resolved_tracking_uri)} "
                f"refused: {describe(e)}"
            )

    def _ordered_verdicts(self) -> list[ReviewVerdict]:
        return [self.verdicts[str(c.id)] for c in self.cases if str(c.id) in self.verdicts]

    # ------------------------------------------------------------ navigation and votes

    @property
    def current(self) -> ReviewCase:
        return self.cases[self.index]

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def done(self) -> bool:
        return len(self.verdicts) == self.total

    def verdict_for(self, case_id) -> ReviewVerdict | None:
        return self.verdicts.get(str(case_id))

    def first_unreviewed(self, start: int = 0) -> int | None:
        """Index of the first case without a verdict at or after ``start`` (wrapping)."""
        n = self.total
        for k in range(n):
            i = (start + k) % n
            if str(self.cases[i].id) not in self.verdicts:
                return i
        return None

    def move(self, step: int) -> ReviewCase:
        """Go ``step`` cases forward (negative: back), staying within the cases."""
        self.index = min(self.total - 1, max(0, self.index + int(step)))
        return self.current

    def go(self, index: int) -> ReviewCase:
        if not 0 <= index < self.total:
            raise BadInput(f"case index {index} is out of range: 0 to {self.total - 1}")
        self.index = index
        return self.current

    def vote(self, vote: str, note: str = "") -> ReviewVerdict:
        """Record a vote on the current case, persist it, and (by default) move on.

        Returns the verdict, whose ``winner`` and ``left`` reveal the blind layout.
        """
        case = self.current
        v = ReviewVerdict(case.id, vote, winner_of(vote, case.left), case.left, str(note or ""), self.reviewer, _now())
        self._append_spool(v)
        self.verdicts[str(case.id)] = v
        self.last = v
        if self.sync:
            self._push_mlflow()
        if self.auto_advance:
            nxt = self.first_unreviewed(self.index + 1)
            if nxt is not None:
                self.index = nxt
        return v

    def press(self, key: str, note: str = ""):
        """Act on one key of :data:`KEYS` (``n``, focusing the note, stays in the view)."""
        if key not in KEYS:
            raise BadInput(f"key {key!r} does nothing here: use 1, 2, 3, s or the arrow keys")
        action, arg = KEYS[key]
        return self.vote(arg, note) if action == "vote" else self.move(arg)

    def tally(self) -> Tally:
        return tally(self.verdicts.values(), self.total)

    # ------------------------------------------------------------ views

    def side_label(self, side: str) -> str:
        return f"{side} ({self.labels[side]})"

    def state(self) -> dict:
        """Everything a view shows, as JSON-ready data (the widget's one state trait)."""
        case = self.current
        v = self.verdict_for(case.id)
        left, right = word_diff(case.left_text, case.right_text)
        last = None
        if self.last is not None:
            lv = self.last
            right_side = "candidate" if lv.left == "primary" else "primary"
            last = {
                "case_id": str(lv.case_id),
                "vote": lv.vote,
                "winner": lv.winner,
                "text": (
                    f"last vote, case id {lv.case_id}: {_vote_words(lv)}; left was "
                    f"{self.side_label(lv.left)}, right was {self.side_label(right_side)}"
                ),
            }
        return {
            "key": self.key,
            "run_id": self.run_id or "",
            "index": self.index,
            "total": self.total,
            "position": self.index + 1,
            "done": self.done,
            "case": {
                "id": str(case.id),
                "input": case.input,
                "prompt": case.prompt,
                "left_segments": left,
                "right_segments": right,
                "revealed": v is not None,
                "left_label": self.side_label(case.left) if v else "Left",
                "right_label": self.side_label(case.right) if v else "Right",
                "vote": v.vote if v else "",
                "winner": v.winner if v else "",
                "note": v.note if v else "",
            },
            "last": last,
            "tally": self.tally().as_dict(),
            "sync_error": self.sync_error or "",
            "keys": sorted(KEYS),
            "spool": str(self.spool_path),
        }

    def __repr__(self) -> str:
        return f"<ReviewSession {self.key}: {self.tally().text()}>"


def _vote_words(v: ReviewVerdict) -> str:
    return {"primary": "primary preferred", "candidate": "candidate preferred", "tie": "tie", "skip": "skipped"}[
        v.winner
    ]


def _json_safe(value):
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _download_json(run_id: str, path: str, cfg: Settings, *, missing_ok: bool = False):
    try:
        text = read_artifact(run_id, path, cfg)
    except TrackingError:
        raise
    except Exception as e:
        if is_not_found(e):
            raise BadInput(
                f"no MLflow run {run_id!r} at {public_uri(cfg.resolved_tracking_uri)}: check the run id"
            ) from None
        raise refused(e, cfg) from e
    if text is None:
        if missing_ok:
            return None
        raise BadInput(f"run {run_id} has no {path} artifact: is it a shadow run?")
    return json.loads(text)


def rows_from_run(run_id: str, cfg: Settings | None = None) -> tuple[list[dict], dict]:
    """A shadow run's case rows (from its ``cases.json`` table) and its tags."""
    cfg = cfg or settings()
    table = _download_json(run_id, CASES_ARTIFACT, cfg)
    cols = table["columns"]
    rows = [dict(zip(cols, r)) for r in table["data"]]
    tags = client(cfg).get_run(run_id).data.tags
    return rows, tags


def open_review(
    source, *, seed: int = 0, reviewer: str | None = None, sync: bool = True, cfg: Settings | None = None
) -> ReviewSession:
    """Open (or resume) the blind review of a shadow comparison.

    Parameters
    ----------
    source : ShadowResult, str or list of dict
        A shadow result, the MLflow run id of a shadow comparison (its cases are read
        back from the run, so a later session can resume), or shadow rows.
    seed : int
        Seeds the blind layout.
    reviewer : str, optional
        Recorded with each verdict.
    sync : bool
        Write verdicts to MLflow as well as the local spool.

    Returns
    -------
    ReviewSession
        Positioned at the first unreviewed case, earlier verdicts loaded.
    """
    cfg = cfg or settings()
    if isinstance(source, str):
        rows, tags = rows_from_run(source, cfg)
        return ReviewSession(
            rows,
            run_id=source,
            seed=seed,
            reviewer=reviewer,
            sync=sync,
            cfg=cfg,
            primary=tags.get("llmops.primary", "primary"),
            candidate=tags.get("llmops.candidate", "candidate"),
        )
    if isinstance(source, list):
        return ReviewSession(source, seed=seed, reviewer=reviewer, sync=False, cfg=cfg)
    rows = getattr(source, "rows", None)
    if rows is None:
        raise BadInput(f"cannot review a {type(source).__name__}: give a ShadowResult, a shadow run id or rows")
    return ReviewSession(
        rows,
        run_id=getattr(source, "run_id", None),
        seed=seed,
        reviewer=reviewer,
        sync=sync,
        primary=getattr(source, "primary", "primary"),
        candidate=getattr(source, "candidate", "candidate"),
        cfg=cfg,
    )
