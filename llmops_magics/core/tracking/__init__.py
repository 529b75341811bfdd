"""The one door to MLflow: nothing else in the project imports ``mlflow`` for plumbing.

- :mod:`.budget`: one time budget per command; ping first, bounded calls, give up once.
- :mod:`.connection`: the bounded client, experiments, ending runs, quiet artifact reads.
- :mod:`.runs`: runs written in a fixed number of calls, or kept on disk and replayed once.
- :mod:`.errors`: MLflow errors classified by error code into typed, one-line errors.
- :mod:`.redact`: secrets out of text; ``public_uri``, ``first_line``, ``describe``.
- :mod:`.store`: the embedded sqlite store, built atomically; its health.
- :mod:`.links`: the prompt and model versions a run used, as MLflow's own links.
- :mod:`.source`: where the work runs from (notebook, cell), for the runs it writes.
"""

from .budget import MlflowUnavailable, bounded_command, call, command, is_remote, ping, unavailable
from .connection import (
    EXPERIMENT,
    BoundedClient,
    client,
    experiment_id,
    experiment_of,
    preload,
    read_artifact,
    terminate,
)
from .errors import is_not_found, mlflow_errors, refused
from .redact import describe, first_line, public_uri, redact, redact_obj, secret_env_values
from .runs import (
    RUN_KEY_TAG,
    PendingReport,
    RunKept,
    RunRecord,
    log_batch,
    log_run,
    origin_tags,
    pending_dir,
    prompt_link_tags,
    ship_pending,
)

__all__ = [
    "EXPERIMENT",
    "RUN_KEY_TAG",
    "BoundedClient",
    "MlflowUnavailable",
    "PendingReport",
    "RunKept",
    "RunRecord",
    "bounded_command",
    "call",
    "client",
    "command",
    "describe",
    "experiment_id",
    "experiment_of",
    "first_line",
    "is_not_found",
    "is_remote",
    "log_batch",
    "log_run",
    "origin_tags",
    "mlflow_errors",
    "pending_dir",
    "ping",
    "preload",
    "prompt_link_tags",
    "public_uri",
    "read_artifact",
    "redact",
    "redact_obj",
    "refused",
    "secret_env_values",
    "ship_pending",
    "terminate",
    "unavailable",
]
from .feedback import HUMAN, FeedbackTargetMissing, assessment_id, feedback_exists, log_feedback  # noqa: E402

__all__ += ["HUMAN", "FeedbackTargetMissing", "assessment_id", "feedback_exists", "log_feedback"]
from .trace_write import GenerationTrace, TraceReport, generation_attributes, new_trace_id, write_traces  # noqa: E402

__all__ += ["GenerationTrace", "TraceReport", "generation_attributes", "new_trace_id", "write_traces"]
from .links import LINKED_PROMPTS_TAG, linked_prompts_tag  # noqa: E402
from .source import WorkSource, current_source, set_source, source_tags  # noqa: E402

__all__ += ["LINKED_PROMPTS_TAG", "WorkSource", "current_source", "linked_prompts_tag", "set_source", "source_tags"]
from .user import current_user  # noqa: E402

__all__ += ["current_user"]
