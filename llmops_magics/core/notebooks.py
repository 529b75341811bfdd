"""Run a notebook headless (nbclient) and summarize what its cells produced."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LlmopsError


def run_notebook(
    path: Path, output: Path, *, timeout: int = 1800, cwd: Path | None = None, kernel_log: Path | None = None
):
    """Execute ``path`` on a fresh kernel, save the executed copy to ``output``.

    The kernel process's own console (its start-up warnings, e.g. "Kernel is running
    over TCP without encryption") goes to ``kernel_log`` (default: beside ``output``),
    not to the terminal running the notebook. The copy keeps the state of the widgets
    still open at the end (a saved review widget renders without a kernel), and the
    kernel knows its notebook as JupyterLab tells it (``JPY_SESSION_NAME``), so lineage
    and MLflow name the notebook.
    """
    # deferred: nbformat and nbclient are needed only where notebooks are executed
    import nbformat
    from nbclient.exceptions import CellExecutionError

    workdir = (cwd or Path.cwd()).resolve()
    nb = nbformat.read(path, as_version=4)
    client = _client_class()(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    kernel_log = Path(kernel_log or output.with_suffix(".kernel.log"))
    kernel_log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JPY_SESSION_NAME": session_name(path, workdir)}
    try:
        with open(kernel_log, "ab") as console:
            client.execute(stdout=console, stderr=console, env=env)
    except CellExecutionError as e:
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
        first = str(e).strip().splitlines()
        raise LlmopsError(f"{path} failed in a cell (executed copy: {output}): {first[-1] if first else e}") from e
    _as_the_kernel_says(nb)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    return nb


def _as_the_kernel_says(nb) -> None:
    """The kernelspec as the kernel that ran it names itself (nbclient keeps the source's
    ``display_name``): JupyterLab rewrites a differing one on open, which would mark a
    notebook modified just by being opened."""
    # deferred: jupyter_client is loaded by nbclient already, needed only here
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return
    nb.metadata["kernelspec"] = {"display_name": spec.display_name, "language": spec.language, "name": "python3"}


def session_name(path: Path, workdir: Path) -> str:
    """The notebook's path as the kernel is told it: relative to the kernel's working
    folder, else to this process's, else as it is."""
    full = Path(path).resolve()
    for root in (workdir, Path.cwd().resolve()):
        try:
            return full.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(full)


def _client_class():
    # deferred: nbclient loads jupyter_client and zmq, needed only here
    from nbclient import NotebookClient

    class Client(NotebookClient):
        """Forgets a widget's saved state when the kernel closes it: a finished progress
        bar leaves a line of text, not a model in the notebook's metadata."""

        def handle_comm_msg(self, outs, msg, cell_index):
            super().handle_comm_msg(outs, msg, cell_index)
            if msg["msg_type"] == "comm_close":
                comm_id = msg["content"].get("comm_id")
                self.widget_state.pop(comm_id, None)
                self.widget_buffers.pop(comm_id, None)

    return Client


def cell_text(cell) -> str:
    """The text/plain of a code cell's outputs (results and streams), joined."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(out.get("text", ""))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def summarize(nb) -> str:
    """One block per code cell: its first source line and the start of its output."""
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        head = cell.source.strip().splitlines()[0]
        text = cell_text(cell).strip()
        lines.append(f"[{cell.get('execution_count')}] {head}")
        for out_line in text.splitlines()[:4]:
            lines.append(f"      {out_line[:110]}")
    return "\n".join(lines)
