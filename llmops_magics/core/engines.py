"""Which backend serves a model, and the engines kept for the kernel's life.

One engine per (backend, base weights, engine options): starting vLLM costs tens of
seconds, so engines are cached and LoRA adapters ride on the base engine per request.
"""

from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass

from ..backends.base import Generator
from ..backends.engine_logs import native_output_to_log, route_engine_logs
from ..config import Settings, settings
from ..errors import BackendUnavailable

_lock = threading.RLock()
_engines: dict[tuple, Generator] = {}
_choices: dict[tuple, "BackendChoice"] = {}


@dataclass(frozen=True)
class BackendChoice:
    """The backend that serves a model and why it was picked."""

    backend: str
    reason: str


def _engine_options(cfg: Settings, backend: str) -> tuple:
    return tuple(sorted(cfg.engine_args.items())) if backend == "vllm" else ()


def get_generator(model_path: str, cfg: Settings | None = None, *, backend: str | None = None):
    """The cached engine for ``model_path``, started on first use.

    Returns
    -------
    (Generator, BackendChoice)
    """
    cfg = cfg or settings()
    wanted = backend or cfg.backend
    with _lock:
        cached = _choices.get((wanted, model_path, cfg.endpoint))
        if cached is not None:
            key = (cached.backend, model_path, cfg.endpoint, _engine_options(cfg, cached.backend))
            if key in _engines:
                return _engines[key], cached
        generator, choice = _start(model_path, cfg, wanted)
        key = (choice.backend, model_path, cfg.endpoint, _engine_options(cfg, choice.backend))
        _engines[key] = generator
        _choices[(wanted, model_path, cfg.endpoint)] = choice
        return generator, choice


def _start(model_path: str, cfg: Settings, wanted: str):
    route_engine_logs(cfg.log_file, verbose=cfg.verbose)
    if wanted == "openai":
        from ..backends.openai_backend import OpenAIGenerator

        return OpenAIGenerator(cfg.endpoint), BackendChoice("openai", f"endpoint {cfg.endpoint}")
    if wanted in ("vllm", "auto"):
        from ..backends.vllm_backend import VllmGenerator, vllm_version

        version = vllm_version()
        if version is None:
            if wanted == "vllm":
                raise BackendUnavailable("vLLM is not installed", extra="cpu")
            reason = "vLLM is not installed"
        else:
            try:
                gen = _timed_start("vLLM", lambda: VllmGenerator(model_path, cfg.engine_args), cfg)
                return gen, BackendChoice("vllm", f"vLLM {version} started")
            except BackendUnavailable as e:
                if wanted == "vllm":
                    raise
                reason = str(e)
        from ..backends.transformers_backend import TransformersGenerator

        gen = _timed_start("transformers", lambda: TransformersGenerator(model_path), cfg)
        return gen, BackendChoice("transformers", f"fallback: {reason}")
    from ..backends.transformers_backend import TransformersGenerator

    gen = _timed_start("transformers", lambda: TransformersGenerator(model_path), cfg)
    return gen, BackendChoice("transformers", "chosen in settings")


def _timed_start(what: str, start, cfg: Settings):
    """Start an engine with its native output in the log and a ticking progress line."""
    from tqdm.auto import tqdm

    done = threading.Event()
    with native_output_to_log(cfg.verbose) as console:
        bar = tqdm(
            total=None, desc=f"starting {what} engine (logs: {cfg.log_file})",
            bar_format="{desc} {elapsed}", file=console,
        )

        def tick():
            while not done.wait(1.0):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        t0 = time.perf_counter()
        try:
            return start()
        finally:
            done.set()
            ticker.join()
            bar.set_description_str(f"{what} engine ready in {time.perf_counter() - t0:.0f} s")
            bar.close()


def release(generator: Generator) -> None:
    """Stop one engine and forget it (frees its memory)."""
    with _lock:
        for key, gen in list(_engines.items()):
            if gen is generator:
                del _engines[key]
        # Keep a choice while another engine of the same weights (other engine args)
        # still serves it: forgetting it would start a duplicate of that live engine.
        live = {k[:3] for k in _engines}
        for key, choice in list(_choices.items()):
            if key[1] == generator.key.model_path and (choice.backend, key[1], key[2]) not in live:
                del _choices[key]
    generator.close()


def release_all() -> None:
    """Stop every engine (``%unload_ext``, tests)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
        _choices.clear()
    for gen in engines:
        gen.close()


def loaded_engines() -> list[Generator]:
    with _lock:
        return list(_engines.values())


atexit.register(release_all)
