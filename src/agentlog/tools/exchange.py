"""The getExchangeRate tool: live rates from a Frankfurter-compatible API, or an honest snapshot.

With EXCHANGE_RATES_URL set, each call asks that server (`GET {base}/latest?from=USD&to=ILS`, the
Frankfurter wire format, e.g. https://api.frankfurter.app) and reports the date the server gives.
Without it, the rate comes from a snapshot bundled in the package (data/reference_rates.json, one
base currency, cross rates through it); the result then says plainly that it is indicative and of
which date, in `text` and in `data`, so no answer passes a stale figure off as today's rate.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from importlib import resources
from typing import Any

from agentlog.tools.http_client import get_json
from agentlog.tools.registry import ToolError, ToolOutput, tool

CODE = re.compile(r"^[A-Za-z]{3}$")


@cache
def reference_snapshot() -> dict[str, Any]:
    """The bundled snapshot: {"base", "date", "source", "rates": {code: units per 1 base}}."""
    raw = resources.files("agentlog.tools").joinpath("data/reference_rates.json").read_text(encoding="utf-8")
    snapshot: dict[str, Any] = json.loads(raw)
    return snapshot


def _code(value: str, role: str) -> str:
    code = value.strip().upper()
    if not CODE.match(code):
        raise ToolError(f"{role} currency {value!r} is not a three-letter ISO 4217 code such as USD or ILS",
                        error_type="UnknownCurrency")
    return code


def _offline(source: str, target: str) -> tuple[float, str, str]:
    snapshot = reference_snapshot()
    rates: dict[str, float] = snapshot["rates"]
    for code in (source, target):
        if code not in rates:
            raise ToolError(f"unknown currency {code}: the bundled reference snapshot has "
                            f"{', '.join(sorted(rates))}", error_type="UnknownCurrency")
    cross = float(f"{rates[target] / rates[source]:.6g}")  # six significant digits, as rate tables print
    return cross, str(snapshot["date"]), str(snapshot["source"])


def _live(base_url: str, source: str, target: str) -> tuple[float, str, str]:
    url = base_url.rstrip("/") + "/latest"
    reply = get_json(url, params={"from": source, "to": target}, service="exchange rates",
                     not_found=f"unknown currency: the rates server at {base_url} knows no {source} or {target}")
    rates = reply.get("rates")
    rate = rates.get(target) if isinstance(rates, dict) else None
    if not isinstance(rate, int | float) or isinstance(rate, bool):
        raise ToolError(f"unknown currency {target}: the rates server at {base_url} returned no rate for it",
                        error_type="UnknownCurrency")
    amount = reply.get("amount", 1)
    per_unit = float(rate) / float(amount) if isinstance(amount, int | float) and amount else float(rate)
    return per_unit, str(reply.get("date", "unknown date")), f"live rates from {base_url}"


@tool("getExchangeRate", "Exchange rate: how many units of `to` one unit of `from` buys (ISO codes such as "
      "USD, EUR, GBP, ILS). Live when a rates server is configured, else a dated indicative snapshot.",
      renamed={"from": "from_"})
def get_exchange_rate(from_: str, to: str) -> ToolOutput:
    """value is the rate as a number, so a later calculateMath step can multiply by it."""
    source, target = _code(from_, "source"), _code(to, "target")
    base_url = os.environ.get("EXCHANGE_RATES_URL", "").strip()
    if source == target:
        rate, date, origin = 1.0, "any date", "identity (same currency)"
    elif base_url:
        rate, date, origin = _live(base_url, source, target)
    else:
        rate, date, origin = _offline(source, target)
    shown = f"{rate:.6g}"
    return ToolOutput(value=rate, text=f"1 {source} = {shown} {target} (rate of {date}; source: {origin})",
                      data={"from": source, "to": target, "rate": rate, "date": date, "source": origin,
                            "live": bool(base_url) and source != target})
