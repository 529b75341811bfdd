"""``%llm_watch``: an app's traces over time: decay per bucket, input drift, canary splits."""

from __future__ import annotations

from dataclasses import dataclass

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.watch.run import watch
from ..errors import BadInput
from .args import as_kwargs, parse_command
from .edge import user_errors


@dataclass(frozen=True)
class WatchCommand:
    """One parsed ``%llm_watch`` line; the fields are ``watch()``'s keywords, values as typed
    (core checks them). ``scorers`` are names: a notebook variable, else ``module:function``."""

    experiment: str
    scorers: tuple
    since: str
    by: str
    baseline: str | None
    filter: str | None
    split: str | None
    canary: str | None
    margin: str
    n: str | None
    sample_seed: str
    rescore: bool
    max_scorer_calls: str | None
    alpha: str
    drift: bool
    log: bool
    name: str | None

    @classmethod
    def from_args(cls, args) -> WatchCommand:
        return cls(
            experiment=args.experiment,
            scorers=tuple(args.scorer),
            since=args.since,
            by=args.by,
            baseline=args.baseline,
            filter=args.filter,
            split=args.split,
            canary=args.canary,
            margin=args.margin,
            n=args.n,
            sample_seed=args.sample_seed,
            rescore=args.rescore,
            max_scorer_calls=args.max_scorer_calls,
            alpha=args.alpha,
            drift=not args.no_drift,
            log=not args.no_log,
            name=args.name,
        )


def add_watch_arguments(add) -> None:
    """The options ``%llm_watch`` and ``llmops-magics watch`` share (``add`` is an
    ``add_argument``), so the two doors cannot drift apart."""
    add("--since", default="7d", help="The watched window: the last 30d, 12h, 2w... (default 7d).")
    add("--by", default="day", help="Bucket size: hour | day | week (UTC calendar buckets).")
    add(
        "--baseline",
        default=None,
        help="The D before the window is the baseline (e.g. 14d); default: the window's earliest third of traces.",
    )
    add("--filter", default=None, help="MLflow trace filter, e.g. \"tags.route = 'refunds'\".")
    add("--split", default=None, help="Canary: compare the groups of this trace tag or metadata key (tags.variant).")
    add("--canary", default=None, help="With --split: the canary's value (default: every group against the largest).")
    add("--margin", default="0.05", help="With --split: the largest difference still equivalent.")
    add("--n", default=None, help="Watch a reproducible sample of N traces.")
    add("--sample-seed", default="0", help="Seed of the --n sample.")
    add("--rescore", action="store_true", help="Score again even where an assessment of the same scorer exists.")
    add("--max-scorer-calls", default=None, help="Refuse a watch whose scorers would be called more often.")
    add("--alpha", default="0.05", help="Chance of any false flag on stable traffic (Holm across buckets and scorers).")
    add("--no-drift", action="store_true", help="Skip input drift (no embeddings).")
    add("--no-log", action="store_true", help="Do not record an MLflow run.")
    add("--name", default=None, help="Name of the watch (MLflow run name).")


def _watch_arguments(fn):
    for args, kwargs in reversed(_OPTIONS):
        fn = argument(*args, **kwargs)(fn)
    return fn


_OPTIONS: list = [
    (("experiment",), {"help": "The app's MLflow experiment (name or id)."}),
    (
        ("--scorer",),
        {
            "action": "append",
            "default": [],
            "help": "An MLflow Scorer in the notebook, or module:function (repeatable).",
        },
    ),
]
add_watch_arguments(lambda *a, **kw: _OPTIONS.append((a, kw)))


@magics_class
class WatchMagics(Magics):
    """``%llm_watch APP --scorer NAME --since 30d --by day``: the result is shown and bound to ``_watch``."""

    @magic_arguments()
    @_watch_arguments
    @line_magic
    @user_errors
    def llm_watch(self, line):
        """Score the app's traces per bucket against a baseline; flag drops, input drift and a worse canary."""
        cmd = parse_command(self.llm_watch, line, WatchCommand)
        scorers = [self._scorer(name) for name in cmd.scorers]
        result = watch(**as_kwargs(cmd, "scorers"), scorers=scorers)
        self.shell.user_ns["_watch"] = result
        return result

    def _scorer(self, name: str):
        if name in self.shell.user_ns:
            return self.shell.user_ns[name]
        if ":" in name:
            return name  # module:function, loaded by core (one line when it cannot be)
        raise BadInput(
            f"--scorer {name}: no variable named {name!r} in the notebook (define it with @scorer, "
            "or give module:function)"
        )
