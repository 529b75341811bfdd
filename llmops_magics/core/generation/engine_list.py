"""``%llm_engines``: the engines this kernel holds, stop one, read one's log."""

from __future__ import annotations

from dataclasses import dataclass

from ...backends.engine_logs import tail
from ..display import esc, html_table, text_table
from . import engines

_HEADERS = ["#", "name", "models", "backend", "dtype", "device", "memory", "uptime", "log"]


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass
class EngineTable:
    """What ``%llm_engines`` shows: one row per engine."""

    rows: list[list]

    def to_pandas(self):
        import pandas as pd  # deferred: pandas takes a second to import, and only this needs it

        return pd.DataFrame(self.rows, columns=_HEADERS)

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not self.rows:
            text = "no engines loaded: %%llm or %%shadow starts one"
            return {"text/plain": text, "text/html": f"<div>{esc(text)}</div>"}
        return {
            "text/plain": text_table(_HEADERS, self.rows),
            "text/html": f"<div class='llmops-engines'>{html_table(_HEADERS, self.rows)}</div>",
        }


def list_engines() -> EngineTable:
    """The engines this kernel holds: model, backend, dtype, device, memory, uptime, log path."""
    rows = [
        [
            i,
            e.name,
            ", ".join(e.models),
            e.backend,
            e.dtype,
            e.device,
            _size(e.memory_bytes),
            _duration(e.uptime_s),
            str(e.log_file),
        ]
        for i, e in enumerate(engines.engines(), 1)
    ]
    return EngineTable(rows)


def stop_engine(name: str) -> str:
    """Stop one engine and free its memory; returns what was done, in words."""
    engine = engines.find_engine(name)
    engines.release(engine.generator)
    return f"stopped {engine.name} (it held {_size(engine.memory_bytes)})"


@dataclass
class EngineLog:
    """The last lines of one engine's own log."""

    name: str
    path: str
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def _repr_mimebundle_(self, include=None, exclude=None):
        head = f"log of {self.name}: {self.path} (last {len(self.lines)} lines)"
        body = "\n".join(self.lines) or "(empty)"
        return {
            "text/plain": f"{head}\n{body}",
            "text/html": f"<div><b>{esc(head)}</b><pre style='white-space:pre-wrap'>{esc(body)}</pre></div>",
        }


def engine_log(name: str, lines: int = 200) -> EngineLog:
    """The last ``lines`` lines of an engine's own log (what it wrote while starting and generating)."""
    engine = engines.find_engine(name)
    return EngineLog(engine.name, str(engine.log_file), tail(engine.log_file, lines))
