"""Shadow comparisons: a candidate model against the primary over the same inputs.

``shadow()`` (:mod:`.run`) is a pipeline of stages, one module each: :mod:`.spec`
(validate), :mod:`.resolve`, :mod:`.plan`, :mod:`.generate`, :mod:`.compare`,
:mod:`.judge`, :mod:`.verdict` (decide), :mod:`.log` (log and emit). The statistics
behind each check are in :mod:`.stats`; the result and its display in :mod:`.result`.
"""

from __future__ import annotations

from .result import ShadowResult
from .run import shadow
from .spec import ShadowSpec, validate
from .stats import Check, Thresholds, Verdict

__all__ = ["shadow", "ShadowResult", "ShadowSpec", "validate", "Thresholds", "Verdict", "Check"]
