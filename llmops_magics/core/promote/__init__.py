"""The promotion gate: aliases move on recorded evidence (``%llm_promote``, ``llmops-magics gate``).

- :mod:`.evidence`: a shadow run as evidence (versions, digests, verdict), found or read.
- :mod:`.gate`: does one run meet the bar (verdict, cases, review): ``gate_run``.
- :mod:`.winshare`: the candidate's win share in a human review, with its bootstrap bound.
- :mod:`.lock`: one alias mover at a time (a file lock, or a lease tag on a server).
- :mod:`.promotion`: plan, check, commit: ``promote``.
"""

from .gate import GateDecision, gate_run
from .promotion import Promotion, promote
from .winshare import WinShare

__all__ = ["GateDecision", "Promotion", "WinShare", "gate_run", "promote"]
