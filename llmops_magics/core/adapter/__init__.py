"""Is a LoRA adapter still right for a new base model? (``%adapter_check``)

- :mod:`.static`: shapes, target modules and config read from safetensors headers (no weights loaded).
- :mod:`.behavior`: drift probes: next-token distributions of old and new base, with and without the adapter.
- :mod:`.report`: findings and the verdict, as a display object.
- :mod:`.check`: the Python twin of ``%adapter_check``, logging one MLflow run.
"""

from .check import check_adapter
from .report import AdapterReport, Finding

__all__ = ["AdapterReport", "Finding", "check_adapter"]
