"""Cost of 1,000 requests "like these", from measured tokens and wall time.

Two kinds of price (``Settings.prices``, ``--price``):

* an API price per token: ``"0.15/1M in,0.60/1M out"`` (also ``/1K``, ``/token`` or a
  bare number per token, ``$`` optional; one price without ``in``/``out`` is both).
  A request costs ``in_tokens * p_in + out_tokens * p_out``;
* an hourly price of self-hosted serving hardware: ``"2.50/h"``. Requests in one batch
  overlap, so a request costs the batch's WALL time over its requests (never the sum of
  their latencies) at that rate.

Without a price, tokens in / out and seconds per 1,000 requests are what can be said.
A price is looked up by the model's ref as typed (``chat@challenger``), then its label
(``chat/2``), then its name (``chat``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import BadInput

EXAMPLE = "e.g. '0.15/1M in,0.60/1M out' or '2.50/h'"
# Tokens per unit of a per-token price: "/1M" -> 1e6 tokens.
_UNITS = {"1m": 1e6, "m": 1e6, "1k": 1e3, "k": 1e3, "token": 1.0, "tok": 1.0, "1": 1.0, "": 1.0}
_NUMBER = r"\$?\s*(?P<amount>\d+(?:\.\d*)?|\.\d+)"
_HOURLY = re.compile(_NUMBER + r"\s*/\s*(?:h|hr|hour)\s*$", re.IGNORECASE)
_TOKENS = re.compile(
    _NUMBER + r"\s*(?:/\s*(?P<unit>1m|m|1k|k|token|tok|1))?\s*(?P<way>in|input|out|output)?\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class Price:
    """One parsed price: dollars per input and output token, or dollars per hour.

    ``text`` is the price as the user wrote it (logged as the run's param).
    """

    text: str
    per_token_in: float = 0.0
    per_token_out: float = 0.0
    per_hour: float | None = None

    @property
    def hourly(self) -> bool:
        """Whether this is a price of serving hardware per hour (else per token)."""
        return self.per_hour is not None


def parse_price(text: str, *, what: str = "price") -> Price:
    """Read a price: ``"0.15/1M in,0.60/1M out"`` (per token) or ``"2.50/h"`` (per hour).

    Raises
    ------
    BadInput
        One line naming ``what`` and the text, with an example.
    """

    def bad(why: str) -> BadInput:
        return BadInput(f"{what} {text!r}: {why} ({EXAMPLE})")

    if not isinstance(text, str) or not text.strip():
        raise bad("no price given")
    hourly = _HOURLY.match(text.strip())
    if hourly:
        return Price(text.strip(), per_hour=float(hourly["amount"]))
    ways: dict[str, float] = {}
    for part in text.split(","):
        m = _TOKENS.match(part.strip())
        if not m:
            raise bad(f"{part.strip()!r} is not AMOUNT/UNIT in|out or AMOUNT/h")
        way = "both" if not m["way"] else ("in" if m["way"].lower().startswith("in") else "out")
        if way in ways or "both" in ways or (way == "both" and ways):
            raise bad("give one input and one output price")
        ways[way] = float(m["amount"]) / _UNITS[(m["unit"] or "").lower()]
    if "both" in ways:
        return Price(text.strip(), ways["both"], ways["both"])
    if set(ways) != {"in", "out"}:
        raise bad(f"an {'output' if 'in' in ways else 'input'} price is missing")
    return Price(text.strip(), ways["in"], ways["out"])


def parse_price_options(values: Iterable[str], *, what: str = "--price") -> dict[str, str]:
    """``["chat@challenger=0.15/1M in,0.60/1M out", ...]`` -> ``{ref: price text}``, each checked."""
    out: dict[str, str] = {}
    for value in values or ():
        ref, sep, price = str(value).partition("=")
        if not sep or not ref.strip():
            raise BadInput(f"{what} {value!r} is not REF=PRICE (e.g. {what} 'chat@champion=2.50/h')")
        parse_price(price, what=f"{what} {ref.strip()}=")
        out[ref.strip()] = price.strip()
    return out


def check_prices(prices: Mapping | None, *, what: str = "price") -> dict[str, str]:
    """A ref -> price mapping with every price parsed once (so a malformed one fails now)."""
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise BadInput(f"prices must map model refs to prices, e.g. {{'chat@champion': '2.50/h'}}, got {prices!r}")
    for ref, text in prices.items():
        parse_price(text, what=f"{what} of {ref}")
    return {str(k): str(v).strip() for k, v in prices.items()}


def lookup_price(prices: Mapping[str, str], names: Sequence[str | None]) -> Price | None:
    """The price of the first of ``names`` (ref as typed, label, name) that ``prices`` holds."""
    for name in names:
        if name and name in prices:
            return parse_price(prices[name], what=f"price of {name}")
    return None


@dataclass(frozen=True)
class Cost:
    """What 1,000 requests like these cost, or, without a price, what they take.

    Attributes
    ----------
    requests : int
        Requests measured.
    tokens_in_per_1k, tokens_out_per_1k : float
        Tokens per 1,000 requests.
    seconds_per_1k : float or None
        Wall seconds per 1,000 requests (None when the wall time is unknown, e.g. a
        recorded side that was not re-run).
    price : Price or None
        The price applied, if one was found.
    per_1k : float or None
        Dollars per 1,000 requests (None without a price, or an hourly price and no
        wall time).
    """

    requests: int
    tokens_in_per_1k: float
    tokens_out_per_1k: float
    seconds_per_1k: float | None
    price: Price | None = None
    per_1k: float | None = None

    def __str__(self) -> str:
        if self.per_1k is not None:
            return money(self.per_1k)
        used = f"{_count(self.tokens_in_per_1k)} tokens in / {_count(self.tokens_out_per_1k)} out"
        seconds = f", {self.seconds_per_1k:,.0f} s" if self.seconds_per_1k is not None else ""
        return used + seconds


def request_costs(
    price: Price | None, tokens_in: Sequence[float], tokens_out: Sequence[float], wall_s: float | None
) -> np.ndarray | None:
    """Dollars per request, request by request (None when it cannot be said).

    An hourly price spreads the batch's wall time over its requests by their completion
    tokens (the work each one asked of the batch; evenly if none generated a token):
    their sum is the wall time, so the mean is wall time over requests.
    """
    if price is None:
        return None
    t_in, t_out = np.asarray(tokens_in, float), np.asarray(tokens_out, float)
    if not price.hourly:
        return t_in * price.per_token_in + t_out * price.per_token_out
    seconds = request_seconds(tokens_out, wall_s)
    return None if seconds is None else seconds * price.per_hour / 3600.0


def request_seconds(tokens_out: Sequence[float], wall_s: float | None) -> np.ndarray | None:
    """A batch's wall time apportioned to its requests by completion tokens (None without one)."""
    t_out = np.asarray(tokens_out, float)
    if wall_s is None or not wall_s > 0 or len(t_out) == 0:
        return None
    total = t_out.sum()
    share = t_out / total if total > 0 else np.full(len(t_out), 1.0 / len(t_out))
    return share * float(wall_s)


def cost_of(price: Price | None, tokens_in: Sequence[float], tokens_out: Sequence[float], wall_s: float | None) -> Cost:
    """The :class:`Cost` of one batch of requests (``wall_s``: the batch's wall time).

    Examples
    --------
    >>> cost_of(parse_price("2.50/h"), [10, 10], [30, 10], 7.2).per_1k  # 2.50 * 3.6 s / 3600 * 1000
    2.5
    """
    n = len(tokens_in)
    if n == 0:
        return Cost(0, 0.0, 0.0, None, price, None)
    per_request = request_costs(price, tokens_in, tokens_out, wall_s)
    has_wall = wall_s is not None and wall_s > 0
    return Cost(
        requests=n,
        tokens_in_per_1k=float(np.sum(tokens_in)) / n * 1000,
        tokens_out_per_1k=float(np.sum(tokens_out)) / n * 1000,
        seconds_per_1k=float(wall_s) / n * 1000 if has_wall else None,
        price=price,
        per_1k=float(per_request.mean()) * 1000 if per_request is not None else None,
    )


def money(dollars: float, *, sign: bool = False) -> str:
    """``$0.42``, ``$1,234``, ``$0.0031``, with ``+``/``-`` when ``sign``."""
    mark = ("+" if dollars >= 0 else "-") if sign else ("-" if dollars < 0 else "")
    x = abs(dollars)
    if x >= 100:
        body = f"{x:,.0f}"
    elif x >= 0.1 or x == 0:
        body = f"{x:.2f}"
    else:  # keep two significant digits of a small cost
        body = f"{x:.{max(2, 1 - math.floor(math.log10(x)))}f}"
    return f"{mark}${body}"


def _count(x: float) -> str:
    return f"{x / 1000:,.0f}k" if x >= 10_000 else f"{x:,.0f}"
