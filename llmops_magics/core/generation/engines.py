"""Which backend serves a model, and the engines kept for the kernel's life.

One engine per (backend, base weights, engine options): starting vLLM costs tens of
seconds, so engines are cached and LoRA adapters ride on the base engine per request.
This module owns the cache and its key (:func:`engine_key`, a :class:`CacheKey`):
options are normalized first (defaults filled in, the device's dtype chosen), so
``dtype=float32`` spelled out and the CPU default are one engine. Nobody outside reads
the cache: callers ask :func:`is_loaded`, :func:`get_engine`, :func:`release_if_loaded`
and :func:`engines`, and every read or write of it holds ``_lock``.
"""

from __future__ import annotations

import atexit
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...backends import openai_backend, transformers_backend, vllm_backend
from ...backends.base import Generator
from ...backends.engine_logs import bar_target, engine_output, route_engine_logs, tail
from ...backends.progress import progress_bar
from ...config import Settings, settings
from ...errors import BackendUnavailable, BadInput
from ..paths import shown_path

# Re-entrant: get_engine holds it while an engine starts, and the start names the
# engine and builds its key under the same lock.
_lock = threading.RLock()
_engines: dict[CacheKey, Engine] = {}
# (backend asked for, weights, endpoint) -> the backend that answered ("auto" resolved).
_choices: dict[tuple, BackendChoice] = {}
# Lines of an engine's log shown with a start failure.
FAILURE_TAIL = 8


@dataclass(frozen=True)
class CacheKey:
    """Identifies one cached engine: two calls with equal keys share one engine."""

    backend: str
    model_path: str
    endpoint: str  # the server's address for ``openai``, else empty
    options: tuple  # normalized engine options, sorted (name, value) pairs


@dataclass(frozen=True)
class BackendChoice:
    """The backend that serves a model and why it was picked."""

    backend: str
    reason: str


@dataclass
class Engine:
    """One loaded engine and what ``%llm_engines`` says about it."""

    name: str
    generator: Generator
    choice: BackendChoice
    key: CacheKey | None  # set by get_engine once the backend that answered is known
    model: str  # the label of the model it was started for
    started_at: float
    start_s: float
    memory_bytes: int | None
    log_file: Path
    models: list[str] = field(default_factory=list)  # every label it served

    @property
    def backend(self) -> str:
        return self.generator.backend

    @property
    def dtype(self) -> str:
        return self.generator.dtype

    @property
    def device(self) -> str:
        return self.generator.device

    @property
    def uptime_s(self) -> float:
        return time.time() - self.started_at

    def serving(self) -> dict:
        """The serving parameters this engine really runs with (for params and lineage)."""
        return {"backend": self.backend, "dtype": self.dtype, "device": self.device}


def _options(backend: str, cfg: Settings) -> tuple:
    if backend == "vllm":
        options = vllm_backend.engine_options(cfg.engine_args)
    elif backend == "transformers":
        options = transformers_backend.engine_options(cfg.engine_args)
    else:  # a remote server's options are its own
        return ()
    return tuple(sorted(options.items(), key=str))


def _choice_key(model_path: str, cfg: Settings, wanted: str) -> tuple:
    return (wanted, str(model_path), cfg.endpoint)


def _predicted_backend(model_path: str, cfg: Settings, wanted: str) -> str:
    with _lock:
        cached = _choices.get(_choice_key(model_path, cfg, wanted))
    if cached is not None:
        return cached.backend
    if wanted != "auto":
        return wanted
    return "vllm" if vllm_backend.vllm_version() else "transformers"


def engine_key(model_path: str, cfg: Settings | None = None, *, backend: str | None = None) -> CacheKey:
    """The cache key of the engine that serves ``model_path`` under ``cfg``.

    Two calls with equal keys share one engine; for ``auto`` the backend it picked (or
    would pick) is part of the key.
    """
    cfg = cfg or settings()
    with _lock:
        chosen = _predicted_backend(model_path, cfg, backend or cfg.backend)
        try:
            options = _options(chosen, cfg)
        except Exception:  # not installed, or broken: the start will say what is wrong
            options = tuple(sorted(cfg.engine_args.items(), key=str))
        return CacheKey(chosen, str(model_path), cfg.endpoint if chosen == "openai" else "", options)


def is_loaded(model_path: str, cfg: Settings | None = None, *, backend: str | None = None) -> bool:
    """Whether the engine for ``model_path`` under ``cfg`` is up (costs no new memory)."""
    with _lock:
        return engine_key(model_path, cfg, backend=backend) in _engines


def release_if_loaded(model_path: str, cfg: Settings | None = None, *, backend: str | None = None) -> bool:
    """Stop the engine for ``model_path`` under ``cfg`` if one is up; whether one was."""
    with _lock:
        engine = _engines.get(engine_key(model_path, cfg, backend=backend))
    if engine is None:
        return False
    release(engine.generator)
    return True


def get_generator(
    model_path: str, cfg: Settings | None = None, *, backend: str | None = None, label: str | None = None
):
    """The cached engine for ``model_path``, started on first use.

    Parameters
    ----------
    label : str, optional
        The model as the user named it (``chat@champion``), for the status line.

    Returns
    -------
    (Generator, BackendChoice)
    """
    engine = get_engine(model_path, cfg, backend=backend, label=label)
    return engine.generator, engine.choice


def get_engine(
    model_path: str, cfg: Settings | None = None, *, backend: str | None = None, label: str | None = None
) -> Engine:
    """Like :func:`get_generator`, with the engine's record."""
    cfg = cfg or settings()
    wanted = backend or cfg.backend
    label = label or Path(model_path).name
    with _lock:
        # Whoever started it (backend "auto" or "vllm" named outright), an engine with
        # this key is the one to use: a second in-process vLLM engine of the same key
        # would replace the first, and the first one's teardown breaks the second.
        engine = _engines.get(engine_key(model_path, cfg, backend=wanted))
        if engine is not None:
            _choices.setdefault(_choice_key(model_path, cfg, wanted), engine.choice)
            if label not in engine.models:
                engine.models.append(label)
            return engine
        engine = _start(model_path, cfg, wanted, label)
        engine.key = engine_key(model_path, cfg, backend=engine.choice.backend)
        if engine.key in _engines:  # "auto" fell back to a backend already serving it
            engine.generator.close()
            engine = _engines[engine.key]
        _engines[engine.key] = engine
        _choices[_choice_key(model_path, cfg, wanted)] = engine.choice
        return engine


def _name(backend: str, label: str) -> str:
    base = re.sub(r"[^0-9A-Za-z_.@/-]+", "-", f"{backend}/{label}")
    with _lock:
        taken = {e.name for e in _engines.values()}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}#{n}"
    return name


def _start(model_path: str, cfg: Settings, wanted: str, label: str) -> Engine:
    route_engine_logs(cfg.log_file, verbose=cfg.verbose)
    if wanted == "openai":
        choice = BackendChoice("openai", f"endpoint {cfg.endpoint}")
        return _timed_start(
            "OpenAI-compatible", label, choice, cfg, lambda log: openai_backend.OpenAIGenerator(cfg.endpoint)
        )
    if wanted in ("vllm", "auto"):
        version = vllm_backend.vllm_version()
        if version is None:
            if wanted == "vllm":
                raise BackendUnavailable("vLLM is not installed", extra="cpu")
            reason = "vLLM is not installed"
        else:
            try:
                return _timed_start(
                    "vLLM",
                    label,
                    BackendChoice("vllm", f"vLLM {version} started"),
                    cfg,
                    lambda log: vllm_backend.VllmGenerator(model_path, cfg.engine_args, log_file=log),
                )
            except BackendUnavailable as e:
                if wanted == "vllm":
                    raise
                reason = str(e).splitlines()[0]
        choice = BackendChoice("transformers", f"fallback: {reason}")
    else:
        choice = BackendChoice("transformers", "chosen in settings")
    return _timed_start(
        "transformers",
        label,
        choice,
        cfg,
        lambda log: transformers_backend.TransformersGenerator(model_path, cfg.engine_args, log_file=log),
    )


def _rss() -> int | None:
    try:
        import psutil  # optional: without it an engine's memory is shown as unknown

        return psutil.Process().memory_info().rss
    except Exception:  # psutil missing or /proc unreadable: memory is then unknown
        return None


def _timed_start(what: str, label: str, choice: BackendChoice, cfg: Settings, start) -> Engine:
    """Start an engine with its output in its log and one ticking status line in the cell."""
    name = _name(choice.backend, label)
    log_file = cfg.home / "logs" / "engines" / (re.sub(r"[^0-9A-Za-z_.-]+", "_", name) + ".log")
    done = threading.Event()
    rss0, t0 = _rss(), time.perf_counter()
    with engine_output(log_file, verbose=cfg.verbose) as console:
        bar = progress_bar(
            total=None, desc=f"starting {what} engine for {label}", bar_format="{desc} {elapsed}", **bar_target(console)
        )

        def tick():
            while not done.wait(1.0):
                bar.refresh()

        ticker = threading.Thread(target=tick, name="llmops-engine-ticker", daemon=True)
        ticker.start()
        generator = None
        try:
            generator = start(log_file)
        except BackendUnavailable as e:
            raise BackendUnavailable(_with_tail(str(e), log_file, name)) from e
        finally:
            done.set()
            ticker.join()
            seconds = time.perf_counter() - t0
            if generator is not None:
                bar.set_description_str(
                    f"{what} engine for {label} ready ({generator.dtype}, {generator.device}) in {seconds:.0f} s"
                )
            else:
                bar.set_description_str(f"{what} engine for {label} did not start")
            bar.bar_format = "{desc}"
            bar.close()
    rss1 = _rss()
    memory = rss1 - rss0 if rss0 is not None and rss1 is not None else None
    return Engine(name, generator, choice, None, label, time.time() - seconds, seconds, memory, log_file, [label])


def _with_tail(message: str, log_file: Path, name: str) -> str:
    lines = tail(log_file, FAILURE_TAIL)
    if not lines:
        return message
    shown = "\n".join(f"    {line[:200]}" for line in lines)
    return f"{message}\n  last lines of its log ({shown_path(log_file)}):\n{shown}"


def release(generator: Generator) -> None:
    """Stop one engine and forget it (frees its memory).

    Closing an in-process vLLM engine tears down vLLM's process-global parallel state,
    which breaks every other in-process vLLM engine ("pipeline model parallel group is
    not initialized", measured): those are stopped too, and start again on next use.
    """
    stopped = []
    with _lock:
        for key, engine in list(_engines.items()):
            if engine.generator is generator or (generator.backend == "vllm" and key.backend == "vllm"):
                del _engines[key]
                if engine.generator is not generator:
                    stopped.append(engine.generator)
        # Keep a choice while another engine of the same weights (other engine args)
        # still serves it: forgetting it would start a duplicate of that live engine.
        live = {(k.backend, k.model_path) for k in _engines}
        for asked, choice in list(_choices.items()):
            if (choice.backend, asked[1]) not in live:
                del _choices[asked]
    generator.close()
    for other in stopped:
        other.close()


def release_all() -> None:
    """Stop every engine (``%unload_ext``, tests)."""
    with _lock:
        engines = [e.generator for e in _engines.values()]
        _engines.clear()
        _choices.clear()
    for gen in engines:
        gen.close()


def loaded_engines() -> list[Generator]:
    """The generators of every engine this process holds."""
    with _lock:
        return [e.generator for e in _engines.values()]


def engines() -> list[Engine]:
    """The engines this process holds, oldest first."""
    with _lock:
        return sorted(_engines.values(), key=lambda e: e.started_at)


def find_engine(name: str) -> Engine:
    """An engine by its name, its number in :func:`engines` (1-based), or a unique prefix."""
    held = engines()
    if not held:
        raise BadInput("no engines are loaded in this kernel: %%llm or %%shadow starts one")
    if name.isdigit() and 1 <= int(name) <= len(held):
        return held[int(name) - 1]
    exact = [e for e in held if e.name == name]
    matches = exact or [e for e in held if e.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(e.name for e in held)
    what = "matches several engines" if matches else "names no engine"
    raise BadInput(f"{name!r} {what}: give one of {names} (or its number in %llm_engines)")


def serving_for(model_path: str) -> list[dict]:
    """Serving parameters of every engine holding ``model_path`` (for the lockfile)."""
    return [e.serving() for e in engines() if e.key.model_path == str(model_path)]


atexit.register(release_all)
