"""Our progress bars, through one door, so a saved notebook never shows a bar stuck at 0%.

tqdm.auto draws an ipywidget in a kernel: the output a notebook saves keeps the text of
the moment the widget was first shown ("0%|") plus a view of a model that is gone once
the kernel stops, so a saved notebook looks as if it hung; and a widget view replaced
while it is still rendering its children crashes ipywidgets' box view in JupyterLab. A
bar of ours in a kernel is tqdm's own meter drawn as plain HTML (a ``<progress>`` and
tqdm's text) under a display id, updated through ``update_display_data`` at tqdm's pace,
and replaced on close by one finished line (``primary: chat/1 · 6/6 · 1.2 s``).
JupyterLab and nbclient both apply those updates to the output they save; no widget,
no widget state. In a terminal it is tqdm's own bar on the console it is given
(``engine_logs.bar_target``).

IPython is imported only when a bar is drawn inside a kernel.
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm as _console_tqdm

_cell_class = None  # built on first use: it needs IPython


def progress_bar(*args, postfix: bool = True, **kwargs):
    """A progress bar that takes tqdm's arguments, as ``tqdm.auto.tqdm`` does.

    Parameters
    ----------
    *args, **kwargs
        tqdm's own (``total``, ``desc``, ``unit``, ``unit_scale``, ``bar_format``,
        ``disable``, ``file``, ...). ``file`` matters only outside a kernel.
    postfix : bool
        Show the postfix a caller (e.g. vLLM) sets; ``False`` keeps the bar to our
        description and counts.

    Returns
    -------
    tqdm
        In a kernel an HTML bar whose output becomes :func:`summary_line` on close;
        elsewhere tqdm's console bar.
    """
    if kwargs.get("disable"):
        return _console_tqdm(*args, **kwargs)
    if in_kernel():
        cls = _cell_bar_class()
    else:
        cls = _console_tqdm
    if not postfix:
        cls = _without_postfix(cls)
    return cls(*args, **kwargs)


def in_kernel() -> bool:
    """Whether bars go to a Jupyter kernel's display."""
    ipython = sys.modules.get("IPython")
    if ipython is None:  # a kernel has always imported IPython by now
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # a half-imported IPython: tqdm's console bar
        return False
    return shell is not None and "IPKernelApp" in shell.config


def summary_line(bar, *, stopped: bool = False) -> str:
    """One line that says what a finished bar did: ``desc · 6/6 · 1.2 s``.

    A bar with its own ``bar_format`` and no bar in it (a status line such as
    ``vLLM engine for chat ready (float32, cpu) in 14 s``) keeps its own words.
    """
    d = bar.format_dict
    fmt = d.get("bar_format")
    if fmt and not any(k in fmt for k in ("{bar", "{l_bar", "{r_bar", "{percentage")):
        return _console_tqdm.format_meter(**{**d, "ncols": None}).strip()
    n, total = d.get("n") or 0, d.get("total")
    unit = d.get("unit") or "it"
    scaled = bool(d.get("unit_scale"))

    def count(x) -> str:
        if scaled:
            size = _console_tqdm.format_sizeof(x, divisor=d.get("unit_divisor") or 1000)
            return size + (unit if unit != "it" else "")
        return f"{x:g}" if isinstance(x, float) else str(x)

    if total:
        done = count(total) if scaled else f"{count(n)}/{count(total)}"
        counted = done if n >= total and not stopped else f"stopped at {count(n)}/{count(total)}"
    elif scaled or unit == "it":
        counted = count(n) + (" (stopped)" if stopped else "")
    else:
        counted = f"{count(n)} {unit}{'' if n == 1 else 's'}" + (" (stopped)" if stopped else "")
    desc = (d.get("prefix") or "").strip().rstrip(":").strip()
    return " · ".join(p for p in (desc, counted, _seconds(d.get("elapsed") or 0.0)) if p)


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60)} s"


class _Nowhere:
    """The stream a cell bar's tqdm writes to: its drawing goes through the display."""

    def write(self, _text) -> None:
        pass

    def flush(self) -> None:
        pass


def _cell_bar_class():
    global _cell_class
    if _cell_class is not None:
        return _cell_class
    # deferred: IPython exists only where a kernel draws the bar
    from html import escape

    from IPython.display import display

    class CellBar(_console_tqdm):
        """tqdm's meter as HTML under a display id, replaced by a summary line on close."""

        def __init__(self, *args, **kwargs):
            self._handle = None
            self._stopped = False
            # A display message per redraw: a few a second are plenty for a person.
            kwargs.setdefault("mininterval", 0.5)
            kwargs["file"] = _Nowhere()
            desc = kwargs.get("desc") or "working"
            if not kwargs.get("disable"):
                self._handle = display({"text/plain": f"{desc} · running"}, raw=True, display_id=True)
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            if self._handle is None or msg == "":  # "": tqdm clearing a bar it does not leave
                return True
            d = self.format_dict
            meter = _console_tqdm.format_meter(**{**d, "ncols": None})
            desc = (d.get("prefix") or "").strip().rstrip(":").strip()
            # What a copy saved mid-run says: where it got to, never a bar at "0%|".
            plain = f"{desc or 'working'} · running" if not d.get("n") else meter
            total, n = d.get("total"), d.get("n") or 0
            gauge = f"<progress value='{n}' max='{total}' style='width:12em'></progress> " if total else ""
            html = f"<div class='llmops-progress'>{gauge}<code>{escape(meter)}</code></div>"
            self._handle.update({"text/plain": plain, "text/html": html}, raw=True)
            return True

        def __exit__(self, exc_type, exc_value, traceback):
            self._stopped = exc_type is not None
            return super().__exit__(exc_type, exc_value, traceback)

        def close(self):
            if self.disable:
                return
            stopped = self._stopped or bool(self.total and self.n < self.total)
            handle, self._handle = self._handle, None  # no redraw while tqdm closes
            super().close()
            if handle is not None:
                handle.update({"text/plain": summary_line(self, stopped=stopped)}, raw=True)

    _cell_class = CellBar
    return CellBar


def _without_postfix(cls):
    class NoPostfix(cls):
        @property
        def postfix(self):
            return None

        @postfix.setter
        def postfix(self, _value):
            pass

    return NoPostfix
