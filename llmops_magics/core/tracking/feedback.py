"""Feedback on traces: the door to MLflow's assessments (what ``mlflow.log_feedback`` writes).

``mlflow.log_feedback`` and ``mlflow.override_feedback`` build a ``Feedback`` and hand it to
``TracingClient.log_assessment`` through the *global* tracking URI, and cannot name the
assessment id. This module makes that same call on the configured store, bounded by the
command's budget (:func:`~.budget.call`), with errors classified by MLflow's error code.

* **Exactly once.** The caller names the assessment id (:func:`assessment_id`, a digest of
  what the feedback is about). The store's primary key then refuses a second copy of the
  same feedback, and :func:`feedback_exists` tells whether a write whose answer was lost
  (a timeout, a server gone mid-call) landed, so a retry never logs it twice.
* **Overrides.** ``overrides=<earlier id>`` makes MLflow mark the earlier assessment
  invalid: its own history of a human who changed their mind.
"""

from __future__ import annotations

import hashlib
import threading

from ...config import Settings, settings
from ...errors import TrackingError
from .budget import call, call_alone
from .connection import client
from .errors import is_not_found, refused
from .redact import public_uri

HUMAN = "HUMAN"
_lock = threading.Lock()
_tracing_clients: dict[str, object] = {}


class FeedbackTargetMissing(TrackingError):
    """The trace, or the assessment a feedback overrides, is not in the store."""


def assessment_id(*parts: object) -> str:
    """A stable assessment id from what a feedback is about (MLflow's ``a-<32 hex>`` shape)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return "a-" + digest[:32]


def _tracing(cfg: Settings):
    uri = cfg.resolved_tracking_uri
    with _lock:
        if uri not in _tracing_clients:
            client(cfg)  # creates the embedded sqlite store whole before another client opens it
            # heavy: mlflow's tracing client loads on first use, never at package import
            from mlflow.tracing.client import TracingClient

            _tracing_clients[uri] = TracingClient(tracking_uri=uri)
        return _tracing_clients[uri]


def ready(cfg: Settings | None = None) -> None:
    """Build the tracing client and import MLflow's assessment entities in the calling thread.

    Call before a background thread logs feedback: MLflow imported from a second thread
    while the first imports it can fail (``partially initialized module``).
    """
    _tracing(cfg or settings())
    # heavy: the MLflow entities load on first use
    from mlflow.entities import AssessmentSource, Feedback  # noqa: F401


def log_feedback(
    trace_id: str,
    *,
    name: str,
    value,
    source_id: str,
    source_type: str = HUMAN,
    rationale: str | None = None,
    metadata: dict | None = None,
    assessment_id: str | None = None,
    overrides: str | None = None,
    cfg: Settings | None = None,
    own_budget: bool = False,
) -> str:
    """Log one feedback on a trace (``mlflow.log_feedback`` on the configured store).

    Parameters
    ----------
    trace_id : str
        The trace the feedback is about.
    name, value : str, and a JSON scalar, list or dict
        The feedback's name and value.
    source_id, source_type : str
        Who gave it (``HUMAN`` by default, with the reviewer's id).
    rationale : str, optional
        Why (a reviewer's note).
    metadata : dict, optional
        Extra facts; values are stored as strings.
    assessment_id : str, optional
        The id to give it (see :func:`assessment_id`); MLflow makes one up otherwise.
    overrides : str, optional
        The id of an earlier feedback this one replaces (MLflow marks that one invalid).
    own_budget : bool
        Bound this call by ``mlflow_timeout_s`` on its own (:func:`~.budget.call_alone`)
        instead of sharing the command's budget: a writer of thousands of feedbacks.
        A command that has given MLflow up still skips it at once.

    Returns
    -------
    str
        The assessment id.

    Raises
    ------
    FeedbackTargetMissing
        The trace (or the overridden feedback) is not in the store.
    MlflowUnavailable
        MLflow did not answer within the command's budget.
    TrackingError
        MLflow refused the call (a duplicate id included: check :func:`feedback_exists`).
    """
    cfg = cfg or settings()
    # heavy: the MLflow entities load on first use
    from mlflow.entities import AssessmentSource, Feedback

    feedback = Feedback(
        name=name,
        value=value,
        source=AssessmentSource(source_type=source_type, source_id=source_id),
        rationale=rationale or None,
        metadata={str(k): str(v) for k, v in (metadata or {}).items()} or None,
        overrides=overrides,
    )
    if assessment_id:
        feedback.assessment_id = assessment_id
    tracing = _tracing(cfg)  # built in the calling thread: no mlflow import races a background one
    try:
        bounded = call_alone if own_budget else call
        created = bounded(f"log feedback on {trace_id}", lambda: tracing.log_assessment(trace_id, feedback), cfg)
    except TrackingError:
        raise
    except Exception as e:
        if is_not_found(e):
            what = f"trace {trace_id}" + (f" or its feedback {overrides}" if overrides else "")
            raise FeedbackTargetMissing(f"{what} is not in MLflow at {public_uri(cfg.resolved_tracking_uri)}") from None
        raise refused(e, cfg, f"log feedback on trace {trace_id}") from e
    return created.assessment_id


def feedback_exists(
    trace_id: str, assessment_id: str, cfg: Settings | None = None, *, own_budget: bool = False
) -> bool:
    """Whether the store holds this assessment on this trace (False when either is missing).

    ``own_budget`` bounds the call on its own, as :func:`log_feedback`'s does.

    Raises
    ------
    MlflowUnavailable, TrackingError
        MLflow did not answer, or refused for another reason than "not found".
    """
    cfg = cfg or settings()
    tracing = _tracing(cfg)
    try:
        bounded = call_alone if own_budget else call
        bounded(f"read feedback {assessment_id}", lambda: tracing.get_assessment(trace_id, assessment_id), cfg)
    except TrackingError:
        raise
    except Exception as e:
        if is_not_found(e):
            return False
        raise refused(e, cfg, f"read feedback on trace {trace_id}") from e
    return True
