"""``%adapter_check``: will this LoRA adapter survive the new base model?"""

from __future__ import annotations

from dataclasses import dataclass, replace

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.adapter.check import check_adapter
from .args import as_kwargs, parse_command
from .edge import user_errors


@dataclass(frozen=True)
class AdapterCommand:
    """One parsed ``%adapter_check`` line; the fields are ``check_adapter()``'s keyword arguments."""

    adapter: str
    base: str
    old_base: str | None
    probes: object  # as typed: a notebook variable's name or a file; the magic resolves it
    max_lora_rank: int | str
    backend: str | None
    behavior: bool
    max_new_tokens: int | str
    log: bool

    @classmethod
    def from_args(cls, args) -> AdapterCommand:
        return cls(
            adapter=args.adapter,
            base=args.base,
            old_base=args.old_base,
            probes=args.probes or None,
            max_lora_rank=args.max_lora_rank,
            backend=args.backend,
            behavior=not args.static_only,
            max_new_tokens=args.max_new_tokens,
            log=not args.no_log,
        )


@magics_class
class AdapterMagics(Magics):
    """``%adapter_check ADAPTER --base NEW_BASE``."""

    @magic_arguments()
    @argument("adapter", help="Adapter folder or registered adapter ref.")
    @argument("--base", required=True, help="The new base model ref.")
    @argument("--old-base", default=None, help="The base the adapter was trained on (default: its own config's).")
    @argument("--probes", default=None, help="A variable holding a list of prompts, or a .json/.jsonl/.txt file.")
    @argument("--max-lora-rank", default=16, help="max_lora_rank of the vLLM server that will serve it.")
    @argument("--backend", choices=["vllm", "transformers"], default=None, help="Behavioral check backend.")
    @argument("--max-new-tokens", default=16, help="Length of each reference continuation.")
    @argument("--static-only", action="store_true", help="Skip the behavioral check.")
    @argument("--no-log", action="store_true", help="Do not record an MLflow run.")
    @line_magic
    @user_errors
    def adapter_check(self, line):
        """Check an adapter against a new base; the report is shown and bound to ``_adapter_report``."""
        cmd = parse_command(self.adapter_check, line, AdapterCommand)
        if cmd.probes:
            # A name in the namespace wins over a file of the same name: that is what was typed.
            cmd = replace(cmd, probes=self.shell.user_ns.get(cmd.probes, cmd.probes))
        report = check_adapter(**as_kwargs(cmd))
        self.shell.user_ns["_adapter_report"] = report
        return report
