"""``%%shadow``: compare a candidate model with the primary on the same inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .. import config
from ..core.cost import parse_price_options
from ..core.shadow.run import shadow as run_shadow
from ..errors import BadInput
from .args import as_kwargs, parse_command
from .edge import user_errors


def parse_options(text: str | None, what: str) -> dict:
    """``{"dtype": "bfloat16"}`` or ``dtype=bfloat16,enforce_eager=false`` -> dict."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise BadInput(f'{what} is not valid JSON ({e.msg}): e.g. \'{{"dtype": "bfloat16"}}\'') from None
        if not isinstance(value, dict):
            raise BadInput(f"{what} must be a JSON object")
        return value
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{what}: {part!r} is not NAME=VALUE (e.g. dtype=bfloat16)")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw.strip()
    return out


@dataclass(frozen=True)
class ShadowCommand:
    """One parsed ``%%shadow`` line; the fields are ``shadow()``'s keyword arguments, values as typed.

    Engine args and thresholds are read from their text here (NAME=VALUE or JSON), so
    a malformed one is a usage error; core checks the values (``core/options``).
    """

    inputs: str | None  # a notebook variable's name; None: the cell holds the inputs
    primary: str | None  # None only with --baseline (the earlier run's answers are the primary)
    candidate: str | None  # None with --candidate-prompt: the primary's model
    prompt: str | None
    candidate_prompt: str | None
    n: int | str | None
    sample_seed: int | str
    max_tokens: int | str
    temperature: float | str
    seed: int | str
    judge: str | None
    name: str | None
    system: str | None
    engine_plan: str
    memory_limit_gb: float | str | None
    primary_engine_args: dict
    candidate_engine_args: dict
    backend: str | None
    log: bool
    adapter_mode: str
    threshold_options: dict  # --threshold NAME=VALUE: shadow()'s **threshold_options
    from_traces: str | None
    trace_filter: str | None
    since: str | None
    from_dataset: str | None
    baseline: str | None
    baseline_side: str
    scorers: tuple  # names of Scorer objects in the notebook namespace
    max_scorer_calls: int | str | None
    prices: dict  # --price REF=PRICE (repeatable), each price checked here: a malformed one is one line
    on: str  # kernel | ray: where the sides are generated (core checks the value)
    address: str | None  # the Ray cluster; None: Settings.ray_address
    concurrency: int | str | None  # generator actors per side on Ray

    @classmethod
    def from_args(cls, args) -> ShadowCommand:
        return cls(
            inputs=args.inputs,
            primary=args.primary,
            candidate=args.candidate,
            prompt=args.prompt,
            candidate_prompt=args.candidate_prompt,
            n=args.n,
            sample_seed=args.sample_seed,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed,
            judge=args.judge,
            name=args.name,
            system=args.system,
            engine_plan=args.engine_plan,
            memory_limit_gb=args.memory_limit_gb,
            primary_engine_args=parse_options(args.primary_engine_args, "--primary-engine-args"),
            candidate_engine_args=parse_options(args.candidate_engine_args, "--candidate-engine-args"),
            backend=args.backend,
            log=not args.no_log,
            adapter_mode=args.adapter_mode,
            threshold_options=parse_options(",".join(args.threshold), "--threshold"),
            from_traces=args.from_traces,
            trace_filter=args.filter,
            since=args.since,
            from_dataset=args.from_dataset,
            baseline=args.baseline,
            baseline_side=args.baseline_side,
            scorers=tuple(args.scorer),
            max_scorer_calls=args.max_scorer_calls,
            prices=parse_price_options(args.price),
            on=args.on,
            address=args.address,
            concurrency=args.concurrency,
        )


@magics_class
class ShadowMagics(Magics):
    """``%%shadow`` (``%shadow ... --inputs VAR`` as a line): the result is shown and bound to ``_shadow``.

    Cases from elsewhere use the line form: ``%shadow --from-traces APP ...``,
    ``--from-dataset NAME`` or ``--baseline RUN_ID``.
    """

    @magic_arguments()
    @argument(
        "--primary",
        default=None,
        help="Model ref in production now (e.g. chat@champion), or 'recorded' (the answers the traces hold).",
    )
    @argument(
        "--candidate",
        default=None,
        help="Model ref to compare (e.g. chat@challenger); default with --candidate-prompt: the primary's.",
    )
    @argument("--prompt", default=None, help="Prompt ref; inputs fill its template variables.")
    @argument(
        "--candidate-prompt",
        default=None,
        help="Another version of --prompt for the candidate (e.g. summarize/3): compares prompt versions.",
    )
    @argument("--inputs", default=None, help="Name of a list or pandas DataFrame/Series in the namespace.")
    @argument("--n", default=None, help="Compare a reproducible sample of N inputs.")
    @argument("--sample-seed", default=0, help="Seed of the --n sample.")
    @argument("--max-tokens", default=128, help="Most tokens per answer.")
    @argument("--temperature", default=0.0, help="0 = greedy (same on both sides).")
    @argument("--seed", default=0, help="Sampling seed (same on both sides).")
    @argument("--judge", default=None, help="Chat model ref stating a pairwise preference per case.")
    @argument("--name", default=None, help="Name of the comparison (MLflow run name).")
    @argument("--system", default=None, help="System message for plain-text inputs.")
    @argument("--primary-engine-args", default=None, help="Serving options of the primary, JSON or k=v,k=v.")
    @argument("--candidate-engine-args", default=None, help="Serving options of the candidate, e.g. dtype=bfloat16.")
    @argument("--engine-plan", default="auto", help="auto | together | one-at-a-time: two engines or one at a time.")
    @argument("--memory-limit-gb", default=None, help="Memory two engines may use together.")
    @argument(
        "--adapter-mode",
        default="auto",
        help="auto | merged | lora: serve a LoRA side from a merged copy (base speed) or per request.",
    )
    @argument("--threshold", action="append", default=[], help="NAME=VALUE, e.g. max_differing_rate=0.1.")
    @argument("--from-traces", default=None, help="MLflow experiment (name or id) whose traces are the cases.")
    @argument("--filter", default=None, help="MLflow trace filter, e.g. \"tags.route = 'refunds'\".")
    @argument("--since", default=None, help="Only traces of the last 7d, 12h, 30m...")
    @argument("--from-dataset", default=None, help="MLflow evaluation dataset whose records are the cases.")
    @argument("--baseline", default=None, help="Run id of an earlier shadow run: its recorded answers are the primary.")
    @argument("--baseline-side", default="candidate", help="Which side of the --baseline run to replay.")
    @argument("--scorer", action="append", default=[], help="Name of an MLflow Scorer in the notebook (repeatable).")
    @argument("--max-scorer-calls", default=None, help="Refuse a run whose scorers would be called more often.")
    @argument(
        "--price",
        action="append",
        default=[],
        help="REF=PRICE (repeatable): 'chat@challenger=0.15/1M in,0.60/1M out' or 'chat@champion=2.50/h'.",
    )
    @argument("--backend", choices=list(config.BACKENDS), default=None, help="Override the backend.")
    @argument("--no-log", action="store_true", help="Do not record an MLflow run.")
    @argument(
        "--on",
        default="kernel",
        help="kernel | ray: generate in this kernel (default) or as Ray Data passes on a Ray cluster.",
    )
    @argument(
        "--address",
        default=None,
        help="Ray cluster with --on ray: auto, ray://head:10001, host:6379 (default: LlmopsMagics.ray_address).",
    )
    @argument("--concurrency", default=None, help="Generator actors per side with --on ray (default 1).")
    @line_cell_magic
    @user_errors
    def shadow(self, line, cell=None):
        """Run both models over the inputs; show the verdict; bind ``_shadow``."""
        cmd = parse_command(self.shadow, line, ShadowCommand)
        inputs = self._inputs(cmd.inputs, cell or "")
        scorers = [self._scorer(name) for name in cmd.scorers]
        kwargs = as_kwargs(cmd, "inputs", "threshold_options", "scorers")
        result = run_shadow(inputs, **kwargs, scorers=scorers, **cmd.threshold_options)
        self.shell.user_ns["_shadow"] = result
        return result

    def _scorer(self, name: str):
        if name not in self.shell.user_ns:
            raise BadInput(f"--scorer {name}: no variable named {name!r} in the notebook (define it with @scorer)")
        return self.shell.user_ns[name]

    def _inputs(self, var: str | None, cell: str):
        if var is None:
            return cell or None
        if cell.strip():
            raise BadInput("give inputs either in the cell or with --inputs, not both")
        if var not in self.shell.user_ns:
            raise BadInput(f"--inputs {var}: no variable named {var!r} in the notebook")
        return self.shell.user_ns[var]
