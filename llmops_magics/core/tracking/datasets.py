"""Reading MLflow evaluation datasets (``mlflow.genai.datasets``) through our client.

MLflow's own ``get_dataset`` and a dataset's ``records`` read the process-wide tracking
URI; these read the store of the given settings, each call bounded.
"""

from __future__ import annotations

from ...config import Settings, settings
from ...errors import BadInput
from .budget import call
from .connection import client
from .errors import mlflow_errors


def dataset_records(name: str, cfg: Settings | None = None) -> tuple[str, list]:
    """``(dataset id, records)`` of the evaluation dataset ``name``, oldest record first.

    Raises
    ------
    BadInput
        No dataset of that name, or more than one.
    """
    cfg = cfg or settings()
    store = client(cfg).raw._tracking_client.store
    quoted = f'"{name}"' if '"' not in name else "'" + name.replace("'", "''") + "'"
    with mlflow_errors(f"find evaluation dataset {name!r}", cfg):
        found = call(
            "find dataset", lambda: store.search_datasets(filter_string=f"name = {quoted}", max_results=2), cfg
        )
    found = list(found)
    if not found:
        raise BadInput(
            f"no MLflow evaluation dataset named {name!r}: create it with mlflow.genai.datasets.create_dataset"
        )
    if len(found) > 1:
        raise BadInput(f"more than one evaluation dataset is named {name!r}: rename one")
    dataset_id = found[0].dataset_id
    with mlflow_errors(f"read evaluation dataset {name!r}", cfg):
        records, _ = call("read dataset", lambda: store._load_dataset_records(dataset_id, max_results=None), cfg)
    return dataset_id, sorted(records or [], key=lambda r: (r.created_time, r.dataset_record_id))
