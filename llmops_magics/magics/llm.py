"""``LlmopsMagics``: the settings every magic shares, and ``%%llm``."""

from __future__ import annotations

from dataclasses import dataclass

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default, observe

from .. import config
from ..core.generation.llm import llm as run_llm
from ..core.registry.prompts import parse_variables
from .args import as_kwargs, parse_command
from .edge import user_errors


@dataclass(frozen=True)
class LlmCommand:
    """One parsed ``%%llm`` line; the fields are ``llm()``'s keyword arguments, values as typed."""

    model: str | None
    system: str | None
    max_tokens: int | str
    temperature: float | str
    seed: int | str
    each_line: bool
    backend: str | None
    log: bool
    prompt: str | None
    variables: dict  # --var NAME=VALUE, read here so a malformed one is a usage error
    price: str | None = None  # --price '2.50/h' or '0.15/1M in,0.60/1M out'; core checks it

    @classmethod
    def from_args(cls, args) -> LlmCommand:
        return cls(
            model=args.model,
            system=args.system,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed,
            each_line=args.each_line,
            backend=args.backend,
            log=not args.no_log,
            prompt=args.prompt,
            variables=parse_variables(args.var),
            price=args.price,
        )


@magics_class
class LlmopsMagics(Magics):
    """Settings (``%config LlmopsMagics.<name> = ...``) and the ``%%llm`` magic."""

    home = Unicode(config=True, help="Folder of the embedded stores (MLflow sqlite, LanceDB, lineage).")
    tracking_uri = Unicode(config=True, help="MLflow tracking URI; empty: sqlite under home.")
    backend = Enum(list(config.BACKENDS), config=True, help="auto | vllm | transformers | openai.")
    endpoint = Unicode(config=True, help="OpenAI-compatible base URL for the openai backend.")
    default_model = Unicode(config=True, help="Model ref used when --model is omitted.")
    engine_args = Dict(config=True, help="Extra vLLM engine arguments, e.g. {'enforce_eager': False}.")
    verbose = Bool(config=True, help="Show engine logs in the output instead of the log file.")
    ui_url = Unicode(config=True, help="MLflow UI base URL (e.g. from `llmops-magics ui`); results link their runs.")
    short_errors = Bool(True, config=True, help="Show errors as one line; False brings tracebacks back.")
    mlflow_timeout_s = Float(config=True, help="Most seconds MLflow may add to one command; then it goes on without.")
    redact_text = Unicode(
        config=True, help="'module:function' (str -> str) run on every request/response read from traces or datasets."
    )
    max_scorer_calls = Integer(
        config=True, help="Most scorer/judge calls one %shadow may make (refused before it runs)."
    )
    protected_aliases = List(
        Unicode(), config=True, help="Aliases only %llm_promote (or --force --why) may move, e.g. ['champion']."
    )
    prices = Dict(
        config=True, help="Model ref -> price ('0.15/1M in,0.60/1M out' or '2.50/h'): cost per 1,000 requests."
    )
    ray_address = Unicode(
        config=True, help="Ray cluster for --on ray ('auto', 'ray://head:10001'); empty starts a local Ray."
    )

    @default("home")
    def _d_home(self):
        return str(config.settings().home)

    @default("tracking_uri")
    def _d_tracking(self):
        return config.settings().tracking_uri

    @default("backend")
    def _d_backend(self):
        return config.settings().backend

    @default("endpoint")
    def _d_endpoint(self):
        return config.settings().endpoint

    @default("default_model")
    def _d_model(self):
        return config.settings().default_model

    @default("engine_args")
    def _d_engine_args(self):
        return dict(config.settings().engine_args)

    @default("verbose")
    def _d_verbose(self):
        return config.settings().verbose

    @default("ui_url")
    def _d_ui_url(self):
        return config.settings().ui_url

    @default("mlflow_timeout_s")
    def _d_mlflow_timeout(self):
        return config.settings().mlflow_timeout_s

    @default("redact_text")
    def _d_redact_text(self):
        return config.settings().redact_text

    @default("max_scorer_calls")
    def _d_max_scorer_calls(self):
        return config.settings().max_scorer_calls

    @default("protected_aliases")
    def _d_protected_aliases(self):
        return list(config.settings().protected_aliases)

    @default("prices")
    def _d_prices(self):
        return dict(config.settings().prices)

    @default("ray_address")
    def _d_ray_address(self):
        return config.settings().ray_address

    @observe(
        "home",
        "tracking_uri",
        "backend",
        "endpoint",
        "default_model",
        "engine_args",
        "verbose",
        "ui_url",
        "mlflow_timeout_s",
        "redact_text",
        "max_scorer_calls",
        "protected_aliases",
        "prices",
        "ray_address",
    )
    def _push_setting(self, change):
        # A rejected value (e.g. backend=openai without an endpoint) raises ConfigError here.
        config.configure(**{change["name"]: change["new"]})

    @magic_arguments()
    @argument("--model", "-m", default=None, help="Model ref (default: LlmopsMagics.default_model).")
    @argument("--system", "-s", default=None, help="System message.")
    @argument("--max-tokens", default=128, help="Most tokens to generate.")
    @argument("--temperature", "-t", default=0.0, help="0 = greedy.")
    @argument("--seed", default=0, help="Sampling seed.")
    @argument("--each-line", action="store_true", help="One prompt per non-empty line.")
    @argument("--backend", choices=list(config.BACKENDS), default=None, help="Override the backend.")
    @argument("--no-log", action="store_true", help="Do not record an MLflow run.")
    @argument(
        "--prompt",
        default=None,
        help="Prompt ref, e.g. summarize@production (pins apply); the cell fills its unset variable.",
    )
    @argument("--var", action="append", default=[], help="Template variable NAME=VALUE (repeatable).")
    @argument(
        "--price",
        default=None,
        help="Price: '2.50/h' (serving hardware) or '0.15/1M in,0.60/1M out'; shows the cost of 1,000 requests.",
    )
    @cell_magic
    @user_errors
    def llm(self, line, cell):
        """Send the cell to a chat model; the result is shown and bound to ``_llm``."""
        cmd = parse_command(self.llm, line, LlmCommand)
        result = run_llm(cell, **as_kwargs(cmd))
        self.shell.user_ns["_llm"] = result
        return result
