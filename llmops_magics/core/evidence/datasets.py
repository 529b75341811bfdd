"""``--from-dataset``: an MLflow evaluation dataset's records as shadow cases.

A record's ``inputs`` fill the variables of ``--prompt``; without one, its
``messages``, ``question`` or ``prompt`` field is the request. Its ``expectations``
go to the scorers with the case.
"""

from __future__ import annotations

from ...config import Settings
from ...errors import BadInput
from ..tracking.datasets import dataset_records
from . import redaction, shapes
from .recorded import Evidence

REQUEST_FIELDS = ("messages", "question", "prompt")


def from_dataset(name: str, *, has_prompt: bool, redact_text: str | None = None, cfg: Settings) -> Evidence:
    """The records of the evaluation dataset ``name`` as shadow inputs.

    Raises
    ------
    BadInput
        No such dataset, no records, or (without ``--prompt``) a record with no request field.
    """
    redact = redaction.load(cfg.redact_text if redact_text is None else redact_text)
    _, records = dataset_records(name, cfg)
    if not records:
        raise BadInput(f"evaluation dataset {name!r} has no records: add some with merge_records")
    inputs = [_scrub(dict(r.inputs or {}), redact) for r in records]
    # With a prompt the inputs are its template variables; without, the request itself.
    items = inputs if has_prompt else [{"messages": list(_request(x, name, i))} for i, x in enumerate(inputs)]
    return Evidence(
        source=f"{len(records)} records of evaluation dataset {name}",
        items=tuple(items),
        expectations=tuple(_scrub(r.expectations, redact) if r.expectations else None for r in records),
        scorer_inputs=tuple(inputs),
    )


def _request(inputs: dict, name: str, row: int) -> tuple[dict, ...]:
    for key in REQUEST_FIELDS:
        if key in inputs:
            found = shapes.chat_request(inputs[key] if key == "messages" else {"prompt": inputs[key]})
            if found is not None:
                return found
    raise BadInput(
        f"record {row} of evaluation dataset {name!r} has no messages, question or prompt input "
        f"(it has {', '.join(sorted(inputs)) or 'none'}): name a prompt with --prompt to fill from its inputs"
    )


def _scrub(value, redact):
    """Every string inside ``value`` through the redaction hook."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, redact) for v in value]
    return value
