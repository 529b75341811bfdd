"""Lineage: one record per executed cell, spooled first, shipped to MLflow later.

- :mod:`.record`: the record of a cell and the recorder that builds it from events.
- :mod:`.derive`: what a cell used and made, read from its typed events.
- :mod:`.render`: a record as text and HTML.
- :mod:`.spool`: the append-only local spool; validation and quarantine of bad lines.
- :mod:`.ship`: the background shipper to MLflow (one session run per kernel).
- :mod:`.openlineage`: OpenLineage RunEvents of records.
- :mod:`.views`: the Python twins of ``%lineage`` and what they return.
"""

from .derive import derive
from .record import LineageRecord, LineageRecorder, current_recorder, start_recording, stop_recording
from .views import export_openlineage, lineage_cell, lineage_sync, lineage_table

__all__ = [
    "LineageRecord",
    "LineageRecorder",
    "current_recorder",
    "derive",
    "export_openlineage",
    "lineage_cell",
    "lineage_sync",
    "lineage_table",
    "start_recording",
    "stop_recording",
]
