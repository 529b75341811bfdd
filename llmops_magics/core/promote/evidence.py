"""A shadow run as evidence: what it compared (versions and digests) and what it found.

Read from the run's tags and params as ``%%shadow`` records them: the tag ``llmops.kind``
is ``shadow``, the quality verdict is the tag ``llmops.verdict`` (never ``llmops.change``,
which says how much answers moved, not whether they got worse), and each side's version
and registry digest are params (``{role}_model_version`` / ``{role}_model_digest`` for
models, ``{role}_prompt`` / ``{role}_prompt_digest`` for prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Settings
from ...errors import BadInput
from ..tracking import client, is_not_found, mlflow_errors
from ..tracking.errors import error_code

SHADOW = "shadow"
# Newest shadow runs of one candidate read per promotion: enough for any notebook's history.
MAX_RUNS = 200


def side_keys(kind: str, role: str) -> tuple[str, str]:
    """The params naming one side's version (``chat/2``) and its registry digest."""
    if kind == "model":
        return f"{role}_model_version", f"{role}_model_digest"
    return f"{role}_prompt", f"{role}_prompt_digest"


@dataclass(frozen=True)
class ShadowEvidence:
    """What one recorded shadow run compared and concluded."""

    run_id: str
    kind: str  # the llmops.kind tag
    verdict: str  # equivalent | better | worse | inconclusive ('' when missing)
    n_cases: int
    params: dict
    started_ms: int = 0

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    def side(self, kind: str, role: str) -> tuple[str, str]:
        """(version label ``chat/2``, digest) of one side for a registry kind; '' when not recorded."""
        version_key, digest_key = side_keys(kind, role)
        return str(self.params.get(version_key) or ""), str(self.params.get(digest_key) or "")


def from_run(run) -> ShadowEvidence:
    """The evidence one MLflow run entity holds."""
    tags, params = run.data.tags, run.data.params
    try:
        n_cases = int(params.get("n_cases") or 0)
    except ValueError:
        n_cases = 0
    return ShadowEvidence(
        run_id=run.info.run_id,
        kind=tags.get("llmops.kind", ""),
        verdict=tags.get("llmops.verdict", ""),
        n_cases=n_cases,
        params=dict(params),
        started_ms=int(run.info.start_time or 0),
    )


def read_run(run_id: str, cfg: Settings) -> ShadowEvidence:
    """One run by id as evidence.

    Raises
    ------
    BadInput
        When there is no such run, or it is not a shadow run.
    """
    run_id = str(run_id or "").strip()
    missing = BadInput(f"no MLflow run {run_id!r}: check the run id (the shadow result and its MLflow page show it)")
    if not run_id:
        raise missing
    try:
        run = client(cfg).get_run(run_id)
    except Exception as e:
        # A malformed id is INVALID_PARAMETER_VALUE on a server, not found on sqlite.
        if is_not_found(e) or error_code(e) == "INVALID_PARAMETER_VALUE":
            raise missing from None
        with mlflow_errors(f"read run {run_id}", cfg):
            raise
    if getattr(run.info, "lifecycle_stage", "active") == "deleted":
        raise BadInput(f"run {run_id[:8]} was deleted: a deleted run is no evidence (restore it in the MLflow UI)")
    found = from_run(run)
    if found.kind != SHADOW:
        raise BadInput(f"run {found.short_id} is not a shadow run (llmops.kind is {found.kind or 'unset'})")
    return found


def shadow_runs(kind: str, candidate_label: str, cfg: Settings) -> list[ShadowEvidence]:
    """The shadow runs (every experiment of the store, newest first) whose candidate was ``candidate_label``."""
    version_key, _ = side_keys(kind, "candidate")
    c = client(cfg)
    with mlflow_errors("search the shadow runs", cfg):
        experiments = [e.experiment_id for e in c.search_experiments(max_results=1000)]
        if not experiments:
            return []
        runs = c.search_runs(
            experiments,
            filter_string=f"tags.`llmops.kind` = '{SHADOW}' and params.`{version_key}` = '{candidate_label}'",
            order_by=["attributes.start_time DESC"],
            max_results=MAX_RUNS,
        )
    return [from_run(r) for r in runs]
