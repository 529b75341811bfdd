"""``%llm_model``: register models in the MLflow Model Registry without copying weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.registry.models import list_models, register_model, show_model
from .args import parse_command
from .edge import user_errors


@dataclass(frozen=True)
class ModelCommand:
    """One parsed ``%llm_model`` line."""

    kind: Literal["register", "list", "show"]
    name: str | None = None
    base: str = "default"
    revision: str | None = None
    adapter: str | None = None
    params: tuple = ()
    alias: str | None = None
    model_kind: Literal["chat", "embedding"] = "chat"
    message: str | None = None

    @classmethod
    def from_args(cls, args) -> ModelCommand:
        if args.action in ("register", "show") and not args.name:
            raise UsageError(f"%llm_model {args.action} needs a NAME, e.g. %llm_model {args.action} chat")
        if args.action == "register" and not args.base:
            raise UsageError("%llm_model register needs --base PATH_OR_DEFAULT (e.g. --base default)")
        return cls(
            args.action,
            args.name,
            args.base,
            args.revision,
            args.adapter,
            tuple(args.param),
            args.alias,
            args.kind,
            args.message,
        )


@magics_class
class ModelMagics(Magics):
    """``%llm_model register NAME --base PATH_OR_DEFAULT ...``, ``%llm_model list``, ``%llm_model show REF``."""

    @magic_arguments()
    @argument("action", choices=["register", "list", "show"], help="What to do.")
    @argument("name", nargs="?", default=None, help="Model name (register) or ref (show).")
    @argument("--base", default=None, help="'default', a model folder, or a hub id in the local cache.")
    @argument("--revision", default=None, help="Revision of the base (hub commit, git sha, tag).")
    @argument("--adapter", default=None, help="PEFT LoRA adapter folder served on top of the base.")
    @argument("--param", action="append", default=[], help="Serving param KEY=VALUE (repeatable).")
    @argument("--alias", default=None, help="Move this alias to the registered version.")
    @argument("--kind", choices=["chat", "embedding"], default="chat", help="chat or embedding.")
    @argument("-m", "--message", default=None, help="Description of the version.")
    @line_magic
    @user_errors
    def llm_model(self, line):
        """Register, list or show models; registering hashes files once (cached)."""
        cmd = parse_command(self.llm_model, line, ModelCommand)
        if cmd.kind == "list":
            return list_models()
        if cmd.kind == "show":
            return show_model(cmd.name)
        result = register_model(
            cmd.name,
            cmd.base,
            revision=cmd.revision,
            adapter=cmd.adapter,
            params=list(cmd.params),
            alias=cmd.alias,
            kind=cmd.model_kind,
            message=cmd.message,
        )
        self.shell.user_ns["_llm_model"] = result.model
        return result
