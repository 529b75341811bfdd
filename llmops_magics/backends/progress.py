"""Our progress bars, through one door, so a saved notebook never shows a bar stuck at 0%.

In a kernel tqdm draws a widget, and the output a notebook saves keeps the text that was
current when the widget was first shown ("0%|") plus a view of a model that is gone once
the kernel stops: a saved notebook looks as if it hung. A bar of ours is displayed with a
display id instead and, when it closes, that output is replaced by one finished line
(``primary: chat/1 · 6/6 · 1.2 s``) through ``update_display_data``, which JupyterLab and
nbclient both apply to the output they save. In a terminal it is tqdm's own bar on the
console it is given (``engine_logs.bar_target``).

IPython and ipywidgets are imported only when a bar is drawn inside a kernel.
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm as _console_tqdm

_cell_class = None  # built on first use: it needs IPython and ipywidgets


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
        In a kernel a widget bar whose output becomes :func:`summary_line` on close;
        elsewhere tqdm's console bar.
    """
    if kwargs.get("disable"):
        return _console_tqdm(*args, **kwargs)
    if in_kernel():
        cls = _cell_bar_class()
        kwargs.pop("file", None)  # the widget goes through the display channel
    else:
        cls = _console_tqdm
    if not postfix:
        cls = _without_postfix(cls)
    return cls(*args, **kwargs)


def in_kernel() -> bool:
    """Whether bars go to a Jupyter kernel's display (with widgets available)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:  # a kernel has always imported IPython by now
        return False
    try:
        shell = ipython.get_ipython()
        if shell is None or "IPKernelApp" not in shell.config:
            return False
        from tqdm.notebook import IProgress  # deferred: pulls in ipywidgets, kernels only
    except Exception:  # no usable IPython or ipywidgets: tqdm's console bar
        return False
    return IProgress is not None


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


class _Line:
    """A display object of one plain line (what a closed bar leaves in the cell)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": self.text}


def _cell_bar_class():
    global _cell_class
    if _cell_class is not None:
        return _cell_class
    # deferred: IPython and ipywidgets exist only where a kernel draws the bar
    from IPython.display import display
    from tqdm.notebook import tqdm as notebook_tqdm

    class CellBar(notebook_tqdm):
        """tqdm's widget, shown under a display id and replaced by a summary on close."""

        def __init__(self, *args, **kwargs):
            self._handle = None
            self._stopped = False
            super().__init__(*args, **{**kwargs, "display": False})
            if self.disable:
                return
            bundle = dict(self.container._repr_mimebundle_())
            # What a copy saved mid-run says: no "0%|" even if the kernel never finishes.
            bundle["text/plain"] = f"{self.desc or 'working'} · running"
            self._handle = display(bundle, raw=True, display_id=True)
            self.displayed = True

        def __exit__(self, exc_type, exc_value, traceback):
            self._stopped = exc_type is not None
            return super().__exit__(exc_type, exc_value, traceback)

        def close(self):
            if self.disable:
                return
            stopped = self._stopped or bool(self.total and self.n < self.total)
            super().close()
            handle, self._handle = self._handle, None
            if handle is None:
                return
            handle.update(_Line(summary_line(self, stopped=stopped)))
            _close_tree(self.container)  # its output is gone: free its widgets everywhere

    _cell_class = CellBar
    return CellBar


def _close_tree(widget, seen=None) -> None:
    """Close a widget and the widgets it holds (children, layout, style): a saved
    notebook then keeps no state for a bar that is no longer shown."""
    from ipywidgets import Widget  # deferred: only a kernel's bar has widgets

    seen = set() if seen is None else seen
    if id(widget) in seen:
        return
    seen.add(id(widget))
    for name in widget.keys:
        value = getattr(widget, name, None)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, Widget):
                _close_tree(item, seen)
    try:
        widget.close()
    except Exception:  # a kernel shutting down has no comm left to close
        pass


def _without_postfix(cls):
    class NoPostfix(cls):
        @property
        def postfix(self):
            return None

        @postfix.setter
        def postfix(self, _value):
            pass

    return NoPostfix
