"""The page's metrics panel: a few headline numbers from the metrics service's /metrics.json.

The gateway does not compute metrics; it proxies the metrics service (`agentlog service metrics`)
at AGENTLOG_METRICS_URL, else http://127.0.0.1:$AGENTLOG_METRICS_PORT/metrics.json (port 9464 by
default). When that service is not running, GET /api/metrics answers 404 and the page hides the panel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

DEFAULT_PORT = 9464
FETCH_TIMEOUT_S = 2.0
NOT_RUNNING = "the metrics service is not running (agentlog service metrics)"


class MetricsUnavailable(Exception):
    """The metrics service could not be reached (`not_running`: the message says why) or answered
    something unusable."""

    def __init__(self, message: str, *, not_running: bool) -> None:
        super().__init__(message)
        self.not_running = not_running


def metrics_url_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    port = env.get("AGENTLOG_METRICS_PORT") or DEFAULT_PORT
    return env.get("AGENTLOG_METRICS_URL") or f"http://127.0.0.1:{port}/metrics.json"


async def fetch_snapshot(url: str, timeout: float = FETCH_TIMEOUT_S) -> dict[str, Any]:
    """The metrics service's JSON snapshot; MetricsUnavailable when it cannot be had."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
    except httpx.HTTPError as error:  # refused, timed out, no such host: the service is not there
        raise MetricsUnavailable(str(error) or type(error).__name__, not_running=True) from error
    if response.status_code != 200:
        raise MetricsUnavailable(f"the metrics service at {url} answered {response.status_code}", not_running=False)
    try:
        data = response.json()
    except ValueError as error:
        raise MetricsUnavailable(f"the metrics service at {url} answered something that is not JSON",
                                 not_running=False) from error
    if not isinstance(data, dict):
        raise MetricsUnavailable(f"the metrics service at {url} answered an unexpected shape", not_running=False)
    return data


def _number(value: object) -> float | int:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def panel_of(snapshot: Mapping[str, Any]) -> dict[str, float | int]:
    """What the page's panel shows, as a flat object of numbers (it lists every key with its value,
    in this order, at most 12): counts, throughput, turn latency and the consumer lag."""
    answers = snapshot.get("answers") or {}
    latency = (snapshot.get("latencySeconds") or {}).get("end_to_end") or {}
    throughput = snapshot.get("throughput") or {}
    lag_by_group = (snapshot.get("lag") or {}).get("byGroup") or {}
    completed = _number(answers.get("completed"))
    return {
        "conversations": _number(snapshot.get("conversations")),
        "turnsCompleted": completed,
        "turnsFailed": sum(_number(count) for outcome, count in answers.items() if outcome != "completed"),
        "turnsInFlight": _number(snapshot.get("turnsInFlight")),
        "events": _number(snapshot.get("events")),
        "duplicates": _number(snapshot.get("duplicates")),
        "eventsPerSecond": _number(throughput.get("eventsPerSecond")),
        "turnP50Seconds": _number(latency.get("p50")),
        "turnP95Seconds": _number(latency.get("p95")),
        "consumerLag": sum(_number(lag) for lag in lag_by_group.values()),
    }
