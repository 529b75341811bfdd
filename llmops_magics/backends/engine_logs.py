"""Keep vLLM's and transformers' own output out of notebook cells.

Engine logs go to ``<home>/logs/engines.log``, and what one engine writes while it
starts or generates also goes to its own file (``%llm_engines --log NAME`` shows it);
``Settings.verbose`` brings everything back into the cell. vLLM reads its logging
set-up from the environment when first imported, so the environment is prepared
before any import of vllm.

What an engine writes reaches a cell four ways: Python ``logging``, ``warnings``,
``print``/tqdm on ``sys.stdout``/``sys.stderr`` (in a kernel these are ipykernel's
streams, not file descriptors 1 and 2), and native code writing to descriptors 1 and 2.
:func:`engine_output` routes all four to the engine's log for the duration of a block,
but only for the thread running the engine and the threads it starts: other threads
(the lineage shipper, a user's own thread) keep writing where they did. Native writes
cannot be told apart by thread; for the block's duration they go to the log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import threading
import warnings
from pathlib import Path

_LOGGERS = ("vllm", "transformers", "torch", "sentence_transformers", "peft", "accelerate")
_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_log_file: Path | None = None
_verbose = False
# One capture at a time: the streams and descriptors it swaps are process-wide.
_capture_lock = threading.RLock()


def route_engine_logs(log_file: Path, *, verbose: bool = False) -> None:
    """Send engine logs to ``log_file`` (or leave them on the console when verbose)."""
    global _log_file, _verbose
    _verbose = verbose
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    # The engine core runs inside the kernel: a separate engine process hung the
    # interpreter at exit here, and in-process needs no `if __name__ == "__main__"`.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        _log_file = None
        return
    log_file = Path(log_file).resolve()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": _FORMAT}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    config_path = log_file.parent / "vllm-logging.json"
    config_path.write_text(json.dumps(config))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_path)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    _log_file = log_file
    _route_library_warnings()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(_FORMAT))
    for name in _LOGGERS[1:]:
        logger = logging.getLogger(name)
        if not any(getattr(h, "baseFilename", None) == str(log_file) for h in logger.handlers):
            logger.addHandler(handler)
        logger.propagate = False
    _quiet_progress_bars()


def _quiet_progress_bars() -> None:
    # transformers and huggingface_hub draw their own bars ("Loading weights") on every
    # model load, from whatever thread loads it; they are engine output too.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


@contextlib.contextmanager
def _no_library_bars():
    """transformers' and huggingface_hub's bars off for a block, as they were after it.

    Before the engine logs are routed (a merge or a model conversion may come first)
    they would otherwise draw "Loading weights" widgets in the cell, which no stream
    redirection reaches.
    """
    try:
        from transformers.utils import logging as hf_logging  # deferred: only where a model loads
    except ImportError:
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _is_library_file(filename) -> bool:
    parts = Path(str(filename)).parts
    return "site-packages" in parts or "dist-packages" in parts


def _route_library_warnings() -> None:
    """Warnings raised inside installed libraries go to the engine log, not the cell.

    Their text names the machine's venv (``.../site-packages/vllm/...``) and says
    nothing a notebook user acts on; a warning raised in the user's own code (a
    library's deprecation aimed at its caller, with ``stacklevel``) still shows.
    """
    previous = warnings.showwarning
    if getattr(previous, "llmops_routes_library_warnings", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        target = _log_file
        if target is not None and file is None and _is_library_file(filename):
            try:
                with open(target, "a", encoding="utf-8", errors="replace") as log:
                    log.write(warnings.formatwarning(message, category, filename, lineno, line))
                return
            except OSError:  # an unwritable log: the warning is still worth seeing
                pass
        previous(message, category, filename, lineno, file, line)

    showwarning.llmops_routes_library_warnings = True
    warnings.showwarning = showwarning


@contextlib.contextmanager
def quiet_libraries():
    """Silence library warnings and progress bars inside a block (unless verbose)."""
    if _verbose:
        yield
        return
    if _log_file is None:
        with _no_library_bars():
            yield
        return
    with engine_output():
        yield


class _Router(io.TextIOBase):
    """A stand-in for ``sys.stdout``/``sys.stderr``: engine threads write to the log,
    every other thread to where it wrote before.

    Another thread may hold this object (read ``sys.stdout`` a moment before the block
    ended) and write after it: :meth:`retire` points every later write at the stream it
    stood in for, under the lock each write takes, so no write ever lands on a stream
    the block has closed (a user's thread died of that, once, under load).
    """

    def __init__(self, is_engine, log, other):
        self._is_engine, self._log, self._other = is_engine, log, other
        self._lock = threading.RLock()
        self._retired = None

    def _target(self):
        if self._retired is not None:
            return self._retired
        return self._log if self._is_engine() else self._other

    def write(self, text):
        with self._lock:
            return self._target().write(text)

    def retire(self, stream) -> None:
        """From now on, every write goes to ``stream`` (what ``sys.stdout`` was before)."""
        with self._lock:
            self._retired = stream

    def flush(self):
        for stream in (self._log, self._other):
            with contextlib.suppress(Exception):
                stream.flush()

    def writable(self):
        return True

    def isatty(self):
        return False

    @property
    def encoding(self):
        return getattr(self._other, "encoding", "utf-8")

    def __getattr__(self, name):  # fileno, buffer, ... of the stream it stands in for
        return getattr(self._target(), name)


def _fd_backed(stream) -> bool:
    try:
        stream.fileno()
        return True
    except Exception:  # ipykernel's OutStream raises UnsupportedOperation
        return False


@contextlib.contextmanager
def engine_output(log_file: Path | None = None, *, verbose: bool = False):
    """Route what the calling thread (and threads it starts) writes to the engine log.

    Parameters
    ----------
    log_file : Path, optional
        Also write it to this file (an engine's own log); the shared engine log
        always gets it.
    verbose : bool
        Leave everything on the console.

    Yields
    ------
    A text stream on the real console for our own progress line.
    """
    if verbose or _verbose:
        yield sys.stderr
        return
    if _log_file is None:  # not routed yet: at least no library bars in the cell
        with _no_library_bars():
            yield sys.stderr
        return
    with _capture_lock:
        targets = [_log_file] + ([Path(log_file)] if log_file else [])
        for t in targets:
            t.parent.mkdir(parents=True, exist_ok=True)
        log_streams = [open(t, "a", buffering=1, encoding="utf-8", errors="replace") for t in targets]
        log = _Tee(log_streams)
        engine_thread = threading.get_ident()
        existing = {t.ident for t in threading.enumerate()} - {engine_thread}

        def is_engine() -> bool:
            # Threads that existed before the block are not the engine's; new ones are.
            return threading.get_ident() not in existing

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
        log_fd = os.open(targets[-1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # After the descriptors move, an fd-backed sys.stderr would write into the log:
        # other threads and our own progress get streams on the saved descriptors.
        others = {
            name: (
                stream
                if not _fd_backed(stream)
                else os.fdopen(os.dup(saved_fds[1 if name == "stdout" else 2]), "w", buffering=1)
            )
            for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr))
        }
        old_streams = (sys.stdout, sys.stderr)
        old_showwarning = warnings.showwarning
        # The shared log gets records through the loggers' own file handlers; an
        # engine's own log gets its thread's records here.
        handler = _ThreadHandler(is_engine, log_streams[1]) if log_file else None
        routers: tuple[_Router, ...] = ()
        try:
            for fd in (1, 2):
                os.dup2(log_fd, fd)
            routers = (_Router(is_engine, log, others["stdout"]), _Router(is_engine, log, others["stderr"]))
            sys.stdout, sys.stderr = routers

            def showwarning(message, category, filename, lineno, file=None, line=None):
                if is_engine():
                    log.write(warnings.formatwarning(message, category, filename, lineno, line))
                else:
                    old_showwarning(message, category, filename, lineno, file, line)

            warnings.showwarning = showwarning
            for name in _LOGGERS if handler else ():
                logging.getLogger(name).addHandler(handler)
            yield others["stderr"]
        finally:
            for name in _LOGGERS if handler else ():
                logging.getLogger(name).removeHandler(handler)
            warnings.showwarning = old_showwarning
            for stream in others.values():
                with contextlib.suppress(Exception):
                    stream.flush()
            # Descriptors first: the streams restored next may write to 1 and 2, which
            # must be the console again, never the log, by then.
            for fd, old in saved_fds.items():
                os.dup2(old, fd)
                os.close(old)
            for router, old in zip(routers, old_streams):
                router.retire(old)
            sys.stdout, sys.stderr = old_streams
            os.close(log_fd)
            for name, stream in others.items():
                if stream is not (old_streams[0] if name == "stdout" else old_streams[1]):
                    stream.close()
            log.close()


class _Tee(io.TextIOBase):
    def __init__(self, streams):
        self._streams = streams

    def write(self, text):
        for s in self._streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self._streams:
            s.flush()

    def close(self):
        for s in self._streams:
            with contextlib.suppress(Exception):
                s.close()


class _ThreadHandler(logging.Handler):
    """Engine threads' log records into the engine's own log (the shared log has them
    already through the loggers' file handlers)."""

    def __init__(self, is_engine, stream):
        super().__init__(logging.INFO)
        self._is_engine, self._stream = is_engine, stream
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record):
        if self._is_engine():
            with contextlib.suppress(Exception):
                self._stream.write(self.format(record) + "\n")


def bar_target(console) -> dict:
    """tqdm keyword arguments that put a bar of ours on ``console``.

    In a notebook ``progress.progress_bar`` draws a widget (through the display
    channel, never a stream) whatever ``file`` says; in a terminal the bar must be told
    to write to the console rather than to descriptor 2, which may point at a log.
    """
    return {"file": console} if _fd_backed(console) else {}


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
