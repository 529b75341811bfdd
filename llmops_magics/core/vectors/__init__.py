"""Vector tables and their embedding migrations.

- :mod:`.embedders`: embedder refs -> a loaded embedder and the spec a column records.
- :mod:`.table`: create a table from texts, record its model, search it; the mixed-space guard.
- :mod:`.migration`: the ``%lance_migrate`` state machine (``Migration``, ``migration()``, ``run_step``).
- :mod:`.state`: the migration state a table records, and the checks on it.
- :mod:`.backfill`: where a backfill commits.
- :mod:`.ranking`: the shadow step's comparison of the old and new column's rankings.
- :mod:`.dual_write`: adding rows, a migration open or not; unique ids across processes.
- :mod:`.results`: ``StepResult``, what a step shows.
"""

from .embedders import Embedder, EmbedderSpec, get_embedder
from .migration import STEPS, Migration, migration, run_step
from .ranking import ShadowReport
from .results import StepResult
from .table import (
    IndexResult,
    MixedVectorSpaces,
    SearchResult,
    TableLayout,
    create_index,
    describe_table,
    search,
    search_vector,
)

__all__ = [
    "STEPS",
    "Embedder",
    "EmbedderSpec",
    "IndexResult",
    "Migration",
    "MixedVectorSpaces",
    "SearchResult",
    "ShadowReport",
    "StepResult",
    "TableLayout",
    "create_index",
    "describe_table",
    "get_embedder",
    "migration",
    "run_step",
    "search",
    "search_vector",
]
