"""Watch production: decay over time, input drift and canary splits from an app's MLflow traces.

``watch()`` (:mod:`.run`) is the Python twin of ``%llm_watch``; :class:`.result.WatchResult`
is what it returns. Reading (:mod:`.observe`, :mod:`.facts`), scores (:mod:`.scoring`,
:mod:`.spool`), statistics (:mod:`.decay`, :mod:`.canary`, :mod:`.drift`) and what moved
(:mod:`.changes`) are stages of its own modules.
"""

from .changes import Change
from .result import Flag, WatchResult
from .run import watch

__all__ = ["Change", "Flag", "WatchResult", "watch"]
