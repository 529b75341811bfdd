"""Run a notebook headless (nbclient) and summarize what its cells produced."""

from __future__ import annotations

from pathlib import Path

from ..errors import LlmopsError


def run_notebook(
    path: Path, output: Path, *, timeout: int = 1800, cwd: Path | None = None, kernel_log: Path | None = None
):
    """Execute ``path`` on a fresh kernel, save the executed copy to ``output``.

    The kernel process's own console (its start-up warnings, e.g. "Kernel is running
    over TCP without encryption") goes to ``kernel_log`` (default: beside ``output``),
    not to the terminal running the notebook.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str((cwd or Path.cwd()).resolve())}},
    )
    kernel_log = Path(kernel_log or output.with_suffix(".kernel.log"))
    kernel_log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(kernel_log, "ab") as console:
            client.execute(stdout=console, stderr=console)
    except CellExecutionError as e:
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output)
        first = str(e).strip().splitlines()
        raise LlmopsError(f"{path} failed in a cell (executed copy: {output}): {first[-1] if first else e}") from e
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    return nb


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
