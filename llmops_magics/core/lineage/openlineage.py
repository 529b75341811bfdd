"""Lineage records as OpenLineage RunEvents (spec 2-0-2): START then COMPLETE or FAIL.

One cell is one OpenLineage run of the job ``<notebook>/cell/<id>``; its parent run is
the notebook session. Prompts and models a cell used are input datasets (with their
versions), LanceDB tables a migration step wrote are output datasets. Pins and the
llmops work ride in two custom run facets.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from ...errors import BadInput
from ...version import __version__
from .derive import derive

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FACETS = "https://openlineage.io/spec/facets"
PRODUCER = f"https://pypi.org/project/llmops-magics/{__version__}"
NAMESPACE = "llmops-magics"
_CUSTOM = f"https://pypi.org/project/llmops-magics/{__version__}#/facets"


def _facet(schema: str, **fields) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": schema, **fields}


def _uuid(hex_id: str) -> str:
    return str(uuid.UUID(hex=hex_id))


def _job_name(record: dict) -> str:
    notebook = record.get("notebook") or f"session-{record['session_id'][:8]}"
    cell = record.get("cell_id") or f"exec-{record.get('execution_count')}"
    return f"{notebook}/cell/{cell}"


def _datasets(refs: list[dict], scheme: str) -> list[dict]:
    out = []
    for ref in refs:
        if not ref.get("name"):
            continue
        name = f"{scheme}:/{ref['name']}" + (f"/{ref['version']}" if ref.get("version") else "")
        facets = {}
        if ref.get("version"):
            facets["version"] = _facet(
                f"{FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
                datasetVersion=str(ref["version"]),
            )
        out.append({"namespace": NAMESPACE, "name": name, "facets": facets})
    return out


def record_events(record: dict) -> list[dict]:
    """The START and COMPLETE/FAIL RunEvents of one lineage record."""
    d = derive(record.get("events") or [])
    started = datetime.fromisoformat(record["started"])
    ended = started + timedelta(seconds=float(record.get("duration_s") or 0.0))
    job = {
        "namespace": NAMESPACE,
        "name": _job_name(record),
        "facets": {
            "jobType": _facet(
                f"{FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                processingType="BATCH",
                integration="LLMOPS_MAGICS",
                jobType="NOTEBOOK_CELL",
            ),
            "sourceCode": _facet(
                f"{FACETS}/1-0-1/SourceCodeJobFacet.json#/$defs/SourceCodeJobFacet",
                language="python",
                sourceCode=record.get("source") or "",
            ),
        },
    }
    run_facets = {
        "parent": _facet(
            f"{FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
            run={"runId": _uuid(record["session_id"])},
            job={"namespace": NAMESPACE, "name": record.get("notebook") or f"session-{record['session_id'][:8]}"},
        ),
        "processing_engine": _facet(
            f"{FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
            version=__version__,
            name="llmops-magics",
        ),
        "llmops_pins": _facet(f"{_CUSTOM}/LlmopsPinsRunFacet", pins=record.get("pins") or []),
        "llmops_cell": _facet(
            f"{_CUSTOM}/LlmopsCellRunFacet",
            recordId=record["record_id"],
            executionCount=record.get("execution_count"),
            sourceDigest=record.get("source_digest"),
            runs=d["runs"],
            tokens=d["tokens"],
            shadow=d["shadow"],
            adapterChecks=d["adapter_checks"],
            events=record.get("events") or [],
        ),
    }
    inputs = _datasets(d["prompts"], "prompts") + _datasets(d["models"], "models")
    outputs = [
        {
            "namespace": "lancedb",
            "name": str(t["table"]),
            "facets": {
                "version": _facet(
                    f"{FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
                    datasetVersion=str(t["version_after"]),
                )
            },
        }
        for t in d["tables"]
        if t.get("table") is not None
    ]
    run_id = _uuid(record["record_id"])
    start = {
        "eventType": "START",
        "eventTime": started.isoformat(),
        "producer": PRODUCER,
        "schemaURL": f"{SPEC}#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": run_facets},
        "job": job,
        "inputs": inputs,
        "outputs": [],
    }
    end_facets = dict(run_facets)
    failed = record.get("status") == "error"
    if failed:
        end_facets["errorMessage"] = _facet(
            f"{FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
            message=f"{record.get('error_type')}: {record.get('error') or ''}",
            programmingLanguage="python",
        )
    end = {
        "eventType": "FAIL" if failed else "COMPLETE",
        "eventTime": ended.isoformat(),
        "producer": PRODUCER,
        "schemaURL": f"{SPEC}#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": end_facets},
        "job": job,
        "inputs": inputs,
        "outputs": outputs,
    }
    return [start, end]


def check_destination(path: str | Path) -> Path:
    """The export file, or a one-line BadInput when it cannot be written there."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise BadInput(f"{path} is a folder: give a file path such as {path / 'lineage.jsonl'}")
    if not path.parent.exists():
        raise BadInput(f"folder {path.parent} does not exist: create it or export elsewhere")
    return path


def export_events(records: list[dict], path: str | Path) -> tuple[Path, int]:
    """Write the RunEvents of ``records`` as JSON Lines (one event a line) to ``path``."""
    path = check_destination(path)
    evs = [e for r in records for e in record_events(r)]
    path.write_text("".join(json.dumps(e, default=str) + "\n" for e in evs))
    return path, len(evs)
