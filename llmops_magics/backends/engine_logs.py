"""Keep vLLM's and transformers' own log lines out of notebook cells.

They go to ``<home>/logs/engines.log``; ``Settings.verbose`` brings them back. vLLM
reads its logging set-up from the environment when first imported (also in its engine
subprocess), so the environment is prepared before any import of vllm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path

_LOGGERS = ("vllm", "transformers", "torch", "sentence_transformers", "peft", "accelerate")
_log_file: Path | None = None


def route_engine_logs(log_file: Path, *, verbose: bool = False) -> None:
    """Send engine logs to ``log_file`` (or leave them on the console when verbose)."""
    global _log_file
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    # The engine core runs inside the kernel: a separate engine process hung the
    # interpreter at exit here, and in-process needs no `if __name__ == "__main__"`.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        return
    log_file = Path(log_file).resolve()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"}
        },
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    config_path = log_file.parent / "vllm-logging.json"
    config_path.write_text(json.dumps(config))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_path)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    _log_file = log_file
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in _LOGGERS[1:]:
        logger = logging.getLogger(name)
        if not any(getattr(h, "baseFilename", None) == str(log_file) for h in logger.handlers):
            logger.addHandler(handler)
        logger.propagate = False


@contextlib.contextmanager
def quiet_libraries():
    """Silence library warnings and progress bars inside a block (unless verbose)."""
    if _log_file is None:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # transformers is optional for some callers
            pass
        yield


@contextlib.contextmanager
def native_output_to_log(verbose: bool = False):
    """Point file descriptors 1 and 2 at the log file for a block.

    vLLM, torch and their C++ parts write straight to the descriptors (warnings about
    Triton, NUMA binding, weight-loading bars); Python-level redirection cannot catch
    them. Yields a writable stream on the original stderr for our own progress.
    """
    import sys

    if verbose or _log_file is None:
        yield sys.stderr
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log_fd = os.open(_log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    console = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    try:
        for fd in (1, 2):
            os.dup2(log_fd, fd)
        # In a notebook sys.stderr is the kernel's stream, not fd 2: keep using it.
        yield console if _is_fd_stream(sys.stderr) else sys.stderr
    finally:
        for fd, old in saved.items():
            os.dup2(old, fd)
            os.close(old)
        os.close(log_fd)
        console.close()


def _is_fd_stream(stream) -> bool:
    try:
        stream.fileno()
        return True
    except Exception:  # ipykernel's OutStream raises UnsupportedOperation
        return False
