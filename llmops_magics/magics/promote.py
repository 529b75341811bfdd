"""``%llm_promote``: move an alias only on a recorded shadow run (or forced, with a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.promote import promote
from .args import as_kwargs, parse_command
from .edge import user_errors


@dataclass(frozen=True)
class PromoteCommand:
    """One parsed ``%llm_promote`` line (field names are ``promote``'s keywords)."""

    kind: Literal["model", "prompt"]
    name: str
    version: str
    to: str
    require: str = "equivalent"
    min_cases: str = "50"
    min_win_rate: str = "0.4"
    review: bool = False
    force: bool = False
    why: str | None = None
    run_id: str | None = None

    @classmethod
    def from_args(cls, args) -> PromoteCommand:
        # --force without --why (and --why alone) is refused by core, one line, for both doors.
        return cls(
            args.kind,
            args.name,
            args.version,
            args.to,
            args.require,
            args.min_cases,
            args.min_win_rate,
            args.review,
            args.force,
            args.why,
            args.run,
        )


@magics_class
class PromoteMagics(Magics):
    """``%llm_promote model chat challenger --to champion`` moves the alias on a recorded shadow run."""

    @magic_arguments()
    @argument("kind", choices=["model", "prompt"], help="model or prompt.")
    @argument("name", help="Registered model or prompt name.")
    @argument("version", help="Version to promote: a number or an alias (challenger).")
    @argument("--to", required=True, help="Alias to move (champion, production).")
    @argument("--require", choices=["equivalent", "better"], default="equivalent", help="Quality verdict needed.")
    @argument("--min-cases", default="50", help="Fewest cases the shadow run must have compared.")
    @argument("--min-win-rate", default="0.4", help="With --review: lower 95%% bound of the candidate's win share.")
    @argument("--review", action="store_true", help="Also require the run's human review.")
    @argument("--force", action="store_true", help="Move without evidence (needs --why, recorded).")
    @argument("--why", default=None, help="The reason for --force, recorded in the alias history.")
    @argument("--run", default=None, help="Use this shadow run as the evidence.")
    @line_magic
    @user_errors
    def llm_promote(self, line):
        """Move an alias to a version only when a recorded shadow run compared it with the alias's current one."""
        cmd = parse_command(self.llm_promote, line, PromoteCommand)
        return promote(**as_kwargs(cmd))
