"""``%lance_migrate``: move a LanceDB table to a new embedding model, one step per call."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.vectors.migration import STEPS, run_step
from ..errors import BadInput
from .args import parse_line
from .edge import user_errors


@dataclass(frozen=True)
class Plan:
    to: str
    kind: Literal["plan"] = "plan"


@dataclass(frozen=True)
class Start:
    to: str
    column: str | None = None
    kind: Literal["start"] = "start"


# Numbers stay as typed here: run_step checks every option value (core/options).
@dataclass(frozen=True)
class Backfill:
    batch: int | str = 256
    max_batches: int | str | None = None
    kind: Literal["backfill"] = "backfill"


@dataclass(frozen=True)
class Index:
    min_rows: int | str = 5000
    kind: Literal["index"] = "index"


@dataclass(frozen=True)
class Shadow:
    queries: tuple
    k: int | str = 10
    labels: object = None
    kind: Literal["shadow"] = "shadow"


@dataclass(frozen=True)
class Finish:
    confirm: bool = False
    kind: Literal["finish"] = "finish"


@dataclass(frozen=True)
class NoOptions:
    kind: str


# Which options each subcommand takes: anything else is refused, not silently ignored.
ALLOWED = {
    "plan": {"to"},
    "start": {"to", "column"},
    "backfill": {"batch", "max_batches"},
    "index": {"min_rows"},
    "shadow": {"queries", "k", "labels"},
    "finish": {"yes"},
    "cutover": set(),
    "rollback": set(),
    "status": set(),
}
DEFAULTS = {
    "to": None,
    "column": None,
    "batch": None,
    "max_batches": None,
    "min_rows": None,
    "queries": None,
    "k": None,
    "labels": None,
    "yes": False,
}


def _load(ref: str, user_ns: dict, what: str):
    """A notebook variable by name, else a file (JSON, or one item per line)."""
    if ref in user_ns:
        return user_ns[ref]
    path = Path(ref).expanduser()
    if not path.is_file():
        raise BadInput(f"--{what} {ref!r} is neither a variable in this notebook nor a file")
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_command(args, user_ns: dict):
    """argparse namespace -> one frozen dataclass per subcommand."""
    extra = sorted(
        k for k, v in vars(args).items() if k in DEFAULTS and v not in (None, False) and k not in ALLOWED[args.step]
    )
    if extra:
        raise BadInput(f"{args.step} takes no --{extra[0].replace('_', '-')}")
    if args.step in ("plan", "start") and not args.to:
        raise BadInput(f"{args.step} needs --to EMBEDDER_REF (e.g. minilm-cls, smollm2-mean)")
    if args.step == "plan":
        return Plan(args.to)
    if args.step == "start":
        return Start(args.to, args.column)
    if args.step == "backfill":
        return Backfill(256 if args.batch is None else args.batch, args.max_batches)
    if args.step == "index":
        return Index(5000 if args.min_rows is None else args.min_rows)
    if args.step == "shadow":
        if not args.queries:
            raise BadInput("shadow needs --queries VAR|FILE (a list of query strings)")
        queries = _load(args.queries, user_ns, "queries")
        labels = _load(args.labels, user_ns, "labels") if args.labels else None
        return Shadow(
            tuple([queries] if isinstance(queries, str) else queries), 10 if args.k is None else args.k, labels
        )
    if args.step == "finish":
        return Finish(bool(args.yes))
    return NoOptions(args.step)


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
    @argument("--min-rows", default=None, help="index: smallest table that gets an ANN index (default 5000).")
    @argument("--queries", default=None, help="shadow: a variable or file with the queries.")
    @argument("--k", default=None, help="shadow: top-k compared (default 10).")
    @argument("--labels", default=None, help="shadow: variable or JSON file: relevant ids per query.")
    @argument("--yes", action="store_true", help="finish: drop the old column without asking.")
    @line_magic
    @user_errors
    def lance_migrate(self, line):
        """Run one migration step; the result is shown and bound to ``_lance_migrate``."""
        args = parse_line(self.lance_migrate, line)
        cmd = parse_command(args, self.shell.user_ns)
        options = {k: v for k, v in asdict(cmd).items() if k != "kind"}
        if cmd.kind == "finish" and not cmd.confirm:
            answer = input(f"finish drops the old vector column of {args.table!r} for good. Type yes to go on: ")
            options["confirm"] = answer.strip().lower() in ("y", "yes")
        if cmd.kind == "shadow":
            options["queries"] = list(options["queries"])
        result = run_step(cmd.kind, args.table, db=args.db, **options)
        self.shell.user_ns["_lance_migrate"] = result
        return result
