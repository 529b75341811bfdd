"""The review as recorded on the shadow run: verdict tables, review metrics, the cases.

* ``review/verdicts/<reviewer>.json``: one reviewer's verdicts (MLflow table format),
  rewritten whole at each of their votes and written by nobody else, so two reviewers
  never overwrite each other and a failed write heals at the next vote.
* ``review/verdicts.json``: every reviewer's verdicts as the voting session knew them
  (what earlier versions wrote, and the one table to open in the UI).
* Metrics ``review.*`` (step = votes so far): the pooled tally, the number of reviewers,
  alpha and its interval, and ``review.reviewer.<id>.*`` per reviewer.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ...config import Settings
from ...errors import BadInput, TrackingError
from ..tracking import client, is_not_found, log_batch, public_uri, read_artifact, refused
from .tally import Summary, Tally
from .verdicts import ReviewVerdict, from_table, reviewer_slug, to_table

VERDICTS_ARTIFACT = "review/verdicts.json"
REVIEWERS_FOLDER = "review/verdicts"
CASES_ARTIFACT = "cases.json"


def download_json(run_id: str, path: str, cfg: Settings, *, missing_ok: bool = False):
    """One JSON artifact of a run; None (``missing_ok``) or a one-line error when absent."""
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


def rows_from_run(run_id: str, cfg: Settings) -> tuple[list[dict], dict]:
    """A shadow run's case rows (from its ``cases.json`` table) and its tags."""
    table = download_json(run_id, CASES_ARTIFACT, cfg)
    cols = table["columns"]
    rows = [dict(zip(cols, r)) for r in table["data"]]
    tags = client(cfg).get_run(run_id).data.tags
    return rows, tags


def read_verdicts(run_id: str, cfg: Settings) -> list[ReviewVerdict]:
    """Every verdict recorded on the run: the shared table and each reviewer's own."""
    found = from_table(download_json(run_id, VERDICTS_ARTIFACT, cfg, missing_ok=True))
    try:
        files = [a.path for a in client(cfg).list_artifacts(run_id, REVIEWERS_FOLDER) if a.path.endswith(".json")]
    except TrackingError:
        raise
    except Exception as e:
        raise refused(e, cfg, "list the reviewers' verdicts") from e
    for path in files:
        found += from_table(download_json(run_id, path, cfg, missing_ok=True))
    return found


def _tally_metrics(prefix: str, t: Tally) -> dict:
    out = {
        f"{prefix}candidate_wins": t.candidate_wins,
        f"{prefix}primary_wins": t.primary_wins,
        f"{prefix}ties": t.ties,
        f"{prefix}skips": t.skips,
        f"{prefix}reviewed": t.reviewed,
    }
    if t.win_rate is not None:
        out.update({f"{prefix}candidate_win_rate": t.win_rate, f"{prefix}ci_low": t.ci[0], f"{prefix}ci_high": t.ci[1]})
    return out


def write_verdicts(
    run_id: str, reviewer: str, own: list[ReviewVerdict], everyone: list[ReviewVerdict], summary: Summary, cfg: Settings
) -> None:
    """Rewrite the reviewer's table and the shared one, and log the summary as metrics (3 calls).

    Raises whatever MLflow raised; the caller keeps the vote in its spool.
    """
    c = client(cfg)
    c.log_dict(run_id, to_table(own), f"{REVIEWERS_FOLDER}/{reviewer_slug(reviewer)}.json")
    c.log_dict(run_id, to_table(everyone), VERDICTS_ARTIFACT)
    pooled = summary.pooled
    metrics = {**_tally_metrics("review.", pooled), "review.reviewers": len(summary.reviewers)}
    if len(summary.reviewers) > 1:
        for name, t in summary.reviewers.items():
            metrics.update(_tally_metrics(f"review.reviewer.{reviewer_slug(name)}.", t))
    agreed = summary.agreement
    if agreed is not None and agreed.alpha is not None:
        metrics["review.alpha"] = agreed.alpha
        if agreed.ci is not None:
            metrics.update({"review.alpha_ci_low": agreed.ci[0], "review.alpha_ci_high": agreed.ci[1]})
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    log_batch(
        c,
        run_id,
        metrics=[(k, v, now, pooled.reviewed) for k, v in metrics.items()],
        tags={
            "llmops.review": f"{pooled.reviewed} votes by {len(summary.reviewers)} reviewer(s) on {summary.total} cases"
        },
    )
