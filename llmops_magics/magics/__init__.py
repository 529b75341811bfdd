"""IPython edge: parse arguments, call one core function, return a display object."""

from .adapter import AdapterMagics
from .lance import LanceMigrateMagics
from .lineage import LineageMagics
from .llm import LlmopsMagics
from .shadow import ShadowMagics
from .prompt import PromptMagics
from .model import ModelMagics
from .alias import AliasMagics
from .engines import EngineMagics
from .pin import PinMagics

MAGICS = (LlmopsMagics, LanceMigrateMagics, AdapterMagics, ShadowMagics, LineageMagics,
          PromptMagics, ModelMagics, AliasMagics, PinMagics, EngineMagics)

__all__ = ["LlmopsMagics", "LanceMigrateMagics", "AdapterMagics", "ShadowMagics", "LineageMagics", "MAGICS",
           "PromptMagics", "ModelMagics", "AliasMagics", "PinMagics", "EngineMagics"]
