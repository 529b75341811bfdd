"""Option values, checked before any work starts: one rule per option, one message shape.

Every magic passes its option values through as given (strings from the line) and its
Python twin checks them here, first thing; so a bad value is one line naming the option,
the value and an example, in both, before an engine starts or a model answers.

The same rule serves ``%%shadow --max-tokens abc`` and ``shadow(max_tokens="abc")``: the
error knows both spellings, and each edge picks its own (:meth:`OptionError.as_flag`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..backends.base import Sampling
from ..backends.transformers_backend import OPTIONS
from ..errors import BadInput
from .evidence.traces import since_ms

# Values a dtype option may take (vLLM's and torch's names for the same four).
DTYPES = ("auto", "float32", "float", "bfloat16", "float16", "half")


class OptionError(BadInput):
    """An option has a value we cannot use."""

    def __init__(
        self,
        name: str,
        value,
        need: str,
        example: str,
        *,
        flag: str | None = None,
        flag_value: str | None = None,
        flag_example: str | None = None,
    ):
        self.name, self.value, self.need, self.example = name, value, need, example
        self.flag = flag or "--" + name.replace("_", "-")
        self.flag_value = _typed(value) if flag_value is None else flag_value
        self.flag_example = example if flag_example is None else flag_example
        super().__init__(f"{name}={value!r}: {need} (e.g. {name}={example})")

    def as_flag(self) -> str:
        """The same message as a magic's user typed it: ``--max-tokens abc: ...``."""
        sep = "" if self.flag.endswith("=") else " "
        return f"{self.flag}{sep}{self.flag_value}: {self.need} (e.g. {self.flag}{sep}{self.flag_example})"


def _typed(value) -> str:
    # Values parsed from k=v text come back as JSON (true, 2); show them that way.
    import json

    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True)
class Rule:
    """What one option accepts."""

    kind: str  # whole | number | choice | text
    example: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    flag: str | None = None

    def need(self) -> str:
        if self.kind == "choice":
            return "must be one of " + ", ".join(self.choices)
        what = "a whole number" if self.kind == "whole" else "a number"
        if self.low is not None and self.high is not None:
            return f"must be {what} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"must be {what} of at least {self.low:g}"
        return f"must be {what}"

    def coerce(self, name: str, value):
        def bad():
            return OptionError(name, value, self.need(), self.example, flag=self.flag)

        if self.kind == "choice":
            if str(value) not in self.choices:
                raise bad()
            return str(value)
        if isinstance(value, bool):
            raise bad()
        try:
            if self.kind == "whole":
                number = float(value) if isinstance(value, float) else int(str(value).strip())
                if number != int(number):
                    raise ValueError
                number = int(number)
            else:
                number = float(value)
        except (TypeError, ValueError):
            raise bad() from None
        if (
            math.isnan(number)
            or (self.low is not None and number < self.low)
            or (self.high is not None and number > self.high)
        ):
            raise bad()
        return number


def _whole(example, low=None, high=None, **kw) -> Rule:
    return Rule("whole", str(example), low, high, **kw)


def _number(example, low=None, high=None, **kw) -> Rule:
    return Rule("number", str(example), low, high, **kw)


RULES: dict[str, Rule] = {
    # sampling
    "max_tokens": _whole(64, 1),
    "temperature": _number(0.7, 0),
    "seed": _whole(0),
    "top_p": _number(0.9, 0, 1),
    # shadow
    "n": _whole(50, 1),
    "sample_seed": _whole(0),
    "memory_limit_gb": _number(8, 0.1),
    "engine_plan": Rule("choice", "one-at-a-time", choices=("auto", "together", "one-at-a-time")),
    "adapter_mode": Rule("choice", "merged", choices=("auto", "lora", "merged")),
    "max_scorer_calls": _whole(1000, 1),
    # promotion gate
    "require": Rule("choice", "better", choices=("equivalent", "better")),
    "min_cases": _whole(50, 0),
    "min_win_rate": _number(0.4, 0, 1),
    # adapter check
    "max_lora_rank": _whole(16, 1),
    "max_new_tokens": _whole(16, 1),
    # migration
    "batch": _whole(256, 1),
    "max_batches": _whole(10, 1),
    "min_rows": _whole(5000, 0),
    "k": _whole(10, 1),
    # watch (issue 22): buckets, the canary's equivalence margin, the flags' error rate
    "by": Rule("choice", "day", choices=("hour", "day", "week")),
    "margin": _number(0.05, 0.0001, 1),
    "alpha": _number(0.05, 0.0001, 0.5),
    # engines
    "lines": _whole(50, 1),
    "dtype": Rule("choice", "float32", choices=DTYPES),
}

# ``--threshold NAME=VALUE`` of %%shadow: each field of ``stats.Thresholds``.
THRESHOLD_RULES: dict[str, Rule] = {
    name: (
        _whole(example, low, flag=f"--threshold {name}=")
        if kind == "whole"
        else _number(example, low, high, flag=f"--threshold {name}=")
    )
    for name, kind, example, low, high in (
        ("alpha", "number", 0.05, 0.0001, 0.5),
        ("max_differing_rate", "number", 0.1, 0, 1),
        ("min_edit_similarity", "number", 0.9, 0, 1),
        ("min_embedding_similarity", "number", 0.95, -1, 1),
        ("length_ratio_margin", "number", 0.2, 0, None),
        ("rate_margin", "number", 0.05, 0, 1),
        ("judge_margin", "number", 0.1, 0, 2),
        ("latency_margin", "number", 0.2, 0, None),
        ("bootstrap", "whole", 2000, 100, None),
        ("seed", "whole", 0, None, None),
        ("max_cost_ratio", "number", 1.5, 0.01, None),  # issue 20: candidate cost / primary cost
    )
}


def check(**values) -> dict:
    """Each value checked and converted by its option's rule; ``None`` passes as is.

    Examples
    --------
    >>> check(max_tokens="64", temperature=0)
    {'max_tokens': 64, 'temperature': 0.0}
    """
    return {name: (None if value is None else RULES[name].coerce(name, value)) for name, value in values.items()}


def duration_ms(name: str, value) -> int:
    """A duration option (``7d``, ``12h``, ``30m``; ``since`` and ``baseline`` of watch) in ms.

    The same parsing as ``--since`` of ``--from-traces`` (:func:`.evidence.traces.since_ms`),
    and above zero: an empty window holds no traces.
    """
    need = "must be a duration above 0: a number and a unit s, m, h, d or w"
    try:
        start = since_ms(str(value), now=0) if value not in (None, "") and not isinstance(value, bool) else None
    except BadInput:
        start = None
    if start is None or start >= 0:
        raise OptionError(name, value, need, "14d")
    return -start


def sampling(max_tokens=128, temperature=0.0, seed=0):
    """Checked sampling options as the ``Sampling`` every backend takes (``llm`` and ``shadow``)."""
    return Sampling(**check(max_tokens=max_tokens, temperature=temperature, seed=seed))


# A scorer's equivalence margin: ``--threshold scorer.NAME=0.1`` (one scorer) and
# ``--threshold scorer_margin=0.1`` (every scorer without its own). Above 0: a margin of 0
# could never be met. A pass rate moves by at most 1, so a larger margin for a pass/fail
# scorer is read as 1 when the scorer's results are known (core.shadow.scorers).
SCORER_PREFIX = "scorer."
MARGIN_NEED = "must be a number above 0 (the largest paired difference still equivalent; at most 1 for a pass rate)"


def check_thresholds(values: dict) -> dict:
    """``{"max_differing_rate": "0.1"}`` -> checked numbers; unknown names refused.

    ``scorer.NAME`` keys (and a ``scorer_margins`` mapping, as ``Thresholds.as_dict()``
    gives it) are gathered into one ``scorer_margins`` dict of checked margins.
    """
    named = {k: v for k, v in values.items() if k.startswith(SCORER_PREFIX) and len(k) > len(SCORER_PREFIX)}
    plain = {k: v for k, v in values.items() if k not in named and k != "scorer_margins"}
    unknown = sorted(set(plain) - set(THRESHOLD_RULES) - {"scorer_margin"})
    if unknown:
        known = ", ".join([*THRESHOLD_RULES, "scorer_margin", "scorer.NAME"])
        raise OptionError(
            unknown[0],
            values[unknown[0]],
            f"is not a threshold: known are {known}",
            "0.1",
            flag=f"--threshold {unknown[0]}=",
        )
    out = {
        name: _margin(name, v) if name == "scorer_margin" else THRESHOLD_RULES[name].coerce(name, v)
        for name, v in plain.items()
    }
    given = values.get("scorer_margins")
    if given is not None and not isinstance(given, dict):
        raise OptionError("scorer_margins", given, "must map scorer names to margins", "{'is_polite': 0.1}")
    margins = {str(k): _margin(SCORER_PREFIX + str(k), v) for k, v in (given or {}).items()}
    margins.update({key[len(SCORER_PREFIX) :]: _margin(key, v) for key, v in named.items()})
    if given is not None or margins:
        out["scorer_margins"] = margins
    return out


def _margin(key: str, value) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (number > 0 and math.isfinite(number)):  # NaN fails too
        raise OptionError(key, value, MARGIN_NEED, "0.05", flag=f"--threshold {key}=")
    return number


def check_engine_args(values: dict | None, what: str = "engine_args") -> dict:
    """Serving options: known names only (vLLM's engine arguments and transformers'),
    and a dtype among :data:`DTYPES`."""
    values = dict(values or {})
    if not values:
        return values
    known = _engine_arg_names()
    flag = f"--{what.replace('_', '-')}"
    for name, value in values.items():
        if known is not None and name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.7)
            hint = f"did you mean {' or '.join(close)}?" if close else "see vLLM's engine arguments"
            suggestion = close[0] if close else "dtype"
            raise OptionError(
                what,
                {name: value},
                f"{name!r} is not a serving option of vLLM or transformers ({hint})",
                f"{{{suggestion!r}: ...}}",
                flag=flag,
                flag_value=f"{name}={_typed(value)}",
                flag_example=f"{suggestion}=...",
            )
        if name == "dtype":
            values[name] = Rule("choice", "float32", choices=DTYPES, flag=f"{flag} dtype=").coerce(name, value)
    return values


def _engine_arg_names() -> set[str] | None:
    """vLLM's engine argument names plus transformers' (None when vLLM is not installed)."""
    import dataclasses
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        from vllm.engine.arg_utils import EngineArgs
    except Exception:  # a broken vLLM: the engine start will say what is wrong
        return None
    return {f.name for f in dataclasses.fields(EngineArgs)} | set(OPTIONS)
