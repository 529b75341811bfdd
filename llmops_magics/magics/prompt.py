"""``%%llm_prompt``: register the cell as a prompt version in the MLflow Prompt Registry."""

from __future__ import annotations

from dataclasses import dataclass

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.registry.prompts import register_prompt
from .args import parse_command
from .edge import user_errors


@dataclass(frozen=True)
class PromptCommand:
    """One parsed ``%%llm_prompt`` line (the cell is the template)."""

    name: str
    message: str | None = None
    alias: str | None = None
    response_format: str | None = None  # JSON text, or the name of a notebook variable

    @classmethod
    def from_args(cls, args) -> PromptCommand:
        return cls(args.name, args.message, args.alias, args.response_format)


@magics_class
class PromptMagics(Magics):
    """``%%llm_prompt NAME -m MSG [--alias A] [--response-format JSON_OR_VAR]``."""

    @magic_arguments()
    @argument("name", help="Prompt name (letters, digits, '-', '_', '.').")
    @argument("-m", "--message", default=None, help="Commit message of the new version.")
    @argument("--alias", default=None, help="Move this alias to the resulting version.")
    @argument(
        "--response-format",
        default=None,
        help="JSON schema of the expected output, or the name of a variable holding one.",
    )
    @cell_magic
    @user_errors
    def llm_prompt(self, line, cell):
        """Register the cell (text with {{var}}, or a JSON/YAML list of chat messages)."""
        cmd = parse_command(self.llm_prompt, line, PromptCommand)
        fmt = cmd.response_format
        if fmt and fmt.isidentifier() and fmt in self.shell.user_ns:
            fmt = self.shell.user_ns[fmt]
        result = register_prompt(cmd.name, cell, message=cmd.message, alias=cmd.alias, response_format=fmt)
        self.shell.user_ns["_llm_prompt"] = result.prompt
        return result
