"""``%%llm_prompt``: register the cell as a prompt version in the MLflow Prompt Registry."""

from __future__ import annotations

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.registry.prompts import register_prompt
from .args import parse_line
from .edge import user_errors


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
        args = parse_line(self.llm_prompt, line)
        fmt = args.response_format
        if fmt and fmt.isidentifier() and fmt in self.shell.user_ns:
            fmt = self.shell.user_ns[fmt]
        result = register_prompt(args.name, cell, message=args.message, alias=args.alias, response_format=fmt)
        self.shell.user_ns["_llm_prompt"] = result.prompt
        return result
