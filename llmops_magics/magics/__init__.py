"""IPython edge: parse arguments, call one core function, return a display object."""

from .adapter import AdapterMagics
from .alias import AliasMagics
from .engines import EngineMagics
from .lance import LanceMigrateMagics
from .lineage import LineageMagics
from .llm import LlmopsMagics
from .model import ModelMagics
from .pin import PinMagics
from .promote import PromoteMagics
from .prompt import PromptMagics
from .shadow import ShadowMagics
from .watch import WatchMagics

MAGICS = (
    LlmopsMagics,
    LanceMigrateMagics,
    AdapterMagics,
    ShadowMagics,
    LineageMagics,
    PromptMagics,
    ModelMagics,
    AliasMagics,
    PromoteMagics,
    PinMagics,
    EngineMagics,
    WatchMagics,
)

__all__ = [
    "LlmopsMagics",
    "LanceMigrateMagics",
    "AdapterMagics",
    "ShadowMagics",
    "LineageMagics",
    "MAGICS",
    "PromptMagics",
    "ModelMagics",
    "AliasMagics",
    "PromoteMagics",
    "PinMagics",
    "EngineMagics",
    "WatchMagics",
]
