"""Settings: one immutable snapshot in force per process.

Three ways in, one place they land: ``%config LlmopsMagics.<name>`` (traitlets on the
magics class forward here), ``llmops_magics.configure(...)``, and ``LLMOPS_*``
environment variables (read once, as defaults). A frozen dataclass rather than a
traitlets Configurable keeps core free of IPython and makes "the settings this call
ran under" a value that can be recorded in lineage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

BACKENDS = ("auto", "vllm", "transformers", "openai")

# Names accepted wherever a model ref is: the embedded defaults.
DEFAULT_CHAT_REF = "default"
DEFAULT_EMBEDDING_REF = "default-embedding"


def _default_cache() -> Path:
    # Converted models are large (538 MB for the default) and keyed by content, so they
    # live in one per-user cache shared by every notebook folder rather than in each home.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmops-magics"


@dataclass(frozen=True)
class Settings:
    """The settings one call runs under.

    Attributes
    ----------
    home : Path
        Where the embedded stores live (MLflow sqlite, LanceDB, lineage spool).
    tracking_uri : str
        MLflow tracking URI; empty means ``sqlite:///<home>/mlflow.db``.
    backend : str
        ``auto`` | ``vllm`` | ``transformers`` | ``openai``.
    endpoint : str
        Base URL of an OpenAI-compatible server (a remote ``vllm serve``).
    default_model : str
        The model ref used when none is given.
    model_cache : Path
        Where converted default models are kept.
    engine_args : dict
        Extra keyword arguments for the vLLM engine (e.g. ``{"enforce_eager": False}``).
    verbose : bool
        Show vLLM / transformers log lines in the output instead of the log file.
    ui_url : str
        Base URL of an MLflow UI showing this store; results then link their runs.
    mlflow_timeout_s : float
        Most seconds MLflow may add to one command (all its calls together); past it,
        or once MLflow fails, the command goes on without MLflow and keeps what it
        would have written until MLflow answers again.
    redact_text : str
        ``'module:function'`` of a ``str -> str`` hook applied to every request and
        response read from a trace, dataset or earlier run before it is shown, logged,
        stored or sent to a model (production text may hold personal data).
    max_scorer_calls : int
        Most scorer and judge calls one shadow run may make; a run that would need
        more is refused before any generation.
    protected_aliases : tuple of str
        Aliases (``champion``, ``production``) only ``%llm_promote`` may move, or a move
        forced with a recorded reason (``--force --why``).
    prices : dict
        Model ref or label -> price: ``"0.15/1M in,0.60/1M out"`` for API-priced models,
        ``"2.50/h"`` for self-hosted serving hardware; ``%%llm`` and ``%%shadow`` show the
        cost of 1,000 requests from it.
    ray_address : str
        Where ``--on ray`` work runs: ``auto`` (a running cluster), ``ray://head:10001``
        or ``host:6379``; empty starts a local Ray for the session (stopped at exit).
    """

    home: Path = Path(".llmops")
    tracking_uri: str = ""
    backend: str = "auto"
    endpoint: str = ""
    default_model: str = DEFAULT_CHAT_REF
    model_cache: Path = field(default_factory=_default_cache)
    engine_args: dict = field(default_factory=dict)
    verbose: bool = False
    ui_url: str = ""
    mlflow_timeout_s: float = 10.0
    redact_text: str = ""
    max_scorer_calls: int = 10_000
    protected_aliases: tuple = ()
    prices: dict = field(default_factory=dict)
    ray_address: str = ""

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.backend == "openai" and not self.endpoint:
            raise ConfigError(
                "the openai backend needs an endpoint: set LlmopsMagics.endpoint (e.g. http://127.0.0.1:8000/v1)"
            )
        object.__setattr__(self, "home", Path(self.home).expanduser())
        object.__setattr__(self, "model_cache", Path(self.model_cache).expanduser())
        if not isinstance(self.engine_args, dict):
            raise ConfigError("engine_args must be a dict, e.g. {'enforce_eager': False}")
        try:
            timeout = float(self.mlflow_timeout_s)
        except (TypeError, ValueError):
            timeout = -1.0
        if not timeout > 0:
            raise ConfigError(f"mlflow_timeout_s must be a number of seconds above 0, got {self.mlflow_timeout_s!r}")
        object.__setattr__(self, "mlflow_timeout_s", timeout)
        try:
            calls = int(self.max_scorer_calls)
        except (TypeError, ValueError):
            calls = 0
        if calls < 1:
            raise ConfigError(f"max_scorer_calls must be a whole number of at least 1, got {self.max_scorer_calls!r}")
        object.__setattr__(self, "max_scorer_calls", calls)
        aliases = self.protected_aliases
        if isinstance(aliases, str):  # LLMOPS_PROTECTED_ALIASES=champion,production
            aliases = [a for a in aliases.replace(",", " ").split() if a]
        if not isinstance(aliases, (list, tuple, set, frozenset)) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"protected_aliases must be a list of alias names, got {self.protected_aliases!r}")
        object.__setattr__(self, "protected_aliases", tuple(aliases))
        prices = self.prices
        if isinstance(prices, str):  # LLMOPS_PRICES='{"chat@champion": "2.50/h"}'
            try:
                prices = json.loads(prices) if prices.strip() else {}
            except ValueError:
                prices = None
        if not isinstance(prices, dict) or not all(isinstance(k, str) for k in prices):
            raise ConfigError(
                f"prices must be a dict of model ref -> price, e.g. {{'chat@champion': '2.50/h'}}, got {self.prices!r}"
            )
        object.__setattr__(self, "prices", dict(prices))

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Link to a run in the configured MLflow UI, or None when none is configured."""
        if not self.ui_url:
            return None
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "engines.log"


def _from_env() -> Settings:
    env = os.environ
    kw: dict = {}
    for name, var in (
        ("home", "LLMOPS_HOME"),
        ("tracking_uri", "LLMOPS_TRACKING_URI"),
        ("backend", "LLMOPS_BACKEND"),
        ("endpoint", "LLMOPS_ENDPOINT"),
        ("default_model", "LLMOPS_DEFAULT_MODEL"),
        ("model_cache", "LLMOPS_MODEL_CACHE"),
        ("ui_url", "LLMOPS_UI_URL"),
        ("mlflow_timeout_s", "LLMOPS_MLFLOW_TIMEOUT_S"),
        ("redact_text", "LLMOPS_REDACT_TEXT"),
        ("max_scorer_calls", "LLMOPS_MAX_SCORER_CALLS"),
        ("protected_aliases", "LLMOPS_PROTECTED_ALIASES"),
        ("prices", "LLMOPS_PRICES"),
        ("ray_address", "LLMOPS_RAY_ADDRESS"),
    ):
        if env.get(var):
            kw[name] = env[var]
    if env.get("LLMOPS_VERBOSE"):
        kw["verbose"] = env["LLMOPS_VERBOSE"].lower() in ("1", "true", "yes")
    return Settings(**kw)


_lock = threading.Lock()
_current: Settings | None = None


def settings() -> Settings:
    """The settings in force now."""
    global _current
    with _lock:
        if _current is None:
            _current = _from_env()
        return _current


def configure(**changes) -> Settings:
    """Change settings for this process; returns the new snapshot.

    Examples
    --------
    >>> configure(backend="transformers", home="/tmp/llmops")  # doctest: +SKIP
    """
    global _current
    unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        names = ", ".join(f.name for f in dataclasses.fields(Settings))
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}: known are {names}")
    new = dataclasses.replace(settings(), **changes)
    with _lock:
        _current = new
    return new


def reset() -> Settings:
    """Back to environment defaults (used by tests and ``%unload_ext``)."""
    global _current
    with _lock:
        _current = _from_env()
        return _current
