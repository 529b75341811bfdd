"""``%lance_migrate``: move a LanceDB table to a new embedding model, one step per call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.vectors.migration import STEPS, run_step
from ..errors import BadInput
from .args import parse_command
from .edge import user_errors

# The options each step takes, and what a step gets for one not given; any other is
# refused, not silently ignored. Values stay as typed: run_step checks them (core/options).
STEP_OPTIONS = {
    "plan": {"to": None},
    "start": {"to": None, "column": None},
    "backfill": {"batch": 256, "max_batches": None, "on": "kernel", "address": None, "concurrency": None},
    "index": {"min_rows": 5000},
    "shadow": {"queries": None, "k": 10, "labels": None},
    "finish": {"yes": False},
    "cutover": {},
    "rollback": {},
    "status": {},
}
OPTIONS = sorted({name for options in STEP_OPTIONS.values() for name in options})


@dataclass(frozen=True)
class MigrateCommand:
    """One parsed ``%lance_migrate`` line: a step, its table and the options that step takes."""

    kind: Literal["plan", "start", "backfill", "index", "shadow", "cutover", "rollback", "finish", "status"]
    table: str
    db: str | None = None
    options: dict = field(default_factory=dict)  # shadow's queries/labels: a notebook variable or a file

    @classmethod
    def from_args(cls, args) -> MigrateCommand:
        taken = STEP_OPTIONS[args.step]
        extra = [name for name in OPTIONS if getattr(args, name) not in (None, False) and name not in taken]
        if extra:
            raise UsageError(f"{args.step} takes no --{extra[0].replace('_', '-')}")
        if args.step in ("plan", "start") and not args.to:
            raise UsageError(f"{args.step} needs --to EMBEDDER_REF (e.g. minilm-cls, smollm2-mean)")
        if args.step == "shadow" and not args.queries:
            raise UsageError("shadow needs --queries VAR|FILE (a list of query strings)")
        options = {
            name: default if getattr(args, name) is None else getattr(args, name) for name, default in taken.items()
        }
        return cls(args.step, args.table, args.db, options)


def _load(ref: str, user_ns: dict, what: str):
    """A notebook variable by name, else a file (JSON, or one item per line)."""
    if ref in user_ns:
        return user_ns[ref]
    path = Path(ref).expanduser()
    if not path.is_file():
        raise BadInput(f"--{what} {ref!r} is neither a variable in this notebook nor a file")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as e:
            raise BadInput(f"--{what} {ref!r} is not valid JSON ({e})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _step_values(cmd: MigrateCommand, user_ns: dict) -> dict:
    """The keyword arguments of ``run_step``: variables and files read, ``finish`` confirmed."""
    values = dict(cmd.options)
    if cmd.kind == "shadow":
        queries = _load(values["queries"], user_ns, "queries")
        values["queries"] = [queries] if isinstance(queries, str) else list(queries)
        values["labels"] = _load(values["labels"], user_ns, "labels") if values["labels"] else None
    if cmd.kind == "finish":
        yes = values.pop("yes")
        if not yes:
            answer = input(f"finish drops the old vector column of {cmd.table!r} for good. Type yes to go on: ")
            yes = answer.strip().lower() in ("y", "yes")
        values["confirm"] = yes
    return values


@magics_class
class LanceMigrateMagics(Magics):
    """``%lance_migrate STEP TABLE [options]``."""

    @magic_arguments()
    @argument(
        "step",
        choices=list(STEPS),
        help="plan | start | backfill | index | shadow | cutover | rollback | finish | status",
    )
    @argument("table", help="LanceDB table name.")
    @argument("--db", default=None, help="LanceDB URI (default: <home>/lancedb).")
    @argument(
        "--to", default=None, help="plan/start: embedder ref (default-embedding, minilm-cls, smollm2-mean, a folder)."
    )
    @argument("--column", default=None, help="start: name of the new vector column.")
    @argument("--batch", default=None, help="backfill: rows per commit (default 256).")
    @argument("--max-batches", default=None, help="backfill: stop after this many batches.")
    @argument(
        "--on", default=None, choices=["kernel", "ray"], help="backfill: embed in this kernel (default) or on Ray."
    )
    @argument(
        "--address",
        default=None,
        help="backfill --on ray: the cluster (auto, ray://head:10001, host:port; default LlmopsMagics.ray_address).",
    )
    @argument("--concurrency", default=None, help="backfill --on ray: embedder actors (default 2).")
    @argument("--min-rows", default=None, help="index: smallest table that gets an ANN index (default 5000).")
    @argument("--queries", default=None, help="shadow: a variable or file with the queries.")
    @argument("--k", default=None, help="shadow: top-k compared (default 10).")
    @argument("--labels", default=None, help="shadow: variable or JSON file: relevant ids per query.")
    @argument("--yes", action="store_true", help="finish: drop the old column without asking.")
    @line_magic
    @user_errors
    def lance_migrate(self, line):
        """Run one migration step; the result is shown and bound to ``_lance_migrate``."""
        cmd = parse_command(self.lance_migrate, line, MigrateCommand)
        result = run_step(cmd.kind, cmd.table, db=cmd.db, **_step_values(cmd, self.shell.user_ns))
        self.shell.user_ns["_lance_migrate"] = result
        return result
