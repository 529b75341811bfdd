"""``%adapter_check``: will this LoRA adapter survive the new base model?"""

from __future__ import annotations

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.adapter.check import check_adapter
from .args import parse_line
from .edge import user_errors


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
        args = parse_line(self.adapter_check, line)
        # A name in the namespace wins over a file of the same name: that is what was typed.
        probes = self.shell.user_ns.get(args.probes, args.probes) if args.probes else None
        report = check_adapter(
            args.adapter,
            base=args.base,
            old_base=args.old_base,
            probes=probes,
            max_lora_rank=args.max_lora_rank,
            backend=args.backend,
            behavior=not args.static_only,
            max_new_tokens=args.max_new_tokens,
            log=not args.no_log,
        )
        self.shell.user_ns["_adapter_report"] = report
        return report
